/*
 * The render routes: music from parameters, rendered on the thread pool
 * (src/audio) and either published to a channel once per encoding or sent
 * back as a file.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../obs/obs.h"
#include "api_internal.h"

/* The streaming-server document's test request, for an empty body. */
static const char render_test_piece[] = "{\"tempo\":120,\"duration\":5,\"instrumentType\":\"synth\"}";

/* ================================================================ parameters */

/* 400 BAD_PARAMS naming every bad field. */
static void render__bad_params(net_conn_t *c, const audio_param_errors_t *errs) {
  tt_str_t b = {0};
  tt_str_appends(&b, "{\"error\":{\"code\":\"BAD_PARAMS\",\"message\":\"");
  for (size_t i = 0; i < TT_MIN(errs->count, AUDIO_PARAM_ERRORS_MAX); i++) {
    const audio_param_error_t *e = &errs->list[i];
    if (i) tt_str_appends(&b, "; ");
    tt_str_append_json(&b, e->field[0] ? e->field : "parameters", strlen(e->field[0] ? e->field : "parameters"));
    tt_str_appends(&b, " ");
    tt_str_append_json(&b, e->message, strlen(e->message));
  }
  if (errs->count > AUDIO_PARAM_ERRORS_MAX) tt_str_appendf(&b, "; and %zu more", errs->count - AUDIO_PARAM_ERRORS_MAX);
  tt_str_appends(&b, "\",\"fields\":[");
  for (size_t i = 0; i < TT_MIN(errs->count, AUDIO_PARAM_ERRORS_MAX); i++) {
    const audio_param_error_t *e = &errs->list[i];
    tt_str_appends(&b, i ? ",{\"field\":\"" : "{\"field\":\"");
    tt_str_append_json(&b, e->field, strlen(e->field));
    tt_str_appends(&b, "\",\"message\":\"");
    tt_str_append_json(&b, e->message, strlen(e->message));
    tt_str_appends(&b, "\"}");
  }
  tt_str_appends(&b, "]}}");
  api__json(c, 400, &b);
  tt_str_free(&b);
}

/* Parses the body as MusicalParameters; answers 400 itself. */
static audio_score_t *render__params(net_request_t *req, const char *body, size_t len) {
  audio_score_t *score;
  audio_param_errors_t errs;
  if (audio_params_parse(body, len, &api__options()->render, &score, &errs) != 0) {
    render__bad_params(req->conn, &errs);
    return NULL;
  }
  return score;
}

static void render__busy(net_conn_t *c) {
  char msg[128];
  snprintf(msg, sizeof(msg), "%d render jobs are already waiting or running; retry later",
           api__options()->jobs.max_queued);
  tt_str_t b = {0};
  tt_str_appends(&b, "{\"error\":{\"code\":\"RENDER_BUSY\",\"message\":\"");
  tt_str_appends(&b, msg);
  tt_str_appends(&b, "\"}}");
  net_respond(c, 503, "application/json", b.data, b.len, "Retry-After: 1\r\nCache-Control: no-store\r\n");
  tt_str_free(&b);
}

static const char *render__error_code(int status) {
  switch (status) {
  case -ETIMEDOUT: return "RENDER_TIMEOUT";
  case -ENOENT: return "SAMPLE_NOT_FOUND";
  case -EINVAL: return "SAMPLE_UNREADABLE";
  default: return "RENDER_FAILED";
  }
}

static const char *render__error_message(int status) {
  switch (status) {
  case -ETIMEDOUT: return "the render took longer than --render-timeout";
  case -ENOENT: return "a sample named in the parameters is not in the samples folder";
  case -EINVAL: return "a sample in the samples folder is not a readable WAV file";
  default: return "the render failed";
  }
}

/* ================================================================ to a channel */

typedef struct render_target_s {
  hub_t *hub;
  uv_loop_t *loop;
  size_t channel_len;
  char channel[];
} render_target_t;

static void render__published(void *ctx, int status, const engine_pos_t *pos) {
  (void)pos;
  const char *what = ctx; /* the encoding, or "audio_error" */
  if (status != 0)
    tt_log(TT_LOG_ERROR, "render.publish_failed", "a render's message was not accepted by the engine",
           "\"what\":\"%s\",\"status\":%d", what, status);
}

static void render__done(void *ctx, const char *id, const audio_job_result_t *r) {
  render_target_t *t = ctx;
  if (r->status == 0) {
    obs_inc(OBS_RENDERS);
    obs_add(OBS_RENDER_AUDIO_MS, (uint64_t)((double)r->pcm->frames * 1000.0 / r->pcm->sample_rate));
    obs_add(OBS_RENDER_WALL_MS, (uint64_t)((r->render_seconds + r->encode_seconds) * 1000.0));
    tt_log(TT_LOG_INFO, "render.done", "render published",
           "\"job\":\"%s\",\"channel\":\"%s\",\"audio_s\":%.3f,\"render_s\":%.3f,\"encode_s\":%.3f,"
           "\"bytes\":{\"opus\":%zu,\"pcm16\":%zu,\"json\":%zu,\"json16\":%zu}",
           id, t->channel, (double)r->pcm->frames / r->pcm->sample_rate, r->render_seconds, r->encode_seconds,
           r->encoded[AUDIO_ENC_OPUS].len, r->encoded[AUDIO_ENC_PCM16].len, r->encoded[AUDIO_ENC_JSON].len,
           r->encoded[AUDIO_ENC_JSON16].len);
    for (int e = 0; e < AUDIO_ENC_COUNT; e++) {
      char event[HUB_EVENT_MAX + 1]; /* audio_buffer.<encoding>: see hub.h */
      int el = snprintf(event, sizeof(event), "%s.%s", HUB_AUDIO_EVENT, audio_encoding_name((audio_encoding_t)e));
      hub_publish(t->hub, t->loop, t->channel, t->channel_len, event, (size_t)el, r->encoded[e].data,
                  r->encoded[e].len, render__published, (void *)audio_encoding_name((audio_encoding_t)e));
    }
  } else if (r->status != -ECANCELED) { /* cancelled: the server is stopping */
    obs_inc(OBS_RENDERS_FAILED);
    tt_log(TT_LOG_WARN, "render.failed", render__error_message(r->status), "\"job\":\"%s\",\"channel\":\"%s\"", id,
           t->channel);
    char data[256];
    int n = snprintf(data, sizeof(data), "{\"render_id\":\"%s\",\"code\":\"%s\",\"message\":\"%s\"}", id,
                     render__error_code(r->status), render__error_message(r->status));
    hub_publish(t->hub, t->loop, t->channel, t->channel_len, "audio_error", 11, data, (size_t)n, render__published,
                "audio_error");
  }
  free(t);
}

/* Queues `score` for `channel`; 0 with the id, or -EBUSY (score freed). */
static int render__submit(net_request_t *req, audio_score_t *score, const char *channel, size_t clen, char *id) {
  const api_options_t *o = api__options();
  render_target_t *t = tt_malloc(sizeof(*t) + clen + 1);
  t->hub = o->hub;
  t->loop = &net_conn_worker(req->conn)->loop;
  t->channel_len = clen;
  memcpy(t->channel, channel, clen);
  t->channel[clen] = '\0';
  tt_random_token(id, 16);
  audio_job_limits_t limits = o->jobs;
  limits.outputs = AUDIO_OUT_MESSAGES;
  int rc = audio_job_submit(t->loop, score, id, &limits, render__done, t);
  if (rc != 0) free(t);
  return rc;
}

static void render__accepted(net_conn_t *c, const char *id, const char *channel, size_t clen, double duration) {
  tt_str_t b = {0};
  tt_str_appendf(&b, "{\"job_id\":\"%s\",\"status\":\"queued\",\"channel\":\"", id);
  tt_str_append(&b, channel, clen); /* the name rule needs no escaping */
  tt_str_appendf(&b, "\",\"duration\":%g,\"status_url\":\"/api/render/jobs/%s\"}", duration, id);
  char loc[96];
  snprintf(loc, sizeof(loc), "Location: /api/render/jobs/%s\r\nCache-Control: no-store\r\n", id);
  net_respond(c, 202, "application/json", b.data, b.len, loc);
  tt_str_free(&b);
}

void api__render_channel(net_request_t *req, const char *raw, size_t len, bool test) {
  net_conn_t *c = req->conn;
  if (!api__authorized(req)) {
    net_respond_error(c, 401, "UNAUTHORIZED", "rendering needs Authorization: Bearer KEY");
    return;
  }
  char channel[HUB_CHANNEL_MAX * 3 + 1];
  size_t clen;
  if (api__channel(c, raw, len, channel, &clen) != 0) return;
  if (hub_channel_reserved(channel, clen)) {
    net_respond_error(c, 403, "FORBIDDEN", "room channels are published to by their participants only");
    return;
  }
  const char *body = req->body;
  size_t blen = req->body_len;
  if (test && blen == 0) {
    body = render_test_piece;
    blen = sizeof(render_test_piece) - 1;
  }
  audio_score_t *score = render__params(req, body, blen);
  if (score == NULL) return;
  double duration = score->duration;
  char id[33];
  if (render__submit(req, score, channel, clen, id) != 0) {
    render__busy(c);
    return;
  }
  render__accepted(c, id, channel, clen, duration);
}

int api__music_generated(net_request_t *req, const char *channel, size_t clen, const char *data, size_t dlen,
                         char *job_id) {
  net_conn_t *c = req->conn;
  /* the target: the event's own channel or repoId, else the one published to */
  json_t *root = json_loadb(data, dlen, 0, NULL);
  json_t *target = json_object_get(root, "channel");
  if (!json_is_string(target)) target = json_object_get(root, "repoId");
  char ch[HUB_CHANNEL_MAX + 1];
  const char *why;
  if (json_is_string(target)) {
    size_t tl = json_string_length(target);
    if (hub_channel_check(json_string_value(target), tl, &why) != 0 ||
        hub_channel_reserved(json_string_value(target), tl)) {
      json_decref(root);
      net_respond_error(c, 400, "BAD_CHANNEL", "the event's channel (or repoId) must be 1-255 bytes of [A-Za-z0-9_.:/-]");
      return -1;
    }
    memcpy(ch, json_string_value(target), tl);
    clen = tl;
  } else {
    memcpy(ch, channel, clen);
  }
  bool has_params = json_is_object(json_object_get(root, "musicalParams"));
  json_decref(root);
  if (!has_params) {
    net_respond_error(c, 400, "MISSING_FIELD", "a music:generated event needs a musicalParams object");
    return -1;
  }
  audio_score_t *score = render__params(req, data, dlen);
  if (score == NULL) return -1;
  if (render__submit(req, score, ch, clen, job_id) != 0) {
    render__busy(c);
    return -1;
  }
  return 0;
}

/* ================================================================ as a file */

typedef struct render_file_s {
  net_conn_t *conn;
  bool ogg;
} render_file_t;

static void render__file_done(void *ctx, const char *id, const audio_job_result_t *r) {
  render_file_t *f = ctx;
  net_conn_t *c = f->conn;
  if (r->status == 0) {
    obs_inc(OBS_RENDERS);
    obs_add(OBS_RENDER_AUDIO_MS, (uint64_t)((double)r->pcm->frames * 1000.0 / r->pcm->sample_rate));
    obs_add(OBS_RENDER_WALL_MS, (uint64_t)((r->render_seconds + r->encode_seconds) * 1000.0));
  } else if (r->status != -ECANCELED) {
    obs_inc(OBS_RENDERS_FAILED);
  }
  if (!net_conn_is_closing(c)) {
    if (r->status == 0) {
      char extra[160];
      snprintf(extra, sizeof(extra),
               "X-Render-Id: %s\r\nX-Render-Seconds: %.3f\r\nContent-Disposition: inline; filename=\"%s.%s\"\r\n", id,
               r->render_seconds, id, f->ogg ? "ogg" : "wav");
      net_respond(c, 200, f->ogg ? "audio/ogg" : "audio/wav", r->file.data, r->file.len, extra);
    } else if (r->status == -ECANCELED) {
      net_respond_error(c, 503, "SHUTTING_DOWN", "the server is shutting down");
    } else {
      int http = r->status == -ETIMEDOUT ? 503 : r->status == -ENOENT || r->status == -EINVAL ? 400 : 500;
      net_respond_error(c, http, render__error_code(r->status), render__error_message(r->status));
    }
  }
  net_conn_unref(c);
  free(f);
}

/* wav or ogg from ?format=, else from Accept; -1 when neither is acceptable. */
static int render__format(const net_request_t *req) {
  const char *q = req->query, *k, *v;
  size_t ql = req->query_len, kl, vl;
  while (q != NULL && http_query_next(&q, &ql, &k, &kl, &v, &vl)) {
    if (kl == 6 && memcmp(k, "format", 6) == 0) {
      if (vl == 3 && memcmp(v, "wav", 3) == 0) return 0;
      if (vl == 3 && memcmp(v, "ogg", 3) == 0) return 1;
      return -1;
    }
  }
  size_t al;
  const char *a = http_head_get(&req->head, "Accept", &al);
  if (a == NULL) return 0;
  char accept[256];
  snprintf(accept, sizeof(accept), "%.*s", (int)TT_MIN(al, sizeof(accept) - 1), a);
  if (strcasestr(accept, "audio/ogg") || strcasestr(accept, "audio/opus")) return 1;
  if (strcasestr(accept, "audio/wav") || strcasestr(accept, "audio/x-wav") || strcasestr(accept, "audio/wave") ||
      strcasestr(accept, "audio/*") || strcasestr(accept, "*/*"))
    return 0;
  return -1;
}

void api__render_file(net_request_t *req) {
  net_conn_t *c = req->conn;
  if (!api__authorized(req)) {
    net_respond_error(c, 401, "UNAUTHORIZED", "rendering needs Authorization: Bearer KEY");
    return;
  }
  int format = render__format(req);
  if (format < 0) {
    net_respond_error(c, 406, "NOT_ACCEPTABLE", "renders come as audio/wav or audio/ogg (Accept or ?format=wav|ogg)");
    return;
  }
  audio_score_t *score = render__params(req, req->body, req->body_len);
  if (score == NULL) return;
  render_file_t *f = tt_malloc(sizeof(*f));
  f->conn = c;
  f->ogg = format == 1;
  audio_job_limits_t limits = api__options()->jobs;
  limits.outputs = f->ogg ? AUDIO_OUT_OGG : AUDIO_OUT_WAV;
  char id[33];
  tt_random_token(id, 16);
  if (audio_job_submit(&net_conn_worker(c)->loop, score, id, &limits, render__file_done, f) != 0) {
    free(f);
    render__busy(c);
    return;
  }
  net_conn_ref(c);
  net_request_defer(req);
}

/* ================================================================ job status */

void api__render_job(net_request_t *req, const char *raw, size_t len) {
  char id[33];
  if (len == 0 || len > 32) {
    net_respond_error(req->conn, 404, "NOT_FOUND", "no such render job");
    return;
  }
  memcpy(id, raw, len);
  id[len] = '\0';
  audio_job_info_t info = audio_job_info(id);
  if (info.state == AUDIO_JOB_UNKNOWN) {
    net_respond_error(req->conn, 404, "NOT_FOUND", "no such render job (or it ended long ago)");
    return;
  }
  tt_str_t b = {0};
  tt_str_appendf(&b, "{\"job_id\":\"%s\",\"status\":\"%s\",\"progress\":%.3f,\"duration\":%g", id,
                 audio_job_state_name(info.state), info.progress, info.duration);
  if (info.state == AUDIO_JOB_DONE || info.state == AUDIO_JOB_FAILED)
    tt_str_appendf(&b, ",\"render_seconds\":%.3f", info.render_seconds);
  if (info.state == AUDIO_JOB_FAILED)
    tt_str_appendf(&b, ",\"error\":{\"code\":\"%s\",\"message\":\"%s\"}", render__error_code(info.status),
                   render__error_message(info.status));
  tt_str_appends(&b, "}");
  api__json(req->conn, 200, &b);
  tt_str_free(&b);
}
