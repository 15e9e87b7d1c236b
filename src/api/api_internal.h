/* What the api's files share; private to src/api. */
#ifndef TUTTI_API_INTERNAL_H
#define TUTTI_API_INTERNAL_H

#include "api.h"

const api_options_t *api__options(void);
void api__json(net_conn_t *c, int status, const tt_str_t *body);
/* Decodes a channel from a path segment; answers 400 and returns -1 if bad. */
int api__channel(net_conn_t *c, const char *raw, size_t len, char *out, size_t *out_len);
bool api__authorized(net_request_t *req);

/* render.c */
/* POST /api/channels/{channel}/render, and POST /stream/{channel}/test
 * (`test`: an empty body renders the default test piece). */
void api__render_channel(net_request_t *req, const char *raw, size_t len, bool test);
/* POST /api/render: the file itself. */
void api__render_file(net_request_t *req);
/* GET /api/render/jobs/{id} */
void api__render_job(net_request_t *req, const char *raw, size_t len);
/*
 * A publish of event "music:generated": checks its musicalParams and queues
 * the render to the channel it names (repoId or channel; else `channel`).
 * Returns 0 with the job id in `job_id` (33 bytes), or answers the error
 * itself and returns -1 (then nothing may be published).
 */
int api__music_generated(net_request_t *req, const char *channel, size_t clen, const char *data, size_t dlen,
                         char *job_id);

#endif
