/*
 * libFuzzer target for the WebSocket server as a whole: the upgrade, the
 * frame reader and its RFC 6455 rules, permessage-deflate (RFC 7692) and the
 * JSON client protocol (src/transport/ws.c over src/net, src/hub and the
 * memory engine).
 *
 * LLVMFuzzerInitialize starts the real thing in-process, as src/main.c does:
 * the memory engine, the hub, the WebSocket transport, the API routes and a
 * net server with one worker on 127.0.0.1 (an ephemeral port). Each input is
 * one client connection. Its first byte picks the handshake (see
 * fuzz_request); the rest is a sequence of records, each
 *
 *   [kind][len][len bytes]
 *
 * turned into the client's bytes by fuzz_record: frames with any header,
 * protocol messages made from a dictionary, raw bytes, close frames,
 * compressed and big messages, whole or in fragments. (One first byte in
 * four asks for an upgrade the server must refuse instead: fuzz_refused.)
 *
 * A model written here from RFC 6455, RFC 7692 and docs/PROTOCOL.md reads
 * those bytes as the server must: which close code the server sends (if
 * any) and after which byte, which pings it answers, which messages it
 * handles. The harness sends the bytes the server will read, adds a ping as
 * a barrier when the connection should still be open, reads everything back
 * and checks it against the model, and that every frame the server sends is
 * well formed: unmasked and whole, RSV1 only on compressed text, text that
 * (inflated with a fresh inflater: server_no_context_takeover) is a JSON
 * object with a "type"; the welcome first; one reply per message, in order,
 * of the type the request asks for or an error, carrying the request's id
 * as "ref"; a close code from the documented set or the client's own, and
 * nothing after it. Then it resets the connection and waits until the
 * server has released it, so every input starts from a server without
 * connections. Every invariant that fails aborts, so libFuzzer keeps the
 * input.
 */
#include <errno.h>
#include <sched.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "api/api.h"
#include "engine/engine.h"
#include "hub/hub.h"
#include "net/net.h"
#include "transport/transport.h"

static void fuzz_dump(void);

#define FUZZ_CHECK(cond)                                                                            \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                 \
      fuzz_dump();                                                                                  \
      abort();                                                                                      \
    }                                                                                               \
  } while (0)

/* The server's settings: small limits, so inputs reach them. */
#define FZ_MAX_MESSAGE 8192
#define FZ_MAX_PUBLISH 1024
#define FZ_THRESHOLD 64
#define FZ_MAX_CHANNELS 4
#define FZ_TIMEOUT_MS 5000 /* for an answer that must come */
#define FZ_QUIET_MS 30     /* silence that ends an exchange with no barrier */


static const char fz_key[] = "dGhlIHNhbXBsZSBub25jZQ==";       /* RFC 6455 1.3 */
static const char fz_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; /* its answer */

static uint64_t fuzz_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ================================================================ the server */

static struct {
  hub_t *hub;
  engine_t *engine;
  net_server_t *server;
  int port;
  uint64_t inputs;
} fz;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN);
  tt_log_level = TT_LOG_ERROR;
  uint64_t started = tt_now_ms();
  fz.hub = hub_new(&(hub_options_t){.workers = 1});
  engine_sink_t sink = hub_engine_sink(fz.hub);
  fz.engine = engine_memory_new(&(engine_options_t){.history_size = 8, .history_ttl_ms = 2000}, &sink);
  hub_set_engine(fz.hub, fz.engine);
  ws_init(fz.hub,
          &(ws_options_t){.max_message = FZ_MAX_MESSAGE,
                          .max_publish = FZ_MAX_PUBLISH,
                          .ping_interval = 600,
                          .ping_timeout = 600,
                          .deflate = true,
                          .deflate_threshold = FZ_THRESHOLD,
                          .rate = 1000,
                          .burst = 50,
                          .max_channels = FZ_MAX_CHANNELS,
                          .client_publish = "pub, jam:",
                          .started_ms = started},
          1);
  api_init(&(api_options_t){.hub = fz.hub, .workers = 1, .started_ms = started});
  net_options_t nopts = {
      .host = "127.0.0.1",
      .port = 0,
      .workers = 1,
      .max_connections = 64,
      .max_body = 65536,
      .max_queue = 64 << 20, /* never a slow consumer here */
      .header_timeout = 600,
      .stale_timeout = 600,
      .drain_timeout = 1,
      .on_request = api_handle,
  };
  if (net_server_new(&nopts, &fz.server) != 0) {
    fprintf(stderr, "fuzz_ws_protocol: cannot listen on 127.0.0.1\n");
    abort();
  }
  api_set_server(fz.server);
  uv_loop_t *loop = &net_server_worker(fz.server, 0)->loop;
  hub_worker_init(fz.hub, 0, loop);
  ws_worker_init(0, loop);
  if (net_server_start(fz.server) != 0) abort();
  fz.port = net_server_port(fz.server);
  return 0;
}

/* ================================================================ helpers */

typedef struct {
  const uint8_t *p;
  size_t n, i;
} fuzz_cursor_t;

static unsigned fuzz_byte(fuzz_cursor_t *c) { return c->i < c->n ? c->p[c->i++] : 0; }

/* RFC 3629 checked the plain way: VALID, INVALID, or OPEN (a sequence cut
 * short that could still complete). Written apart from ws_utf8_feed. */
enum { U_VALID, U_INVALID, U_OPEN };

static int fuzz_utf8(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp, min;
    if (c >= 0xc0 && c <= 0xdf) need = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) need = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf7) need = 3, cp = c & 0x07, min = 0x10000;
    else return U_INVALID;
    size_t j = 1;
    for (; j <= need && i + j < n; j++) {
      if ((p[i + j] & 0xc0) != 0x80) return U_INVALID;
      cp = cp << 6 | (p[i + j] & 0x3f);
    }
    if (j <= need) {
      size_t missing = need + 1 - j;
      uint32_t lo = cp << (6 * missing), hi = lo | ((1u << (6 * missing)) - 1);
      uint32_t a = lo < min ? min : lo, b = hi > 0x10ffff ? 0x10ffff : hi;
      return a <= b && !(a >= 0xd800 && b <= 0xdfff) ? U_OPEN : U_INVALID;
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return U_INVALID;
    i += need + 1;
  }
  return U_VALID;
}

/* A frame header (RFC 6455 5.2): its length, -1 incomplete, -2 a length not
 * minimally encoded or over 2^63. */
typedef struct {
  bool fin, masked;
  unsigned rsv, opcode;
  uint8_t mask[4];
  uint64_t len;
} fuzz_frame_t;

static int fuzz_header(const uint8_t *b, size_t n, fuzz_frame_t *f) {
  if (n < 2) return -1;
  size_t need = 2;
  unsigned l7 = b[1] & 0x7f;
  if (l7 == 126) need = 4;
  if (l7 == 127) need = 10;
  if (n < need) return -1;
  uint64_t len = l7;
  if (l7 >= 126) {
    len = 0;
    for (size_t i = 2; i < need; i++) len = len << 8 | b[i];
    if ((l7 == 126 && len < 126) || (l7 == 127 && (len <= 0xffff || len >> 63))) return -2;
  }
  f->fin = b[0] & 0x80;
  f->rsv = (b[0] >> 4) & 7;
  f->opcode = b[0] & 0x0f;
  f->masked = b[1] & 0x80;
  f->len = len;
  if (f->masked) {
    if (n < need + 4) return -1;
    memcpy(f->mask, b + need, 4);
    need += 4;
  }
  return (int)need;
}

static void fuzz_json_escape(tt_str_t *s, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c == '"' || c == '\\') {
      tt_str_appendf(s, "\\%c", c);
    } else if (c < 0x20 || c >= 0x7f) {
      tt_str_appendf(s, "\\u%04x", c);
    } else {
      tt_str_append(s, &c, 1);
    }
  }
}

/* Containers nested in a parsed value. */
static int fuzz_json_depth(json_t *j) {
  int d = 0;
  if (json_is_object(j)) {
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) d = TT_MAX(d, fuzz_json_depth(v));
    return d + 1;
  }
  if (json_is_array(j)) {
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v) d = TT_MAX(d, fuzz_json_depth(v));
    return d + 1;
  }
  return 0;
}

/* ================================================================ the model */

typedef struct {
  bool binary;
  tt_str_t text; /* what the server handles: inflated, whole */
} fuzz_msg_t;

/* What the server must do with the client's bytes. */
typedef struct {
  bool deflate, no_ctx; /* negotiated */
  /* reader state */
  unsigned msg_op;
  bool msg_compressed;
  tt_str_t msg;
  z_stream inf;
  bool inf_ready, inf_ended;
  tt_str_t window; /* the last 32 KiB inflated, for context takeover */
  /* outcome */
  unsigned close;  /* the close code the server must send; 0: none */
  size_t consumed; /* client bytes read before it stops; all if none */
  bool tail_open;  /* the bytes end inside a frame */
  fuzz_msg_t *msgs;
  size_t nmsgs, capmsgs;
  tt_str_t *pings;
  size_t npings, cappings;
} fuzz_model_t;

static void fuzz_model_free(fuzz_model_t *m) {
  tt_str_free(&m->msg);
  tt_str_free(&m->window);
  if (m->inf_ready) inflateEnd(&m->inf);
  for (size_t i = 0; i < m->nmsgs; i++) tt_str_free(&m->msgs[i].text);
  free(m->msgs);
  for (size_t i = 0; i < m->npings; i++) tt_str_free(&m->pings[i]);
  free(m->pings);
}

static void fuzz_model_message(fuzz_model_t *m, bool binary, const char *p, size_t n) {
  if (m->nmsgs == m->capmsgs) {
    m->capmsgs = m->capmsgs ? m->capmsgs * 2 : 16;
    m->msgs = tt_realloc(m->msgs, m->capmsgs * sizeof(*m->msgs));
  }
  fuzz_msg_t *x = &m->msgs[m->nmsgs++];
  x->binary = binary;
  x->text = (tt_str_t){0};
  tt_str_append(&x->text, p ? p : "", n);
}

static void fuzz_model_ping(fuzz_model_t *m, const uint8_t *p, size_t n) {
  if (m->npings == m->cappings) {
    m->cappings = m->cappings ? m->cappings * 2 : 8;
    m->pings = tt_realloc(m->pings, m->cappings * sizeof(*m->pings));
  }
  m->pings[m->npings] = (tt_str_t){0};
  tt_str_append(&m->pings[m->npings++], p, n);
}

/*
 * RFC 7692 7.2.2: append 00 00 ff ff and inflate; with context takeover the
 * sliding window carries over from the last message, also when that one
 * ended with a BFINAL block (7.2.3.4): a new DEFLATE stream then starts with
 * the old window. Returns 0, or the close code: 1009 past max_message, 1007
 * on data that does not inflate.
 */
static unsigned fuzz_model_inflate(fuzz_model_t *m, const uint8_t *p, size_t n, tt_str_t *out) {
  if (!m->inf_ready) {
    FUZZ_CHECK(inflateInit2(&m->inf, -15) == Z_OK);
    m->inf_ready = true;
  } else if (m->inf_ended || m->no_ctx) {
    inflateReset(&m->inf);
    if (!m->no_ctx && m->window.len > 0)
      inflateSetDictionary(&m->inf, (const Bytef *)m->window.data, (uInt)m->window.len);
  }
  m->inf_ended = false;
  tt_str_t in = {0};
  tt_str_append(&in, p, n);
  tt_str_append(&in, "\x00\x00\xff\xff", 4);
  m->inf.next_in = (Bytef *)in.data;
  m->inf.avail_in = (uInt)in.len;
  unsigned code = 0;
  while (m->inf.avail_in > 0) {
    tt_str_reserve(out, 8192);
    size_t room = TT_MIN(out->cap - out->len - 1, (size_t)FZ_MAX_MESSAGE + 1 - out->len);
    m->inf.next_out = (Bytef *)out->data + out->len;
    m->inf.avail_out = (uInt)room;
    int rc = inflate(&m->inf, Z_SYNC_FLUSH);
    out->len += room - m->inf.avail_out;
    if (out->len > FZ_MAX_MESSAGE) {
      code = 1009;
      break;
    }
    if (rc == Z_STREAM_END) {
      m->inf_ended = true; /* what follows in this message is not inflated */
      break;
    }
    if (rc == Z_BUF_ERROR) break; /* no progress: a stream cut short inflates to what it gave */
    if (rc != Z_OK) {
      code = 1007;
      break;
    }
  }
  tt_str_free(&in);
  if (code == 0 && !m->no_ctx) {
    tt_str_append(&m->window, out->data ? out->data : "", out->len);
    if (m->window.len > 32768) {
      memmove(m->window.data, m->window.data + m->window.len - 32768, 32768);
      m->window.len = 32768;
    }
  }
  return code;
}

/* One whole data frame's payload (unmasked); returns false once closed. */
static bool fuzz_model_data(fuzz_model_t *m, const fuzz_frame_t *f, const uint8_t *p, size_t n) {
  if (f->opcode == WS_OP_CONT) {
    if (m->msg_op == 0) return m->close = 1002, false;
  } else {
    if (m->msg_op != 0) return m->close = 1002, false;
    m->msg_op = f->opcode;
    m->msg_compressed = f->rsv & 4;
    m->msg.len = 0;
  }
  if (m->msg.len + n > FZ_MAX_MESSAGE) return m->close = 1009, false;
  tt_str_append(&m->msg, p, n);
  bool text = m->msg_op == WS_OP_TEXT;
  if (text && !m->msg_compressed && fuzz_utf8((uint8_t *)m->msg.data, m->msg.len) == U_INVALID)
    return m->close = 1007, false;
  if (!f->fin) return true;
  m->msg_op = 0;
  if (m->msg_compressed) {
    tt_str_t out = {0};
    unsigned code = fuzz_model_inflate(m, (uint8_t *)m->msg.data, m->msg.len, &out);
    if (code == 0 && text && fuzz_utf8((uint8_t *)out.data, out.len) != U_VALID) code = 1007;
    if (code == 0) fuzz_model_message(m, !text, out.data, out.len);
    tt_str_free(&out);
    if (code != 0) return m->close = code, false;
    return true;
  }
  if (text && fuzz_utf8((uint8_t *)m->msg.data, m->msg.len) != U_VALID) return m->close = 1007, false;
  fuzz_model_message(m, !text, m->msg.data, m->msg.len);
  return true;
}

/* Reads the client's bytes (after the handshake) as the server must. */
static void fuzz_model_run(fuzz_model_t *m, const uint8_t *s, size_t n) {
  size_t off = 0;
  m->consumed = n;
  while (off < n) {
    fuzz_frame_t f;
    int hl = fuzz_header(s + off, n - off, &f);
    if (hl == -1) {
      m->tail_open = true;
      return;
    }
    if (hl == -2) {
      m->close = 1002;
      m->consumed = off + ((s[off + 1] & 0x7f) == 126 ? 4 : 10); /* the length is all it takes */
      return;
    }
    bool control = f.opcode >= 8;
    /* the header alone decides these, before any payload arrives */
    unsigned code = 0;
    if (!f.masked) code = 1002;
    else if (f.rsv & 3) code = 1002;
    else if ((f.rsv & 4) && (!m->deflate || control || f.opcode == WS_OP_CONT)) code = 1002;
    else if ((f.opcode >= 3 && f.opcode <= 7) || f.opcode >= 11) code = 1002;
    else if (control && (!f.fin || f.len > 125)) code = 1002;
    else if (!control && f.len > FZ_MAX_MESSAGE) code = 1009;
    if (code != 0) {
      m->close = code;
      m->consumed = off + (size_t)hl;
      return;
    }
    if (n - off - (size_t)hl < f.len) {
      m->tail_open = true;
      return;
    }
    size_t len = (size_t)f.len;
    uint8_t *p = tt_malloc(len + 1);
    for (size_t i = 0; i < len; i++) p[i] = s[off + (size_t)hl + i] ^ f.mask[i & 3];
    off += (size_t)hl + len;
    bool go = true;
    if (f.opcode == WS_OP_PING) {
      fuzz_model_ping(m, p, len);
    } else if (f.opcode == WS_OP_CLOSE) {
      unsigned c = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 0;
      bool known = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999);
      if (len == 0) m->close = 1000;
      else if (len == 1 || !known) m->close = 1002;
      else if (fuzz_utf8(p + 2, len - 2) != U_VALID) m->close = 1007;
      else m->close = c; /* echoed */
      go = false;
    } else if (f.opcode != WS_OP_PONG) {
      go = fuzz_model_data(m, &f, p, len);
    }
    free(p);
    if (!go) {
      m->consumed = off;
      return;
    }
  }
}

/* ================================================================ sockets */

static int fuzz_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fz.port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
  FUZZ_CHECK(rc == 0 || errno == EINPROGRESS);
  return fd;
}

/* Resets the connection (no TIME_WAIT left behind) and waits until the
 * server has let go of it. */
static void fuzz_release(int fd) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
  uint64_t until = fuzz_now_ms() + FZ_TIMEOUT_MS;
  while (net_server_connections(fz.server) != 0) { /* the server's worker thread lets go */
    FUZZ_CHECK(fuzz_now_ms() < until);
    sched_yield();
  }
}

/* ================================================================ the client's bytes */

typedef struct {
  tt_str_t s;        /* the bytes after the handshake */
  size_t *cuts;      /* record boundaries in s */
  size_t ncuts, capcuts;
  bool deflate, no_ctx;
  z_stream z;
  bool z_ready, z_finished;
  uint32_t rng;
} fuzz_client_t;

static uint32_t fuzz_rand(fuzz_client_t *c) {
  c->rng ^= c->rng << 13;
  c->rng ^= c->rng >> 17;
  c->rng ^= c->rng << 5;
  return c->rng;
}

/* A frame: b0 is FIN, RSV and opcode; lenenc 1 and 2 force the 16- and
 * 64-bit length forms (not minimal for short payloads). */
static void fuzz_put_frame(fuzz_client_t *c, unsigned b0, bool masked, unsigned lenenc, const void *payload,
                           size_t n) {
  uint8_t h[WS_MAX_HEADER];
  size_t hl = 0;
  uint8_t mbit = masked ? 0x80 : 0;
  h[hl++] = (uint8_t)b0;
  if (lenenc == 2 || (lenenc != 1 && n > 0xffff)) {
    h[hl++] = mbit | 127;
    for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
  } else if (lenenc == 1 || n > 125) {
    h[hl++] = mbit | 126;
    h[hl++] = (uint8_t)(n >> 8);
    h[hl++] = (uint8_t)n;
  } else {
    h[hl++] = mbit | (uint8_t)n;
  }
  uint8_t mask[4] = {0};
  if (masked) {
    uint32_t r = fuzz_rand(c);
    memcpy(mask, &r, 4);
    memcpy(h + hl, mask, 4);
    hl += 4;
  }
  tt_str_append(&c->s, h, hl);
  tt_str_reserve(&c->s, n);
  const uint8_t *p = payload;
  for (size_t i = 0; i < n; i++) c->s.data[c->s.len + i] = (char)(p[i] ^ mask[i & 3]);
  c->s.len += n;
}

/* Compresses one message as a client does (RFC 7692 7.2.1): with context
 * takeover unless client_no_context_takeover was agreed; `final` ends it
 * with a BFINAL block instead of a sync flush (7.2.3.4). */
static void fuzz_deflate(fuzz_client_t *c, const void *p, size_t n, bool final, tt_str_t *out) {
  if (!c->z_ready) {
    FUZZ_CHECK(deflateInit2(&c->z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    c->z_ready = true;
  } else if (c->no_ctx || c->z_finished) {
    deflateReset(&c->z);
  }
  c->z_finished = final;
  c->z.next_in = (Bytef *)p;
  c->z.avail_in = (uInt)n;
  int rc;
  do {
    tt_str_reserve(out, n / 2 + 64);
    size_t room = out->cap - out->len - 1;
    c->z.next_out = (Bytef *)out->data + out->len;
    c->z.avail_out = (uInt)room;
    rc = deflate(&c->z, final ? Z_FINISH : Z_SYNC_FLUSH);
    out->len += room - c->z.avail_out;
  } while (final ? rc != Z_STREAM_END : c->z.avail_out == 0);
  if (!final && out->len >= 4 && memcmp(out->data + out->len - 4, "\x00\x00\xff\xff", 4) == 0) out->len -= 4;
}

/* A message in `frags` fragments, compressed or not, with a ping after the
 * first fragment if asked. */
static void fuzz_put_message(fuzz_client_t *c, unsigned op, const void *data, size_t n, unsigned frags, bool compress,
                             bool final, bool ping) {
  tt_str_t z = {0};
  const uint8_t *p = data;
  if (compress) {
    fuzz_deflate(c, data, n, final, &z);
    p = (const uint8_t *)z.data;
    n = z.len;
  }
  if (frags < 1) frags = 1;
  size_t step = n / frags, off = 0;
  for (unsigned i = 0; i < frags; i++) {
    size_t len = i + 1 == frags ? n - off : step;
    unsigned b0 = (i + 1 == frags ? 0x80 : 0) | (i == 0 ? op : WS_OP_CONT) | (i == 0 && compress ? 0x40 : 0);
    fuzz_put_frame(c, b0, true, 0, p ? p + off : NULL, len);
    off += len;
    if (i == 0 && ping) fuzz_put_frame(c, 0x89, true, 0, "mid", 3);
  }
  tt_str_free(&z);
}

/* ---------------------------------------------------------------- the dictionary */

static const char *const fz_channels[] = {
    "room", "pub", "pub:x", "jam:1", "news", "a", "", "bad channel", "x/y.z-_:", "\\u0072oom", "pub:open", "Jam:1",
    "pub\\/x", "\xc3\xa9t\xc3\xa9",
};
static const char *const fz_sinces[] = {
    "\"ep:1\"", "0", "3", "\"5\"", "\"\"", "\"xx:yy\"", "18446744073709551615", "18446744073709551616", "-1", "1.5",
    "null", "{}", "\"aaaaaaaa:0\"", "\":1\"", "\"a-b_C:12\"", "\"0123456789012345678901234567890123:1\"", "[1]",
};
static const char *const fz_ids[] = {
    "1", "\"x\"", "null", "{\"a\":[1,{}]}", "1.5e300", "true", "\"\\u00e9\"", "[]", "-0", "\"\"", "0.000001",
};
static const char *const fz_datas[] = {
    "{\"a\":1}", "\"str\"", "[1,2,3]", "null", "0", "{\"nested\":[[[[]]]]}", "\"\\ud83c\\udfb5\"", "true",
    "{\"text\":\"\xc3\xa9\xf0\x9f\x8e\xb5\"}",
};
static const char *const fz_events[] = {
    "note", "", "bad event!", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "e:v.1-2_",
    "\\u006eote", "message",
};
static const char *const fz_types[] = {
    "pong", "PING", "ping ", "subscribe2", "", "\\u0070ing", "message", "welcome", "get-stats", "publish\\u0000",
};
static const char *const fz_values[] = {"1", "null", "[]", "{}", "\"\"", "false", "-1e-7"};

#define FZ_PICK(list, cur) (list[fuzz_byte(cur) % TT_ARRAY_SIZE(list)])

/* A channel: from the list, or made of the data in the channel alphabet. */
static void fuzz_gen_channel(fuzz_cursor_t *cur, tt_str_t *s) {
  unsigned k = fuzz_byte(cur);
  tt_str_appends(s, "\"");
  if (k < 200) {
    tt_str_appends(s, fz_channels[k % TT_ARRAY_SIZE(fz_channels)]);
  } else {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789_.:/-";
    unsigned n = k == 255 ? 256 : fuzz_byte(cur) % 12 + 1;
    tt_str_appends(s, k & 1 ? "pub" : "");
    for (unsigned i = 0; i < n; i++) tt_str_append(s, &alphabet[fuzz_byte(cur) % (sizeof(alphabet) - 1)], 1);
  }
  tt_str_appends(s, "\"");
}

static void fuzz_gen_string(fuzz_cursor_t *cur, tt_str_t *s) {
  size_t n = fuzz_byte(cur) % 16;
  n = TT_MIN(n, cur->n - cur->i);
  tt_str_appends(s, "\"");
  fuzz_json_escape(s, cur->p + cur->i, n);
  cur->i += n;
  tt_str_appends(s, "\"");
}

/* Optional members, each decided by a bit of `flags`. */
static void fuzz_gen_extras(fuzz_cursor_t *cur, tt_str_t *s, unsigned flags) {
  if (flags & 1) {
    tt_str_appends(s, ",\"id\":");
    if (fuzz_byte(cur) & 1) tt_str_appendf(s, "%u", fuzz_byte(cur) * 257u);
    else tt_str_appends(s, FZ_PICK(fz_ids, cur));
  }
  if (flags & 2) {
    tt_str_appends(s, ",\"extra\":");
    tt_str_appends(s, FZ_PICK(fz_values, cur));
  }
}

/* A protocol message, valid or nearly. */
static void fuzz_gen_message(fuzz_cursor_t *cur, tt_str_t *s) {
  unsigned t = fuzz_byte(cur), flags = fuzz_byte(cur);
  switch (t % 14) {
    case 0:
    case 1:
      tt_str_appends(s, "{\"type\":\"subscribe\"");
      if (!(flags & 0x80)) {
        tt_str_appends(s, ",\"channel\":");
        fuzz_gen_channel(cur, s);
      }
      if (flags & 4) tt_str_appendf(s, ",\"since\":%s", FZ_PICK(fz_sinces, cur));
      break;
    case 2:
      tt_str_appends(s, "{\"type\":\"unsubscribe\",\"channel\":");
      fuzz_gen_channel(cur, s);
      break;
    case 3:
    case 4:
      tt_str_appends(s, "{\"type\":\"publish\",\"channel\":");
      fuzz_gen_channel(cur, s);
      if (flags & 4) tt_str_appendf(s, ",\"event\":\"%s\"", FZ_PICK(fz_events, cur));
      if (flags & 8) {
        tt_str_appends(s, ",\"data\":");
        if (flags & 16) {
          size_t n = (size_t)fuzz_byte(cur) * 8;
          tt_str_appends(s, "{\"t\":\"");
          for (size_t i = 0; i < n; i++) tt_str_append(s, "x", 1);
          tt_str_appends(s, "\"}");
        } else {
          tt_str_appends(s, FZ_PICK(fz_datas, cur));
        }
      }
      break;
    case 5:
      tt_str_appends(s, "{\"type\":\"ping\"");
      if (flags & 4) tt_str_appendf(s, ",\"client_time\":%s", flags & 8 ? "1763800000000" : FZ_PICK(fz_values, cur));
      break;
    case 6:
      tt_str_appends(s, "{\"type\":\"get_stats\"");
      break;
    case 7:
      tt_str_appends(s, "{\"type\":\"subscribe\",\"topic\":");
      fuzz_gen_channel(cur, s);
      if (flags & 4) {
        tt_str_appends(s, ",\"channel\":");
        fuzz_gen_channel(cur, s);
      }
      break;
    case 8:
      tt_str_appendf(s, "{\"type\":\"%s\"", FZ_PICK(fz_types, cur));
      break;
    case 9:
      tt_str_appends(s, "{\"type\":");
      fuzz_gen_string(cur, s);
      break;
    case 10:
      tt_str_appends(s, "{\"channel\":");
      fuzz_gen_channel(cur, s);
      break;
    case 11:
      tt_str_appendf(s, "{\"type\":%s", FZ_PICK(fz_values, cur));
      break;
    case 12:
      tt_str_appends(s, " { \"type\" : \"ping\" , \"type\" : \"get_stats\" ");
      break;
    default: {
      /* not an object, or not JSON: the rest of the record as it is */
      static const char *const shapes[] = {"[1,2]", "\"ping\"", "1", "null", "{", "{\"type\":\"ping\"", "{}x", ""};
      unsigned k = fuzz_byte(cur);
      if (k < 128) {
        tt_str_appends(s, shapes[k % TT_ARRAY_SIZE(shapes)]);
      } else {
        tt_str_append(s, cur->p + cur->i, cur->n - cur->i);
        cur->i = cur->n;
      }
      return;
    }
  }
  fuzz_gen_extras(cur, s, flags);
  tt_str_appends(s, "}");
}

/* ---------------------------------------------------------------- records */

static void fuzz_cut(fuzz_client_t *c) {
  if (c->ncuts == c->capcuts) {
    c->capcuts = c->capcuts ? c->capcuts * 2 : 16;
    c->cuts = tt_realloc(c->cuts, c->capcuts * sizeof(*c->cuts));
  }
  c->cuts[c->ncuts++] = c->s.len;
}

/*
 * kind & 7:
 *   0  a frame: the first byte is FIN (inverted), RSV and opcode, the rest
 *      the payload; kind bit 7 leaves it unmasked, bits 3-4 pick the length
 *      form (1: 16-bit, 2: 64-bit)
 *   1, 7  a protocol message from the dictionary; bits 3-4: fragments - 1,
 *      bit 5: end the compressed data with BFINAL, bit 6: compress (when
 *      negotiated), bit 7: a ping after the first fragment
 *   2  raw bytes
 *   3  a close frame: a code (2 bytes) and a reason; bit 6: empty, bit 5:
 *      one byte only
 *   4  a compressed message, whether negotiated or not: the first byte picks
 *      text or binary and two fragments, the rest repeated 1, 8, 64 or 512
 *      times (bits 3-4) is the plain data
 *   5  a big text message of 64 * byte + byte bytes
 *   6  a protocol message repeated 1-96 times (the first byte says)
 */
static void fuzz_record(fuzz_client_t *c, unsigned kind, fuzz_cursor_t *cur) {
  switch (kind & 7) {
    case 0: {
      unsigned h = fuzz_byte(cur);
      unsigned b0 = (h & 0x80 ? 0 : 0x80) | (h & 0x7f);
      fuzz_put_frame(c, b0, !(kind & 0x80), (kind >> 3) & 3, cur->p + cur->i, cur->n - cur->i);
      break;
    }
    case 2:
      tt_str_append(&c->s, cur->p, cur->n);
      break;
    case 3: {
      uint8_t p[125];
      size_t n = TT_MIN(cur->n, sizeof(p));
      memcpy(p, cur->p, n);
      if (kind & 0x40) n = 0;
      else if (kind & 0x20) n = TT_MIN(n, (size_t)1);
      fuzz_put_frame(c, 0x88, true, 0, p, n);
      break;
    }
    case 4: {
      unsigned h = fuzz_byte(cur);
      size_t reps = (size_t)1 << (3 * ((kind >> 3) & 3));
      tt_str_t plain = {0};
      for (size_t r = 0; r < reps; r++) tt_str_append(&plain, cur->p + cur->i, cur->n - cur->i);
      unsigned op = h & 1 ? WS_OP_BINARY : WS_OP_TEXT;
      fuzz_put_message(c, op, plain.data, plain.len, h & 2 ? 2 : 1, true, kind & 0x20, false);
      tt_str_free(&plain);
      break;
    }
    case 5: {
      size_t n = (size_t)fuzz_byte(cur) * 64 + fuzz_byte(cur);
      tt_str_t s = {0};
      tt_str_appends(&s, "{\"type\":\"ping\",\"pad\":\"");
      while (s.len + 2 < n) tt_str_append(&s, "a", 1);
      tt_str_appends(&s, "\"}");
      fuzz_put_message(c, WS_OP_TEXT, s.data, s.len, ((kind >> 3) & 3) + 1, (kind & 0x40) && c->deflate, kind & 0x20,
                       kind & 0x80);
      tt_str_free(&s);
      break;
    }
    case 6: {
      /* one message, many times: past the rate limit's burst */
      unsigned times = fuzz_byte(cur) % 96 + 1;
      tt_str_t s = {0};
      fuzz_gen_message(cur, &s);
      for (unsigned i = 0; i < times; i++)
        fuzz_put_message(c, WS_OP_TEXT, s.data, s.len, ((kind >> 3) & 3) + 1, (kind & 0x40) && c->deflate, kind & 0x20,
                         false);
      tt_str_free(&s);
      break;
    }
    default: {
      tt_str_t s = {0};
      fuzz_gen_message(cur, &s);
      fuzz_put_message(c, WS_OP_TEXT, s.data, s.len, ((kind >> 3) & 3) + 1, (kind & 0x40) && c->deflate, kind & 0x20,
                       kind & 0x80);
      tt_str_free(&s);
      break;
    }
  }
  fuzz_cut(c);
}

/* The handshake, from the input's first byte:
 *   bits 0-1  0: no extension offered; 1: permessage-deflate; 2: with
 *             client_no_context_takeover; 3: limiting server_max_window_bits
 *             (declined: the connection goes on uncompressed)
 *   bit 2     the frames follow the request at once, before the 101
 *   bit 3     GET /ws/pub%3Aopen?since=0 (subscribed on open) instead of /ws
 *   bit 4     each record is sent on its own
 *   bit 5     with an Origin that matches the Host
 *   bits 6-7  both set: a refused upgrade instead (fuzz_refused)
 */
static void fuzz_request(unsigned mode, tt_str_t *req, bool *deflate, bool *no_ctx) {
  static const char *const offers[] = {
      NULL,
      "permessage-deflate; client_max_window_bits",
      "permessage-deflate; client_no_context_takeover",
      "permessage-deflate; server_max_window_bits=10",
  };
  const char *offer = offers[mode & 3];
  tt_str_appendf(req,
                 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
                 mode & 8 ? "/ws/pub%3Aopen?since=0" : "/ws", fz.port, fz_key);
  if (offer) tt_str_appendf(req, "Sec-WebSocket-Extensions: %s\r\n", offer);
  if (mode & 32) tt_str_appendf(req, "Origin: http://127.0.0.1:%d\r\n", fz.port);
  tt_str_appends(req, "\r\n");
  *deflate = (mode & 3) == 1 || (mode & 3) == 2;
  *no_ctx = (mode & 3) == 2;
}

/* Upgrades the server must refuse (docs/PROTOCOL.md, Opening): the status
 * and error code it must answer with. */
static void fuzz_refused(unsigned variant) {
  static const struct {
    const char *request; /* %d: the port */
    int status;
    const char *code;
  } cases[] = {
      {"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
       426, "UPGRADE_REQUIRED"},
      {"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
       400, "BAD_UPGRADE"},
      {"GET /ws HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       400, "BAD_UPGRADE"},
      {"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       400, "BAD_UPGRADE"},
      {"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Origin: http://evil.example\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       403, "FORBIDDEN_ORIGIN"},
      {"GET /ws/bad%%20channel HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       400, "BAD_CHANNEL"},
      {"GET /ws/room?since=x:y:z HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       400, "BAD_SINCE"},
      {"POST /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 0\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       400, "BAD_UPGRADE"},
  };
  const size_t k = variant % TT_ARRAY_SIZE(cases);
  char req[512];
  int rl = snprintf(req, sizeof(req), cases[k].request, fz.port);
  FUZZ_CHECK(rl > 0 && (size_t)rl < sizeof(req));
  int fd = fuzz_connect();
  FUZZ_CHECK(send(fd, req, (size_t)rl, MSG_NOSIGNAL) == rl);
  /* the head, then Content-Length bytes of body */
  tt_str_t in = {0};
  uint64_t deadline = fuzz_now_ms() + FZ_TIMEOUT_MS;
  size_t want = SIZE_MAX;
  char buf[4096];
  while (in.len < want) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t now = fuzz_now_ms();
    FUZZ_CHECK(now < deadline);
    if (poll(&pfd, 1, (int)(deadline - now)) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    tt_str_append(&in, buf, (size_t)n);
    const char *e = memmem(in.data, in.len, "\r\n\r\n", 4);
    if (e != NULL && want == SIZE_MAX) {
      const char *cl = memmem(in.data, (size_t)(e - in.data), "\r\nContent-Length: ", 18);
      FUZZ_CHECK(cl != NULL);
      want = (size_t)(e - in.data) + 4 + strtoul(cl + 18, NULL, 10);
    }
  }
  tt_str_append(&in, "", 1);
  char status[32];
  snprintf(status, sizeof(status), "HTTP/1.1 %d ", cases[k].status);
  char code[64];
  snprintf(code, sizeof(code), "\"code\":\"%s\"", cases[k].code);
  if (strncmp(in.data, status, strlen(status)) != 0 || strstr(in.data, code) == NULL)
    fprintf(stderr, "  refused upgrade %zu: want %d %s, got:\n%s\n", k, cases[k].status, cases[k].code, in.data);
  FUZZ_CHECK(strncmp(in.data, status, strlen(status)) == 0);
  FUZZ_CHECK(strstr(in.data, code) != NULL);
  if (cases[k].status == 426) FUZZ_CHECK(strstr(in.data, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
  FUZZ_CHECK(strstr(in.data, "Sec-WebSocket-Accept") == NULL);
  tt_str_free(&in);
  fuzz_release(fd);
}

/* ================================================================ the exchange */

/* A channel as this connection sees it, for the order of deliveries. */
typedef struct {
  char name[HUB_CHANNEL_MAX + 1];
  bool subscribed;  /* between "subscribed" and "unsubscribed" */
  bool any;         /* `epoch` and `last` hold a position */
  char epoch[TT_EPOCH_MAX + 1];
  uint64_t last;    /* the last offset delivered, or the one subscribed at */
} fuzz_chan_t;

#define FZ_CHANS 64

typedef struct {
  unsigned mode;
  fuzz_model_t *model;
  bool open_sub;           /* subscribed on open: one more direct reply, first */
  int fd;
  tt_str_t out;            /* request and frames to send */
  size_t sent;
  const size_t *cuts;      /* send boundaries in out, or NULL */
  size_t ncuts, cut;
  tt_str_t pending;        /* frames held until the 101 when not pipelined */
  tt_str_t in;             /* received, not yet parsed */
  bool head_done, eof, send_failed;
  /* what came back */
  bool welcome, closed, barrier;
  unsigned close_code;
  size_t texts, direct, pongs, deliveries;
  fuzz_chan_t chans[FZ_CHANS];
  size_t nchans, nsubscribed;
  fuzz_chan_t *recovering; /* missed messages came for it: "subscribed" is next */
} fuzz_conn_t;

static fuzz_conn_t *fz_current;
static const fuzz_msg_t *fz_request; /* the message whose reply is being checked */
static json_t *fz_reply;

static void fuzz_dump(void) {
  fuzz_conn_t *c = fz_current;
  if (c == NULL) return;
  fuzz_model_t *m = c->model;
  fprintf(stderr,
          "  mode 0x%02x: model close %u after %zu bytes%s, %zu messages, %zu pings, deflate %d no_ctx %d\n"
          "  got: head %d welcome %d close %d (code %u) eof %d barrier %d; %zu texts, %zu direct replies, %zu pongs, "
          "%zu deliveries\n",
          c->mode, m->close, m->consumed, m->tail_open ? " (ends inside a frame)" : "", m->nmsgs, m->npings,
          m->deflate, m->no_ctx, c->head_done, c->welcome, c->closed, c->close_code, c->eof, c->barrier, c->texts,
          c->direct, c->pongs, c->deliveries);
  if (fz_request != NULL) {
    fprintf(stderr, "  request (%s): %.*s\n", fz_request->binary ? "binary" : "text",
            (int)TT_MIN(fz_request->text.len, (size_t)2000), fz_request->text.data ? fz_request->text.data : "");
    char *r = fz_reply ? json_dumps(fz_reply, JSON_COMPACT) : NULL;
    fprintf(stderr, "  reply: %s\n", r ? r : "?");
    free(r);
  }
}

static bool fuzz_str_is(json_t *j, const char *key, const char *value) {
  json_t *v = json_object_get(j, key);
  return json_is_string(v) && strcmp(json_string_value(v), value) == 0;
}

/* The reply to message `req` fits it. */
static void fuzz_check_reply(const fuzz_msg_t *req, json_t *reply, const char *type) {
  bool error = strcmp(type, "error") == 0;
  json_t *codev = json_object_get(reply, "code");
  const char *code = json_is_string(codev) ? json_string_value(codev) : "";
  if (error) FUZZ_CHECK(json_is_string(codev) && json_is_string(json_object_get(reply, "message")));
  bool limited = error && strcmp(code, "RATE_LIMITED") == 0;
  if (req->binary) {
    FUZZ_CHECK(error && (limited || strcmp(code, "UNSUPPORTED") == 0));
    FUZZ_CHECK(json_object_get(reply, "ref") == NULL);
    return;
  }
  json_error_t jerr;
  json_t *j = json_loadb(req->text.data, req->text.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (j == NULL) return; /* jansson refuses some JSON tt_json takes (1e400): no prediction */
  if (!json_is_object(j)) {
    FUZZ_CHECK(error && (limited || strcmp(code, "BAD_JSON") == 0));
    json_decref(j);
    return;
  }
  if (error && strcmp(code, "BAD_JSON") == 0) {
    /* a JSON object is refused only when nested past the scanner's limit */
    FUZZ_CHECK(fuzz_json_depth(j) >= TT_JSON_MAX_DEPTH);
    json_decref(j);
    return;
  }
  /* Keys are matched as written: predict only for text without escapes. */
  if (memchr(req->text.data, '\\', req->text.len) == NULL) {
    json_t *id = json_object_get(j, "id"), *ref = json_object_get(reply, "ref");
    if (id != NULL) FUZZ_CHECK(ref != NULL && json_equal(ref, id));
    else FUZZ_CHECK(ref == NULL);
    json_t *t = json_object_get(j, "type");
    const char *ts = json_is_string(t) ? json_string_value(t) : NULL;
    static const char *const answers[][2] = {{"ping", "pong"},
                                             {"get_stats", "stats"},
                                             {"subscribe", "subscribed"},
                                             {"unsubscribe", "unsubscribed"},
                                             {"publish", "published"}};
    const char *want = NULL;
    for (size_t i = 0; ts != NULL && i < TT_ARRAY_SIZE(answers); i++)
      if (strcmp(ts, answers[i][0]) == 0) want = answers[i][1];
    if (t == NULL) {
      FUZZ_CHECK(error && (limited || strcmp(code, "MISSING_FIELD") == 0));
    } else if (want == NULL) {
      FUZZ_CHECK(error && (limited || strcmp(code, "UNKNOWN_TYPE") == 0));
    } else if (!error) {
      FUZZ_CHECK(strcmp(type, want) == 0);
      json_t *ch = json_object_get(j, "channel");
      if (ch == NULL) ch = json_object_get(j, "topic");
      if (strcmp(want, "subscribed") == 0 || strcmp(want, "unsubscribed") == 0 || strcmp(want, "published") == 0)
        FUZZ_CHECK(json_is_string(ch) && json_equal(ch, json_object_get(reply, "channel")));
      if (strcmp(want, "published") == 0) {
        const char *name = json_string_value(ch);
        FUZZ_CHECK(strncmp(name, "pub", 3) == 0 || strncmp(name, "jam:", 4) == 0);
      }
      if (strcmp(want, "pong") == 0 && json_object_get(j, "client_time") != NULL)
        FUZZ_CHECK(json_equal(json_object_get(j, "client_time"), json_object_get(reply, "client_time")));
    } else if (strcmp(want, "pong") == 0 || strcmp(want, "stats") == 0) {
      FUZZ_CHECK(limited);
    }
  }
  json_decref(j);
}

static fuzz_chan_t *fuzz_chan(fuzz_conn_t *c, const char *name) {
  FUZZ_CHECK(strlen(name) >= 1 && strlen(name) <= HUB_CHANNEL_MAX);
  for (size_t i = 0; i < c->nchans; i++)
    if (strcmp(c->chans[i].name, name) == 0) return &c->chans[i];
  FUZZ_CHECK(c->nchans < FZ_CHANS);
  fuzz_chan_t *ch = &c->chans[c->nchans++];
  memset(ch, 0, sizeof(*ch));
  snprintf(ch->name, sizeof(ch->name), "%s", name);
  return ch;
}

/* Splits "epoch:offset". */
static void fuzz_split_id(const char *id, char epoch[TT_EPOCH_MAX + 1], uint64_t *offset) {
  const char *colon = strrchr(id, ':');
  FUZZ_CHECK(colon != NULL && colon > id && (size_t)(colon - id) <= TT_EPOCH_MAX && colon[1] != '\0');
  memcpy(epoch, id, (size_t)(colon - id));
  epoch[colon - id] = '\0';
  char *end;
  *offset = strtoull(colon + 1, &end, 10);
  FUZZ_CHECK(*end == '\0');
}

/*
 * Deliveries keep order: on a subscribed channel each comes after the
 * position it was subscribed at and after the one before, in one epoch;
 * missed messages (a subscribe with `since`) come just before their
 * "subscribed", in order and at or before its position; nothing comes for
 * a channel the connection does not have.
 */
static void fuzz_on_delivery(fuzz_conn_t *c, json_t *j) {
  json_t *id = json_object_get(j, "id");
  FUZZ_CHECK(json_is_string(id) && fuzz_str_is(j, "type", "message"));
  FUZZ_CHECK(json_is_string(json_object_get(j, "event")));
  fuzz_chan_t *ch = fuzz_chan(c, json_string_value(json_object_get(j, "channel")));
  char epoch[TT_EPOCH_MAX + 1];
  uint64_t off;
  fuzz_split_id(json_string_value(id), epoch, &off);
  if (!ch->subscribed) {
    FUZZ_CHECK(c->recovering == NULL || c->recovering == ch);
    c->recovering = ch;
  }
  if (ch->any) {
    if (strcmp(epoch, ch->epoch) != 0 || off <= ch->last)
      fprintf(stderr, "  %s: delivered %s:%llu after %s:%llu\n", ch->name, epoch, (unsigned long long)off, ch->epoch,
              (unsigned long long)ch->last);
    FUZZ_CHECK(strcmp(epoch, ch->epoch) == 0 && off > ch->last);
  }
  ch->any = true;
  memcpy(ch->epoch, epoch, sizeof(ch->epoch));
  ch->last = off;
}

/* "subscribed" and "unsubscribed" change what may be delivered. */
static void fuzz_on_direct(fuzz_conn_t *c, json_t *j, const char *type) {
  bool sub = strcmp(type, "subscribed") == 0, unsub = strcmp(type, "unsubscribed") == 0;
  if (c->recovering != NULL) FUZZ_CHECK(sub && fuzz_str_is(j, "channel", c->recovering->name));
  if (!sub && !unsub) return;
  json_t *name = json_object_get(j, "channel");
  FUZZ_CHECK(json_is_string(name));
  fuzz_chan_t *ch = fuzz_chan(c, json_string_value(name));
  if (unsub) {
    FUZZ_CHECK(ch->subscribed);
    ch->subscribed = ch->any = false;
    c->nsubscribed--;
    return;
  }
  FUZZ_CHECK(!ch->subscribed);
  FUZZ_CHECK(++c->nsubscribed <= FZ_MAX_CHANNELS);
  json_t *ep = json_object_get(j, "epoch"), *off = json_object_get(j, "offset"), *id = json_object_get(j, "id");
  FUZZ_CHECK(json_is_string(ep) && json_is_integer(off) && json_is_string(id));
  FUZZ_CHECK(json_is_boolean(json_object_get(j, "recovered")));
  char idepoch[TT_EPOCH_MAX + 1];
  uint64_t idoff;
  fuzz_split_id(json_string_value(id), idepoch, &idoff);
  FUZZ_CHECK(strcmp(idepoch, json_string_value(ep)) == 0 && idoff == (uint64_t)json_integer_value(off));
  if (ch->any) FUZZ_CHECK(strcmp(ch->epoch, idepoch) == 0 && ch->last <= idoff); /* the missed ones */
  ch->subscribed = ch->any = true;
  memcpy(ch->epoch, idepoch, sizeof(ch->epoch));
  ch->last = idoff;
  c->recovering = NULL;
}

/* A text frame from the server, inflated. */
static void fuzz_on_text(fuzz_conn_t *c, const char *p, size_t n) {
  FUZZ_CHECK(fuzz_utf8((const uint8_t *)p, n) == U_VALID);
  json_error_t jerr;
  json_t *j = json_loadb(p, n, JSON_ALLOW_NUL, &jerr);
  if (j == NULL) fprintf(stderr, "  server text: %.*s\n  jansson: %s\n", (int)TT_MIN(n, (size_t)2000), p, jerr.text);
  FUZZ_CHECK(j != NULL && json_is_object(j));
  json_t *tv = json_object_get(j, "type");
  FUZZ_CHECK(json_is_string(tv));
  const char *type = json_string_value(tv);
  c->texts++;
  if (strcmp(type, "welcome") == 0) {
    FUZZ_CHECK(c->texts == 1);
    json_t *info = json_object_get(j, "server_info");
    FUZZ_CHECK(json_is_object(info));
    FUZZ_CHECK(json_is_boolean(json_object_get(info, "permessage_deflate")));
    FUZZ_CHECK(json_is_true(json_object_get(info, "permessage_deflate")) == c->model->deflate);
    c->welcome = true;
  } else if (strcmp(type, "message") == 0 || strcmp(type, "recovery_incomplete") == 0) {
    FUZZ_CHECK(c->welcome);
    FUZZ_CHECK(json_is_string(json_object_get(j, "channel")));
    if (strcmp(type, "message") == 0) {
      FUZZ_CHECK(json_object_get(j, "data") != NULL);
      fuzz_on_delivery(c, j);
    }
    c->deliveries++;
  } else {
    FUZZ_CHECK(c->welcome);
    fuzz_on_direct(c, j, type);
    size_t k = c->direct++;
    if (c->open_sub) {
      if (k == 0) {
        FUZZ_CHECK(strcmp(type, "subscribed") == 0 && fuzz_str_is(j, "channel", "pub:open"));
        json_decref(j);
        return;
      }
      k--;
    }
    FUZZ_CHECK(k < c->model->nmsgs);
    fz_request = &c->model->msgs[k];
    fz_reply = j;
    fuzz_check_reply(fz_request, j, type);
    fz_request = NULL;
    fz_reply = NULL;
  }
  json_decref(j);
}

/* One server frame. */
static void fuzz_on_frame(fuzz_conn_t *c, const fuzz_frame_t *f, const uint8_t *p, size_t n) {
  FUZZ_CHECK(!c->closed); /* nothing after the close */
  FUZZ_CHECK(f->fin && !f->masked);
  FUZZ_CHECK(f->rsv == 0 || (f->rsv == 4 && f->opcode == WS_OP_TEXT && c->model->deflate));
  switch (f->opcode) {
    case WS_OP_TEXT:
      if (f->rsv & 4) {
        /* server_no_context_takeover: each message inflates alone */
        fuzz_model_t fresh = {.no_ctx = true};
        tt_str_t out = {0};
        FUZZ_CHECK(fuzz_model_inflate(&fresh, p, n, &out) == 0);
        FUZZ_CHECK(!fresh.inf_ended); /* a sync flush, not a final block */
        FUZZ_CHECK(out.len >= FZ_THRESHOLD);
        fuzz_on_text(c, out.data ? out.data : "", out.len);
        tt_str_free(&out);
        fuzz_model_free(&fresh);
      } else {
        if (c->model->deflate) FUZZ_CHECK(n < FZ_THRESHOLD);
        fuzz_on_text(c, (const char *)p, n);
      }
      break;
    case WS_OP_PONG:
      if (n == 12 && memcmp(p, "fuzz-barrier", 12) == 0) {
        FUZZ_CHECK(c->pongs == c->model->npings);
        c->barrier = true;
      } else {
        FUZZ_CHECK(c->pongs < c->model->npings);
        const tt_str_t *want = &c->model->pings[c->pongs];
        FUZZ_CHECK(n == want->len && (n == 0 || memcmp(p, want->data, n) == 0));
        c->pongs++;
      }
      break;
    case WS_OP_PING:
      break; /* an idle ping: allowed, though not expected this soon */
    case WS_OP_CLOSE: {
      FUZZ_CHECK(n >= 2 && n <= 125);
      c->close_code = (unsigned)p[0] << 8 | p[1];
      FUZZ_CHECK(fuzz_utf8(p + 2, n - 2) == U_VALID);
      unsigned code = c->close_code;
      bool documented = code == 1000 || code == 1001 || code == 1002 || code == 1007 || code == 1008 || code == 1009;
      FUZZ_CHECK(documented || code == c->model->close); /* or the client's own, echoed */
      c->closed = true;
      break;
    }
    default:
      fprintf(stderr, "  server frame with opcode %u\n", f->opcode);
      FUZZ_CHECK(false);
  }
}

/* The 101 answer. */
static void fuzz_on_head(fuzz_conn_t *c, const char *h, size_t n) {
  tt_str_t head = {0};
  tt_str_append(&head, h, n);
  tt_str_append(&head, "", 1);
  if (strncmp(head.data, "HTTP/1.1 101 Switching Protocols\r\n", 34) != 0)
    fprintf(stderr, "  answer: %.*s\n", (int)TT_MIN(n, (size_t)500), h);
  FUZZ_CHECK(strncmp(head.data, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
  char line[128];
  snprintf(line, sizeof(line), "\r\nSec-WebSocket-Accept: %s\r\n", fz_accept);
  FUZZ_CHECK(strstr(head.data, line) != NULL);
  const char *ext = strstr(head.data, "\r\nSec-WebSocket-Extensions: ");
  FUZZ_CHECK((ext != NULL) == c->model->deflate);
  if (ext != NULL) {
    const char *want = c->model->no_ctx
                           ? "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                             "client_no_context_takeover\r\n"
                           : "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n";
    FUZZ_CHECK(strncmp(ext, want, strlen(want)) == 0);
  }
  tt_str_free(&head);
  c->head_done = true;
  if (c->pending.len > 0) {
    tt_str_append(&c->out, c->pending.data, c->pending.len);
    c->pending.len = 0;
  }
}

/* Parses what has come in. */
static void fuzz_parse_in(fuzz_conn_t *c) {
  size_t off = 0;
  if (!c->head_done) {
    const char *e = c->in.len >= 4 ? memmem(c->in.data, c->in.len, "\r\n\r\n", 4) : NULL;
    if (e == NULL) {
      FUZZ_CHECK(c->in.len < 4096);
      return;
    }
    off = (size_t)(e - c->in.data) + 4;
    fuzz_on_head(c, c->in.data, off);
  }
  for (;;) {
    fuzz_frame_t f;
    int hl = fuzz_header((uint8_t *)c->in.data + off, c->in.len - off, &f);
    FUZZ_CHECK(hl != -2);
    if (hl < 0 || c->in.len - off - (size_t)hl < f.len) break;
    fuzz_on_frame(c, &f, (uint8_t *)c->in.data + off + hl, (size_t)f.len);
    off += (size_t)hl + (size_t)f.len;
  }
  memmove(c->in.data, c->in.data + off, c->in.len - off);
  c->in.len -= off;
}

/* Whether the exchange has reached what the model says it must. */
static bool fuzz_done(const fuzz_conn_t *c) {
  if (c->eof) return true;
  if (c->model->close != 0) return false; /* until the server closes */
  return c->barrier;
}

static void fuzz_exchange(fuzz_conn_t *c) {
  uint64_t deadline = fuzz_now_ms() + FZ_TIMEOUT_MS;
  bool quiet_ends = c->model->close == 0 && c->model->tail_open; /* no barrier possible */
  char buf[65536];
  while (!fuzz_done(c)) {
    bool to_send = c->sent < c->out.len && !c->send_failed;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN | (to_send ? POLLOUT : 0)};
    uint64_t now = fuzz_now_ms();
    FUZZ_CHECK(now < deadline); /* the server must answer */
    int wait = quiet_ends && !to_send && c->head_done ? FZ_QUIET_MS : (int)(deadline - now);
    int r = poll(&pfd, 1, wait);
    if (r < 0 && errno == EINTR) continue;
    FUZZ_CHECK(r >= 0);
    if (r == 0) {
      if (quiet_ends && !to_send && c->head_done) break;
      continue;
    }
    if (pfd.revents & POLLOUT) {
      size_t end = c->out.len;
      while (c->cuts != NULL && c->cut < c->ncuts && c->cuts[c->cut] <= c->sent) c->cut++;
      if (c->cuts != NULL && c->cut < c->ncuts) end = TT_MIN(end, c->cuts[c->cut]);
      ssize_t w = send(c->fd, c->out.data + c->sent, end - c->sent, MSG_NOSIGNAL);
      if (w > 0) c->sent += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR) c->send_failed = true;
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
      if (n > 0) {
        tt_str_append(&c->in, buf, (size_t)n);
        fuzz_parse_in(c);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        c->eof = true;
      }
    }
  }
}

/* ================================================================ entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  unsigned mode = data[0];
  if ((mode & 0xc0) == 0xc0) {
    fuzz_refused(mode);
    return 0;
  }

  fuzz_client_t cl = {.rng = 0x9e3779b9u ^ (uint32_t)size * 2654435761u};
  for (size_t i = 0; i < size && i < 64; i++) cl.rng = cl.rng * 31 + data[i] + 1;
  tt_str_t req = {0};
  fuzz_request(mode, &req, &cl.deflate, &cl.no_ctx);
  fuzz_cursor_t all = {data + 1, size - 1, 0};
  while (all.i < all.n) {
    unsigned kind = fuzz_byte(&all), len = fuzz_byte(&all);
    size_t n = TT_MIN((size_t)len, all.n - all.i);
    fuzz_cursor_t rec = {all.p + all.i, n, 0};
    all.i += n;
    fuzz_record(&cl, kind, &rec);
  }

  fuzz_model_t model = {.deflate = cl.deflate, .no_ctx = cl.no_ctx};
  fuzz_model_run(&model, (const uint8_t *)cl.s.data, cl.s.len);
  cl.s.len = model.consumed; /* the server reads no further */
  if (model.close == 0 && !model.tail_open) fuzz_put_frame(&cl, 0x89, true, 0, "fuzz-barrier", 12);

  fuzz_conn_t c = {.mode = mode, .model = &model, .open_sub = (mode & 8) != 0};
  fz_current = &c;
  tt_str_append(&c.out, req.data, req.len);
  size_t *cuts = NULL;
  if (mode & 16) {
    /* the request, then each record on its own: offsets in request + frames,
     * which is how `out` ends up whether the frames wait for the 101 or not */
    cuts = tt_malloc((cl.ncuts + 1) * sizeof(*cuts));
    cuts[0] = req.len;
    for (size_t i = 0; i < cl.ncuts; i++) cuts[i + 1] = req.len + cl.cuts[i];
    c.cuts = cuts;
    c.ncuts = cl.ncuts + 1;
  }
  if (mode & 4) tt_str_append(&c.out, cl.s.data ? cl.s.data : "", cl.s.len);
  else tt_str_append(&c.pending, cl.s.data ? cl.s.data : "", cl.s.len);

  c.fd = fuzz_connect();

  fuzz_exchange(&c);

  if (getenv("FUZZ_WS_VERBOSE") != NULL) fuzz_dump();
  /* What the model says must have happened, has. */
  FUZZ_CHECK(c.head_done && c.welcome);
  size_t want_direct = model.nmsgs + (c.open_sub ? 1 : 0);
  if (model.close != 0) {
    FUZZ_CHECK(c.closed);
    FUZZ_CHECK(c.close_code == model.close);
    FUZZ_CHECK(c.eof); /* and the server hangs up after its close */
    FUZZ_CHECK(c.direct == want_direct && c.pongs == model.npings);
  } else if (!model.tail_open) {
    FUZZ_CHECK(!c.closed && c.barrier);
    FUZZ_CHECK(c.direct == want_direct && c.pongs == model.npings);
  } else {
    FUZZ_CHECK(!c.closed && !c.eof);
    FUZZ_CHECK(c.direct <= want_direct && c.pongs <= model.npings);
  }

  fuzz_release(c.fd);
  fz_current = NULL;

  if (++fz.inputs % 256 == 0) fz.engine->vt->sweep(fz.engine, tt_now_ms());

  free(cuts);
  free(cl.cuts);
  if (cl.z_ready) deflateEnd(&cl.z);
  tt_str_free(&cl.s);
  tt_str_free(&req);
  tt_str_free(&c.out);
  tt_str_free(&c.pending);
  tt_str_free(&c.in);
  fuzz_model_free(&model);
  return 0;
}
