/*
 * engine: where channels, offsets and history live. One interface, several
 * implementations (memory now; Redis later), all asynchronous: every call
 * that answers does so through a callback, which an implementation may run
 * before the call returns (memory) or later on the caller's loop (Redis).
 */
#ifndef TUTTI_ENGINE_H
#define TUTTI_ENGINE_H

#include <uv.h>

#include "../core/core.h"

/* A position in a channel: the epoch and the offset of a message in it
 * (0: before the first message). An empty epoch in a position asked for
 * means the channel's current one. */
typedef struct engine_pos_s {
  char epoch[TT_EPOCH_MAX + 1];
  uint64_t offset;
  uint64_t time_ms;   /* in a publish's answer: when the engine accepted it */
} engine_pos_t;

/* Outcome of a history read. */
typedef enum {
  ENGINE_FRESH,            /* no position asked for */
  ENGINE_RECOVERED,        /* every message after the asked position follows */
  ENGINE_HISTORY_EXPIRED,  /* some were dropped; what is held follows */
  ENGINE_EPOCH_CHANGED,    /* the asked epoch is gone; what is held follows */
  ENGINE_BAD_POSITION,     /* the asked offset is ahead of the channel */
} engine_recovery_t;

typedef struct engine_history_s {
  int status;                   /* 0 or a negative errno (engine unavailable) */
  engine_recovery_t recovery;
  engine_pos_t top;             /* epoch and last offset right now */
  uint64_t oldest;              /* oldest offset held (top.offset + 1 when none) */
  tt_msg_t *const *msgs;        /* in offset order; borrowed for the callback */
  size_t count;
} engine_history_t;

typedef struct engine_channel_info_s {
  int status;        /* 0 or a negative errno */
  bool exists;
  engine_pos_t top;
  size_t history_size;
} engine_channel_info_t;

/* One member of a channel's presence: an id and the JSON it registered. */
typedef struct engine_member_s {
  const char *id;
  const char *info;
} engine_member_t;

typedef void (*engine_publish_cb)(void *ctx, int status, const engine_pos_t *pos);
/* `members` is borrowed for the call. */
typedef void (*engine_presence_cb)(void *ctx, int status, const engine_member_t *members, size_t count);
/* status 0 with the record's JSON, -EEXIST (create: taken), -ENOENT (get:
 * none), or another negative errno. `record` is borrowed for the call. */
typedef void (*engine_record_cb)(void *ctx, int status, const char *record);
typedef void (*engine_history_cb)(void *ctx, const engine_history_t *history);
typedef void (*engine_info_cb)(void *ctx, const engine_channel_info_t *info);

/*
 * Where an engine hands every accepted message, once, in offset order per
 * channel. Called from any thread, possibly with engine locks held: it must
 * not call back into the engine. It borrows `msg`; it refs what it keeps.
 */
typedef struct engine_sink_s {
  void (*on_message)(void *data, tt_msg_t *msg);
  void *data;
} engine_sink_t;

typedef struct engine_s engine_t;

typedef struct engine_vt_s {
  const char *name;
  /* Publishes `data` as event `event` on `channel`. cb gets the new position. */
  void (*publish)(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const char *event, size_t elen,
                  const char *data, size_t dlen, engine_publish_cb cb, void *ctx);
  /* Reads the channel's position and, with `since` (NULL: none), what follows it. */
  void (*history)(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const engine_pos_t *since,
                  engine_history_cb cb, void *ctx);
  void (*info)(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, engine_info_cb cb, void *ctx);
  /* The node has its first local subscriber to `channel` / has lost its last.
   * A watched channel is never forgotten. */
  void (*watch)(engine_t *e, const char *channel, size_t clen);
  void (*unwatch)(engine_t *e, const char *channel, size_t clen);
  /* Presence: `member` (an id) holds `info` (JSON) in `channel` until it is
   * removed or `ttl_ms` passes without a renewal (set again). */
  void (*presence_set)(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const char *member,
                       const char *info, uint64_t ttl_ms);
  void (*presence_remove)(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, const char *member);
  void (*presence_list)(engine_t *e, uv_loop_t *loop, const char *channel, size_t clen, engine_presence_cb cb,
                        void *ctx);
  /* Records (rooms): a JSON value under a key, created only if the key is
   * free, gone `ttl_ms` after it was created or last touched. */
  void (*record_create)(engine_t *e, uv_loop_t *loop, const char *key, const char *value, uint64_t ttl_ms,
                        engine_record_cb cb, void *ctx);
  void (*record_get)(engine_t *e, uv_loop_t *loop, const char *key, engine_record_cb cb, void *ctx);
  void (*record_touch)(engine_t *e, uv_loop_t *loop, const char *key, uint64_t ttl_ms);
  /* Channels this node knows of (memory: all; Redis: the watched ones). */
  size_t (*channel_count)(engine_t *e);
  /* "up", "connecting" or "down". */
  const char *(*state)(engine_t *e);
  /* Optional: worker `id` runs `loop`, where answers to its calls must come
   * (called before the loops run). */
  void (*attach)(engine_t *e, int id, uv_loop_t *loop);
  /* Optional: starts the engine's own work (threads, connections). */
  int (*start)(engine_t *e);
  /* Drops expired history and forgotten channels; called about once a second. */
  void (*sweep)(engine_t *e, uint64_t now_ms);
  void (*destroy)(engine_t *e);
} engine_vt_t;

struct engine_s {
  const engine_vt_t *vt;
  engine_sink_t sink;
};

typedef struct engine_options_s {
  size_t history_size;
  uint64_t history_ttl_ms;
  /* Channels named with this prefix keep their own history bounds (rooms'
   * recordings). */
  const char *long_prefix;
  size_t long_history_size;
  uint64_t long_history_ttl_ms;
  int workers;
  /* Redis */
  const char *redis_url;      /* redis://host:port/db */
  const char *redis_bridge;   /* "redis-channel=tutti-channel,..." or NULL */
  uint64_t redis_meta_ttl_ms; /* how long an idle channel keeps its epoch */
} engine_options_t;

engine_t *engine_memory_new(const engine_options_t *opts, const engine_sink_t *sink);
/* NULL with a message logged if the options are unusable (a bad URL). */
engine_t *engine_redis_new(const engine_options_t *opts, const engine_sink_t *sink);

/* Engine-wide figures for /metrics. */
typedef struct engine_stats_s {
  uint64_t bridge_relayed;
  uint64_t bridge_invalid;
  uint64_t disconnects;   /* connections to Redis lost (or refused) */
} engine_stats_t;
void engine_redis_stats(engine_t *e, engine_stats_t *out);

#endif
