/* core: allocation, buffers, strings, time, logging and ids. */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ================================================================ memory */

static void tt__oom(size_t n) {
  fprintf(stderr, "tutti: out of memory allocating %zu bytes\n", n);
  abort();
}

void *tt_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) tt__oom(n);
  return p;
}

void *tt_calloc(size_t count, size_t n) {
  void *p = calloc(count ? count : 1, n ? n : 1);
  if (p == NULL) tt__oom(count * n);
  return p;
}

void *tt_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) tt__oom(n);
  return q;
}

char *tt_strndup(const char *s, size_t n) {
  char *p = tt_malloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* ================================================================ buffers */

tt_buf_t *tt_buf_new(size_t len) {
  if (len > SIZE_MAX - sizeof(tt_buf_t)) tt__oom(len);
  tt_buf_t *b = tt_malloc(sizeof(*b) + len);
  atomic_init(&b->refs, 1);
  b->len = len;
  return b;
}

tt_buf_t *tt_buf_from(const void *data, size_t len) {
  tt_buf_t *b = tt_buf_new(len);
  memcpy(b->data, data, len);
  return b;
}

void tt_buf_unref(tt_buf_t *b) {
  if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}

void tt_str_reserve(tt_str_t *s, size_t extra) {
  if (s->len + extra + 1 <= s->cap) return;
  size_t cap = s->cap ? s->cap : 64;
  while (cap < s->len + extra + 1) cap *= 2;
  s->data = tt_realloc(s->data, cap);
  s->cap = cap;
}

void tt_str_append(tt_str_t *s, const void *p, size_t n) {
  tt_str_reserve(s, n);
  memcpy(s->data + s->len, p, n);
  s->len += n;
  s->data[s->len] = '\0';
}

void tt_str_appends(tt_str_t *s, const char *cstr) { tt_str_append(s, cstr, strlen(cstr)); }

void tt_str_appendf(tt_str_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[256];
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof(tmp)) {
    tt_str_append(s, tmp, (size_t)n);
    return;
  }
  tt_str_reserve(s, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  s->len += (size_t)n;
}

void tt_str_append_json(tt_str_t *s, const char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  tt_str_reserve(s, n + 2);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    switch (c) {
      case '"': tt_str_append(s, "\\\"", 2); break;
      case '\\': tt_str_append(s, "\\\\", 2); break;
      case '\n': tt_str_append(s, "\\n", 2); break;
      case '\r': tt_str_append(s, "\\r", 2); break;
      case '\t': tt_str_append(s, "\\t", 2); break;
      default:
        if (c < 0x20) {
          char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
          tt_str_append(s, u, 6);
        } else {
          tt_str_reserve(s, 1);
          s->data[s->len++] = (char)c;
          s->data[s->len] = '\0';
        }
    }
  }
}

void tt_str_free(tt_str_t *s) {
  free(s->data);
  s->data = NULL;
  s->len = s->cap = 0;
}

/* ================================================================ base64 */

static const char tt__b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void tt_str_append_base64(tt_str_t *s, const void *p, size_t n) {
  const unsigned char *in = p;
  tt_str_reserve(s, (n + 2) / 3 * 4);
  char *o = s->data + s->len;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *o++ = tt__b64[v >> 18];
    *o++ = tt__b64[(v >> 12) & 63];
    *o++ = tt__b64[(v >> 6) & 63];
    *o++ = tt__b64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
    *o++ = tt__b64[v >> 18];
    *o++ = tt__b64[(v >> 12) & 63];
    *o++ = i + 1 < n ? tt__b64[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  s->len = (size_t)(o - s->data);
  s->data[s->len] = '\0';
}

static int tt__b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int tt_base64_decode(const char *p, size_t n, tt_str_t *out) {
  while (n > 0 && p[n - 1] == '=') n--;
  if (n % 4 == 1) return -EINVAL;
  size_t start = out->len;
  tt_str_reserve(out, n / 4 * 3 + 3);
  unsigned char *o = (unsigned char *)out->data + out->len;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = tt__b64_value((unsigned char)p[i]);
    if (v < 0) {
      out->len = start;
      return -EINVAL;
    }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      *o++ = (unsigned char)(acc >> bits);
    }
  }
  out->len = (size_t)((char *)o - out->data);
  out->data[out->len] = '\0';
  return 0;
}

/* ================================================================ time */

uint64_t tt_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t tt_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ================================================================ logging */

tt_log_level_t tt_log_level = TT_LOG_INFO;

static const char *const tt__level_names[] = {"debug", "info", "warn", "error"};

int tt_log_level_parse(const char *s, tt_log_level_t *out) {
  for (size_t i = 0; i < TT_ARRAY_SIZE(tt__level_names); i++) {
    if (strcmp(s, tt__level_names[i]) == 0) {
      *out = (tt_log_level_t)i;
      return 0;
    }
  }
  return -EINVAL;
}

void tt_log(tt_log_level_t level, const char *event, const char *message, const char *context_fmt, ...) {
  if (level < tt_log_level) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[96];
  snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

  tt_str_t line = {0};
  tt_str_appendf(&line, "{\"time\":\"%s\",\"level\":\"%s\",\"event\":\"", when, tt__level_names[level]);
  tt_str_append_json(&line, event, strlen(event));
  tt_str_appends(&line, "\",\"message\":\"");
  tt_str_append_json(&line, message, strlen(message));
  tt_str_appends(&line, "\",\"context\":{");
  if (context_fmt != NULL) {
    va_list ap;
    va_start(ap, context_fmt);
    char tmp[1024];
    int n = vsnprintf(tmp, sizeof(tmp), context_fmt, ap);
    va_end(ap);
    if (n > 0) tt_str_append(&line, tmp, TT_MIN((size_t)n, sizeof(tmp) - 1));
  }
  tt_str_appends(&line, "}}\n");
  ssize_t off = 0;
  while ((size_t)off < line.len) {
    ssize_t w = write(STDERR_FILENO, line.data + off, line.len - (size_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += w;
  }
  tt_str_free(&line);
}

/* ================================================================ ids */

void tt_random_bytes(void *out, size_t n) {
  unsigned char *p = out;
  size_t done = 0;
  while (done < n) {
    ssize_t got = getrandom(p + done, n - done, 0);
    if (got <= 0) {
      for (; done < n; done++) p[done] = (unsigned char)(rand() & 0xff);
      return;
    }
    done += (size_t)got;
  }
}

void tt_random_token(char *out, size_t n) {
  static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  unsigned char raw[64];
  size_t done = 0;
  while (done < n) {
    size_t want = TT_MIN(n - done, sizeof(raw));
    ssize_t got = getrandom(raw, want, 0);
    if (got <= 0) {
      /* getrandom cannot fail on Linux >= 3.17 except for EINTR; fall back anyway */
      for (size_t i = 0; i < want; i++) raw[i] = (unsigned char)(rand() & 0xff);
      got = (ssize_t)want;
    }
    for (ssize_t i = 0; i < got; i++) out[done++] = alphabet[raw[i] % 36];
  }
  out[n] = '\0';
}

/* ================================================================ maps */

uint64_t tt_hash(const char *key, size_t len) {
  /* FNV-1a, 64 bit: short keys, no adversarial concern beyond channel names
   * chosen by publishers, which are bounded in count by history and TTL. */
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)key[i];
    h *= 1099511628211ull;
  }
  return h;
}

void tt_map_init(tt_map_t *m) {
  m->mask = 15;
  m->count = 0;
  m->buckets = tt_calloc(m->mask + 1, sizeof(*m->buckets));
}

void tt_map_free(tt_map_t *m) {
  free(m->buckets);
  m->buckets = NULL;
}

tt_map_entry_t *tt_map_get(const tt_map_t *m, const char *key, size_t len, uint64_t hash) {
  for (tt_map_entry_t *e = m->buckets[hash & m->mask]; e != NULL; e = e->next) {
    if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0) return e;
  }
  return NULL;
}

static void tt__map_grow(tt_map_t *m) {
  size_t nmask = m->mask * 2 + 1;
  tt_map_entry_t **nb = tt_calloc(nmask + 1, sizeof(*nb));
  for (size_t i = 0; i <= m->mask; i++) {
    tt_map_entry_t *e = m->buckets[i], *next;
    for (; e != NULL; e = next) {
      next = e->next;
      e->next = nb[e->hash & nmask];
      nb[e->hash & nmask] = e;
    }
  }
  free(m->buckets);
  m->buckets = nb;
  m->mask = nmask;
}

void tt_map_put(tt_map_t *m, tt_map_entry_t *e) {
  if (m->count >= m->mask) tt__map_grow(m);
  tt_map_entry_t **b = &m->buckets[e->hash & m->mask];
  e->next = *b;
  *b = e;
  m->count++;
}

void tt_map_remove(tt_map_t *m, tt_map_entry_t *e) {
  for (tt_map_entry_t **p = &m->buckets[e->hash & m->mask]; *p != NULL; p = &(*p)->next) {
    if (*p == e) {
      *p = e->next;
      e->next = NULL;
      m->count--;
      return;
    }
  }
}

/* ================================================================ messages */

tt_msg_t *tt_msg_new(const char *channel, size_t clen, const char *event, size_t elen, const char *data, size_t dlen,
                     const char *epoch, uint64_t offset) {
  tt_msg_t *m = tt_malloc(sizeof(*m) + clen + elen + dlen + 3);
  atomic_init(&m->refs, 1);
  m->offset = offset;
  m->time_ms = tt_now_ms();
  m->accepted_ns = tt_mono_ns();
  snprintf(m->epoch, sizeof(m->epoch), "%s", epoch);
  char *p = m->storage;
  memcpy(p, channel, clen);
  p[clen] = '\0';
  m->channel = p;
  m->channel_len = clen;
  p += clen + 1;
  memcpy(p, event, elen);
  p[elen] = '\0';
  m->event = p;
  m->event_len = elen;
  p += elen + 1;
  memcpy(p, data, dlen);
  p[dlen] = '\0';
  m->data = p;
  m->data_len = dlen;
  for (int i = 0; i < TT_FRAME_KINDS; i++) atomic_init(&m->frames[i], NULL);
  return m;
}

void tt_msg_unref(tt_msg_t *m) {
  if (m == NULL || atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) return;
  for (int i = 0; i < TT_FRAME_KINDS; i++) tt_buf_unref(atomic_load_explicit(&m->frames[i], memory_order_acquire));
  free(m);
}

tt_buf_t *tt_msg_frame(tt_msg_t *m, tt_frame_kind_t kind, tt_buf_t *(*build)(const tt_msg_t *m)) {
  tt_buf_t *f = atomic_load_explicit(&m->frames[kind], memory_order_acquire);
  if (f != NULL) return f;
  tt_buf_t *mine = build(m);
  tt_buf_t *expected = NULL;
  if (atomic_compare_exchange_strong_explicit(&m->frames[kind], &expected, mine, memory_order_acq_rel,
                                              memory_order_acquire))
    return mine;
  tt_buf_unref(mine); /* another thread built it first; use theirs */
  return expected;
}

/* ================================================================ names */

static bool tt__name_char(unsigned char c, bool slash) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == ':' || c == '-' || (slash && c == '/');
}

static bool tt__name_valid(const char *name, size_t len, size_t max, bool slash) {
  if (len == 0 || len > max) return false;
  for (size_t i = 0; i < len; i++)
    if (!tt__name_char((unsigned char)name[i], slash)) return false;
  return true;
}

bool tt_channel_valid(const char *name, size_t len) { return tt__name_valid(name, len, 255, true); }
bool tt_event_valid(const char *name, size_t len) { return tt__name_valid(name, len, 64, false); }
