/*
 * The hub. Two structures:
 *  - interest: one node-wide map, sharded under mutexes, from channel name
 *    to the number of subscribers on each worker. The engine's sink reads it
 *    to know which workers get a message; the first subscriber on the node
 *    makes the hub watch the channel in the engine, the last unwatches it.
 *  - topics: per worker, a map from channel name to the list of that
 *    worker's subscriptions, touched only by the worker's thread.
 *
 * Lock order: engine channel lock -> interest shard lock -> worker inbox
 * lock. The hub never calls the engine while holding an interest lock.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "../obs/obs.h"
#include "hub_internal.h"

/* ================================================================ names */

int hub_channel_check(const char *name, size_t len, const char **why) {
  if (why) *why = "channel must be 1-255 bytes of [A-Za-z0-9_.:/-]";
  return tt_channel_valid(name, len) ? 0 : -EINVAL;
}

int hub_event_check(const char *name, size_t len, const char **why) {
  if (why) *why = "event must be 1-64 bytes of [A-Za-z0-9_.:-]";
  return tt_event_valid(name, len) ? 0 : -EINVAL;
}

/* ================================================================ fan-out */

/* The engine's sink: any thread, engine lock held. Hands `msg` to every
 * worker that has subscribers to its channel. */
static void hub__on_message(void *data, tt_msg_t *msg) {
  hub_t *hub = data;
  obs_inc(OBS_PUBLISHED);
  uint64_t hash = tt_hash(msg->channel, msg->channel_len);
  hub_shard_t *sh = &hub->shards[(hash >> 32) % HUB_SHARDS];
  pthread_mutex_lock(&sh->lock);
  tt_map_entry_t *e = tt_map_get(&sh->map, msg->channel, msg->channel_len, hash);
  if (e != NULL) {
    hub_interest_t *in = tt_container_of(e, hub_interest_t, entry);
    for (int w = 0; w < hub->nworkers; w++) {
      if (in->per_worker[w] == 0) continue;
      hub_worker_t *hw = &hub->workers[w];
      pthread_mutex_lock(&hw->lock);
      if (hw->inbox_len == hw->inbox_cap) {
        hw->inbox_cap = hw->inbox_cap ? hw->inbox_cap * 2 : 64;
        hw->inbox = tt_realloc(hw->inbox, hw->inbox_cap * sizeof(*hw->inbox));
      }
      hw->inbox[hw->inbox_len++] = tt_msg_ref(msg);
      bool first = hw->inbox_len == 1;
      pthread_mutex_unlock(&hw->lock);
      if (first && hw->ready) uv_async_send(&hw->wakeup);
    }
  }
  pthread_mutex_unlock(&sh->lock);
}

static bool hub__newer(const engine_pos_t *pos, const tt_msg_t *msg) {
  return strcmp(pos->epoch, msg->epoch) != 0 || msg->offset > pos->offset;
}

const char *hub_encoding_check(const char *name, size_t len) {
  /* audio_encoding_t's names (src/audio): the hub does not depend on audio */
  static const char *const names[] = {"opus", "pcm16", "json", "json16"};
  for (size_t i = 0; i < TT_ARRAY_SIZE(names); i++)
    if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0) return names[i];
  return NULL;
}

const char *hub_msg_encoding(const tt_msg_t *msg, size_t *len) {
  const size_t n = sizeof(HUB_AUDIO_EVENT) - 1;
  if (msg->event_len <= n + 1 || msg->event[n] != '.' || memcmp(msg->event, HUB_AUDIO_EVENT, n) != 0) return NULL;
  *len = msg->event_len - n - 1;
  return msg->event + n + 1;
}

const char *hub_msg_event(const tt_msg_t *msg, size_t *len) {
  if (hub_msg_encoding(msg, len) != NULL) {
    *len = sizeof(HUB_AUDIO_EVENT) - 1;
    return HUB_AUDIO_EVENT;
  }
  *len = msg->event_len;
  return msg->event;
}

bool hub_sub_wants(const hub_sub_t *sub, const tt_msg_t *msg) {
  if (sub->skip_event != NULL && strlen(sub->skip_event) == msg->event_len &&
      memcmp(sub->skip_event, msg->event, msg->event_len) == 0)
    return false; /* a participant's own event */
  size_t el;
  const char *enc = hub_msg_encoding(msg, &el);
  if (enc == NULL) return true;
  const char *want = sub->encoding ? sub->encoding : HUB_AUDIO_DEFAULT;
  return strlen(want) == el && memcmp(want, enc, el) == 0;
}

static void hub__deliver(hub_sub_t *sub, tt_msg_t *msg) {
  memcpy(sub->pos.epoch, msg->epoch, sizeof(sub->pos.epoch));
  sub->pos.offset = msg->offset;
  if (hub_sub_wants(sub, msg)) sub->client->vt->deliver(sub->client, sub, msg);
}

static void hub__hold(hub_sub_t *sub, tt_msg_t *msg) {
  if (sub->held_count == sub->held_cap) {
    sub->held_cap = sub->held_cap ? sub->held_cap * 2 : 8;
    sub->held = tt_realloc(sub->held, sub->held_cap * sizeof(*sub->held));
  }
  sub->held[sub->held_count++] = tt_msg_ref(msg);
}

tt_buf_t *hub_run_frame(hub_run_t *run, tt_frame_kind_t kind, tt_buf_t *(*build)(const tt_msg_t *m)) {
  if (run->frames[kind] != NULL) return run->frames[kind];
  size_t len = 0;
  for (size_t i = 0; i < run->n; i++) len += tt_msg_frame(run->msgs[i], kind, build)->len;
  tt_buf_t *b = tt_buf_new(len);
  char *p = b->data;
  for (size_t i = 0; i < run->n; i++) {
    tt_buf_t *f = tt_msg_frame(run->msgs[i], kind, build);
    memcpy(p, f->data, f->len);
    p += f->len;
  }
  return run->frames[kind] = b;
}

/* b may follow a in a run. */
static bool hub__same_run(const tt_msg_t *a, const tt_msg_t *b) {
  size_t el;
  return a->channel_len == b->channel_len && b->offset > a->offset && strcmp(a->epoch, b->epoch) == 0 &&
         memcmp(a->channel, b->channel, a->channel_len) == 0 && hub_msg_encoding(b, &el) == NULL;
}

/* Delivers msgs[0..n) (one topic's messages, n >= 1) to its subscribers:
 * as one block to those whose transport takes a run. */
static void hub__deliver_all(hub_topic_t *t, tt_msg_t **msgs, size_t n) {
  hub_run_t run = {.msgs = msgs, .n = n};
  /* deliver() may not unsubscribe, so the list is stable here. */
  for (tt_list_t *l = t->subs.next; l != &t->subs; l = l->next) {
    hub_sub_t *sub = tt_container_of(l, hub_sub_t, link);
    if (n > 1 && sub->live && sub->skip_event == NULL && sub->client->vt->deliver_run != NULL &&
        hub__newer(&sub->pos, msgs[0]) && sub->client->vt->deliver_run(sub->client, sub, &run)) {
      memcpy(sub->pos.epoch, msgs[n - 1]->epoch, sizeof(sub->pos.epoch));
      sub->pos.offset = msgs[n - 1]->offset;
      continue;
    }
    for (size_t i = 0; i < n; i++) {
      if (!sub->live) hub__hold(sub, msgs[i]);
      else if (hub__newer(&sub->pos, msgs[i])) hub__deliver(sub, msgs[i]);
    }
  }
  for (size_t k = 0; k < TT_FRAME_KINDS; k++)
    if (run.frames[k] != NULL) tt_buf_unref(run.frames[k]);
}

/* The worker's inbox: deliver each message to the worker's subscribers, a
 * run of one channel's messages (see hub_run_t) together. */
static void hub__on_wakeup(uv_async_t *a) {
  hub_worker_t *hw = tt_container_of(a, hub_worker_t, wakeup);
  /* Swap the inbox with the spare array, so publishers keep appending. */
  pthread_mutex_lock(&hw->lock);
  tt_msg_t **batch = hw->inbox;
  size_t n = hw->inbox_len, cap = hw->inbox_cap;
  hw->inbox = hw->batch;
  hw->inbox_cap = hw->batch_cap;
  hw->inbox_len = 0;
  pthread_mutex_unlock(&hw->lock);
  hw->batch = batch;
  hw->batch_cap = cap;

  for (size_t i = 0, j; i < n; i = j) {
    size_t el;
    tt_msg_t *msg = batch[i];
    j = i + 1;
    if (hub_msg_encoding(msg, &el) == NULL)
      while (j < n && hub__same_run(batch[j - 1], batch[j])) j++;
    tt_map_entry_t *e = tt_map_get(&hw->topics, msg->channel, msg->channel_len, tt_hash(msg->channel, msg->channel_len));
    if (e != NULL) {
      uint64_t now = tt_mono_ns();
      for (size_t k = i; k < j; k++)
        obs_observe(OBS_H_BROADCAST_LATENCY_MS, (double)(now - batch[k]->accepted_ns) / 1e6);
      hub__deliver_all(tt_container_of(e, hub_topic_t, entry), batch + i, j - i);
    }
    for (size_t k = i; k < j; k++) tt_msg_unref(batch[k]);
  }
}

/* ================================================================ subscriptions */

static hub_interest_t *hub__interest(hub_t *hub, const char *name, size_t len, uint64_t hash, hub_shard_t *sh,
                                     bool create) {
  tt_map_entry_t *e = tt_map_get(&sh->map, name, len, hash);
  if (e != NULL || !create) return e ? tt_container_of(e, hub_interest_t, entry) : NULL;
  hub_interest_t *in = tt_calloc(1, sizeof(*in) + len + 1);
  memcpy(in->name, name, len);
  in->per_worker = tt_calloc((size_t)hub->nworkers, sizeof(uint32_t));
  in->entry.key = in->name;
  in->entry.key_len = len;
  in->entry.hash = hash;
  tt_map_put(&sh->map, &in->entry);
  return in;
}

struct hub_sub_req_s {
  hub_t *hub;
  hub_sub_t *sub;
  bool cancelled;          /* unsubscribed before the engine answered */
  hub_subscribe_cb cb;
  void *ctx;
};

/* The engine's answer; with an asynchronous engine the subscription may be
 * gone by now (its owner closed), and then nobody is called. */
static void hub__on_history(void *ctx, const engine_history_t *h) {
  hub_sub_req_t *r = ctx;
  if (!r->cancelled) {
    r->sub->req = NULL;
    r->cb(r->ctx, r->sub, h);
  }
  free(r);
}

void hub_subscribe(hub_t *hub, hub_client_t *client, hub_sub_t *sub, const char *channel, size_t clen,
                   const engine_pos_t *since, hub_subscribe_cb cb, void *ctx) {
  hub_worker_t *hw = &hub->workers[client->worker];
  uint64_t hash = tt_hash(channel, clen);

  /* 1. Local topic: live messages for the channel now reach `sub` (held). */
  tt_map_entry_t *e = tt_map_get(&hw->topics, channel, clen, hash);
  hub_topic_t *t;
  if (e != NULL) {
    t = tt_container_of(e, hub_topic_t, entry);
  } else {
    t = tt_calloc(1, sizeof(*t) + clen + 1);
    memcpy(t->name, channel, clen);
    t->entry.key = t->name;
    t->entry.key_len = clen;
    t->entry.hash = hash;
    tt_list_init(&t->subs);
    tt_map_put(&hw->topics, &t->entry);
  }
  sub->client = client;
  sub->topic = t;
  sub->live = false;
  tt_list_insert_tail(&t->subs, &sub->link);

  /* 2. Node-wide interest: from here on the sink sends this worker the
   *    channel's messages. Registered before the history read, so nothing
   *    published after that read can be missed; what both deliver is
   *    dropped by offset. */
  hub_shard_t *sh = &hub->shards[(hash >> 32) % HUB_SHARDS];
  pthread_mutex_lock(&sh->lock);
  hub_interest_t *in = hub__interest(hub, channel, clen, hash, sh, true);
  in->per_worker[client->worker]++;
  bool first = ++in->total == 1;
  pthread_mutex_unlock(&sh->lock);
  atomic_fetch_add(&hub->subscriptions, 1);
  if (first) hub->engine->vt->watch(hub->engine, channel, clen);

  /* 3. Position and history. */
  hub_sub_req_t *r = tt_malloc(sizeof(*r));
  *r = (hub_sub_req_t){.hub = hub, .sub = sub, .cb = cb, .ctx = ctx};
  sub->req = r;
  hub->engine->vt->history(hub->engine, hw->wakeup.loop, channel, clen, since, hub__on_history, r);
}

void hub_sub_live(hub_t *hub, hub_sub_t *sub, const engine_pos_t *pos) {
  (void)hub;
  sub->pos = *pos;
  sub->live = true;
  for (size_t i = 0; i < sub->held_count; i++) {
    if (hub__newer(&sub->pos, sub->held[i])) hub__deliver(sub, sub->held[i]);
    tt_msg_unref(sub->held[i]);
  }
  free(sub->held);
  sub->held = NULL;
  sub->held_count = sub->held_cap = 0;
}

void hub_unsubscribe(hub_t *hub, hub_sub_t *sub) {
  if (sub->req != NULL) { /* the engine has not answered: its answer goes nowhere */
    sub->req->cancelled = true;
    sub->req = NULL;
  }
  hub_topic_t *t = sub->topic;
  if (t == NULL) return;
  hub_worker_t *hw = &hub->workers[sub->client->worker];
  tt_list_remove(&sub->link);
  sub->topic = NULL;
  for (size_t i = 0; i < sub->held_count; i++) tt_msg_unref(sub->held[i]);
  free(sub->held);
  sub->held = NULL;
  sub->held_count = sub->held_cap = 0;

  const char *name = t->name;
  size_t len = t->entry.key_len;
  uint64_t hash = t->entry.hash;
  hub_shard_t *sh = &hub->shards[(hash >> 32) % HUB_SHARDS];
  pthread_mutex_lock(&sh->lock);
  hub_interest_t *in = hub__interest(hub, name, len, hash, sh, false);
  bool last = false;
  if (in != NULL) {
    in->per_worker[sub->client->worker]--;
    if (--in->total == 0) {
      tt_map_remove(&sh->map, &in->entry);
      free(in->per_worker);
      free(in);
      last = true;
    }
  }
  pthread_mutex_unlock(&sh->lock);
  atomic_fetch_sub(&hub->subscriptions, 1);
  if (last) hub->engine->vt->unwatch(hub->engine, name, len);

  if (tt_list_empty(&t->subs)) {
    tt_map_remove(&hw->topics, &t->entry);
    free(t);
  }
}

uint64_t hub_channel_subscribers(hub_t *hub, const char *channel, size_t clen) {
  uint64_t hash = tt_hash(channel, clen);
  hub_shard_t *sh = &hub->shards[(hash >> 32) % HUB_SHARDS];
  pthread_mutex_lock(&sh->lock);
  hub_interest_t *in = hub__interest(hub, channel, clen, hash, sh, false);
  uint64_t n = in ? in->total : 0;
  pthread_mutex_unlock(&sh->lock);
  return n;
}

uint64_t hub_subscriptions(hub_t *hub) { return atomic_load(&hub->subscriptions); }

/* ================================================================ publishing */

void hub_publish(hub_t *hub, uv_loop_t *loop, const char *channel, size_t clen, const char *event, size_t elen,
                 const char *data, size_t dlen, engine_publish_cb cb, void *ctx) {
  hub->engine->vt->publish(hub->engine, loop, channel, clen, event, elen, data, dlen, cb, ctx);
}

/* ================================================================ life */

hub_t *hub_new(const hub_options_t *opts) {
  hub_t *hub = tt_calloc(1, sizeof(*hub));
  hub->nworkers = opts->workers;
  hub->workers = tt_calloc((size_t)opts->workers, sizeof(*hub->workers));
  for (int i = 0; i < opts->workers; i++) {
    hub->workers[i].hub = hub;
    hub->workers[i].id = i;
    pthread_mutex_init(&hub->workers[i].lock, NULL);
    tt_map_init(&hub->workers[i].topics);
    tt_list_init(&hub->workers[i].members);
  }
  for (int s = 0; s < HUB_SHARDS; s++) {
    pthread_mutex_init(&hub->shards[s].lock, NULL);
    tt_map_init(&hub->shards[s].map);
  }
  atomic_init(&hub->subscriptions, 0);
  return hub;
}

engine_sink_t hub_engine_sink(hub_t *hub) { return (engine_sink_t){.on_message = hub__on_message, .data = hub}; }
void hub_set_engine(hub_t *hub, engine_t *engine) { hub->engine = engine; }
engine_t *hub_engine(hub_t *hub) { return hub->engine; }

void hub_worker_init(hub_t *hub, int id, uv_loop_t *loop) {
  hub_worker_t *hw = &hub->workers[id];
  uv_async_init(loop, &hw->wakeup, hub__on_wakeup);
  hub__room_worker_init(hub, hw, loop);
  hw->ready = true;
}

/* After the workers' loops have ended and closed their handles. */
void hub_free(hub_t *hub) {
  for (int i = 0; i < hub->nworkers; i++) {
    hub_worker_t *hw = &hub->workers[i];
    for (size_t k = 0; k < hw->inbox_len; k++) tt_msg_unref(hw->inbox[k]);
    free(hw->inbox);
    free(hw->batch);
    for (size_t b = 0; b <= hw->topics.mask; b++) {
      tt_map_entry_t *e = hw->topics.buckets[b], *next;
      for (; e != NULL; e = next) {
        next = e->next;
        free(tt_container_of(e, hub_topic_t, entry));
      }
    }
    tt_map_free(&hw->topics);
    pthread_mutex_destroy(&hw->lock);
  }
  for (int s = 0; s < HUB_SHARDS; s++) {
    hub_shard_t *sh = &hub->shards[s];
    for (size_t b = 0; b <= sh->map.mask; b++) {
      tt_map_entry_t *e = sh->map.buckets[b], *next;
      for (; e != NULL; e = next) {
        next = e->next;
        hub_interest_t *in = tt_container_of(e, hub_interest_t, entry);
        free(in->per_worker);
        free(in);
      }
    }
    tt_map_free(&sh->map);
    pthread_mutex_destroy(&sh->lock);
  }
  free(hub->workers);
  free(hub);
}
