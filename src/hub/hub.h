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
typedef struct hub_sub_req_s hub_sub_req_t;

/*
 * A run: messages of one channel that reached a worker in the same loop turn,
 * one after the other, in offset order, none of them filtered per subscriber
 * (no audio render, so every subscription without a skip_event wants them
 * all). A transport sends a run as one block, the concatenation of the
 * messages' frames, built once per frame kind and shared by every subscriber:
 * the work per subscriber is one queued segment per turn, however many
 * messages the turn brought.
 */
typedef struct hub_run_s {
  tt_msg_t **msgs;
  size_t n;                               /* >= 2 */
  tt_buf_t *frames[TT_FRAME_KINDS];       /* built by hub_run_frame */
} hub_run_t;

/* The run's block of `kind`: each message's frame (tt_msg_frame with `build`)
 * in order. Borrowed: it lives until the run is delivered. */
tt_buf_t *hub_run_frame(hub_run_t *run, tt_frame_kind_t kind, tt_buf_t *(*build)(const tt_msg_t *m));

/* What a transport does with a message for one of its subscriptions. */
typedef struct hub_client_vt_s {
  /* Queue `msg` (borrowed) for the client. Must not unsubscribe or close
   * synchronously: the hub is iterating the channel's subscribers. */
  void (*deliver)(hub_client_t *client, hub_sub_t *sub, tt_msg_t *msg);
  /* Optional: queue a whole run (borrowed) as deliver would each of its
   * messages, or return false to have them delivered one by one. The same
   * rules as deliver. */
  bool (*deliver_run)(hub_client_t *client, hub_sub_t *sub, hub_run_t *run);
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
  bool room;                 /* a room participant's subscription (framed as room events) */
  const char *skip_event;    /* messages with this event name are not delivered (own events) */
  const char *encoding;      /* which audio_buffer.<encoding> messages it gets (NULL: "opus") */
  hub_sub_req_t *req;        /* the engine's answer still to come, if any */
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

/* ================================================================ audio events */

/*
 * A render is published once per encoding, as events named
 * "audio_buffer.<encoding>" (opus, pcm16, json, json16), each built once. A
 * subscription gets only its own encoding's (hub_sub_t.encoding), and every
 * transport shows them as "audio_buffer".
 */
#define HUB_AUDIO_EVENT "audio_buffer"
#define HUB_AUDIO_DEFAULT "opus"

/* The canonical name of a valid encoding ("opus", "pcm16", "json",
 * "json16"), or NULL. */
const char *hub_encoding_check(const char *name, size_t len);
/* The encoding of an "audio_buffer.<encoding>" message (not NUL-terminated), or NULL. */
const char *hub_msg_encoding(const tt_msg_t *msg, size_t *len);
/* The event name clients see. */
const char *hub_msg_event(const tt_msg_t *msg, size_t *len);
/* Whether `sub` gets `msg` at all (encodings, a participant's own events);
 * transports replaying history ask it too. */
bool hub_sub_wants(const hub_sub_t *sub, const tt_msg_t *msg);

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
/* Removes the subscription; a subscribe callback not yet run is never run.
 * Never from inside deliver. */
void hub_unsubscribe(hub_t *hub, hub_sub_t *sub);

/* Local subscribers to `channel` on every worker (approximate while changing). */
uint64_t hub_channel_subscribers(hub_t *hub, const char *channel, size_t clen);
uint64_t hub_subscriptions(hub_t *hub);

/* ================================================================ rooms */

#define HUB_ROOM_CODE_MAX 32
#define HUB_USER_ID_MAX 64

typedef struct hub_room_options_s {
  const char *code_words;    /* comma-separated */
  int code_digits;
  double grace;              /* s an empty room lives */
  int max_participants;      /* default for new rooms */
  int rate;                  /* events per second per participant */
  int burst;
  size_t max_payload;        /* bytes */
  double presence_ttl;       /* s */
} hub_room_options_t;

typedef enum { HUB_MEMBER_JOINING, HUB_MEMBER_JOINED, HUB_MEMBER_LEFT } hub_member_state_t;

/* A participant of one room, made by hub_room_member_new and owned by the
 * hub: the transport lets go with hub_room_member_release. */
typedef struct hub_room_member_s {
  hub_sub_t events;          /* room:CODE, the events */
  hub_sub_t ctl;             /* roomctl:CODE, joins and leaves */
  hub_client_t *client;
  tt_list_t link;            /* the worker's participants (upkeep) */
  tt_list_t tlink;           /* the transport's own list */
  char code[HUB_ROOM_CODE_MAX + 1];
  char user_id[HUB_USER_ID_MAX + 1];
  char skip[HUB_USER_ID_MAX + 8];  /* "relay:USER_ID": own events, not delivered back */
  char echo[HUB_USER_ID_MAX + 8];  /* "echo:USER_ID": own events asked back */
  tt_str_t user;             /* {"user_id":..,"name":..,"instrument":..,"joined_at":..} */
  double tokens;
  uint64_t tokens_ms;
  hub_member_state_t state;
  int pending;               /* async steps in flight */
  bool released;
  int worker;                /* the worker of `client` (which may be gone once released) */
  struct hub_join_s *join;   /* while joining */
} hub_room_member_t;

/* Room errors, as negative numbers for callbacks. */
enum {
  HUB_ROOM_NOT_FOUND = -1001,
  HUB_ROOM_FULL = -1002,
  HUB_ROOM_UNAVAILABLE = -1003,  /* the engine is away */
  HUB_ROOM_NOT_IN = -1004,
  HUB_ROOM_RATE_LIMITED = -1005,
  HUB_ROOM_TOO_LARGE = -1006,
  HUB_ROOM_BAD_EVENT = -1007,
};
/* The protocol's error code for a HUB_ROOM_* value ("ROOM_NOT_FOUND"). */
const char *hub_room_error(int status);

void hub_rooms_configure(hub_t *hub, const hub_room_options_t *opts);

/* Creates a room; cb gets the code and its record ({"room_code",...}). */
typedef void (*hub_room_created_cb)(void *ctx, int status, const char *code, const char *record);
void hub_room_create(hub_t *hub, uv_loop_t *loop, const char *name, size_t name_len, int max_participants,
                     hub_room_created_cb cb, void *ctx);

hub_room_member_t *hub_room_member_new(hub_client_t *client, const char *user_id);
/* Joins `code` with the user fields `name` and `instrument` (raw JSON
 * strings, instrument may be NULL). cb gets the participants as a JSON
 * array (the new member last). */
typedef void (*hub_room_joined_cb)(void *ctx, hub_room_member_t *m, int status, const char *participants);
void hub_room_join(hub_t *hub, hub_room_member_t *m, const char *code, tt_json_span_t name,
                   const tt_json_span_t *instrument, hub_room_joined_cb cb, void *ctx);
/* Leaves (tells the others once). Safe in any state. */
void hub_room_leave(hub_t *hub, hub_room_member_t *m);
/* The transport lets go: leaves if needed; freed once nothing is pending. */
void hub_room_member_release(hub_t *hub, hub_room_member_t *m);
/* Relays an event to the other participants (and the sender too with
 * `echo`). Checks synchronously and returns a HUB_ROOM_* error, or 0 and cb
 * gets the seq (the position). */
int hub_room_broadcast(hub_t *hub, hub_room_member_t *m, tt_json_span_t event_name, tt_json_span_t payload, bool echo,
                       engine_publish_cb cb, void *ctx);

/* A room event as a JSON object with its seq and server_time:
 * {"seq":N,"server_time":T,"type":"event:broadcast","room_code":..,"event_name":..,"payload":..,"sender_id":..}.
 * With `type`, the "type" is replaced (e.g. "replay:event"). */
void hub_room_event_json(const tt_msg_t *msg, const char *type, tt_str_t *out);
/* Whether `channel` is reserved for rooms (no direct publishing). */
bool hub_channel_reserved(const char *channel, size_t len);
/* "room:CODE" into out; false if the code is not a room code. */
bool hub_room_channel(const char *code, size_t len, char *out, size_t cap);

#endif
