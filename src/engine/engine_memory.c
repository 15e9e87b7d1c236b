/*
 * The memory engine: channels in one process. Channels are spread over
 * shards, each a map under its own mutex; a channel keeps a ring of its last
 * `history_size` messages. Publish assigns the offset, appends and hands the
 * message to the sink all under the shard lock, so the sink sees each
 * channel's messages in offset order.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "engine.h"

#define MEM_SHARDS 64

typedef struct mem_member_s {
  char *id;
  char *info;
  uint64_t expires_ms;
} mem_member_t;

typedef struct mem_channel_s {
  tt_map_entry_t entry;
  mem_member_t *members;  /* presence */
  size_t nmembers;
  char epoch[TT_EPOCH_MAX + 1];
  uint64_t last_offset;
  unsigned watchers;
  uint64_t last_used_ms; /* last publish, read or unwatch */
  tt_msg_t **ring;     /* capacity `cap` */
  size_t cap;
  uint64_t ttl_ms;
  size_t head;         /* index of the oldest */
  size_t count;
  char name[];
} mem_channel_t;

typedef struct mem_shard_s {
  pthread_mutex_t lock;
  tt_map_t channels;
} mem_shard_t;

typedef struct mem_record_s {
  tt_map_entry_t entry;
  char *value;
  uint64_t expires_ms;
  char key[];
} mem_record_t;

typedef struct mem_engine_s {
  engine_t base;
  engine_options_t opts;
  pthread_mutex_t records_lock;
  tt_map_t records;
  mem_shard_t shards[MEM_SHARDS];
  atomic_size_t channel_count;
} mem_engine_t;

/* ================================================================ channels */

static mem_shard_t *mem__shard(mem_engine_t *me, uint64_t hash) { return &me->shards[(hash >> 32) % MEM_SHARDS]; }

static mem_channel_t *mem__get(mem_engine_t *me, mem_shard_t *sh, const char *name, size_t len, uint64_t hash,
                               bool create) {
  tt_map_entry_t *e = tt_map_get(&sh->channels, name, len, hash);
  if (e != NULL) return tt_container_of(e, mem_channel_t, entry);
  if (!create) return NULL;
  mem_channel_t *ch = tt_calloc(1, sizeof(*ch) + len + 1);
  memcpy(ch->name, name, len);
  ch->entry.key = ch->name;
  ch->entry.key_len = len;
  ch->entry.hash = hash;
  tt_random_token(ch->epoch, TT_EPOCH_LEN);
  bool lng = me->opts.long_prefix != NULL && len >= strlen(me->opts.long_prefix) &&
             memcmp(name, me->opts.long_prefix, strlen(me->opts.long_prefix)) == 0;
  ch->cap = lng ? me->opts.long_history_size : me->opts.history_size;
  ch->ttl_ms = lng ? me->opts.long_history_ttl_ms : me->opts.history_ttl_ms;
  ch->ring = ch->cap ? tt_calloc(ch->cap, sizeof(*ch->ring)) : NULL;
  tt_map_put(&sh->channels, &ch->entry);
  atomic_fetch_add(&me->channel_count, 1);
  return ch;
}

static void mem__drop_oldest(mem_engine_t *me, mem_channel_t *ch) {
  (void)me;
  tt_msg_unref(ch->ring[ch->head]);
  ch->ring[ch->head] = NULL;
  ch->head = (ch->head + 1) % ch->cap;
  ch->count--;
}

static void mem__expire(mem_engine_t *me, mem_channel_t *ch, uint64_t now_ms) {
  while (ch->count > 0 && ch->ring[ch->head]->time_ms + ch->ttl_ms <= now_ms) mem__drop_oldest(me, ch);
}

static void mem__member_drop(mem_channel_t *ch, size_t i) {
  free(ch->members[i].id);
  free(ch->members[i].info);
  ch->members[i] = ch->members[--ch->nmembers];
}

static void mem__forget(mem_engine_t *me, mem_shard_t *sh, mem_channel_t *ch) {
  while (ch->count > 0) mem__drop_oldest(me, ch);
  while (ch->nmembers > 0) mem__member_drop(ch, 0);
  free(ch->members);
  tt_map_remove(&sh->channels, &ch->entry);
  atomic_fetch_sub(&me->channel_count, 1);
  free(ch->ring);
  free(ch);
}

/* ================================================================ operations */

static void mem_publish(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const char *event, size_t elen,
                        const char *data, size_t dlen, engine_publish_cb cb, void *ctx) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  engine_pos_t pos;

  pthread_mutex_lock(&sh->lock);
  mem_channel_t *ch = mem__get(me, sh, channel, clen, hash, true);
  ch->last_used_ms = tt_now_ms();
  tt_msg_t *msg = tt_msg_new(channel, clen, event, elen, data, dlen, ch->epoch, ++ch->last_offset);
  if (ch->cap > 0) {
    mem__expire(me, ch, msg->time_ms);
    if (ch->count == ch->cap) mem__drop_oldest(me, ch);
    ch->ring[(ch->head + ch->count) % ch->cap] = tt_msg_ref(msg);
    ch->count++;
  }
  e->sink.on_message(e->sink.data, msg);
  memcpy(pos.epoch, ch->epoch, sizeof(pos.epoch));
  pos.offset = msg->offset;
  pos.time_ms = msg->time_ms;
  pthread_mutex_unlock(&sh->lock);

  tt_msg_unref(msg);
  cb(ctx, 0, &pos);
}

static void mem_history(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const engine_pos_t *since,
                        engine_history_cb cb, void *ctx) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  engine_history_t h = {.recovery = since ? ENGINE_RECOVERED : ENGINE_FRESH};
  tt_msg_t *small[16];
  tt_msg_t **msgs = small;

  pthread_mutex_lock(&sh->lock);
  /* Created on read so that its epoch exists from now on: a client that
   * connects to an idle channel can still recover what comes next. */
  mem_channel_t *ch = mem__get(me, sh, channel, clen, hash, true);
  ch->last_used_ms = tt_now_ms();
  mem__expire(me, ch, ch->last_used_ms);
  memcpy(h.top.epoch, ch->epoch, sizeof(h.top.epoch));
  h.top.offset = ch->last_offset;
  h.oldest = ch->count ? ch->ring[ch->head]->offset : ch->last_offset + 1;
  if (since != NULL) {
    uint64_t from = 0; /* first offset to send */
    if (since->epoch[0] != '\0' && strcmp(since->epoch, ch->epoch) != 0) {
      h.recovery = ENGINE_EPOCH_CHANGED;
      from = h.oldest;
    } else if (since->offset > ch->last_offset) {
      h.recovery = ENGINE_BAD_POSITION;
      from = h.oldest;
    } else if (since->offset + 1 < h.oldest) {
      h.recovery = ENGINE_HISTORY_EXPIRED;
      from = h.oldest;
    } else {
      from = since->offset + 1;
    }
    size_t skip = (size_t)(from - h.oldest);
    size_t n = ch->count > skip ? ch->count - skip : 0;
    if (n > TT_ARRAY_SIZE(small)) msgs = tt_malloc(n * sizeof(*msgs));
    for (size_t i = 0; i < n; i++)
      msgs[i] = tt_msg_ref(ch->ring[(ch->head + skip + i) % ch->cap]);
    h.count = n;
  }
  pthread_mutex_unlock(&sh->lock);

  h.msgs = msgs;
  cb(ctx, &h);
  for (size_t i = 0; i < h.count; i++) tt_msg_unref(msgs[i]);
  if (msgs != small) free(msgs);
}

static void mem_info(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, engine_info_cb cb, void *ctx) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  engine_channel_info_t info = {0};

  pthread_mutex_lock(&sh->lock);
  mem_channel_t *ch = mem__get(me, sh, channel, clen, hash, false);
  if (ch != NULL) {
    mem__expire(me, ch, tt_now_ms());
    info.exists = true;
    memcpy(info.top.epoch, ch->epoch, sizeof(info.top.epoch));
    info.top.offset = ch->last_offset;
    info.history_size = ch->count;
  }
  pthread_mutex_unlock(&sh->lock);
  cb(ctx, &info);
}

static void mem_watch(engine_t *e, const char *channel, size_t clen) {
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  pthread_mutex_lock(&sh->lock);
  mem__get(me, sh, channel, clen, hash, true)->watchers++;
  pthread_mutex_unlock(&sh->lock);
}

static void mem_unwatch(engine_t *e, const char *channel, size_t clen) {
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  pthread_mutex_lock(&sh->lock);
  mem_channel_t *ch = mem__get(me, sh, channel, clen, hash, false);
  if (ch != NULL && ch->watchers > 0) {
    ch->watchers--;
    ch->last_used_ms = tt_now_ms();
  }
  pthread_mutex_unlock(&sh->lock);
}

/* ================================================================ presence */

static void mem_presence_set(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const char *member,
                             const char *info, uint64_t ttl_ms) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  pthread_mutex_lock(&sh->lock);
  mem_channel_t *ch = mem__get(me, sh, channel, clen, hash, true);
  size_t i = 0;
  while (i < ch->nmembers && strcmp(ch->members[i].id, member) != 0) i++;
  if (i == ch->nmembers) {
    ch->members = tt_realloc(ch->members, (ch->nmembers + 1) * sizeof(*ch->members));
    ch->members[i].id = strdup(member);
    ch->members[i].info = NULL;
    ch->nmembers++;
  }
  free(ch->members[i].info);
  ch->members[i].info = strdup(info);
  ch->members[i].expires_ms = tt_now_ms() + ttl_ms;
  pthread_mutex_unlock(&sh->lock);
}

static void mem_presence_remove(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const char *member) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  pthread_mutex_lock(&sh->lock);
  mem_channel_t *ch = mem__get(me, sh, channel, clen, hash, false);
  for (size_t i = 0; ch != NULL && i < ch->nmembers; i++) {
    if (strcmp(ch->members[i].id, member) == 0) {
      mem__member_drop(ch, i);
      ch->last_used_ms = tt_now_ms();
      break;
    }
  }
  pthread_mutex_unlock(&sh->lock);
}

static void mem_presence_list(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, engine_presence_cb cb,
                              void *ctx) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t hash = tt_hash(channel, clen);
  mem_shard_t *sh = mem__shard(me, hash);
  engine_member_t *list = NULL;
  size_t n = 0;
  uint64_t now = tt_now_ms();
  pthread_mutex_lock(&sh->lock);
  mem_channel_t *ch = mem__get(me, sh, channel, clen, hash, false);
  if (ch != NULL && ch->nmembers > 0) {
    list = tt_malloc(ch->nmembers * sizeof(*list));
    for (size_t i = 0; i < ch->nmembers; i++) {
      if (ch->members[i].expires_ms <= now) continue;
      list[n].id = strdup(ch->members[i].id);
      list[n].info = strdup(ch->members[i].info);
      n++;
    }
  }
  pthread_mutex_unlock(&sh->lock);
  cb(ctx, 0, list, n);
  for (size_t i = 0; i < n; i++) {
    free((char *)list[i].id);
    free((char *)list[i].info);
  }
  free(list);
}

/* ================================================================ records */

static mem_record_t *mem__record(mem_engine_t *me, const char *key, uint64_t now) {
  size_t kl = strlen(key);
  tt_map_entry_t *e = tt_map_get(&me->records, key, kl, tt_hash(key, kl));
  if (e == NULL) return NULL;
  mem_record_t *r = tt_container_of(e, mem_record_t, entry);
  if (r->expires_ms > now) return r;
  tt_map_remove(&me->records, &r->entry);
  free(r->value);
  free(r);
  return NULL;
}

static void mem_record_create(engine_t *e, uv_loop_t *loop, const char *key, const char *value, uint64_t ttl_ms,
                              engine_record_cb cb, void *ctx) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t now = tt_now_ms();
  pthread_mutex_lock(&me->records_lock);
  int status = -EEXIST;
  if (mem__record(me, key, now) == NULL) {
    size_t kl = strlen(key);
    mem_record_t *r = tt_calloc(1, sizeof(*r) + kl + 1);
    memcpy(r->key, key, kl);
    r->entry.key = r->key;
    r->entry.key_len = kl;
    r->entry.hash = tt_hash(key, kl);
    r->value = strdup(value);
    r->expires_ms = now + ttl_ms;
    tt_map_put(&me->records, &r->entry);
    status = 0;
  }
  pthread_mutex_unlock(&me->records_lock);
  cb(ctx, status, status == 0 ? value : NULL);
}

static void mem_record_get(engine_t *e, uv_loop_t *loop, const char *key, engine_record_cb cb, void *ctx) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  pthread_mutex_lock(&me->records_lock);
  mem_record_t *r = mem__record(me, key, tt_now_ms());
  char *value = r ? strdup(r->value) : NULL;
  pthread_mutex_unlock(&me->records_lock);
  cb(ctx, value ? 0 : -ENOENT, value);
  free(value);
}

static void mem_record_touch(engine_t *e, uv_loop_t *loop, const char *key, uint64_t ttl_ms) {
  (void)loop;
  mem_engine_t *me = (mem_engine_t *)e;
  uint64_t now = tt_now_ms();
  pthread_mutex_lock(&me->records_lock);
  mem_record_t *r = mem__record(me, key, now);
  if (r != NULL && r->expires_ms < now + ttl_ms) r->expires_ms = now + ttl_ms;
  pthread_mutex_unlock(&me->records_lock);
}

static const char *mem_state(engine_t *e) {
  (void)e;
  return "up";
}

static size_t mem_channel_count(engine_t *e) { return atomic_load(&((mem_engine_t *)e)->channel_count); }

/* A channel is forgotten once nobody watches it, its history is empty and it
 * has not been used for one TTL, so that a client that reconnects within the
 * TTL still finds the same epoch. */
static void mem__sweep_records(mem_engine_t *me, uint64_t now_ms);

static void mem_sweep(engine_t *e, uint64_t now_ms) {
  mem_engine_t *me = (mem_engine_t *)e;
  mem__sweep_records(me, now_ms);
  for (size_t s = 0; s < MEM_SHARDS; s++) {
    mem_shard_t *sh = &me->shards[s];
    pthread_mutex_lock(&sh->lock);
    for (size_t b = 0; b <= sh->channels.mask; b++) {
      tt_map_entry_t *ent = sh->channels.buckets[b], *next;
      for (; ent != NULL; ent = next) {
        next = ent->next;
        mem_channel_t *ch = tt_container_of(ent, mem_channel_t, entry);
        mem__expire(me, ch, now_ms);
        for (size_t i = 0; i < ch->nmembers;) {
          if (ch->members[i].expires_ms <= now_ms) mem__member_drop(ch, i);
          else i++;
        }
        if (ch->watchers == 0 && ch->count == 0 && ch->nmembers == 0 && ch->last_used_ms + ch->ttl_ms <= now_ms)
          mem__forget(me, sh, ch);
      }
    }
    pthread_mutex_unlock(&sh->lock);
  }
}

static void mem__sweep_records(mem_engine_t *me, uint64_t now_ms) {
  pthread_mutex_lock(&me->records_lock);
  for (size_t b = 0; b <= me->records.mask; b++) {
    tt_map_entry_t *ent = me->records.buckets[b], *next;
    for (; ent != NULL; ent = next) {
      next = ent->next;
      mem_record_t *r = tt_container_of(ent, mem_record_t, entry);
      if (r->expires_ms > now_ms) continue;
      tt_map_remove(&me->records, &r->entry);
      free(r->value);
      free(r);
    }
  }
  pthread_mutex_unlock(&me->records_lock);
}

static void mem_destroy(engine_t *e) {
  mem_engine_t *me = (mem_engine_t *)e;
  for (size_t s = 0; s < MEM_SHARDS; s++) {
    mem_shard_t *sh = &me->shards[s];
    for (size_t b = 0; b <= sh->channels.mask; b++) {
      tt_map_entry_t *ent = sh->channels.buckets[b], *next;
      for (; ent != NULL; ent = next) {
        next = ent->next;
        mem__forget(me, sh, tt_container_of(ent, mem_channel_t, entry));
      }
    }
    tt_map_free(&sh->channels);
    pthread_mutex_destroy(&sh->lock);
  }
  for (size_t b = 0; b <= me->records.mask; b++) {
    tt_map_entry_t *ent = me->records.buckets[b], *next;
    for (; ent != NULL; ent = next) {
      next = ent->next;
      mem_record_t *r = tt_container_of(ent, mem_record_t, entry);
      free(r->value);
      free(r);
    }
  }
  tt_map_free(&me->records);
  pthread_mutex_destroy(&me->records_lock);
  free(me);
}

static const engine_vt_t engine_memory_vt = {
    .name = "memory",
    .publish = mem_publish,
    .history = mem_history,
    .info = mem_info,
    .watch = mem_watch,
    .unwatch = mem_unwatch,
    .presence_set = mem_presence_set,
    .presence_remove = mem_presence_remove,
    .presence_list = mem_presence_list,
    .record_create = mem_record_create,
    .record_get = mem_record_get,
    .record_touch = mem_record_touch,
    .channel_count = mem_channel_count,
    .state = mem_state,
    .sweep = mem_sweep,
    .destroy = mem_destroy,
};

engine_t *engine_memory_new(const engine_options_t *opts, const engine_sink_t *sink) {
  mem_engine_t *me = tt_calloc(1, sizeof(*me));
  me->base.vt = &engine_memory_vt;
  me->base.sink = *sink;
  me->opts = *opts;
  atomic_init(&me->channel_count, 0);
  pthread_mutex_init(&me->records_lock, NULL);
  tt_map_init(&me->records);
  for (size_t s = 0; s < MEM_SHARDS; s++) {
    pthread_mutex_init(&me->shards[s].lock, NULL);
    tt_map_init(&me->shards[s].channels);
  }
  return &me->base;
}
