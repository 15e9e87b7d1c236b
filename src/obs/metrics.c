/*
 * Metrics storage: each thread that records gets its own block (registered
 * on first use), written by that thread alone with relaxed atomic stores, so
 * recording costs an add and no lock; readers sum the blocks.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "obs.h"

#define OBS_MAX_THREADS 512
#define OBS_MAX_BUCKETS 16

typedef struct {
  const char *name;
  const char *help;
  size_t nbuckets;
  double bounds[OBS_MAX_BUCKETS];
} obs_hist_def_t;

static const obs_hist_def_t obs_hists[OBS_HIST_COUNT] = {
    [OBS_H_SSE_DURATION_S] = {"sse_connection_duration_seconds", "Lifetime of SSE connections", 10,
                              {0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600}},
    [OBS_H_BROADCAST_LATENCY_MS] = {"sse_broadcast_latency_ms",
                                    "Time from a publish being accepted to its frame being queued on a worker", 12,
                                    {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250}},
};

typedef struct obs_block_s {
  _Atomic uint64_t counters[OBS_COUNTER_COUNT];
  _Atomic uint64_t buckets[OBS_HIST_COUNT][OBS_MAX_BUCKETS + 1];
  _Atomic double sums[OBS_HIST_COUNT];
} obs_block_t;

static obs_block_t *obs_blocks[OBS_MAX_THREADS];
static _Atomic size_t obs_nblocks;
static pthread_mutex_t obs_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local obs_block_t *obs_mine;
static obs_block_t obs_overflow; /* shared by threads past the limit: counts stay right, races aside */

static obs_block_t *obs__block(void) {
  if (obs_mine != NULL) return obs_mine;
  pthread_mutex_lock(&obs_lock);
  size_t n = atomic_load(&obs_nblocks);
  if (n < OBS_MAX_THREADS) {
    obs_mine = tt_calloc(1, sizeof(obs_block_t));
    obs_blocks[n] = obs_mine;
    atomic_store(&obs_nblocks, n + 1);
  } else {
    obs_mine = &obs_overflow;
  }
  pthread_mutex_unlock(&obs_lock);
  return obs_mine;
}

void obs_add(obs_counter_t c, uint64_t n) {
  _Atomic uint64_t *p = &obs__block()->counters[c];
  atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + n, memory_order_relaxed);
}

void obs_observe(obs_hist_t h, double v) {
  obs_block_t *b = obs__block();
  const obs_hist_def_t *d = &obs_hists[h];
  size_t i = 0;
  while (i < d->nbuckets && v > d->bounds[i]) i++;
  _Atomic uint64_t *p = &b->buckets[h][i];
  atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + 1, memory_order_relaxed);
  atomic_store_explicit(&b->sums[h], atomic_load_explicit(&b->sums[h], memory_order_relaxed) + v,
                        memory_order_relaxed);
}

uint64_t obs_get(obs_counter_t c) {
  uint64_t sum = atomic_load_explicit(&obs_overflow.counters[c], memory_order_relaxed);
  size_t n = atomic_load(&obs_nblocks);
  for (size_t i = 0; i < n; i++) sum += atomic_load_explicit(&obs_blocks[i]->counters[c], memory_order_relaxed);
  return sum;
}

uint64_t obs_open(obs_counter_t opened, obs_counter_t closed) {
  uint64_t c = obs_get(closed); /* first: a connection counted closed is counted opened */
  uint64_t o = obs_get(opened);
  return o > c ? o - c : 0;
}

static void obs__hist_sum(obs_hist_t h, uint64_t *buckets, double *sum) {
  size_t n = atomic_load(&obs_nblocks);
  *sum = 0;
  memset(buckets, 0, sizeof(uint64_t) * (OBS_MAX_BUCKETS + 1));
  for (size_t i = 0; i <= n; i++) {
    obs_block_t *b = i < n ? obs_blocks[i] : &obs_overflow;
    for (size_t k = 0; k <= obs_hists[h].nbuckets; k++)
      buckets[k] += atomic_load_explicit(&b->buckets[h][k], memory_order_relaxed);
    *sum += atomic_load_explicit(&b->sums[h], memory_order_relaxed);
  }
}

/* ================================================================ exposition */

static void obs__metric(tt_str_t *out, const char *name, const char *type, const char *help) {
  tt_str_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void obs__counter(tt_str_t *out, const char *name, const char *help, uint64_t v) {
  obs__metric(out, name, "counter", help);
  tt_str_appendf(out, "%s %llu\n", name, (unsigned long long)v);
}

static void obs__gauge(tt_str_t *out, const char *name, const char *help, double v) {
  obs__metric(out, name, "gauge", help);
  tt_str_appendf(out, "%s %.17g\n", name, v);
}

/* Renders histogram `h` as `name`, its bounds and sum multiplied by `scale`
 * (one store can be shown in two units). */
static void obs__histogram(tt_str_t *out, obs_hist_t h, const char *name, const char *help, double scale) {
  const obs_hist_def_t *d = &obs_hists[h];
  uint64_t buckets[OBS_MAX_BUCKETS + 1];
  double sum;
  obs__hist_sum(h, buckets, &sum);
  obs__metric(out, name, "histogram", help);
  uint64_t cum = 0;
  for (size_t i = 0; i < d->nbuckets; i++) {
    cum += buckets[i];
    tt_str_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", name, d->bounds[i] * scale, (unsigned long long)cum);
  }
  cum += buckets[d->nbuckets];
  tt_str_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.17g\n%s_count %llu\n", name, (unsigned long long)cum,
                 name, sum * scale, name, (unsigned long long)cum);
}

void obs_render_prometheus(tt_str_t *out, const obs_gauges_t *g) {
  uint64_t open_sse = obs_open(OBS_SSE_OPENED, OBS_SSE_CLOSED);

  /* The buoy service's names. Two of them break Prometheus naming rules (a
   * gauge named _total, a unit abbreviated as ms), so they can be turned off;
   * tutti_sse_connections and tutti_broadcast_latency_seconds carry the same
   * figures under clean names. */
  if (g->buoy_names) {
    obs__gauge(out, "sse_connections_total", "Open SSE connections", (double)open_sse);
    obs__histogram(out, OBS_H_BROADCAST_LATENCY_MS, "sse_broadcast_latency_ms", obs_hists[OBS_H_BROADCAST_LATENCY_MS].help, 1);
  }
  obs__metric(out, "sse_events_sent_total", "counter", "SSE events sent, by event type");
  static const struct {
    const char *type;
    obs_counter_t c;
  } evs[] = {{"connected", OBS_SSE_EV_CONNECTED},       {"message", OBS_SSE_EV_MESSAGE},
             {"heartbeat", OBS_SSE_EV_HEARTBEAT},       {"shutdown", OBS_SSE_EV_SHUTDOWN},
             {"error", OBS_SSE_EV_ERROR},               {"recovery_incomplete", OBS_SSE_EV_RECOVERY_INCOMPLETE}};
  for (size_t i = 0; i < TT_ARRAY_SIZE(evs); i++)
    tt_str_appendf(out, "sse_events_sent_total{event_type=\"%s\"} %llu\n", evs[i].type,
                   (unsigned long long)obs_get(evs[i].c));
  obs__histogram(out, OBS_H_SSE_DURATION_S, obs_hists[OBS_H_SSE_DURATION_S].name, obs_hists[OBS_H_SSE_DURATION_S].help, 1);

  /* tutti's own. */
  obs__metric(out, "tutti_info", "gauge", "Build and runtime information");
  tt_str_appendf(out, "tutti_info{version=\"%s\",engine=\"%s\"} 1\n", TUTTI_VERSION, g->engine);
  obs__gauge(out, "tutti_uptime_seconds", "Seconds since start", g->uptime_s);
  obs__gauge(out, "tutti_engine_up", "1 when the engine (Redis) is reachable and ready", g->engine_up ? 1 : 0);
  obs__counter(out, "tutti_engine_disconnects_total", "Connections to Redis lost or refused", g->engine_disconnects);
  obs__counter(out, "tutti_bridge_relayed_total", "Plain Redis messages relayed into tutti channels",
               g->bridge_relayed);
  obs__counter(out, "tutti_bridge_invalid_total", "Plain Redis messages not relayed: not valid JSON",
               g->bridge_invalid);
  obs__gauge(out, "tutti_sse_connections", "Open SSE connections", (double)open_sse);
  obs__gauge(out, "tutti_ws_connections", "Open WebSocket connections",
             (double)obs_open(OBS_WS_OPENED, OBS_WS_CLOSED));
  obs__counter(out, "tutti_ws_messages_received_total", "WebSocket messages received from clients",
               obs_get(OBS_WS_MESSAGES_RECEIVED));
  obs__counter(out, "tutti_ws_messages_sent_total", "Published messages queued to WebSocket clients",
               obs_get(OBS_WS_MESSAGES_SENT));
  obs__histogram(out, OBS_H_BROADCAST_LATENCY_MS, "tutti_broadcast_latency_seconds",
                 "Time from a publish being accepted to its frame being queued on a worker", 0.001);
  obs__gauge(out, "tutti_workers", "Event-loop threads", g->workers);
  obs__gauge(out, "tutti_connections", "Open connections of every kind", (double)g->connections);
  obs__gauge(out, "tutti_channels", "Channels the engine holds", (double)g->channels);
  obs__gauge(out, "tutti_subscriptions", "Channel subscriptions of local clients", (double)g->subscriptions);
  obs__gauge(out, "tutti_resident_memory_bytes", "Resident set size", (double)g->rss_bytes);
  obs__counter(out, "tutti_http_requests_total", "HTTP requests handled", obs_get(OBS_HTTP_REQUESTS));
  obs__counter(out, "tutti_http_errors_total", "HTTP answers with status 400 or more", obs_get(OBS_HTTP_ERRORS));
  obs__counter(out, "tutti_messages_published_total", "Messages accepted by the engine", obs_get(OBS_PUBLISHED));
  obs__counter(out, "tutti_messages_delivered_total", "Message frames queued to subscribers",
               obs_get(OBS_DELIVERED));
  obs__counter(out, "tutti_delivered_bytes_total", "Bytes of message frames queued to subscribers",
               obs_get(OBS_DELIVERED_BYTES));
  obs__counter(out, "tutti_slow_consumers_dropped_total", "Clients dropped for falling past max_queue",
               obs_get(OBS_SLOW_CONSUMERS));
  obs__counter(out, "tutti_recoveries_total", "Reconnections that recovered every missed message",
               obs_get(OBS_RECOVERIES));
  obs__counter(out, "tutti_recoveries_incomplete_total", "Reconnections that could not recover everything",
               obs_get(OBS_RECOVERIES_INCOMPLETE));
  obs__counter(out, "tutti_renders_total", "Render jobs done", obs_get(OBS_RENDERS));
  obs__counter(out, "tutti_renders_failed_total", "Render jobs that failed (timeout, missing sample)",
               obs_get(OBS_RENDERS_FAILED));
  obs__metric(out, "tutti_render_audio_seconds_total", "counter", "Seconds of audio rendered");
  tt_str_appendf(out, "tutti_render_audio_seconds_total %.3f\n", (double)obs_get(OBS_RENDER_AUDIO_MS) / 1000.0);
  obs__metric(out, "tutti_render_wall_seconds_total", "counter", "Wall time spent rendering and encoding");
  tt_str_appendf(out, "tutti_render_wall_seconds_total %.3f\n", (double)obs_get(OBS_RENDER_WALL_MS) / 1000.0);
  obs__gauge(out, "tutti_render_jobs", "Render jobs waiting or running", (double)g->render_jobs);
}

uint64_t obs_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  unsigned long size = 0, rss = 0;
  int n = fscanf(f, "%lu %lu", &size, &rss);
  fclose(f);
  return n == 2 ? (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}
