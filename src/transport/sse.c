/*
 * Server-Sent Events. A stream is an HTTP response that never ends; the
 * client is one hub client with one subscription per channel.
 *
 * Positions: a single-channel stream's event id is the message's
 * "epoch:offset", and the frame is the message's shared SSE frame. A stream
 * over several channels carries all their positions, comma-joined in the
 * order of the request, so each delivery is two segments: a small id line of
 * its own and the shared frame after its id line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../obs/obs.h"
#include "transport.h"

typedef struct sse_client_s sse_client_t;

typedef struct sse_sub_s {
  hub_sub_t sub;
  sse_client_t *client;
  char *channel;
  size_t channel_len;
  engine_pos_t since;       /* asked-for position, when has_since */
  bool has_since;
  /* the engine's answer, kept until every channel has one */
  engine_recovery_t recovery;
  uint64_t oldest;
  engine_pos_t top;
  tt_msg_t **msgs;
  size_t count;
} sse_sub_t;

struct sse_client_s {
  hub_client_t hub;
  net_conn_t *conn;
  tt_list_t link;           /* in the worker's list of streams */
  uint64_t opened_ms;
  uint64_t heartbeats;
  bool recovering;          /* asked for recovery */
  bool failed;              /* the engine could not answer a channel */
  char cors[512];           /* CORS headers for the response head */
  bool started;             /* every channel answered; stream running */
  int waiting;              /* channels not answered yet */
  int nsubs;
  sse_sub_t subs[];
};

typedef struct sse_worker_s {
  uv_timer_t heartbeat;
  tt_list_t clients;
} sse_worker_t;

static struct {
  hub_t *hub;
  sse_options_t opts;
  int nworkers;
  sse_worker_t *workers;
  char client_prefix[TT_EPOCH_LEN + 1];
} sse;

/* ================================================================ framing */

/* One "data:" line per line of `data`; "\r\n", "\n" and "\r" end lines, so
 * EventSource joins them back with "\n". */
static void sse__append_data(tt_str_t *out, const char *data, size_t len) {
  size_t i = 0;
  for (;;) {
    size_t j = i;
    while (j < len && data[j] != '\n' && data[j] != '\r') j++;
    tt_str_append(out, "data: ", 6);
    tt_str_append(out, data + i, j - i);
    tt_str_append(out, "\n", 1);
    if (j >= len) break;
    if (data[j] == '\r' && j + 1 < len && data[j + 1] == '\n') j++;
    i = j + 1;
  }
}

tt_buf_t *sse_frame_build(const tt_msg_t *msg) {
  tt_str_t s = {0};
  tt_str_reserve(&s, msg->data_len + msg->event_len + 64);
  size_t el;
  const char *event = hub_msg_event(msg, &el);
  tt_str_appendf(&s, "id: %s:%" PRIu64 "\nevent: ", msg->epoch, msg->offset);
  tt_str_append(&s, event, el);
  tt_str_append(&s, "\n", 1);
  sse__append_data(&s, msg->data, msg->data_len);
  tt_str_append(&s, "\n", 1);
  tt_buf_t *b = tt_buf_from(s.data, s.len);
  tt_str_free(&s);
  return b;
}

int sse_pos_parse(const char *s, size_t len, engine_pos_t *pos) {
  memset(pos, 0, sizeof(*pos));
  const char *colon = memchr(s, ':', len);
  const char *num = s;
  if (colon != NULL) {
    size_t el = (size_t)(colon - s);
    if (el == 0 || el > TT_EPOCH_MAX) return -EINVAL;
    for (size_t i = 0; i < el; i++) {
      char c = s[i];
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'))
        return -EINVAL;
    }
    memcpy(pos->epoch, s, el);
    num = colon + 1;
  }
  size_t nl = (size_t)(s + len - num);
  if (nl == 0 || nl > 19) return -EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < nl; i++) {
    if (num[i] < '0' || num[i] > '9') return -EINVAL;
    v = v * 10 + (uint64_t)(num[i] - '0');
  }
  pos->offset = v;
  return 0;
}

/* The stream's position: every channel's, comma-joined. */
static void sse__append_position(tt_str_t *s, const sse_client_t *cl) {
  for (int i = 0; i < cl->nsubs; i++) {
    if (i > 0) tt_str_append(s, ",", 1);
    tt_str_appendf(s, "%s:%" PRIu64, cl->subs[i].sub.pos.epoch, cl->subs[i].sub.pos.offset);
  }
}

static void sse__send_event(sse_client_t *cl, const char *event, const char *data, size_t len, bool with_id,
                            obs_counter_t counter) {
  tt_str_t s = {0};
  if (with_id) {
    tt_str_appends(&s, "id: ");
    sse__append_position(&s, cl);
    tt_str_append(&s, "\n", 1);
  }
  tt_str_appendf(&s, "event: %s\n", event);
  sse__append_data(&s, data, len);
  tt_str_append(&s, "\n", 1);
  net_conn_send_copy(cl->conn, s.data, s.len);
  tt_str_free(&s);
  obs_inc(counter);
}

/* ================================================================ delivery */

/* The subscription's position is already the message's (the hub, or the
 * history replay in sse__start, sets it first), so a multi-channel id is
 * the stream's position after this message. */
/* Counts `n` messages queued in `frame`. */
static void sse__count(const tt_buf_t *frame, size_t n) {
  obs_add(OBS_DELIVERED, n);
  obs_add(OBS_DELIVERED_BYTES, frame->len);
  obs_add(OBS_SSE_EV_MESSAGE, n);
}

static void sse__deliver(hub_client_t *hc, hub_sub_t *hs, tt_msg_t *msg) {
  (void)hs;
  sse_client_t *cl = tt_container_of(hc, sse_client_t, hub);
  tt_buf_t *frame = tt_msg_frame(msg, TT_FRAME_SSE, sse_frame_build);
  int rc;
  if (cl->nsubs == 1) {
    rc = net_conn_send(cl->conn, frame, 0);
  } else {
    tt_str_t id = {0};
    tt_str_appends(&id, "id: ");
    sse__append_position(&id, cl);
    tt_str_append(&id, "\n", 1);
    rc = net_conn_send_copy(cl->conn, id.data, id.len);
    tt_str_free(&id);
    const char *nl = memchr(frame->data, '\n', frame->len);
    if (rc == 0) rc = net_conn_send(cl->conn, frame, (size_t)(nl - frame->data) + 1);
  }
  if (rc == 0) sse__count(frame, 1);
}

/* One subscription: the run's frames carry the ids the stream needs, so the
 * run goes as one block; with several, each message gets its id line. */
static bool sse__deliver_run(hub_client_t *hc, hub_sub_t *hs, hub_run_t *run) {
  (void)hs;
  sse_client_t *cl = tt_container_of(hc, sse_client_t, hub);
  if (cl->nsubs != 1) return false;
  tt_buf_t *frame = hub_run_frame(run, TT_FRAME_SSE, sse_frame_build);
  if (net_conn_send(cl->conn, frame, 0) == 0) sse__count(frame, run->n);
  return true;
}

static const hub_client_vt_t sse_hub_vt = {.deliver = sse__deliver, .deliver_run = sse__deliver_run};

/* ================================================================ stream start */

static const char *sse__reason(engine_recovery_t r) {
  switch (r) {
    case ENGINE_HISTORY_EXPIRED: return "history_expired";
    case ENGINE_EPOCH_CHANGED: return "epoch_changed";
    default: return "bad_position";
  }
}

/* Every channel has answered: connected, then per channel what recovery
 * found, then live. */
static void sse__start(sse_client_t *cl) {
  if (cl->failed) {
    /* The engine is away (Redis down): answer 503 instead of a stream. */
    static const char body[] =
        "{\"error\":{\"code\":\"ENGINE_UNAVAILABLE\",\"message\":\"the engine is not available; retry later\"}}";
    char head[1024];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 503 Service Unavailable\r\nServer: tutti/" TUTTI_VERSION
                      "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nRetry-After: 1\r\n%s"
                      "Connection: close\r\n\r\n%s",
                      sizeof(body) - 1, cl->cors, body);
    tt_buf_t *b = tt_buf_from(head, (size_t)hl);
    net_conn_send_final(cl->conn, b);
    tt_buf_unref(b);
    for (int i = 0; i < cl->nsubs; i++) hub_unsubscribe(sse.hub, &cl->subs[i].sub);
    return;
  }
  char head[1024];
  int hl = snprintf(head, sizeof(head),
                    "HTTP/1.1 200 OK\r\nServer: tutti/" TUTTI_VERSION
                    "\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                    "Connection: keep-alive\r\nX-Accel-Buffering: no\r\n%s\r\nretry: %d\n\n",
                    cl->cors, sse.opts.retry_ms);
  net_conn_send_copy(cl->conn, head, (size_t)hl);
  obs_inc(OBS_SSE_OPENED);
  cl->started = true;
  bool complete = true;
  for (int i = 0; i < cl->nsubs; i++) {
    sse_sub_t *ss = &cl->subs[i];
    if (!ss->has_since || ss->recovery == ENGINE_FRESH) {
      ss->sub.pos = ss->top;
    } else if (ss->recovery == ENGINE_RECOVERED) {
      ss->sub.pos = ss->since;
      memcpy(ss->sub.pos.epoch, ss->top.epoch, sizeof(ss->sub.pos.epoch)); /* a bare offset meant this epoch */
    } else {
      complete = false;
      ss->sub.pos = ss->top;
      ss->sub.pos.offset = ss->oldest - 1;
    }
  }

  tt_str_t d = {0};
  tt_str_appendf(&d, "{\"client_id\":\"%s-%" PRIu64 "\",\"channels\":[", sse.client_prefix, net_conn_id(cl->conn));
  for (int i = 0; i < cl->nsubs; i++) {
    tt_str_appends(&d, i ? ",\"" : "\"");
    tt_str_append(&d, cl->subs[i].channel, cl->subs[i].channel_len);
    tt_str_appends(&d, "\"");
  }
  tt_str_appendf(&d, "],\"server_time\":%" PRIu64, tt_now_ms());
  if (cl->recovering) tt_str_appendf(&d, ",\"recovered\":%s", complete ? "true" : "false");
  tt_str_appends(&d, "}");
  sse__send_event(cl, "connected", d.data, d.len, true, OBS_SSE_EV_CONNECTED);
  tt_str_free(&d);
  if (cl->recovering) obs_inc(complete ? OBS_RECOVERIES : OBS_RECOVERIES_INCOMPLETE);

  for (int i = 0; i < cl->nsubs; i++) {
    sse_sub_t *ss = &cl->subs[i];
    if (ss->has_since && ss->recovery != ENGINE_RECOVERED && ss->recovery != ENGINE_FRESH) {
      tt_str_t r = {0};
      tt_str_appends(&r, "{\"channel\":\"");
      tt_str_append(&r, ss->channel, ss->channel_len);
      tt_str_appendf(&r, "\",\"reason\":\"%s\",\"requested\":\"%s%s%" PRIu64 "\",\"epoch\":\"%s\",\"oldest_offset\":%" PRIu64
                         ",\"last_offset\":%" PRIu64 "}",
                     sse__reason(ss->recovery), ss->since.epoch, ss->since.epoch[0] ? ":" : "", ss->since.offset,
                     ss->top.epoch, ss->oldest, ss->top.offset);
      sse__send_event(cl, "recovery_incomplete", r.data, r.len, false, OBS_SSE_EV_RECOVERY_INCOMPLETE);
      tt_str_free(&r);
    }
    for (size_t k = 0; k < ss->count; k++) {
      memcpy(ss->sub.pos.epoch, ss->msgs[k]->epoch, sizeof(ss->sub.pos.epoch));
      ss->sub.pos.offset = ss->msgs[k]->offset;
      if (hub_sub_wants(&ss->sub, ss->msgs[k])) sse__deliver(&cl->hub, &ss->sub, ss->msgs[k]);
      tt_msg_unref(ss->msgs[k]);
    }
    free(ss->msgs);
    ss->msgs = NULL;
    ss->count = 0;
  }
  for (int i = 0; i < cl->nsubs; i++) {
    engine_pos_t reached = cl->subs[i].sub.pos;
    hub_sub_live(sse.hub, &cl->subs[i].sub, &reached);
  }
}

static void sse__on_subscribed(void *ctx, hub_sub_t *hs, const engine_history_t *h) {
  sse_client_t *cl = ctx;
  sse_sub_t *ss = tt_container_of(hs, sse_sub_t, sub);
  if (h->status != 0) cl->failed = true;
  ss->recovery = h->recovery;
  ss->top = h->top;
  ss->oldest = h->oldest;
  if (h->count > 0) {
    ss->msgs = tt_malloc(h->count * sizeof(*ss->msgs));
    for (size_t i = 0; i < h->count; i++) ss->msgs[i] = tt_msg_ref(h->msgs[i]);
    ss->count = h->count;
  }
  if (--cl->waiting == 0 && !net_conn_is_closing(cl->conn)) sse__start(cl);
}

/* ================================================================ connection events */

static void sse__on_close(net_conn_t *c) {
  sse_client_t *cl = net_conn_data(c);
  for (int i = 0; i < cl->nsubs; i++) {
    sse_sub_t *ss = &cl->subs[i];
    hub_unsubscribe(sse.hub, &ss->sub);
    for (size_t k = 0; k < ss->count; k++) tt_msg_unref(ss->msgs[k]);
    free(ss->msgs);
    free(ss->channel);
  }
  tt_list_remove(&cl->link);
  if (cl->started) {
    obs_inc(OBS_SSE_CLOSED);
    obs_observe(OBS_H_SSE_DURATION_S, (double)(tt_now_ms() - cl->opened_ms) / 1000.0);
  }
  tt_log(TT_LOG_DEBUG, "sse.close", "SSE client closed", "\"conn\":%" PRIu64, net_conn_id(c));
  free(cl);
}

static void sse__on_shutdown(net_conn_t *c) {
  sse_client_t *cl = net_conn_data(c);
  if (!cl->started) {
    net_conn_close(c); /* no stream yet: nothing to say goodbye on */
    return;
  }
  char msg[128];
  int n = snprintf(msg, sizeof(msg), "event: shutdown\ndata: {\"reason\":\"server shutting down\",\"retry_ms\":%d}\n\n",
                   sse.opts.retry_ms);
  tt_buf_t *b = tt_buf_from(msg, (size_t)n);
  net_conn_send_final(cl->conn, b);
  tt_buf_unref(b);
  obs_inc(OBS_SSE_EV_SHUTDOWN);
}

/* At the flush point (never inside deliver): the client is dropped, so it
 * leaves its channels now rather than when its last bytes are out. */
static tt_buf_t *sse__overflow_frame(net_conn_t *c) {
  sse_client_t *cl = net_conn_data(c);
  for (int i = 0; i < cl->nsubs; i++) hub_unsubscribe(sse.hub, &cl->subs[i].sub);
  obs_inc(OBS_SLOW_CONSUMERS);
  obs_inc(OBS_SSE_EV_ERROR);
  static const char msg[] =
      "event: error\ndata: {\"code\":\"SLOW_CONSUMER\",\"message\":\"the client fell more than max_queue bytes "
      "behind; reconnect to recover\"}\n\n";
  return tt_buf_from(msg, sizeof(msg) - 1);
}

static const net_stream_vt_t sse_stream_vt = {
    .on_data = NULL,
    .on_shutdown = sse__on_shutdown,
    .overflow_frame = sse__overflow_frame,
    .on_close = sse__on_close,
};

/* ================================================================ heartbeats */

static void sse__on_heartbeat(uv_timer_t *t) {
  sse_worker_t *w = tt_container_of(t, sse_worker_t, heartbeat);
  uint64_t now = tt_now_ms();
  for (tt_list_t *l = w->clients.next; l != &w->clients; l = l->next) {
    sse_client_t *cl = tt_container_of(l, sse_client_t, link);
    if (!cl->started) continue;
    char data[80];
    int n = snprintf(data, sizeof(data), "{\"count\":%" PRIu64 ",\"server_time\":%" PRIu64 "}", ++cl->heartbeats, now);
    sse__send_event(cl, "heartbeat", data, (size_t)n, false, OBS_SSE_EV_HEARTBEAT);
  }
}

/* ================================================================ opening a stream */

static int sse__add_channel(net_request_t *req, const char ***names, size_t **lens, int *n, const char *raw,
                            size_t rawlen) {
  char *dec = tt_malloc(rawlen + 1);
  ssize_t dl = http_url_decode(raw, rawlen, dec, true);
  const char *why;
  if (dl < 0 || hub_channel_check(dec, (size_t)dl, &why) != 0) {
    free(dec);
    net_respond_error(req->conn, 400, "BAD_CHANNEL", "channel must be 1-255 bytes of [A-Za-z0-9_.:/-]");
    return -1;
  }
  for (int i = 0; i < *n; i++) {
    if ((*lens)[i] == (size_t)dl && memcmp((*names)[i], dec, (size_t)dl) == 0) {
      free(dec); /* the same channel twice is once */
      return 0;
    }
  }
  if (*n >= sse.opts.max_channels) {
    free(dec);
    char msg[96];
    snprintf(msg, sizeof(msg), "at most %d channels per stream", sse.opts.max_channels);
    net_respond_error(req->conn, 400, "TOO_MANY_CHANNELS", msg);
    return -1;
  }
  *names = tt_realloc(*names, (size_t)(*n + 1) * sizeof(**names));
  *lens = tt_realloc(*lens, (size_t)(*n + 1) * sizeof(**lens));
  (*names)[*n] = dec;
  (*lens)[*n] = (size_t)dl;
  (*n)++;
  return 0;
}

/* Splits a comma-joined position list over the subscriptions. */
static int sse__parse_positions(sse_client_t *cl, const char *s, size_t len) {
  int i = 0;
  const char *p = s, *end = s + len;
  while (p <= end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *e = comma ? comma : end;
    if (i >= cl->nsubs || sse_pos_parse(p, (size_t)(e - p), &cl->subs[i].since) != 0) return -EINVAL;
    cl->subs[i].has_since = true;
    i++;
    if (comma == NULL) break;
    p = comma + 1;
  }
  return i == cl->nsubs ? 0 : -EINVAL;
}

void sse_open(net_request_t *req, const char *channel, size_t len, const char *encoding) {
  const char **names = NULL;
  size_t *lens = NULL;
  int n = 0;
  const char *since = NULL;
  size_t since_len = 0;

  if (channel != NULL) {
    if (sse__add_channel(req, &names, &lens, &n, channel, len) != 0) goto done;
  }
  const char *q = req->query, *k, *v;
  size_t ql = req->query_len, kl, vl;
  while (q != NULL && http_query_next(&q, &ql, &k, &kl, &v, &vl)) {
    if (kl == 7 && memcmp(k, "channel", 7) == 0 && channel == NULL) {
      if (sse__add_channel(req, &names, &lens, &n, v, vl) != 0) goto done;
    } else if (kl == 5 && memcmp(k, "since", 5) == 0) {
      since = v;
      since_len = vl;
    } else if (kl == 8 && memcmp(k, "encoding", 8) == 0) {
      encoding = hub_encoding_check(v, vl);
      if (encoding == NULL) {
        net_respond_error(req->conn, 400, "BAD_ENCODING", "encoding must be opus, pcm16, json or json16");
        goto done;
      }
    }
  }
  if (n == 0) {
    net_respond_error(req->conn, 400, "MISSING_FIELD", "give a channel: /sse/{channel} or /sse?channel=name");
    goto done;
  }
  if (net_server_draining(net_conn_worker(req->conn)->server)) {
    net_respond_error(req->conn, 503, "SHUTTING_DOWN", "the server is shutting down");
    goto done;
  }

  sse_client_t *cl = tt_calloc(1, sizeof(*cl) + (size_t)n * sizeof(sse_sub_t));
  cl->nsubs = n;
  for (int i = 0; i < n; i++) {
    cl->subs[i].client = cl;
    cl->subs[i].channel = (char *)names[i];
    cl->subs[i].channel_len = lens[i];
    cl->subs[i].sub.encoding = encoding;
    names[i] = NULL;
  }

  /* Recovery: Last-Event-ID (what browsers send) wins over ?since=. */
  size_t lid_len = 0;
  const char *lid = http_head_get(&req->head, "Last-Event-ID", &lid_len);
  if (lid != NULL && lid_len > 0) {
    cl->recovering = true;
    if (sse__parse_positions(cl, lid, lid_len) != 0) {
      /* Unreadable: ask from beyond any channel's end, which the engine
       * reports as a bad position, with everything it holds. */
      for (int i = 0; i < n; i++) {
        memset(&cl->subs[i].since, 0, sizeof(cl->subs[i].since));
        cl->subs[i].since.offset = UINT64_MAX;
        cl->subs[i].has_since = true;
      }
    }
  } else if (since != NULL) {
    char *dec = tt_malloc(since_len + 1);
    ssize_t dl = http_url_decode(since, since_len, dec, true);
    int rc = dl < 0 ? -EINVAL : sse__parse_positions(cl, dec, (size_t)dl);
    free(dec);
    if (rc != 0) {
      for (int i = 0; i < n; i++) free(cl->subs[i].channel);
      free(cl);
      net_respond_error(req->conn, 400, "BAD_SINCE",
                        "since must be epoch:offset or an offset, one per channel, comma-joined");
      goto done;
    }
    cl->recovering = true;
  }

  net_conn_t *c = req->conn;
  cl->conn = c;
  cl->hub.vt = &sse_hub_vt;
  cl->hub.worker = net_conn_worker(c)->id;
  cl->opened_ms = tt_now_ms();
  cl->waiting = n;
  tt_list_insert_tail(&sse.workers[cl->hub.worker].clients, &cl->link);

  snprintf(cl->cors, sizeof(cl->cors), "%s", net_request_stream(req, &sse_stream_vt, cl));
  tt_log(TT_LOG_DEBUG, "sse.open", "SSE client connected", "\"conn\":%" PRIu64 ",\"channels\":%d", net_conn_id(c), n);

  for (int i = 0; i < n; i++) {
    sse_sub_t *ss = &cl->subs[i];
    hub_subscribe(sse.hub, &cl->hub, &ss->sub, ss->channel, ss->channel_len, ss->has_since ? &ss->since : NULL,
                  sse__on_subscribed, cl);
  }

done:
  for (int i = 0; i < n; i++) free((char *)names[i]);
  free(names);
  free(lens);
}

/* ================================================================ life */

void sse_init(hub_t *hub, const sse_options_t *opts, int workers) {
  sse.hub = hub;
  sse.opts = *opts;
  sse.nworkers = workers;
  sse.workers = tt_calloc((size_t)workers, sizeof(*sse.workers));
  tt_random_token(sse.client_prefix, TT_EPOCH_LEN);
  for (int i = 0; i < workers; i++) tt_list_init(&sse.workers[i].clients);
}

void sse_worker_init(int id, uv_loop_t *loop) {
  sse_worker_t *w = &sse.workers[id];
  uint64_t ms = (uint64_t)(sse.opts.heartbeat_interval * 1000);
  uv_timer_init(loop, &w->heartbeat);
  uv_timer_start(&w->heartbeat, sse__on_heartbeat, ms, ms);
}

void sse_free(void) {
  free(sse.workers);
  sse.workers = NULL;
}
