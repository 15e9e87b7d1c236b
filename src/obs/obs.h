/*
 * obs: counters, gauges and histograms, kept per thread (one writer each, so
 * updates are plain stores) and summed when /metrics or /health is read.
 */
#ifndef TUTTI_OBS_H
#define TUTTI_OBS_H

#include "../core/core.h"

typedef enum {
  OBS_HTTP_REQUESTS,
  OBS_HTTP_ERRORS,            /* answers with status >= 400 */
  OBS_PUBLISHED,              /* messages accepted by the engine */
  OBS_DELIVERED,              /* message frames queued to subscribers */
  OBS_DELIVERED_BYTES,
  OBS_SLOW_CONSUMERS,         /* dropped for falling past max_queue */
  OBS_SSE_OPENED,
  OBS_SSE_CLOSED,
  OBS_SSE_EV_CONNECTED,       /* sse_events_sent_total{event_type} */
  OBS_SSE_EV_MESSAGE,
  OBS_SSE_EV_HEARTBEAT,
  OBS_SSE_EV_SHUTDOWN,
  OBS_SSE_EV_ERROR,
  OBS_SSE_EV_RECOVERY_INCOMPLETE,
  OBS_WS_OPENED,
  OBS_WS_CLOSED,
  OBS_WS_MESSAGES_RECEIVED,
  OBS_WS_MESSAGES_SENT,       /* published messages queued to WebSocket clients */
  OBS_RECOVERIES,             /* recovery asked and complete */
  OBS_RECOVERIES_INCOMPLETE,
  OBS_RENDERS,                /* render jobs done */
  OBS_RENDERS_FAILED,
  OBS_RENDER_AUDIO_MS,        /* audio rendered, ms */
  OBS_RENDER_WALL_MS,         /* wall time rendering and encoding took, ms */
  OBS_COUNTER_COUNT,
} obs_counter_t;

typedef enum {
  OBS_H_SSE_DURATION_S,       /* sse_connection_duration_seconds */
  OBS_H_BROADCAST_LATENCY_MS, /* sse_broadcast_latency_ms */
  OBS_HIST_COUNT,
} obs_hist_t;

void obs_add(obs_counter_t c, uint64_t n);
static inline void obs_inc(obs_counter_t c) { obs_add(c, 1); }
void obs_observe(obs_hist_t h, double value);
/* Sum over all threads. */
uint64_t obs_get(obs_counter_t c);
/* opened - closed, read so that it never wraps below zero. */
uint64_t obs_open(obs_counter_t opened, obs_counter_t closed);

/* Figures owned by other modules, read when /metrics is rendered. */
typedef struct obs_gauges_s {
  uint64_t connections;
  uint64_t channels;
  uint64_t subscriptions;
  int workers;
  double uptime_s;
  uint64_t rss_bytes;
  const char *engine;
  bool buoy_names;      /* also expose sse_connections_total and sse_broadcast_latency_ms */
  bool engine_up;
  uint64_t engine_disconnects;
  uint64_t bridge_relayed;
  uint64_t bridge_invalid;
  int render_jobs;      /* waiting or running */
} obs_gauges_t;

/* Appends the Prometheus text exposition (format 0.0.4). */
void obs_render_prometheus(tt_str_t *out, const obs_gauges_t *g);

/* Resident set size of this process, bytes (0 if unknown). */
uint64_t obs_rss_bytes(void);

#endif
