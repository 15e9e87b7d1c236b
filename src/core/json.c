/* JSON scanning: validation and spans, no tree. */
#include <errno.h>
#include <string.h>

#include "core.h"

typedef struct {
  const char *p, *end;
} tt_json_cur_t;

static void json__ws(tt_json_cur_t *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int json__hex4(const char *p, const char *end, unsigned *out) {
  if (end - p < 4) return -EINVAL;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -EINVAL;
  }
  *out = v;
  return 0;
}

/* Length of the valid UTF-8 sequence at p, or 0. */
static size_t json__utf8(const unsigned char *p, const unsigned char *end) {
  static const struct {
    unsigned char lo, hi, mask;
    size_t n;
  } leads[] = {{0xc2, 0xdf, 0x1f, 2}, {0xe0, 0xef, 0x0f, 3}, {0xf0, 0xf4, 0x07, 4}};
  unsigned char c = p[0];
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  for (size_t i = 0; i < TT_ARRAY_SIZE(leads); i++) {
    if (c >= leads[i].lo && c <= leads[i].hi) {
      n = leads[i].n;
      cp = c & leads[i].mask;
    }
  }
  if (n == 0) return 0;
  if ((size_t)(end - p) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

static int json__string(tt_json_cur_t *c) {
  if (c->p >= c->end || *c->p != '"') return -EINVAL;
  c->p++;
  while (c->p < c->end) {
    unsigned char ch = (unsigned char)*c->p;
    if (ch == '"') {
      c->p++;
      return 0;
    }
    if (ch < 0x20) return -EINVAL;
    if (ch == '\\') {
      if (c->end - c->p < 2) return -EINVAL;
      char e = c->p[1];
      if (e == 'u') {
        unsigned v;
        if (json__hex4(c->p + 2, c->end, &v) != 0) return -EINVAL;
        c->p += 6;
      } else if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') {
        c->p += 2;
      } else {
        return -EINVAL;
      }
      continue;
    }
    size_t n = json__utf8((const unsigned char *)c->p, (const unsigned char *)c->end);
    if (n == 0) return -EINVAL;
    c->p += n;
  }
  return -EINVAL;
}

static int json__number(tt_json_cur_t *c) {
  const char *p = c->p;
  if (p < c->end && *p == '-') p++;
  if (p >= c->end) return -EINVAL;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < c->end && *p >= '0' && *p <= '9') p++;
  } else {
    return -EINVAL;
  }
  if (p < c->end && *p == '.') {
    p++;
    if (p >= c->end || *p < '0' || *p > '9') return -EINVAL;
    while (p < c->end && *p >= '0' && *p <= '9') p++;
  }
  if (p < c->end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < c->end && (*p == '+' || *p == '-')) p++;
    if (p >= c->end || *p < '0' || *p > '9') return -EINVAL;
    while (p < c->end && *p >= '0' && *p <= '9') p++;
  }
  c->p = p;
  return 0;
}

static int json__literal(tt_json_cur_t *c, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return -EINVAL;
  c->p += n;
  return 0;
}

static int json__value(tt_json_cur_t *c, int depth) {
  if (c->p >= c->end) return -EINVAL;
  switch (*c->p) {
    case '"': return json__string(c);
    case 't': return json__literal(c, "true");
    case 'f': return json__literal(c, "false");
    case 'n': return json__literal(c, "null");
    case '[':
    case '{': {
      if (depth >= TT_JSON_MAX_DEPTH) return -EINVAL;
      bool obj = *c->p == '{';
      char close = obj ? '}' : ']';
      c->p++;
      json__ws(c);
      if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
      }
      for (;;) {
        if (obj) {
          if (json__string(c) != 0) return -EINVAL;
          json__ws(c);
          if (c->p >= c->end || *c->p != ':') return -EINVAL;
          c->p++;
          json__ws(c);
        }
        if (json__value(c, depth + 1) != 0) return -EINVAL;
        json__ws(c);
        if (c->p >= c->end) return -EINVAL;
        if (*c->p == close) {
          c->p++;
          return 0;
        }
        if (*c->p != ',') return -EINVAL;
        c->p++;
        json__ws(c);
      }
    }
    default: return json__number(c);
  }
}

int tt_json_validate(const char *buf, size_t len) {
  tt_json_cur_t c = {buf, buf + len};
  json__ws(&c);
  if (json__value(&c, 0) != 0) return -EINVAL;
  json__ws(&c);
  return c.p == c.end ? 0 : -EINVAL;
}

int tt_json_object_scan(const char *buf, size_t len,
                        int (*member)(void *ctx, tt_json_span_t key, tt_json_span_t value), void *ctx) {
  if (tt_json_validate(buf, len) != 0) return -EINVAL;
  tt_json_cur_t c = {buf, buf + len};
  json__ws(&c);
  if (*c.p != '{') return -ENOTSUP;
  c.p++;
  json__ws(&c);
  if (*c.p == '}') return 0;
  for (;;) {
    /* Already validated: these cannot fail. */
    const char *k = c.p;
    json__string(&c);
    tt_json_span_t key = {k + 1, (size_t)(c.p - k - 2)};
    json__ws(&c);
    c.p++; /* ':' */
    json__ws(&c);
    const char *v = c.p;
    json__value(&c, 1);
    tt_json_span_t val = {v, (size_t)(c.p - v)};
    int rc = member(ctx, key, val);
    if (rc != 0) return rc;
    json__ws(&c);
    if (*c.p == '}') return 0;
    c.p++; /* ',' */
    json__ws(&c);
  }
}

static void json__put_utf8(tt_str_t *out, uint32_t cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (char)(0xc0 | (cp >> 6));
    b[1] = (char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xe0 | (cp >> 12));
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[2] = (char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  tt_str_append(out, b, n);
}

int tt_json_string_decode(tt_json_span_t v, tt_str_t *out) {
  if (v.len < 2 || v.p[0] != '"' || v.p[v.len - 1] != '"') return -EINVAL;
  const char *p = v.p + 1, *end = v.p + v.len - 1;
  tt_str_reserve(out, v.len);
  while (p < end) {
    if (*p != '\\') {
      tt_str_append(out, p, 1);
      p++;
      continue;
    }
    char e = p[1];
    p += 2;
    switch (e) {
      case 'b': tt_str_append(out, "\b", 1); break;
      case 'f': tt_str_append(out, "\f", 1); break;
      case 'n': tt_str_append(out, "\n", 1); break;
      case 'r': tt_str_append(out, "\r", 1); break;
      case 't': tt_str_append(out, "\t", 1); break;
      case 'u': {
        unsigned cp = 0, lo = 0;
        if (json__hex4(p, end, &cp) != 0) return -EINVAL;
        p += 4;
        if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
            json__hex4(p + 2, end, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          p += 6;
        } else if (cp >= 0xd800 && cp <= 0xdfff) {
          cp = 0xfffd; /* lone surrogate */
        }
        json__put_utf8(out, cp);
        break;
      }
      default: tt_str_append(out, &e, 1); break;
    }
  }
  return 0;
}

bool tt_json_key_is(tt_json_span_t key, const char *name) {
  size_t n = strlen(name);
  if (memchr(key.p, '\\', key.len) == NULL) return key.len == n && memcmp(key.p, name, n) == 0;
  tt_str_t k = {0};
  tt_json_span_t quoted = {key.p - 1, key.len + 2};
  bool same = tt_json_string_decode(quoted, &k) == 0 && k.len == n && memcmp(k.data, name, n) == 0;
  tt_str_free(&k);
  return same;
}
