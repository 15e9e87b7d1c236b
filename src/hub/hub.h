/*
 * hub: channels as seen by clients. Subscriptions per worker, fan-out of
 * every message the engine accepts to the workers that have subscribers and
 * from there to each subscriber's transport, recovery on subscribe, and
 * channel-name rules.
 *
 * Threads: a client and its subscriptions belong to one worker; every
 * hub_* call about them is made on that worker's thread. Messages cross from
 * the publishing thread to each interested worker through the worker's
 * inbox (a locked queue and a uv_async), in offset order per channel.
 */
#ifndef TUTTI_HUB_H
#define TUTTI_HUB_H

#include <uv.h>

#include "../core/core.h"
#include "../engine/engine.h"

#define HUB_CHANNEL_MAX 255
#define HUB_EVENT_MAX 64

typedef struct hub_s hub_t;
typedef struct hub_client_s hub_client_t;
typedef struct hub_sub_s hub_sub_t;
typedef struct hub_topic_s hub_topic_t;

/* What a transport does with a message for one of its subscriptions. */
typedef struct hub_client_vt_s {
  /* Queue `msg` (borrowed) for the client. Must not unsubscribe or close
   * synchronously: the hub is iterating the channel's subscribers. */
  void (*deliver)(hub_client_t *client, hub_sub_t *sub, tt_msg_t *msg);
} hub_client_vt_t;

/* Embedded by a transport's client object. */
struct hub_client_s {
  const hub_client_vt_t *vt;
  int worker;                /* the worker that owns the client */
};

/* One client's subscription to one channel; embedded or allocated by the
 * transport, which owns its memory. */
struct hub_sub_s {
  hub_client_t *client;
  hub_topic_t *topic;
  tt_list_t link;            /* in the topic's subscribers */
  engine_pos_t pos;          /* last position delivered */
  bool live;                 /* recovery done: deliveries flow */
  tt_msg_t **held;           /* live messages that came during recovery */
  size_t held_count, held_cap;
};

typedef struct hub_options_s {
  int workers;
} hub_options_t;

hub_t *hub_new(const hub_options_t *opts);
/* The sink to give the engine. */
engine_sink_t hub_engine_sink(hub_t *hub);
void hub_set_engine(hub_t *hub, engine_t *engine);
engine_t *hub_engine(hub_t *hub);
/* Prepares worker `id`'s part of the hub on its loop; before the loop runs. */
void hub_worker_init(hub_t *hub, int id, uv_loop_t *loop);
void hub_free(hub_t *hub);

/* ================================================================ names */

/* 0, or a negative errno; `why` gets the rule that was broken. */
int hub_channel_check(const char *name, size_t len, const char **why);
int hub_event_check(const char *name, size_t len, const char **why);

/* ================================================================ publishing */

/* Publishes through the engine; cb gets the assigned position. */
void hub_publish(hub_t *hub, uv_loop_t *loop, const char *channel, size_t clen, const char *event, size_t elen,
                 const char *data, size_t dlen, engine_publish_cb cb, void *ctx);

/* ================================================================ subscribing */

/*
 * Called once the engine has answered a subscription: `history` holds the
 * channel's position and, when a position was asked for, the messages after
 * it (borrowed for the call). The transport sends what it wants of them,
 * then calls hub_sub_live with the position it reached.
 */
typedef void (*hub_subscribe_cb)(void *ctx, hub_sub_t *sub, const engine_history_t *history);

/* Subscribes `sub` (zeroed by the caller) of `client` to `channel`,
 * recovering from `since` (NULL: no recovery). The channel must be valid. */
void hub_subscribe(hub_t *hub, hub_client_t *client, hub_sub_t *sub, const char *channel, size_t clen,
                   const engine_pos_t *since, hub_subscribe_cb cb, void *ctx);
/* Ends recovery: `pos` is the last position the client has; messages held
 * meanwhile that come after it are delivered now, then live ones. */
void hub_sub_live(hub_t *hub, hub_sub_t *sub, const engine_pos_t *pos);
/* Removes the subscription. Safe during the subscribe callback's aftermath,
 * never from inside deliver. */
void hub_unsubscribe(hub_t *hub, hub_sub_t *sub);

/* Local subscribers to `channel` on every worker (approximate while changing). */
uint64_t hub_channel_subscribers(hub_t *hub, const char *channel, size_t clen);
uint64_t hub_subscriptions(hub_t *hub);

#endif
