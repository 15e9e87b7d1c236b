/* The HTTP routes: publishing, health, metrics, and the way to SSE and files. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../obs/obs.h"
#include "../transport/transport.h"
#include "api_internal.h"

static api_options_t api;

void api_init(const api_options_t *opts) { api = *opts; }
const api_options_t *api__options(void) { return &api; }
void api_set_server(net_server_t *server) { api.server = server; }

/* ================================================================ helpers */

static bool api__method(const net_request_t *req, const char *m) {
  size_t n = strlen(m);
  return req->head.method_len == n && memcmp(req->head.method, m, n) == 0;
}

static bool api__prefix(const net_request_t *req, const char *prefix, const char **rest, size_t *rest_len) {
  size_t n = strlen(prefix);
  if (req->path_len < n || memcmp(req->path, prefix, n) != 0) return false;
  *rest = req->path + n;
  *rest_len = req->path_len - n;
  return true;
}

static bool api__is(const net_request_t *req, const char *path) {
  size_t n = strlen(path);
  return req->path_len == n && memcmp(req->path, path, n) == 0;
}

static void api__not_allowed(net_conn_t *c, const char *allow) {
  char extra[96];
  snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
  const char body[] = "{\"error\":{\"code\":\"METHOD_NOT_ALLOWED\",\"message\":\"method not allowed on this route\"}}";
  net_respond(c, 405, "application/json", body, sizeof(body) - 1, extra);
}

void api__json(net_conn_t *c, int status, const tt_str_t *body) {
  net_respond(c, status, "application/json", body->data, body->len, "Cache-Control: no-store\r\n");
}

/* Decodes a channel from a path segment; answers 400 and returns -1 if bad. */
int api__channel(net_conn_t *c, const char *raw, size_t len, char *out, size_t *out_len) {
  const char *why;
  ssize_t dl = len <= HUB_CHANNEL_MAX * 3 ? http_url_decode(raw, len, out, false) : -1;
  if (dl < 0 || hub_channel_check(out, (size_t)dl, &why) != 0) {
    net_respond_error(c, 400, "BAD_CHANNEL", "channel must be 1-255 bytes of [A-Za-z0-9_.:/-]");
    return -1;
  }
  *out_len = (size_t)dl;
  return 0;
}

bool api__authorized(net_request_t *req) {
  if (api.api_key == NULL) return true;
  size_t vl;
  const char *v = http_head_get(&req->head, "Authorization", &vl);
  size_t kl = strlen(api.api_key);
  if (v == NULL || vl != kl + 7 || strncasecmp(v, "Bearer ", 7) != 0) return false;
  /* constant time in the key's length */
  unsigned char diff = 0;
  for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(v[7 + i] ^ api.api_key[i]);
  return diff == 0;
}

/* ================================================================ publishing */

static void api__publish(net_request_t *req, const char *channel, size_t clen, const char *event, size_t elen,
                         const char *data, size_t dlen);

typedef struct api_pub_fields_s {
  tt_json_span_t channel, event, data;
  bool has_channel, has_event, has_data;
} api_pub_fields_t;

static int api__pub_member(void *ctx, tt_json_span_t key, tt_json_span_t value) {
  api_pub_fields_t *f = ctx;
  if (tt_json_key_is(key, "channel")) {
    f->channel = value;
    f->has_channel = true;
  } else if (tt_json_key_is(key, "event")) {
    f->event = value;
    f->has_event = true;
  } else if (tt_json_key_is(key, "data")) {
    f->data = value;
    f->has_data = true;
  }
  return 0;
}

static void api__publish_json(net_request_t *req) {
  net_conn_t *c = req->conn;
  api_pub_fields_t f = {0};
  int rc = tt_json_object_scan(req->body, req->body_len, api__pub_member, &f);
  if (rc != 0) {
    net_respond_error(c, 400, "BAD_JSON",
                      rc == -ENOTSUP ? "body must be a JSON object" : "body is not valid JSON");
    return;
  }
  if (!f.has_channel || !f.has_data) {
    net_respond_error(c, 400, "MISSING_FIELD", f.has_channel ? "field 'data' is required" : "field 'channel' is required");
    return;
  }
  tt_str_t ch = {0}, ev = {0};
  const char *why;
  if (tt_json_string_decode(f.channel, &ch) != 0 || hub_channel_check(ch.data, ch.len, &why) != 0) {
    net_respond_error(c, 400, "BAD_CHANNEL", "channel must be 1-255 bytes of [A-Za-z0-9_.:/-]");
  } else if (f.has_event && (tt_json_string_decode(f.event, &ev) != 0 || hub_event_check(ev.data, ev.len, &why) != 0)) {
    net_respond_error(c, 400, "BAD_EVENT", "event must be 1-64 bytes of [A-Za-z0-9_.:-]");
  } else {
    api__publish(req, ch.data, ch.len, f.has_event ? ev.data : "message", f.has_event ? ev.len : 7, f.data.p,
                 f.data.len);
  }
  tt_str_free(&ch);
  tt_str_free(&ev);
}

static void api__publish_raw(net_request_t *req, const char *raw, size_t raw_len) {
  net_conn_t *c = req->conn;
  char channel[HUB_CHANNEL_MAX * 3 + 1];
  size_t clen;
  if (api__channel(c, raw, raw_len, channel, &clen) != 0) return;
  char event[HUB_EVENT_MAX * 3 + 1] = "message";
  size_t elen = 7;
  const char *q = req->query, *k, *v;
  size_t ql = req->query_len, kl, vl;
  while (q != NULL && http_query_next(&q, &ql, &k, &kl, &v, &vl)) {
    if (kl == 5 && memcmp(k, "event", 5) == 0) {
      const char *why;
      ssize_t dl = vl <= HUB_EVENT_MAX * 3 ? http_url_decode(v, vl, event, true) : -1;
      if (dl < 0 || hub_event_check(event, (size_t)dl, &why) != 0) {
        net_respond_error(c, 400, "BAD_EVENT", "event must be 1-64 bytes of [A-Za-z0-9_.:-]");
        return;
      }
      elen = (size_t)dl;
    }
  }
  /* The data is the body without surrounding whitespace, as one JSON value. */
  const char *d = req->body;
  size_t dl = req->body_len;
  while (dl > 0 && (*d == ' ' || *d == '\t' || *d == '\r' || *d == '\n')) {
    d++;
    dl--;
  }
  while (dl > 0 && (d[dl - 1] == ' ' || d[dl - 1] == '\t' || d[dl - 1] == '\r' || d[dl - 1] == '\n')) dl--;
  if (tt_json_validate(d, dl) != 0) {
    net_respond_error(c, 400, "BAD_JSON", "body must be one valid JSON value");
    return;
  }
  api__publish(req, channel, clen, event, elen, d, dl);
}

/* A request answered from an engine callback: the connection (kept alive by
 * a ref) and the channel, copied because the request's slices die with the
 * handler. */
typedef struct api_pending_s {
  net_conn_t *conn;
  char render_job[33];   /* a music:generated publish's render, or "" */
  size_t channel_len;
  char channel[];
} api_pending_t;

static api_pending_t *api__pending(net_request_t *req, const char *channel, size_t clen) {
  api_pending_t *r = tt_malloc(sizeof(*r) + clen + 1);
  r->conn = req->conn;
  r->render_job[0] = '\0';
  r->channel_len = clen;
  memcpy(r->channel, channel, clen);
  r->channel[clen] = '\0';
  net_conn_ref(req->conn);
  net_request_defer(req);
  return r;
}

static void api__pending_done(api_pending_t *r) {
  net_conn_unref(r->conn);
  free(r);
}

static void api__published(void *ctx, int status, const engine_pos_t *pos) {
  api_pending_t *r = ctx;
  net_conn_t *c = r->conn;
  if (!net_conn_is_closing(c)) {
    if (status != 0) {
      net_respond_error(c, 503, "ENGINE_UNAVAILABLE", "the engine is not available: the message was not accepted");
    } else {
      tt_str_t b = {0};
      tt_str_appends(&b, "{\"channel\":\"");
      tt_str_append(&b, r->channel, r->channel_len); /* the name rule needs no escaping */
      tt_str_appendf(&b, "\",\"epoch\":\"%s\",\"offset\":%" PRIu64 ",\"id\":\"%s:%" PRIu64 "\"", pos->epoch,
                     pos->offset, pos->epoch, pos->offset);
      if (r->render_job[0]) tt_str_appendf(&b, ",\"render_job\":\"%s\"", r->render_job);
      tt_str_appends(&b, "}");
      api__json(c, 200, &b);
      tt_str_free(&b);
    }
  }
  api__pending_done(r);
}

static void api__publish(net_request_t *req, const char *channel, size_t clen, const char *event, size_t elen,
                         const char *data, size_t dlen) {
  if (hub_channel_reserved(channel, clen)) {
    net_respond_error(req->conn, 403, "FORBIDDEN", "room channels are published to by their participants only");
    return;
  }
  char job[33] = "";
  static const char music[] = "music:generated";
  if (elen == sizeof(music) - 1 && memcmp(event, music, elen) == 0 &&
      api__music_generated(req, channel, clen, data, dlen, job) != 0)
    return; /* answered */
  api_pending_t *r = api__pending(req, channel, clen);
  memcpy(r->render_job, job, sizeof(job));
  hub_publish(api.hub, &net_conn_worker(req->conn)->loop, channel, clen, event, elen, data, dlen, api__published, r);
}

/* ================================================================ health */

static void api__health(net_conn_t *c) {
  tt_str_t b = {0};
  engine_t *e = hub_engine(api.hub);
  const char *engine_state = e->vt->state(e);
  bool draining = net_server_draining(api.server);
  bool up = strcmp(engine_state, "up") == 0;
  const char *status = draining ? "draining" : up ? "ok" : "degraded";
  tt_str_appendf(&b,
                 "{\"status\":\"%s\",\"version\":\"%s\",\"uptime_s\":%.3f,\"workers\":%d,\"engine\":\"%s\","
                 "\"engine_state\":\"%s\",\"connections\":{\"total\":%" PRIu64 ",\"sse\":%" PRIu64 ",\"ws\":%" PRIu64
                 "},\"channels\":%zu,\"subscriptions\":%" PRIu64 ",\"messages\":{\"published\":%" PRIu64
                 ",\"delivered\":%" PRIu64 "},\"slow_consumers_dropped\":%" PRIu64 ",\"rss_bytes\":%" PRIu64 "}",
                 status, TUTTI_VERSION, (double)(tt_now_ms() - api.started_ms) / 1000.0, api.workers, e->vt->name,
                 engine_state, net_server_connections(api.server), obs_open(OBS_SSE_OPENED, OBS_SSE_CLOSED),
                 obs_open(OBS_WS_OPENED, OBS_WS_CLOSED), e->vt->channel_count(e), hub_subscriptions(api.hub),
                 obs_get(OBS_PUBLISHED), obs_get(OBS_DELIVERED), obs_get(OBS_SLOW_CONSUMERS), obs_rss_bytes());
  api__json(c, draining || !up ? 503 : 200, &b);
  tt_str_free(&b);
}

static void api__on_info(void *ctx, const engine_channel_info_t *info) {
  api_pending_t *r = ctx;
  net_conn_t *c = r->conn;
  if (!net_conn_is_closing(c)) {
    tt_str_t b = {0};
    tt_str_appends(&b, "{\"channel\":\"");
    tt_str_append(&b, r->channel, r->channel_len);
    tt_str_appendf(&b,
                   "\",\"exists\":%s,\"subscribers\":%" PRIu64 ",\"epoch\":\"%s\",\"last_offset\":%" PRIu64
                   ",\"history_size\":%zu}",
                   info->exists ? "true" : "false", hub_channel_subscribers(api.hub, r->channel, r->channel_len),
                   info->top.epoch, info->top.offset, info->history_size);
    if (info->status != 0) net_respond_error(c, 503, "ENGINE_UNAVAILABLE", "the engine is not available");
    else api__json(c, 200, &b);
    tt_str_free(&b);
  }
  api__pending_done(r);
}

static void api__channel_health(net_request_t *req, const char *raw, size_t len) {
  char channel[HUB_CHANNEL_MAX * 3 + 1];
  size_t clen;
  if (api__channel(req->conn, raw, len, channel, &clen) != 0) return;
  api_pending_t *r = api__pending(req, channel, clen);
  engine_t *e = hub_engine(api.hub);
  e->vt->info(e, &net_conn_worker(req->conn)->loop, channel, clen, api__on_info, r);
}

static void api__on_presence(void *ctx, int status, const engine_member_t *members, size_t count) {
  api_pending_t *r = ctx;
  net_conn_t *c = r->conn;
  if (!net_conn_is_closing(c)) {
    if (status != 0) {
      net_respond_error(c, 503, "ENGINE_UNAVAILABLE", "the engine is not available");
    } else {
      tt_str_t b = {0};
      tt_str_appends(&b, "{\"channel\":\"");
      tt_str_append(&b, r->channel, r->channel_len);
      tt_str_appends(&b, "\",\"members\":");
      transport_members_json(&b, members, count);
      tt_str_appends(&b, "}");
      api__json(c, 200, &b);
      tt_str_free(&b);
    }
  }
  api__pending_done(r);
}

static void api__presence(net_request_t *req, const char *raw, size_t len) {
  char channel[HUB_CHANNEL_MAX * 3 + 1];
  size_t clen;
  if (api__channel(req->conn, raw, len, channel, &clen) != 0) return;
  api_pending_t *r = api__pending(req, channel, clen);
  engine_t *e = hub_engine(api.hub);
  e->vt->presence_list(e, &net_conn_worker(req->conn)->loop, channel, clen, api__on_presence, r);
}

/* ================================================================ jam sessions */

typedef struct api_session_fields_s {
  tt_json_span_t name, max;
  bool has_name, has_max;
} api_session_fields_t;

static int api__session_member(void *ctx, tt_json_span_t key, tt_json_span_t value) {
  api_session_fields_t *f = ctx;
  if (tt_json_key_is(key, "name")) {
    f->name = value;
    f->has_name = true;
  } else if (tt_json_key_is(key, "max_participants")) {
    f->max = value;
    f->has_max = true;
  }
  return 0;
}

static void api__on_session_created(void *ctx, int status, const char *code, const char *record) {
  api_pending_t *r = ctx;
  (void)code;
  if (!net_conn_is_closing(r->conn)) {
    if (status != 0) {
      net_respond_error(r->conn, 503, "ENGINE_UNAVAILABLE", "could not create a room");
    } else {
      tt_str_t b = {0};
      tt_str_appends(&b, record);
      api__json(r->conn, 201, &b);
      tt_str_free(&b);
    }
  }
  api__pending_done(r);
}

static void api__session_create(net_request_t *req) {
  net_conn_t *c = req->conn;
  api_session_fields_t f = {0};
  const char *body = req->body;
  size_t len = req->body_len;
  while (len > 0 && (*body == ' ' || *body == '\n' || *body == '\r' || *body == '\t')) {
    body++;
    len--;
  }
  if (len > 0) {
    int rc = tt_json_object_scan(body, len, api__session_member, &f);
    if (rc != 0) {
      net_respond_error(c, 400, "BAD_JSON", rc == -ENOTSUP ? "body must be a JSON object" : "body is not valid JSON");
      return;
    }
  }
  int max = 0;
  if (f.has_max) {
    char num[16];
    snprintf(num, sizeof(num), "%.*s", (int)TT_MIN(f.max.len, sizeof(num) - 1), f.max.p);
    char *end;
    long v = strtol(num, &end, 10);
    if (*end != '\0' || f.max.len >= sizeof(num) || v < 1 || v > 1000) {
      net_respond_error(c, 400, "BAD_FIELD", "max_participants must be an integer from 1 to 1000");
      return;
    }
    max = (int)v;
  }
  if (f.has_name) {
    tt_str_t d = {0};
    bool ok = f.name.p[0] == '"' && tt_json_string_decode(f.name, &d) == 0 && d.len <= 128;
    tt_str_free(&d);
    if (!ok) {
      net_respond_error(c, 400, "BAD_FIELD", "name must be a string of at most 128 bytes");
      return;
    }
  }
  api_pending_t *r = api__pending(req, "", 0);
  hub_room_create(api.hub, &net_conn_worker(c)->loop, f.has_name ? f.name.p : NULL, f.has_name ? f.name.len : 0, max,
                  api__on_session_created, r);
}

/* GET /api/sessions/{code}: the record, then the participants, then the event count. */
typedef struct api_session_s {
  api_pending_t *p;
  tt_str_t out;
  char channel[64];
} api_session_t;

static void api__session_done(api_session_t *s, int status, const char *code, const char *message) {
  if (!net_conn_is_closing(s->p->conn)) {
    if (status == 200) api__json(s->p->conn, 200, &s->out);
    else net_respond_error(s->p->conn, status, code, message);
  }
  api__pending_done(s->p);
  tt_str_free(&s->out);
  free(s);
}

static void api__session_info(void *ctx, const engine_channel_info_t *info) {
  api_session_t *s = ctx;
  if (info->status != 0) {
    api__session_done(s, 503, "ENGINE_UNAVAILABLE", "the engine is not available");
    return;
  }
  tt_str_appendf(&s->out, ",\"event_count\":%" PRIu64 "}", info->top.offset);
  api__session_done(s, 200, NULL, NULL);
}

static void api__session_members(void *ctx, int status, const engine_member_t *members, size_t count) {
  api_session_t *s = ctx;
  if (status != 0) {
    api__session_done(s, 503, "ENGINE_UNAVAILABLE", "the engine is not available");
    return;
  }
  tt_str_appends(&s->out, ",\"participants\":[");
  for (size_t i = 0; i < count; i++) {
    if (i) tt_str_append(&s->out, ",", 1);
    tt_str_appends(&s->out, members[i].info);
  }
  tt_str_append(&s->out, "]", 1);
  engine_t *e = hub_engine(api.hub);
  e->vt->info(e, &net_conn_worker(s->p->conn)->loop, s->channel, strlen(s->channel), api__session_info, s);
}

static void api__session_record(void *ctx, int status, const char *record) {
  api_session_t *s = ctx;
  if (status == -ENOENT) {
    api__session_done(s, 404, "ROOM_NOT_FOUND", "no live room has that code");
    return;
  }
  if (status != 0) {
    api__session_done(s, 503, "ENGINE_UNAVAILABLE", "the engine is not available");
    return;
  }
  size_t rl = strlen(record);
  tt_str_append(&s->out, record, rl > 0 ? rl - 1 : 0); /* without its closing brace */
  engine_t *e = hub_engine(api.hub);
  e->vt->presence_list(e, &net_conn_worker(s->p->conn)->loop, s->channel, strlen(s->channel), api__session_members, s);
}

static void api__recording_room(void *ctx, int status, const char *record) {
  api_session_t *s = ctx;
  (void)record;
  if (status == -ENOENT) {
    api__session_done(s, 404, "ROOM_NOT_FOUND", "no room or recording has that code");
  } else if (status != 0) {
    api__session_done(s, 503, "ENGINE_UNAVAILABLE", "the engine is not available");
  } else {
    if (!net_conn_is_closing(s->p->conn))
      net_respond(s->p->conn, 200, "application/x-ndjson", "", 0, "Cache-Control: no-store\r\n");
    api__pending_done(s->p);
    tt_str_free(&s->out);
    free(s);
  }
}

/* GET /api/sessions/{code}/recording: the room channel's history, one event per line. */
static void api__on_recording(void *ctx, const engine_history_t *h) {
  api_session_t *s = ctx;
  if (h->status != 0) {
    api__session_done(s, 503, "ENGINE_UNAVAILABLE", "the engine is not available");
    return;
  }
  if (h->count == 0) {
    /* nothing recorded: a live room answers empty, an unknown code 404 */
    engine_t *e = hub_engine(api.hub);
    e->vt->record_get(e, &net_conn_worker(s->p->conn)->loop, s->channel, api__recording_room, s);
    return;
  }
  for (size_t i = 0; i < h->count; i++) {
    hub_room_event_json(h->msgs[i], NULL, &s->out);
    tt_str_append(&s->out, "\n", 1);
  }
  if (!net_conn_is_closing(s->p->conn))
    net_respond(s->p->conn, 200, "application/x-ndjson", s->out.data ? s->out.data : "", s->out.len,
                "Cache-Control: no-store\r\n");
  api__pending_done(s->p);
  tt_str_free(&s->out);
  free(s);
}

static void api__session(net_request_t *req, const char *raw, size_t len) {
  bool recording = len > 10 && memcmp(raw + len - 10, "/recording", 10) == 0;
  if (recording) len -= 10;
  char code[HUB_ROOM_CODE_MAX * 3 + 1], channel[64];
  ssize_t cl = len < sizeof(code) ? http_url_decode(raw, len, code, false) : -1;
  if (cl < 0 || !hub_room_channel(code, (size_t)cl, channel, sizeof(channel))) {
    net_respond_error(req->conn, 404, "ROOM_NOT_FOUND", "no live room has that code");
    return;
  }
  api_session_t *s = tt_calloc(1, sizeof(*s));
  s->p = api__pending(req, "", 0);
  snprintf(s->channel, sizeof(s->channel), "%s", channel);
  engine_t *e = hub_engine(api.hub);
  if (recording) {
    engine_pos_t since = {.offset = 0};
    e->vt->history(e, &net_conn_worker(req->conn)->loop, channel, strlen(channel), &since, api__on_recording, s);
  } else {
    e->vt->record_get(e, &net_conn_worker(req->conn)->loop, channel, api__session_record, s);
  }
}

static void api__metrics(net_conn_t *c) {
  engine_t *e = hub_engine(api.hub);
  obs_gauges_t g = {
      .connections = net_server_connections(api.server),
      .channels = e->vt->channel_count(e),
      .subscriptions = hub_subscriptions(api.hub),
      .workers = api.workers,
      .uptime_s = (double)(tt_now_ms() - api.started_ms) / 1000.0,
      .rss_bytes = obs_rss_bytes(),
      .engine = e->vt->name,
      .engine_up = strcmp(e->vt->state(e), "up") == 0,
      .buoy_names = api.metrics_buoy_names,
      .render_jobs = audio_jobs_active(),
  };
  engine_stats_t es;
  engine_redis_stats(e, &es);
  g.bridge_relayed = es.bridge_relayed;
  g.bridge_invalid = es.bridge_invalid;
  g.engine_disconnects = es.disconnects;
  tt_str_t b = {0};
  obs_render_prometheus(&b, &g);
  net_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len, "Cache-Control: no-store\r\n");
  tt_str_free(&b);
}

/* ================================================================ router */

void api_handle(net_request_t *req) {
  net_conn_t *c = req->conn;
  const char *rest;
  size_t rl;
  bool get = api__method(req, "GET") || api__method(req, "HEAD");
  bool post = api__method(req, "POST");
  obs_inc(OBS_HTTP_REQUESTS);

  if (api__prefix(req, "/sse/", &rest, &rl)) {
    if (!api__method(req, "GET")) api__not_allowed(c, "GET");
    else sse_open(req, rest, rl, HUB_AUDIO_DEFAULT);
  } else if (api__prefix(req, "/stream/", &rest, &rl)) {
    /* the streaming-server document's routes: its clients expect the
     * SerializedBuffer JSON, and POST .../test renders */
    if (post && rl > 5 && memcmp(rest + rl - 5, "/test", 5) == 0) api__render_channel(req, rest, rl - 5, true);
    else if (!api__method(req, "GET")) api__not_allowed(c, "GET");
    else sse_open(req, rest, rl, "json");
  } else if (api__is(req, "/ws")) {
    ws_open(req, NULL, 0);
  } else if (api__prefix(req, "/ws/", &rest, &rl)) {
    ws_open(req, rest, rl);
  } else if (api__is(req, "/sse")) {
    if (!api__method(req, "GET")) api__not_allowed(c, "GET");
    else sse_open(req, NULL, 0, HUB_AUDIO_DEFAULT);
  } else if (api__is(req, "/api/publish")) {
    if (!post) api__not_allowed(c, "POST");
    else if (!api__authorized(req)) net_respond_error(c, 401, "UNAUTHORIZED", "publishing needs Authorization: Bearer KEY");
    else api__publish_json(req);
  } else if (api__prefix(req, "/api/channels/", &rest, &rl) && rl > 8 &&
             memcmp(rest + rl - 8, "/publish", 8) == 0) {
    if (!post) api__not_allowed(c, "POST");
    else if (!api__authorized(req)) net_respond_error(c, 401, "UNAUTHORIZED", "publishing needs Authorization: Bearer KEY");
    else api__publish_raw(req, rest, rl - 8);
  } else if (api__prefix(req, "/api/channels/", &rest, &rl) && rl > 7 &&
             memcmp(rest + rl - 7, "/render", 7) == 0) {
    if (!post) api__not_allowed(c, "POST");
    else api__render_channel(req, rest, rl - 7, false);
  } else if (api__is(req, "/api/render")) {
    if (!post) api__not_allowed(c, "POST");
    else api__render_file(req);
  } else if (api__prefix(req, "/api/render/jobs/", &rest, &rl)) {
    if (!get) api__not_allowed(c, "GET, HEAD");
    else api__render_job(req, rest, rl);
  } else if (api__prefix(req, "/api/channels/", &rest, &rl) && rl > 9 &&
             memcmp(rest + rl - 9, "/presence", 9) == 0) {
    if (!get) api__not_allowed(c, "GET, HEAD");
    else api__presence(req, rest, rl - 9);
  } else if (api__is(req, "/api/sessions")) {
    if (!post) api__not_allowed(c, "POST");
    else if (!api__authorized(req)) net_respond_error(c, 401, "UNAUTHORIZED", "creating rooms needs Authorization: Bearer KEY");
    else api__session_create(req);
  } else if (api__prefix(req, "/api/sessions/", &rest, &rl)) {
    if (!get) api__not_allowed(c, "GET, HEAD");
    else api__session(req, rest, rl);
  } else if (api__is(req, "/health")) {
    if (!get) api__not_allowed(c, "GET, HEAD");
    else api__health(c);
  } else if (api__prefix(req, "/health/channel/", &rest, &rl) || api__prefix(req, "/health/repo/", &rest, &rl)) {
    if (!get) api__not_allowed(c, "GET, HEAD");
    else api__channel_health(req, rest, rl);
  } else if (api__is(req, "/metrics")) {
    if (!get) api__not_allowed(c, "GET, HEAD");
    else api__metrics(c);
  } else if (api__prefix(req, "/api/", &rest, &rl) || api__is(req, "/api")) {
    net_respond_error(c, 404, "NOT_FOUND", "no such route or file");
  } else if (get) {
    net_static_serve(req);
  } else if (api__method(req, "OPTIONS")) {
    net_respond(c, 204, NULL, NULL, 0, "Allow: GET, HEAD, POST, OPTIONS\r\n");
  } else {
    api__not_allowed(c, "GET, HEAD");
  }
}
