/*
 * tutti: command line, start-up and shutdown.
 *
 * The main thread owns a small loop for signals and the engine's sweep; the
 * workers each run their own loop (net). Start: config -> hub -> engine ->
 * net (binds) -> per-worker parts of hub and SSE -> worker threads. Stop
 * (SIGTERM/SIGINT): net drains the workers, then everything is freed in
 * reverse order.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "api/api.h"
#include "audio/audio.h"
#include "core/core.h"
#include "engine/engine.h"
#include "hub/hub.h"
#include "net/net.h"
#include "obs/obs.h"
#include "transport/transport.h"

typedef struct tutti_s {
  tt_config_t cfg;
  hub_t *hub;
  engine_t *engine;
  net_server_t *server;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  uv_timer_t sweep;
} tutti_t;

static void on_signal(uv_signal_t *s, int signum) {
  tutti_t *t = s->data;
  tt_log(TT_LOG_INFO, "server.stopping", "signal received: draining", "\"signal\":%d,\"drain_timeout_s\":%g", signum,
         t->cfg.drain_timeout);
  net_server_shutdown(t->server);
  audio_jobs_stop();
  uv_close((uv_handle_t *)&t->sigterm, NULL);
  uv_close((uv_handle_t *)&t->sigint, NULL);
  uv_close((uv_handle_t *)&t->sweep, NULL);
}

static void on_sweep(uv_timer_t *timer) {
  tutti_t *t = timer->data;
  t->engine->vt->sweep(t->engine, tt_now_ms());
}

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  static tutti_t t;
  if (argc > 1 && strcmp(argv[1], "render") == 0) return audio_cli_render(argc - 1, argv + 1);
  int rc = tt_config_load(&t.cfg, argc, argv);
  if (rc == 1) return 0;
  if (rc != 0) return 2;
  /* Render jobs wait for their turn on pool threads: room for all of them
   * beside the file reads (before anything uses the pool). */
  char pool[16];
  snprintf(pool, sizeof(pool), "%d", 4 + t.cfg.render_queue);
  setenv("UV_THREADPOOL_SIZE", pool, 1);
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  uint64_t started = tt_now_ms();

  t.hub = hub_new(&(hub_options_t){.workers = t.cfg.workers});
  engine_sink_t sink = hub_engine_sink(t.hub);
  engine_options_t eopts = {
      .history_size = (size_t)t.cfg.history_size,
      .history_ttl_ms = (uint64_t)(t.cfg.history_ttl * 1000),
      .workers = t.cfg.workers,
      .redis_url = t.cfg.redis_url,
      .redis_bridge = t.cfg.redis_bridge,
      .redis_meta_ttl_ms = (uint64_t)(t.cfg.redis_meta_ttl * 1000),
      .long_prefix = "room:",
      .long_history_size = (size_t)t.cfg.recording_size,
      .long_history_ttl_ms = (uint64_t)(t.cfg.recording_ttl * 1000),
  };
  t.engine = strcmp(t.cfg.engine, "redis") == 0 ? engine_redis_new(&eopts, &sink) : engine_memory_new(&eopts, &sink);
  if (t.engine == NULL) {
    hub_free(t.hub);
    tt_config_free(&t.cfg);
    return 2;
  }
  hub_set_engine(t.hub, t.engine);
  hub_rooms_configure(t.hub, &(hub_room_options_t){.code_words = t.cfg.room_code_words,
                                                    .code_digits = t.cfg.room_code_digits,
                                                    .grace = t.cfg.room_grace,
                                                    .max_participants = t.cfg.room_max_participants,
                                                    .rate = t.cfg.room_rate,
                                                    .burst = t.cfg.room_burst,
                                                    .max_payload = (size_t)t.cfg.room_max_payload,
                                                    .presence_ttl = t.cfg.presence_ttl});
  sse_init(t.hub,
           &(sse_options_t){.heartbeat_interval = t.cfg.heartbeat_interval,
                            .retry_ms = t.cfg.sse_retry,
                            .max_channels = t.cfg.max_channels_per_stream},
           t.cfg.workers);
  ws_init(t.hub,
          &(ws_options_t){.max_message = t.cfg.ws_max_message,
                          .max_publish = t.cfg.max_body,
                          .ping_interval = t.cfg.ws_ping_interval,
                          .ping_timeout = t.cfg.ws_ping_timeout,
                          .deflate = t.cfg.ws_deflate != 0,
                          .deflate_threshold = t.cfg.ws_deflate_threshold,
                          .rate = t.cfg.ws_rate,
                          .burst = t.cfg.ws_burst,
                          .max_channels = t.cfg.max_channels_per_stream,
                          .client_publish = t.cfg.client_publish,
                          .presence_ttl = t.cfg.presence_ttl,
                          .started_ms = started},
          t.cfg.workers);
  api_init(&(api_options_t){
      .hub = t.hub,
      .api_key = t.cfg.api_key,
      .workers = t.cfg.workers,
      .started_ms = started,
      .metrics_buoy_names = t.cfg.metrics_buoy_names != 0,
      .render = {.max_duration = t.cfg.render_max_duration,
                 .sample_rate = t.cfg.render_sample_rate,
                 .channels = t.cfg.render_channels,
                 .samples_dir = t.cfg.samples_dir},
      .jobs = {.max_queued = t.cfg.render_queue,
               .concurrency = t.cfg.render_concurrency,
               .timeout = t.cfg.render_timeout,
               .opus_bitrate = t.cfg.opus_bitrate},
  });

  net_options_t nopts = {
      .host = t.cfg.host,
      .port = t.cfg.port,
      .workers = t.cfg.workers,
      .max_connections = t.cfg.max_connections,
      .max_body = t.cfg.max_body,
      .max_queue = t.cfg.max_queue,
      .header_timeout = t.cfg.header_timeout,
      .stale_timeout = t.cfg.stale_timeout,
      .drain_timeout = t.cfg.drain_timeout,
      .cors_origins = t.cfg.cors_origins,
      .web_root = t.cfg.web_root,
      .on_request = api_handle,
  };
  rc = net_server_new(&nopts, &t.server);
  if (rc != 0) {
    tt_log(TT_LOG_ERROR, "server.listen_failed", uv_strerror(rc), "\"host\":\"%s\",\"port\":%d", t.cfg.host,
           t.cfg.port);
    fprintf(stderr, "tutti: cannot listen on %s:%d: %s\n", t.cfg.host, t.cfg.port, uv_strerror(rc));
    rc = 1;
    goto out_engine;
  }
  api_set_server(t.server);
  for (int i = 0; i < t.cfg.workers; i++) {
    uv_loop_t *loop = &net_server_worker(t.server, i)->loop;
    hub_worker_init(t.hub, i, loop);
    if (t.engine->vt->attach) t.engine->vt->attach(t.engine, i, loop);
    sse_worker_init(i, loop);
    ws_worker_init(i, loop);
  }

  uv_loop_init(&t.loop);
  uv_signal_init(&t.loop, &t.sigterm);
  uv_signal_init(&t.loop, &t.sigint);
  t.sigterm.data = t.sigint.data = &t;
  uv_signal_start(&t.sigterm, on_signal, SIGTERM);
  uv_signal_start(&t.sigint, on_signal, SIGINT);
  uv_timer_init(&t.loop, &t.sweep);
  t.sweep.data = &t;
  uv_timer_start(&t.sweep, on_sweep, 1000, 1000);

  if (t.engine->vt->start && (rc = t.engine->vt->start(t.engine)) != 0) {
    fprintf(stderr, "tutti: cannot start the engine: %s\n", uv_strerror(rc));
    return 1;
  }
  if ((rc = net_server_start(t.server)) != 0) {
    fprintf(stderr, "tutti: cannot start worker threads: %s\n", uv_strerror(rc));
    return 1;
  }
  tt_log(TT_LOG_INFO, "server.listening", "tutti is ready",
         "\"host\":\"%s\",\"port\":%d,\"workers\":%d,\"engine\":\"%s\",\"version\":\"%s\"", t.cfg.host,
         net_server_port(t.server), t.cfg.workers, t.engine->vt->name, TUTTI_VERSION);

  uv_run(&t.loop, UV_RUN_DEFAULT);
  net_server_wait(t.server);
  uv_loop_close(&t.loop);
  tt_log(TT_LOG_INFO, "server.stopped", "all workers stopped", NULL);
  rc = 0;
  /* The engine stops before the workers' loops are freed: until then its
   * thread may still wake them. */
  t.engine->vt->destroy(t.engine);
  t.engine = NULL;
  net_server_free(t.server);
out_engine:
  if (t.engine != NULL) t.engine->vt->destroy(t.engine);
  sse_free();
  ws_free();
  hub_free(t.hub);
  tt_config_free(&t.cfg);
  return rc;
}
