/*
 * benchlib: code shared by the benchmark tools; contracts in benchlib.h.
 */

#include "benchlib.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ------------------------------------------------------------------------------------
 * Time, fatal errors, allocation
 * ---------------------------------------------------------------------------------- */

/* Monotonic time in ns; the same clock the message timestamps use. */
uint64_t bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * BENCH_NS + (uint64_t)ts.tv_nsec;
}

void bench_die(const char *fmt, ...) {
  va_list ap;
  fputs(bench_prog, stderr);
  fputs(": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(2);
}

/* Allocation wrappers: abort with a message on out-of-memory, so call sites stay clean. */
void *bench_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL)
    bench_die("out of memory (%zu bytes)", n);
  return q;
}

void *bench_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (p == NULL)
    bench_die("out of memory (%zu x %zu bytes)", count, size);
  return p;
}

/* Appends n bytes; returns 0, or -ENOSPC when the result would exceed max bytes
 * (the buffer is then unchanged). */
int bench_buf_append(bench_buf_t *b, const char *src, size_t n, size_t max) {
  if (b->len + n > max)
    return -ENOSPC;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
      cap *= 2;
    b->p = bench_xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
  return 0;
}

/* Drops the first n bytes, keeping the rest at the front. */
void bench_buf_consume(bench_buf_t *b, size_t n) {
  memmove(b->p, b->p + n, b->len - n);
  b->len -= n;
}

void bench_buf_free(bench_buf_t *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}
/* Makes room for at least `extra` more bytes. */
void bench_buf_reserve(bench_buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  b->p = bench_xrealloc(b->p, cap);
  b->cap = cap;
}

/* Writes `"key"` (keys of at most 29 bytes) to pat; returns its length. Called per
 * delivery, so without snprintf. */
static int bench_json_key(char pat[32], const char *key) {
  size_t kl = strnlen(key, 29);
  pat[0] = '"';
  memcpy(pat + 1, key, kl);
  pat[kl + 1] = '"';
  return (int)kl + 2;
}

/* memchr for the first byte and a compare: for the short keys and messages here this
 * beats glibc's memmem, whose setup dominated the load generator's profile (37 % of its
 * time at millions of deliveries per second). */
const char *bench_find(const char *p, size_t n, const char *pat, size_t plen) {
  const char *end = p + n;
  while ((size_t)(end - p) >= plen) {
    const char *at = memchr(p, pat[0], (size_t)(end - p) - plen + 1);
    if (at == NULL)
      return NULL;
    if (memcmp(at + 1, pat + 1, plen - 1) == 0)
      return at;
    p = at + 1;
  }
  return NULL;
}

/* The value after a key that ends just before `at`: past spaces, a colon and spaces;
 * NULL when no colon follows. */
static const char *bench_json_value_at(const char *at, const char *end) {
  while (at < end && (*at == ' ' || *at == '\t'))
    at++;
  if (at == end || *at != ':')
    return NULL;
  at++;
  while (at < end && (*at == ' ' || *at == '\t'))
    at++;
  return at;
}

/* Parses the unsigned integer after a key that ends just before `at`: spaces, a colon,
 * spaces, digits. Returns 0, -ENOENT when that is not there, -ERANGE on overflow. */
static int bench_json_num_after(const char *at, const char *end, uint64_t *out) {
  if ((at = bench_json_value_at(at, end)) == NULL || at == end || *at < '0' || *at > '9')
    return -ENOENT;
  uint64_t v = 0;
  while (at < end && *at >= '0' && *at <= '9') {
    if (v > (UINT64_MAX - 9) / 10)
      return -ERANGE;
    v = v * 10 + (uint64_t)(*at - '0');
    at++;
  }
  *out = v;
  return 0;
}

int bench_json_u64(const char *p, size_t n, const char *key, uint64_t *out) {
  char pat[32];
  int plen = bench_json_key(pat, key);
  const char *end = p + n, *from = p;
  while (from < end) {
    const char *at = bench_find(from, (size_t)(end - from), pat, (size_t)plen);
    if (at == NULL)
      return -ENOENT;
    from = at + 1;
    int rc = bench_json_num_after(at + plen, end, out);
    if (rc == 0)
      return 0;
    if (rc == -ERANGE)
      return -ENOENT;
  }
  return -ENOENT;
}

int bench_json_u64_first(const char *p, size_t n, const char *key, uint64_t *out) {
  char pat[32];
  int plen = bench_json_key(pat, key);
  const char *at = bench_find(p, n, pat, (size_t)plen);
  if (at == NULL)
    return -ENOENT;
  return bench_json_num_after(at + plen, p + n, out) == 0 ? 0 : -ENOENT;
}

/* Finds `"key":"` in [p, p+n) (spaces allowed around the colon) and sets *val, *vlen
 * to the string value up to the next quote (the values read here need no escapes).
 * Occurrences not followed by a colon and a string (e.g. the key as a value) are
 * skipped. Returns 0, or -ENOENT. */
int bench_json_str(const char *p, size_t n, const char *key, const char **val,
                         size_t *vlen) {
  char pat[32];
  int plen = bench_json_key(pat, key);
  const char *end = p + n, *from = p;
  while (from < end) {
    const char *at = bench_find(from, (size_t)(end - from), pat, (size_t)plen);
    if (at == NULL)
      return -ENOENT;
    from = at + 1;
    if ((at = bench_json_value_at(at + plen, end)) == NULL || at == end || *at != '"')
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

/* ------------------------------------------------------------------------------------
 * WebSocket helpers: PRNG (keys and masks), SHA-1 and base64 (Sec-WebSocket-Accept)
 * ---------------------------------------------------------------------------------- */

static uint64_t bench_rng_state;

/* xorshift64*: plenty for handshake nonces and frame masks of a benchmark client. */
uint64_t bench_rand(void) {
  uint64_t x = bench_rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  bench_rng_state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

void bench_rand_seed(void) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
    seed = bench_now() ^ ((uint64_t)getpid() << 32);
  bench_rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

static uint32_t bench_rol32(uint32_t x, unsigned n) {
  return (x << n) | (x >> (32u - n));
}

/* SHA-1 of len bytes (FIPS 180-4), only for the 60-byte handshake string. */
void bench_sha1(const void *data, size_t len, uint8_t out[20]) {
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
      w[i] = bench_rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
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
      uint32_t t = bench_rol32(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = bench_rol32(b, 30);
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
void bench_base64(const uint8_t *in, size_t n, char *out) {
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
void bench_ws_accept(const char key[24], char out[29]) {
  char cat[24 + sizeof BENCH_WS_GUID];
  memcpy(cat, key, 24);
  memcpy(cat + 24, BENCH_WS_GUID, sizeof BENCH_WS_GUID - 1);
  uint8_t d[20];
  bench_sha1(cat, 24 + sizeof BENCH_WS_GUID - 1, d);
  bench_base64(d, sizeof d, out);
}

/* ------------------------------------------------------------------------------------
 * Latency histogram: log-linear buckets, 64 per power of two (error under 1.6 %),
 * covering every uint64_t value of nanoseconds in 3776 counters.
 * ---------------------------------------------------------------------------------- */

static unsigned bench_hist_index(uint64_t v) {
  if (v < BENCH_HIST_SUB)
    return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* e >= 6 */
  return (e - 5u) * BENCH_HIST_SUB + (unsigned)((v >> (e - 6u)) & (BENCH_HIST_SUB - 1));
}

/* Middle of bucket i, the value reported for a percentile falling in it. */
static uint64_t bench_hist_value(unsigned i) {
  if (i < BENCH_HIST_SUB)
    return i;
  unsigned e = i / BENCH_HIST_SUB + 5u;
  uint64_t sub = i % BENCH_HIST_SUB;
  uint64_t low = (BENCH_HIST_SUB + sub) << (e - 6u);
  return low + ((1ull << (e - 6u)) >> 1);
}

void bench_hist_add(bench_hist_t *h, uint64_t v) {
  h->count[bench_hist_index(v)]++;
  h->n++;
  if (v > h->max)
    h->max = v;
}

/* Value (ns) at quantile q in [0, 1]; never above the exact maximum. 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist_t *h, double q) {
  if (h->n == 0)
    return 0;
  uint64_t rank = (uint64_t)(q * (double)h->n);
  if (rank < 1)
    rank = 1;
  if (rank > h->n)
    rank = h->n;
  uint64_t seen = 0;
  for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
    seen += h->count[i];
    if (seen >= rank) {
      uint64_t v = bench_hist_value(i);
      return v > h->max ? h->max : v;
    }
  }
  return h->max;
}

/* ------------------------------------------------------------------------------------
 * HTTP response head
 * ---------------------------------------------------------------------------------- */

/* Parses a response head of `len` bytes (status line and headers, without the final
 * empty line). Header names are matched case-insensitively. */
void bench_head_parse(const char *p, size_t len, bench_head_t *h) {
  h->status = 0;
  h->chunked = 0;
  h->event_stream = 0;
  h->content_length = -1;
  h->upgrade_ws = h->conn_upgrade = h->ext_deflate = h->ext_snct = h->ext_other = 0;
  h->accept[0] = '\0';
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
    if (strncasecmp(buf, "transfer-encoding:", 18) == 0 && strcasestr(buf, "chunked"))
      h->chunked = 1;
    else if (strncasecmp(buf, "content-type:", 13) == 0 && strcasestr(buf, "text/event-stream"))
      h->event_stream = 1;
    else if (strncasecmp(buf, "content-length:", 15) == 0)
      h->content_length = strtol(buf + 15, NULL, 10);
    else if (strncasecmp(buf, "upgrade:", 8) == 0 && strcasestr(buf + 8, "websocket"))
      h->upgrade_ws = 1;
    else if (strncasecmp(buf, "connection:", 11) == 0 && strcasestr(buf + 11, "upgrade"))
      h->conn_upgrade = 1;
    else if (strncasecmp(buf, "sec-websocket-accept:", 21) == 0) {
      const char *v = buf + 21;
      while (*v == ' ' || *v == '\t')
        v++;
      size_t al = strlen(v) < sizeof h->accept - 1 ? strlen(v) : sizeof h->accept - 1;
      memcpy(h->accept, v, al);
      h->accept[al] = '\0';
    } else if (strncasecmp(buf, "sec-websocket-extensions:", 25) == 0) {
      if (strcasestr(buf + 25, "permessage-deflate"))
        h->ext_deflate = 1;
      else
        h->ext_other = 1;
      if (strcasestr(buf + 25, "server_no_context_takeover"))
        h->ext_snct = 1;
    }
    line = eol;
  }
}

/* Returns the offset just past "\r\n\r\n" in [p, p+n), or 0 when not there yet. */
size_t bench_head_end(const char *p, size_t n) {
  if (n < 4)
    return 0; /* also an empty buffer, whose p may be NULL */
  const char *at = memmem(p, n, "\r\n\r\n", 4);
  return at ? (size_t)(at - p) + 4 : 0;
}

/* ------------------------------------------------------------------------------------
 * Server figures from /proc
 * ---------------------------------------------------------------------------------- */

/* VmRSS of pid in KiB, or -1 when unreadable. */
long bench_proc_rss_kib(long pid) {
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
long long bench_proc_cpu_ticks(long pid) {
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
 * (first field), or -1 when unreadable. Far finer than the clock ticks of /proc/PID/stat,
 * but a thread that exits between two readings takes its time with it. */
long long bench_proc_cpu_ns(long pid) {
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

/* VmRSS summed over n PIDs in KiB, or -1 when one is unreadable. */
/* ------------------------------------------------------------------------------------
 * Report and option helpers
 * ---------------------------------------------------------------------------------- */

double bench_ms(uint64_t ns) {
  return (double)ns / 1e6;
}

double bench_parse_num(const char *opt, const char *s, double min, double max) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || !(v >= min && v <= max))
    bench_die("%s: '%s' is not a number in [%g, %g]", opt, s, min, max);
  return v;
}

void bench_note(char *dst, size_t cap, const char *fmt, ...) {
  if (dst[0] != '\0')
    return; /* keep the first */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
  for (char *p = dst; *p; p++) /* safe inside the table and a JSON string */
    if (*p == '"')
      *p = '\'';
    else if (*p == '\\' || (unsigned char)*p < 32)
      *p = ' ';
}


/* ------------------------------------------------------------------------------------
 * WebSocket frames
 * ---------------------------------------------------------------------------------- */

void bench_ws_key(char key[24]) {
  uint8_t nonce[16];
  uint64_t r0 = bench_rand(), r1 = bench_rand();
  memcpy(nonce, &r0, 8);
  memcpy(nonce + 8, &r1, 8);
  char k[25];
  bench_base64(nonce, sizeof nonce, k);
  memcpy(key, k, 24);
}

void bench_ws_queue(bench_buf_t *out, unsigned op, const void *p, size_t len) {
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
  uint32_t mask = (uint32_t)bench_rand();
  memcpy(h + hl, &mask, 4);
  hl += 4;
  bench_buf_reserve(out, hl + len);
  char *o = out->p + out->len;
  memcpy(o, h, hl);
  const uint8_t *in = p, *m = h + hl - 4;
  for (size_t i = 0; i < len; i++)
    o[hl + i] = (char)(in[i] ^ m[i & 3]);
  out->len += hl + len;
}

int bench_ws_frame_head(const uint8_t *p, size_t n, uint64_t max, size_t *hl, uint64_t *len,
                        const char **err) {
  if (n < 2)
    return 0;
  uint8_t b1 = p[1];
  uint64_t l = b1 & 0x7fu;
  size_t h = 2;
  if (b1 & 0x80) {
    *err = "masked frame from the server";
    return -1;
  }
  if (l == 126) {
    if (n < 4)
      return 0;
    l = (uint64_t)p[2] << 8 | p[3];
    h = 4;
    if (l < 126) {
      *err = "16-bit length under 126";
      return -1;
    }
  } else if (l == 127) {
    if (n < 10)
      return 0;
    l = 0;
    for (int k = 0; k < 8; k++)
      l = l << 8 | p[2 + k];
    h = 10;
    if (l >> 63) {
      *err = "64-bit length with the high bit set";
      return -1;
    }
    if (l < 65536) {
      *err = "64-bit length under 65536";
      return -1;
    }
  }
  if (l > max) {
    *err = "frame over the size limit";
    return -1;
  }
  *hl = h;
  *len = l;
  return n - h < l ? 0 : 1;
}

/* ------------------------------------------------------------------------------------
 * Socket.IO v4 EVENT packets
 * ---------------------------------------------------------------------------------- */

int bench_sio_event(const char *p, size_t n, const char **name, size_t *nlen, const char **rest,
                    size_t *rlen) {
  if (n < 2 || p[0] != '4' || p[1] != '2')
    return -1;
  const char *q = p + 2, *end = p + n;
  if (q < end && *q == '/') /* a namespace: not the default one */
    return 1;
  while (q < end && *q >= '0' && *q <= '9') /* an ack id */
    q++;
  if (end - q < 4 || q[0] != '[' || q[1] != '"')
    return -1;
  const char *nm = q + 2, *nq = memchr(nm, '"', (size_t)(end - nm));
  if (nq == NULL)
    return -1;
  *name = nm;
  *nlen = (size_t)(nq - nm);
  *rest = nq + 1;
  *rlen = (size_t)(end - (nq + 1));
  return 0;
}

int bench_sio_arg(const char *rest, size_t rlen, const char **arg, size_t *alen) {
  const char *d = rest, *e = rest + rlen;
  while (e > d && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r'))
    e--;
  if (d >= e || *d != ',' || e[-1] != ']')
    return -1;
  *arg = d + 1;
  *alen = (size_t)(e - 1 - (d + 1));
  return 0;
}

/* ------------------------------------------------------------------------------------
 * Response heads, sockets, limits
 * ---------------------------------------------------------------------------------- */

int bench_head_collect(bench_buf_t *carry, const char *buf, size_t n, size_t head_max,
                       size_t read_max, size_t *hend) {
  size_t before = carry->len;
  if (bench_buf_append(carry, buf, n, head_max + read_max) != 0)
    return -1;
  size_t from = before > 3 ? before - 3 : 0;
  size_t e = bench_head_end(carry->p + from, carry->len - from);
  if (e == 0)
    return carry->len > head_max ? -1 : 0;
  *hend = e + from;
  return 1;
}

int bench_send_from(int fd, const char *p, size_t len, uint32_t *off) {
  while (*off < len) {
    ssize_t w = send(fd, p + *off, len - *off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 1;
      if (errno == EINTR)
        continue;
      return -errno;
    }
    *off += (uint32_t)w;
  }
  return 0;
}

int bench_flush(int fd, bench_buf_t *out) {
  while (out->len > 0) {
    ssize_t w = send(fd, out->p, out->len, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        break;
      return -errno;
    }
    bench_buf_consume(out, (size_t)w);
  }
  return 0;
}

void bench_raise_nofile(uint64_t need, const char *hint) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    bench_die("getrlimit: %s", strerror(errno));
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      bench_die("setrlimit: %s", strerror(errno));
  }
  if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
    bench_die("%" PRIu64 " descriptors needed but RLIMIT_NOFILE is %llu (hard limit)%s", need,
              (unsigned long long)rl.rlim_cur, hint);
}

size_t bench_eio_pong(const char *p, size_t n, char *out, size_t cap) {
  size_t len = n < cap ? n : cap;
  memcpy(out, p, len);
  if (len > 0) out[0] = '3';
  return len;
}
