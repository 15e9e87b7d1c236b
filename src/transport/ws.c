/*
 * WebSocket: the upgrade, the frame reader with RFC 6455's rules, the
 * permessage-deflate extension, and tutti's JSON client protocol (see
 * docs/PROTOCOL.md). A connection is one hub client with any number of
 * subscriptions.
 *
 * Published messages are framed once per kind (tt_msg_frame): the plain text
 * frame, and the compressed one for clients that negotiated
 * permessage-deflate with server_no_context_takeover, so that one compressed
 * frame serves them all.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "../obs/obs.h"
#include "transport.h"

typedef struct ws_client_s ws_client_t;

typedef struct ws_sub_s {
  hub_sub_t sub;
  ws_client_t *client;
  tt_list_t link;          /* in the client's subscriptions */
  bool has_since;
  engine_pos_t since;
  tt_str_t ref;            /* the subscribe request's id, raw JSON ("" if none) */
  tt_str_t presence;       /* the member's info, raw JSON ("" if not a member) */
  size_t channel_len;
  char channel[];
} ws_sub_t;

struct ws_client_s {
  hub_client_t hub;
  net_conn_t *conn;
  tt_list_t link;          /* in the worker's list of WebSocket clients */
  uint64_t opened_ms;

  /* permessage-deflate */
  bool deflate;
  bool inflate_reset;      /* client_no_context_takeover agreed */
  bool inflate_ended;      /* the last message ended the deflate stream */
  z_stream *inflater;
  tt_str_t window;         /* the last 32 KiB inflated: the context a new stream continues */

  /* input */
  uint8_t *in;
  size_t in_len, in_cap;
  tt_str_t msg;            /* the message being assembled */
  unsigned msg_op;         /* 0: none in progress */
  bool msg_compressed;
  ws_utf8_t utf8;

  bool closing;            /* our close frame is queued: ignore further input */
  uint64_t last_rx_ms;
  uint64_t ping_sent_ms;   /* 0: no ping outstanding */
  double tokens;
  uint64_t tokens_ms;

  tt_list_t subs;
  int nsubs;
  tt_list_t rooms;         /* hub_room_member_t.tlink */
  struct ws_replay_s *replay;
  uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
};

/* A recording being played back to one client. */
typedef struct ws_replay_s {
  uv_timer_t timer;
  ws_client_t *client;     /* NULL once the client is gone */
  tt_msg_t **msgs;
  size_t count, next;
  double speed;
  uint64_t start_ms;       /* loop time of the first event */
  uint64_t t0;             /* server time of the first event */
  char code[HUB_ROOM_CODE_MAX + 1];
} ws_replay_t;

typedef struct ws_worker_s {
  uv_timer_t pinger;
  tt_list_t clients;
  uint64_t presence_renewed_ms;
} ws_worker_t;

static struct {
  hub_t *hub;
  ws_options_t opts;
  ws_worker_t *workers;
  char conn_prefix[TT_EPOCH_LEN + 1];
  pthread_key_t deflater_key;
} ws;

static void ws__send_close(ws_client_t *cl, unsigned code, const char *reason);

/* ================================================================ compression */

static void ws__deflater_free(void *p) {
  deflateEnd(p);
  free(p);
}

/* Compresses data as one permessage-deflate message without context
 * takeover: a per-thread stream, reset for each message. */
static int ws__deflate(const char *data, size_t len, tt_str_t *out) {
  z_stream *z = pthread_getspecific(ws.deflater_key);
  if (z == NULL) {
    z = tt_calloc(1, sizeof(*z));
    if (deflateInit2(z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      free(z);
      return -ENOMEM;
    }
    pthread_setspecific(ws.deflater_key, z);
  } else {
    deflateReset(z);
  }
  z->next_in = (Bytef *)data;
  z->avail_in = (uInt)len;
  do {
    tt_str_reserve(out, TT_MAX(len / 2, (size_t)64));
    z->next_out = (Bytef *)out->data + out->len;
    z->avail_out = (uInt)(out->cap - out->len - 1);
    size_t before = z->avail_out;
    if (deflate(z, Z_SYNC_FLUSH) == Z_STREAM_ERROR) return -EIO;
    out->len += before - z->avail_out;
  } while (z->avail_out == 0 || z->avail_in > 0);
  /* RFC 7692 7.2.1: drop the 00 00 ff ff the sync flush ends with */
  if (out->len >= 4 && memcmp(out->data + out->len - 4, "\x00\x00\xff\xff", 4) == 0) out->len -= 4;
  return 0;
}

/* Inflates a client's message into `out`, at most `max` bytes. With context
 * takeover, a message may end the deflate stream (a final block, RFC 7692
 * 7.2.3.4): the next one then starts a new stream primed with the last
 * 32 KiB of output. */
static int ws__inflate(ws_client_t *cl, const char *data, size_t len, tt_str_t *out, size_t max) {
  if (cl->inflater == NULL) {
    cl->inflater = tt_calloc(1, sizeof(z_stream));
    if (inflateInit2(cl->inflater, -15) != Z_OK) {
      free(cl->inflater);
      cl->inflater = NULL;
      return -ENOMEM;
    }
  }
  z_stream *z = cl->inflater;
  if (cl->inflate_ended) {
    inflateReset(z);
    if (cl->window.len > 0) inflateSetDictionary(z, (const Bytef *)cl->window.data, (uInt)cl->window.len);
    cl->inflate_ended = false;
  }
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  int rc = Z_OK;
  for (int part = 0; part < 2 && rc != Z_STREAM_END; part++) {
    z->next_in = (Bytef *)(part == 0 ? (const uint8_t *)data : tail);
    z->avail_in = (uInt)(part == 0 ? len : sizeof(tail));
    while (z->avail_in > 0) {
      tt_str_reserve(out, 4096);
      z->next_out = (Bytef *)out->data + out->len;
      z->avail_out = (uInt)(out->cap - out->len - 1);
      size_t before = z->avail_out;
      rc = inflate(z, Z_SYNC_FLUSH);
      out->len += before - z->avail_out;
      if (out->len > max) return -EMSGSIZE;
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR) return -EINVAL;
      if (rc == Z_BUF_ERROR && z->avail_out != 0) break;
    }
  }
  if (cl->inflate_reset) {
    inflateReset(z);
    return 0;
  }
  if (rc == Z_STREAM_END) cl->inflate_ended = true;
  /* keep the last 32 KiB as the context for a stream that must restart */
  size_t keep = 32768;
  if (out->len >= keep) {
    cl->window.len = 0;
    tt_str_append(&cl->window, out->data + out->len - keep, keep);
  } else {
    tt_str_append(&cl->window, out->data, out->len);
    if (cl->window.len > keep) {
      memmove(cl->window.data, cl->window.data + cl->window.len - keep, keep);
      cl->window.len = keep;
    }
  }
  return 0;
}

/* ================================================================ framing */

/* "{"type":"message","channel":..,"id":..,"event":..,"data":<bytes>}" */
static void ws__envelope(const tt_msg_t *m, tt_str_t *s) {
  tt_str_reserve(s, m->data_len + m->channel_len + m->event_len + 96);
  tt_str_appends(s, "{\"type\":\"message\",\"channel\":\"");
  tt_str_append(s, m->channel, m->channel_len); /* the name rules need no escaping */
  size_t el;
  const char *event = hub_msg_event(m, &el);
  tt_str_appendf(s, "\",\"id\":\"%s:%" PRIu64 "\",\"event\":\"", m->epoch, m->offset);
  tt_str_append(s, event, el);
  tt_str_appends(s, "\",\"data\":");
  tt_str_append(s, m->data, m->data_len);
  tt_str_appends(s, "}");
}

tt_buf_t *ws_frame_message(const tt_msg_t *m) {
  tt_str_t s = {0};
  ws__envelope(m, &s);
  tt_buf_t *b = ws_frame_build(WS_OP_TEXT, false, s.data, s.len);
  tt_str_free(&s);
  return b;
}

/*
 * An Opus or PCM16 render as one binary frame: a 4-byte little-endian
 * length, that many bytes of JSON describing it (the message's members but
 * "data", plus type, channel, id and event), then the audio bytes, decoded
 * once from the message's base64 "data". NULL when the message is not of
 * that shape (then it goes as text).
 */
typedef struct ws_audio_fields_s {
  tt_str_t head;
  tt_json_span_t data;
  bool has_data;
} ws_audio_fields_t;

static int ws__audio_member(void *ctx, tt_json_span_t key, tt_json_span_t value) {
  ws_audio_fields_t *f = ctx;
  if (tt_json_key_is(key, "data")) {
    f->data = value;
    f->has_data = value.len >= 2 && value.p[0] == '"';
    return 0;
  }
  tt_str_appends(&f->head, ",\"");
  tt_str_append(&f->head, key.p, key.len); /* the span inside the quotes, escapes kept */
  tt_str_appends(&f->head, "\":");
  tt_str_append(&f->head, value.p, value.len);
  return 0;
}

static tt_buf_t *ws__frame_audio(const tt_msg_t *m) {
  ws_audio_fields_t f = {0};
  tt_str_appends(&f.head, "{\"type\":\"audio_buffer\",\"channel\":\"");
  tt_str_append(&f.head, m->channel, m->channel_len);
  tt_str_appendf(&f.head, "\",\"id\":\"%s:%" PRIu64 "\",\"event\":\"audio_buffer\"", m->epoch, m->offset);
  tt_buf_t *b = NULL;
  tt_str_t audio = {0};
  if (tt_json_object_scan(m->data, m->data_len, ws__audio_member, &f) == 0 && f.has_data &&
      tt_base64_decode(f.data.p + 1, f.data.len - 2, &audio) == 0) {
    tt_str_appends(&f.head, "}");
    tt_str_t payload = {0};
    tt_str_reserve(&payload, 4 + f.head.len + audio.len);
    uint8_t len[4] = {(uint8_t)f.head.len, (uint8_t)(f.head.len >> 8), (uint8_t)(f.head.len >> 16),
                      (uint8_t)(f.head.len >> 24)};
    tt_str_append(&payload, len, 4);
    tt_str_append(&payload, f.head.data, f.head.len);
    tt_str_append(&payload, audio.data, audio.len);
    b = ws_frame_build(WS_OP_BINARY, false, payload.data, payload.len);
    tt_str_free(&payload);
  }
  tt_str_free(&audio);
  tt_str_free(&f.head);
  return b != NULL ? b : tt_buf_new(0); /* cached too: "send as text" */
}

/* A text frame of `payload`, compressed when the client negotiated it and
 * the payload is big enough. */
static tt_buf_t *ws__text_frame(bool deflate, const char *payload, size_t len) {
  if (deflate && len >= (size_t)ws.opts.deflate_threshold) {
    tt_str_t z = {0};
    if (ws__deflate(payload, len, &z) == 0) {
      tt_buf_t *b = ws_frame_build(WS_OP_TEXT, true, z.data, z.len);
      tt_str_free(&z);
      return b;
    }
    tt_str_free(&z);
  }
  return ws_frame_build(WS_OP_TEXT, false, payload, len);
}

tt_buf_t *ws_frame_message_deflated(const tt_msg_t *m) {
  tt_str_t s = {0};
  ws__envelope(m, &s);
  tt_buf_t *b = ws__text_frame(true, s.data, s.len);
  tt_str_free(&s);
  return b;
}

/* A room's message as its participants get it: events with seq and
 * server_time, joins and leaves as they were published. */
static void ws__room_payload(const tt_msg_t *m, tt_str_t *s) {
  if (m->channel_len >= 5 && memcmp(m->channel, "room:", 5) == 0) hub_room_event_json(m, NULL, s);
  else tt_str_append(s, m->data, m->data_len);
}

static tt_buf_t *ws__frame_room(const tt_msg_t *m) {
  tt_str_t s = {0};
  ws__room_payload(m, &s);
  tt_buf_t *b = ws_frame_build(WS_OP_TEXT, false, s.data, s.len);
  tt_str_free(&s);
  return b;
}

static tt_buf_t *ws__frame_room_deflated(const tt_msg_t *m) {
  tt_str_t s = {0};
  ws__room_payload(m, &s);
  tt_buf_t *b = ws__text_frame(true, s.data, s.len);
  tt_str_free(&s);
  return b;
}

static void ws__send_text(ws_client_t *cl, const tt_str_t *s) {
  tt_buf_t *b = ws__text_frame(cl->deflate, s->data, s->len);
  if (net_conn_send(cl->conn, b, 0) == 0) {
    cl->msgs_out++;
    cl->bytes_out += b->len;
  }
  tt_buf_unref(b);
}

/* ================================================================ replies */

static void ws__ref(tt_str_t *s, const tt_str_t *ref) {
  if (ref != NULL && ref->len > 0) {
    tt_str_appends(s, ",\"ref\":");
    tt_str_append(s, ref->data, ref->len);
  }
}

static void ws__error(ws_client_t *cl, const char *code, const char *message, const tt_str_t *ref) {
  tt_str_t s = {0};
  tt_str_appendf(&s, "{\"type\":\"error\",\"code\":\"%s\",\"message\":\"", code);
  tt_str_append_json(&s, message, strlen(message));
  tt_str_appends(&s, "\"");
  ws__ref(&s, ref);
  tt_str_appendf(&s, ",\"timestamp\":%" PRIu64 "}", tt_now_ms());
  ws__send_text(cl, &s);
  tt_str_free(&s);
}

/* ================================================================ delivery */

/* The frame kind (and its builder) of a text message for this subscription. */
static tt_frame_kind_t ws__text_kind(const ws_client_t *cl, const hub_sub_t *hs, tt_buf_t *(**build)(const tt_msg_t *)) {
  if (hs->room) {
    *build = cl->deflate ? ws__frame_room_deflated : ws__frame_room;
    return cl->deflate ? TT_FRAME_WS_ROOM_DEFLATE : TT_FRAME_WS_ROOM;
  }
  *build = cl->deflate ? ws_frame_message_deflated : ws_frame_message;
  return cl->deflate ? TT_FRAME_WS_DEFLATE : TT_FRAME_WS;
}

/* Queues `frame`, which holds `n` messages. */
static void ws__send_messages(ws_client_t *cl, tt_buf_t *frame, size_t n) {
  if (net_conn_send(cl->conn, frame, 0) == 0) {
    cl->msgs_out += n;
    cl->bytes_out += frame->len;
    obs_add(OBS_DELIVERED, n);
    obs_add(OBS_DELIVERED_BYTES, frame->len);
    obs_add(OBS_WS_MESSAGES_SENT, n);
  }
}

static void ws__deliver(hub_client_t *hc, hub_sub_t *hs, tt_msg_t *msg) {
  ws_client_t *cl = tt_container_of(hc, ws_client_t, hub);
  tt_buf_t *frame = NULL;
  size_t el;
  const char *enc = hub_msg_encoding(msg, &el);
  /* Opus and PCM16 go binary; a message every subscriber of that encoding
   * gets, so one cache slot serves them all, deflate or not (audio does not
   * compress). When the message is not a render's shape it goes as text. */
  if (enc != NULL && ((el == 4 && memcmp(enc, "opus", 4) == 0) || (el == 5 && memcmp(enc, "pcm16", 5) == 0)))
    frame = tt_msg_frame(msg, TT_FRAME_WS_AUDIO, ws__frame_audio);
  if (frame == NULL || frame->len == 0) {
    tt_buf_t *(*build)(const tt_msg_t *);
    tt_frame_kind_t kind = ws__text_kind(cl, hs, &build);
    frame = tt_msg_frame(msg, kind, build);
  }
  ws__send_messages(cl, frame, 1);
}

static bool ws__deliver_run(hub_client_t *hc, hub_sub_t *hs, hub_run_t *run) {
  ws_client_t *cl = tt_container_of(hc, ws_client_t, hub);
  tt_buf_t *(*build)(const tt_msg_t *);
  tt_frame_kind_t kind = ws__text_kind(cl, hs, &build);
  ws__send_messages(cl, hub_run_frame(run, kind, build), run->n);
  return true;
}

static const hub_client_vt_t ws_hub_vt = {.deliver = ws__deliver, .deliver_run = ws__deliver_run};

/* ================================================================ subscriptions */

static void ws__member_id(const ws_client_t *cl, char *out, size_t cap) {
  snprintf(out, cap, "%s-%" PRIu64, ws.conn_prefix, net_conn_id(cl->conn));
}

static void ws__presence_set(ws_client_t *cl, ws_sub_t *s) {
  char id[64];
  ws__member_id(cl, id, sizeof(id));
  engine_t *e = hub_engine(ws.hub);
  e->vt->presence_set(e, &net_conn_worker(cl->conn)->loop, s->channel, s->channel_len, id, s->presence.data,
                      (uint64_t)(ws.opts.presence_ttl * 1000));
}

static ws_sub_t *ws__find(ws_client_t *cl, const char *channel, size_t len) {
  for (tt_list_t *l = cl->subs.next; l != &cl->subs; l = l->next) {
    ws_sub_t *s = tt_container_of(l, ws_sub_t, link);
    if (s->channel_len == len && memcmp(s->channel, channel, len) == 0) return s;
  }
  return NULL;
}

static void ws__sub_free(ws_client_t *cl, ws_sub_t *s) {
  if (s->presence.len > 0) {
    char id[64];
    ws__member_id(cl, id, sizeof(id));
    engine_t *e = hub_engine(ws.hub);
    e->vt->presence_remove(e, &net_conn_worker(cl->conn)->loop, s->channel, s->channel_len, id);
  }
  hub_unsubscribe(ws.hub, &s->sub);
  tt_list_remove(&s->link);
  cl->nsubs--;
  tt_str_free(&s->ref);
  tt_str_free(&s->presence);
  free(s);
}

static const char *ws__reason(engine_recovery_t r) {
  switch (r) {
    case ENGINE_HISTORY_EXPIRED: return "history_expired";
    case ENGINE_EPOCH_CHANGED: return "epoch_changed";
    default: return "bad_position";
  }
}

static void ws__on_subscribed(void *ctx, hub_sub_t *hs, const engine_history_t *h) {
  ws_sub_t *s = ctx;
  ws_client_t *cl = s->client;
  (void)hs;
  if (net_conn_is_closing(cl->conn)) return;
  if (h->status != 0) {
    ws__error(cl, "ENGINE_UNAVAILABLE", "the engine is not available; retry later", &s->ref);
    tt_str_free(&s->presence); /* never became a member */
    ws__sub_free(cl, s);
    return;
  }
  if (s->presence.len > 0) ws__presence_set(cl, s);
  bool recovered = s->has_since && h->recovery == ENGINE_RECOVERED;
  engine_pos_t pos = h->top;
  if (s->has_since && h->recovery == ENGINE_RECOVERED) {
    pos.offset = s->since.offset;
  } else if (s->has_since) {
    pos.offset = h->oldest - 1;
    tt_str_t r = {0};
    tt_str_appends(&r, "{\"type\":\"recovery_incomplete\",\"channel\":\"");
    tt_str_append(&r, s->channel, s->channel_len);
    tt_str_appendf(&r,
                   "\",\"reason\":\"%s\",\"requested\":\"%s%s%" PRIu64 "\",\"epoch\":\"%s\",\"oldest_offset\":%" PRIu64
                   ",\"last_offset\":%" PRIu64 "}",
                   ws__reason(h->recovery), s->since.epoch, s->since.epoch[0] ? ":" : "", s->since.offset,
                   h->top.epoch, h->oldest, h->top.offset);
    ws__send_text(cl, &r);
    tt_str_free(&r);
  }
  if (s->has_since) obs_inc(recovered ? OBS_RECOVERIES : OBS_RECOVERIES_INCOMPLETE);
  /* Missed messages, then `subscribed` with the position they reached, then
   * live ones (hub_sub_live releases what arrived meanwhile). */
  for (size_t i = 0; i < h->count; i++) {
    tt_msg_t *m = h->msgs[i];
    if (m->offset > pos.offset || strcmp(m->epoch, pos.epoch) != 0) {
      memcpy(pos.epoch, m->epoch, sizeof(pos.epoch));
      pos.offset = m->offset;
      if (hub_sub_wants(&s->sub, m)) ws__deliver(&cl->hub, &s->sub, m);
    }
  }
  tt_str_t r = {0};
  tt_str_appends(&r, "{\"type\":\"subscribed\",\"channel\":\"");
  tt_str_append(&r, s->channel, s->channel_len);
  tt_str_appendf(&r, "\",\"epoch\":\"%s\",\"offset\":%" PRIu64 ",\"id\":\"%s:%" PRIu64 "\",\"recovered\":%s", pos.epoch,
                 pos.offset, pos.epoch, pos.offset, recovered ? "true" : "false");
  ws__ref(&r, &s->ref);
  tt_str_appends(&r, "}");
  ws__send_text(cl, &r);
  tt_str_free(&r);
  hub_sub_live(ws.hub, &s->sub, &pos);
}

static void ws__subscribe(ws_client_t *cl, const char *channel, size_t clen, const engine_pos_t *since,
                          const tt_str_t *ref, const tt_json_span_t *presence, const char *encoding) {
  if (ws__find(cl, channel, clen) != NULL) {
    ws__error(cl, "ALREADY_SUBSCRIBED", "this connection already has the channel", ref);
    return;
  }
  if (cl->nsubs >= ws.opts.max_channels) {
    char msg[96];
    snprintf(msg, sizeof(msg), "at most %d channels per connection", ws.opts.max_channels);
    ws__error(cl, "TOO_MANY_CHANNELS", msg, ref);
    return;
  }
  ws_sub_t *s = tt_calloc(1, sizeof(*s) + clen + 1);
  s->client = cl;
  memcpy(s->channel, channel, clen);
  s->channel_len = clen;
  s->sub.encoding = encoding;
  if (since != NULL) {
    s->has_since = true;
    s->since = *since;
  }
  if (ref != NULL && ref->len > 0) tt_str_append(&s->ref, ref->data, ref->len);
  if (presence != NULL) tt_str_append(&s->presence, presence->p, presence->len);
  tt_list_insert_tail(&cl->subs, &s->link);
  cl->nsubs++;
  hub_subscribe(ws.hub, &cl->hub, &s->sub, s->channel, clen, since, ws__on_subscribed, s);
}

/* ================================================================ the client protocol */

typedef struct ws_req_s {
  tt_json_span_t type, id, channel, topic, since, event, data, client_time, presence, room_code, user, event_name,
      payload, echo, speed, name, max_participants, encoding;
  bool has_type, has_id, has_channel, has_topic, has_since, has_event, has_data, has_client_time, has_presence,
      has_room_code, has_user, has_event_name, has_payload, has_echo, has_speed, has_name, has_max_participants,
      has_encoding;
} ws_req_t;

#define WS_FIELD(name)                                         \
  if (tt_json_key_is(key, #name)) {                            \
    r->name = value;                                           \
    r->has_##name = true;                                      \
    return 0;                                                  \
  }

static int ws__member(void *ctx, tt_json_span_t key, tt_json_span_t value) {
  ws_req_t *r = ctx;
  WS_FIELD(type)
  WS_FIELD(id)
  WS_FIELD(channel)
  WS_FIELD(topic)
  WS_FIELD(since)
  WS_FIELD(event)
  WS_FIELD(data)
  WS_FIELD(client_time)
  WS_FIELD(presence)
  WS_FIELD(room_code)
  WS_FIELD(user)
  WS_FIELD(event_name)
  WS_FIELD(payload)
  WS_FIELD(echo)
  WS_FIELD(speed)
  WS_FIELD(name)
  WS_FIELD(max_participants)
  WS_FIELD(encoding)
  return 0;
}

static bool ws__type_is(const tt_str_t *type, const char *s) {
  size_t n = strlen(s);
  return type->len == n && memcmp(type->data, s, n) == 0;
}

/* Decodes the request's channel (or topic) into `out`; answers the error. */
static int ws__channel(ws_client_t *cl, const ws_req_t *r, tt_str_t *out, const tt_str_t *ref) {
  const char *why;
  if (!r->has_channel && !r->has_topic) {
    ws__error(cl, "MISSING_FIELD", "field 'channel' is required", ref);
    return -1;
  }
  if (tt_json_string_decode(r->has_channel ? r->channel : r->topic, out) != 0 ||
      hub_channel_check(out->data, out->len, &why) != 0) {
    ws__error(cl, "BAD_CHANNEL", "channel must be 1-255 bytes of [A-Za-z0-9_.:/-]", ref);
    return -1;
  }
  return 0;
}

static bool ws__may_publish(const char *channel, size_t len) {
  const char *list = ws.opts.client_publish;
  if (list == NULL) return false;
  for (const char *p = list; *p;) {
    while (*p == ' ' || *p == ',') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    size_t n = (size_t)(e - p);
    while (n > 0 && p[n - 1] == ' ') n--;
    if (n == 1 && *p == '*') return true;
    if (n > 0 && n <= len && memcmp(channel, p, n) == 0) return true;
    p = e;
  }
  return false;
}

/* A request answered from an engine callback: the connection (kept by a
 * ref), the request's id, and what the answer needs. */
typedef struct ws_pending_s {
  ws_client_t *client;
  net_conn_t *conn;
  tt_str_t ref;
  tt_str_t text;     /* a channel, a room code or a `user` object */
} ws_pending_t;

static ws_pending_t *ws__pending(ws_client_t *cl, const tt_str_t *ref, const char *text, size_t len) {
  ws_pending_t *q = tt_calloc(1, sizeof(*q));
  q->client = cl;
  q->conn = cl->conn;
  if (ref != NULL && ref->len) tt_str_append(&q->ref, ref->data, ref->len);
  if (text != NULL && len) tt_str_append(&q->text, text, len);
  net_conn_ref(cl->conn);
  return q;
}

static void ws__pending_free(ws_pending_t *q) {
  net_conn_unref(q->conn);
  tt_str_free(&q->ref);
  tt_str_free(&q->text);
  free(q);
}

static void ws__on_published(void *ctx, int status, const engine_pos_t *pos) {
  ws_pending_t *p = ctx;
  if (!net_conn_is_closing(p->conn)) {
    if (status != 0) {
      ws__error(p->client, "ENGINE_UNAVAILABLE", "the engine could not accept the message", &p->ref);
    } else {
      tt_str_t s = {0};
      tt_str_appends(&s, "{\"type\":\"published\",\"channel\":\"");
      tt_str_append(&s, p->text.data, p->text.len);
      tt_str_appendf(&s, "\",\"epoch\":\"%s\",\"offset\":%" PRIu64 ",\"id\":\"%s:%" PRIu64 "\"", pos->epoch, pos->offset,
                     pos->epoch, pos->offset);
      ws__ref(&s, &p->ref);
      tt_str_appends(&s, "}");
      ws__send_text(p->client, &s);
      tt_str_free(&s);
    }
  }
  ws__pending_free(p);
}


/* ================================================================ rooms */

static hub_room_member_t *ws__room_find(ws_client_t *cl, const char *code) {
  for (tt_list_t *l = cl->rooms.next; l != &cl->rooms; l = l->next) {
    hub_room_member_t *m = tt_container_of(l, hub_room_member_t, tlink);
    if (strcmp(m->code, code) == 0) return m;
  }
  return NULL;
}

/* Decodes room_code; answers the error. */
static int ws__room_code(ws_client_t *cl, const ws_req_t *r, char *code, size_t cap, const tt_str_t *ref) {
  if (!r->has_room_code) {
    ws__error(cl, "MISSING_FIELD", "field 'room_code' is required", ref);
    return -1;
  }
  tt_str_t c = {0};
  char ch[64];
  bool ok = tt_json_string_decode(r->room_code, &c) == 0 && hub_room_channel(c.data, c.len, ch, sizeof(ch));
  if (ok) snprintf(code, cap, "%s", c.data);
  tt_str_free(&c);
  if (!ok) ws__error(cl, "BAD_ROOM_CODE", "room_code must be a room code such as MUSIC-42", ref);
  return ok ? 0 : -1;
}

/* user: {name: string of 1-64 bytes, instrument?: string of at most 64} */
typedef struct ws_user_s {
  tt_json_span_t name, instrument;
  bool has_name, has_instrument;
} ws_user_t;

static int ws__user_member(void *ctx, tt_json_span_t key, tt_json_span_t value) {
  ws_user_t *u = ctx;
  if (tt_json_key_is(key, "name")) {
    u->name = value;
    u->has_name = true;
  } else if (tt_json_key_is(key, "instrument")) {
    u->instrument = value;
    u->has_instrument = true;
  }
  return 0;
}

static bool ws__short_string(tt_json_span_t v, size_t min, size_t max) {
  if (v.len < 2 || v.p[0] != '"') return false;
  tt_str_t d = {0};
  bool ok = tt_json_string_decode(v, &d) == 0 && d.len >= min && d.len <= max;
  tt_str_free(&d);
  return ok;
}

static int ws__user(ws_client_t *cl, const char *user, size_t len, ws_user_t *u, const tt_str_t *ref) {
  memset(u, 0, sizeof(*u));
  static const tt_json_span_t anon = {"\"anonymous\"", 11};
  if (user == NULL) {
    u->name = anon;
    return 0;
  }
  if (tt_json_object_scan(user, len, ws__user_member, u) != 0 || !u->has_name || !ws__short_string(u->name, 1, 64) ||
      (u->has_instrument && !ws__short_string(u->instrument, 0, 64))) {
    ws__error(cl, "BAD_USER", "user must be {\"name\": 1-64 bytes, \"instrument\"?: string}", ref);
    return -1;
  }
  return 0;
}

/* With the connection closing, the member was already released: only the
 * context is freed. */
static void ws__on_joined(void *ctx, hub_room_member_t *m, int status, const char *participants) {
  ws_pending_t *q = ctx;
  ws_client_t *cl = q->client;
  if (!net_conn_is_closing(q->conn)) {
    if (status != 0) {
      static const char *const msgs[] = {"no live room has that code", "the room is full", "the engine is not available"};
      int i = status == HUB_ROOM_NOT_FOUND ? 0 : status == HUB_ROOM_FULL ? 1 : 2;
      ws__error(cl, hub_room_error(status), msgs[i], &q->ref);
      tt_list_remove(&m->tlink);
      hub_room_member_release(ws.hub, m);
    } else {
      tt_str_t s = {0};
      tt_str_appendf(&s, "{\"type\":\"session:joined\",\"room_code\":\"%s\",\"user_id\":\"%s\",\"participants\":%s", m->code,
                     m->user_id, participants);
      ws__ref(&s, &q->ref);
      tt_str_appends(&s, "}");
      ws__send_text(cl, &s);
      tt_str_free(&s);
    }
  }
  ws__pending_free(q);
}

static void ws__join(ws_client_t *cl, const char *code, const char *user, size_t user_len, const tt_str_t *ref) {
  ws_user_t u;
  if (ws__user(cl, user, user_len, &u, ref) != 0) return;
  if (ws__room_find(cl, code) != NULL) {
    ws__error(cl, "ALREADY_IN_ROOM", "this connection is in that room", ref);
    return;
  }
  char id[64];
  ws__member_id(cl, id, sizeof(id));
  hub_room_member_t *m = hub_room_member_new(&cl->hub, id);
  tt_list_insert_tail(&cl->rooms, &m->tlink);
  hub_room_join(ws.hub, m, code, u.name, u.has_instrument ? &u.instrument : NULL, ws__on_joined, ws__pending(cl, ref, NULL, 0));
}

static void ws__on_created(void *ctx, int status, const char *code, const char *record) {
  ws_pending_t *q = ctx;
  (void)record;
  ws_client_t *cl = q->client;
  if (!net_conn_is_closing(q->conn)) {
    if (status != 0) {
      ws__error(cl, "ENGINE_UNAVAILABLE", "could not create a room", &q->ref);
    } else {
      char id[64];
      ws__member_id(cl, id, sizeof(id));
      tt_str_t s = {0};
      tt_str_appendf(&s, "{\"type\":\"session:created\",\"room_code\":\"%s\",\"user_id\":\"%s\"", code, id);
      ws__ref(&s, &q->ref);
      tt_str_appends(&s, "}");
      ws__send_text(cl, &s);
      tt_str_free(&s);
      ws__join(cl, code, q->text.len ? q->text.data : NULL, q->text.len, &q->ref);
    }
  }
  ws__pending_free(q);
}

static void ws__on_relayed(void *ctx, int status, const engine_pos_t *pos) {
  ws_pending_t *q = ctx;
  if (!net_conn_is_closing(q->conn)) {
    if (status != 0) {
      ws__error(q->client, "ENGINE_UNAVAILABLE", "the event was not relayed", &q->ref);
    } else if (q->ref.len > 0) {
      tt_str_t s = {0};
      tt_str_appendf(&s, "{\"type\":\"event:ack\",\"room_code\":\"%s\",\"seq\":%" PRIu64 ",\"server_time\":%" PRIu64,
                     q->text.data, pos->offset, pos->time_ms);
      ws__ref(&s, &q->ref);
      tt_str_appends(&s, "}");
      ws__send_text(q->client, &s);
      tt_str_free(&s);
    }
  }
  ws__pending_free(q);
}

/* ---------------------------------------------------------------- replay */

static void ws__replay_closed(uv_handle_t *h) {
  ws_replay_t *rp = tt_container_of((uv_timer_t *)h, ws_replay_t, timer);
  for (size_t i = rp->next; i < rp->count; i++) tt_msg_unref(rp->msgs[i]);
  free(rp->msgs);
  free(rp);
}

static void ws__replay_stop(ws_replay_t *rp) {
  if (rp->client) rp->client->replay = NULL;
  rp->client = NULL;
  uv_close((uv_handle_t *)&rp->timer, ws__replay_closed);
}

static void ws__on_replay_tick(uv_timer_t *t) {
  ws_replay_t *rp = tt_container_of(t, ws_replay_t, timer);
  ws_client_t *cl = rp->client;
  if (cl == NULL || cl->closing) {
    ws__replay_stop(rp);
    return;
  }
  uint64_t now = uv_now(t->loop);
  uint64_t t0 = rp->t0; /* msgs[0] is released once sent */
  while (rp->next < rp->count) {
    tt_msg_t *m = rp->msgs[rp->next];
    uint64_t due = rp->start_ms + (uint64_t)((double)(m->time_ms - t0) / rp->speed);
    if (due > now) {
      uv_timer_start(&rp->timer, ws__on_replay_tick, due - now, 0);
      return;
    }
    tt_str_t s = {0};
    hub_room_event_json(m, "replay:event", &s);
    ws__send_text(cl, &s);
    tt_str_free(&s);
    tt_msg_unref(m);
    rp->next++;
  }
  tt_str_t s = {0};
  tt_str_appendf(&s, "{\"type\":\"replay:end\",\"room_code\":\"%s\",\"count\":%zu}", rp->code, rp->count);
  ws__send_text(cl, &s);
  tt_str_free(&s);
  ws__replay_stop(rp);
}

typedef struct ws_replay_req_s {
  ws_pending_t *q;
  double speed;
  char code[HUB_ROOM_CODE_MAX + 1];
} ws_replay_req_t;

/* Starts playing `count` recorded messages back to the client. */
static void ws__replay_start(ws_client_t *cl, const char *code, double speed, tt_msg_t *const *msgs, size_t count,
                             const tt_str_t *ref) {
  uint64_t duration = count ? (uint64_t)((double)(msgs[count - 1]->time_ms - msgs[0]->time_ms) / speed) : 0;
  tt_str_t s = {0};
  tt_str_appendf(&s, "{\"type\":\"replay:start\",\"room_code\":\"%s\",\"count\":%zu,\"duration_ms\":%" PRIu64, code,
                 count, duration);
  ws__ref(&s, ref);
  tt_str_appends(&s, "}");
  ws__send_text(cl, &s);
  tt_str_free(&s);
  ws_replay_t *rp = tt_calloc(1, sizeof(*rp));
  rp->client = cl;
  rp->speed = speed;
  snprintf(rp->code, sizeof(rp->code), "%s", code);
  rp->count = count;
  rp->t0 = count ? msgs[0]->time_ms : 0;
  if (count) rp->msgs = tt_malloc(count * sizeof(*rp->msgs));
  for (size_t i = 0; i < count; i++) rp->msgs[i] = tt_msg_ref(msgs[i]);
  uv_loop_t *loop = &net_conn_worker(cl->conn)->loop;
  uv_timer_init(loop, &rp->timer);
  rp->start_ms = uv_now(loop);
  cl->replay = rp;
  if (count == 0) {
    tt_str_t e = {0};
    tt_str_appendf(&e, "{\"type\":\"replay:end\",\"room_code\":\"%s\",\"count\":0}", code);
    ws__send_text(cl, &e);
    tt_str_free(&e);
    ws__replay_stop(rp);
  } else {
    uv_timer_start(&rp->timer, ws__on_replay_tick, 0, 0);
  }
}

/* Nothing recorded: an empty replay for a live room, ROOM_NOT_FOUND else. */
static void ws__on_replay_room(void *ctx, int status, const char *record) {
  ws_replay_req_t *rr = ctx;
  ws_pending_t *q = rr->q;
  (void)record;
  if (!net_conn_is_closing(q->conn)) {
    if (status == -ENOENT) ws__error(q->client, "ROOM_NOT_FOUND", "no room or recording has that code", &q->ref);
    else if (status != 0) ws__error(q->client, "ENGINE_UNAVAILABLE", "the engine is not available", &q->ref);
    else if (q->client->replay != NULL) ws__error(q->client, "REPLAY_RUNNING", "one replay at a time per connection", &q->ref);
    else ws__replay_start(q->client, rr->code, rr->speed, NULL, 0, &q->ref);
  }
  ws__pending_free(q);
  free(rr);
}

static void ws__on_recording(void *ctx, const engine_history_t *h) {
  ws_replay_req_t *rr = ctx;
  ws_pending_t *q = rr->q;
  ws_client_t *cl = q->client;
  if (!net_conn_is_closing(q->conn)) {
    if (h->status != 0) {
      ws__error(cl, "ENGINE_UNAVAILABLE", "the recording could not be read", &q->ref);
    } else if (h->count == 0) {
      char ch[64];
      hub_room_channel(rr->code, strlen(rr->code), ch, sizeof(ch));
      engine_t *e = hub_engine(ws.hub);
      e->vt->record_get(e, &net_conn_worker(cl->conn)->loop, ch, ws__on_replay_room, rr);
      return;
    } else if (cl->replay != NULL) {
      ws__error(cl, "REPLAY_RUNNING", "one replay at a time per connection", &q->ref);
    } else {
      ws__replay_start(cl, rr->code, rr->speed, h->msgs, h->count, &q->ref);
    }
  }
  ws__pending_free(q);
  free(rr);
}

static void ws__handle_room(ws_client_t *cl, const tt_str_t *type, const ws_req_t *r, const tt_str_t *ref) {
  char code[HUB_ROOM_CODE_MAX + 1];
  bool echo = r->has_echo && r->echo.len == 4 && memcmp(r->echo.p, "true", 4) == 0;
  if (ws__type_is(type, "session:create")) {
    tt_str_t name = {0};
    int max = 0;
    if (r->has_name && !ws__short_string(r->name, 0, 128)) {
      ws__error(cl, "BAD_FIELD", "name must be a string of at most 128 bytes", ref);
      return;
    }
    if (r->has_max_participants) {
      char num[16];
      snprintf(num, sizeof(num), "%.*s", (int)TT_MIN(r->max_participants.len, sizeof(num) - 1), r->max_participants.p);
      char *end;
      long v = strtol(num, &end, 10);
      if (*end != '\0' || v < 1 || v > 1000) {
        ws__error(cl, "BAD_FIELD", "max_participants must be an integer from 1 to 1000", ref);
        return;
      }
      max = (int)v;
    }
    ws_user_t u;
    if (ws__user(cl, r->has_user ? r->user.p : NULL, r->has_user ? r->user.len : 0, &u, ref) != 0) return;
    ws_pending_t *q = ws__pending(cl, ref, NULL, 0);
    if (r->has_user) tt_str_append(&q->text, r->user.p, r->user.len);
    hub_room_create(ws.hub, &net_conn_worker(cl->conn)->loop, r->has_name ? r->name.p : NULL,
                    r->has_name ? r->name.len : 0, max, ws__on_created, q);
    tt_str_free(&name);
  } else if (ws__type_is(type, "session:join")) {
    if (ws__room_code(cl, r, code, sizeof(code), ref) != 0) return;
    if (!r->has_user) {
      ws__error(cl, "BAD_USER", "session:join needs user: {\"name\": 1-64 bytes, \"instrument\"?: string}", ref);
      return;
    }
    ws__join(cl, code, r->has_user ? r->user.p : NULL, r->has_user ? r->user.len : 0, ref);
  } else if (ws__type_is(type, "session:leave")) {
    if (ws__room_code(cl, r, code, sizeof(code), ref) != 0) return;
    hub_room_member_t *m = ws__room_find(cl, code);
    if (m == NULL || m->state != HUB_MEMBER_JOINED) {
      ws__error(cl, "NOT_IN_ROOM", "this connection is not in that room", ref);
      return;
    }
    tt_list_remove(&m->tlink);
    hub_room_member_release(ws.hub, m);
    tt_str_t s = {0};
    tt_str_appendf(&s, "{\"type\":\"session:left\",\"room_code\":\"%s\"", code);
    ws__ref(&s, ref);
    tt_str_appends(&s, "}");
    ws__send_text(cl, &s);
    tt_str_free(&s);
  } else if (ws__type_is(type, "event:broadcast")) {
    if (ws__room_code(cl, r, code, sizeof(code), ref) != 0) return;
    hub_room_member_t *m = ws__room_find(cl, code);
    if (m == NULL) {
      ws__error(cl, "NOT_IN_ROOM", "only participants may broadcast: nothing was relayed", ref);
      return;
    }
    if (!r->has_event_name || !r->has_payload) {
      ws__error(cl, "MISSING_FIELD", r->has_event_name ? "field 'payload' is required" : "field 'event_name' is required",
                ref);
      return;
    }
    ws_pending_t *q = ws__pending(cl, ref, NULL, 0);
    tt_str_appends(&q->text, code); /* the ack names the room */
    int rc = hub_room_broadcast(ws.hub, m, r->event_name, r->payload, echo, ws__on_relayed, q);
    if (rc != 0) {
      static const struct {
        int rc;
        const char *msg;
      } why[] = {{HUB_ROOM_NOT_IN, "only participants may broadcast: nothing was relayed"},
                 {HUB_ROOM_RATE_LIMITED, "too many events: this one was not relayed"},
                 {HUB_ROOM_TOO_LARGE, "payload over the room's limit: not relayed"},
                 {HUB_ROOM_BAD_EVENT, "event_name must be a string of 1-64 bytes"}};
      const char *msg = "not relayed";
      for (size_t i = 0; i < TT_ARRAY_SIZE(why); i++)
        if (why[i].rc == rc) msg = why[i].msg;
      ws__error(cl, hub_room_error(rc), msg, ref);
      ws__pending_free(q);
    }
  } else {
    /* session:replay */
    if (ws__room_code(cl, r, code, sizeof(code), ref) != 0) return;
    double speed = 1;
    if (r->has_speed) {
      char num[32];
      snprintf(num, sizeof(num), "%.*s", (int)TT_MIN(r->speed.len, sizeof(num) - 1), r->speed.p);
      char *end;
      speed = strtod(num, &end);
      if (*end != '\0' || !(speed >= 0.1 && speed <= 100)) {
        ws__error(cl, "BAD_FIELD", "speed must be a number from 0.1 to 100", ref);
        return;
      }
    }
    if (cl->replay != NULL) {
      ws__error(cl, "REPLAY_RUNNING", "one replay at a time per connection", ref);
      return;
    }
    ws_replay_req_t *rr = tt_calloc(1, sizeof(*rr));
    rr->q = ws__pending(cl, ref, NULL, 0);
    rr->speed = speed;
    snprintf(rr->code, sizeof(rr->code), "%s", code);
    char ch[64];
    hub_room_channel(code, strlen(code), ch, sizeof(ch));
    engine_pos_t since = {.offset = 0};
    engine_t *e = hub_engine(ws.hub);
    e->vt->history(e, &net_conn_worker(cl->conn)->loop, ch, strlen(ch), &since, ws__on_recording, rr);
  }
}

static void ws__on_presence(void *ctx, int status, const engine_member_t *members, size_t count) {
  ws_pending_t *p = ctx;
  if (!net_conn_is_closing(p->conn)) {
    if (status != 0) {
      ws__error(p->client, "ENGINE_UNAVAILABLE", "the engine is not available; retry later", &p->ref);
    } else {
      tt_str_t s = {0};
      tt_str_appends(&s, "{\"type\":\"presence\",\"channel\":\"");
      tt_str_append(&s, p->text.data, p->text.len);
      tt_str_appends(&s, "\",\"members\":");
      transport_members_json(&s, members, count);
      ws__ref(&s, &p->ref);
      tt_str_appends(&s, "}");
      ws__send_text(p->client, &s);
      tt_str_free(&s);
    }
  }
  ws__pending_free(p);
}

static void ws__stats(ws_client_t *cl, const tt_str_t *ref) {
  engine_t *e = hub_engine(ws.hub);
  uint64_t now = tt_now_ms();
  tt_str_t s = {0};
  tt_str_appendf(&s,
                 "{\"type\":\"stats\",\"server\":{\"version\":\"%s\",\"uptime_s\":%.3f,\"connections\":%" PRIu64
                 ",\"channels\":%zu,\"subscriptions\":%" PRIu64 ",\"published\":%" PRIu64 ",\"delivered\":%" PRIu64
                 "},\"connection\":{\"connection_id\":\"%s-%" PRIu64 "\",\"age_s\":%.3f,\"subscriptions\":%d,"
                 "\"messages_in\":%" PRIu64 ",\"messages_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64
                 ",\"bytes_out\":%" PRIu64 ",\"permessage_deflate\":%s}",
                 TUTTI_VERSION, (double)(now - ws.opts.started_ms) / 1000.0,
                 net_server_connections(net_conn_worker(cl->conn)->server), e->vt->channel_count(e),
                 hub_subscriptions(ws.hub), obs_get(OBS_PUBLISHED), obs_get(OBS_DELIVERED), ws.conn_prefix,
                 net_conn_id(cl->conn), (double)(now - cl->opened_ms) / 1000.0, cl->nsubs, cl->msgs_in, cl->msgs_out,
                 cl->bytes_in, cl->bytes_out, cl->deflate ? "true" : "false");
  ws__ref(&s, ref);
  tt_str_appends(&s, "}");
  ws__send_text(cl, &s);
  tt_str_free(&s);
}

static bool ws__rate_ok(ws_client_t *cl) {
  if (ws.opts.rate <= 0) return true;
  uint64_t now = uv_now(&net_conn_worker(cl->conn)->loop);
  cl->tokens += (double)(now - cl->tokens_ms) * ws.opts.rate / 1000.0;
  cl->tokens_ms = now;
  if (cl->tokens > ws.opts.burst) cl->tokens = ws.opts.burst;
  if (cl->tokens < 1) return false;
  cl->tokens -= 1;
  return true;
}

static void ws__handle_text(ws_client_t *cl, const char *text, size_t len) {
  ws_req_t r = {0};
  tt_str_t ref = {0}, channel = {0}, ev = {0}, type = {0};
  int rc = tt_json_object_scan(text, len, ws__member, &r);
  if (r.has_id) tt_str_append(&ref, r.id.p, r.id.len);
  if (!ws__rate_ok(cl)) {
    ws__error(cl, "RATE_LIMITED", "too many messages: the message was dropped", &ref);
    goto done;
  }
  if (rc != 0) {
    ws__error(cl, "BAD_JSON", rc == -ENOTSUP ? "a message must be a JSON object" : "not valid JSON", NULL);
    goto done;
  }
  if (!r.has_type) {
    ws__error(cl, "MISSING_FIELD", "field 'type' is required", &ref);
    goto done;
  }
  if (net_server_draining(net_conn_worker(cl->conn)->server)) {
    ws__error(cl, "SHUTTING_DOWN", "the server is shutting down", &ref);
    goto done;
  }
  if (tt_json_string_decode(r.type, &type) != 0) {
    ws__error(cl, "UNKNOWN_TYPE", "type must be a string", &ref);
    goto done;
  }

  if (ws__type_is(&type, "ping")) {
    tt_str_t s = {0};
    tt_str_appends(&s, "{\"type\":\"pong\"");
    if (r.has_client_time) {
      tt_str_appends(&s, ",\"client_time\":");
      tt_str_append(&s, r.client_time.p, r.client_time.len);
    }
    tt_str_appendf(&s, ",\"server_time\":%" PRIu64, tt_now_ms());
    ws__ref(&s, &ref);
    tt_str_appends(&s, "}");
    ws__send_text(cl, &s);
    tt_str_free(&s);
  } else if (ws__type_is(&type, "subscribe")) {
    if (ws__channel(cl, &r, &channel, &ref) != 0) goto done;
    engine_pos_t since;
    if (r.has_since) {
      int bad;
      if (r.since.p[0] == '"') {
        tt_str_t sv = {0};
        bad = tt_json_string_decode(r.since, &sv) != 0 || sse_pos_parse(sv.data, sv.len, &since) != 0;
        tt_str_free(&sv);
      } else {
        bad = sse_pos_parse(r.since.p, r.since.len, &since) != 0;
      }
      if (bad) {
        ws__error(cl, "BAD_SINCE", "since must be \"epoch:offset\" or an offset", &ref);
        goto done;
      }
    }
    const char *encoding = HUB_AUDIO_DEFAULT;
    if (r.has_encoding) {
      tt_str_t ev = {0};
      encoding = tt_json_string_decode(r.encoding, &ev) == 0 ? hub_encoding_check(ev.data, ev.len) : NULL;
      tt_str_free(&ev);
      if (encoding == NULL) {
        ws__error(cl, "BAD_ENCODING", "encoding must be opus, pcm16, json or json16", &ref);
        goto done;
      }
    }
    ws__subscribe(cl, channel.data, channel.len, r.has_since ? &since : NULL, &ref, r.has_presence ? &r.presence : NULL,
                  encoding);
  } else if (ws__type_is(&type, "unsubscribe")) {
    if (ws__channel(cl, &r, &channel, &ref) != 0) goto done;
    ws_sub_t *s = ws__find(cl, channel.data, channel.len);
    if (s == NULL) {
      ws__error(cl, "NOT_SUBSCRIBED", "this connection does not have the channel", &ref);
      goto done;
    }
    ws__sub_free(cl, s);
    tt_str_t out = {0};
    tt_str_appends(&out, "{\"type\":\"unsubscribed\",\"channel\":\"");
    tt_str_append(&out, channel.data, channel.len);
    tt_str_appends(&out, "\"");
    ws__ref(&out, &ref);
    tt_str_appends(&out, "}");
    ws__send_text(cl, &out);
    tt_str_free(&out);
  } else if (ws__type_is(&type, "publish")) {
    const char *why;
    if (ws__channel(cl, &r, &channel, &ref) != 0) goto done;
    if (!r.has_data) {
      ws__error(cl, "MISSING_FIELD", "field 'data' is required", &ref);
      goto done;
    }
    if (r.has_event && (tt_json_string_decode(r.event, &ev) != 0 || hub_event_check(ev.data, ev.len, &why) != 0)) {
      ws__error(cl, "BAD_EVENT", "event must be 1-64 bytes of [A-Za-z0-9_.:-]", &ref);
      goto done;
    }
    if (hub_channel_reserved(channel.data, channel.len) || !ws__may_publish(channel.data, channel.len)) {
      ws__error(cl, "FORBIDDEN", "clients may not publish to this channel", &ref);
      goto done;
    }
    if ((int64_t)r.data.len > ws.opts.max_publish) {
      ws__error(cl, "TOO_LARGE", "data over max_body", &ref);
      goto done;
    }
    ws_pending_t *p = ws__pending(cl, &ref, channel.data, channel.len);
    hub_publish(ws.hub, &net_conn_worker(cl->conn)->loop, channel.data, channel.len, r.has_event ? ev.data : "message",
                r.has_event ? ev.len : 7, r.data.p, r.data.len, ws__on_published, p);
  } else if (ws__type_is(&type, "presence")) {
    if (ws__channel(cl, &r, &channel, &ref) != 0) goto done;
    ws_pending_t *p = ws__pending(cl, &ref, channel.data, channel.len);
    engine_t *e = hub_engine(ws.hub);
    e->vt->presence_list(e, &net_conn_worker(cl->conn)->loop, channel.data, channel.len, ws__on_presence, p);
  } else if (ws__type_is(&type, "session:create") || ws__type_is(&type, "session:join") ||
             ws__type_is(&type, "session:leave") || ws__type_is(&type, "event:broadcast") ||
             ws__type_is(&type, "session:replay")) {
    ws__handle_room(cl, &type, &r, &ref);
  } else if (ws__type_is(&type, "get_stats")) {
    ws__stats(cl, &ref);
  } else {
    ws__error(cl, "UNKNOWN_TYPE",
              "type must be subscribe, unsubscribe, publish, presence, ping, get_stats, session:create, session:join, "
              "session:leave, event:broadcast or session:replay",
              &ref);
  }
done:
  tt_str_free(&ref);
  tt_str_free(&channel);
  tt_str_free(&ev);
  tt_str_free(&type);
}

/* ================================================================ frame reader */

static void ws__send_close(ws_client_t *cl, unsigned code, const char *reason) {
  if (cl->closing) return;
  cl->closing = true;
  tt_buf_t *b = ws_close_frame(code, reason);
  net_conn_send_final(cl->conn, b);
  tt_buf_unref(b);
}

/* A whole message has arrived (text or binary, inflated if it was). */
static void ws__message(ws_client_t *cl, unsigned op, const char *data, size_t len) {
  cl->msgs_in++;
  obs_inc(OBS_WS_MESSAGES_RECEIVED);
  if (op == WS_OP_BINARY) {
    if (!ws__rate_ok(cl)) ws__error(cl, "RATE_LIMITED", "too many messages: the message was dropped", NULL);
    else ws__error(cl, "UNSUPPORTED", "binary messages are reserved for audio", NULL);
    return;
  }
  ws__handle_text(cl, data, len);
}

/* Handles one complete frame; returns false once the connection is closing. */
static bool ws__frame(ws_client_t *cl, const ws_frame_t *f, uint8_t *payload) {
  size_t len = (size_t)f->payload_len;
  switch (f->opcode) {
    case WS_OP_PING: {
      tt_buf_t *b = ws_frame_build(WS_OP_PONG, false, payload, len);
      net_conn_send(cl->conn, b, 0);
      tt_buf_unref(b);
      return true;
    }
    case WS_OP_PONG:
      return true;
    case WS_OP_CLOSE: {
      if (len == 0) {
        ws__send_close(cl, 1000, NULL);
        return false;
      }
      unsigned code = len >= 2 ? ((unsigned)payload[0] << 8) | payload[1] : 0;
      ws_utf8_t u = {0};
      if (len == 1 || !ws_close_code_valid(code)) {
        ws__send_close(cl, 1002, "invalid close code");
      } else if (ws_utf8_feed(&u, payload + 2, len - 2) != 0 || !ws_utf8_complete(&u)) {
        ws__send_close(cl, 1007, "close reason is not UTF-8");
      } else {
        ws__send_close(cl, code, NULL);
      }
      return false;
    }
    default:
      break;
  }

  /* Data frames. */
  if (f->opcode == WS_OP_CONT) {
    if (cl->msg_op == 0) {
      ws__send_close(cl, 1002, "continuation without a message");
      return false;
    }
  } else {
    if (cl->msg_op != 0) {
      ws__send_close(cl, 1002, "new message inside a fragmented one");
      return false;
    }
    cl->msg_op = f->opcode;
    cl->msg_compressed = (f->rsv & 4) != 0;
    cl->msg.len = 0;
    memset(&cl->utf8, 0, sizeof(cl->utf8));
  }
  if (cl->msg.len + len > (size_t)ws.opts.max_message) {
    ws__send_close(cl, 1009, "message too big");
    return false;
  }
  if (cl->msg_op == WS_OP_TEXT && !cl->msg_compressed && ws_utf8_feed(&cl->utf8, payload, len) != 0) {
    ws__send_close(cl, 1007, "text is not UTF-8");
    return false;
  }
  if (f->fin && cl->msg.len == 0 && !cl->msg_compressed) {
    /* the common case, one unfragmented frame: no copy */
    unsigned op = cl->msg_op;
    cl->msg_op = 0;
    if (op == WS_OP_TEXT && !ws_utf8_complete(&cl->utf8)) {
      ws__send_close(cl, 1007, "text is not UTF-8");
      return false;
    }
    ws__message(cl, op, (const char *)payload, len);
    return !cl->closing;
  }
  tt_str_append(&cl->msg, payload, len);
  if (!f->fin) return true;

  unsigned op = cl->msg_op;
  cl->msg_op = 0;
  if (cl->msg_compressed) {
    tt_str_t plain = {0};
    int rc = ws__inflate(cl, cl->msg.data, cl->msg.len, &plain, (size_t)ws.opts.max_message);
    ws_utf8_t u = {0};
    if (rc == -EMSGSIZE) {
      ws__send_close(cl, 1009, "message too big");
    } else if (rc != 0) {
      ws__send_close(cl, 1007, "bad compressed data");
    } else if (op == WS_OP_TEXT && (ws_utf8_feed(&u, (uint8_t *)plain.data, plain.len) != 0 || !ws_utf8_complete(&u))) {
      ws__send_close(cl, 1007, "text is not UTF-8");
    } else {
      ws__message(cl, op, plain.data ? plain.data : "", plain.len);
    }
    tt_str_free(&plain);
  } else if (op == WS_OP_TEXT && !ws_utf8_complete(&cl->utf8)) {
    ws__send_close(cl, 1007, "text is not UTF-8");
  } else {
    ws__message(cl, op, cl->msg.data, cl->msg.len);
  }
  cl->msg.len = 0;
  return !cl->closing;
}

/* Checks a frame header against the protocol; sends the close and returns
 * false if it breaks a rule. */
static bool ws__check(ws_client_t *cl, const ws_frame_t *f) {
  bool control = f->opcode >= 8;
  if (!f->masked) {
    ws__send_close(cl, 1002, "client frames must be masked");
  } else if ((f->rsv & 3) != 0 || ((f->rsv & 4) && (!cl->deflate || control || f->opcode == WS_OP_CONT))) {
    ws__send_close(cl, 1002, "reserved bit set");
  } else if (f->opcode > WS_OP_PONG || (f->opcode > WS_OP_BINARY && f->opcode < WS_OP_CLOSE)) {
    ws__send_close(cl, 1002, "unknown opcode");
  } else if (control && (!f->fin || f->payload_len > 125)) {
    ws__send_close(cl, 1002, "control frames must be whole and at most 125 bytes");
  } else if (!control && f->payload_len > (uint64_t)ws.opts.max_message) {
    ws__send_close(cl, 1009, "message too big");
  } else {
    return true;
  }
  return false;
}

static void ws__on_data(net_conn_t *c, const char *data, size_t len) {
  ws_client_t *cl = net_conn_data(c);
  if (cl->closing) return;
  cl->last_rx_ms = uv_now(&net_conn_worker(c)->loop);
  cl->ping_sent_ms = 0;
  cl->bytes_in += len;
  if (cl->in_len + len > cl->in_cap) {
    cl->in_cap = TT_MAX(cl->in_len + len, cl->in_cap * 2);
    cl->in = tt_realloc(cl->in, cl->in_cap);
  }
  memcpy(cl->in + cl->in_len, data, len);
  cl->in_len += len;

  size_t off = 0;
  while (!cl->closing && off < cl->in_len) {
    ws_frame_t f;
    int hl = ws_frame_parse(cl->in + off, cl->in_len - off, &f);
    if (hl == WS_PARSE_INCOMPLETE) break;
    if (hl < 0) {
      ws__send_close(cl, 1002, "bad frame length");
      break;
    }
    if (!ws__check(cl, &f)) break;
    if (cl->in_len - off - (size_t)hl < f.payload_len) break;
    uint8_t *payload = cl->in + off + hl;
    ws_unmask(payload, (size_t)f.payload_len, f.mask, 0);
    off += (size_t)hl + (size_t)f.payload_len;
    if (!ws__frame(cl, &f, payload)) break;
  }
  if (cl->closing) {
    cl->in_len = 0;
  } else if (off > 0) {
    memmove(cl->in, cl->in + off, cl->in_len - off);
    cl->in_len -= off;
  }
  if (cl->in_len == 0 && cl->in_cap > 65536) { /* give back a big buffer */
    free(cl->in);
    cl->in = NULL;
    cl->in_cap = 0;
  }
}

/* ================================================================ connection events */

static void ws__leave_rooms(ws_client_t *cl) {
  while (!tt_list_empty(&cl->rooms)) {
    hub_room_member_t *m = tt_container_of(cl->rooms.next, hub_room_member_t, tlink);
    tt_list_remove(&m->tlink);
    hub_room_member_release(ws.hub, m);
  }
  if (cl->replay != NULL) ws__replay_stop(cl->replay);
}

static void ws__on_close(net_conn_t *c) {
  ws_client_t *cl = net_conn_data(c);
  ws__leave_rooms(cl);
  while (!tt_list_empty(&cl->subs)) ws__sub_free(cl, tt_container_of(cl->subs.next, ws_sub_t, link));
  tt_list_remove(&cl->link);
  if (cl->inflater) {
    inflateEnd(cl->inflater);
    free(cl->inflater);
  }
  free(cl->in);
  tt_str_free(&cl->msg);
  tt_str_free(&cl->window);
  obs_inc(OBS_WS_CLOSED);
  tt_log(TT_LOG_DEBUG, "ws.close", "WebSocket client closed", "\"conn\":%" PRIu64, net_conn_id(c));
  free(cl);
}

static void ws__on_shutdown(net_conn_t *c) { ws__send_close(net_conn_data(c), 1001, "server shutting down"); }

static tt_buf_t *ws__overflow_frame(net_conn_t *c) {
  ws_client_t *cl = net_conn_data(c);
  ws__leave_rooms(cl);
  while (!tt_list_empty(&cl->subs)) ws__sub_free(cl, tt_container_of(cl->subs.next, ws_sub_t, link));
  cl->closing = true;
  obs_inc(OBS_SLOW_CONSUMERS);
  return ws_close_frame(1008, "SLOW_CONSUMER");
}

static const net_stream_vt_t ws_stream_vt = {
    .on_data = ws__on_data,
    .on_shutdown = ws__on_shutdown,
    .overflow_frame = ws__overflow_frame,
    .on_close = ws__on_close,
};

/* ================================================================ idle pings */

static void ws__on_ping_timer(uv_timer_t *t) {
  ws_worker_t *w = tt_container_of(t, ws_worker_t, pinger);
  uint64_t now = uv_now(t->loop);
  uint64_t interval = (uint64_t)(ws.opts.ping_interval * 1000), timeout = (uint64_t)(ws.opts.ping_timeout * 1000);
  bool renew = now >= w->presence_renewed_ms + (uint64_t)(ws.opts.presence_ttl * 1000 / 3);
  if (renew) w->presence_renewed_ms = now;
  tt_list_t *l, *next;
  for (l = w->clients.next; l != &w->clients; l = next) {
    next = l->next; /* closing does not unlink here, but be safe */
    ws_client_t *cl = tt_container_of(l, ws_client_t, link);
    if (cl->closing) continue;
    if (renew) {
      for (tt_list_t *sl = cl->subs.next; sl != &cl->subs; sl = sl->next) {
        ws_sub_t *s = tt_container_of(sl, ws_sub_t, link);
        if (s->presence.len > 0 && s->sub.live) ws__presence_set(cl, s);
      }
    }
    if (cl->ping_sent_ms != 0 && now >= cl->ping_sent_ms + timeout) {
      ws__send_close(cl, 1001, "ping timeout");
    } else if (cl->ping_sent_ms == 0 && now >= cl->last_rx_ms + interval) {
      cl->ping_sent_ms = now;
      tt_buf_t *b = ws_frame_build(WS_OP_PING, false, NULL, 0);
      net_conn_send(cl->conn, b, 0);
      tt_buf_unref(b);
    }
  }
}

/* ================================================================ the upgrade */

/* Parses the client's permessage-deflate offers; returns the extension
 * answer or NULL if none is acceptable. */
static const char *ws__negotiate(const char *v, size_t len, bool *client_no_ctx) {
  const char *p = v, *end = v + len;
  while (p < end) {
    const char *e = memchr(p, ',', (size_t)(end - p));
    if (e == NULL) e = end;
    /* one offer: name; param; param */
    bool ok = false, cnct = false, acceptable = true;
    const char *q = p;
    int idx = 0;
    while (q < e) {
      const char *semi = memchr(q, ';', (size_t)(e - q));
      if (semi == NULL) semi = e;
      const char *a = q, *b = semi;
      while (a < b && (*a == ' ' || *a == '\t')) a++;
      while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
      size_t n = (size_t)(b - a);
      if (idx == 0) {
        ok = n == 18 && strncasecmp(a, "permessage-deflate", 18) == 0;
      } else if (n == 26 && strncasecmp(a, "client_no_context_takeover", 26) == 0) {
        cnct = true;
      } else if (n == 26 && strncasecmp(a, "server_no_context_takeover", 26) == 0) {
        /* we do that anyway */
      } else if (n >= 22 && strncasecmp(a, "client_max_window_bits", 22) == 0) {
        /* we inflate with a 15-bit window, which takes any */
      } else if (n >= 22 && strncasecmp(a, "server_max_window_bits", 22) == 0) {
        const char *eq = memchr(a, '=', n);
        int bits = 0;
        for (const char *d = eq ? eq + 1 : b; d < b; d++)
          if (*d >= '0' && *d <= '9') bits = bits * 10 + (*d - '0');
        if (bits != 15) acceptable = false; /* shared frames use a 15-bit window */
      } else {
        acceptable = false;
      }
      idx++;
      q = semi + 1;
    }
    if (ok && acceptable) {
      *client_no_ctx = cnct;
      return cnct ? "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
                  : "permessage-deflate; server_no_context_takeover";
    }
    p = e + 1;
  }
  return NULL;
}

void ws_open(net_request_t *req, const char *channel, size_t len) {
  net_conn_t *c = req->conn;
  size_t vl;
  const char *v;
  if (!(req->head.method_len == 3 && memcmp(req->head.method, "GET", 3) == 0) || req->head.minor_version == 0) {
    net_respond_error(c, 400, "BAD_UPGRADE", "a WebSocket opens with an HTTP/1.1 GET");
    return;
  }
  v = http_head_get(&req->head, "Upgrade", &vl);
  const char *conn_hdr;
  size_t cl_len;
  conn_hdr = http_head_get(&req->head, "Connection", &cl_len);
  bool has_upgrade_token = false;
  for (size_t i = 0; conn_hdr && i + 7 <= cl_len; i++)
    if (strncasecmp(conn_hdr + i, "upgrade", 7) == 0) has_upgrade_token = true;
  if (v == NULL || vl != 9 || strncasecmp(v, "websocket", 9) != 0 || !has_upgrade_token) {
    net_respond_error(c, 400, "BAD_UPGRADE", "needs Upgrade: websocket and Connection: Upgrade");
    return;
  }
  v = http_head_get(&req->head, "Sec-WebSocket-Version", &vl);
  if (v == NULL || vl != 2 || memcmp(v, "13", 2) != 0) {
    static const char body[] =
        "{\"error\":{\"code\":\"UPGRADE_REQUIRED\",\"message\":\"only WebSocket version 13 is supported\"}}";
    net_respond(c, 426, "application/json", body, sizeof(body) - 1, "Sec-WebSocket-Version: 13\r\n");
    return;
  }
  size_t kl;
  const char *key = http_head_get(&req->head, "Sec-WebSocket-Key", &kl);
  unsigned char raw[32];
  if (key == NULL || kl != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) != 18 || key[22] != '=' ||
      key[23] != '=') {
    net_respond_error(c, 400, "BAD_UPGRADE", "Sec-WebSocket-Key must be 16 bytes in base64");
    return;
  }
  if (!net_request_origin_allowed(req)) {
    net_respond_error(c, 403, "FORBIDDEN_ORIGIN", "this origin may not open WebSockets here");
    return;
  }
  if (net_server_draining(net_conn_worker(c)->server)) {
    net_respond_error(c, 503, "SHUTTING_DOWN", "the server is shutting down");
    return;
  }

  /* /ws/{channel}[?since=]: checked before the upgrade, so errors are HTTP. */
  char chan[HUB_CHANNEL_MAX * 3 + 1];
  ssize_t chan_len = 0;
  engine_pos_t since;
  bool has_since = false;
  const char *encoding = HUB_AUDIO_DEFAULT;
  if (channel != NULL) {
    const char *why;
    chan_len = len <= HUB_CHANNEL_MAX * 3 ? http_url_decode(channel, len, chan, false) : -1;
    if (chan_len < 0 || hub_channel_check(chan, (size_t)chan_len, &why) != 0) {
      net_respond_error(c, 400, "BAD_CHANNEL", "channel must be 1-255 bytes of [A-Za-z0-9_.:/-]");
      return;
    }
    const char *q = req->query, *k, *qv;
    size_t ql = req->query_len, kk, qvl;
    while (q != NULL && http_query_next(&q, &ql, &k, &kk, &qv, &qvl)) {
      if (kk == 5 && memcmp(k, "since", 5) == 0) {
        char dec[64];
        ssize_t dl = qvl < sizeof(dec) ? http_url_decode(qv, qvl, dec, true) : -1;
        if (dl < 0 || sse_pos_parse(dec, (size_t)dl, &since) != 0) {
          net_respond_error(c, 400, "BAD_SINCE", "since must be epoch:offset or an offset");
          return;
        }
        has_since = true;
      } else if (kk == 8 && memcmp(k, "encoding", 8) == 0) {
        encoding = hub_encoding_check(qv, qvl);
        if (encoding == NULL) {
          net_respond_error(c, 400, "BAD_ENCODING", "encoding must be opus, pcm16, json or json16");
          return;
        }
      }
    }
  }

  bool client_no_ctx = false;
  const char *ext = NULL;
  v = http_head_get(&req->head, "Sec-WebSocket-Extensions", &vl);
  if (ws.opts.deflate && v != NULL) ext = ws__negotiate(v, vl, &client_no_ctx);

  /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  char cat[24 + sizeof(guid)];
  memcpy(cat, key, 24);
  memcpy(cat + 24, guid, sizeof(guid) - 1);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)cat, 24 + sizeof(guid) - 1, digest);
  char accept[32];
  EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);

  ws_client_t *cl = tt_calloc(1, sizeof(*cl));
  cl->conn = c;
  cl->hub.vt = &ws_hub_vt;
  cl->hub.worker = net_conn_worker(c)->id;
  cl->opened_ms = tt_now_ms();
  cl->deflate = ext != NULL;
  cl->inflate_reset = client_no_ctx;
  cl->last_rx_ms = uv_now(&net_conn_worker(c)->loop);
  cl->tokens = ws.opts.burst;
  cl->tokens_ms = cl->last_rx_ms;
  tt_list_init(&cl->subs);
  tt_list_init(&cl->rooms);
  tt_list_insert_tail(&ws.workers[cl->hub.worker].clients, &cl->link);

  net_request_stream(req, &ws_stream_vt, cl);
  char head[512];
  int hl = snprintf(head, sizeof(head),
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                    accept, ext ? "Sec-WebSocket-Extensions: " : "", ext ? ext : "", ext ? "\r\n" : "");
  net_conn_send_copy(c, head, (size_t)hl);
  obs_inc(OBS_WS_OPENED);

  tt_str_t w = {0};
  tt_str_appendf(&w,
                 "{\"type\":\"welcome\",\"connection_id\":\"%s-%" PRIu64 "\",\"server_info\":{\"version\":\"%s\","
                 "\"features\":[\"subscribe\",\"unsubscribe\",\"publish\",\"recovery\",\"presence\",\"ping\",\"get_stats\",\"rooms\"%s],"
                 "\"limits\":{\"max_message_bytes\":%lld,\"max_channels\":%d,\"rate_per_second\":%d,\"rate_burst\":%d},"
                 "\"permessage_deflate\":%s},\"server_time\":%" PRIu64 "}",
                 ws.conn_prefix, net_conn_id(c), TUTTI_VERSION, ws.opts.deflate ? ",\"permessage-deflate\"" : "",
                 (long long)ws.opts.max_message, ws.opts.max_channels, ws.opts.rate, ws.opts.burst,
                 cl->deflate ? "true" : "false", tt_now_ms());
  ws__send_text(cl, &w);
  tt_str_free(&w);
  tt_log(TT_LOG_DEBUG, "ws.open", "WebSocket client connected", "\"conn\":%" PRIu64 ",\"deflate\":%s",
         net_conn_id(c), cl->deflate ? "true" : "false");

  if (channel != NULL) ws__subscribe(cl, chan, (size_t)chan_len, has_since ? &since : NULL, NULL, NULL, encoding);
}

/* ================================================================ life */

void ws_init(hub_t *hub, const ws_options_t *opts, int workers) {
  ws.hub = hub;
  ws.opts = *opts;
  ws.workers = tt_calloc((size_t)workers, sizeof(*ws.workers));
  for (int i = 0; i < workers; i++) tt_list_init(&ws.workers[i].clients);
  tt_random_token(ws.conn_prefix, TT_EPOCH_LEN);
  pthread_key_create(&ws.deflater_key, ws__deflater_free);
}

void ws_worker_init(int id, uv_loop_t *loop) {
  ws_worker_t *w = &ws.workers[id];
  double shortest = TT_MIN(TT_MIN(ws.opts.ping_interval, ws.opts.ping_timeout), ws.opts.presence_ttl / 3);
  uint64_t tick = (uint64_t)(shortest * 1000 / 4);
  if (tick < 10) tick = 10;
  uv_timer_init(loop, &w->pinger);
  uv_timer_start(&w->pinger, ws__on_ping_timer, tick, tick);
}

void ws_free(void) {
  free(ws.workers);
  ws.workers = NULL;
}
