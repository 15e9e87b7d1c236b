/*
 * libFuzzer target for the HTTP/1.1 request parser (src/net/http_parser.c).
 *
 * The input is a connection's bytes. The head parser runs over all of them;
 * when it finds a head, what follows is decoded as a chunked body (whole,
 * and split in two at a point taken from the data: both must agree), the
 * target is percent-decoded and its query split into pairs. Every invariant
 * that fails aborts, so libFuzzer keeps the input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "fuzz.h"


static int inside(const char *p, size_t len, const char *buf, size_t buflen) {
  return p >= buf && len <= buflen && p - buf <= (ptrdiff_t)(buflen - len);
}

/* ================================================================ head */

static void fuzz_head_slices(const http_head_t *h, const char *buf, size_t n) {
  FUZZ_CHECK(h->method_len > 0 && inside(h->method, h->method_len, buf, n));
  FUZZ_CHECK(h->target_len > 0 && inside(h->target, h->target_len, buf, n));
  FUZZ_CHECK(h->method + h->method_len < h->target); /* method, space, target */
  FUZZ_CHECK(h->minor_version == 0 || h->minor_version == 1);
  FUZZ_CHECK(h->num_headers <= HTTP_MAX_HEADERS);
  for (size_t i = 0; i < h->num_headers; i++) {
    const http_header_t *x = &h->headers[i];
    FUZZ_CHECK(x->name_len > 0 && inside(x->name, x->name_len, buf, n));
    FUZZ_CHECK(inside(x->value, x->value_len, buf, n));
    FUZZ_CHECK(x->name + x->name_len < x->value); /* the colon is between */
    FUZZ_CHECK(memchr(x->name, ':', x->name_len) == NULL);
    if (x->value_len > 0) {
      /* trimmed, and no CR, LF or other control but tab */
      FUZZ_CHECK(x->value[0] != ' ' && x->value[0] != '\t');
      FUZZ_CHECK(x->value[x->value_len - 1] != ' ' && x->value[x->value_len - 1] != '\t');
      for (size_t k = 0; k < x->value_len; k++) {
        unsigned char c = (unsigned char)x->value[k];
        FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
      }
    }
    /* lookup finds this header or an earlier one of the same name */
    char name[64];
    if (x->name_len < sizeof(name)) {
      memcpy(name, x->name, x->name_len);
      name[x->name_len] = '\0';
      size_t vl = 0;
      const char *v = http_head_get(h, name, &vl);
      FUZZ_CHECK(v != NULL && v <= x->value);
    }
  }
  for (size_t k = 0; k < h->target_len; k++) FUZZ_CHECK(h->target[k] > 0x20 && h->target[k] < 0x7f);
}

/* ================================================================ body */

typedef struct {
  ssize_t rc;   /* bytes consumed, or HTTP_PARSE_BAD */
  bool done;
  tt_str_t out;
} fuzz_chunked_t;

static fuzz_chunked_t fuzz_dechunk_whole(const char *in, size_t len) {
  fuzz_chunked_t r = {0};
  http_chunked_t st = {0};
  r.rc = http_chunked_decode(&st, in, len, &r.out, &r.done);
  FUZZ_CHECK(r.rc == HTTP_PARSE_BAD || (r.rc >= 0 && (size_t)r.rc <= len));
  if (r.rc >= 0 && !r.done) FUZZ_CHECK((size_t)r.rc == len); /* takes all unless done */
  return r;
}

static fuzz_chunked_t fuzz_dechunk_split(const char *in, size_t len, size_t k) {
  fuzz_chunked_t r = {0};
  http_chunked_t st = {0};
  ssize_t a = http_chunked_decode(&st, in, k, &r.out, &r.done);
  if (a < 0 || r.done) {
    r.rc = a;
    return r;
  }
  FUZZ_CHECK((size_t)a == k);
  ssize_t b = http_chunked_decode(&st, in + k, len - k, &r.out, &r.done);
  r.rc = b < 0 ? b : (ssize_t)k + b;
  return r;
}

static void fuzz_body(const char *rest, size_t rlen, size_t k) {
  fuzz_chunked_t whole = fuzz_dechunk_whole(rest, rlen);
  fuzz_chunked_t split = fuzz_dechunk_split(rest, rlen, k);
  FUZZ_CHECK(whole.rc == split.rc);
  FUZZ_CHECK(whole.done == split.done);
  if (whole.rc >= 0) {
    FUZZ_CHECK(whole.out.len == split.out.len);
    FUZZ_CHECK(whole.out.len == 0 || memcmp(whole.out.data, split.out.data, whole.out.len) == 0);
    FUZZ_CHECK(whole.out.len <= (size_t)whole.rc); /* decoded data is never longer than the input */
  }
  /* One byte at a time gives the same result (on short bodies: it is slow). */
  if (rlen <= 256) {
    fuzz_chunked_t bytes = {0};
    http_chunked_t st = {0};
    size_t off = 0;
    ssize_t rc = 0;
    while (off < rlen) {
      rc = http_chunked_decode(&st, rest + off, 1, &bytes.out, &bytes.done);
      if (rc < 0) break;
      FUZZ_CHECK(rc == 1);
      off++;
      if (bytes.done) break;
    }
    bytes.rc = rc < 0 ? rc : (ssize_t)off;
    FUZZ_CHECK(bytes.rc == whole.rc);
    FUZZ_CHECK(bytes.done == whole.done);
    if (whole.rc >= 0)
      FUZZ_CHECK(bytes.out.len == whole.out.len &&
                 (whole.out.len == 0 || memcmp(bytes.out.data, whole.out.data, whole.out.len) == 0));
    tt_str_free(&bytes.out);
  }
  tt_str_free(&whole.out);
  tt_str_free(&split.out);
}

/* ================================================================ URLs */

static void fuzz_url(const char *src, size_t len) {
  char *a = tt_malloc(len ? len : 1), *b = tt_malloc(len ? len : 1);
  ssize_t na = http_url_decode(src, len, a, false);
  ssize_t nb = http_url_decode(src, len, b, true);
  FUZZ_CHECK(na == -1 || (na >= 0 && (size_t)na <= len));
  FUZZ_CHECK(na == nb); /* '+' handling changes bytes, never the outcome or length */
  if (na > 0) {
    /* NUL only where the source had one: %00 is refused */
    if (memchr(src, '\0', len) == NULL) FUZZ_CHECK(memchr(a, '\0', (size_t)na) == NULL);
    for (ssize_t i = 0; i < na; i++) FUZZ_CHECK(a[i] == b[i] || (a[i] == '+' && b[i] == ' '));
  }
  /* without '%', decoding is a copy */
  if (memchr(src, '%', len) == NULL) {
    FUZZ_CHECK(na == (ssize_t)len);
    FUZZ_CHECK(len == 0 || memcmp(a, src, len) == 0);
  }
  free(a);
  free(b);
}

static void fuzz_query(const char *query, size_t qlen) {
  const char *q = query, *k, *v;
  size_t ql = qlen, kl, vl;
  size_t pairs = 0;
  while (http_query_next(&q, &ql, &k, &kl, &v, &vl)) {
    FUZZ_CHECK(++pairs <= qlen);
    FUZZ_CHECK(inside(k, kl, query, qlen));
    FUZZ_CHECK(inside(v, vl, query, qlen));
    FUZZ_CHECK(memchr(k, '&', kl) == NULL && memchr(k, '=', kl) == NULL);
    FUZZ_CHECK(memchr(v, '&', vl) == NULL);
    FUZZ_CHECK(k + kl <= v);
    FUZZ_CHECK(q == v + vl && q + ql == query + qlen);
    fuzz_url(k, kl);
    fuzz_url(v, vl);
  }
  FUZZ_CHECK(ql == 0);
}

/* ================================================================ entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy, so ASan sees any read past the end. */
  char *buf = tt_malloc(size ? size : 1);
  if (size) memcpy(buf, data, size);

  http_head_t head;
  int n = http_parse_head(buf, size, &head);
  FUZZ_CHECK(n == HTTP_PARSE_INCOMPLETE || n == HTTP_PARSE_BAD || n == HTTP_PARSE_VERSION ||
             n == HTTP_PARSE_TOO_MANY_HEADERS || n > 0);
  if (n > 0) {
    size_t hn = (size_t)n;
    FUZZ_CHECK(hn <= size);
    FUZZ_CHECK(buf[hn - 1] == '\n');
    fuzz_head_slices(&head, buf, hn);

    /* The head alone parses the same; any shorter prefix is incomplete. */
    char *h2 = tt_malloc(hn);
    memcpy(h2, buf, hn);
    http_head_t again;
    FUZZ_CHECK(http_parse_head(h2, hn, &again) == n);
    FUZZ_CHECK(again.num_headers == head.num_headers && again.target_len == head.target_len);
    size_t cut = size > 0 ? (size_t)(unsigned char)buf[size - 1] * 131 % hn : 0;
    FUZZ_CHECK(http_parse_head(h2, cut, &again) == HTTP_PARSE_INCOMPLETE);
    FUZZ_CHECK(http_parse_head(h2, hn - 1, &again) == HTTP_PARSE_INCOMPLETE);
    free(h2);

    const char *rest = buf + hn;
    size_t rlen = size - hn;
    size_t k = rlen ? (size_t)(unsigned char)buf[0] * 257u % (rlen + 1) : 0;
    fuzz_body(rest, rlen, k);

    fuzz_url(head.target, head.target_len);
    const char *qm = memchr(head.target, '?', head.target_len);
    if (qm != NULL) fuzz_query(qm + 1, (size_t)(head.target + head.target_len - qm - 1));
  } else {
    /* Not a request: still exercise the decoders over the raw bytes. */
    fuzz_body(buf, size, size ? (size_t)(unsigned char)buf[0] % (size + 1) : 0);
    fuzz_url(buf, size);
    fuzz_query(buf, size);
  }
  free(buf);
  return 0;
}
