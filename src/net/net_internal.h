/* net's private declarations, shared by its files. */
#ifndef TUTTI_NET_INTERNAL_H
#define TUTTI_NET_INTERNAL_H

#include "net.h"

/* One queued piece of output: a reference to an immutable buffer and the
 * offset of the first byte still to send. */
typedef struct net_seg_s {
  tt_buf_t *buf;
  size_t off;
} net_seg_t;

typedef enum {
  NET_CONN_HTTP,     /* reading requests */
  NET_CONN_STREAM,   /* taken over by a transport */
} net_conn_mode_t;

struct net_conn_s {
  uv_tcp_t tcp;
  struct net_worker_impl_s *worker;
  uint64_t id;
  tt_list_t link;          /* in the worker's connection list */
  tt_list_t pending_link;  /* in the worker's flush list while queued */
  uint64_t opened_ms;

  /* Input not yet consumed. Empty most of the time: reads go into the
   * worker's slab and only a partial request is copied here. */
  char *in;
  size_t in_len, in_cap;

  /* The request being read. */
  uint64_t req_start_ms;   /* first byte of the current request; 0: idle */
  uint64_t idle_since_ms;  /* accepted, or the last request dispatched */
  size_t head_len;         /* 0 until the head is complete */
  int64_t content_length;  /* -1: none */
  bool chunked;
  http_chunked_t chunk;
  size_t chunk_scanned;    /* body bytes of the input already decoded */
  tt_str_t chunk_body;

  /* The answer being prepared. */
  bool keep_alive;
  bool head_only;
  const char *cors_origin; /* allowed origin to echo, or NULL */
  bool deferred;           /* a handler will answer later */
  bool in_handler;

  /* Output queue: a ring of segments. */
  net_seg_t *q;
  size_t q_head, q_count, q_cap;
  size_t q_bytes;
  net_seg_t q_small[4];
  uv_write_t wreq;
  size_t w_segs;           /* segments in flight in wreq; 0: no write */
  uint64_t progress_ms;    /* last time output moved (or the queue was empty) */

  net_conn_mode_t mode;
  const net_stream_vt_t *stream;
  void *stream_data;

  unsigned refs;           /* holders besides the handle (net_conn_ref) */
  bool closed;             /* the handle's close callback has run */
  bool closing;
  bool close_after_flush;
  bool overflowed;
  bool shut;               /* FIN sent; waiting for the peer's */
  uint64_t linger_until_ms;
  uv_shutdown_t shutdown_req;
};

typedef struct net_worker_impl_s {
  net_worker_t pub;
  uv_thread_t thread;
  uv_tcp_t listener;
  uv_async_t wakeup;       /* shutdown request from another thread */
  uv_check_t flusher;      /* flushes output queued by I/O callbacks, after the poll */
  uv_prepare_t preflush;   /* flushes output queued by timers, before the poll blocks */
  uv_timer_t sweeper;      /* timeouts */
  uv_timer_t drain_timer;
  tt_list_t conns;
  tt_list_t pending;       /* connections with output to flush */
  size_t conn_count;
  bool draining;
  char slab[65536];        /* read buffer shared by the worker's connections */
} net_worker_impl_t;

struct net_server_s {
  net_options_t opts;
  char **cors;             /* allowed origins, NULL-terminated; NULL: none */
  bool cors_any;
  int port;
  int nworkers;
  net_worker_impl_t **workers;
  atomic_uint_fast64_t next_conn_id;
  atomic_int conn_total;
  atomic_bool draining;
  bool started;            /* worker threads have been created */
};

#endif
