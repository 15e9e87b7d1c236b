/* Unit tests of the memory engine (src/engine/engine_memory.c). Every call
 * answers before it returns, so the loop argument is NULL throughout. */
#include <errno.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "test.h"

/* ================================================================ fixtures */

/* The sink: keeps a ref to every message it is handed. */
typedef struct {
  tt_msg_t *msgs[256];
  size_t count;
} sink_log_t;

static void sink_on_message(void *data, tt_msg_t *msg) {
  sink_log_t *log = data;
  if (CHECK(log->count < TT_ARRAY_SIZE(log->msgs))) log->msgs[log->count++] = tt_msg_ref(msg);
}

static void sink_clear(sink_log_t *log) {
  for (size_t i = 0; i < log->count; i++) tt_msg_unref(log->msgs[i]);
  log->count = 0;
}

static engine_t *engine_new(size_t history_size, uint64_t ttl_ms, sink_log_t *log) {
  engine_sink_t sink = {.on_message = sink_on_message, .data = log};
  return engine_memory_new(&(engine_options_t){.history_size = history_size, .history_ttl_ms = ttl_ms}, &sink);
}

/* A publish's answer. */
typedef struct {
  int calls;
  int status;
  engine_pos_t pos;
} pub_result_t;

static void on_published(void *ctx, int status, const engine_pos_t *pos) {
  pub_result_t *r = ctx;
  r->calls++;
  r->status = status;
  r->pos = *pos;
}

static pub_result_t publish(engine_t *e, const char *channel, const char *data) {
  pub_result_t r = {0};
  e->vt->publish(e, NULL, channel, strlen(channel), "message", 7, data, strlen(data), on_published, &r);
  CHECK_EQ(r.calls, 1); /* answered before returning */
  return r;
}

/* A history read's answer, with refs on its messages (borrowed in the callback). */
typedef struct {
  int calls;
  engine_history_t h;
  tt_msg_t *msgs[64];
} hist_result_t;

static void on_history(void *ctx, const engine_history_t *h) {
  hist_result_t *r = ctx;
  r->calls++;
  r->h = *h;
  r->h.msgs = NULL;
  CHECK(h->count <= TT_ARRAY_SIZE(r->msgs));
  for (size_t i = 0; i < h->count && i < TT_ARRAY_SIZE(r->msgs); i++) r->msgs[i] = tt_msg_ref(h->msgs[i]);
}

static hist_result_t history(engine_t *e, const char *channel, const engine_pos_t *since) {
  hist_result_t r = {0};
  e->vt->history(e, NULL, channel, strlen(channel), since, on_history, &r);
  CHECK_EQ(r.calls, 1);
  return r;
}

static void hist_free(hist_result_t *r) {
  for (size_t i = 0; i < r->h.count && i < TT_ARRAY_SIZE(r->msgs); i++) tt_msg_unref(r->msgs[i]);
}

/* The messages of `r` have offsets first, first+1, ... and matching data "m<offset>". */
static void check_run(const hist_result_t *r, uint64_t first, size_t count, const char *epoch) {
  CHECK_EQ(r->h.count, count);
  for (size_t i = 0; i < r->h.count && i < count; i++) {
    const tt_msg_t *m = r->msgs[i];
    CHECK_EQ(m->offset, first + i);
    CHECK(strcmp(m->epoch, epoch) == 0);
    char want[32];
    snprintf(want, sizeof(want), "m%" PRIu64, first + i);
    CHECK_STR(m->data, m->data_len, want);
  }
}

static void publish_n(engine_t *e, const char *channel, int n) {
  for (int i = 0; i < n; i++) {
    char data[32];
    snprintf(data, sizeof(data), "m%d", i + 1); /* data names the offset it should get */
    publish(e, channel, data);
  }
}

typedef struct {
  int calls;
  engine_channel_info_t info;
} info_result_t;

static void on_info(void *ctx, const engine_channel_info_t *info) {
  info_result_t *r = ctx;
  r->calls++;
  r->info = *info;
}

static engine_channel_info_t info(engine_t *e, const char *channel) {
  info_result_t r = {0};
  e->vt->info(e, NULL, channel, strlen(channel), on_info, &r);
  CHECK_EQ(r.calls, 1);
  return r.info;
}

static engine_pos_t pos_at(const char *epoch, uint64_t offset) {
  engine_pos_t p = {.offset = offset};
  snprintf(p.epoch, sizeof(p.epoch), "%s", epoch);
  return p;
}

/* ================================================================ tests */

static void test_offsets_in_order(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(100, 300000, &log);
  CHECK(strcmp(e->vt->name, "memory") == 0);
  char epoch[TT_EPOCH_MAX + 1] = "";
  for (int i = 1; i <= 30; i++) {
    char data[32];
    snprintf(data, sizeof(data), "m%d", i);
    pub_result_t r = publish(e, "news", data);
    CHECK_EQ(r.status, 0);
    CHECK_EQ(r.pos.offset, i);
    CHECK_EQ(strlen(r.pos.epoch), TT_EPOCH_LEN);
    if (i == 1) memcpy(epoch, r.pos.epoch, sizeof(epoch));
    CHECK(strcmp(r.pos.epoch, epoch) == 0); /* one epoch while the channel lives */
  }
  /* the sink saw each message once, in order, as published */
  CHECK_EQ(log.count, 30);
  for (size_t i = 0; i < log.count; i++) {
    tt_msg_t *m = log.msgs[i];
    CHECK_EQ(m->offset, i + 1);
    CHECK_STR(m->channel, m->channel_len, "news");
    CHECK_STR(m->event, m->event_len, "message");
    CHECK(strcmp(m->epoch, epoch) == 0);
    char want[32];
    snprintf(want, sizeof(want), "m%zu", i + 1);
    CHECK_STR(m->data, m->data_len, want);
    CHECK(m->time_ms > 0);
  }
  /* channels are independent */
  pub_result_t other = publish(e, "sport", "x");
  CHECK_EQ(other.pos.offset, 1);
  CHECK(strcmp(other.pos.epoch, epoch) != 0);
  CHECK_EQ(e->vt->channel_count(e), 2);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_history_fresh_and_recovered(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(100, 300000, &log);
  const int n = 20;
  publish_n(e, "c", n);
  const char *epoch = log.msgs[0]->epoch;

  hist_result_t r = history(e, "c", NULL);
  CHECK_EQ(r.h.status, 0);
  CHECK_EQ(r.h.recovery, ENGINE_FRESH);
  CHECK_EQ(r.h.top.offset, n);
  CHECK(strcmp(r.h.top.epoch, epoch) == 0);
  CHECK_EQ(r.h.oldest, 1);
  CHECK_EQ(r.h.count, 0);
  hist_free(&r);

  /* from every position: exactly what follows it */
  for (int at = 0; at <= n; at++) {
    engine_pos_t since = pos_at(epoch, (uint64_t)at);
    r = history(e, "c", &since);
    CHECK_EQ(r.h.status, 0);
    CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
    CHECK_EQ(r.h.top.offset, n);
    CHECK_EQ(r.h.oldest, 1);
    check_run(&r, (uint64_t)at + 1, (size_t)(n - at), epoch);
    hist_free(&r);
  }
  /* an empty epoch means the current one */
  engine_pos_t since = pos_at("", 17);
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  check_run(&r, 18, 3, epoch);
  hist_free(&r);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_history_expired_by_size(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(5, 300000, &log);
  publish_n(e, "c", 20);
  const char *epoch = log.msgs[0]->epoch;
  engine_pos_t since = pos_at(epoch, 3);
  hist_result_t r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_HISTORY_EXPIRED);
  CHECK_EQ(r.h.oldest, 16);
  CHECK_EQ(r.h.top.offset, 20);
  check_run(&r, 16, 5, epoch);
  hist_free(&r);
  /* the edge: 15 is the last position still recoverable */
  since.offset = 15;
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  check_run(&r, 16, 5, epoch);
  hist_free(&r);
  since.offset = 14;
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_HISTORY_EXPIRED);
  check_run(&r, 16, 5, epoch);
  hist_free(&r);
  since.offset = 19;
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  check_run(&r, 20, 1, epoch);
  hist_free(&r);
  /* only 5 are held, so the other 15 messages are freed (ASan checks) */
  CHECK_EQ(info(e, "c").history_size, 5);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_history_bad_positions(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(10, 300000, &log);
  publish_n(e, "c", 4);
  const char *epoch = log.msgs[0]->epoch;

  engine_pos_t since = pos_at("zzzzzzzz", 2); /* another epoch */
  if (strcmp(epoch, "zzzzzzzz") == 0) since.epoch[0] = 'y';
  hist_result_t r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_EPOCH_CHANGED);
  CHECK(strcmp(r.h.top.epoch, epoch) == 0);
  check_run(&r, 1, 4, epoch); /* everything held */
  hist_free(&r);

  since = pos_at(epoch, 5); /* ahead of the channel */
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_BAD_POSITION);
  CHECK_EQ(r.h.top.offset, 4);
  check_run(&r, 1, 4, epoch);
  hist_free(&r);

  since = pos_at("", UINT64_MAX);
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_BAD_POSITION);
  hist_free(&r);

  since = pos_at(epoch, 4); /* exactly at the top: nothing to send */
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  CHECK_EQ(r.h.count, 0);
  hist_free(&r);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_history_new_channel(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(10, 300000, &log);
  CHECK(!info(e, "idle").exists);
  CHECK_EQ(e->vt->channel_count(e), 0);
  /* reading creates the channel, so its epoch exists from now on */
  hist_result_t r = history(e, "idle", NULL);
  CHECK_EQ(r.h.recovery, ENGINE_FRESH);
  CHECK_EQ(r.h.top.offset, 0);
  CHECK_EQ(r.h.oldest, 1);
  CHECK_EQ(strlen(r.h.top.epoch), TT_EPOCH_LEN);
  engine_pos_t top = r.h.top;
  hist_free(&r);
  CHECK(info(e, "idle").exists);
  CHECK_EQ(e->vt->channel_count(e), 1);
  publish_n(e, "idle", 2);
  r = history(e, "idle", &top);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  check_run(&r, 1, 2, top.epoch);
  hist_free(&r);
  /* position 0 of an unknown epoch on a fresh channel */
  engine_pos_t since = pos_at("", 0);
  r = history(e, "other", &since);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  CHECK_EQ(r.h.count, 0);
  hist_free(&r);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_no_history(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(0, 300000, &log);
  publish_n(e, "c", 3);
  CHECK_EQ(log.count, 3);
  engine_pos_t since = pos_at("", 1);
  hist_result_t r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_HISTORY_EXPIRED);
  CHECK_EQ(r.h.oldest, 4);
  CHECK_EQ(r.h.count, 0);
  hist_free(&r);
  since.offset = 3;
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  CHECK_EQ(r.h.count, 0);
  hist_free(&r);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_ttl_expiry(void) {
  sink_log_t log = {0};
  const uint64_t ttl = 60000;
  engine_t *e = engine_new(100, ttl, &log);
  publish_n(e, "c", 10);
  const uint64_t t0 = log.msgs[9]->time_ms;
  char epoch[TT_EPOCH_MAX + 1];
  memcpy(epoch, log.msgs[0]->epoch, sizeof(epoch));
  sink_clear(&log);

  e->vt->sweep(e, t0 + ttl / 2); /* not yet */
  CHECK_EQ(info(e, "c").history_size, 10);
  e->vt->watch(e, "c", 1); /* keeps the channel, not its history */
  e->vt->sweep(e, t0 + ttl + 1);
  engine_channel_info_t in = info(e, "c");
  CHECK(in.exists);
  CHECK_EQ(in.history_size, 0);
  CHECK_EQ(in.top.offset, 10);
  CHECK(strcmp(in.top.epoch, epoch) == 0);

  engine_pos_t since = pos_at(epoch, 2);
  hist_result_t r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_HISTORY_EXPIRED);
  CHECK_EQ(r.h.oldest, 11);
  CHECK_EQ(r.h.count, 0);
  hist_free(&r);
  since.offset = 10; /* up to date: nothing lost */
  r = history(e, "c", &since);
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  hist_free(&r);

  /* offsets go on after the history emptied */
  pub_result_t p = publish(e, "c", "m11");
  CHECK_EQ(p.pos.offset, 11);
  CHECK(strcmp(p.pos.epoch, epoch) == 0);
  e->vt->unwatch(e, "c", 1);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_sweep_forgets(void) {
  sink_log_t log = {0};
  const uint64_t ttl = 60000;
  engine_t *e = engine_new(100, ttl, &log);
  publish_n(e, "watched", 3);
  publish_n(e, "idle", 3);
  const uint64_t t0 = tt_now_ms();
  char watched_epoch[TT_EPOCH_MAX + 1], idle_epoch[TT_EPOCH_MAX + 1];
  memcpy(watched_epoch, log.msgs[0]->epoch, sizeof(watched_epoch));
  memcpy(idle_epoch, log.msgs[3]->epoch, sizeof(idle_epoch));
  sink_clear(&log);
  CHECK_EQ(e->vt->channel_count(e), 2);

  e->vt->watch(e, "watched", 7);
  e->vt->watch(e, "watched", 7); /* two watchers: one unwatch leaves it watched */
  e->vt->unwatch(e, "watched", 7);
  e->vt->unwatch(e, "never-watched", 13); /* harmless */
  CHECK_EQ(e->vt->channel_count(e), 2);

  /* one TTL later: histories empty; the unwatched one is forgotten at once
   * only if it was not used within the TTL, which it was not */
  e->vt->sweep(e, t0 + 2 * ttl + 10);
  CHECK_EQ(e->vt->channel_count(e), 1);
  engine_channel_info_t w = info(e, "watched");
  CHECK(w.exists);
  CHECK_EQ(w.history_size, 0);
  CHECK_EQ(w.top.offset, 3);
  CHECK(strcmp(w.top.epoch, watched_epoch) == 0);
  CHECK(!info(e, "idle").exists);

  /* it comes back from zero with a new epoch; old positions see the change */
  engine_pos_t since = pos_at(idle_epoch, 3);
  hist_result_t r = history(e, "idle", &since);
  CHECK_EQ(r.h.recovery, ENGINE_EPOCH_CHANGED);
  CHECK_EQ(r.h.top.offset, 0);
  CHECK(strcmp(r.h.top.epoch, idle_epoch) != 0);
  CHECK_EQ(r.h.count, 0);
  hist_free(&r);
  pub_result_t p = publish(e, "idle", "again");
  CHECK_EQ(p.pos.offset, 1);
  CHECK(strcmp(p.pos.epoch, idle_epoch) != 0);
  CHECK_EQ(e->vt->channel_count(e), 2);

  /* the last unwatch makes it forgettable after a TTL of disuse */
  e->vt->unwatch(e, "watched", 7);
  e->vt->sweep(e, tt_now_ms() + ttl / 2);
  CHECK(info(e, "watched").exists); /* used just now */
  e->vt->sweep(e, tt_now_ms() + 3 * ttl);
  CHECK(!info(e, "watched").exists);
  CHECK(!info(e, "idle").exists);
  CHECK_EQ(e->vt->channel_count(e), 0);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_sweep_keeps_history(void) {
  /* a channel with messages still in its TTL is not forgotten */
  sink_log_t log = {0};
  const uint64_t ttl = 60000;
  engine_t *e = engine_new(100, ttl, &log);
  publish_n(e, "c", 2);
  sink_clear(&log);
  e->vt->sweep(e, tt_now_ms() + ttl / 2);
  CHECK_EQ(e->vt->channel_count(e), 1);
  CHECK_EQ(info(e, "c").history_size, 2);
  e->vt->destroy(e); /* with history held: freed by destroy */
}

static void test_info(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(3, 300000, &log);
  engine_channel_info_t in = info(e, "nope");
  CHECK_EQ(in.status, 0);
  CHECK(!in.exists);
  CHECK_EQ(in.top.offset, 0);
  CHECK_EQ(in.history_size, 0);
  CHECK_EQ(e->vt->channel_count(e), 0); /* info does not create */
  publish_n(e, "c", 2);
  in = info(e, "c");
  CHECK(in.exists);
  CHECK_EQ(in.top.offset, 2);
  CHECK_EQ(in.history_size, 2);
  CHECK(strcmp(in.top.epoch, log.msgs[0]->epoch) == 0);
  publish_n(e, "c", 5);
  in = info(e, "c");
  CHECK_EQ(in.top.offset, 7);
  CHECK_EQ(in.history_size, 3);
  sink_clear(&log);
  e->vt->destroy(e);
}

static void test_refcounts(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(4, 300000, &log);
  publish_n(e, "c", 2);
  /* held by the history and by the sink's log */
  CHECK_EQ(atomic_load(&log.msgs[0]->refs), 2);
  hist_result_t r = history(e, "c", &(engine_pos_t){.offset = 0});
  CHECK_EQ(r.h.count, 2);
  CHECK_EQ(atomic_load(&log.msgs[0]->refs), 3); /* + the test's ref; the engine's own are gone */
  hist_free(&r);
  CHECK_EQ(atomic_load(&log.msgs[0]->refs), 2);
  publish_n(e, "c", 4); /* pushes the first two out of the ring */
  CHECK_EQ(atomic_load(&log.msgs[0]->refs), 1);
  CHECK_EQ(atomic_load(&log.msgs[5]->refs), 2);
  e->vt->destroy(e);
  CHECK_EQ(atomic_load(&log.msgs[5]->refs), 1); /* destroy let go of its history */
  sink_clear(&log);
  /* a large recovery (more than the engine's small inline array) */
  e = engine_new(64, 300000, &log);
  publish_n(e, "c", 40);
  sink_clear(&log);
  r = history(e, "c", &(engine_pos_t){.offset = 0});
  CHECK_EQ(r.h.recovery, ENGINE_RECOVERED);
  CHECK_EQ(r.h.count, 40);
  hist_free(&r);
  e->vt->destroy(e);
}

static void test_many_channels(void) {
  sink_log_t log = {0};
  engine_t *e = engine_new(2, 60000, &log);
  char name[32];
  for (int i = 0; i < 2000; i++) {
    snprintf(name, sizeof(name), "ch-%d", i);
    pub_result_t p = {0};
    e->vt->publish(e, NULL, name, strlen(name), "e", 1, "d", 1, on_published, &p);
    CHECK_EQ(p.pos.offset, 1);
    sink_clear(&log);
  }
  CHECK_EQ(e->vt->channel_count(e), 2000);
  for (int i = 0; i < 2000; i += 97) {
    snprintf(name, sizeof(name), "ch-%d", i);
    CHECK_EQ(info(e, name).top.offset, 1);
  }
  e->vt->sweep(e, tt_now_ms() + 10 * 60000);
  CHECK_EQ(e->vt->channel_count(e), 0);
  e->vt->destroy(e);
}

int main(void) {
  RUN(test_offsets_in_order);
  RUN(test_history_fresh_and_recovered);
  RUN(test_history_expired_by_size);
  RUN(test_history_bad_positions);
  RUN(test_history_new_channel);
  RUN(test_no_history);
  RUN(test_ttl_expiry);
  RUN(test_sweep_forgets);
  RUN(test_sweep_keeps_history);
  RUN(test_info);
  RUN(test_refcounts);
  RUN(test_many_channels);
  return test_report("test_engine_memory");
}
