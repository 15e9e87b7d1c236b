/*
 * net: listeners, worker loops, connections with bounded output queues, the
 * HTTP/1.1 request parser, responses, CORS and static files.
 *
 * Threads: one libuv loop per worker; a connection lives and dies on the
 * worker that accepted it, and every net_conn_* call is made on that
 * worker's thread.
 */
#ifndef TUTTI_NET_H
#define TUTTI_NET_H

#include <sys/types.h>
#include <uv.h>

#include "../core/core.h"

/* ================================================================ HTTP parser */

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEAD 16384 /* request line + headers */

typedef struct http_header_s {
  const char *name;
  size_t name_len;
  const char *value;  /* without surrounding whitespace */
  size_t value_len;
} http_header_t;

/* A parsed request head; every pointer is a slice of the parsed buffer. */
typedef struct http_head_s {
  const char *method;
  size_t method_len;
  const char *target;
  size_t target_len;
  int minor_version;  /* HTTP/1.x */
  size_t num_headers;
  http_header_t headers[HTTP_MAX_HEADERS];
} http_head_t;

enum {
  HTTP_PARSE_INCOMPLETE = -1,       /* need more bytes */
  HTTP_PARSE_BAD = -2,              /* malformed */
  HTTP_PARSE_VERSION = -3,          /* not HTTP/1.0 or 1.1 */
  HTTP_PARSE_TOO_MANY_HEADERS = -4,
};

/*
 * Parses a request line and headers from buf[0..len). Returns the length of
 * the head including the blank line, or an HTTP_PARSE_* code. Stateless: call
 * again from the start when more bytes arrive. Does not look past the first
 * blank line, and accepts lines ending in "\r\n" (or a bare "\n").
 */
int http_parse_head(const char *buf, size_t len, http_head_t *head);

/* Case-insensitive lookup; returns the value or NULL. */
const char *http_head_get(const http_head_t *head, const char *name, size_t *value_len);

/* Incremental decoder of a chunked body. Zero-initialise before the first call. */
typedef struct http_chunked_s {
  int state;
  uint64_t remaining; /* bytes left in the current chunk */
  unsigned digits;
  size_t extra;       /* extension or trailer bytes seen (bounded) */
} http_chunked_t;

/*
 * Consumes bytes of a chunked body from in[0..len), appending the decoded
 * data to `out`. Returns bytes consumed (sets *done once the last chunk and
 * trailers are through; the rest of `in` then belongs to the next request),
 * or HTTP_PARSE_BAD. Strict (RFC 9112 7.1): whitespace after a size only
 * before ';', at most 256 bytes of extensions per size line and 16 KiB of
 * trailers, no control characters.
 */
ssize_t http_chunked_decode(http_chunked_t *st, const char *in, size_t len, tt_str_t *out, bool *done);

/* Percent-decodes src into dst (at least len bytes). Returns the decoded
 * length, or -1 on a bad escape or a decoded NUL. '+' is kept as is unless
 * `plus_is_space`. */
ssize_t http_url_decode(const char *src, size_t len, char *dst, bool plus_is_space);

/* Splits the next "key=value" pair off a query string (raw, not decoded).
 * Returns false when none is left. */
bool http_query_next(const char **q, size_t *qlen, const char **key, size_t *klen, const char **val, size_t *vlen);

/* ================================================================ server */

typedef struct net_server_s net_server_t;
typedef struct net_worker_s net_worker_t;
typedef struct net_conn_s net_conn_t;
typedef struct net_request_s net_request_t;

struct net_worker_s {
  uv_loop_t loop;
  int id;                 /* 0 .. workers-1 */
  net_server_t *server;
};

/*
 * A request handed to the server's handler. Its slices point into the
 * connection's input and are valid only until the handler returns; a
 * handler that answers later (net_request_defer) copies what it needs.
 */
struct net_request_s {
  net_conn_t *conn;
  http_head_t head;
  const char *path;    /* raw, not decoded; no query */
  size_t path_len;
  const char *query;   /* after '?', raw; NULL if none */
  size_t query_len;
  const char *body;
  size_t body_len;
};

typedef void (*net_request_cb)(net_request_t *req);

/* A connection taken over by a streaming transport (SSE, WebSocket). */
typedef struct net_stream_vt_s {
  /* Bytes that arrive after the takeover. */
  void (*on_data)(net_conn_t *c, const char *data, size_t len);
  /* The server is shutting down: say goodbye (net_conn_send_final). */
  void (*on_shutdown)(net_conn_t *c);
  /* The client fell past max_queue and is being dropped: stop feeding it
   * and return the final frame that tells it why (or NULL). Called at the
   * flush point, after queued frames not yet started were dropped. */
  tt_buf_t *(*overflow_frame)(net_conn_t *c);
  /* The connection is closing; release what refers to it. Called once. */
  void (*on_close)(net_conn_t *c);
} net_stream_vt_t;

typedef struct net_options_s {
  const char *host;
  int port;
  int workers;
  int max_connections;
  int64_t max_body;
  int64_t max_queue;
  double header_timeout;
  double stale_timeout;
  double drain_timeout;
  const char *cors_origins;
  const char *web_root;
  net_request_cb on_request;
} net_options_t;

/* Creates the workers' loops and binds the listeners (SO_REUSEPORT, one per
 * worker). Other modules may then init handles on each worker's loop before
 * net_server_start runs the threads. Returns 0 or a negative errno. */
int net_server_new(const net_options_t *opts, net_server_t **out);
int net_server_port(const net_server_t *s);
net_worker_t *net_server_worker(net_server_t *s, int id);
int net_server_start(net_server_t *s);
/* Thread-safe. Stops accepting, tells streams, drains for drain_timeout,
 * closes everything; net_server_wait returns once every worker has ended. */
void net_server_shutdown(net_server_t *s);
void net_server_wait(net_server_t *s);
void net_server_free(net_server_t *s);
bool net_server_draining(const net_server_t *s);

/* Open connections right now, all workers (approximate while they change). */
uint64_t net_server_connections(const net_server_t *s);

/* ================================================================ connections */

uint64_t net_conn_id(const net_conn_t *c);
net_worker_t *net_conn_worker(const net_conn_t *c);
/* Opaque pointer for the transport that took the connection over. */
void *net_conn_data(const net_conn_t *c);

/*
 * Queues buf[off..) for sending, taking a reference. Whatever is queued for a
 * connection in one loop turn goes out in one writev. Returns 0, or -ENOBUFS
 * when the queue is past max_queue: the connection is then closed at the end
 * of the turn (never inside this call), after its overflow frame.
 */
int net_conn_send(net_conn_t *c, tt_buf_t *buf, size_t off);
/* Queues a copy of data. */
int net_conn_send_copy(net_conn_t *c, const void *data, size_t len);
/* Queues buf regardless of the limit and closes once it is written. */
void net_conn_send_final(net_conn_t *c, tt_buf_t *buf);
/* Closes now; queued output is dropped. Safe to call more than once. */
void net_conn_close(net_conn_t *c);
/* Keeps the connection's memory valid across an asynchronous step (it may
 * still close meanwhile: check net_conn_is_closing before using it). */
void net_conn_ref(net_conn_t *c);
void net_conn_unref(net_conn_t *c);
bool net_conn_is_closing(const net_conn_t *c);

/* ================================================================ responses */

/*
 * Answers the request being handled on `c`. `extra_headers` is a block of
 * complete "Name: value\r\n" lines or NULL. Keep-alive, HEAD and CORS are
 * handled here. Statuses 400 (malformed), 408, 413 and 431 close the
 * connection afterwards, as does a client that asked for it.
 */
void net_respond(net_conn_t *c, int status, const char *content_type, const char *body, size_t len,
                 const char *extra_headers);
/* {"error":{"code":code,"message":message}} */
void net_respond_error(net_conn_t *c, int status, const char *code, const char *message);
/* The handler will answer later with net_respond*: input processing on this
 * connection pauses until it does. */
void net_request_defer(net_request_t *req);
/* Takes the connection over for a stream; the request is done. The stream's
 * own response head is sent by the caller with net_conn_send*. Returns the
 * CORS headers the response should carry ("" if none). */
const char *net_request_stream(net_request_t *req, const net_stream_vt_t *vt, void *data);

/* Whether the request's Origin may use this server: no Origin (not a
 * browser), one in the CORS list (or the list is "*"), or, with no list,
 * one whose host:port is the request's Host. */
bool net_request_origin_allowed(const net_request_t *req);

/* Serves a file under the web root for GET/HEAD `req` (defers; answers 404
 * when missing). */
void net_static_serve(net_request_t *req);

/* Name of an HTTP status ("Not Found"). */
const char *net_status_text(int status);

#endif
