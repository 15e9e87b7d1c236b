/*
 * Private to the engine folder: a Redis connection on a libuv loop.
 *
 * hiredis 0.14 (Debian 12) parses and formats RESP, but its async layer
 * cannot carry sharded pub/sub (an `smessage` push trips an assertion), so
 * the socket, the reply queue and reconnection are ours: commands are
 * pipelined, each reply goes to the callback of the oldest command still
 * waiting, and on a subscriber connection pushes go to `on_push`.
 */
#ifndef TUTTI_ENGINE_REDIS_H
#define TUTTI_ENGINE_REDIS_H

#include <hiredis/hiredis.h>
#include <uv.h>

#include "../core/core.h"

typedef enum {
  REDIS_CONN_DOWN,        /* waiting to retry */
  REDIS_CONN_CONNECTING,
  REDIS_CONN_UP,
} redis_conn_state_t;

typedef struct redis_conn_s redis_conn_t;

/* `reply` is NULL when the connection failed before the reply came; it is
 * borrowed for the call. */
typedef void (*redis_reply_cb)(void *ctx, redisReply *reply);

typedef struct redis_conn_hooks_s {
  void (*on_state)(redis_conn_t *c, redis_conn_state_t state);
  void (*on_push)(redis_conn_t *c, redisReply *push); /* subscriber connections */
  void *data;
} redis_conn_hooks_t;

typedef struct redis_pending_s redis_pending_t;

struct redis_conn_s {
  uv_loop_t *loop;
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_timer_t retry;
  redis_conn_hooks_t hooks;
  char host[256];
  int port;
  int db;
  bool subscriber;
  redis_conn_state_t state;
  bool stopping;
  bool tcp_open;
  uint64_t backoff_ms;
  redisReader *reader;
  redis_pending_t *head, *tail; /* commands waiting for a reply, oldest first */
  void (*stop_done)(redis_conn_t *c);
  char rbuf[65536];
};

void redis_conn_init(redis_conn_t *c, uv_loop_t *loop, const char *host, int port, int db, bool subscriber,
                     const redis_conn_hooks_t *hooks);
void redis_conn_start(redis_conn_t *c);
/* Drops the connection (failing what waits) and reconnects after the backoff. */
void redis_conn_reset(redis_conn_t *c, const char *why);
/* Fails what waits and closes; `done` runs once the handles are closed. */
void redis_conn_stop(redis_conn_t *c, void (*done)(redis_conn_t *c));
/*
 * Sends a command. Returns 0, or -ENOTCONN when the connection is not up
 * (the callback is then not called). On a subscriber connection,
 * `confirm` names the push kind that answers it ("ssubscribe", ...).
 */
int redis_conn_command(redis_conn_t *c, redis_reply_cb cb, void *ctx, const char *confirm, int argc,
                       const char **argv, const size_t *lens);

/* The cluster hash slot of a key (CRC16/XMODEM of its hash tag, mod 16384). */
unsigned redis_key_slot(const char *key, size_t len);

#endif
