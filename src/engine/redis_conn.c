/* A Redis connection on a libuv loop: pipelined commands, pushes, retries. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "redis.h"

#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000

struct redis_pending_s {
  redis_pending_t *next;
  redis_reply_cb cb;
  void *ctx;
  const char *confirm;
};

typedef struct redis_write_s {
  uv_write_t req;
  char *cmd;
} redis_write_t;

static void redis__connect(redis_conn_t *c);

/* ================================================================ state */

static void redis__set_state(redis_conn_t *c, redis_conn_state_t s) {
  if (c->state == s) return;
  c->state = s;
  if (c->hooks.on_state) c->hooks.on_state(c, s);
}

static void redis__fail_pending(redis_conn_t *c) {
  while (c->head != NULL) {
    redis_pending_t *p = c->head;
    c->head = p->next;
    if (c->head == NULL) c->tail = NULL;
    if (p->cb) p->cb(p->ctx, NULL);
    free(p);
  }
}

static void redis__on_retry(uv_timer_t *t) {
  redis_conn_t *c = tt_container_of(t, redis_conn_t, retry);
  redis__connect(c);
}

static void redis__on_tcp_closed(uv_handle_t *h) {
  redis_conn_t *c = tt_container_of((uv_tcp_t *)h, redis_conn_t, tcp);
  c->tcp_open = false;
  if (c->stopping) return;
  uv_timer_start(&c->retry, redis__on_retry, c->backoff_ms, 0);
  c->backoff_ms = TT_MIN(c->backoff_ms * 2, (uint64_t)REDIS_BACKOFF_MAX_MS);
}

/* The connection is lost (or never came up): fail what waits, retry later. */
static void redis__drop(redis_conn_t *c, const char *why) {
  if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp)) {
    if (c->state == REDIS_CONN_UP)
      tt_log(TT_LOG_WARN, "redis.disconnected", why, "\"host\":\"%s\",\"port\":%d,\"subscriber\":%s", c->host, c->port,
             c->subscriber ? "true" : "false");
    uv_close((uv_handle_t *)&c->tcp, redis__on_tcp_closed);
  }
  if (c->reader) {
    redisReaderFree(c->reader);
    c->reader = NULL;
  }
  redis__set_state(c, REDIS_CONN_DOWN);
  redis__fail_pending(c);
}

/* ================================================================ reading */

static bool redis__is_push(redisReply *r, const char **kind) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING) return false;
  *kind = r->element[0]->str;
  return true;
}

static void redis__dispatch(redis_conn_t *c, redisReply *r) {
  const char *kind = NULL;
  if (c->subscriber && redis__is_push(r, &kind)) {
    /* a confirmation answers the oldest command if it is of that kind;
     * anything else (messages, unsolicited unsubscribes) is a push */
    if (c->head != NULL && c->head->confirm != NULL && strcasecmp(kind, c->head->confirm) == 0) {
      /* fall through to the reply path */
    } else {
      if (c->hooks.on_push) c->hooks.on_push(c, r);
      return;
    }
  }
  redis_pending_t *p = c->head;
  if (p == NULL) {
    tt_log(TT_LOG_WARN, "redis.unexpected_reply", "a reply nobody waited for", "\"port\":%d", c->port);
    return;
  }
  c->head = p->next;
  if (c->head == NULL) c->tail = NULL;
  if (p->cb) p->cb(p->ctx, r);
  free(p);
}

static void redis__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  redis_conn_t *c = tt_container_of((uv_tcp_t *)h, redis_conn_t, tcp);
  *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void redis__on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  redis_conn_t *c = tt_container_of((uv_tcp_t *)s, redis_conn_t, tcp);
  if (n < 0) {
    redis__drop(c, n == UV_EOF ? "connection closed by Redis" : uv_strerror((int)n));
    return;
  }
  if (n == 0 || c->reader == NULL) return;
  if (redisReaderFeed(c->reader, buf->base, (size_t)n) != REDIS_OK) {
    redis__drop(c, "bad reply from Redis");
    return;
  }
  for (;;) {
    void *reply = NULL;
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
      redis__drop(c, "bad reply from Redis");
      return;
    }
    if (reply == NULL) break;
    redis__dispatch(c, reply);
    freeReplyObject(reply);
    if (c->reader == NULL) return; /* a callback dropped or stopped us */
  }
}

/* ================================================================ writing */

static void redis__after_write(uv_write_t *req, int status) {
  redis_write_t *w = tt_container_of(req, redis_write_t, req);
  redisFreeCommand(w->cmd);
  free(w);
  (void)status; /* a failed write shows up as a failed read */
}

int redis_conn_command(redis_conn_t *c, redis_reply_cb cb, void *ctx, const char *confirm, int argc,
                       const char **argv, const size_t *lens) {
  if (c->state != REDIS_CONN_UP && !(c->state == REDIS_CONN_CONNECTING && c->reader != NULL)) return -ENOTCONN;
  char *cmd = NULL;
  long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
  if (len < 0) return -ENOMEM;
  redis_write_t *w = tt_malloc(sizeof(*w));
  w->cmd = cmd;
  uv_buf_t b = uv_buf_init(cmd, (unsigned)len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, redis__after_write) != 0) {
    redisFreeCommand(cmd);
    free(w);
    return -ENOTCONN;
  }
  redis_pending_t *p = tt_calloc(1, sizeof(*p));
  p->cb = cb;
  p->ctx = ctx;
  p->confirm = confirm;
  if (c->tail) c->tail->next = p;
  else c->head = p;
  c->tail = p;
  return 0;
}

/* ================================================================ connecting */

static void redis__on_selected(void *ctx, redisReply *r) {
  redis_conn_t *c = ctx;
  if (r == NULL) return;
  if (r->type == REDIS_REPLY_ERROR) {
    tt_log(TT_LOG_ERROR, "redis.select_failed", r->str, "\"db\":%d", c->db);
    redis__drop(c, "SELECT failed");
    return;
  }
  c->backoff_ms = REDIS_BACKOFF_MIN_MS;
  redis__set_state(c, REDIS_CONN_UP);
}

static void redis__on_connect(uv_connect_t *req, int status) {
  redis_conn_t *c = tt_container_of(req, redis_conn_t, connect_req);
  if (c->stopping) return;
  if (status < 0) {
    redis__drop(c, uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->reader = redisReaderCreate();
  uv_read_start((uv_stream_t *)&c->tcp, redis__on_alloc, redis__on_read);
  if (c->db != 0) {
    char db[16];
    int n = snprintf(db, sizeof(db), "%d", c->db);
    const char *argv[] = {"SELECT", db};
    size_t lens[] = {6, (size_t)n};
    redis_conn_command(c, redis__on_selected, c, NULL, 2, argv, lens);
  } else {
    c->backoff_ms = REDIS_BACKOFF_MIN_MS;
    redis__set_state(c, REDIS_CONN_UP);
  }
}

static void redis__connect(redis_conn_t *c) {
  struct sockaddr_storage ss;
  if (uv_ip4_addr(c->host, c->port, (struct sockaddr_in *)&ss) != 0 &&
      uv_ip6_addr(c->host, c->port, (struct sockaddr_in6 *)&ss) != 0) {
    tt_log(TT_LOG_ERROR, "redis.bad_host", "Redis host must be an IP address", "\"host\":\"%s\"", c->host);
    return;
  }
  redis__set_state(c, REDIS_CONN_CONNECTING);
  uv_tcp_init(c->loop, &c->tcp);
  c->tcp_open = true;
  if (uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&ss, redis__on_connect) != 0)
    redis__drop(c, "connect failed");
}

void redis_conn_init(redis_conn_t *c, uv_loop_t *loop, const char *host, int port, int db, bool subscriber,
                     const redis_conn_hooks_t *hooks) {
  memset(c, 0, sizeof(*c));
  c->loop = loop;
  snprintf(c->host, sizeof(c->host), "%s", host);
  c->port = port;
  c->db = db;
  c->subscriber = subscriber;
  c->hooks = *hooks;
  c->backoff_ms = REDIS_BACKOFF_MIN_MS;
  c->state = REDIS_CONN_DOWN;
  uv_timer_init(loop, &c->retry);
}

void redis_conn_start(redis_conn_t *c) { redis__connect(c); }

void redis_conn_reset(redis_conn_t *c, const char *why) { redis__drop(c, why); }

static void redis__on_retry_closed(uv_handle_t *h) {
  redis_conn_t *c = tt_container_of((uv_timer_t *)h, redis_conn_t, retry);
  if (c->stop_done) c->stop_done(c);
}

void redis_conn_stop(redis_conn_t *c, void (*done)(redis_conn_t *c)) {
  c->stopping = true;
  c->stop_done = done;
  if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, NULL);
  if (c->reader) {
    redisReaderFree(c->reader);
    c->reader = NULL;
  }
  redis__fail_pending(c);
  uv_close((uv_handle_t *)&c->retry, redis__on_retry_closed);
}

/* ================================================================ cluster slots */

static uint16_t redis__crc16(const char *buf, size_t len) {
  uint16_t crc = 0;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)((unsigned char)buf[i] << 8);
    for (int k = 0; k < 8; k++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

unsigned redis_key_slot(const char *key, size_t len) {
  const char *open = memchr(key, '{', len);
  if (open != NULL) {
    const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
    if (close != NULL && close > open + 1) return redis__crc16(open + 1, (size_t)(close - open - 1)) & 16383;
  }
  return redis__crc16(key, len) & 16383;
}
