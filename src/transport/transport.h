/*
 * transport: the ways clients receive channels. Each transport adapts a
 * connection the net module hands over to the hub's clients and
 * subscriptions, and frames messages once per transport (tt_msg_frame).
 * Now: Server-Sent Events.
 */
#ifndef TUTTI_TRANSPORT_H
#define TUTTI_TRANSPORT_H

#include "../hub/hub.h"
#include "../net/net.h"

typedef struct sse_options_s {
  double heartbeat_interval; /* s */
  int retry_ms;
  int max_channels;
} sse_options_t;

void sse_init(hub_t *hub, const sse_options_t *opts, int workers);
/* Starts worker `id`'s heartbeat timer on its loop; before the loop runs. */
void sse_worker_init(int id, uv_loop_t *loop);
void sse_free(void);

/*
 * Opens an SSE stream for `req`. `channel` is the raw (percent-encoded)
 * channel from the path, or NULL to take the `channel` query parameters.
 * Answers 400 itself on bad channels or positions.
 */
void sse_open(net_request_t *req, const char *channel, size_t len);

/* Builds the SSE frame of a message: "id: E:O\nevent: N\ndata: ...\n\n",
 * with one data: line per line of the data. */
tt_buf_t *sse_frame_build(const tt_msg_t *msg);

/* Parses "epoch:offset" or a bare offset into `pos`. Returns 0 or -EINVAL. */
int sse_pos_parse(const char *s, size_t len, engine_pos_t *pos);

#endif
