/* hub's private declarations, shared by its files. */
#ifndef TUTTI_HUB_INTERNAL_H
#define TUTTI_HUB_INTERNAL_H

#include <pthread.h>

#include "hub.h"

#define HUB_SHARDS 64

typedef struct hub_interest_s {
  tt_map_entry_t entry;
  uint64_t total;
  uint32_t *per_worker;
  char name[];
} hub_interest_t;

typedef struct hub_shard_s {
  pthread_mutex_t lock;
  tt_map_t map;
} hub_shard_t;

struct hub_topic_s {
  tt_map_entry_t entry;
  tt_list_t subs;
  char name[];
};

typedef struct hub_worker_s {
  hub_t *hub;
  int id;
  uv_timer_t upkeep;        /* renews rooms and presence of this worker's participants */
  tt_list_t members;        /* hub_room_member_t.link */
  uv_async_t wakeup;
  pthread_mutex_t lock;     /* guards the inbox */
  tt_msg_t **inbox;
  size_t inbox_len, inbox_cap;
  tt_msg_t **batch;         /* the inbox taken out, being delivered */
  size_t batch_cap;
  tt_map_t topics;
  bool ready;
} hub_worker_t;

struct hub_s {
  hub_room_options_t rooms;
  engine_t *engine;
  int nworkers;
  hub_worker_t *workers;
  hub_shard_t shards[HUB_SHARDS];
  atomic_uint_fast64_t subscriptions;
};

void hub__room_worker_init(hub_t *hub, hub_worker_t *hw, uv_loop_t *loop);

#endif
