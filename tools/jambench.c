/*
 * jambench: jam-session (room) relay benchmark for tutti.
 *
 * One file, one thread, one epoll loop, libc only (built like ssebench). It
 *   1. opens R x P WebSockets to GET /ws on a loopback server (non-blocking connects, at
 *      most JAMB_CONNECT_INFLIGHT handshakes at a time; a random Sec-WebSocket-Key, the
 *      101 and Sec-WebSocket-Accept checked, permessage-deflate never offered) and waits
 *      for every `welcome`;
 *   2. makes R rooms: participant 0 of each room sends `session:create` (with
 *      max_participants P) and, once its `session:created` names the room code, the
 *      other P-1 send `session:join`; it waits for every `session:joined`;
 *   3. has every participant send `event:broadcast` events at E/s for D seconds, paced
 *      by a timerfd on one schedule spread evenly over all R x P senders (sender i sends
 *      its n-th event at t0 + (n * R * P + i) / (R * P * E) s), each with an `id` (so
 *      the server acknowledges it) and a payload {"t":T,"n":N,"s":S}: T the send time
 *      (CLOCK_MONOTONIC ns, taken just before the frame is queued), N the sender's
 *      counter, S the sender's index; --payload pads it with "p" to that many bytes;
 *   4. parses every connection incrementally (unmasked server frames with 7/16/64-bit
 *      lengths split across reads, fragmented messages, pings answered with masked
 *      pongs, a close frame answered and counted as an early close) and, for each
 *      `event:broadcast` received, records relay latency = receive time - T, checks the
 *      room code, that it is not the receiver's own event (sender_id and S), that
 *      sender_id is the sender's user_id, that seq increases on every receiver and names
 *      one event per room (acks included), and counts per (sender, receiver) pair the
 *      counters received: lost, duplicated and out of order (a counter below one already
 *      received from the same sender);
 *   5. stops by itself (every expected delivery and ack seen, or --timeout seconds after
 *      the last send), prints a table and, with --json, one JSON line.
 *
 * Each event should reach the P-1 other participants of its room, so the expected
 * deliveries are sent x (P-1). Latency is measured from the actual send, not from the
 * scheduled one (no coordinated-omission correction): a load generator that falls behind
 * shows as a lower achieved send rate.
 *
 * Server figures (--server-pid): VmRSS from /proc/PID/status before connecting, once
 * every room is joined and at the end; CPU time between the first send and the stop,
 * summed over the server's threads from /proc/PID/task/TID/schedstat (ns), with utime +
 * stime from /proc/PID/stat (clock ticks) beside it, and per delivery. On loopback the
 * sender's syscalls also carry the receiver's TCP processing.
 *
 * Exit status: 0 when every expected delivery and ack arrived with no duplicate, no
 * out-of-order delivery, no own echo, no wrong room or sender, no seq error, no error
 * message and no early close; 1 when the run completed but is not clean; 2 on a usage or
 * setup error (the table is still printed when the connect or join phase fails).
 *
 * Build: cc -O2 -Wall -Wextra -Werror -std=c11 -D_GNU_SOURCE -o jambench jambench.c
 * Only loopback addresses (127.0.0.0/8) are accepted as targets.
 */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------
 * Limits and constants
 * ---------------------------------------------------------------------------------- */

#define JAMB_CONNECT_INFLIGHT 256 /* handshakes in progress at once */
#define JAMB_HEAD_MAX (16 * 1024) /* largest HTTP response head accepted */
#define JAMB_MSG_SLACK (64 * 1024) /* longest server message = payload + this */
#define JAMB_READ_CHUNK (64 * 1024) /* bytes read per readiness per socket */
#define JAMB_MAX_EVENTS 1024        /* epoll_wait batch */
#define JAMB_TICK_MS 50             /* longest epoll sleep: deadline check granularity */
#define JAMB_ID_MAX 64              /* longest user_id kept */
#define JAMB_CODE_MAX 32            /* longest room code (HUB_ROOM_CODE_MAX) */
#define JAMB_STATE_MAX ((uint64_t)1 << 30) /* bytes of per-pair bitmaps and tables allowed */

#define JAMB_TAG_CONN 1u
#define JAMB_TAG_TIMER 2u

#define JAMB_NS 1000000000ull

#define JAMB_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ------------------------------------------------------------------------------------
 * Small utilities: time, fatal errors, growable buffers, JSON field lookups
 * ---------------------------------------------------------------------------------- */

/* Monotonic time in ns; the same clock the payload timestamps use. */
static uint64_t jamb_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * JAMB_NS + (uint64_t)ts.tv_nsec;
}

/* Prints "jambench: msg" to stderr and exits with status 2 (setup error). */
static void jamb_die(const char *fmt, ...) {
  va_list ap;
  fputs("jambench: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(2);
}

static void *jamb_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL)
    jamb_die("out of memory (%zu bytes)", n);
  return q;
}

static void *jamb_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (p == NULL)
    jamb_die("out of memory (%zu x %zu bytes)", count, size);
  return p;
}

/* A growable byte buffer. `p` is owned by the buffer and may move on every append. */
typedef struct jamb_buf_s {
  char *p;
  size_t len;
  size_t cap;
} jamb_buf_t;

/* Makes room for at least `extra` more bytes. */
static void jamb_buf_reserve(jamb_buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  b->p = jamb_xrealloc(b->p, cap);
  b->cap = cap;
}

/* Appends n bytes; returns 0, or -ENOSPC when the result would exceed max bytes
 * (the buffer is then unchanged). */
static int jamb_buf_append(jamb_buf_t *b, const char *src, size_t n, size_t max) {
  if (b->len + n > max)
    return -ENOSPC;
  jamb_buf_reserve(b, n);
  memcpy(b->p + b->len, src, n);
  b->len += n;
  return 0;
}

/* Drops the first n bytes, keeping the rest at the front. */
static void jamb_buf_consume(jamb_buf_t *b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

static void jamb_buf_free(jamb_buf_t *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* Writes `"key"` (keys of at most 29 bytes) to pat; returns its length. */
static int jamb_json_key(char pat[32], const char *key) {
  size_t kl = strnlen(key, 29);
  pat[0] = '"';
  memcpy(pat + 1, key, kl);
  pat[kl + 1] = '"';
  return (int)kl + 2;
}

/* Finds `"key":` in [p, p+n) and parses the unsigned integer after it (spaces allowed
 * around the colon). Occurrences not followed by a colon and a number are skipped.
 * Returns 0, or -ENOENT when absent. */
static int jamb_json_u64(const char *p, size_t n, const char *key, uint64_t *out) {
  char pat[32];
  int plen = jamb_json_key(pat, key);
  const char *end = p + n, *from = p;
  while (from < end) {
    const char *at = memmem(from, (size_t)(end - from), pat, (size_t)plen);
    if (at == NULL)
      return -ENOENT;
    from = at + 1;
    at += plen;
    while (at < end && (*at == ' ' || *at == '\t'))
      at++;
    if (at == end || *at != ':')
      continue;
    at++;
    while (at < end && (*at == ' ' || *at == '\t'))
      at++;
    if (at == end || *at < '0' || *at > '9')
      continue;
    uint64_t v = 0;
    while (at < end && *at >= '0' && *at <= '9') {
      if (v > (UINT64_MAX - 9) / 10)
        return -ENOENT;
      v = v * 10 + (uint64_t)(*at - '0');
      at++;
    }
    *out = v;
    return 0;
  }
  return -ENOENT;
}

/* Finds `"key":"` in [p, p+n) (spaces allowed around the colon) and sets *val, *vlen
 * to the string value up to the next quote (the values read here need no escapes).
 * Occurrences not followed by a colon and a string are skipped. Returns 0, or -ENOENT. */
static int jamb_json_str(const char *p, size_t n, const char *key, const char **val,
                         size_t *vlen) {
  char pat[32];
  int plen = jamb_json_key(pat, key);
  const char *end = p + n, *from = p;
  while (from < end) {
    const char *at = memmem(from, (size_t)(end - from), pat, (size_t)plen);
    if (at == NULL)
      return -ENOENT;
    from = at + 1;
    at += plen;
    while (at < end && (*at == ' ' || *at == '\t'))
      at++;
    if (at == end || *at != ':')
      continue;
    at++;
    while (at < end && (*at == ' ' || *at == '\t'))
      at++;
    if (at == end || *at != '"')
      continue;
    at++;
    const char *q = memchr(at, '"', (size_t)(end - at));
    if (q == NULL)
      return -ENOENT;
    *val = at;
    *vlen = (size_t)(q - at);
    return 0;
  }
  return -ENOENT;
}

/* 1 when [a, a+alen) equals the NUL-terminated s. */
static int jamb_eq(const char *a, size_t alen, const char *s) {
  return alen == strlen(s) && memcmp(a, s, alen) == 0;
}

/* ------------------------------------------------------------------------------------
 * WebSocket helpers: PRNG (keys and masks), SHA-1 and base64 (Sec-WebSocket-Accept)
 * ---------------------------------------------------------------------------------- */

static uint64_t jamb_rng_state;

/* xorshift64*: plenty for handshake nonces and frame masks of a benchmark client. */
static uint64_t jamb_rand(void) {
  uint64_t x = jamb_rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  jamb_rng_state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static void jamb_rand_seed(void) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
    seed = jamb_now() ^ ((uint64_t)getpid() << 32);
  jamb_rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

static uint32_t jamb_rol32(uint32_t x, unsigned n) {
  return (x << n) | (x >> (32u - n));
}

/* SHA-1 of len bytes (FIPS 180-4), only for the 60-byte handshake string. */
static void jamb_sha1(const void *data, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
  const uint8_t *in = data;
  uint64_t bits = (uint64_t)len * 8;
  size_t total = ((len + 8) / 64 + 1) * 64; /* message + 0x80 + zeros + 64-bit length */
  for (size_t off = 0; off < total; off += 64) {
    uint8_t blk[64];
    for (size_t i = 0; i < 64; i++) {
      size_t k = off + i;
      if (k < len)
        blk[i] = in[k];
      else if (k == len)
        blk[i] = 0x80;
      else if (k >= total - 8)
        blk[i] = (uint8_t)(bits >> (8 * (total - 1 - k)));
      else
        blk[i] = 0;
    }
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)blk[4 * i] << 24 | (uint32_t)blk[4 * i + 1] << 16 |
             (uint32_t)blk[4 * i + 2] << 8 | (uint32_t)blk[4 * i + 3];
    for (int i = 16; i < 80; i++)
      w[i] = jamb_rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999u;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1u;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDCu;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6u;
      }
      uint32_t t = jamb_rol32(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = jamb_rol32(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h[i] >> 8);
    out[4 * i + 3] = (uint8_t)h[i];
  }
}

/* Standard base64 with padding; out needs 4 * ceil(n / 3) + 1 bytes. */
static void jamb_base64(const uint8_t *in, size_t n, char *out) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n)
      v |= in[i + 2];
    out[o++] = tab[(v >> 18) & 63];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? tab[v & 63] : '=';
  }
  out[o] = '\0';
}

/* Sec-WebSocket-Accept for a 24-character key: base64(SHA-1(key + GUID)), 28 chars. */
static void jamb_ws_accept(const char key[24], char out[29]) {
  char cat[24 + sizeof JAMB_WS_GUID];
  memcpy(cat, key, 24);
  memcpy(cat + 24, JAMB_WS_GUID, sizeof JAMB_WS_GUID - 1);
  uint8_t d[20];
  jamb_sha1(cat, 24 + sizeof JAMB_WS_GUID - 1, d);
  jamb_base64(d, sizeof d, out);
}

/* ------------------------------------------------------------------------------------
 * Latency histogram: log-linear buckets, 64 per power of two (error under 1.6 %),
 * covering every uint64_t value of nanoseconds in 3776 counters.
 * ---------------------------------------------------------------------------------- */

#define JAMB_HIST_SUB 64
#define JAMB_HIST_BUCKETS (59 * JAMB_HIST_SUB)

typedef struct jamb_hist_s {
  uint64_t count[JAMB_HIST_BUCKETS];
  uint64_t n;
  uint64_t max;
} jamb_hist_t;

static unsigned jamb_hist_index(uint64_t v) {
  if (v < JAMB_HIST_SUB)
    return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= 6 */
  return (e - 5u) * JAMB_HIST_SUB + (unsigned)((v >> (e - 6u)) & (JAMB_HIST_SUB - 1));
}

/* Middle of bucket i, the value reported for a percentile falling in it. */
static uint64_t jamb_hist_value(unsigned i) {
  if (i < JAMB_HIST_SUB)
    return i;
  unsigned e = i / JAMB_HIST_SUB + 5u;
  uint64_t sub = i % JAMB_HIST_SUB;
  uint64_t low = (JAMB_HIST_SUB + sub) << (e - 6u);
  return low + ((1ull << (e - 6u)) >> 1);
}

static void jamb_hist_add(jamb_hist_t *h, uint64_t v) {
  h->count[jamb_hist_index(v)]++;
  h->n++;
  if (v > h->max)
    h->max = v;
}

/* Value (ns) at quantile q in [0, 1]; never above the exact maximum. 0 when empty. */
static uint64_t jamb_hist_quantile(const jamb_hist_t *h, double q) {
  if (h->n == 0)
    return 0;
  uint64_t rank = (uint64_t)(q * (double)h->n);
  if (rank < 1)
    rank = 1;
  if (rank > h->n)
    rank = h->n;
  uint64_t seen = 0;
  for (unsigned i = 0; i < JAMB_HIST_BUCKETS; i++) {
    seen += h->count[i];
    if (seen >= rank) {
      uint64_t v = jamb_hist_value(i);
      return v > h->max ? h->max : v;
    }
  }
  return h->max;
}

/* ------------------------------------------------------------------------------------
 * HTTP response head (the 101 of the upgrade)
 * ---------------------------------------------------------------------------------- */

typedef struct jamb_head_s {
  int status;        /* status code, 0 if the status line is unreadable */
  int upgrade_ws;    /* Upgrade: websocket */
  int conn_upgrade;  /* Connection: has the upgrade token */
  int ext;           /* a Sec-WebSocket-Extensions header (none was offered) */
  char accept[64];   /* Sec-WebSocket-Accept, trimmed; "" when absent */
} jamb_head_t;

/* Parses a response head of `len` bytes (status line and headers, without the final
 * empty line). Header names are matched case-insensitively. */
static void jamb_head_parse(const char *p, size_t len, jamb_head_t *h) {
  memset(h, 0, sizeof *h);
  if (len >= 12 && memcmp(p, "HTTP/1.", 7) == 0 && p[8] == ' ' && p[9] >= '1' && p[9] <= '5' &&
      p[10] >= '0' && p[10] <= '9' && p[11] >= '0' && p[11] <= '9')
    h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  const char *end = p + len;
  const char *line = memchr(p, '\n', len);
  while (line != NULL && line + 1 < end) {
    line++;
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    size_t llen = (size_t)((eol ? eol : end) - line);
    char buf[256];
    size_t cl = llen < sizeof buf - 1 ? llen : sizeof buf - 1;
    memcpy(buf, line, cl);
    while (cl > 0 && (buf[cl - 1] == '\r' || buf[cl - 1] == ' ' || buf[cl - 1] == '\t'))
      cl--;
    buf[cl] = '\0';
    if (strncasecmp(buf, "upgrade:", 8) == 0 && strcasestr(buf + 8, "websocket"))
      h->upgrade_ws = 1;
    else if (strncasecmp(buf, "connection:", 11) == 0 && strcasestr(buf + 11, "upgrade"))
      h->conn_upgrade = 1;
    else if (strncasecmp(buf, "sec-websocket-extensions:", 25) == 0)
      h->ext = 1;
    else if (strncasecmp(buf, "sec-websocket-accept:", 21) == 0) {
      const char *v = buf + 21;
      while (*v == ' ' || *v == '\t')
        v++;
      size_t al = strlen(v) < sizeof h->accept - 1 ? strlen(v) : sizeof h->accept - 1;
      memcpy(h->accept, v, al);
      h->accept[al] = '\0';
    }
    line = eol;
  }
}

/* Returns the offset just past "\r\n\r\n" in [p, p+n), or 0 when not there yet. */
static size_t jamb_head_end(const char *p, size_t n) {
  const char *at = memmem(p, n, "\r\n\r\n", 4);
  return at ? (size_t)(at - p) + 4 : 0;
}

/* ------------------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------------------- */

typedef struct jamb_opts_s {
  const char *host;
  struct in_addr addr; /* resolved host, always inside 127.0.0.0/8 */
  unsigned port;
  uint32_t rooms;        /* R */
  uint32_t participants; /* P per room */
  double rate;           /* E events/s per participant */
  double duration_s;     /* D */
  uint32_t payload;      /* target payload size in bytes (0: just t, n, s) */
  long server_pid;       /* 0 = no server figures */
  double timeout_s;
  int json;
} jamb_opts_t;

static void jamb_usage(FILE *f) {
  fputs(
      "usage: jambench --port P [options]\n"
      "  --host ADDR         loopback address of the server (127.0.0.1)\n"
      "  --port P            server port (required)\n"
      "  --rooms R           rooms to create (10)\n"
      "  --participants P    WebSocket participants per room, the creator included (4)\n"
      "  --rate E            event:broadcast events per second per participant (20)\n"
      "  --duration D        seconds of sending (5)\n"
      "  --payload BYTES     pad each event's payload to about this size (0: none)\n"
      "  --server-pid PID    read the server's RSS and CPU time from /proc/PID\n"
      "  --timeout S         bounds the connect phase and the join phase, and how long\n"
      "                      to wait for deliveries after the last send (10)\n"
      "  --json              also print one JSON line with the results\n",
      f);
}

static double jamb_parse_num(const char *opt, const char *s, double min, double max) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || !(v >= min && v <= max))
    jamb_die("%s: '%s' is not a number in [%g, %g]", opt, s, min, max);
  return v;
}

static void jamb_opts_parse(int argc, char **argv, jamb_opts_t *o) {
  static const struct option longopts[] = {
      {"host", required_argument, NULL, 'h'},
      {"port", required_argument, NULL, 'p'},
      {"rooms", required_argument, NULL, 'R'},
      {"participants", required_argument, NULL, 'P'},
      {"rate", required_argument, NULL, 'E'},
      {"duration", required_argument, NULL, 'D'},
      {"payload", required_argument, NULL, 'b'},
      {"server-pid", required_argument, NULL, 's'},
      {"timeout", required_argument, NULL, 't'},
      {"json", no_argument, NULL, 'j'},
      {"help", no_argument, NULL, 'H'},
      {NULL, 0, NULL, 0},
  };
  *o = (jamb_opts_t){
      .host = "127.0.0.1",
      .rooms = 10,
      .participants = 4,
      .rate = 20,
      .duration_s = 5,
      .timeout_s = 10,
  };
  int c;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case 'h': o->host = optarg; break;
      case 'p': o->port = (unsigned)jamb_parse_num("--port", optarg, 1, 65535); break;
      case 'R': o->rooms = (uint32_t)jamb_parse_num("--rooms", optarg, 1, 1000000); break;
      case 'P':
        o->participants = (uint32_t)jamb_parse_num("--participants", optarg, 1, 1000);
        break;
      case 'E': o->rate = jamb_parse_num("--rate", optarg, 0.01, 100000); break;
      case 'D': o->duration_s = jamb_parse_num("--duration", optarg, 0.01, 3600); break;
      case 'b': o->payload = (uint32_t)jamb_parse_num("--payload", optarg, 0, 16000); break;
      case 's': o->server_pid = (long)jamb_parse_num("--server-pid", optarg, 1, 4194304); break;
      case 't': o->timeout_s = jamb_parse_num("--timeout", optarg, 0.1, 3600); break;
      case 'j': o->json = 1; break;
      case 'H': jamb_usage(stdout); exit(0);
      default: jamb_usage(stderr); exit(2);
    }
  }
  if (optind < argc)
    jamb_die("unexpected argument '%s' (see --help)", argv[optind]);
  if (o->port == 0)
    jamb_die("--port is required (see --help)");
  const char *host = strcmp(o->host, "localhost") == 0 ? "127.0.0.1" : o->host;
  if (inet_pton(AF_INET, host, &o->addr) != 1)
    jamb_die("--host must be an IPv4 loopback address, got '%s'", o->host);
  if ((ntohl(o->addr.s_addr) >> 24) != 127)
    jamb_die("--host %s is not loopback: this tool only targets 127.0.0.0/8", o->host);
  if ((uint64_t)o->rooms * o->participants > 60000)
    jamb_die("--rooms x --participants is over 60000 connections (one source address)");
}

/* ------------------------------------------------------------------------------------
 * Server figures from /proc
 * ---------------------------------------------------------------------------------- */

/* VmRSS of pid in KiB, or -1 when unreadable. */
static long jamb_proc_rss_kib(long pid) {
  char path[64], line[256];
  long kib = -1;
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

/* utime + stime of pid (all its threads, live and exited) in clock ticks, or -1. */
static long long jamb_proc_cpu_ticks(long pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
  if (p == NULL)
    return -1;
  p++;
  /* After ')': field 3 (state) is token 0, so utime (14) is token 11, stime token 12. */
  long long utime = -1, stime = -1;
  char *save = NULL;
  int idx = 0;
  for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save), idx++) {
    if (idx == 11)
      utime = strtoll(tok, NULL, 10);
    else if (idx == 12) {
      stime = strtoll(tok, NULL, 10);
      break;
    }
  }
  return utime < 0 || stime < 0 ? -1 : utime + stime;
}

/* Time on CPU of all live threads of pid in ns, summed from /proc/PID/task/TID/schedstat
 * (first field), or -1 when unreadable. */
static long long jamb_proc_cpu_ns(long pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/task", pid);
  DIR *d = opendir(path);
  if (d == NULL)
    return -1;
  long long sum = 0;
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    char file[128], line[128];
    snprintf(file, sizeof file, "/proc/%ld/task/%.20s/schedstat", pid, e->d_name);
    FILE *f = fopen(file, "r");
    if (f == NULL)
      continue; /* the thread just exited */
    if (fgets(line, sizeof line, f)) {
      sum += strtoll(line, NULL, 10);
      found = 1;
    }
    fclose(f);
  }
  closedir(d);
  return found ? sum : -1;
}

/* ------------------------------------------------------------------------------------
 * Run state
 * ---------------------------------------------------------------------------------- */

enum {
  JAMB_CONN_IDLE,       /* not started */
  JAMB_CONN_CONNECTING, /* connect() in progress or request not fully written */
  JAMB_CONN_HEAD,       /* reading the response head */
  JAMB_CONN_OPEN,       /* reading frames */
  JAMB_CONN_CLOSED      /* closed by either side or failed; fd is -1 */
};

enum { JAMB_PHASE_CONNECT, JAMB_PHASE_JOIN, JAMB_PHASE_RUN };

/* Participant i is participant i % P of room i / P; participant 0 creates the room. */
typedef struct jamb_conn_s {
  int fd;
  uint8_t state;
  uint8_t welcomed;  /* `welcome` received */
  uint8_t joined;    /* `session:joined` received */
  uint8_t want_out;  /* EPOLLOUT registered for `out` */
  uint8_t ws_frag;   /* inside a fragmented message */
  uint8_t ws_msg_op; /* opcode of that message */
  uint8_t user_id_len;
  uint32_t req_off; /* request bytes already written */
  uint32_t room;
  uint32_t local;
  char ws_key[24]; /* Sec-WebSocket-Key sent (base64, no NUL) */
  char user_id[JAMB_ID_MAX];
  jamb_buf_t carry; /* response head, or the start of a frame split across reads */
  jamb_buf_t data;  /* the fragments of a fragmented message */
  jamb_buf_t out;   /* frames not yet written */
  uint64_t last_seq;  /* highest seq received (0 before any) */
  uint64_t last_ack_seq;
  uint32_t sent;      /* events sent: its counters are 0 .. sent-1 */
  uint64_t delivered; /* distinct events received */
} jamb_conn_t;

typedef struct jamb_room_s {
  char code[JAMB_CODE_MAX + 1];
  uint8_t created; /* `session:created` received */
  uint32_t joined;
  uint64_t *seq_owner; /* per seq: (sender local + 1) << 32 | (counter + 1); 0 = unseen */
  uint64_t seq_cap;    /* entries of seq_owner */
  uint64_t max_seq;    /* highest seq seen in an event or an ack */
} jamb_room_t;

typedef struct jamb_s {
  jamb_opts_t o;
  int ep;
  int tfd;        /* timerfd pacing the sends */
  char req[512];  /* the upgrade request, the same for all but the key */
  size_t req_len;
  size_t req_key_off;
  size_t msg_max; /* longest server message accepted */
  int phase;

  uint32_t n;         /* connections: R x P */
  uint32_t per;       /* events per sender: round(E x D) */
  jamb_conn_t *conns;
  jamb_room_t *rooms;
  /* per (receiver, sender local) pair, index receiver * P + sender local */
  uint64_t *pair_seen; /* bitmaps of `per` bits: counters received */
  size_t pair_words;
  uint32_t *pair_count; /* distinct counters received */
  int64_t *pair_max;    /* highest counter received; -1 before any */
  /* per (sender, counter), index sender * per + counter */
  uint64_t *sent_t; /* send time (ns); 0 = not sent */
  uint8_t *acked;

  /* setup */
  uint32_t started;
  uint32_t opened;   /* 101 received */
  uint32_t welcomed;
  uint32_t connect_failed;
  uint32_t rooms_created;
  uint32_t joined;
  uint32_t setup_errors;
  uint32_t dup_codes; /* a room code given to two rooms */

  /* sending */
  uint64_t total;  /* events on the schedule: n x per */
  uint64_t next_k; /* next event of the schedule */
  uint64_t sent;
  uint64_t send_skipped; /* scheduled on a closed connection */
  uint64_t acked_n;
  uint64_t ack_dups;
  uint64_t ack_bad; /* acks naming no event we sent, or another room */

  /* receiving */
  uint64_t delivered; /* distinct (receiver, event) pairs */
  uint64_t dups;
  uint64_t ooo;
  uint64_t own_echo;
  uint64_t wrong_room;      /* an event naming another room, or from a sender of another */
  uint64_t sender_mismatch; /* sender_id is not the user_id of the payload's sender */
  uint64_t seq_disorder;    /* a receiver's seq not above its previous one */
  uint64_t seq_conflict;    /* one seq of a room naming two events */
  uint64_t seq_range;       /* a seq above what the room can have */
  uint64_t seq_gaps;        /* seqs of a room never seen, below its highest (at the end) */
  uint64_t foreign;         /* event:broadcast whose payload is not ours */
  uint64_t join_notices;    /* session:user-joined */
  uint64_t leave_notices;   /* session:user-left */
  uint64_t errors;          /* error messages during the run */
  uint64_t rate_limited;    /* ... of them RATE_LIMITED */
  uint64_t other_msgs;
  uint64_t pings;
  uint64_t closes;
  uint32_t closed;
  uint32_t closed_early;
  char conn_error[256];  /* the first connection failure */
  char setup_error[256]; /* the first error of create/join */
  char run_error[256];   /* the first error message during the run */
  jamb_hist_t lat;
  jamb_hist_t ack_lat;

  /* timeline (CLOCK_MONOTONIC ns) */
  uint64_t t_connect_start;
  uint64_t t_connected;
  uint64_t t_joined;
  uint64_t t0; /* the schedule's start */
  uint64_t t_first_send;
  uint64_t t_last_send;
  uint64_t t_last_delivery;
  uint64_t t_end;

  /* server figures (-1 = unknown) */
  long rss_before;
  long rss_joined;
  long rss_end;
  long long cpu_start; /* utime + stime ticks */
  long long cpu_end;
  long long sched_start; /* schedstat ns */
  long long sched_end;

  const char *stop_reason;
} jamb_t;

static jamb_t g;

/* Keeps the first note in dst, made safe inside the table and a JSON string. */
static void jamb_note(char *dst, size_t cap, const char *fmt, ...) {
  if (dst[0] != '\0')
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
  for (char *p = dst; *p; p++)
    if (*p == '"')
      *p = '\'';
    else if (*p == '\\' || (unsigned char)*p < 32)
      *p = ' ';
}

static void jamb_ep_ctl(int op, int fd, uint32_t events, uint32_t tag, uint32_t idx) {
  struct epoll_event ev = {.events = events, .data.u64 = ((uint64_t)tag << 32) | idx};
  if (epoll_ctl(g.ep, op, fd, &ev) != 0)
    jamb_die("epoll_ctl: %s", strerror(errno));
}

static uint32_t jamb_idx(const jamb_conn_t *c) {
  return (uint32_t)(c - g.conns);
}

/* ------------------------------------------------------------------------------------
 * Connections: life and writing
 * ---------------------------------------------------------------------------------- */

/* Closes c (if open) and counts it. `why` non-NULL marks a close worth reporting. */
static void jamb_conn_close(jamb_conn_t *c, const char *why) {
  if (c->state == JAMB_CONN_CLOSED)
    return;
  if (c->fd >= 0) {
    epoll_ctl(g.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
  if (!c->welcomed)
    g.connect_failed++;
  else if (why != NULL)
    g.closed_early++;
  if (why != NULL)
    jamb_note(g.conn_error, sizeof g.conn_error, "participant %u (room %u): %s", jamb_idx(c),
              c->room, why);
  c->state = JAMB_CONN_CLOSED;
  g.closed++;
  jamb_buf_free(&c->carry);
  jamb_buf_free(&c->data);
  jamb_buf_free(&c->out);
}

/* Writes what is queued in c->out; registers for writability while some is left.
 * Returns 0, or -1 when c was closed. */
static int jamb_conn_flush(jamb_conn_t *c) {
  while (c->out.len > 0) {
    ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      char why[96];
      snprintf(why, sizeof why, "send: %s", strerror(errno));
      jamb_conn_close(c, why);
      return -1;
    }
    jamb_buf_consume(&c->out, (size_t)w);
  }
  int want = c->out.len > 0;
  if (want != c->want_out) {
    jamb_ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN | (want ? EPOLLOUT : 0u), JAMB_TAG_CONN,
                jamb_idx(c));
    c->want_out = (uint8_t)want;
  }
  return 0;
}

/* Queues one masked frame (FIN set, opcode op) with payload [p, p+len); does not write. */
static void jamb_ws_queue(jamb_conn_t *c, unsigned op, const void *p, size_t len) {
  uint8_t h[14];
  size_t hl = 2;
  h[0] = (uint8_t)(0x80u | op);
  if (len < 126) {
    h[1] = (uint8_t)(0x80u | len);
  } else if (len < 65536) {
    h[1] = 0x80u | 126u;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    hl = 4;
  } else {
    h[1] = 0x80u | 127u;
    for (int k = 0; k < 8; k++)
      h[2 + k] = (uint8_t)((uint64_t)len >> (56 - 8 * k));
    hl = 10;
  }
  uint32_t mask = (uint32_t)jamb_rand();
  memcpy(h + hl, &mask, 4);
  hl += 4;
  jamb_buf_reserve(&c->out, hl + len);
  char *o = c->out.p + c->out.len;
  memcpy(o, h, hl);
  const uint8_t *in = p, *m = h + hl - 4;
  for (size_t i = 0; i < len; i++)
    o[hl + i] = (char)(in[i] ^ m[i & 3]);
  c->out.len += hl + len;
}

/* Queues a text message and writes what it can. Returns 0, or -1 when c was closed. */
static int jamb_ws_send_text(jamb_conn_t *c, const char *p, size_t len) {
  if (c->state != JAMB_CONN_OPEN)
    return -1;
  jamb_ws_queue(c, 0x1, p, len);
  return jamb_conn_flush(c);
}

/* Writes what is left of the upgrade request. Returns 0 when all is written, 1 when it
 * must wait for writability, -1 on error (c closed). */
static int jamb_conn_send_request(jamb_conn_t *c) {
  char req[sizeof g.req];
  memcpy(req, g.req, g.req_len);
  memcpy(req + g.req_key_off, c->ws_key, sizeof c->ws_key);
  while (c->req_off < g.req_len) {
    ssize_t w = send(c->fd, req + c->req_off, g.req_len - c->req_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 1;
      if (errno == EINTR)
        continue;
      char why[96];
      snprintf(why, sizeof why, "send: %s", strerror(errno));
      jamb_conn_close(c, why);
      return -1;
    }
    c->req_off += (uint32_t)w;
  }
  jamb_ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN, JAMB_TAG_CONN, jamb_idx(c));
  c->state = JAMB_CONN_HEAD;
  return 0;
}

/* Starts connection i: socket, non-blocking connect. */
static void jamb_conn_start(uint32_t i) {
  jamb_conn_t *c = &g.conns[i];
  g.started++;
  uint8_t nonce[16];
  uint64_t r0 = jamb_rand(), r1 = jamb_rand();
  memcpy(nonce, &r0, 8);
  memcpy(nonce + 8, &r1, 8);
  char key[25];
  jamb_base64(nonce, sizeof nonce, key);
  memcpy(c->ws_key, key, sizeof c->ws_key);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (c->fd < 0)
    jamb_die("socket: %s (participant %u)", strerror(errno), i);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in dst = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)g.o.port), .sin_addr = g.o.addr};
  c->state = JAMB_CONN_CONNECTING;
  int rc = connect(c->fd, (struct sockaddr *)&dst, sizeof dst);
  if (rc != 0 && errno != EINPROGRESS) {
    char why[96];
    snprintf(why, sizeof why, "connect: %s", strerror(errno));
    close(c->fd); /* not in epoll yet */
    c->fd = -1;
    jamb_conn_close(c, why);
    return;
  }
  jamb_ep_ctl(EPOLL_CTL_ADD, c->fd, EPOLLOUT, JAMB_TAG_CONN, i);
  if (rc == 0)
    jamb_conn_send_request(c);
}

/* ------------------------------------------------------------------------------------
 * Rooms: create and join
 * ---------------------------------------------------------------------------------- */

static const char *const jamb_instruments[] = {"drums", "bass", "piano", "guitar", "sax", "voice"};

/* Participant 0 of room r asks for the room. */
static void jamb_create(uint32_t r) {
  jamb_conn_t *c = &g.conns[(size_t)r * g.o.participants];
  char m[256];
  int n = snprintf(m, sizeof m,
                   "{\"type\":\"session:create\",\"name\":\"jambench %" PRIu32
                   "\",\"max_participants\":%" PRIu32
                   ",\"user\":{\"name\":\"p0\",\"instrument\":\"drums\"},\"id\":\"create\"}",
                   r, g.o.participants);
  jamb_ws_send_text(c, m, (size_t)n);
}

/* The other participants of room r join it. */
static void jamb_join_others(uint32_t r) {
  for (uint32_t k = 1; k < g.o.participants; k++) {
    jamb_conn_t *c = &g.conns[(size_t)r * g.o.participants + k];
    char m[256];
    int n = snprintf(m, sizeof m,
                     "{\"type\":\"session:join\",\"room_code\":\"%s\",\"user\":{\"name\":\"p%" PRIu32
                     "\",\"instrument\":\"%s\"},\"id\":\"join\"}",
                     g.rooms[r].code, k, jamb_instruments[k % 6]);
    jamb_ws_send_text(c, m, (size_t)n);
  }
}

/* `session:created` on c. */
static void jamb_on_created(jamb_conn_t *c, const char *p, size_t n) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *code;
  size_t clen;
  if (c->local != 0 || rm->created) {
    g.other_msgs++;
    return;
  }
  if (jamb_json_str(p, n, "room_code", &code, &clen) != 0 || clen == 0 || clen > JAMB_CODE_MAX ||
      strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") < clen) {
    g.setup_errors++;
    jamb_note(g.setup_error, sizeof g.setup_error, "room %u: session:created without a usable room_code: %.*s",
              c->room, (int)(n > 160 ? 160 : n), p);
    return;
  }
  memcpy(rm->code, code, clen);
  rm->code[clen] = '\0';
  rm->created = 1;
  g.rooms_created++;
  for (uint32_t r = 0; r < g.o.rooms; r++)
    if (r != c->room && g.rooms[r].created && strcmp(g.rooms[r].code, rm->code) == 0)
      g.dup_codes++;
  jamb_join_others(c->room);
}

/* `session:joined` on c. */
static void jamb_on_joined(jamb_conn_t *c, const char *p, size_t n) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *v;
  size_t vlen;
  if (c->joined) {
    g.other_msgs++;
    return;
  }
  if (!rm->created || jamb_json_str(p, n, "room_code", &v, &vlen) != 0 ||
      !jamb_eq(v, vlen, rm->code)) {
    g.setup_errors++;
    jamb_note(g.setup_error, sizeof g.setup_error, "participant %u: session:joined for another room: %.*s",
              jamb_idx(c), (int)(n > 160 ? 160 : n), p);
    return;
  }
  if (jamb_json_str(p, n, "user_id", &v, &vlen) != 0 || vlen == 0 || vlen >= JAMB_ID_MAX) {
    g.setup_errors++;
    jamb_note(g.setup_error, sizeof g.setup_error, "participant %u: session:joined without user_id: %.*s",
              jamb_idx(c), (int)(n > 160 ? 160 : n), p);
    return;
  }
  memcpy(c->user_id, v, vlen);
  c->user_id_len = (uint8_t)vlen;
  c->joined = 1;
  rm->joined++;
  g.joined++;
}

/* ------------------------------------------------------------------------------------
 * Events: sending, receiving, acks
 * ---------------------------------------------------------------------------------- */

/* Records that seq of room rm names the event (sender local, counter). */
static void jamb_seq_owner(jamb_room_t *rm, uint64_t seq, uint32_t local, uint32_t counter) {
  if (seq == 0 || seq >= rm->seq_cap) {
    g.seq_range++;
    return;
  }
  uint64_t own = ((uint64_t)local + 1) << 32 | ((uint64_t)counter + 1);
  if (rm->seq_owner[seq] == 0)
    rm->seq_owner[seq] = own;
  else if (rm->seq_owner[seq] != own)
    g.seq_conflict++;
  if (seq > rm->max_seq)
    rm->max_seq = seq;
}

/* Sends event k of the schedule: sender k % n, counter k / n. */
static void jamb_send_event(uint64_t k) {
  uint32_t s = (uint32_t)(k % g.n);
  uint32_t cnt = (uint32_t)(k / g.n);
  jamb_conn_t *c = &g.conns[s];
  if (c->state != JAMB_CONN_OPEN) {
    g.send_skipped++;
    return;
  }
  char m[16384 + 512];
  uint64_t t = jamb_now();
  int len = snprintf(m, sizeof m,
                     "{\"type\":\"event:broadcast\",\"room_code\":\"%s\",\"event_name\":\"note\","
                     "\"payload\":{\"t\":%" PRIu64 ",\"n\":%" PRIu32 ",\"s\":%" PRIu32,
                     g.rooms[c->room].code, t, cnt, s);
  /* the payload so far is after "payload": */
  const char *pl = strstr(m, "\"payload\":") + 10;
  size_t plen = (size_t)(m + len - pl) + 1; /* with the closing brace */
  if (g.o.payload > plen + 7) {
    size_t pad = g.o.payload - plen - 7; /* ,"p":"..." */
    memcpy(m + len, ",\"p\":\"", 6);
    len += 6;
    memset(m + len, 'x', pad);
    len += (int)pad;
    m[len++] = '"';
  }
  len += snprintf(m + len, sizeof m - (size_t)len, "},\"id\":%" PRIu32 "}", cnt);
  g.sent_t[(size_t)s * g.per + cnt] = t;
  c->sent = cnt + 1;
  g.sent++;
  if (g.t_first_send == 0)
    g.t_first_send = t;
  g.t_last_send = t;
  jamb_ws_send_text(c, m, (size_t)len);
}

/* `event:broadcast` on receiver c at `now`. */
static void jamb_on_event(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *v;
  size_t vlen;
  if (jamb_json_str(p, n, "room_code", &v, &vlen) != 0 || !jamb_eq(v, vlen, rm->code)) {
    g.wrong_room++;
    return;
  }
  const char *sid = NULL;
  size_t sidlen = 0;
  int own = 0;
  if (jamb_json_str(p, n, "sender_id", &sid, &sidlen) == 0 && c->user_id_len > 0 &&
      sidlen == c->user_id_len && memcmp(sid, c->user_id, sidlen) == 0)
    own = 1;
  const char *pl = memmem(p, n, "\"payload\":", 10);
  uint64_t seq, t, cnt, s;
  if (pl == NULL || jamb_json_u64(p, (size_t)(pl - p), "seq", &seq) != 0) {
    if (jamb_json_u64(p, n, "seq", &seq) != 0) {
      g.foreign++;
      return;
    }
  }
  if (pl == NULL) {
    g.foreign++;
    return;
  }
  size_t rest = (size_t)(p + n - pl);
  if (jamb_json_u64(pl, rest, "t", &t) != 0 || jamb_json_u64(pl, rest, "n", &cnt) != 0 ||
      jamb_json_u64(pl, rest, "s", &s) != 0 || s >= g.n || cnt >= g.per ||
      g.sent_t[s * g.per + cnt] != t || t > now) {
    g.foreign++;
    return;
  }
  const jamb_conn_t *snd = &g.conns[s];
  if (own || snd == c) {
    g.own_echo++;
    if (own != (snd == c))
      g.sender_mismatch++;
    return;
  }
  if (snd->room != c->room) {
    g.wrong_room++;
    return;
  }
  if (sid == NULL || sidlen != snd->user_id_len || memcmp(sid, snd->user_id, sidlen) != 0)
    g.sender_mismatch++;
  if (seq <= c->last_seq)
    g.seq_disorder++;
  else
    c->last_seq = seq;
  jamb_seq_owner(rm, seq, snd->local, (uint32_t)cnt);
  size_t pair = (size_t)jamb_idx(c) * g.o.participants + snd->local;
  uint64_t *w = &g.pair_seen[pair * g.pair_words + cnt / 64];
  uint64_t bit = 1ull << (cnt % 64);
  if (*w & bit) {
    g.dups++;
    return;
  }
  *w |= bit;
  if ((int64_t)cnt < g.pair_max[pair])
    g.ooo++;
  else
    g.pair_max[pair] = (int64_t)cnt;
  g.pair_count[pair]++;
  c->delivered++;
  g.delivered++;
  jamb_hist_add(&g.lat, now - t);
  g.t_last_delivery = now;
}

/* `event:ack` on sender c at `now`. */
static void jamb_on_ack(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  jamb_room_t *rm = &g.rooms[c->room];
  const char *v;
  size_t vlen;
  uint64_t ref, seq;
  if (jamb_json_str(p, n, "room_code", &v, &vlen) != 0 || !jamb_eq(v, vlen, rm->code) ||
      jamb_json_u64(p, n, "ref", &ref) != 0 || jamb_json_u64(p, n, "seq", &seq) != 0 ||
      ref >= c->sent) {
    g.ack_bad++;
    return;
  }
  size_t at = (size_t)jamb_idx(c) * g.per + ref;
  if (g.acked[at]) {
    g.ack_dups++;
    return;
  }
  g.acked[at] = 1;
  g.acked_n++;
  jamb_hist_add(&g.ack_lat, now - g.sent_t[at]);
  if (seq <= c->last_ack_seq)
    g.seq_disorder++;
  else
    c->last_ack_seq = seq;
  jamb_seq_owner(rm, seq, c->local, (uint32_t)ref);
}

/* `error` on c. */
static void jamb_on_error(jamb_conn_t *c, const char *p, size_t n) {
  const char *code = "";
  size_t clen = 0;
  jamb_json_str(p, n, "code", &code, &clen);
  if (g.phase != JAMB_PHASE_RUN) {
    g.setup_errors++;
    jamb_note(g.setup_error, sizeof g.setup_error, "participant %u (room %u): %.*s", jamb_idx(c),
              c->room, (int)(n > 200 ? 200 : n), p);
    return;
  }
  g.errors++;
  if (jamb_eq(code, clen, "RATE_LIMITED"))
    g.rate_limited++;
  jamb_note(g.run_error, sizeof g.run_error, "participant %u (room %u): %.*s", jamb_idx(c),
            c->room, (int)(n > 200 ? 200 : n), p);
}

/* One complete text message (JSON). */
static void jamb_text(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  const char *type;
  size_t tlen;
  if (jamb_json_str(p, n, "type", &type, &tlen) != 0) {
    g.other_msgs++;
    return;
  }
#define JAMB_TYPE(lit) (tlen == sizeof(lit) - 1 && memcmp(type, lit, tlen) == 0)
  if (JAMB_TYPE("event:broadcast")) {
    jamb_on_event(c, p, n, now);
  } else if (JAMB_TYPE("event:ack")) {
    jamb_on_ack(c, p, n, now);
  } else if (JAMB_TYPE("session:user-joined")) {
    g.join_notices++;
  } else if (JAMB_TYPE("session:user-left")) {
    g.leave_notices++;
  } else if (JAMB_TYPE("session:joined")) {
    jamb_on_joined(c, p, n);
  } else if (JAMB_TYPE("session:created")) {
    jamb_on_created(c, p, n);
  } else if (JAMB_TYPE("welcome")) {
    if (!c->welcomed) {
      c->welcomed = 1;
      g.welcomed++;
    }
  } else if (JAMB_TYPE("error")) {
    jamb_on_error(c, p, n);
  } else {
    g.other_msgs++;
  }
#undef JAMB_TYPE
}

/* ------------------------------------------------------------------------------------
 * WebSocket frames
 * ---------------------------------------------------------------------------------- */

/* Protocol violation by the server: reported, and c closed. Returns -1. */
static int jamb_ws_fail(jamb_conn_t *c, const char *what) {
  char why[160];
  snprintf(why, sizeof why, "WebSocket protocol: %s", what);
  jamb_conn_close(c, why);
  return -1;
}

/* One frame: first header byte b0, payload [p, p+len). Returns 0, or -1 when c was
 * closed. */
static int jamb_ws_frame(jamb_conn_t *c, uint8_t b0, const uint8_t *p, size_t len, uint64_t now) {
  int fin = (b0 & 0x80) != 0;
  unsigned op = b0 & 0x0fu;
  if (b0 & 0x70)
    return jamb_ws_fail(c, "RSV bit set (no extension was negotiated)");
  if (op >= 0x8) {
    if (!fin || len > 125)
      return jamb_ws_fail(c, "control frame fragmented or over 125 bytes");
    if (op == 0x8) {
      unsigned code = len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
      char why[200];
      snprintf(why, sizeof why, "close frame from the server, code %u%s%.*s", code,
               len > 2 ? ": " : "", (int)(len > 2 ? len - 2 : 0), (const char *)p + 2);
      g.closes++;
      /* Answer with the same code, best effort: the socket is closed right after. */
      if (c->out.len == 0) {
        jamb_ws_queue(c, 0x8, p, len >= 2 ? 2 : 0);
        if (send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
          /* ignored: the server may have gone already */
        }
      }
      jamb_conn_close(c, why);
      return -1;
    }
    if (op == 0x9) {
      g.pings++;
      jamb_ws_queue(c, 0xA, p, len);
      return jamb_conn_flush(c);
    }
    if (op == 0xA)
      return 0; /* unsolicited pong: ignored */
    return jamb_ws_fail(c, "reserved control opcode");
  }
  if (op == 0x1 || op == 0x2) {
    if (c->ws_frag)
      return jamb_ws_fail(c, "a new message inside a fragmented one");
    if (fin) {
      if (op == 0x1)
        jamb_text(c, (const char *)p, len, now);
      else
        g.other_msgs++;
      return 0;
    }
    c->ws_frag = 1;
    c->ws_msg_op = (uint8_t)op;
    c->data.len = 0;
    if (jamb_buf_append(&c->data, (const char *)p, len, g.msg_max) != 0)
      return jamb_ws_fail(c, "message over the size limit");
    return 0;
  }
  if (op == 0x0) {
    if (!c->ws_frag)
      return jamb_ws_fail(c, "continuation without a start");
    if (jamb_buf_append(&c->data, (const char *)p, len, g.msg_max) != 0)
      return jamb_ws_fail(c, "message over the size limit");
    if (!fin)
      return 0;
    c->ws_frag = 0;
    if (c->ws_msg_op == 0x1)
      jamb_text(c, c->data.p, c->data.len, now);
    else
      g.other_msgs++;
    if (c->state == JAMB_CONN_OPEN)
      c->data.len = 0;
    return c->state == JAMB_CONN_OPEN ? 0 : -1;
  }
  return jamb_ws_fail(c, "reserved data opcode");
}

/* Handles the complete frames at the start of [p, p+n); sets *used to their bytes.
 * Returns 0, or -1 when c was closed. */
static int jamb_ws_frames(jamb_conn_t *c, const uint8_t *p, size_t n, size_t *used,
                          uint64_t now) {
  size_t i = 0;
  while (n - i >= 2) {
    uint8_t b0 = p[i], b1 = p[i + 1];
    uint64_t len = b1 & 0x7fu;
    size_t hl = 2;
    if (b1 & 0x80)
      return jamb_ws_fail(c, "masked frame from the server");
    if (len == 126) {
      if (n - i < 4)
        break;
      len = (uint64_t)p[i + 2] << 8 | p[i + 3];
      hl = 4;
      if (len < 126)
        return jamb_ws_fail(c, "16-bit length under 126");
    } else if (len == 127) {
      if (n - i < 10)
        break;
      len = 0;
      for (int k = 0; k < 8; k++)
        len = len << 8 | p[i + 2 + k];
      hl = 10;
      if (len >> 63)
        return jamb_ws_fail(c, "64-bit length with the high bit set");
      if (len < 65536)
        return jamb_ws_fail(c, "64-bit length under 65536");
    }
    if (len > g.msg_max)
      return jamb_ws_fail(c, "frame over the size limit");
    if (n - i - hl < len)
      break;
    if (jamb_ws_frame(c, b0, p + i + hl, (size_t)len, now) != 0)
      return -1;
    i += hl + (size_t)len;
  }
  *used = i;
  return 0;
}

/* Bytes after the 101. Complete frames are handled in place; a frame split across reads
 * is gathered in c->carry. Returns 0, or -1 when c was closed. */
static int jamb_ws_feed(jamb_conn_t *c, const char *p, size_t n, uint64_t now) {
  size_t used;
  if (c->carry.len == 0) {
    if (jamb_ws_frames(c, (const uint8_t *)p, n, &used, now) != 0)
      return -1;
    if (used < n && jamb_buf_append(&c->carry, p + used, n - used, g.msg_max + 14) != 0)
      return jamb_ws_fail(c, "frame over the size limit");
    return 0;
  }
  if (jamb_buf_append(&c->carry, p, n, g.msg_max + 14) != 0)
    return jamb_ws_fail(c, "frame over the size limit");
  if (jamb_ws_frames(c, (const uint8_t *)c->carry.p, c->carry.len, &used, now) != 0)
    return -1;
  jamb_buf_consume(&c->carry, used);
  return 0;
}

/* The response head is complete in c->carry (hlen bytes with the empty line). */
static int jamb_conn_head(jamb_conn_t *c, size_t hlen) {
  jamb_head_t h;
  jamb_head_parse(c->carry.p, hlen - 4, &h);
  char why[200], accept[29];
  const char *bad = NULL;
  jamb_ws_accept(c->ws_key, accept);
  if (h.status != 101 || !h.upgrade_ws || !h.conn_upgrade) {
    size_t bl = c->carry.len - hlen;
    snprintf(why, sizeof why, "HTTP %d%s: %.*s", h.status,
             h.status == 101 ? " without Upgrade: websocket / Connection: Upgrade" : "",
             (int)(bl > 120 ? 120 : bl), c->carry.p + hlen);
    bad = why;
  } else if (strcmp(h.accept, accept) != 0) {
    snprintf(why, sizeof why, "Sec-WebSocket-Accept '%.40s', expected '%s'", h.accept, accept);
    bad = why;
  } else if (h.ext) {
    bad = "an extension in the answer that was not offered";
  }
  if (bad != NULL) {
    jamb_conn_close(c, bad);
    return -1;
  }
  c->state = JAMB_CONN_OPEN;
  g.opened++;
  return 0;
}

static void jamb_conn_readable(jamb_conn_t *c, char *buf) {
  ssize_t r = recv(c->fd, buf, JAMB_READ_CHUNK, 0);
  uint64_t now = jamb_now();
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
      return;
    char why[96];
    snprintf(why, sizeof why, "recv: %s", strerror(errno));
    jamb_conn_close(c, why);
    return;
  }
  if (r == 0) {
    jamb_conn_close(c, c->state == JAMB_CONN_HEAD ? "closed before the response head"
                                                  : "closed by the server");
    return;
  }
  size_t n = (size_t)r;
  if (c->state == JAMB_CONN_HEAD) {
    size_t before = c->carry.len;
    if (jamb_buf_append(&c->carry, buf, n, JAMB_HEAD_MAX + JAMB_READ_CHUNK) != 0) {
      jamb_conn_close(c, "response head too large");
      return;
    }
    size_t from = before > 3 ? before - 3 : 0;
    size_t hend = jamb_head_end(c->carry.p + from, c->carry.len - from);
    if (hend == 0) {
      if (c->carry.len > JAMB_HEAD_MAX)
        jamb_conn_close(c, "response head too large");
      return;
    }
    hend += from;
    if (jamb_conn_head(c, hend) != 0)
      return;
    /* The terminator completed in this read, so the frame bytes after it are the last
     * (carry.len - hend) bytes of buf. */
    size_t body = c->carry.len - hend;
    c->carry.len = 0;
    if (body > 0)
      jamb_ws_feed(c, buf + n - body, body, now);
    return;
  }
  jamb_ws_feed(c, buf, n, now);
}

static void jamb_conn_event(uint32_t i, uint32_t events, char *buf) {
  jamb_conn_t *c = &g.conns[i];
  if (c->state == JAMB_CONN_CONNECTING) {
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
      char why[96];
      snprintf(why, sizeof why, "connect: %s", strerror(err));
      jamb_conn_close(c, why);
      return;
    }
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      jamb_conn_send_request(c);
    return;
  }
  if (c->state == JAMB_CONN_OPEN && (events & EPOLLOUT) && c->out.len > 0 &&
      jamb_conn_flush(c) != 0)
    return;
  if (c->state == JAMB_CONN_HEAD || c->state == JAMB_CONN_OPEN) {
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
      jamb_conn_readable(c, buf);
  }
}

/* ------------------------------------------------------------------------------------
 * Pacing and the loop
 * ---------------------------------------------------------------------------------- */

/* Send time due for event k of the schedule: R x P x E events/s in all. */
static uint64_t jamb_due(uint64_t k) {
  return g.t0 + (uint64_t)((double)k * 1e9 / ((double)g.n * g.o.rate));
}

/* Sends every event due now and arms the timer for the next one. */
static void jamb_pump(void) {
  uint64_t now = jamb_now();
  while (g.next_k < g.total && jamb_due(g.next_k) <= now) {
    jamb_send_event(g.next_k++);
    if ((g.next_k & 63) == 0)
      now = jamb_now();
  }
  if (g.next_k < g.total) {
    uint64_t due = jamb_due(g.next_k);
    struct itimerspec its = {
        .it_value = {.tv_sec = (time_t)(due / JAMB_NS), .tv_nsec = (long)(due % JAMB_NS)}};
    timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL);
  }
}

/* Waits up to timeout_ms and handles what is ready. */
static void jamb_poll(int timeout_ms, char *buf) {
  static struct epoll_event evs[JAMB_MAX_EVENTS];
  int n = epoll_wait(g.ep, evs, JAMB_MAX_EVENTS, timeout_ms);
  if (n < 0) {
    if (errno == EINTR)
      return;
    jamb_die("epoll_wait: %s", strerror(errno));
  }
  for (int i = 0; i < n; i++) {
    uint32_t tag = (uint32_t)(evs[i].data.u64 >> 32);
    uint32_t idx = (uint32_t)evs[i].data.u64;
    if (tag == JAMB_TAG_CONN) {
      jamb_conn_event(idx, evs[i].events, buf);
    } else if (tag == JAMB_TAG_TIMER) {
      uint64_t ticks;
      if (read(g.tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
        jamb_die("timerfd read: %s", strerror(errno));
    }
  }
}

/* Connect phase: every connection open and welcomed, or failure, or the deadline.
 * Returns 0 when all are welcomed. */
static int jamb_connect_all(char *buf) {
  uint64_t deadline = g.t_connect_start + (uint64_t)(g.o.timeout_s * 1e9);
  for (;;) {
    while (g.started < g.n && g.started - g.opened - g.connect_failed < JAMB_CONNECT_INFLIGHT)
      jamb_conn_start(g.started);
    if (g.welcomed == g.n)
      return 0;
    if (g.connect_failed > 0 && g.welcomed + g.connect_failed >= g.n)
      return -1;
    if (g.closed > 0 && g.started == g.n && g.welcomed + g.closed >= g.n)
      return -1;
    if (jamb_now() >= deadline)
      return -1;
    jamb_poll(JAMB_TICK_MS, buf);
  }
}

/* Join phase: every room created and every participant joined. Returns 0 when so. */
static int jamb_join_all(char *buf) {
  g.phase = JAMB_PHASE_JOIN;
  uint64_t deadline = jamb_now() + (uint64_t)(g.o.timeout_s * 1e9);
  for (uint32_t r = 0; r < g.o.rooms; r++)
    jamb_create(r);
  for (;;) {
    if (g.joined == g.n)
      return 0;
    if (g.setup_errors > 0 || g.closed > 0 || jamb_now() >= deadline)
      return -1;
    jamb_poll(JAMB_TICK_MS, buf);
  }
}

/* Send and drain phase; sets g.stop_reason. */
static void jamb_run(char *buf) {
  g.phase = JAMB_PHASE_RUN;
  uint64_t tmo = (uint64_t)(g.o.timeout_s * 1e9);
  uint64_t p1 = g.o.participants - 1;
  g.t0 = jamb_now();
  jamb_pump();
  for (;;) {
    uint64_t now = jamb_now();
    if (g.next_k == g.total && g.delivered == g.sent * p1 && g.acked_n == g.sent) {
      g.stop_reason = "all delivered and acknowledged";
      return;
    }
    if (g.closed == g.n) {
      g.stop_reason = "every connection closed";
      return;
    }
    if (g.next_k == g.total && now >= g.t_last_send + tmo) {
      g.stop_reason = "timeout after the last send";
      return;
    }
    jamb_poll(JAMB_TICK_MS, buf);
    jamb_pump();
  }
}

/* ------------------------------------------------------------------------------------
 * Report
 * ---------------------------------------------------------------------------------- */

static double jamb_ms(uint64_t ns) {
  return (double)ns / 1e6;
}

/* Seqs of every room never seen below the room's highest; sets g.seq_gaps. */
static void jamb_count_gaps(void) {
  g.seq_gaps = 0;
  for (uint32_t r = 0; r < g.o.rooms; r++) {
    const jamb_room_t *rm = &g.rooms[r];
    for (uint64_t s = 1; s <= rm->max_seq && s < rm->seq_cap; s++)
      if (rm->seq_owner[s] == 0)
        g.seq_gaps++;
  }
}

static uint64_t jamb_expected(void) {
  return g.sent * (uint64_t)(g.o.participants - 1);
}

/* 1 when the run is clean (see the exit status). */
static int jamb_clean(void) {
  return g.phase == JAMB_PHASE_RUN && g.delivered == jamb_expected() && g.acked_n == g.sent &&
         g.sent == g.total && g.dups == 0 && g.ooo == 0 && g.own_echo == 0 && g.wrong_room == 0 &&
         g.sender_mismatch == 0 && g.seq_disorder == 0 && g.seq_conflict == 0 &&
         g.seq_range == 0 && g.seq_gaps == 0 && g.foreign == 0 && g.errors == 0 &&
         g.closed_early == 0 && g.ack_dups == 0 && g.ack_bad == 0 && g.leave_notices == 0;
}

static void jamb_report(void) {
  const jamb_opts_t *o = &g.o;
  uint32_t P = o->participants;
  uint64_t expected = jamb_expected();
  uint64_t lost = expected > g.delivered ? expected - g.delivered : 0;
  uint64_t pairs_short = 0;
  if (g.phase == JAMB_PHASE_RUN)
    for (uint32_t i = 0; i < g.n; i++)
      for (uint32_t k = 0; k < P; k++) {
        const jamb_conn_t *snd = &g.conns[(size_t)g.conns[i].room * P + k];
        if (snd != &g.conns[i] && g.pair_count[(size_t)i * P + k] < snd->sent)
          pairs_short++;
      }
  double connect_s = g.t_connected ? (double)(g.t_connected - g.t_connect_start) / 1e9 : -1.0;
  double join_s = g.t_joined ? (double)(g.t_joined - g.t_connected) / 1e9 : -1.0;
  double send_s = g.t_last_send > g.t_first_send ? (double)(g.t_last_send - g.t_first_send) / 1e9 : 0.0;
  double send_rate = send_s > 0 ? (double)(g.sent - 1) / send_s : 0.0;
  double window_s = g.t_last_delivery > g.t_first_send
                        ? (double)(g.t_last_delivery - g.t_first_send) / 1e9
                        : 0.0;
  double dps = window_s > 0 ? (double)g.delivered / window_s : 0.0;
  uint64_t p50 = jamb_hist_quantile(&g.lat, 0.50), p90 = jamb_hist_quantile(&g.lat, 0.90),
           p99 = jamb_hist_quantile(&g.lat, 0.99);
  uint64_t a50 = jamb_hist_quantile(&g.ack_lat, 0.50), a99 = jamb_hist_quantile(&g.ack_lat, 0.99);
  long tck = sysconf(_SC_CLK_TCK);
  double cpu_s = g.cpu_start >= 0 && g.cpu_end >= 0 && tck > 0
                     ? (double)(g.cpu_end - g.cpu_start) / (double)tck
                     : -1.0;
  double sched_s =
      g.sched_start >= 0 && g.sched_end >= 0 ? (double)(g.sched_end - g.sched_start) / 1e9 : -1.0;
  double cpu_best = sched_s >= 0 ? sched_s : cpu_s;
  double cpu_us = cpu_best >= 0 && g.delivered > 0 ? cpu_best * 1e6 / (double)g.delivered : -1.0;
  double cpu_us_ev = cpu_best >= 0 && g.sent > 0 ? cpu_best * 1e6 / (double)g.sent : -1.0;
  uint64_t notices_expected = (uint64_t)o->rooms * P * (P - 1) / 2;
  uint64_t seq_errors = g.seq_disorder + g.seq_conflict + g.seq_range + g.seq_gaps;

  printf("jambench  %s:%u /ws  R=%" PRIu32 " rooms x P=%" PRIu32 " participants = %" PRIu32
         " WebSockets  E=%g events/s each for D=%g s  payload %" PRIu32 " B\n",
         o->host, o->port, o->rooms, P, g.n, o->rate, o->duration_s, o->payload);
  if (connect_s >= 0)
    printf("  connect            %" PRIu32 " WebSockets welcomed in %.3f s\n", g.welcomed, connect_s);
  else
    printf("  connect            %" PRIu32 " of %" PRIu32 " welcomed, %" PRIu32 " failed\n",
           g.welcomed, g.n, g.connect_failed);
  if (join_s >= 0)
    printf("  rooms              %" PRIu32 " created, %" PRIu32 " participants joined in %.3f s\n",
           g.rooms_created, g.joined, join_s);
  else if (g.phase >= JAMB_PHASE_JOIN)
    printf("  rooms              %" PRIu32 " of %" PRIu32 " created, %" PRIu32 " of %" PRIu32
           " joined, %" PRIu32 " setup errors\n",
           g.rooms_created, o->rooms, g.joined, g.n, g.setup_errors);
  printf("  events             %" PRIu64 " of %" PRIu64 " sent in %.3f s (%.0f/s), %" PRIu64
         " acked (ack ms p50 %.3f p99 %.3f), %" PRIu64 " refused by error%s\n",
         g.sent, g.total, send_s, send_rate, g.acked_n, jamb_ms(a50), jamb_ms(a99), g.errors,
         g.send_skipped ? " (some skipped: connection closed)" : "");
  printf("  deliveries         %" PRIu64 " / %" PRIu64 " expected (%.2f %%; each event to the P-1=%" PRIu32
         " others)\n",
         g.delivered, expected, expected ? 100.0 * (double)g.delivered / (double)expected : 0.0,
         P - 1);
  printf("  deliveries/s       %.0f (first send to last delivery: %.3f s)\n", dps, window_s);
  printf("  relay latency ms   p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (%" PRIu64 " samples)\n",
         jamb_ms(p50), jamb_ms(p90), jamb_ms(p99), jamb_ms(g.lat.max), g.lat.n);
  printf("  lost               %" PRIu64 " (%" PRIu64 " sender->receiver pairs short)\n", lost,
         pairs_short);
  printf("  duplicates         %" PRIu64 "\n", g.dups);
  printf("  out of order       %" PRIu64 "\n", g.ooo);
  printf("  own echo           %" PRIu64 " (must be 0)\n", g.own_echo);
  printf("  wrong room/sender  %" PRIu64 " / %" PRIu64 "   foreign payloads %" PRIu64 "\n",
         g.wrong_room, g.sender_mismatch, g.foreign);
  printf("  seq errors         %" PRIu64 " (not increasing %" PRIu64 ", one seq for two events %" PRIu64
         ", out of range %" PRIu64 ", never seen %" PRIu64 ")\n",
         seq_errors, g.seq_disorder, g.seq_conflict, g.seq_range, g.seq_gaps);
  printf("  acks               %" PRIu64 " duplicate, %" PRIu64 " naming no event of ours\n",
         g.ack_dups, g.ack_bad);
  printf("  errors             %" PRIu64 " during the run (%" PRIu64 " RATE_LIMITED), %" PRIu32
         " in setup\n",
         g.errors, g.rate_limited, g.setup_errors);
  printf("  notices            %" PRIu64 " session:user-joined (%" PRIu64
         " expected), %" PRIu64 " session:user-left\n",
         g.join_notices, notices_expected, g.leave_notices);
  printf("  closed early       %" PRIu32 "  (close frames %" PRIu64 ", pings answered %" PRIu64
         ", other messages %" PRIu64 ")\n",
         g.closed_early, g.closes, g.pings, g.other_msgs);
  if (o->server_pid) {
    printf("  server RSS         %.1f MiB before connect, %.1f MiB joined, %.1f MiB at end\n",
           g.rss_before / 1024.0, g.rss_joined / 1024.0, g.rss_end / 1024.0);
    printf("  server CPU         %.4f s from first send to stop (stat utime+stime %.2f s), "
           "%.3f us/delivery, %.3f us/event\n",
           cpu_best, cpu_s, cpu_us, cpu_us_ev);
  } else {
    printf("  server RSS/CPU     (no --server-pid)\n");
  }
  printf("  stopped            %s\n", g.stop_reason ? g.stop_reason : "-");
  if (g.conn_error[0])
    printf("  first connection problem: %s\n", g.conn_error);
  if (g.setup_error[0])
    printf("  first setup problem:      %s\n", g.setup_error);
  if (g.run_error[0])
    printf("  first error message:      %s\n", g.run_error);

  if (o->json) {
    char srv[512];
    if (o->server_pid)
      snprintf(srv, sizeof srv,
               "\"server_pid\":%ld,\"rss_before_kib\":%ld,\"rss_joined_kib\":%ld,"
               "\"rss_end_kib\":%ld,\"server_cpu_s\":%.4f,\"server_cpu_stat_s\":%.2f,"
               "\"cpu_us_per_delivery\":%.4f,\"cpu_us_per_event\":%.4f",
               o->server_pid, g.rss_before, g.rss_joined, g.rss_end, cpu_best, cpu_s, cpu_us,
               cpu_us_ev);
    else
      snprintf(srv, sizeof srv,
               "\"server_pid\":null,\"rss_before_kib\":null,\"rss_joined_kib\":null,"
               "\"rss_end_kib\":null,\"server_cpu_s\":null,\"server_cpu_stat_s\":null,"
               "\"cpu_us_per_delivery\":null,\"cpu_us_per_event\":null");
    printf("{\"tool\":\"jambench\",\"rooms\":%" PRIu32 ",\"participants\":%" PRIu32
           ",\"connections\":%" PRIu32 ",\"rate\":%g,\"duration_s\":%g,\"payload\":%" PRIu32
           ",\"welcomed\":%" PRIu32 ",\"connect_s\":%.4f,\"joined\":%" PRIu32 ",\"join_s\":%.4f,"
           "\"scheduled\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"acked\":%" PRIu64
           ",\"send_rate\":%.1f,"
           "\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
           ",\"deliveries_per_s\":%.1f,\"window_s\":%.4f,"
           "\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"max\":%.4f},"
           "\"ack_latency_ms\":{\"ack_p50\":%.4f,\"ack_p99\":%.4f},"
           "\"lost\":%" PRIu64 ",\"pairs_short\":%" PRIu64 ",\"duplicates\":%" PRIu64
           ",\"out_of_order\":%" PRIu64 ",\"own_echo\":%" PRIu64 ",\"wrong_room\":%" PRIu64
           ",\"sender_mismatch\":%" PRIu64 ",\"foreign\":%" PRIu64 ",\"seq_errors\":%" PRIu64
           ",\"seq_disorder\":%" PRIu64 ",\"seq_conflict\":%" PRIu64 ",\"seq_range\":%" PRIu64
           ",\"seq_gaps\":%" PRIu64 ",\"ack_dups\":%" PRIu64 ",\"ack_bad\":%" PRIu64
           ",\"errors\":%" PRIu64 ",\"rate_limited\":%" PRIu64 ",\"setup_errors\":%" PRIu32
           ",\"join_notices\":%" PRIu64 ",\"join_notices_expected\":%" PRIu64
           ",\"leave_notices\":%" PRIu64 ",\"closed_early\":%" PRIu32 ",\"close_frames\":%" PRIu64
           ",\"pings\":%" PRIu64 ",%s,\"stop\":\"%s\",\"clean\":%s,"
           "\"connection_problem\":\"%s\",\"setup_problem\":\"%s\",\"error_message\":\"%s\"}\n",
           o->rooms, P, g.n, o->rate, o->duration_s, o->payload, g.welcomed, connect_s, g.joined,
           join_s, g.total, g.sent, g.acked_n, send_rate, expected, g.delivered, dps, window_s,
           jamb_ms(p50), jamb_ms(p90), jamb_ms(p99), jamb_ms(g.lat.max), jamb_ms(a50), jamb_ms(a99),
           lost, pairs_short, g.dups, g.ooo, g.own_echo, g.wrong_room, g.sender_mismatch,
           g.foreign, seq_errors, g.seq_disorder, g.seq_conflict, g.seq_range, g.seq_gaps,
           g.ack_dups, g.ack_bad, g.errors, g.rate_limited, g.setup_errors, g.join_notices,
           notices_expected, g.leave_notices, g.closed_early, g.closes, g.pings, srv,
           g.stop_reason ? g.stop_reason : "", jamb_clean() ? "true" : "false", g.conn_error,
           g.setup_error, g.run_error);
  }
  fflush(stdout);
}

/* ------------------------------------------------------------------------------------
 * Setup and main
 * ---------------------------------------------------------------------------------- */

/* Raises RLIMIT_NOFILE's soft limit to the hard one; dies when the sockets cannot fit. */
static void jamb_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    jamb_die("getrlimit: %s", strerror(errno));
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      jamb_die("setrlimit: %s", strerror(errno));
  }
  uint64_t need = (uint64_t)g.o.rooms * g.o.participants + 16;
  if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
    jamb_die("%" PRIu64 " descriptors needed but RLIMIT_NOFILE is %llu (hard limit)", need,
             (unsigned long long)rl.rlim_cur);
}

static void jamb_setup(void) {
  const jamb_opts_t *o = &g.o;
  g.n = o->rooms * o->participants;
  double per = o->rate * o->duration_s + 0.5;
  if (per < 1 || per > 100000000)
    jamb_die("--rate x --duration must give 1 to 1e8 events per participant");
  g.per = (uint32_t)per;
  g.total = (uint64_t)g.n * g.per;
  g.pair_words = ((size_t)g.per + 63) / 64;
  uint64_t pairs = (uint64_t)g.n * o->participants;
  uint64_t bytes = pairs * (g.pair_words * 8 + 12) + g.total * 9 +
                   (uint64_t)o->rooms * ((uint64_t)o->participants * g.per + 16) * 8;
  if (bytes > JAMB_STATE_MAX)
    jamb_die("R x P x P x E x D too large: %" PRIu64 " MiB of bookkeeping", bytes >> 20);
  g.msg_max = (size_t)o->payload + JAMB_MSG_SLACK;
  static const char key_hdr[] = "Sec-WebSocket-Key: ";
  int rl = snprintf(g.req, sizeof g.req,
                    "GET /ws HTTP/1.1\r\nHost: %s:%u\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "%s------------------------\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    o->host, o->port, key_hdr);
  if (rl < 0 || (size_t)rl >= sizeof g.req)
    jamb_die("request too long");
  g.req_len = (size_t)rl;
  g.req_key_off = (size_t)(strstr(g.req, key_hdr) - g.req) + sizeof key_hdr - 1;
  /* the RFC 6455 1.3 example checks SHA-1 and base64 once */
  char acc[29];
  jamb_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", acc);
  if (strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0)
    jamb_die("internal: Sec-WebSocket-Accept self-check failed (%s)", acc);
  g.conns = jamb_xcalloc(g.n, sizeof *g.conns);
  for (uint32_t i = 0; i < g.n; i++) {
    g.conns[i].fd = -1;
    g.conns[i].room = i / o->participants;
    g.conns[i].local = i % o->participants;
  }
  g.rooms = jamb_xcalloc(o->rooms, sizeof *g.rooms);
  for (uint32_t r = 0; r < o->rooms; r++) {
    g.rooms[r].seq_cap = (uint64_t)o->participants * g.per + 16;
    g.rooms[r].seq_owner = jamb_xcalloc(g.rooms[r].seq_cap, sizeof(uint64_t));
  }
  g.pair_seen = jamb_xcalloc(pairs * g.pair_words, sizeof(uint64_t));
  g.pair_count = jamb_xcalloc(pairs, sizeof(uint32_t));
  g.pair_max = jamb_xcalloc(pairs, sizeof(int64_t));
  for (uint64_t k = 0; k < pairs; k++)
    g.pair_max[k] = -1;
  g.sent_t = jamb_xcalloc(g.total, sizeof(uint64_t));
  g.acked = jamb_xcalloc(g.total, 1);
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  if (g.ep < 0)
    jamb_die("epoll_create1: %s", strerror(errno));
  g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (g.tfd < 0)
    jamb_die("timerfd_create: %s", strerror(errno));
  jamb_ep_ctl(EPOLL_CTL_ADD, g.tfd, EPOLLIN, JAMB_TAG_TIMER, 0);
  g.rss_before = g.rss_joined = g.rss_end = -1;
  g.cpu_start = g.cpu_end = g.sched_start = g.sched_end = -1;
}

/* Closes every socket this process opened (the process exits right after). */
static void jamb_teardown(void) {
  for (uint32_t i = 0; i < g.n; i++)
    if (g.conns[i].fd >= 0)
      close(g.conns[i].fd);
  close(g.tfd);
  close(g.ep);
}

/* The server's figures at the end. */
static void jamb_server_end(void) {
  if (!g.o.server_pid)
    return;
  g.cpu_end = jamb_proc_cpu_ticks(g.o.server_pid);
  g.sched_end = jamb_proc_cpu_ns(g.o.server_pid);
  g.rss_end = jamb_proc_rss_kib(g.o.server_pid);
}

int main(int argc, char **argv) {
  jamb_opts_parse(argc, argv, &g.o);
  signal(SIGPIPE, SIG_IGN);
  jamb_rand_seed();
  jamb_raise_nofile();
  jamb_setup();
  static char buf[JAMB_READ_CHUNK];

  if (g.o.server_pid) {
    if (jamb_proc_rss_kib(g.o.server_pid) < 0)
      jamb_die("cannot read /proc/%ld/status", g.o.server_pid);
    g.rss_before = jamb_proc_rss_kib(g.o.server_pid);
  }
  g.t_connect_start = jamb_now();
  if (jamb_connect_all(buf) != 0) {
    g.stop_reason = "connect phase failed";
    fprintf(stderr,
            "jambench: only %" PRIu32 " of %" PRIu32 " WebSockets welcomed (limit %.1f s, %" PRIu32
            " failed)%s%s\n",
            g.welcomed, g.n, g.o.timeout_s, g.connect_failed, g.conn_error[0] ? "; first problem: " : "",
            g.conn_error);
    jamb_report();
    jamb_teardown();
    return 2;
  }
  g.t_connected = jamb_now();
  if (jamb_join_all(buf) != 0) {
    g.stop_reason = "join phase failed";
    fprintf(stderr,
            "jambench: %" PRIu32 " of %" PRIu32 " rooms created, %" PRIu32 " of %" PRIu32
            " participants joined (limit %.1f s)%s%s%s%s\n",
            g.rooms_created, g.o.rooms, g.joined, g.n, g.o.timeout_s,
            g.setup_error[0] ? "; first problem: " : "", g.setup_error,
            g.conn_error[0] ? "; connection problem: " : "", g.conn_error);
    jamb_report();
    jamb_teardown();
    return 2;
  }
  g.t_joined = jamb_now();
  if (g.o.server_pid) {
    g.rss_joined = jamb_proc_rss_kib(g.o.server_pid);
    g.cpu_start = jamb_proc_cpu_ticks(g.o.server_pid);
    g.sched_start = jamb_proc_cpu_ns(g.o.server_pid);
  }
  jamb_run(buf);
  g.t_end = jamb_now();
  jamb_server_end();
  jamb_count_gaps();
  jamb_report();
  jamb_teardown();
  return jamb_clean() ? 0 : 1;
}
