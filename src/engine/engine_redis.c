/*
 * The Redis engine: channels shared by many tutti nodes (and by workers in
 * any language) through Redis.
 *
 * Threads: one engine thread owns every Redis connection and runs its own
 * libuv loop. Workers hand it requests through a locked queue and a
 * uv_async; it answers each on the caller's loop through that loop's reply
 * queue and uv_async (engine `attach`). Messages that arrive by pub/sub go
 * to the hub's sink from the engine thread, one connection per channel, so
 * in offset order.
 *
 * Per node (a Redis primary): a command connection (FCALLs) and a subscriber
 * connection (SSUBSCRIBE in a cluster, SUBSCRIBE otherwise). A channel is
 * subscribed while some local client watches it; its history is read only
 * once the subscription is confirmed, so nothing falls between the two.
 * After a reconnection each watched channel is re-subscribed and what was
 * published meanwhile is read back from its stream before new pushes flow.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"
#include "redis.h"

extern const char tutti_lua_source[];
extern const size_t tutti_lua_source_len;

#define RDS_MAX_NODES 64
#define RDS_PRESENCE_FN "tutti_presence"
#define RDS_LEASE_MS 3000
#define RDS_MAX_HELD 65536  /* pushes held per channel while its refill is pending */
#define RDS_KEY_MAX 600

typedef struct rds_engine_s rds_engine_t;

typedef enum {
  RQ_PUBLISH,
  RQ_HISTORY,
  RQ_INFO,
  RQ_WATCH,
  RQ_UNWATCH,
  RQ_PRESENCE_SET,
  RQ_PRESENCE_REMOVE,
  RQ_PRESENCE_LIST,
  RQ_RECORD_CREATE,
  RQ_RECORD_GET,
  RQ_RECORD_TOUCH,
} rds_kind_t;

/* A request from a worker, answered on its loop. */
typedef struct rds_req_s {
  tt_list_t link;
  rds_kind_t kind;
  rds_engine_t *e;
  uv_loop_t *loop;
  void *cb;
  void *ctx;
  int attempts;
  /* inputs */
  char *channel;
  size_t clen;
  char *event;
  size_t elen;
  char *data;
  size_t dlen;
  bool has_since;
  engine_pos_t since;
  char *member;
  char *info;
  uint64_t ttl_ms;
  char *buf;               /* event and data */
  /* answers */
  int status;
  engine_pos_t pos;
  engine_history_t hist;
  tt_msg_t **msgs;
  engine_channel_info_t chinfo;
  engine_member_t *members;
  size_t nmembers;
  char *record;
} rds_req_t;

/* A loop that calls the engine, and the answers waiting for it. */
typedef struct rds_slot_s {
  uv_loop_t *loop;
  uv_async_t async;
  pthread_mutex_t lock;
  tt_list_t done;
} rds_slot_t;

typedef struct rds_node_s {
  rds_engine_t *e;
  char host[256];
  int port;
  redis_conn_t cmd;
  redis_conn_t sub;
  bool loaded;             /* functions loaded */
  bool stopped;
} rds_node_t;

/* A channel this node watches (engine thread only). */
typedef enum { W_NONE, W_PENDING, W_ACTIVE } rds_wstate_t;

typedef struct rds_watch_s {
  tt_map_entry_t entry;
  unsigned refs;
  rds_wstate_t state;
  uint64_t gen;            /* which SSUBSCRIBE confirms this state */
  rds_node_t *node;
  engine_pos_t last;       /* last position handed to the sink */
  bool filling;            /* reading back what a reconnection missed; pushes are held */
  bool refill_sent;        /* the read is on its way */
  tt_msg_t **held;         /* pushes that came while filling */
  size_t nheld, capheld;
  tt_list_t waiting;       /* history requests waiting for the subscription */
  char name[];
} rds_watch_t;

typedef struct rds_bridge_s {
  char *redis_channel;
  char *channel;
  bool leader;
} rds_bridge_t;

struct rds_engine_s {
  engine_t base;
  engine_options_t opts;
  char host[256];
  int port;
  int db;
  char node_id[TT_EPOCH_LEN + 1];

  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t tick;
  pthread_mutex_t lock;    /* guards `requests` and `stopping` */
  tt_list_t requests;
  bool stopping;
  bool started;
  bool destroying;         /* the workers' loops are gone: answer nobody */

  rds_slot_t *slots;
  int nslots;

  /* engine thread */
  rds_node_t *nodes[RDS_MAX_NODES];
  int nnodes;
  bool cluster;            /* known after the seed answers CLUSTER SLOTS */
  bool topology_known;
  uint16_t slot_node[16384];
  tt_map_t watches;
  uint64_t next_gen;
  rds_bridge_t *bridges;
  int nbridges;

  atomic_int state;        /* 0 down, 1 connecting, 2 up */
  atomic_size_t watched;
  atomic_uint_fast64_t bridge_relayed, bridge_invalid, disconnects;
};

static void rds__complete(rds_req_t *r, int status);
static void rds__answer(rds_req_t *r);
static void rds__run(rds_engine_t *e, rds_req_t *r);
static void rds__subscribe(rds_engine_t *e, rds_watch_t *w);
static void rds__resubscribe(rds_engine_t *e);
static rds_watch_t *rds__watch_get(rds_engine_t *e, const char *name, size_t len);
static void rds__update_state(rds_engine_t *e);
static void rds__topology(rds_engine_t *e);

/* ================================================================ keys */

static void rds__key(char *out, size_t cap, const char *channel, size_t clen, const char *suffix, size_t *len) {
  int n = snprintf(out, cap, "tutti:{%.*s}%s", (int)clen, channel, suffix);
  *len = (size_t)n;
}

static rds_node_t *rds__node_for(rds_engine_t *e, const char *channel, size_t clen) {
  if (e->nnodes == 0) return NULL;
  if (!e->cluster) return e->nodes[0];
  char key[300];
  size_t kl;
  rds__key(key, sizeof(key), channel, clen, "", &kl);
  unsigned slot = redis_key_slot(key, kl);
  return e->nodes[e->slot_node[slot] < e->nnodes ? e->slot_node[slot] : 0];
}

static bool rds__node_ready(const rds_node_t *n) {
  return n != NULL && n->cmd.state == REDIS_CONN_UP && n->sub.state == REDIS_CONN_UP && n->loaded;
}

static bool rds__up(const rds_engine_t *e) { return atomic_load(&e->state) == 2; }

/* History bounds of a channel: rooms' recordings keep their own. */
static void rds__bounds(const rds_engine_t *e, const char *channel, size_t clen, size_t *size, uint64_t *ttl) {
  const char *p = e->opts.long_prefix;
  bool lng = p != NULL && clen >= strlen(p) && strncmp(channel, p, strlen(p)) == 0;
  *size = lng ? e->opts.long_history_size : e->opts.history_size;
  *ttl = lng ? e->opts.long_history_ttl_ms : e->opts.history_ttl_ms;
}


/* ================================================================ answers */

static void rds__free_req(rds_req_t *r) {
  for (size_t i = 0; i < r->hist.count; i++) tt_msg_unref(r->msgs[i]);
  free(r->msgs);
  for (size_t i = 0; i < r->nmembers; i++) {
    free((char *)r->members[i].id);
    free((char *)r->members[i].info);
  }
  free(r->members);
  free(r->channel);
  free(r->member);
  free(r->info);
  free(r->buf);
  free(r->record);
  free(r);
}

static rds_slot_t *rds__slot(rds_engine_t *e, uv_loop_t *loop) {
  for (int i = 0; i < e->nslots; i++)
    if (e->slots[i].loop == loop) return &e->slots[i];
  return NULL;
}

/* Engine thread: hands a finished request back to its caller's loop. */
/* Runs a finished request's callback and frees it. */
static void rds__answer(rds_req_t *r) {
  if (r->cb != NULL) {
    switch (r->kind) {
      case RQ_PUBLISH:
        ((engine_publish_cb)r->cb)(r->ctx, r->status, &r->pos);
        break;
      case RQ_HISTORY:
        r->hist.status = r->status;
        r->hist.msgs = r->msgs;
        ((engine_history_cb)r->cb)(r->ctx, &r->hist);
        break;
      case RQ_INFO:
        r->chinfo.status = r->status;
        ((engine_info_cb)r->cb)(r->ctx, &r->chinfo);
        break;
      case RQ_PRESENCE_LIST:
        ((engine_presence_cb)r->cb)(r->ctx, r->status, r->members, r->nmembers);
        break;
      case RQ_RECORD_CREATE:
      case RQ_RECORD_GET:
        ((engine_record_cb)r->cb)(r->ctx, r->status, r->record);
        break;
      default:
        break;
    }
  }
  rds__free_req(r);
}

static void rds__complete(rds_req_t *r, int status) {
  r->status = status;
  if (r->e->destroying) {
    /* The workers have stopped and this thread is the only one left: the
     * callback runs here, so that its owner frees its context. */
    rds__answer(r);
    return;
  }
  rds_slot_t *s = rds__slot(r->e, r->loop);
  if (s == NULL || r->cb == NULL) {
    rds__free_req(r);
    return;
  }
  pthread_mutex_lock(&s->lock);
  tt_list_insert_tail(&s->done, &r->link);
  pthread_mutex_unlock(&s->lock);
  uv_async_send(&s->async);
}

/* Caller's loop: runs the callbacks of finished requests. */
static void rds__on_answers(uv_async_t *a) {
  rds_slot_t *s = tt_container_of(a, rds_slot_t, async);
  tt_list_t done;
  tt_list_init(&done);
  pthread_mutex_lock(&s->lock);
  if (!tt_list_empty(&s->done)) {
    done.next = s->done.next;
    done.prev = s->done.prev;
    done.next->prev = &done;
    done.prev->next = &done;
    tt_list_init(&s->done);
  }
  pthread_mutex_unlock(&s->lock);
  while (!tt_list_empty(&done)) {
    rds_req_t *r = tt_container_of(done.next, rds_req_t, link);
    tt_list_remove(&r->link);
    rds__answer(r);
  }
}

/* ================================================================ requests (any thread) */

static rds_req_t *rds__req(rds_engine_t *e, rds_kind_t kind, uv_loop_t *loop, const char *channel, size_t clen) {
  rds_req_t *r = tt_calloc(1, sizeof(*r));
  r->kind = kind;
  r->e = e;
  r->loop = loop;
  r->channel = tt_strndup(channel, clen);
  r->clen = clen;
  return r;
}

static void rds__submit(rds_engine_t *e, rds_req_t *r) {
  pthread_mutex_lock(&e->lock);
  bool stopping = e->stopping;
  if (!stopping) tt_list_insert_tail(&e->requests, &r->link);
  pthread_mutex_unlock(&e->lock);
  if (stopping) {
    rds__free_req(r);
    return;
  }
  uv_async_send(&e->wake);
}

static void rds_publish(engine_t *base, uv_loop_t *loop, const char *channel, size_t clen, const char *event,
                        size_t elen, const char *data, size_t dlen, engine_publish_cb cb, void *ctx) {
  rds_engine_t *e = (rds_engine_t *)base;
  if (!rds__up(e)) {
    engine_pos_t none = {0};
    cb(ctx, -ENOTCONN, &none); /* refused at once: nothing is accepted while Redis is away */
    return;
  }
  rds_req_t *r = rds__req(e, RQ_PUBLISH, loop, channel, clen);
  r->cb = (void *)cb;
  r->ctx = ctx;
  /* event and data in one block after the channel */
  char *block = tt_malloc(elen + dlen + 2);
  memcpy(block, event, elen);
  block[elen] = '\0';
  memcpy(block + elen + 1, data, dlen);
  block[elen + 1 + dlen] = '\0';
  r->event = block;
  r->elen = elen;
  r->data = block + elen + 1;
  r->dlen = dlen;
  r->buf = block;
  rds__submit(e, r);
}

static void rds_history(engine_t *base, uv_loop_t *loop, const char *channel, size_t clen, const engine_pos_t *since,
                        engine_history_cb cb, void *ctx) {
  rds_engine_t *e = (rds_engine_t *)base;
  if (!rds__up(e)) {
    engine_history_t h = {.status = -ENOTCONN};
    cb(ctx, &h);
    return;
  }
  rds_req_t *r = rds__req(e, RQ_HISTORY, loop, channel, clen);
  r->cb = (void *)cb;
  r->ctx = ctx;
  if (since != NULL) {
    r->has_since = true;
    r->since = *since;
  }
  r->hist.recovery = since ? ENGINE_RECOVERED : ENGINE_FRESH;
  rds__submit(e, r);
}

static void rds_info(engine_t *base, uv_loop_t *loop, const char *channel, size_t clen, engine_info_cb cb, void *ctx) {
  rds_engine_t *e = (rds_engine_t *)base;
  if (!rds__up(e)) {
    engine_channel_info_t info = {.status = -ENOTCONN};
    cb(ctx, &info);
    return;
  }
  rds_req_t *r = rds__req(e, RQ_INFO, loop, channel, clen);
  r->cb = (void *)cb;
  r->ctx = ctx;
  rds__submit(e, r);
}

static void rds_watch(engine_t *base, const char *channel, size_t clen) {
  rds_engine_t *e = (rds_engine_t *)base;
  rds__submit(e, rds__req(e, RQ_WATCH, NULL, channel, clen));
}

static void rds_unwatch(engine_t *base, const char *channel, size_t clen) {
  rds_engine_t *e = (rds_engine_t *)base;
  rds__submit(e, rds__req(e, RQ_UNWATCH, NULL, channel, clen));
}

static void rds_presence_set(engine_t *base, uv_loop_t *loop, const char *channel, size_t clen, const char *member,
                             const char *info, uint64_t ttl_ms) {
  rds_engine_t *e = (rds_engine_t *)base;
  rds_req_t *r = rds__req(e, RQ_PRESENCE_SET, loop, channel, clen);
  r->member = strdup(member);
  r->info = strdup(info);
  r->ttl_ms = ttl_ms;
  rds__submit(e, r);
}

static void rds_presence_remove(engine_t *base, uv_loop_t *loop, const char *channel, size_t clen, const char *member) {
  rds_engine_t *e = (rds_engine_t *)base;
  rds_req_t *r = rds__req(e, RQ_PRESENCE_REMOVE, loop, channel, clen);
  r->member = strdup(member);
  rds__submit(e, r);
}

static void rds_presence_list(engine_t *base, uv_loop_t *loop, const char *channel, size_t clen, engine_presence_cb cb,
                              void *ctx) {
  rds_engine_t *e = (rds_engine_t *)base;
  if (!rds__up(e)) {
    cb(ctx, -ENOTCONN, NULL, 0);
    return;
  }
  rds_req_t *r = rds__req(e, RQ_PRESENCE_LIST, loop, channel, clen);
  r->cb = (void *)cb;
  r->ctx = ctx;
  rds__submit(e, r);
}

static void rds_record_create(engine_t *base, uv_loop_t *loop, const char *key, const char *value, uint64_t ttl_ms,
                              engine_record_cb cb, void *ctx) {
  rds_engine_t *e = (rds_engine_t *)base;
  if (!rds__up(e)) {
    cb(ctx, -ENOTCONN, NULL);
    return;
  }
  rds_req_t *r = rds__req(e, RQ_RECORD_CREATE, loop, key, strlen(key));
  r->cb = (void *)cb;
  r->ctx = ctx;
  r->info = strdup(value);
  r->ttl_ms = ttl_ms;
  rds__submit(e, r);
}

static void rds_record_get(engine_t *base, uv_loop_t *loop, const char *key, engine_record_cb cb, void *ctx) {
  rds_engine_t *e = (rds_engine_t *)base;
  if (!rds__up(e)) {
    cb(ctx, -ENOTCONN, NULL);
    return;
  }
  rds_req_t *r = rds__req(e, RQ_RECORD_GET, loop, key, strlen(key));
  r->cb = (void *)cb;
  r->ctx = ctx;
  rds__submit(e, r);
}

static void rds_record_touch(engine_t *base, uv_loop_t *loop, const char *key, uint64_t ttl_ms) {
  rds_engine_t *e = (rds_engine_t *)base;
  rds_req_t *r = rds__req(e, RQ_RECORD_TOUCH, loop, key, strlen(key));
  r->ttl_ms = ttl_ms;
  rds__submit(e, r);
}

static size_t rds_channel_count(engine_t *base) { return atomic_load(&((rds_engine_t *)base)->watched); }

static const char *rds_state(engine_t *base) {
  static const char *const names[] = {"down", "connecting", "up"};
  return names[atomic_load(&((rds_engine_t *)base)->state)];
}

void engine_redis_stats(engine_t *base, engine_stats_t *out) {
  memset(out, 0, sizeof(*out));
  if (strcmp(base->vt->name, "redis") != 0) return;
  rds_engine_t *e = (rds_engine_t *)base;
  out->bridge_relayed = atomic_load(&e->bridge_relayed);
  out->bridge_invalid = atomic_load(&e->bridge_invalid);
  out->disconnects = atomic_load(&e->disconnects);
}

/* ================================================================ replies */

static bool rds__is_moved(const redisReply *r) {
  return r != NULL && r->type == REDIS_REPLY_ERROR && (strncmp(r->str, "MOVED ", 6) == 0 || strncmp(r->str, "ASK ", 4) == 0);
}

/* A failed command: retried after a topology refresh when Redis says the
 * slot moved, else answered with an error. */
static bool rds__retry_moved(rds_req_t *r, const redisReply *reply) {
  if (!rds__is_moved(reply) || r->attempts >= 3) return false;
  r->attempts++;
  rds__topology(r->e);
  pthread_mutex_lock(&r->e->lock); /* run again on the next wake, after the new topology */
  tt_list_insert_tail(&r->e->requests, &r->link);
  pthread_mutex_unlock(&r->e->lock);
  uv_async_send(&r->e->wake);
  return true;
}

static void rds__str(const redisReply *r, char *out, size_t cap) {
  out[0] = '\0';
  if (r == NULL) return;
  if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) snprintf(out, cap, "%.*s", (int)r->len, r->str);
  else if (r->type == REDIS_REPLY_INTEGER) snprintf(out, cap, "%lld", r->integer);
}

static uint64_t rds__u64(const redisReply *r) {
  if (r == NULL) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0 ? (uint64_t)r->integer : 0;
  if (r->type == REDIS_REPLY_STRING) return strtoull(r->str, NULL, 10);
  return 0;
}

static void rds__on_publish(void *ctx, redisReply *reply) {
  rds_req_t *r = ctx;
  if (rds__retry_moved(r, reply)) return;
  if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
    if (reply && reply->type == REDIS_REPLY_ERROR) tt_log(TT_LOG_WARN, "redis.publish_failed", reply->str, NULL);
    rds__complete(r, -EIO);
    return;
  }
  rds__str(reply->element[0], r->pos.epoch, sizeof(r->pos.epoch));
  r->pos.offset = rds__u64(reply->element[1]);
  r->pos.time_ms = reply->elements > 2 ? rds__u64(reply->element[2]) : tt_now_ms();
  rds__complete(r, 0);
}

static void rds__on_history(void *ctx, redisReply *reply) {
  rds_req_t *r = ctx;
  if (rds__retry_moved(r, reply)) return;
  if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 4 || (reply->elements - 4) % 4 != 0) {
    rds__complete(r, -EIO);
    return;
  }
  rds__str(reply->element[0], r->hist.top.epoch, sizeof(r->hist.top.epoch));
  r->hist.top.offset = rds__u64(reply->element[1]);
  r->hist.oldest = rds__u64(reply->element[2]);
  uint64_t rec = rds__u64(reply->element[3]);
  if (r->has_since) r->hist.recovery = rec <= 4 ? (engine_recovery_t)rec : ENGINE_BAD_POSITION;
  size_t n = (reply->elements - 4) / 4;
  if (n > 0) r->msgs = tt_malloc(n * sizeof(*r->msgs));
  for (size_t i = 0; i < n; i++) {
    redisReply **f = &reply->element[4 + 4 * i];
    const char *ev = f[1]->type == REDIS_REPLY_STRING ? f[1]->str : "message";
    size_t evl = f[1]->type == REDIS_REPLY_STRING ? f[1]->len : 7;
    tt_msg_t *m = tt_msg_new(r->channel, r->clen, ev, evl, f[3]->str ? f[3]->str : "", f[3]->str ? f[3]->len : 0,
                             r->hist.top.epoch, rds__u64(f[0]));
    m->time_ms = rds__u64(f[2]);
    r->msgs[i] = m;
  }
  r->hist.count = n;
  /* A watched channel that has had no push yet starts its "last handed out"
   * here, so a reconnection refills from this position too. */
  rds_watch_t *w = rds__watch_get(r->e, r->channel, r->clen);
  if (w != NULL && w->last.epoch[0] == '\0') w->last = r->hist.top;
  rds__complete(r, 0);
}

static void rds__on_info(void *ctx, redisReply *reply) {
  rds_req_t *r = ctx;
  if (rds__retry_moved(r, reply)) return;
  if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
    rds__complete(r, -EIO);
    return;
  }
  r->chinfo.exists = reply->element[0]->type == REDIS_REPLY_STRING;
  rds__str(reply->element[0], r->chinfo.top.epoch, sizeof(r->chinfo.top.epoch));
  r->chinfo.top.offset = rds__u64(reply->element[1]);
  r->chinfo.history_size = (size_t)rds__u64(reply->element[2]);
  rds__complete(r, 0);
}

static void rds__on_presence(void *ctx, redisReply *reply) {
  rds_req_t *r = ctx;
  if (rds__retry_moved(r, reply)) return;
  if (r->kind != RQ_PRESENCE_LIST) {
    rds__complete(r, reply && reply->type != REDIS_REPLY_ERROR ? 0 : -EIO);
    return;
  }
  if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
    rds__complete(r, -EIO);
    return;
  }
  size_t n = reply->elements / 2;
  if (n > 0) r->members = tt_calloc(n, sizeof(*r->members));
  for (size_t i = 0; i < n; i++) {
    r->members[i].id = tt_strndup(reply->element[2 * i]->str ? reply->element[2 * i]->str : "",
                                  reply->element[2 * i]->len);
    r->members[i].info = tt_strndup(reply->element[2 * i + 1]->str ? reply->element[2 * i + 1]->str : "",
                                    reply->element[2 * i + 1]->len);
  }
  r->nmembers = n;
  rds__complete(r, 0);
}

static void rds__on_record(void *ctx, redisReply *reply) {
  rds_req_t *r = ctx;
  if (rds__retry_moved(r, reply)) return;
  if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
    rds__complete(r, -EIO);
  } else if (r->kind == RQ_RECORD_CREATE) {
    bool ok = reply->type == REDIS_REPLY_STATUS;
    if (ok) r->record = strdup(r->info);
    rds__complete(r, ok ? 0 : -EEXIST);
  } else if (reply->type == REDIS_REPLY_STRING) {
    r->record = tt_strndup(reply->str, reply->len);
    rds__complete(r, 0);
  } else {
    rds__complete(r, -ENOENT);
  }
}

/* ================================================================ running requests (engine thread) */

static int rds__fcall(rds_node_t *n, redis_reply_cb cb, void *ctx, const char *fn, const char *channel, size_t clen,
                      const char *k1, const char *k2, int nargs, const char **args, const size_t *lens) {
  char key1[300], key2[300];
  size_t l1, l2;
  rds__key(key1, sizeof(key1), channel, clen, k1, &l1);
  rds__key(key2, sizeof(key2), channel, clen, k2, &l2);
  const char *argv[16] = {"FCALL", fn, "2", key1, key2};
  size_t lv[16] = {5, strlen(fn), 1, l1, l2};
  for (int i = 0; i < nargs; i++) {
    argv[5 + i] = args[i];
    lv[5 + i] = lens[i];
  }
  return redis_conn_command(&n->cmd, cb, ctx, NULL, 5 + nargs, argv, lv);
}

static rds_watch_t *rds__watch_get(rds_engine_t *e, const char *name, size_t len) {
  tt_map_entry_t *ent = tt_map_get(&e->watches, name, len, tt_hash(name, len));
  return ent ? tt_container_of(ent, rds_watch_t, entry) : NULL;
}

static void rds__run(rds_engine_t *e, rds_req_t *r) {
  char ttl[32], meta_ttl[32], maxlen[32], since_off[32];
  size_t hsize;
  uint64_t httl;
  rds__bounds(e, r->channel, r->clen, &hsize, &httl);
  size_t lttl = (size_t)snprintf(ttl, sizeof(ttl), "%" PRIu64, httl);
  size_t lmeta = (size_t)snprintf(meta_ttl, sizeof(meta_ttl), "%" PRIu64, e->opts.redis_meta_ttl_ms);
  rds_node_t *n = rds__node_for(e, r->channel, r->clen);
  int rc = -ENOTCONN;

  switch (r->kind) {
    case RQ_WATCH: {
      rds_watch_t *w = rds__watch_get(e, r->channel, r->clen);
      if (w == NULL) {
        w = tt_calloc(1, sizeof(*w) + r->clen + 1);
        memcpy(w->name, r->channel, r->clen);
        w->entry.key = w->name;
        w->entry.key_len = r->clen;
        w->entry.hash = tt_hash(w->name, r->clen);
        tt_list_init(&w->waiting);
        tt_map_put(&e->watches, &w->entry);
        atomic_fetch_add(&e->watched, 1);
      }
      if (w->refs++ == 0) rds__subscribe(e, w);
      rds__free_req(r);
      return;
    }
    case RQ_UNWATCH: {
      rds_watch_t *w = rds__watch_get(e, r->channel, r->clen);
      if (w != NULL && --w->refs == 0) {
        if (w->state != W_NONE && w->node && w->node->sub.state == REDIS_CONN_UP) {
          char topic[300];
          size_t tl;
          rds__key(topic, sizeof(topic), w->name, r->clen, "", &tl);
          const char *argv[] = {e->cluster ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", topic};
          size_t lens[] = {strlen(argv[0]), tl};
          redis_conn_command(&w->node->sub, NULL, NULL, e->cluster ? "sunsubscribe" : "unsubscribe", 2, argv, lens);
        }
        while (!tt_list_empty(&w->waiting)) {
          rds_req_t *h = tt_container_of(w->waiting.next, rds_req_t, link);
          tt_list_remove(&h->link);
          rds__complete(h, -ECANCELED);
        }
        for (size_t i = 0; i < w->nheld; i++) tt_msg_unref(w->held[i]);
        free(w->held);
        tt_map_remove(&e->watches, &w->entry);
        atomic_fetch_sub(&e->watched, 1);
        free(w);
      }
      rds__free_req(r);
      return;
    }
    case RQ_PUBLISH: {
      if (!rds__node_ready(n)) break;
      size_t lmax = (size_t)snprintf(maxlen, sizeof(maxlen), "%zu", hsize);
      const char *args[] = {r->channel, r->event, r->data, maxlen, ttl, meta_ttl, e->cluster ? "1" : "0"};
      size_t lens[] = {r->clen, r->elen, r->dlen, lmax, lttl, lmeta, 1};
      rc = rds__fcall(n, rds__on_publish, r, "tutti_publish", r->channel, r->clen, ":m", ":s", 7, args, lens);
      break;
    }
    case RQ_HISTORY: {
      rds_watch_t *w = rds__watch_get(e, r->channel, r->clen);
      if (w != NULL && w->state == W_PENDING) {
        tt_list_insert_tail(&w->waiting, &r->link); /* after the subscription is confirmed */
        return;
      }
      if (w != NULL && w->state == W_NONE) break; /* not subscribed: Redis is away */
      if (!rds__node_ready(n)) break;
      size_t lso = r->has_since ? (size_t)snprintf(since_off, sizeof(since_off), "%" PRIu64, r->since.offset) : 0;
      const char *args[] = {r->has_since ? r->since.epoch : "", since_off, ttl, meta_ttl};
      size_t lens[] = {r->has_since ? strlen(r->since.epoch) : 0, lso, lttl, lmeta};
      rc = rds__fcall(n, rds__on_history, r, "tutti_history", r->channel, r->clen, ":m", ":s", 4, args, lens);
      break;
    }
    case RQ_RECORD_CREATE:
    case RQ_RECORD_GET:
    case RQ_RECORD_TOUCH: {
      if (!rds__node_ready(n)) break;
      char key[300], ms[32];
      size_t kl, ml = (size_t)snprintf(ms, sizeof(ms), "%" PRIu64, r->ttl_ms);
      rds__key(key, sizeof(key), r->channel, r->clen, ":rec", &kl);
      if (r->kind == RQ_RECORD_CREATE) {
        const char *argv[] = {"SET", key, r->info, "NX", "PX", ms};
        size_t lens[] = {3, kl, strlen(r->info), 2, 2, ml};
        rc = redis_conn_command(&n->cmd, rds__on_record, r, NULL, 6, argv, lens);
      } else if (r->kind == RQ_RECORD_GET) {
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, kl};
        rc = redis_conn_command(&n->cmd, rds__on_record, r, NULL, 2, argv, lens);
      } else {
        const char *argv[] = {"PEXPIRE", key, ms};
        size_t lens[] = {7, kl, ml};
        rc = redis_conn_command(&n->cmd, rds__on_record, r, NULL, 3, argv, lens);
      }
      break;
    }
    case RQ_INFO:
      if (!rds__node_ready(n)) break;
      rc = rds__fcall(n, rds__on_info, r, "tutti_info", r->channel, r->clen, ":m", ":s", 0, NULL, NULL);
      break;
    case RQ_PRESENCE_SET:
    case RQ_PRESENCE_REMOVE:
    case RQ_PRESENCE_LIST: {
      if (!rds__node_ready(n)) break;
      char ttlbuf[32];
      size_t lt = (size_t)snprintf(ttlbuf, sizeof(ttlbuf), "%" PRIu64, r->ttl_ms);
      const char *op = r->kind == RQ_PRESENCE_SET ? "set" : r->kind == RQ_PRESENCE_REMOVE ? "del" : "list";
      const char *args[] = {op, r->member ? r->member : "", r->info ? r->info : "", ttlbuf};
      size_t lens[] = {strlen(op), r->member ? strlen(r->member) : 0, r->info ? strlen(r->info) : 0, lt};
      rc = rds__fcall(n, rds__on_presence, r, RDS_PRESENCE_FN, r->channel, r->clen, ":p", ":px", 4, args, lens);
      break;
    }
  }
  if (rc != 0) rds__complete(r, rc);
}

static void rds__on_wake(uv_async_t *a) {
  rds_engine_t *e = tt_container_of(a, rds_engine_t, wake);
  tt_list_t todo;
  tt_list_init(&todo);
  pthread_mutex_lock(&e->lock);
  while (!tt_list_empty(&e->requests)) {
    tt_list_t *l = e->requests.next;
    tt_list_remove(l);
    tt_list_insert_tail(&todo, l);
  }
  bool stopping = e->stopping;
  pthread_mutex_unlock(&e->lock);
  while (!tt_list_empty(&todo)) {
    rds_req_t *r = tt_container_of(todo.next, rds_req_t, link);
    tt_list_remove(&r->link);
    rds__run(e, r);
  }
  if (stopping) uv_stop(&e->loop);
}

/* ================================================================ subscriptions and pushes */

typedef struct rds_sub_ctx_s {
  rds_engine_t *e;
  uint64_t gen;
  size_t len;
  char name[];
} rds_sub_ctx_t;

static void rds__sink(rds_engine_t *e, rds_watch_t *w, tt_msg_t *m) {
  if (w->last.epoch[0] != '\0' && strcmp(w->last.epoch, m->epoch) == 0 && m->offset <= w->last.offset) return;
  memcpy(w->last.epoch, m->epoch, sizeof(w->last.epoch));
  w->last.offset = m->offset;
  e->base.sink.on_message(e->base.sink.data, m);
}

static void rds__refill(rds_engine_t *e, rds_watch_t *w);

/* What a reconnection missed, read back from the stream. */
static void rds__on_refill(void *ctx, redisReply *reply) {
  rds_sub_ctx_t *sc = ctx;
  rds_engine_t *e = sc->e;
  rds_watch_t *w = rds__watch_get(e, sc->name, sc->len);
  if (w != NULL && w->gen == sc->gen) {
    w->refill_sent = false;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 4 || (reply->elements - 4) % 4 != 0) {
      /* not read: keep holding; read again when the functions are loaded
       * again (connection lost) or on the next tick (an error reply) */
      if (rds__is_moved(reply)) rds__topology(e);
      free(sc);
      return;
    }
    char epoch[TT_EPOCH_MAX + 1];
    rds__str(reply->element[0], epoch, sizeof(epoch));
    for (size_t i = 4; i + 3 < reply->elements; i += 4) {
      redisReply **f = &reply->element[i];
      tt_msg_t *m = tt_msg_new(w->name, sc->len, f[1]->str ? f[1]->str : "message", f[1]->str ? f[1]->len : 7,
                               f[3]->str ? f[3]->str : "", f[3]->str ? f[3]->len : 0, epoch, rds__u64(f[0]));
      m->time_ms = rds__u64(f[2]);
      rds__sink(e, w, m);
      tt_msg_unref(m);
    }
    w->filling = false;
    for (size_t i = 0; i < w->nheld; i++) {
      rds__sink(e, w, w->held[i]);
      tt_msg_unref(w->held[i]);
    }
    w->nheld = 0;
  }
  free(sc);
}

/* Reads the stream from the last position handed to the sink; pushes are
 * held meanwhile. Needs the node's command connection up with the functions
 * loaded: otherwise it runs when they are (rds__on_loaded). */
static void rds__refill(rds_engine_t *e, rds_watch_t *w) {
  w->filling = true;
  if (w->refill_sent || !rds__node_ready(w->node)) return;
  char off[32], ttl[32], meta_ttl[32];
  size_t lo = (size_t)snprintf(off, sizeof(off), "%" PRIu64, w->last.offset);
  size_t hsize;
  uint64_t httl;
  rds__bounds(e, w->name, w->entry.key_len, &hsize, &httl);
  size_t lt = (size_t)snprintf(ttl, sizeof(ttl), "%" PRIu64, httl);
  size_t lm = (size_t)snprintf(meta_ttl, sizeof(meta_ttl), "%" PRIu64, e->opts.redis_meta_ttl_ms);
  const char *args[] = {w->last.epoch, off, ttl, meta_ttl};
  size_t lens[] = {strlen(w->last.epoch), lo, lt, lm};
  rds_sub_ctx_t *sc = tt_malloc(sizeof(*sc) + w->entry.key_len + 1);
  sc->e = e;
  sc->gen = w->gen;
  sc->len = w->entry.key_len;
  memcpy(sc->name, w->name, sc->len + 1);
  if (rds__fcall(w->node, rds__on_refill, sc, "tutti_history", w->name, sc->len, ":m", ":s", 4, args, lens) == 0)
    w->refill_sent = true;
  else
    free(sc);
}

static void rds__on_subscribed(void *ctx, redisReply *reply) {
  rds_sub_ctx_t *sc = ctx;
  rds_engine_t *e = sc->e;
  rds_watch_t *w = rds__watch_get(e, sc->name, sc->len);
  bool current = w != NULL && w->gen == sc->gen;
  free(sc);
  if (!current || reply == NULL) return; /* unwatched, superseded, or the connection failed */
  if (reply->type == REDIS_REPLY_ERROR) {
    /* refused (an ACL, a moved slot): not subscribed; the tick tries again */
    tt_log(TT_LOG_WARN, "redis.subscribe_failed", reply->str, "\"channel\":\"%s\"", w->name);
    w->state = W_NONE;
    while (!tt_list_empty(&w->waiting)) {
      rds_req_t *h = tt_container_of(w->waiting.next, rds_req_t, link);
      tt_list_remove(&h->link);
      rds__complete(h, -EIO);
    }
    if (rds__is_moved(reply)) rds__topology(e);
    return;
  }
  w->state = W_ACTIVE;
  /* After a reconnection: read back what was published meanwhile, holding
   * new pushes until that is delivered. */
  if (w->last.epoch[0] != '\0') rds__refill(e, w);
  while (!tt_list_empty(&w->waiting)) {
    rds_req_t *h = tt_container_of(w->waiting.next, rds_req_t, link);
    tt_list_remove(&h->link);
    rds__run(e, h);
  }
}

static void rds__subscribe(rds_engine_t *e, rds_watch_t *w) {
  w->node = rds__node_for(e, w->name, w->entry.key_len);
  w->state = W_NONE;
  /* done when the topology is known and the connection is up */
  if (!e->topology_known || w->node == NULL || w->node->sub.state != REDIS_CONN_UP) return;
  char topic[300];
  size_t tl;
  rds__key(topic, sizeof(topic), w->name, w->entry.key_len, "", &tl);
  rds_sub_ctx_t *sc = tt_malloc(sizeof(*sc) + w->entry.key_len + 1);
  sc->e = e;
  sc->gen = w->gen = ++e->next_gen;
  w->refill_sent = false; /* an older read's answer will be ignored */
  sc->len = w->entry.key_len;
  memcpy(sc->name, w->name, sc->len + 1);
  const char *argv[] = {e->cluster ? "SSUBSCRIBE" : "SUBSCRIBE", topic};
  size_t lens[] = {strlen(argv[0]), tl};
  if (redis_conn_command(&w->node->sub, rds__on_subscribed, sc, e->cluster ? "ssubscribe" : "subscribe", 2, argv,
                         lens) == 0)
    w->state = W_PENDING;
  else
    free(sc);
}

static void rds__on_relayed(void *ctx, redisReply *reply) {
  rds_engine_t *e = ctx;
  if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) atomic_fetch_add(&e->bridge_relayed, 1);
}

/* Relays through tutti_relay, which publishes only if this node holds the
 * lease in Redis at that moment: one relay per message. */
static void rds__bridge_message(rds_engine_t *e, rds_bridge_t *b, const char *data, size_t len) {
  if (!b->leader) return;
  if (tt_json_validate(data, len) != 0) {
    atomic_fetch_add(&e->bridge_invalid, 1);
    tt_log(TT_LOG_WARN, "bridge.invalid_json", "a bridged message is not valid JSON: not relayed",
           "\"redis_channel\":\"%s\",\"bytes\":%zu", b->redis_channel, len);
    return;
  }
  size_t clen = strlen(b->channel);
  rds_node_t *n = rds__node_for(e, b->channel, clen);
  if (!rds__node_ready(n)) return;
  char lease[RDS_KEY_MAX], meta[300], stream[300], maxlen[32], ttl[32], meta_ttl[32];
  size_t ll = (size_t)snprintf(lease, sizeof(lease), "tutti:{%s}:lease:%s", b->channel, b->redis_channel);
  size_t lm, ls;
  rds__key(meta, sizeof(meta), b->channel, clen, ":m", &lm);
  rds__key(stream, sizeof(stream), b->channel, clen, ":s", &ls);
  size_t hsize;
  uint64_t httl;
  rds__bounds(e, b->channel, clen, &hsize, &httl);
  size_t lmax = (size_t)snprintf(maxlen, sizeof(maxlen), "%zu", hsize);
  size_t lttl = (size_t)snprintf(ttl, sizeof(ttl), "%" PRIu64, httl);
  size_t lmt = (size_t)snprintf(meta_ttl, sizeof(meta_ttl), "%" PRIu64, e->opts.redis_meta_ttl_ms);
  const char *argv[] = {"FCALL", "tutti_relay", "3", lease, meta, stream, e->node_id, b->channel, "message", data,
                        maxlen, ttl, meta_ttl, e->cluster ? "1" : "0"};
  size_t lens[] = {5, 11, 1, ll, lm, ls, strlen(e->node_id), clen, 7, len, lmax, lttl, lmt, 1};
  redis_conn_command(&n->cmd, rds__on_relayed, e, NULL, 14, argv, lens);
}

static void rds__on_push(redis_conn_t *c, redisReply *p) {
  rds_node_t *n = tt_container_of(c, rds_node_t, sub);
  rds_engine_t *e = n->e;
  const char *kind = p->element[0]->str;
  if (strcasecmp(kind, "message") != 0 && strcasecmp(kind, "smessage") != 0) {
    if (strcasecmp(kind, "sunsubscribe") == 0 && p->element[1]->type == REDIS_REPLY_STRING) {
      /* the slot moved: find where it went and subscribe there (the tick
       * retries if the topology has not caught up yet) */
      redisReply *t = p->element[1];
      if (t->len > 8 && memcmp(t->str, "tutti:{", 7) == 0) {
        rds_watch_t *w = rds__watch_get(e, t->str + 7, t->len - 8);
        if (w != NULL) w->state = W_NONE;
      }
      rds__topology(e);
    }
    return;
  }
  redisReply *ch = p->element[1], *payload = p->element[2];
  if (ch->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING) return;
  for (int i = 0; i < e->nbridges; i++) {
    if (strlen(e->bridges[i].redis_channel) == ch->len && memcmp(e->bridges[i].redis_channel, ch->str, ch->len) == 0) {
      rds__bridge_message(e, &e->bridges[i], payload->str, payload->len);
      return;
    }
  }
  /* tutti:{CHANNEL} */
  if (ch->len < 9 || memcmp(ch->str, "tutti:{", 7) != 0 || ch->str[ch->len - 1] != '}') return;
  const char *name = ch->str + 7;
  size_t nl = ch->len - 8;
  rds_watch_t *w = rds__watch_get(e, name, nl);
  if (w == NULL) return;
  /* EPOCH\nOFFSET\nEVENT\nTIME\nDATA */
  const char *f[4], *q = payload->str, *end = payload->str + payload->len;
  size_t fl[4];
  for (int i = 0; i < 4; i++) {
    const char *nlp = memchr(q, '\n', (size_t)(end - q));
    if (nlp == NULL) return;
    f[i] = q;
    fl[i] = (size_t)(nlp - q);
    q = nlp + 1;
  }
  char epoch[TT_EPOCH_MAX + 1];
  snprintf(epoch, sizeof(epoch), "%.*s", (int)TT_MIN(fl[0], (size_t)TT_EPOCH_MAX), f[0]);
  tt_msg_t *m = tt_msg_new(name, nl, f[2], fl[2], q, (size_t)(end - q), epoch, strtoull(f[1], NULL, 10));
  m->time_ms = strtoull(f[3], NULL, 10);
  if (w->filling) {
    if (w->nheld >= RDS_MAX_HELD) {
      /* the refill will read these from the stream anyway: keep memory bounded */
      tt_msg_unref(m);
      return;
    }
    if (w->nheld == w->capheld) {
      w->capheld = w->capheld ? w->capheld * 2 : 8;
      w->held = tt_realloc(w->held, w->capheld * sizeof(*w->held));
    }
    w->held[w->nheld++] = m;
    return;
  }
  rds__sink(e, w, m);
  tt_msg_unref(m);
}

/* ================================================================ nodes and state */

static void rds__on_loaded(void *ctx, redisReply *r) {
  rds_node_t *n = ctx;
  if (r == NULL) return;
  if (r->type == REDIS_REPLY_ERROR) {
    /* e.g. -OOM or -LOADING: try again on a fresh connection, after the backoff */
    tt_log(TT_LOG_ERROR, "redis.function_load_failed", r->str, "\"host\":\"%s\",\"port\":%d", n->host, n->port);
    redis_conn_reset(&n->cmd, "FUNCTION LOAD failed");
    return;
  }
  n->loaded = true;
  rds_engine_t *e = n->e;
  for (size_t b = 0; b <= e->watches.mask; b++)
    for (tt_map_entry_t *ent = e->watches.buckets[b]; ent; ent = ent->next) {
      rds_watch_t *w = tt_container_of(ent, rds_watch_t, entry);
      if (w->node == n && w->filling && w->state == W_ACTIVE) rds__refill(e, w);
    }
  rds__update_state(e);
}

static void rds__bridge_subscribe(rds_engine_t *e, rds_node_t *n) {
  for (int i = 0; i < e->nbridges; i++) {
    const char *argv[] = {"SUBSCRIBE", e->bridges[i].redis_channel};
    size_t lens[] = {9, strlen(e->bridges[i].redis_channel)};
    redis_conn_command(&n->sub, NULL, NULL, "subscribe", 2, argv, lens);
  }
}

static void rds__on_conn_state(redis_conn_t *c, redis_conn_state_t s) {
  rds_node_t *n = c->hooks.data;
  rds_engine_t *e = n->e;
  if (e->destroying) return;
  if (c == &n->cmd) {
    if (s == REDIS_CONN_UP) {
      if (!e->topology_known && n == e->nodes[0]) {
        rds__topology(e);
      }
      const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", tutti_lua_source};
      size_t lens[] = {8, 4, 7, tutti_lua_source_len};
      redis_conn_command(&n->cmd, rds__on_loaded, n, NULL, 4, argv, lens);
    } else {
      n->loaded = false;
    }
  } else if (s == REDIS_CONN_UP) {
    if (n == e->nodes[0]) rds__bridge_subscribe(e, n);
    rds__resubscribe(e);
  } else if (s == REDIS_CONN_DOWN) {
    for (size_t b = 0; b <= e->watches.mask; b++)
      for (tt_map_entry_t *ent = e->watches.buckets[b]; ent; ent = ent->next) {
        rds_watch_t *w = tt_container_of(ent, rds_watch_t, entry);
        if (w->node != n) continue;
        w->state = W_NONE;
        while (!tt_list_empty(&w->waiting)) {
          rds_req_t *h = tt_container_of(w->waiting.next, rds_req_t, link);
          tt_list_remove(&h->link);
          rds__complete(h, -ENOTCONN);
        }
      }
  }
  if (s == REDIS_CONN_DOWN) atomic_fetch_add(&e->disconnects, 1);
  rds__update_state(e);
}

static void rds__update_state(rds_engine_t *e) {
  int st = e->topology_known && e->nnodes > 0 ? 2 : 1;
  for (int i = 0; i < e->nnodes; i++) {
    rds_node_t *n = e->nodes[i];
    if (!rds__node_ready(n)) st = (n->cmd.state == REDIS_CONN_DOWN || n->sub.state == REDIS_CONN_DOWN) ? 0 : 1;
  }
  int old = atomic_exchange(&e->state, st);
  if (old != st)
    tt_log(old == 2 ? TT_LOG_WARN : TT_LOG_INFO, "engine.state", st == 2 ? "Redis engine is up" : "Redis engine is not up",
           "\"state\":\"%s\",\"nodes\":%d,\"cluster\":%s", rds_state(&e->base), e->nnodes, e->cluster ? "true" : "false");
}

static rds_node_t *rds__node_add(rds_engine_t *e, const char *host, int port) {
  for (int i = 0; i < e->nnodes; i++)
    if (e->nodes[i]->port == port && strcmp(e->nodes[i]->host, host) == 0) return e->nodes[i];
  if (e->nnodes == RDS_MAX_NODES) return NULL;
  rds_node_t *n = tt_calloc(1, sizeof(*n));
  n->e = e;
  snprintf(n->host, sizeof(n->host), "%s", host);
  n->port = port;
  redis_conn_hooks_t hooks = {.on_state = rds__on_conn_state, .on_push = rds__on_push, .data = n};
  redis_conn_init(&n->cmd, &e->loop, host, port, e->db, false, &hooks);
  redis_conn_init(&n->sub, &e->loop, host, port, e->db, true, &hooks);
  e->nodes[e->nnodes++] = n;
  redis_conn_start(&n->cmd);
  redis_conn_start(&n->sub);
  return n;
}

/* CLUSTER SLOTS: which primary serves which slot; an error means Redis is
 * not a cluster. */
static void rds__on_slots(void *ctx, redisReply *r) {
  rds_engine_t *e = ctx;
  if (r == NULL) return;
  if (r->type == REDIS_REPLY_ERROR) {
    if (strstr(r->str, "cluster support disabled") == NULL) {
      /* not an answer about the topology (-LOADING, an ACL...): ask again */
      tt_log(TT_LOG_WARN, "redis.cluster_slots_failed", r->str, NULL);
      if (e->nnodes > 0) redis_conn_reset(&e->nodes[0]->cmd, "CLUSTER SLOTS failed");
      return;
    }
    e->cluster = false;
    e->topology_known = true;
    rds__resubscribe(e);
    rds__update_state(e);
    return;
  }
  if (r->type != REDIS_REPLY_ARRAY) return;
  e->cluster = true;
  for (size_t i = 0; i < r->elements; i++) {
    redisReply *range = r->element[i];
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) continue;
    redisReply *primary = range->element[2];
    if (primary->type != REDIS_REPLY_ARRAY || primary->elements < 2) continue;
    char host[256];
    rds__str(primary->element[0], host, sizeof(host));
    if (host[0] == '\0') snprintf(host, sizeof(host), "%s", e->host);
    rds_node_t *n = rds__node_add(e, host, (int)rds__u64(primary->element[1]));
    if (n == NULL) continue;
    int idx = 0;
    while (e->nodes[idx] != n) idx++;
    for (uint64_t s = rds__u64(range->element[0]); s <= rds__u64(range->element[1]) && s < 16384; s++)
      e->slot_node[s] = (uint16_t)idx;
  }
  e->topology_known = true;
  rds__resubscribe(e);
  rds__update_state(e);
}

/* Subscribes what is not subscribed, and moves channels whose slot now lives
 * on another node. */
static void rds__resubscribe(rds_engine_t *e) {
  for (size_t b = 0; b <= e->watches.mask; b++)
    for (tt_map_entry_t *ent = e->watches.buckets[b]; ent; ent = ent->next) {
      rds_watch_t *w = tt_container_of(ent, rds_watch_t, entry);
      if (w->state == W_NONE || w->node != rds__node_for(e, w->name, w->entry.key_len)) rds__subscribe(e, w);
    }
}

static void rds__topology(rds_engine_t *e) {
  for (int i = 0; i < e->nnodes; i++) {
    if (e->nodes[i]->cmd.state != REDIS_CONN_UP) continue;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    size_t lens[] = {7, 5};
    if (redis_conn_command(&e->nodes[i]->cmd, rds__on_slots, e, NULL, 2, argv, lens) == 0) return;
  }
}

/* Once a second: the bridge leases. */
static void rds__on_lease(void *ctx, redisReply *r) {
  rds_bridge_t *b = ctx;
  bool was = b->leader;
  b->leader = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  if (b->leader != was)
    tt_log(TT_LOG_INFO, "bridge.lease", b->leader ? "this node relays the bridged channel" : "another node relays it",
           "\"redis_channel\":\"%s\",\"channel\":\"%s\"", b->redis_channel, b->channel);
}

static void rds__on_tick(uv_timer_t *t) {
  rds_engine_t *e = tt_container_of(t, rds_engine_t, tick);
  /* subscriptions refused and refills that failed are tried again here, once a second */
  if (e->topology_known) rds__resubscribe(e);
  for (size_t b = 0; b <= e->watches.mask; b++)
    for (tt_map_entry_t *ent = e->watches.buckets[b]; ent; ent = ent->next) {
      rds_watch_t *w = tt_container_of(ent, rds_watch_t, entry);
      if (w->filling && !w->refill_sent && w->state == W_ACTIVE) rds__refill(e, w);
    }
  for (int i = 0; i < e->nbridges; i++) {
    rds_bridge_t *b = &e->bridges[i];
    char key[RDS_KEY_MAX], ttl[32];
    int kl = snprintf(key, sizeof(key), "tutti:{%s}:lease:%s", b->channel, b->redis_channel); /* fits: checked at parse */
    int tl = snprintf(ttl, sizeof(ttl), "%d", RDS_LEASE_MS);
    rds_node_t *n = rds__node_for(e, b->channel, strlen(b->channel));
    const char *argv[] = {"FCALL", "tutti_lease", "1", key, e->node_id, ttl};
    size_t lens[] = {5, 11, 1, (size_t)kl, strlen(e->node_id), (size_t)tl};
    if (n == NULL || redis_conn_command(&n->cmd, rds__on_lease, b, NULL, 6, argv, lens) != 0) b->leader = false;
  }
}

/* ================================================================ thread and life */

static void rds__thread(void *arg) {
  rds_engine_t *e = arg;
  uv_run(&e->loop, UV_RUN_DEFAULT);
}

static void rds_attach(engine_t *base, int id, uv_loop_t *loop) {
  rds_engine_t *e = (rds_engine_t *)base;
  rds_slot_t *s = &e->slots[id];
  s->loop = loop;
  pthread_mutex_init(&s->lock, NULL);
  tt_list_init(&s->done);
  uv_async_init(loop, &s->async, rds__on_answers);
}

static int rds_start(engine_t *base) {
  rds_engine_t *e = (rds_engine_t *)base;
  rds__node_add(e, e->host, e->port);
  uv_timer_start(&e->tick, rds__on_tick, 0, 1000);
  e->started = true;
  return uv_thread_create(&e->thread, rds__thread, e);
}

static void rds__close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* After the workers have stopped (their loops, and so the answer slots, are
 * gone). */
static void rds_destroy(engine_t *base) {
  rds_engine_t *e = (rds_engine_t *)base;
  if (e->started) {
    pthread_mutex_lock(&e->lock);
    e->stopping = true;
    pthread_mutex_unlock(&e->lock);
    uv_async_send(&e->wake);
    uv_thread_join(&e->thread);
  }
  e->destroying = true;
  for (int i = 0; i < e->nnodes; i++) {
    redis_conn_stop(&e->nodes[i]->cmd, NULL);
    redis_conn_stop(&e->nodes[i]->sub, NULL);
  }
  uv_walk(&e->loop, rds__close_walk, NULL);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  uv_loop_close(&e->loop);
  /* requests never run, answers never taken, history reads parked on a
   * subscription: each callback runs once, cancelled */
  while (!tt_list_empty(&e->requests)) {
    rds_req_t *r = tt_container_of(e->requests.next, rds_req_t, link);
    tt_list_remove(&r->link);
    rds__complete(r, -ECANCELED);
  }
  for (int i = 0; i < e->nslots; i++) {
    while (!tt_list_empty(&e->slots[i].done)) {
      rds_req_t *r = tt_container_of(e->slots[i].done.next, rds_req_t, link);
      tt_list_remove(&r->link);
      rds__answer(r);
    }
    if (e->slots[i].loop) pthread_mutex_destroy(&e->slots[i].lock);
  }
  for (size_t b = 0; b <= e->watches.mask; b++) {
    tt_map_entry_t *ent = e->watches.buckets[b], *next;
    for (; ent; ent = next) {
      next = ent->next;
      rds_watch_t *w = tt_container_of(ent, rds_watch_t, entry);
      while (!tt_list_empty(&w->waiting)) {
        rds_req_t *r = tt_container_of(w->waiting.next, rds_req_t, link);
        tt_list_remove(&r->link);
        rds__complete(r, -ECANCELED);
      }
      for (size_t i = 0; i < w->nheld; i++) tt_msg_unref(w->held[i]);
      free(w->held);
      free(w);
    }
  }
  tt_map_free(&e->watches);
  for (int i = 0; i < e->nnodes; i++) free(e->nodes[i]);
  for (int i = 0; i < e->nbridges; i++) {
    free(e->bridges[i].redis_channel);
    free(e->bridges[i].channel);
  }
  free(e->bridges);
  free(e->slots);
  pthread_mutex_destroy(&e->lock);
  free(e);
}

static void rds_sweep(engine_t *base, uint64_t now_ms) {
  (void)base;
  (void)now_ms; /* Redis expires history itself */
}

static const engine_vt_t engine_redis_vt = {
    .name = "redis",
    .publish = rds_publish,
    .history = rds_history,
    .info = rds_info,
    .watch = rds_watch,
    .unwatch = rds_unwatch,
    .presence_set = rds_presence_set,
    .presence_remove = rds_presence_remove,
    .presence_list = rds_presence_list,
    .record_create = rds_record_create,
    .record_get = rds_record_get,
    .record_touch = rds_record_touch,
    .channel_count = rds_channel_count,
    .state = rds_state,
    .attach = rds_attach,
    .start = rds_start,
    .sweep = rds_sweep,
    .destroy = rds_destroy,
};

/* redis://[user:pass@]host[:port][/db]; only host, port and db are used. */
static int rds__parse_url(rds_engine_t *e, const char *url) {
  const char *p = url;
  if (strncmp(p, "redis://", 8) != 0) return -EINVAL;
  p += 8;
  const char *at = strchr(p, '@');
  if (at != NULL) p = at + 1;
  const char *end = p + strcspn(p, "/");
  const char *colon = memchr(p, ':', (size_t)(end - p));
  size_t hl = (size_t)((colon ? colon : end) - p);
  if (hl == 0 || hl >= sizeof(e->host)) return -EINVAL;
  memcpy(e->host, p, hl);
  e->host[hl] = '\0';
  if (strcmp(e->host, "localhost") == 0) snprintf(e->host, sizeof(e->host), "127.0.0.1");
  e->port = 6379;
  if (colon != NULL) {
    char *q;
    long port = strtol(colon + 1, &q, 10);
    if (q != end || port <= 0 || port > 65535) return -EINVAL;
    e->port = (int)port;
  }
  e->db = 0;
  if (*end == '/' && end[1] != '\0') {
    char *q;
    long db = strtol(end + 1, &q, 10);
    if (*q != '\0' || db < 0 || db > 1000000) return -EINVAL;
    e->db = (int)db;
  }
  return 0;
}

static int rds__parse_bridges(rds_engine_t *e, const char *spec) {
  if (spec == NULL || spec[0] == '\0') return 0;
  for (const char *p = spec; *p;) {
    while (*p == ' ' || *p == ',') p++;
    if (*p == '\0') break;
    const char *end = p + strcspn(p, ",");
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq == NULL || eq == p || eq + 1 == end || eq - p > 200) return -EINVAL;
    if (!tt_channel_valid(eq + 1, (size_t)(end - eq - 1))) return -EINVAL;
    e->bridges = tt_realloc(e->bridges, (size_t)(e->nbridges + 1) * sizeof(*e->bridges));
    e->bridges[e->nbridges].redis_channel = tt_strndup(p, (size_t)(eq - p));
    e->bridges[e->nbridges].channel = tt_strndup(eq + 1, (size_t)(end - eq - 1));
    e->bridges[e->nbridges].leader = false;
    e->nbridges++;
    p = end;
  }
  return 0;
}

engine_t *engine_redis_new(const engine_options_t *opts, const engine_sink_t *sink) {
  rds_engine_t *e = tt_calloc(1, sizeof(*e));
  e->base.vt = &engine_redis_vt;
  e->base.sink = *sink;
  e->opts = *opts;
  if (rds__parse_url(e, opts->redis_url ? opts->redis_url : "redis://127.0.0.1:6379") != 0) {
    fprintf(stderr, "tutti: invalid value for setting 'redis_url': '%s'; expected redis://host[:port][/db]\n",
            opts->redis_url);
    free(e);
    return NULL;
  }
  if (rds__parse_bridges(e, opts->redis_bridge) != 0) {
    fprintf(stderr,
            "tutti: invalid value for setting 'redis_bridge': '%s'; expected redis-channel=tutti-channel[,...]\n",
            opts->redis_bridge);
    free(e->bridges);
    free(e);
    return NULL;
  }
  tt_random_token(e->node_id, TT_EPOCH_LEN);
  e->nslots = opts->workers;
  e->slots = tt_calloc((size_t)opts->workers, sizeof(*e->slots));
  pthread_mutex_init(&e->lock, NULL);
  tt_list_init(&e->requests);
  tt_map_init(&e->watches);
  atomic_init(&e->state, 1);
  uv_loop_init(&e->loop);
  uv_async_init(&e->loop, &e->wake, rds__on_wake);
  uv_timer_init(&e->loop, &e->tick);
  return &e->base;
}
