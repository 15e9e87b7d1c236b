/*
 * api: the HTTP routes. Routes a request to the SSE transport, the publish
 * handlers, rendering, health, metrics or static files.
 */
#ifndef TUTTI_API_H
#define TUTTI_API_H

#include "../audio/audio.h"
#include "../hub/hub.h"
#include "../net/net.h"

typedef struct api_options_s {
  hub_t *hub;
  net_server_t *server;      /* set before the workers start */
  const char *api_key;       /* NULL: no key needed */
  int workers;
  uint64_t started_ms;
  bool metrics_buoy_names;
  audio_limits_t render;      /* what a render's parameters may ask */
  audio_job_limits_t jobs;    /* how render jobs run (outputs are set per route) */
} api_options_t;

void api_init(const api_options_t *opts);
void api_set_server(net_server_t *server);
/* The net module's request callback. */
void api_handle(net_request_t *req);

#endif
