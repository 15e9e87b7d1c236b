/*
 * core: what every module shares. Allocation with one out-of-memory policy,
 * refcounted immutable buffers, structured logging, time, configuration and
 * small string helpers.
 */
#ifndef TUTTI_CORE_H
#define TUTTI_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define TUTTI_VERSION "0.1.0"

#define TT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define TT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TT_MAX(a, b) ((a) > (b) ? (a) : (b))
#define tt_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* ================================================================ memory */

/* Allocation never fails for the caller: on exhaustion the process aborts
 * with a message. Sizes are checked for overflow. */
void *tt_malloc(size_t n);
void *tt_calloc(size_t count, size_t n);
void *tt_realloc(void *p, size_t n);
char *tt_strndup(const char *s, size_t n);

/* ================================================================ buffers */

/*
 * An immutable, refcounted byte block. Created with refs = 1 by its builder,
 * filled before it is shared, then never written again. Refs may be taken and
 * dropped from any thread; the block is freed when the last ref is dropped.
 */
typedef struct tt_buf_s {
  atomic_uint refs;
  size_t len;
  char data[];
} tt_buf_t;

tt_buf_t *tt_buf_new(size_t len);
tt_buf_t *tt_buf_from(const void *data, size_t len);
static inline tt_buf_t *tt_buf_ref(tt_buf_t *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}
void tt_buf_unref(tt_buf_t *b);

/* A growable byte string for building output; not shared between threads. */
typedef struct tt_str_s {
  char *data;
  size_t len;
  size_t cap;
} tt_str_t;

void tt_str_reserve(tt_str_t *s, size_t extra);
void tt_str_append(tt_str_t *s, const void *p, size_t n);
void tt_str_appends(tt_str_t *s, const char *cstr);
void tt_str_appendf(tt_str_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `n` bytes as the inside of a JSON string (quotes not included). */
void tt_str_append_json(tt_str_t *s, const char *p, size_t n);
void tt_str_free(tt_str_t *s);
/* Appends `n` bytes as standard base64 with padding. */
void tt_str_append_base64(tt_str_t *s, const void *p, size_t n);
/* Appends the bytes that standard base64 text (padding optional) stands for;
 * -EINVAL, with nothing appended, when it is not base64. */
int tt_base64_decode(const char *p, size_t n, tt_str_t *out);

/* ================================================================ time */

uint64_t tt_now_ms(void);   /* wall clock, ms since the Unix epoch */
uint64_t tt_mono_ns(void);  /* monotonic clock, ns */

/* ================================================================ logging */

typedef enum {
  TT_LOG_DEBUG,
  TT_LOG_INFO,
  TT_LOG_WARN,
  TT_LOG_ERROR,
} tt_log_level_t;

extern tt_log_level_t tt_log_level;

/*
 * Writes one JSON line to stderr:
 *   {"time":"...","level":"info","event":"sse.connect","message":"...","context":{...}}
 * `context_fmt` is printf-style and must produce the inside of a JSON object
 * (e.g. "\"port\":%d"), or be NULL. One write(2) per line, so lines from
 * different threads never interleave.
 */
void tt_log(tt_log_level_t level, const char *event, const char *message, const char *context_fmt, ...)
    __attribute__((format(printf, 4, 5)));
int tt_log_level_parse(const char *s, tt_log_level_t *out);

/* ================================================================ ids */

/* Fills `out` with `n` random lowercase base-36 characters and a NUL. */
void tt_random_token(char *out, size_t n);
void tt_random_bytes(void *out, size_t n);

/* ================================================================ configuration */

typedef struct tt_config_s {
  char *host;
  int port;
  int workers;
  char *config_file;
  char *log_level;
  char *api_key;          /* NULL: publishing needs no key */
  char *cors_origins;     /* comma-separated list, "*" or NULL */
  char *web_root;
  char *engine;           /* "memory" or "redis" */
  char *redis_url;
  char *redis_bridge;     /* "redis-channel=channel,..." */
  double redis_meta_ttl;  /* s an idle channel keeps its epoch in Redis */
  double presence_ttl;    /* s a presence entry lives without renewal */
  double heartbeat_interval;  /* s */
  double stale_timeout;       /* s */
  double header_timeout;      /* s */
  double drain_timeout;       /* s */
  double history_ttl;         /* s */
  int history_size;
  int sse_retry;              /* ms */
  int max_channels_per_stream;
  int max_connections;
  int metrics_buoy_names;     /* 1: expose the buoy service's metric names too */
  char *client_publish;       /* channel prefixes WebSocket clients may publish to, or "*" */
  int64_t ws_max_message;     /* bytes */
  double ws_ping_interval;    /* s */
  double ws_ping_timeout;     /* s */
  int ws_deflate;             /* 1: accept permessage-deflate */
  int ws_deflate_threshold;   /* bytes */
  int ws_rate;                /* messages per second per connection; 0: no limit */
  int ws_burst;
  double room_grace;          /* s an empty room lives */
  int room_max_participants;
  int room_rate;
  int room_burst;
  int64_t room_max_payload;
  int recording_size;
  double recording_ttl;       /* s */
  char *room_code_words;
  int room_code_digits;
  double render_max_duration; /* s of audio one render may make */
  int render_queue;           /* render jobs waiting or running at once */
  int render_concurrency;     /* renders running at once */
  double render_timeout;      /* s of wall time a render may take */
  int render_sample_rate;     /* 44100 or 48000 */
  int render_channels;
  int opus_bitrate;           /* bits per second */
  char *samples_dir;          /* WAV samples for the sampler, or NULL */
  int64_t max_body;           /* bytes */
  int64_t max_queue;          /* bytes per connection */
} tt_config_t;

/*
 * Fills `cfg` from defaults, then the JSON file given by --config or
 * TUTTI_CONFIG, then TUTTI_* environment variables, then the flags, each
 * overriding the one before. Returns 0 on success, 1 when the process should
 * exit 0 (--help, --version; already printed), or 2 on an invalid setting
 * (a message naming it is already printed on stderr).
 */
int tt_config_load(tt_config_t *cfg, int argc, char **argv);
void tt_config_free(tt_config_t *cfg);


/* ================================================================ lists and maps */

/* Intrusive doubly linked list; a head is a node linked to itself. */
typedef struct tt_list_s {
  struct tt_list_s *prev, *next;
} tt_list_t;

static inline void tt_list_init(tt_list_t *l) { l->prev = l->next = l; }
static inline bool tt_list_empty(const tt_list_t *l) { return l->next == l; }
static inline void tt_list_insert_tail(tt_list_t *head, tt_list_t *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}
static inline void tt_list_remove(tt_list_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

/*
 * A string-keyed hash map with intrusive entries: the caller embeds a
 * tt_map_entry_t in its object, so insert and remove never allocate (but
 * resizing the bucket array does). Not thread-safe; the owner locks.
 */
typedef struct tt_map_entry_s {
  struct tt_map_entry_s *next;
  uint64_t hash;
  const char *key;   /* owned by the embedding object */
  size_t key_len;
} tt_map_entry_t;

typedef struct tt_map_s {
  tt_map_entry_t **buckets;
  size_t mask;   /* bucket count - 1 */
  size_t count;
} tt_map_t;

uint64_t tt_hash(const char *key, size_t len);
void tt_map_init(tt_map_t *m);
void tt_map_free(tt_map_t *m); /* frees the buckets, not the entries */
tt_map_entry_t *tt_map_get(const tt_map_t *m, const char *key, size_t len, uint64_t hash);
/* `e->key`, `e->key_len` and `e->hash` must be set; the key must not be present. */
void tt_map_put(tt_map_t *m, tt_map_entry_t *e);
void tt_map_remove(tt_map_t *m, tt_map_entry_t *e);
/* Iteration: for (i = 0; i <= m->mask; i++) for (e = m->buckets[i]; e; e = next) ... */

/* ================================================================ messages */

#define TT_EPOCH_LEN 8   /* characters of an epoch token */
#define TT_EPOCH_MAX 32  /* room for epochs of other engines */

/* What each transport sends for a message, built once and cached on it. */
typedef enum {
  TT_FRAME_SSE,
  TT_FRAME_WS,
  TT_FRAME_WS_DEFLATE,
  TT_FRAME_WS_ROOM,          /* a room's event (or join/leave) as a participant gets it */
  TT_FRAME_WS_ROOM_DEFLATE,
  TT_FRAME_WS_AUDIO,         /* an Opus or PCM16 render as a binary frame (empty: not one) */
  TT_FRAME_KINDS,
} tt_frame_kind_t;

/*
 * A published message: immutable once created, refcounted, shared by the
 * history, every worker's inbox and every frame builder. The frames are
 * built lazily, once per transport, by whichever thread asks first.
 */
typedef struct tt_msg_s {
  atomic_uint refs;
  uint64_t offset;
  uint64_t time_ms;       /* wall clock when the engine accepted it */
  uint64_t accepted_ns;   /* monotonic clock, for latency figures */
  char epoch[TT_EPOCH_MAX + 1];
  const char *channel;
  size_t channel_len;
  const char *event;
  size_t event_len;
  const char *data;       /* the published bytes, exactly */
  size_t data_len;
  _Atomic(tt_buf_t *) frames[TT_FRAME_KINDS];
  char storage[];         /* channel, event and data, each NUL-terminated */
} tt_msg_t;

tt_msg_t *tt_msg_new(const char *channel, size_t clen, const char *event, size_t elen, const char *data, size_t dlen,
                     const char *epoch, uint64_t offset);
static inline tt_msg_t *tt_msg_ref(tt_msg_t *m) {
  atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
  return m;
}
void tt_msg_unref(tt_msg_t *m);
/* Returns the message's frame of `kind`, building it with `build` the first
 * time. The result is borrowed: it lives as long as the message; take a ref
 * to keep it longer. Safe from any thread. */
tt_buf_t *tt_msg_frame(tt_msg_t *m, tt_frame_kind_t kind, tt_buf_t *(*build)(const tt_msg_t *m));

/* ================================================================ names */

/* Channel: 1-255 bytes of [A-Za-z0-9_.:/-]. Event: 1-64 bytes of [A-Za-z0-9_.:-]. */
bool tt_channel_valid(const char *name, size_t len);
bool tt_event_valid(const char *name, size_t len);

/* ================================================================ JSON scanning */

/*
 * A strict RFC 8259 scanner that checks text and finds the spans of values
 * without building a tree, so published data can pass through byte for byte.
 * Nesting is limited to TT_JSON_MAX_DEPTH.
 */
#define TT_JSON_MAX_DEPTH 64

typedef struct tt_json_span_s {
  const char *p;
  size_t len;
} tt_json_span_t;

/* 0 if buf[0..len) is exactly one JSON value (whitespace around allowed). */
int tt_json_validate(const char *buf, size_t len);

/*
 * Checks that buf is one JSON object and calls `member` for each top-level
 * member, with the key's raw span (inside the quotes, escapes not decoded)
 * and the value's span. Returns 0, -EINVAL if not valid JSON, -ENOTSUP if
 * valid but not an object, or what `member` returned if not 0.
 */
int tt_json_object_scan(const char *buf, size_t len,
                        int (*member)(void *ctx, tt_json_span_t key, tt_json_span_t value), void *ctx);

/* Whether an object key's raw span (as tt_json_object_scan gives it) names
 * `name`, escapes decoded. */
bool tt_json_key_is(tt_json_span_t key, const char *name);

/* Decodes a JSON string value (with its quotes) into `out` as UTF-8.
 * Returns 0 or -EINVAL (not a string). */
int tt_json_string_decode(tt_json_span_t value, tt_str_t *out);

#endif
