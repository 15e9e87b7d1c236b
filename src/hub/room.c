/*
 * Rooms (jam sessions) on top of channels, presence and engine records.
 *
 * A room CODE is:
 *  - a record "room:CODE" in the engine ({"room_code","name","max_participants",
 *    "created_at"}), created only if the code is free, kept alive by the
 *    nodes that have participants in it (touched every grace/3) and gone
 *    `grace` seconds after the last one left;
 *  - a presence set on the channel room:CODE: the participants;
 *  - the channel room:CODE: the events, whose offsets are the room's seq and
 *    whose history is the recording (the engine's own bounds for "room:");
 *  - the channel roomctl:CODE: joins and leaves.
 * A participant subscribes to both channels, skipping the messages of its
 * own event name "relay:USER_ID", so it never hears itself, unless it asked
 * for an echo (then the event is published as "echo:USER_ID").
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hub_internal.h"

static const char *const hub__default_words = "MUSIC,JAM,BEAT,GROOVE,RIFF,TEMPO,CHORD,SONG,DRUM,BASS,SYNTH,LOOP";

const char *hub_room_error(int status) {
  switch (status) {
    case HUB_ROOM_NOT_FOUND: return "ROOM_NOT_FOUND";
    case HUB_ROOM_FULL: return "ROOM_FULL";
    case HUB_ROOM_NOT_IN: return "NOT_IN_ROOM";
    case HUB_ROOM_RATE_LIMITED: return "RATE_LIMITED";
    case HUB_ROOM_TOO_LARGE: return "TOO_LARGE";
    case HUB_ROOM_BAD_EVENT: return "BAD_EVENT";
    default: return "ENGINE_UNAVAILABLE";
  }
}

void hub_rooms_configure(hub_t *hub, const hub_room_options_t *opts) {
  hub->rooms = *opts;
  if (hub->rooms.code_words == NULL || hub->rooms.code_words[0] == '\0') hub->rooms.code_words = hub__default_words;
}

bool hub_channel_reserved(const char *channel, size_t len) {
  return (len >= 5 && memcmp(channel, "room:", 5) == 0) || (len >= 8 && memcmp(channel, "roomctl:", 8) == 0);
}

bool hub_room_channel(const char *code, size_t len, char *out, size_t cap) {
  if (len == 0 || len > HUB_ROOM_CODE_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    char c = code[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  }
  snprintf(out, cap, "room:%.*s", (int)len, code);
  return true;
}

static uint64_t hub__ttl(const hub_t *hub) { return (uint64_t)(hub->rooms.grace * 1000); }

/* ================================================================ events as JSON */

void hub_room_event_json(const tt_msg_t *msg, const char *type, tt_str_t *out) {
  static const char own[] = "{\"type\":\"event:broadcast\",";
  tt_str_appendf(out, "{\"seq\":%" PRIu64 ",\"server_time\":%" PRIu64 ",", msg->offset, msg->time_ms);
  const char *rest = msg->data + 1; /* the data is a JSON object made by hub_room_broadcast */
  size_t rest_len = msg->data_len > 0 ? msg->data_len - 1 : 0;
  if (type != NULL && msg->data_len >= sizeof(own) - 1 && memcmp(msg->data, own, sizeof(own) - 1) == 0) {
    tt_str_appendf(out, "\"type\":\"%s\",", type);
    rest = msg->data + sizeof(own) - 1;
    rest_len = msg->data_len - (sizeof(own) - 1);
  }
  tt_str_append(out, rest, rest_len);
}

/* ================================================================ creating */

typedef struct hub_create_s {
  hub_t *hub;
  uv_loop_t *loop;
  hub_room_created_cb cb;
  void *ctx;
  int attempts;
  int digits;
  char code[HUB_ROOM_CODE_MAX + 1];
  tt_str_t name;   /* raw JSON string or empty */
  int max;
  tt_str_t record;
} hub_create_t;

static void hub__create_try(hub_create_t *c);

static void hub__on_created(void *ctx, int status, const char *record) {
  hub_create_t *c = ctx;
  (void)record;
  if (status == -EEXIST && c->attempts < 12) {
    if (c->attempts % 4 == 3) c->digits++; /* crowded: longer numbers */
    hub__create_try(c);
    return;
  }
  if (status == 0) c->cb(c->ctx, 0, c->code, c->record.data);
  else c->cb(c->ctx, status == -EEXIST ? -EEXIST : HUB_ROOM_UNAVAILABLE, NULL, NULL);
  tt_str_free(&c->name);
  tt_str_free(&c->record);
  free(c);
}

static void hub__create_try(hub_create_t *c) {
  c->attempts++;
  /* a word from the list and a number */
  const char *words = c->hub->rooms.code_words;
  size_t nwords = 1;
  for (const char *p = words; *p; p++) nwords += *p == ',';
  unsigned char rnd[8];
  tt_random_bytes(rnd, sizeof(rnd));
  size_t pick = ((size_t)rnd[0] * 256 + rnd[1]) % nwords;
  const char *w = words;
  for (size_t i = 0; i < pick; i++) w = strchr(w, ',') + 1;
  size_t wl = strcspn(w, ",");
  unsigned long max = 1;
  for (int i = 0; i < c->digits && max < 100000000ul; i++) max *= 10;
  unsigned long num = (((unsigned long)rnd[2] << 24) | ((unsigned long)rnd[3] << 16) | ((unsigned long)rnd[4] << 8) | rnd[5]) % max;
  snprintf(c->code, sizeof(c->code), "%.*s-%lu", (int)TT_MIN(wl, (size_t)20), w, num);
  char key[64];
  hub_room_channel(c->code, strlen(c->code), key, sizeof(key));
  c->record.len = 0;
  tt_str_appendf(&c->record, "{\"room_code\":\"%s\",\"name\":%s,\"max_participants\":%d,\"created_at\":%" PRIu64 "}",
                 c->code, c->name.len ? c->name.data : "null", c->max, tt_now_ms());
  engine_t *e = c->hub->engine;
  e->vt->record_create(e, c->loop, key, c->record.data, hub__ttl(c->hub), hub__on_created, c);
}

void hub_room_create(hub_t *hub, uv_loop_t *loop, const char *name, size_t name_len, int max_participants,
                     hub_room_created_cb cb, void *ctx) {
  hub_create_t *c = tt_calloc(1, sizeof(*c));
  c->hub = hub;
  c->loop = loop;
  c->cb = cb;
  c->ctx = ctx;
  c->digits = hub->rooms.code_digits;
  c->max = max_participants > 0 ? max_participants : hub->rooms.max_participants;
  if (name != NULL && name_len > 0) tt_str_append(&c->name, name, name_len);
  hub__create_try(c);
}

/* ================================================================ members */

hub_room_member_t *hub_room_member_new(hub_client_t *client, const char *user_id) {
  hub_room_member_t *m = tt_calloc(1, sizeof(*m));
  m->client = client;
  m->worker = client->worker;
  snprintf(m->user_id, sizeof(m->user_id), "%s", user_id);
  snprintf(m->skip, sizeof(m->skip), "relay:%s", m->user_id);
  snprintf(m->echo, sizeof(m->echo), "echo:%s", m->user_id);
  m->events.room = true;
  m->events.skip_event = m->skip;
  m->ctl.room = true;
  m->ctl.skip_event = m->skip;
  tt_list_init(&m->link);
  tt_list_init(&m->tlink);
  m->state = HUB_MEMBER_LEFT;
  return m;
}

static void hub__member_maybe_free(hub_room_member_t *m) {
  if (!m->released || m->pending > 0) return;
  tt_str_free(&m->user);
  free(m);
}

static hub_worker_t *hub__hw(hub_t *hub, hub_room_member_t *m) { return &hub->workers[m->worker]; }
static uv_loop_t *hub__loop(hub_t *hub, hub_room_member_t *m) { return hub__hw(hub, m)->wakeup.loop; }

static void hub__publish_ignore(void *ctx, int status, const engine_pos_t *pos) {
  (void)ctx;
  (void)status;
  (void)pos;
}

/* Tells the room's control channel; participants skip their own. */
static void hub__control(hub_t *hub, hub_room_member_t *m, const tt_str_t *data) {
  char ch[64];
  snprintf(ch, sizeof(ch), "roomctl:%s", m->code);
  hub_publish(hub, hub__loop(hub, m), ch, strlen(ch), m->skip, strlen(m->skip), data->data, data->len,
              hub__publish_ignore, NULL);
}

/* ================================================================ joining */

typedef struct hub_join_s {
  hub_t *hub;
  hub_room_member_t *m;
  hub_room_joined_cb cb;
  void *ctx;
  int max;
  int subs_waiting;
  int subs_status;         /* the first failure among the two subscriptions */
  bool subscribing;        /* presence set, the two subscriptions registered */
  tt_str_t participants;
} hub_join_t;

/* Ends a join. The callback always runs (so the transport can free its
 * context); after a release it gets HUB_ROOM_UNAVAILABLE and must not touch
 * the member. */
static void hub__join_done(hub_join_t *j, int status) {
  hub_room_member_t *m = j->m;
  m->join = NULL;
  if (m->released && status == 0) {
    hub_room_leave(j->hub, m);
    status = HUB_ROOM_UNAVAILABLE;
  }
  if (status != 0 && m->state == HUB_MEMBER_JOINING) {
    m->state = HUB_MEMBER_LEFT;
    if (j->subscribing) { /* it was listed as present: undo */
      char ch[64];
      hub_room_channel(m->code, strlen(m->code), ch, sizeof(ch));
      j->hub->engine->vt->presence_remove(j->hub->engine, hub__loop(j->hub, m), ch, strlen(ch), m->user_id);
    }
  }
  j->cb(j->ctx, m, status, status == 0 ? j->participants.data : NULL);
  m->pending--;
  tt_str_free(&j->participants);
  free(j);
  hub__member_maybe_free(m);
}

static void hub__join_subscribed(void *ctx, hub_sub_t *sub, const engine_history_t *h) {
  hub_join_t *j = ctx;
  hub_room_member_t *m = j->m;
  hub_sub_live(j->hub, sub, &h->top);
  if (h->status != 0 && j->subs_status == 0) j->subs_status = h->status;
  if (--j->subs_waiting > 0) return;
  if (j->subs_status != 0) {
    /* the engine went away meanwhile */
    hub_unsubscribe(j->hub, &m->events);
    hub_unsubscribe(j->hub, &m->ctl);
    hub__join_done(j, HUB_ROOM_UNAVAILABLE);
    return;
  }
  m->state = HUB_MEMBER_JOINED;
  m->tokens = j->hub->rooms.burst;
  m->tokens_ms = uv_now(hub__loop(j->hub, m));
  tt_list_insert_tail(&hub__hw(j->hub, m)->members, &m->link);
  tt_str_t joined = {0};
  tt_str_appendf(&joined, "{\"type\":\"session:user-joined\",\"room_code\":\"%s\",\"user\":%s}", m->code, m->user.data);
  hub__control(j->hub, m, &joined);
  tt_str_free(&joined);
  hub__join_done(j, 0);
}

static void hub__join_members(void *ctx, int status, const engine_member_t *members, size_t count) {
  hub_join_t *j = ctx;
  hub_room_member_t *m = j->m;
  if (status != 0) {
    hub__join_done(j, HUB_ROOM_UNAVAILABLE);
    return;
  }
  size_t others = 0;
  tt_str_append(&j->participants, "[", 1);
  for (size_t i = 0; i < count; i++) {
    if (strcmp(members[i].id, m->user_id) == 0) continue;
    if (others++) tt_str_append(&j->participants, ",", 1);
    tt_str_appends(&j->participants, members[i].info);
  }
  if ((int)others >= j->max) {
    hub__join_done(j, HUB_ROOM_FULL);
    return;
  }
  if (others) tt_str_append(&j->participants, ",", 1);
  tt_str_append(&j->participants, m->user.data, m->user.len);
  tt_str_append(&j->participants, "]", 1);
  if (m->released) {
    hub__join_done(j, HUB_ROOM_UNAVAILABLE);
    return;
  }
  char ch[64];
  hub_room_channel(m->code, strlen(m->code), ch, sizeof(ch));
  engine_t *e = j->hub->engine;
  e->vt->presence_set(e, hub__loop(j->hub, m), ch, strlen(ch), m->user_id, m->user.data,
                      (uint64_t)(j->hub->rooms.presence_ttl * 1000));
  e->vt->record_touch(e, hub__loop(j->hub, m), ch, hub__ttl(j->hub));
  j->subs_waiting = 2;
  j->subscribing = true;
  char ctl[64];
  snprintf(ctl, sizeof(ctl), "roomctl:%s", m->code);
  hub_subscribe(j->hub, m->client, &m->events, ch, strlen(ch), NULL, hub__join_subscribed, j);
  hub_subscribe(j->hub, m->client, &m->ctl, ctl, strlen(ctl), NULL, hub__join_subscribed, j);
}

/* "max_participants":N from a room record */
static int hub__record_max(const char *record, int dflt) {
  const char *p = strstr(record, "\"max_participants\":");
  if (p == NULL) return dflt;
  int v = atoi(p + 19);
  return v > 0 ? v : dflt;
}

static void hub__join_record(void *ctx, int status, const char *record) {
  hub_join_t *j = ctx;
  if (j->m->released) {
    hub__join_done(j, HUB_ROOM_UNAVAILABLE);
    return;
  }
  if (status != 0) {
    hub__join_done(j, status == -ENOENT ? HUB_ROOM_NOT_FOUND : HUB_ROOM_UNAVAILABLE);
    return;
  }
  j->max = hub__record_max(record, j->hub->rooms.max_participants);
  char ch[64];
  hub_room_channel(j->m->code, strlen(j->m->code), ch, sizeof(ch));
  engine_t *e = j->hub->engine;
  e->vt->presence_list(e, hub__loop(j->hub, j->m), ch, strlen(ch), hub__join_members, j);
}

void hub_room_join(hub_t *hub, hub_room_member_t *m, const char *code, tt_json_span_t name,
                   const tt_json_span_t *instrument, hub_room_joined_cb cb, void *ctx) {
  snprintf(m->code, sizeof(m->code), "%s", code);
  m->state = HUB_MEMBER_JOINING;
  m->user.len = 0;
  tt_str_appendf(&m->user, "{\"user_id\":\"%s\",\"name\":", m->user_id);
  tt_str_append(&m->user, name.p, name.len);
  if (instrument != NULL) {
    tt_str_appends(&m->user, ",\"instrument\":");
    tt_str_append(&m->user, instrument->p, instrument->len);
  }
  tt_str_appendf(&m->user, ",\"joined_at\":%" PRIu64 "}", tt_now_ms());
  hub_join_t *j = tt_calloc(1, sizeof(*j));
  j->hub = hub;
  j->m = m;
  j->cb = cb;
  j->ctx = ctx;
  m->join = j;
  m->pending++;
  char ch[64];
  hub_room_channel(code, strlen(code), ch, sizeof(ch));
  engine_t *e = hub->engine;
  e->vt->record_get(e, hub__loop(hub, m), ch, hub__join_record, j);
}

/* ================================================================ leaving */

void hub_room_leave(hub_t *hub, hub_room_member_t *m) {
  if (m->state != HUB_MEMBER_JOINED) return;
  m->state = HUB_MEMBER_LEFT;
  tt_list_remove(&m->link);
  hub_unsubscribe(hub, &m->events);
  hub_unsubscribe(hub, &m->ctl);
  char ch[64];
  hub_room_channel(m->code, strlen(m->code), ch, sizeof(ch));
  engine_t *e = hub->engine;
  e->vt->presence_remove(e, hub__loop(hub, m), ch, strlen(ch), m->user_id);
  e->vt->record_touch(e, hub__loop(hub, m), ch, hub__ttl(hub)); /* `grace` from now */
  tt_str_t left = {0};
  tt_str_appendf(&left, "{\"type\":\"session:user-left\",\"room_code\":\"%s\",\"user_id\":\"%s\"}", m->code, m->user_id);
  hub__control(hub, m, &left);
  tt_str_free(&left);
}

void hub_room_member_release(hub_t *hub, hub_room_member_t *m) {
  m->released = true;
  hub_room_leave(hub, m);
  if (m->state == HUB_MEMBER_JOINING && m->join != NULL && m->join->subscribing) {
    /* The subscriptions point at a client that is going away: drop them;
     * their answers will not come, so the join ends here. */
    hub_unsubscribe(hub, &m->events);
    hub_unsubscribe(hub, &m->ctl);
    hub__join_done(m->join, HUB_ROOM_UNAVAILABLE); /* may free m */
    return;
  }
  hub__member_maybe_free(m);
}

/* ================================================================ relaying */

int hub_room_broadcast(hub_t *hub, hub_room_member_t *m, tt_json_span_t event_name, tt_json_span_t payload, bool echo,
                       engine_publish_cb cb, void *ctx) {
  if (m->state != HUB_MEMBER_JOINED) return HUB_ROOM_NOT_IN;
  if (event_name.len < 3 || event_name.len > 66 + 64 || event_name.p[0] != '"') return HUB_ROOM_BAD_EVENT;
  tt_str_t dec = {0};
  bool ok = tt_json_string_decode(event_name, &dec) == 0 && dec.len >= 1 && dec.len <= 64;
  tt_str_free(&dec);
  if (!ok) return HUB_ROOM_BAD_EVENT;
  if (payload.len > hub->rooms.max_payload) return HUB_ROOM_TOO_LARGE;
  if (hub->rooms.rate > 0) {
    uint64_t now = uv_now(hub__loop(hub, m));
    m->tokens += (double)(now - m->tokens_ms) * hub->rooms.rate / 1000.0;
    m->tokens_ms = now;
    if (m->tokens > hub->rooms.burst) m->tokens = hub->rooms.burst;
    if (m->tokens < 1) return HUB_ROOM_RATE_LIMITED;
    m->tokens -= 1;
  }
  tt_str_t data = {0};
  tt_str_reserve(&data, payload.len + event_name.len + 128);
  tt_str_appendf(&data, "{\"type\":\"event:broadcast\",\"room_code\":\"%s\",\"event_name\":", m->code);
  tt_str_append(&data, event_name.p, event_name.len);
  tt_str_appends(&data, ",\"payload\":");
  tt_str_append(&data, payload.p, payload.len);
  tt_str_appendf(&data, ",\"sender_id\":\"%s\"}", m->user_id);
  char ch[64];
  hub_room_channel(m->code, strlen(m->code), ch, sizeof(ch));
  const char *ev = echo ? m->echo : m->skip;
  hub_publish(hub, hub__loop(hub, m), ch, strlen(ch), ev, strlen(ev), data.data, data.len, cb, ctx);
  tt_str_free(&data);
  return 0;
}

/* ================================================================ upkeep */

/* Renews the presence of this worker's participants and the records of
 * their rooms, a few times per TTL. */
static void hub__on_upkeep(uv_timer_t *t) {
  hub_worker_t *hw = tt_container_of(t, hub_worker_t, upkeep);
  hub_t *hub = hw->hub;
  engine_t *e = hub->engine;
  for (tt_list_t *l = hw->members.next; l != &hw->members; l = l->next) {
    hub_room_member_t *m = tt_container_of(l, hub_room_member_t, link);
    char ch[64];
    hub_room_channel(m->code, strlen(m->code), ch, sizeof(ch));
    e->vt->presence_set(e, t->loop, ch, strlen(ch), m->user_id, m->user.data,
                        (uint64_t)(hub->rooms.presence_ttl * 1000));
    e->vt->record_touch(e, t->loop, ch, hub__ttl(hub));
  }
}

void hub__room_worker_init(hub_t *hub, hub_worker_t *hw, uv_loop_t *loop) {
  double every = TT_MIN(hub->rooms.grace, hub->rooms.presence_ttl) / 3;
  uint64_t ms = (uint64_t)(TT_MAX(every, 0.05) * 1000);
  uv_timer_init(loop, &hw->upkeep);
  uv_timer_start(&hw->upkeep, hub__on_upkeep, ms, ms);
}
