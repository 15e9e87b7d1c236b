/*
 * The server: worker loops, listeners, connections, the request reader and
 * the write path.
 *
 * Write path (per loop turn): net_conn_send appends a buffer reference to the
 * connection's queue and puts the connection on its worker's flush list; the
 * worker's check handle (after each poll, for what I/O callbacks queued) and
 * prepare handle (before each poll, for what timers queued) write every
 * listed connection with one send or sendmsg (net__try_send), and hand only
 * what the kernel did not take to uv_write. Buffers are released when written.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../obs/obs.h"
#include "net_internal.h"

#define NET_IOV_BATCH 64
#define NET_LINGER_MS 2000

static void net__process(net_conn_t *c, const char *data, size_t len);
static void net__flush(net_conn_t *c);
static void net__drain_check(net_worker_impl_t *w);

/* ================================================================ connection life */

uint64_t net_conn_id(const net_conn_t *c) { return c->id; }
net_worker_t *net_conn_worker(const net_conn_t *c) { return &c->worker->pub; }
void *net_conn_data(const net_conn_t *c) { return c->stream_data; }

static void net__q_release_all(net_conn_t *c) {
  for (size_t i = 0; i < c->q_count; i++) tt_buf_unref(c->q[(c->q_head + i) % c->q_cap].buf);
  c->q_count = 0;
  c->q_bytes = 0;
}

static void net__free(net_conn_t *c) {
  net__q_release_all(c);
  if (c->q != c->q_small) free(c->q);
  free(c->in);
  tt_str_free(&c->chunk_body);
  free(c);
}

static void net__on_closed(uv_handle_t *h) {
  net_conn_t *c = tt_container_of((uv_tcp_t *)h, net_conn_t, tcp);
  c->closed = true;
  if (c->refs == 0) net__free(c);
}

void net_conn_ref(net_conn_t *c) { c->refs++; }

void net_conn_unref(net_conn_t *c) {
  if (--c->refs == 0 && c->closed) net__free(c);
}

bool net_conn_is_closing(const net_conn_t *c) { return c->closing; }

void net_conn_close(net_conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  net_worker_impl_t *w = c->worker;
  if (!tt_list_empty(&c->pending_link)) tt_list_remove(&c->pending_link);
  tt_list_remove(&c->link);
  w->conn_count--;
  atomic_fetch_sub(&w->pub.server->conn_total, 1);
  if (c->stream != NULL && c->stream->on_close != NULL) c->stream->on_close(c);
  uv_close((uv_handle_t *)&c->tcp, net__on_closed);
  if (w->draining) net__drain_check(w);
}

/* ================================================================ output queue */

static void net__q_push(net_conn_t *c, tt_buf_t *buf, size_t off) {
  if (c->q_count == c->q_cap) {
    size_t ncap = c->q_cap * 2;
    net_seg_t *nq = tt_malloc(ncap * sizeof(*nq));
    for (size_t i = 0; i < c->q_count; i++) nq[i] = c->q[(c->q_head + i) % c->q_cap];
    if (c->q != c->q_small) free(c->q);
    c->q = nq;
    c->q_cap = ncap;
    c->q_head = 0;
  }
  c->q[(c->q_head + c->q_count) % c->q_cap] = (net_seg_t){buf, off};
  c->q_count++;
  c->q_bytes += buf->len - off;
}

static void net__schedule(net_conn_t *c) {
  if (tt_list_empty(&c->pending_link)) tt_list_insert_tail(&c->worker->pending, &c->pending_link);
}

int net_conn_send(net_conn_t *c, tt_buf_t *buf, size_t off) {
  if (c->closing || c->overflowed || c->close_after_flush) return -EPIPE;
  if (c->q_count == 0) c->progress_ms = uv_now(&c->worker->pub.loop);
  /* The limit is on the backlog a frame joins: a frame larger than the
   * limit (a long render's JSON) still goes to a client that keeps up. */
  if (c->q_bytes > 0 && c->q_bytes + (buf->len - off) > (size_t)c->worker->pub.server->opts.max_queue) {
    c->overflowed = true; /* dealt with at the flush point, not here */
    net__schedule(c);
    return -ENOBUFS;
  }
  net__q_push(c, tt_buf_ref(buf), off);
  net__schedule(c);
  return 0;
}

int net_conn_send_copy(net_conn_t *c, const void *data, size_t len) {
  tt_buf_t *b = tt_buf_from(data, len);
  int rc = net_conn_send(c, b, 0);
  tt_buf_unref(b);
  return rc;
}

void net_conn_send_final(net_conn_t *c, tt_buf_t *buf) {
  if (c->closing || c->close_after_flush) return;
  if (c->q_count == 0) c->progress_ms = uv_now(&c->worker->pub.loop);
  net__q_push(c, tt_buf_ref(buf), 0);
  c->close_after_flush = true;
  net__schedule(c);
}

/* Drops every queued segment that is not in flight. */
static void net__q_drop_unsent(net_conn_t *c) {
  while (c->q_count > c->w_segs) {
    size_t last = (c->q_head + c->q_count - 1) % c->q_cap;
    c->q_bytes -= c->q[last].buf->len - c->q[last].off;
    tt_buf_unref(c->q[last].buf);
    c->q_count--;
  }
}

/* Releases the first `n` segments, all fully written. */
static void net__q_pop(net_conn_t *c, size_t n) {
  for (size_t i = 0; i < n; i++) {
    net_seg_t *s = &c->q[c->q_head];
    c->q_bytes -= s->buf->len - s->off;
    tt_buf_unref(s->buf);
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_count--;
  }
}

/* Accounts for `written` bytes from the queue head; returns true if the
 * whole batch of `nsegs` segments went out. */
static bool net__q_advance(net_conn_t *c, size_t written) {
  while (written > 0) {
    net_seg_t *s = &c->q[c->q_head];
    size_t left = s->buf->len - s->off;
    if (written < left) {
      s->off += written;
      c->q_bytes -= written;
      return false;
    }
    written -= left;
    net__q_pop(c, 1);
  }
  return true;
}

/* ================================================================ write path */

static void net__after_shutdown(uv_shutdown_t *req, int status) {
  net_conn_t *c = tt_container_of(req, net_conn_t, shutdown_req);
  if (status < 0 || c->closing) {
    net_conn_close(c);
    return;
  }
  /* FIN is out; keep reading (and discarding) until the peer closes, so that
   * unread request bytes do not turn our answer into a reset. */
  c->shut = true;
  c->linger_until_ms = uv_now(&c->worker->pub.loop) + NET_LINGER_MS;
}

static void net__finish(net_conn_t *c) {
  if (c->closing || c->shut || c->shutdown_req.handle != NULL) return;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, net__after_shutdown) != 0) net_conn_close(c);
}

static void net__after_write(uv_write_t *req, int status) {
  net_conn_t *c = tt_container_of(req, net_conn_t, wreq);
  size_t n = c->w_segs;
  c->w_segs = 0;
  if (status < 0) {
    if (!c->closing) net_conn_close(c);
    return;
  }
  net__q_pop(c, n);
  c->progress_ms = uv_now(&c->worker->pub.loop);
  if (c->closing) return;
  if (c->q_count > 0 || c->overflowed) net__schedule(c);
  else if (c->close_after_flush) net__finish(c);
}

static void net__overflow(net_conn_t *c) {
  c->overflowed = false;
  net__q_drop_unsent(c);
  tt_log(TT_LOG_WARN, "conn.slow_consumer", "output queue over max_queue: dropping the client",
         "\"conn\":%llu,\"max_queue\":%lld", (unsigned long long)c->id,
         (long long)c->worker->pub.server->opts.max_queue);
  tt_buf_t *final = c->stream && c->stream->overflow_frame ? c->stream->overflow_frame(c) : NULL;
  c->linger_until_ms = uv_now(&c->worker->pub.loop) + NET_LINGER_MS;
  if (final != NULL) {
    net__q_push(c, final, 0);
  }
  c->close_after_flush = true;
}

/* uv_try_write with the socket calls: send, or sendmsg over several buffers (uv_buf_t
 * is laid out as struct iovec), skip the VFS write path that write and writev take,
 * ~10 % of the kernel's time per delivery at low publish rates. Only while libuv has no
 * write of its own queued (w_segs == 0). Returns bytes written, UV_EAGAIN, or a
 * negative error. */
static int net__try_send(net_conn_t *c, uv_buf_t *bufs, size_t n) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return UV_EBADF;
  ssize_t w;
  do {
    if (n == 1) {
      w = send(fd, bufs[0].base, bufs[0].len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else {
      struct msghdr m = {.msg_iov = (struct iovec *)bufs, .msg_iovlen = n};
      w = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
  } while (w < 0 && errno == EINTR);
  if (w >= 0) return (int)w;
  return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : uv_translate_sys_error(errno);
}

static void net__flush(net_conn_t *c) {
  if (c->closing) return;
  if (c->overflowed) net__overflow(c);
  if (c->w_segs > 0) return; /* the write callback comes back here */
  while (c->q_count > 0) {
    uv_buf_t bufs[NET_IOV_BATCH];
    size_t n = TT_MIN(c->q_count, (size_t)NET_IOV_BATCH);
    for (size_t i = 0; i < n; i++) {
      net_seg_t *s = &c->q[(c->q_head + i) % c->q_cap];
      bufs[i] = uv_buf_init(s->buf->data + s->off, (unsigned)(s->buf->len - s->off));
    }
    int w = net__try_send(c, bufs, n);
    if (w == UV_EAGAIN) w = 0;
    if (w < 0) {
      net_conn_close(c);
      return;
    }
    if (w > 0) c->progress_ms = uv_now(&c->worker->pub.loop);
    bool all = net__q_advance(c, (size_t)w);
    if (all && c->q_count > 0 && n == NET_IOV_BATCH) continue; /* more batches */
    if (c->q_count == 0) break;
    /* The kernel is full: hand the rest to libuv, which writes when it can. */
    n = TT_MIN(c->q_count, (size_t)NET_IOV_BATCH);
    for (size_t i = 0; i < n; i++) {
      net_seg_t *s = &c->q[(c->q_head + i) % c->q_cap];
      bufs[i] = uv_buf_init(s->buf->data + s->off, (unsigned)(s->buf->len - s->off));
    }
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, (unsigned)n, net__after_write) != 0) {
      net_conn_close(c);
      return;
    }
    c->w_segs = n;
    return;
  }
  if (c->close_after_flush) net__finish(c);
}

static void net__flush_pending(net_worker_impl_t *w) {
  /* net__flush may close connections; each is unlinked before it is used. */
  while (!tt_list_empty(&w->pending)) {
    tt_list_t *n = w->pending.next;
    tt_list_remove(n);
    net__flush(tt_container_of(n, net_conn_t, pending_link));
  }
}

static void net__on_check(uv_check_t *h) { net__flush_pending(tt_container_of(h, net_worker_impl_t, flusher)); }

/* Timers run before the poll: what they queued goes out before it blocks. */
static void net__on_prepare(uv_prepare_t *h) {
  net__flush_pending(tt_container_of(h, net_worker_impl_t, preflush));
}

/* ================================================================ responses */

const char *net_status_text(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

static bool net__fatal_status(int status) { return status == 408 || status == 413 || status == 431 || status == 505; }

static void net__resume(net_conn_t *c);

static void net__cors_headers(net_conn_t *c, tt_str_t *out) {
  if (c->cors_origin == NULL) return;
  tt_str_appendf(out, "Access-Control-Allow-Origin: %s\r\n", c->cors_origin);
  if (strcmp(c->cors_origin, "*") != 0) tt_str_appends(out, "Vary: Origin\r\n");
}

static void net__respond(net_conn_t *c, int status, const char *content_type, const char *body, size_t len,
                         const char *extra, bool close_after) {
  if (c->closing) return;
  if (status >= 400) obs_inc(OBS_HTTP_ERRORS);
  tt_str_t out = {0};
  /* an answer given while draining (a deferred one) closes its connection:
   * idle connections were closed when the drain began */
  if (close_after || net__fatal_status(status) || atomic_load(&c->worker->pub.server->draining))
    c->keep_alive = false;
  tt_str_reserve(&out, 256 + len);
  tt_str_appendf(&out, "HTTP/1.1 %d %s\r\nServer: tutti/" TUTTI_VERSION "\r\n", status, net_status_text(status));
  if (status != 204 && status != 304) tt_str_appendf(&out, "Content-Length: %zu\r\n", len);
  if (content_type != NULL) tt_str_appendf(&out, "Content-Type: %s\r\n", content_type);
  net__cors_headers(c, &out);
  if (extra != NULL) tt_str_appends(&out, extra);
  tt_str_appends(&out, c->keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
  if (!c->head_only && body != NULL) tt_str_append(&out, body, len);
  tt_buf_t *b = tt_buf_from(out.data, out.len);
  tt_str_free(&out);
  if (c->keep_alive) {
    net_conn_send(c, b, 0);
  } else {
    net_conn_send_final(c, b);
  }
  tt_buf_unref(b);
  if (c->deferred) {
    c->deferred = false;
    if (!c->in_handler) net__resume(c);
  }
}

void net_respond(net_conn_t *c, int status, const char *content_type, const char *body, size_t len,
                 const char *extra_headers) {
  net__respond(c, status, content_type, body, len, extra_headers, false);
}

static void net__error(net_conn_t *c, int status, const char *code, const char *message, bool close_after) {
  tt_str_t b = {0};
  tt_str_appends(&b, "{\"error\":{\"code\":\"");
  tt_str_appends(&b, code);
  tt_str_appends(&b, "\",\"message\":\"");
  tt_str_append_json(&b, message, strlen(message));
  tt_str_appends(&b, "\"}}");
  net__respond(c, status, "application/json", b.data, b.len, NULL, close_after);
  tt_str_free(&b);
}

void net_respond_error(net_conn_t *c, int status, const char *code, const char *message) {
  net__error(c, status, code, message, false);
}

void net_request_defer(net_request_t *req) { req->conn->deferred = true; }

const char *net_request_stream(net_request_t *req, const net_stream_vt_t *vt, void *data) {
  net_conn_t *c = req->conn;
  c->mode = NET_CONN_STREAM;
  c->stream = vt;
  c->stream_data = data;
  if (c->cors_origin == NULL) return "";
  if (strcmp(c->cors_origin, "*") == 0) return "Access-Control-Allow-Origin: *\r\n";
  static _Thread_local char buf[512];
  snprintf(buf, sizeof(buf), "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", c->cors_origin);
  return buf;
}

/* ================================================================ request reader */

static const char *net__cors_match(net_server_t *s, const char *origin, size_t len) {
  if (origin == NULL) return NULL;
  if (s->cors_any) return "*";
  for (char **o = s->cors; o != NULL && *o != NULL; o++)
    if (strlen(*o) == len && memcmp(*o, origin, len) == 0) return *o;
  return NULL;
}

static bool net__token_in(const char *v, size_t vlen, const char *token) {
  size_t tl = strlen(token);
  const char *p = v, *end = v + vlen;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) p++;
    const char *s = p;
    while (p < end && *p != ',') p++;
    const char *e = p;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0) return true;
  }
  return false;
}

bool net_request_origin_allowed(const net_request_t *req) {
  size_t ol, hl;
  const char *origin = http_head_get(&req->head, "Origin", &ol);
  if (origin == NULL) return true;
  net_server_t *s = req->conn->worker->pub.server;
  if (s->cors != NULL) return req->conn->cors_origin != NULL;
  const char *host = http_head_get(&req->head, "Host", &hl);
  const char *sep = memchr(origin, ':', ol);
  if (host == NULL || sep == NULL || ol < (size_t)(sep - origin) + 3 || memcmp(sep, "://", 3) != 0) return false;
  const char *oh = sep + 3;
  size_t ohl = ol - (size_t)(oh - origin);
  return ohl == hl && strncasecmp(oh, host, hl) == 0;
}

/* Handles a CORS preflight; returns true if it was one. */
static bool net__preflight(net_conn_t *c, net_request_t *req) {
  if (req->head.method_len != 7 || memcmp(req->head.method, "OPTIONS", 7) != 0) return false;
  if (http_head_get(&req->head, "Access-Control-Request-Method", NULL) == NULL) return false;
  if (c->cors_origin == NULL) {
    net__error(c, 403, "FORBIDDEN_ORIGIN", "this origin is not in the server's CORS list", false);
    return true;
  }
  net__respond(c, 204, NULL, NULL, 0,
               "Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS\r\n"
               "Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID\r\n"
               "Access-Control-Max-Age: 600\r\n",
               false);
  return true;
}

/*
 * Tries to complete and dispatch one request from data[0..len). Returns the
 * bytes consumed (0: need more), or -1 if the connection must stop reading
 * (error answered, stream takeover, deferred, closed).
 */
static ssize_t net__one_request(net_conn_t *c, const char *data, size_t len) {
  net_server_t *s = c->worker->pub.server;
  net_request_t req = {.conn = c};
  if (c->req_start_ms == 0) c->req_start_ms = uv_now(&c->worker->pub.loop);

  int hl = http_parse_head(data, len, &req.head);
  if (hl == HTTP_PARSE_INCOMPLETE) {
    if (len > HTTP_MAX_HEAD) {
      net__error(c, 431, "HEADERS_TOO_LARGE", "request line and headers must fit in 16384 bytes", true);
      return -1;
    }
    return 0;
  }
  if (hl > HTTP_MAX_HEAD) {
    net__error(c, 431, "HEADERS_TOO_LARGE", "request line and headers must fit in 16384 bytes", true);
    return -1;
  }
  if (hl == HTTP_PARSE_TOO_MANY_HEADERS) {
    net__error(c, 431, "HEADERS_TOO_LARGE", "at most 64 header fields", true);
    return -1;
  }
  if (hl == HTTP_PARSE_VERSION) {
    net__error(c, 505, "VERSION_NOT_SUPPORTED", "only HTTP/1.0 and HTTP/1.1 are served", true);
    return -1;
  }
  if (hl < 0) {
    net__error(c, 400, "BAD_REQUEST", "malformed request line or header", true);
    return -1;
  }

  /* The head is complete: work out the body once. */
  if (c->head_len == 0) {
    c->head_len = (size_t)hl;
    c->content_length = -1;
    c->chunked = false;
    size_t vl, nte = 0;
    for (size_t i = 0; i < req.head.num_headers; i++)
      if (req.head.headers[i].name_len == 17 && strncasecmp(req.head.headers[i].name, "Transfer-Encoding", 17) == 0)
        nte++;
    const char *te = http_head_get(&req.head, "Transfer-Encoding", &vl);
    const char *cl = http_head_get(&req.head, "Content-Length", NULL);
    if (te != NULL) {
      if (cl != NULL || nte > 1 || req.head.minor_version == 0) {
        net__error(c, 400, "BAD_REQUEST",
                   "Transfer-Encoding must be one header, not with Content-Length, and not in HTTP/1.0", true);
        return -1;
      }
      if (vl != 7 || strncasecmp(te, "chunked", 7) != 0) {
        net__error(c, 501, "NOT_IMPLEMENTED", "only the chunked transfer coding is accepted", true);
        return -1;
      }
      c->chunked = true;
      memset(&c->chunk, 0, sizeof(c->chunk));
      c->chunk_scanned = 0;
      c->chunk_body.len = 0;
    } else if (cl != NULL) {
      /* Exactly one, all digits (duplicates must agree; we accept one). */
      size_t ncl = 0;
      for (size_t i = 0; i < req.head.num_headers; i++)
        if (req.head.headers[i].name_len == 14 && strncasecmp(req.head.headers[i].name, "Content-Length", 14) == 0)
          ncl++;
      const char *p = http_head_get(&req.head, "Content-Length", &vl);
      int64_t n = 0;
      bool ok = ncl == 1 && vl > 0 && vl <= 15;
      for (size_t i = 0; ok && i < vl; i++) {
        if (p[i] < '0' || p[i] > '9') ok = false;
        else n = n * 10 + (p[i] - '0');
      }
      if (!ok) {
        net__error(c, 400, "BAD_REQUEST", "invalid Content-Length", true);
        return -1;
      }
      if (n > s->opts.max_body) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request body over the limit of %lld bytes", (long long)s->opts.max_body);
        net__error(c, 413, "BODY_TOO_LARGE", msg, true);
        return -1;
      }
      c->content_length = n;
    }
  }

  size_t total;
  if (c->chunked) {
    bool done = false;
    ssize_t used = http_chunked_decode(&c->chunk, data + c->head_len + c->chunk_scanned,
                                       len - c->head_len - c->chunk_scanned, &c->chunk_body, &done);
    if (used < 0) {
      net__error(c, 400, "BAD_REQUEST", "malformed chunked body", true);
      return -1;
    }
    c->chunk_scanned += (size_t)used;
    /* Chunk framing may at most double the body's size on the wire. */
    if ((int64_t)c->chunk_body.len > s->opts.max_body ||
        (int64_t)c->chunk_scanned > 2 * s->opts.max_body + 65536) {
      char msg[96];
      snprintf(msg, sizeof(msg), "request body over the limit of %lld bytes", (long long)s->opts.max_body);
      net__error(c, 413, "BODY_TOO_LARGE", msg, true);
      return -1;
    }
    if (!done) return 0;
    total = c->head_len + c->chunk_scanned;
    req.body = c->chunk_body.data ? c->chunk_body.data : "";
    req.body_len = c->chunk_body.len;
  } else {
    size_t blen = c->content_length > 0 ? (size_t)c->content_length : 0;
    if (len - c->head_len < blen) return 0;
    total = c->head_len + blen;
    req.body = data + c->head_len;
    req.body_len = blen;
  }

  /* Dispatch. */
  c->head_len = 0;
  c->req_start_ms = 0;
  c->idle_since_ms = uv_now(&c->worker->pub.loop);
  const char *q = memchr(req.head.target, '?', req.head.target_len);
  req.path = req.head.target;
  req.path_len = q ? (size_t)(q - req.head.target) : req.head.target_len;
  if (q != NULL) {
    req.query = q + 1;
    req.query_len = req.head.target_len - req.path_len - 1;
  }
  size_t vl = 0;
  const char *conn_hdr = http_head_get(&req.head, "Connection", &vl);
  if (req.head.minor_version == 0) c->keep_alive = conn_hdr && net__token_in(conn_hdr, vl, "keep-alive");
  else c->keep_alive = !(conn_hdr && net__token_in(conn_hdr, vl, "close"));
  if (atomic_load(&s->draining)) c->keep_alive = false;
  c->head_only = req.head.method_len == 4 && memcmp(req.head.method, "HEAD", 4) == 0;
  const char *origin = http_head_get(&req.head, "Origin", &vl);
  c->cors_origin = net__cors_match(s, origin, vl);

  if (!net__preflight(c, &req)) {
    c->in_handler = true;
    s->opts.on_request(&req);
    c->in_handler = false;
  }
  if (c->closing || c->close_after_flush || c->mode == NET_CONN_STREAM || c->deferred) return -(ssize_t)total - 1;
  return (ssize_t)total;
}

/* Runs the request reader over data[0..len) and keeps what it did not
 * consume in c->in. `data` may be c->in itself. */
static void net__process(net_conn_t *c, const char *data, size_t len) {
  size_t off = 0;
  while (off < len && !c->closing) {
    ssize_t r = net__one_request(c, data + off, len - off);
    if (r == 0) break;
    if (r < 0) {
      /* Stopped after consuming -(r+1) bytes (or on an error: -1 -> 0). */
      off += (size_t)(-(r + 1));
      break;
    }
    off += (size_t)r;
  }
  if (c->closing) return;
  size_t rest = len - off;
  if (c->mode == NET_CONN_STREAM) {
    if (rest > 0 && c->stream->on_data) c->stream->on_data(c, data + off, rest);
    rest = 0;
  }
  if (c->close_after_flush) rest = 0; /* nothing more will be read from it */
  if (rest > 0 && c->in_len == 0 && data != c->in) {
    if (c->in_cap < rest) {
      c->in_cap = TT_MAX(rest, (size_t)4096);
      c->in = tt_realloc(c->in, c->in_cap);
    }
    memcpy(c->in, data + off, rest);
  } else if (data == c->in && off > 0 && rest > 0) {
    memmove(c->in, c->in + off, rest);
  }
  c->in_len = rest;
  if (c->chunked && c->head_len == 0) c->chunked = false;
  if (c->deferred && !c->closing) uv_read_stop((uv_stream_t *)&c->tcp);
}

static void net__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void net__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void net__resume(net_conn_t *c) {
  if (c->closing) return;
  if (c->in_len > 0 && c->mode == NET_CONN_HTTP) net__process(c, c->in, c->in_len);
  if (!c->closing && !c->deferred) uv_read_start((uv_stream_t *)&c->tcp, net__on_alloc, net__on_read);
}

static void net__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  net_conn_t *c = tt_container_of((uv_tcp_t *)h, net_conn_t, tcp);
  if (c->in_len == 0) {
    *buf = uv_buf_init(c->worker->slab, sizeof(c->worker->slab));
    return;
  }
  if (c->in_cap - c->in_len < 4096) {
    c->in_cap = c->in_cap * 2;
    c->in = tt_realloc(c->in, c->in_cap);
  }
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void net__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  net_conn_t *c = tt_container_of((uv_tcp_t *)stream, net_conn_t, tcp);
  if (nread < 0) {
    net_conn_close(c);
    return;
  }
  if (nread == 0 || c->closing) return;
  if (c->shut || c->close_after_flush) return; /* discarding */
  if (c->mode == NET_CONN_STREAM) {
    if (c->stream->on_data) c->stream->on_data(c, buf->base, (size_t)nread);
    return;
  }
  if (buf->base == c->worker->slab) {
    net__process(c, buf->base, (size_t)nread);
  } else {
    c->in_len += (size_t)nread;
    net__process(c, c->in, c->in_len);
  }
}

/* ================================================================ accepting */

static void net__on_connection(uv_stream_t *listener, int status) {
  net_worker_impl_t *w = tt_container_of((uv_tcp_t *)listener, net_worker_impl_t, listener);
  net_server_t *s = w->pub.server;
  if (status < 0) {
    tt_log(TT_LOG_WARN, "net.accept_failed", uv_strerror(status), NULL);
    return;
  }
  net_conn_t *c = tt_calloc(1, sizeof(*c));
  uv_tcp_init(&w->pub.loop, &c->tcp);
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  if (atomic_fetch_add(&s->conn_total, 1) >= s->opts.max_connections || w->draining) {
    atomic_fetch_sub(&s->conn_total, 1);
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->worker = w;
  c->id = atomic_fetch_add(&s->next_conn_id, 1);
  c->opened_ms = uv_now(&w->pub.loop);
  c->q = c->q_small;
  c->q_cap = TT_ARRAY_SIZE(c->q_small);
  c->content_length = -1;
  c->idle_since_ms = c->opened_ms;
  tt_list_init(&c->pending_link);
  tt_list_insert_tail(&w->conns, &c->link);
  w->conn_count++;
  uv_read_start((uv_stream_t *)&c->tcp, net__on_alloc, net__on_read);
}

/* ================================================================ timeouts */

static void net__on_sweep(uv_timer_t *t) {
  net_worker_impl_t *w = tt_container_of(t, net_worker_impl_t, sweeper);
  net_server_t *s = w->pub.server;
  uint64_t now = uv_now(&w->pub.loop);
  uint64_t header_ms = (uint64_t)(s->opts.header_timeout * 1000);
  uint64_t stale_ms = (uint64_t)(s->opts.stale_timeout * 1000);
  tt_list_t *n, *next;
  for (n = w->conns.next; n != &w->conns; n = next) {
    next = n->next; /* closing unlinks n */
    net_conn_t *c = tt_container_of(n, net_conn_t, link);
    if ((c->shut || c->close_after_flush) && c->linger_until_ms && now >= c->linger_until_ms) {
      net_conn_close(c);
    } else if (c->mode == NET_CONN_HTTP && !c->deferred && !c->close_after_flush && c->req_start_ms == 0 &&
               c->in_len == 0 && c->q_count == 0 && c->idle_since_ms + header_ms <= now) {
      net_conn_close(c); /* silent, or idle between keep-alive requests */
    } else if (c->mode == NET_CONN_HTTP && !c->deferred && !c->close_after_flush &&
               c->req_start_ms != 0 && c->req_start_ms + header_ms <= now) {
      tt_log(TT_LOG_INFO, "http.timeout", "request not complete in time", "\"conn\":%llu",
             (unsigned long long)c->id);
      c->linger_until_ms = now + NET_LINGER_MS;
      net__error(c, 408, "REQUEST_TIMEOUT", "request not complete within header_timeout", true);
    } else if (c->q_count > 0 && c->progress_ms + stale_ms <= now) {
      tt_log(TT_LOG_INFO, "conn.stale", "no write progress within stale_timeout", "\"conn\":%llu",
             (unsigned long long)c->id);
      net_conn_close(c);
    }
  }
}

/* ================================================================ shutdown */

static void net__close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void net__drain_check(net_worker_impl_t *w) {
  if (w->conn_count == 0) uv_stop(&w->pub.loop);
}

static void net__on_drain_timeout(uv_timer_t *t) {
  net_worker_impl_t *w = tt_container_of(t, net_worker_impl_t, drain_timer);
  uv_stop(&w->pub.loop);
}

static void net__on_wakeup(uv_async_t *a) {
  net_worker_impl_t *w = tt_container_of(a, net_worker_impl_t, wakeup);
  if (w->draining) return;
  w->draining = true;
  uv_close((uv_handle_t *)&w->listener, NULL);
  tt_list_t *n, *next;
  for (n = w->conns.next; n != &w->conns; n = next) {
    next = n->next;
    net_conn_t *c = tt_container_of(n, net_conn_t, link);
    if (c->mode == NET_CONN_STREAM) {
      if (c->stream->on_shutdown) c->stream->on_shutdown(c);
      else net_conn_close(c);
    } else if (c->req_start_ms == 0 && c->in_len == 0 && !c->deferred && c->q_count == 0) {
      net_conn_close(c); /* idle keep-alive */
    }
  }
  uv_timer_start(&w->drain_timer, net__on_drain_timeout, (uint64_t)(w->pub.server->opts.drain_timeout * 1000), 0);
  net__drain_check(w);
}

static void net__worker_main(void *arg) {
  net_worker_impl_t *w = arg;
  uv_run(&w->pub.loop, UV_RUN_DEFAULT);
  /* Drained or out of time: close what is left, then every handle. No more
   * drain checks: they would stop the loop before the close callbacks ran. */
  w->draining = false;
  while (!tt_list_empty(&w->conns)) net_conn_close(tt_container_of(w->conns.next, net_conn_t, link));
  uv_walk(&w->pub.loop, net__close_handle, NULL);
  while (uv_run(&w->pub.loop, UV_RUN_DEFAULT) != 0) {
  }
}

void net_server_shutdown(net_server_t *s) {
  atomic_store(&s->draining, true);
  for (int i = 0; i < s->nworkers; i++) uv_async_send(&s->workers[i]->wakeup);
}

bool net_server_draining(const net_server_t *s) { return atomic_load(&s->draining); }

void net_server_wait(net_server_t *s) {
  for (int i = 0; i < s->nworkers; i++) uv_thread_join(&s->workers[i]->thread);
}

/* ================================================================ setup */

/* With SO_REUSEPORT a second server on the same port would silently share
 * it; a plain bind first tells whether the port is free. */
static int net__listen_socket(const char *host, int port, bool reuseport, int *out_fd) {
  struct sockaddr_storage ss;
  socklen_t slen;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  memset(&ss, 0, sizeof(ss));
  if (uv_ip4_addr(host, port, a4) == 0) {
    slen = sizeof(*a4);
  } else if (uv_ip6_addr(host, port, a6) == 0) {
    slen = sizeof(*a6);
  } else {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
      bind(fd, (struct sockaddr *)&ss, slen) != 0 || (reuseport && listen(fd, 4096) != 0)) {
    int err = -errno;
    close(fd);
    return err;
  }
  *out_fd = fd;
  return 0;
}

int net_server_new(const net_options_t *opts, net_server_t **out) {
  int rc;
  net_server_t *s = tt_calloc(1, sizeof(*s));
  s->opts = *opts;
  s->nworkers = opts->workers;
  atomic_init(&s->next_conn_id, 1);
  atomic_init(&s->conn_total, 0);
  atomic_init(&s->draining, false);
  if (opts->cors_origins != NULL && opts->cors_origins[0] != '\0') {
    size_t n = 1;
    for (const char *p = opts->cors_origins; *p; p++) n += *p == ',';
    s->cors = tt_calloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (const char *p = opts->cors_origins; *p;) {
      while (*p == ' ' || *p == ',') p++;
      const char *e = p;
      while (*e && *e != ',') e++;
      const char *t = e;
      while (t > p && t[-1] == ' ') t--;
      if (t > p) {
        if (t - p == 1 && *p == '*') s->cors_any = true;
        s->cors[k++] = tt_strndup(p, (size_t)(t - p));
      }
      p = e;
    }
  }

  s->workers = tt_calloc((size_t)s->nworkers, sizeof(*s->workers));
  int port = opts->port;
  if (port != 0) {
    int probe;
    if ((rc = net__listen_socket(opts->host, port, false, &probe)) != 0) goto fail;
    close(probe);
  }
  for (int i = 0; i < s->nworkers; i++) {
    net_worker_impl_t *w = tt_calloc(1, sizeof(*w));
    s->workers[i] = w;
    w->pub.id = i;
    w->pub.server = s;
    tt_list_init(&w->conns);
    tt_list_init(&w->pending);
    if ((rc = uv_loop_init(&w->pub.loop)) != 0) goto fail;
    int fd = -1;
    if ((rc = net__listen_socket(opts->host, port, true, &fd)) != 0) goto fail;
    if (port == 0) {
      struct sockaddr_storage ss;
      socklen_t sl = sizeof(ss);
      getsockname(fd, (struct sockaddr *)&ss, &sl);
      port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                           : ((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    uv_tcp_init(&w->pub.loop, &w->listener);
    if ((rc = uv_tcp_open(&w->listener, fd)) != 0) {
      close(fd);
      goto fail;
    }
    if ((rc = uv_listen((uv_stream_t *)&w->listener, 4096, net__on_connection)) != 0) goto fail;
    uv_async_init(&w->pub.loop, &w->wakeup, net__on_wakeup);
    uv_check_init(&w->pub.loop, &w->flusher);
    uv_check_start(&w->flusher, net__on_check);
    uv_prepare_init(&w->pub.loop, &w->preflush);
    uv_prepare_start(&w->preflush, net__on_prepare);
    uv_timer_init(&w->pub.loop, &w->sweeper);
    uv_timer_init(&w->pub.loop, &w->drain_timer);
    double tick = TT_MIN(opts->header_timeout, opts->stale_timeout) / 4;
    uint64_t tick_ms = (uint64_t)(TT_MAX(0.05, TT_MIN(1.0, tick)) * 1000);
    uv_timer_start(&w->sweeper, net__on_sweep, tick_ms, tick_ms);
  }
  s->port = port;
  *out = s;
  return 0;

fail:
  net_server_free(s);
  return rc;
}

int net_server_start(net_server_t *s) {
  s->started = true;
  for (int i = 0; i < s->nworkers; i++) {
    int rc = uv_thread_create(&s->workers[i]->thread, net__worker_main, s->workers[i]);
    if (rc != 0) return rc;
  }
  return 0;
}

void net_server_free(net_server_t *s) {
  if (s == NULL) return;
  for (int i = 0; i < s->nworkers; i++) {
    net_worker_impl_t *w = s->workers[i];
    if (w == NULL) continue;
    if (!s->started) { /* threads never ran: close the handles here */
      uv_walk(&w->pub.loop, net__close_handle, NULL);
      uv_run(&w->pub.loop, UV_RUN_DEFAULT);
    }
    if (uv_loop_close(&w->pub.loop) != 0) tt_log(TT_LOG_ERROR, "net.loop_busy", "a worker loop still had handles", NULL);
    free(w);
  }
  free(s->workers);
  for (char **o = s->cors; o != NULL && *o != NULL; o++) free(*o);
  free(s->cors);
  free(s);
}

int net_server_port(const net_server_t *s) { return s->port; }
net_worker_t *net_server_worker(net_server_t *s, int id) { return &s->workers[id]->pub; }
uint64_t net_server_connections(const net_server_t *s) {
  int n = atomic_load(&s->conn_total);
  return n > 0 ? (uint64_t)n : 0;
}
