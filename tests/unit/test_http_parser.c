/* Unit tests of the HTTP/1.1 request parser, chunked decoder, URL decoding
 * and query splitting (src/net/http_parser.c). */
#include <stdlib.h>

#include "net/net.h"
#include "test.h"

/* ================================================================ helpers */

static int parse(const char *s, http_head_t *h) { return http_parse_head(s, strlen(s), h); }

/* Header i is name: value. */
#define CHECK_HEADER(h, i, n, v)                                                                    \
  do {                                                                                              \
    if (CHECK((h)->num_headers > (size_t)(i))) {                                                    \
      CHECK_STR((h)->headers[i].name, (h)->headers[i].name_len, n);                                \
      CHECK_STR((h)->headers[i].value, (h)->headers[i].value_len, v);                              \
    }                                                                                               \
  } while (0)

/* Every pointer of `h` lies inside buf[0..len). */
static int head_inside(const http_head_t *h, const char *buf, size_t len) {
  const char *end = buf + len;
  if (h->method < buf || h->method + h->method_len > end) return 0;
  if (h->target < buf || h->target + h->target_len > end) return 0;
  for (size_t i = 0; i < h->num_headers; i++) {
    const http_header_t *x = &h->headers[i];
    if (x->name < buf || x->name + x->name_len > end) return 0;
    if (x->value < buf || x->value + x->value_len > end) return 0;
  }
  return 1;
}

/* ================================================================ request line and headers */

static void test_get_with_query(void) {
  const char *req = "GET /sse/news?since=ab:12&x HTTP/1.1\r\nHost: example.org\r\nAccept: text/event-stream\r\n\r\n";
  http_head_t h;
  CHECK_EQ(parse(req, &h), strlen(req));
  CHECK_STR(h.method, h.method_len, "GET");
  CHECK_STR(h.target, h.target_len, "/sse/news?since=ab:12&x");
  CHECK_EQ(h.minor_version, 1);
  CHECK_EQ(h.num_headers, 2);
  CHECK_HEADER(&h, 0, "Host", "example.org");
  CHECK_HEADER(&h, 1, "Accept", "text/event-stream");
  CHECK(head_inside(&h, req, strlen(req)));
}

static void test_post_with_headers(void) {
  const char *head = "POST /api/publish HTTP/1.0\r\n"
                     "Host: a\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: 13\r\n"
                     "X-Api-Key: secret\r\n"
                     "\r\n";
  char req[512];
  snprintf(req, sizeof(req), "%s{\"data\":\"x\"}", head);
  http_head_t h;
  CHECK_EQ(http_parse_head(req, strlen(req), &h), strlen(head)); /* the body is not part of the head */
  CHECK_STR(h.method, h.method_len, "POST");
  CHECK_STR(h.target, h.target_len, "/api/publish");
  CHECK_EQ(h.minor_version, 0);
  CHECK_EQ(h.num_headers, 4);
  CHECK_HEADER(&h, 1, "Content-Type", "application/json");
  CHECK_HEADER(&h, 2, "Content-Length", "13");
  CHECK_HEADER(&h, 3, "X-Api-Key", "secret");
}

static void test_value_trimming(void) {
  const char *req = "GET / HTTP/1.1\r\n"
                    "A:   v  \t\r\n"
                    "B:\t\tv w\t\r\n"
                    "C:x\r\n"
                    "D:   \t \r\n"
                    "E:\r\n"
                    "F: \xc3\xa9 \x80\r\n" /* obs-text is allowed */
                    "\r\n";
  http_head_t h;
  CHECK_EQ(parse(req, &h), strlen(req));
  CHECK_EQ(h.num_headers, 6);
  CHECK_HEADER(&h, 0, "A", "v");
  CHECK_HEADER(&h, 1, "B", "v w");
  CHECK_HEADER(&h, 2, "C", "x");
  CHECK_HEADER(&h, 3, "D", "");
  CHECK_HEADER(&h, 4, "E", "");
  CHECK_HEADER(&h, 5, "F", "\xc3\xa9 \x80");
}

static void test_head_get(void) {
  const char *req = "GET / HTTP/1.1\r\nContent-Type: text/plain\r\nX-One: 1\r\nx-one: 2\r\n\r\n";
  http_head_t h;
  CHECK_EQ(parse(req, &h), strlen(req));
  size_t n = 99;
  const char *v = http_head_get(&h, "content-type", &n);
  if (CHECK(v != NULL)) CHECK_STR(v, n, "text/plain");
  v = http_head_get(&h, "CONTENT-TYPE", &n);
  if (CHECK(v != NULL)) CHECK_STR(v, n, "text/plain");
  v = http_head_get(&h, "X-ONE", &n); /* the first of two */
  if (CHECK(v != NULL)) CHECK_STR(v, n, "1");
  CHECK(http_head_get(&h, "Content", &n) == NULL);      /* a prefix is not a match */
  CHECK(http_head_get(&h, "Content-Type2", &n) == NULL);
  CHECK(http_head_get(&h, "Missing", NULL) == NULL);
  CHECK(http_head_get(&h, "x-one", NULL) != NULL);      /* value_len may be NULL */
}

static void test_bare_lf(void) {
  const char *req = "GET /x HTTP/1.1\nHost: a\nB: c\n\n";
  http_head_t h;
  CHECK_EQ(parse(req, &h), strlen(req));
  CHECK_EQ(h.num_headers, 2);
  CHECK_HEADER(&h, 0, "Host", "a");
  CHECK_HEADER(&h, 1, "B", "c");
  const char *mixed = "GET /x HTTP/1.1\r\nHost: a\nB: c\r\n\n";
  CHECK_EQ(parse(mixed, &h), strlen(mixed));
  CHECK_HEADER(&h, 1, "B", "c");
  const char *mixed2 = "GET /x HTTP/1.1\nHost: a\n\r\n";
  CHECK_EQ(parse(mixed2, &h), strlen(mixed2));
}

static void test_obs_fold_rejected(void) {
  http_head_t h;
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\n X: a\r\n\r\n", &h), HTTP_PARSE_BAD);
}

static void test_bad_request_line(void) {
  http_head_t h;
  CHECK_EQ(parse("G(T / HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GE\x01T / HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("G@T / HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("G(T", &h), HTTP_PARSE_BAD); /* rejected before the line is complete */
  CHECK_EQ(parse("\x16\x03\x01", &h), HTTP_PARSE_BAD); /* TLS hello on a plain port */
  CHECK_EQ(parse(" / HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);        /* no method */
  CHECK_EQ(parse("GET  HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);      /* no target */
  CHECK_EQ(parse("GET /a b HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);  /* space in target */
  CHECK_EQ(parse("GET /\x7f HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET /\xc3\xa9 HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\rX\r\n\r\n", &h), HTTP_PARSE_BAD);  /* bare CR */
  /* Missing or malformed versions. */
  CHECK_EQ(parse("GET /\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / \r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1 \r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / http/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.x\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/11.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\r\n\r\n", &h), HTTP_PARSE_BAD);
}

static void test_versions(void) {
  http_head_t h;
  CHECK_EQ(parse("GET / HTTP/2.0\r\n\r\n", &h), HTTP_PARSE_VERSION);
  CHECK_EQ(parse("GET / HTTP/1.2\r\n\r\n", &h), HTTP_PARSE_VERSION);
  CHECK_EQ(parse("GET / HTTP/0.9\r\n\r\n", &h), HTTP_PARSE_VERSION);
  CHECK_EQ(parse("GET / HTTP/9.9\r\n\r\n", &h), HTTP_PARSE_VERSION);
  CHECK_EQ(parse("GET / HTTP/1.0\r\n\r\n", &h), 18);
  CHECK_EQ(h.minor_version, 0);
  CHECK_EQ(parse("GET / HTTP/1.1\r\n\r\n", &h), 18);
  CHECK_EQ(h.minor_version, 1);
}

/* A request with `n` headers H0: v .. H(n-1): v. */
static char *many_headers(int n) {
  tt_str_t s = {0};
  tt_str_appends(&s, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < n; i++) tt_str_appendf(&s, "H%d: v%d\r\n", i, i);
  tt_str_appends(&s, "\r\n");
  return s.data;
}

static void test_too_many_headers(void) {
  http_head_t h;
  char *r64 = many_headers(HTTP_MAX_HEADERS);
  CHECK_EQ(parse(r64, &h), strlen(r64));
  CHECK_EQ(h.num_headers, HTTP_MAX_HEADERS);
  CHECK_HEADER(&h, 63, "H63", "v63");
  char *r65 = many_headers(HTTP_MAX_HEADERS + 1);
  CHECK_EQ(parse(r65, &h), HTTP_PARSE_TOO_MANY_HEADERS);
  free(r64);
  free(r65);
}

static void test_bad_headers(void) {
  http_head_t h;
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", &h), HTTP_PARSE_BAD); /* bare CR */
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX: a\r\r\n\r\n", &h), HTTP_PARSE_BAD);
  static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
  CHECK_EQ(http_parse_head(nul, sizeof(nul) - 1, &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX Y: z\r\n\r\n", &h), HTTP_PARSE_BAD);  /* space in name */
  CHECK_EQ(parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n", &h), HTTP_PARSE_BAD); /* space before colon */
  CHECK_EQ(parse("GET / HTTP/1.1\r\n: a\r\n\r\n", &h), HTTP_PARSE_BAD);      /* empty name */
  CHECK_EQ(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\nX(: a\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("GET / HTTP/1.1\r\n\rX\r\n", &h), HTTP_PARSE_BAD);
  /* A tab inside a value is fine. */
  const char *tab = "GET / HTTP/1.1\r\nX: a\tb\r\n\r\n";
  CHECK_EQ(parse(tab, &h), strlen(tab));
  CHECK_HEADER(&h, 0, "X", "a\tb");
}

/* Every proper prefix of a valid request is INCOMPLETE, never BAD; the
 * whole gives its head length, whatever follows it. */
static void test_every_prefix(void) {
  static const char *const reqs[] = {
      "GET /sse/news?since=ab:12 HTTP/1.1\r\nHost: example.org\r\nAccept:  text/event-stream \r\n\r\n",
      "POST /api/publish HTTP/1.0\r\nContent-Length: 2\r\nX:\r\n\r\n",
      "GET / HTTP/1.1\n\n",
      "\r\n\nGET /x HTTP/1.1\nA: b\r\nC: d\n\r\n",
      "OPTIONS * HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nF: \xc3\xa9\t\r\n\r\n",
  };
  for (size_t r = 0; r < TT_ARRAY_SIZE(reqs); r++) {
    const char *req = reqs[r];
    size_t len = strlen(req);
    /* A copy per prefix, so ASan catches a read past its end. */
    for (size_t n = 0; n < len; n++) {
      char *p = tt_malloc(n);
      memcpy(p, req, n);
      http_head_t h;
      int rc = http_parse_head(p, n, &h);
      if (!CHECK(rc == HTTP_PARSE_INCOMPLETE)) fprintf(stderr, "    request %zu, prefix %zu: %d\n", r, n, rc);
      free(p);
    }
    http_head_t h;
    char *p = tt_malloc(len);
    memcpy(p, req, len);
    CHECK_EQ(http_parse_head(p, len, &h), len);
    CHECK(head_inside(&h, p, len));
    free(p);
    /* Bytes after the blank line are not looked at. */
    tt_str_t s = {0};
    tt_str_appends(&s, req);
    tt_str_append(&s, "\x01\r\r garbage", 11);
    CHECK_EQ(http_parse_head(s.data, s.len, &h), len);
    tt_str_free(&s);
  }
}

static void test_leading_empty_lines(void) {
  http_head_t h;
  const char *a = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
  CHECK_EQ(parse(a, &h), strlen(a));
  CHECK_STR(h.method, h.method_len, "GET");
  const char *b = "\n\nGET / HTTP/1.1\r\n\r\n";
  CHECK_EQ(parse(b, &h), strlen(b));
  CHECK_EQ(parse("\r\r\nGET / HTTP/1.1\r\n\r\n", &h), HTTP_PARSE_BAD);
  CHECK_EQ(parse("\r\n", &h), HTTP_PARSE_INCOMPLETE);
  CHECK_EQ(parse("\r", &h), HTTP_PARSE_INCOMPLETE);
  CHECK_EQ(parse("", &h), HTTP_PARSE_INCOMPLETE);
}

/* ================================================================ chunked bodies */

typedef struct {
  ssize_t rc;
  bool done;
  tt_str_t out;
} chunk_result_t;

static chunk_result_t dechunk(const char *in, size_t len) {
  chunk_result_t r = {0};
  http_chunked_t st = {0};
  r.rc = http_chunked_decode(&st, in, len, &r.out, &r.done);
  return r;
}

/* Decodes `in` fed in pieces of `step` bytes; stops at done or error. */
static chunk_result_t dechunk_steps(const char *in, size_t len, size_t step) {
  chunk_result_t r = {0};
  http_chunked_t st = {0};
  size_t off = 0;
  while (off < len) {
    size_t n = TT_MIN(step, len - off);
    ssize_t rc = http_chunked_decode(&st, in + off, n, &r.out, &r.done);
    if (rc < 0) {
      r.rc = rc;
      return r;
    }
    if (!r.done && (size_t)rc != n) { /* must take all it was given unless done */
      r.rc = -100;
      return r;
    }
    off += (size_t)rc;
    if (r.done) break;
  }
  r.rc = (ssize_t)off;
  return r;
}

#define CHECK_CHUNKED(in, body)                                                                     \
  do {                                                                                              \
    chunk_result_t r_ = dechunk(in, strlen(in));                                                    \
    CHECK_EQ(r_.rc, strlen(in));                                                                    \
    CHECK(r_.done);                                                                                 \
    CHECK_MEM(r_.out.data, r_.out.len, body, sizeof(body) - 1);                                     \
    tt_str_free(&r_.out);                                                                           \
  } while (0)

#define CHECK_CHUNKED_BAD(in)                                                                       \
  do {                                                                                              \
    chunk_result_t r_ = dechunk(in, sizeof(in) - 1);                                                \
    CHECK_EQ(r_.rc, HTTP_PARSE_BAD);                                                                \
    tt_str_free(&r_.out);                                                                           \
  } while (0)

static void test_chunked_ok(void) {
  CHECK_CHUNKED("5\r\nhello\r\n0\r\n\r\n", "hello");
  CHECK_CHUNKED("5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n", "hello world!");
  CHECK_CHUNKED("a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n", "0123456789abcdefghijk");
  CHECK_CHUNKED("0\r\n\r\n", "");
  CHECK_CHUNKED("005\r\nhello\r\n000\r\n\r\n", "hello");
  /* extensions */
  CHECK_CHUNKED("5;name=val\r\nhello\r\n0;last\r\n\r\n", "hello");
  CHECK_CHUNKED("5 ;x=\"q\"\r\nhello\r\n0\t;y\r\n\r\n", "hello");
  /* trailers */
  CHECK_CHUNKED("5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", "hello");
  /* bare LF line ends */
  CHECK_CHUNKED("5\nhello\n0\n\n", "hello");
  CHECK_CHUNKED("5\r\nhello\n0\nT: 1\n\r\n", "hello");
  /* data with CR and LF in it is taken as is */
  CHECK_CHUNKED("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n");
  /* 15 hex digits is the limit */
  chunk_result_t r = dechunk("fffffffffffffff\r\nab", 19);
  CHECK_EQ(r.rc, 19);
  CHECK(!r.done);
  CHECK_STR(r.out.data, r.out.len, "ab");
  tt_str_free(&r.out);
}

static void test_chunked_rest(void) {
  /* What follows the body belongs to the next request. */
  const char *in = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
  chunk_result_t r = dechunk(in, strlen(in));
  CHECK_EQ(r.rc, 13);
  CHECK(r.done);
  CHECK_STR(r.out.data, r.out.len, "abc");
  tt_str_free(&r.out);
  /* Not done yet: everything consumed. */
  r = dechunk("5\r\nhel", 6);
  CHECK_EQ(r.rc, 6);
  CHECK(!r.done);
  CHECK_STR(r.out.data, r.out.len, "hel");
  tt_str_free(&r.out);
}

static void test_chunked_split(void) {
  static const char *const bodies[] = {
      "5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n",
      "5;name=val\r\nhello\r\n0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
      "5\nhello\n0\nT: 1\n\n",
      "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
  };
  for (size_t b = 0; b < TT_ARRAY_SIZE(bodies); b++) {
    const char *in = bodies[b];
    size_t len = strlen(in);
    chunk_result_t whole = dechunk(in, len);
    CHECK_EQ(whole.rc, len);
    CHECK(whole.done);
    for (size_t step = 1; step <= 7; step++) {
      chunk_result_t r = dechunk_steps(in, len, step);
      CHECK_EQ(r.rc, len);
      CHECK(r.done);
      CHECK_MEM(r.out.data, r.out.len, whole.out.data, whole.out.len);
      tt_str_free(&r.out);
    }
    /* every split into two pieces */
    for (size_t k = 0; k <= len; k++) {
      chunk_result_t r = {0};
      http_chunked_t st = {0};
      ssize_t a = http_chunked_decode(&st, in, k, &r.out, &r.done);
      CHECK_EQ(a, k);
      ssize_t c = k == len ? 0 : http_chunked_decode(&st, in + k, len - k, &r.out, &r.done);
      CHECK_EQ(c, len - k);
      CHECK(r.done);
      CHECK_MEM(r.out.data, r.out.len, whole.out.data, whole.out.len);
      tt_str_free(&r.out);
    }
    tt_str_free(&whole.out);
  }
}

static void test_chunked_bad(void) {
  CHECK_CHUNKED_BAD("g\r\n");
  CHECK_CHUNKED_BAD("\r\n");                    /* no digits */
  CHECK_CHUNKED_BAD(";ext\r\n");
  CHECK_CHUNKED_BAD("5x\r\nhello\r\n");
  CHECK_CHUNKED_BAD("-5\r\nhello\r\n");
  CHECK_CHUNKED_BAD("0x5\r\nhello\r\n");
  CHECK_CHUNKED_BAD("5\r\nhelloX0\r\n\r\n");     /* missing CRLF after data */
  CHECK_CHUNKED_BAD("5\r\nhello\rX0\r\n\r\n");   /* CR without LF after data */
  CHECK_CHUNKED_BAD("5\rX");                     /* CR without LF after size */
  CHECK_CHUNKED_BAD("5;a\x01\r\n");              /* control char in extension */
  CHECK_CHUNKED_BAD("1000000000000000\r\n");     /* 16 hex digits */
  CHECK_CHUNKED_BAD("ffffffffffffffffff\r\n");
  CHECK_CHUNKED_BAD("0\r\nX: a\rb\r\n\r\n");     /* bare CR in a trailer */
  CHECK_CHUNKED_BAD("0\r\n\rX");                 /* final CR without LF */
  CHECK_CHUNKED_BAD("5 6\r\nhello\r\n");         /* whitespace only before ';' */
  CHECK_CHUNKED_BAD("5 x\r\nhello\r\n");
  CHECK_CHUNKED_BAD("0\r\nX: a\x01\r\n\r\n");    /* control char in a trailer */
  CHECK_CHUNKED_BAD("0\r\n\x01X: a\r\n\r\n");
}

/* Extensions and trailers decode to nothing, so they are bounded: without a
 * bound a client could make the server buffer without limit. */
static void test_chunked_bounds(void) {
  tt_str_t in = {0};
  tt_str_appends(&in, "1;");
  for (int i = 0; i < 256; i++) tt_str_append(&in, "a", 1);
  tt_str_appends(&in, "\r\nx\r\n0\r\n\r\n");
  chunk_result_t r = dechunk(in.data, in.len);
  CHECK_EQ(r.rc, in.len); /* 256 bytes after ';': the limit */
  CHECK(r.done);
  tt_str_free(&r.out);
  tt_str_free(&in);

  tt_str_appends(&in, "1;");
  for (int i = 0; i < 257; i++) tt_str_append(&in, "a", 1);
  tt_str_appends(&in, "\r\nx\r\n0\r\n\r\n");
  r = dechunk(in.data, in.len);
  CHECK_EQ(r.rc, HTTP_PARSE_BAD);
  tt_str_free(&r.out);
  tt_str_free(&in);

  tt_str_appends(&in, "0\r\n");
  while (in.len < 20000) tt_str_appends(&in, "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
  tt_str_appends(&in, "\r\n");
  r = dechunk(in.data, in.len);
  CHECK_EQ(r.rc, HTTP_PARSE_BAD);
  tt_str_free(&r.out);
  tt_str_free(&in);
}

/* ================================================================ URLs */

static ssize_t urldec(const char *src, bool plus, char *dst) { return http_url_decode(src, strlen(src), dst, plus); }

#define CHECK_URL(src, plus, expect)                                                                \
  do {                                                                                              \
    char d_[256];                                                                                   \
    ssize_t n_ = urldec(src, plus, d_);                                                             \
    if (CHECK(n_ >= 0)) CHECK_MEM(d_, (size_t)n_, expect, sizeof(expect) - 1);                      \
  } while (0)

static void test_url_decode(void) {
  CHECK_URL("", false, "");
  CHECK_URL("abc", false, "abc");
  CHECK_URL("%2F", false, "/");
  CHECK_URL("a%2fb%2Fc", false, "a/b/c");
  CHECK_URL("%20x%20", false, " x ");
  CHECK_URL("%C3%A9", false, "\xc3\xa9");
  CHECK_URL("%ff", false, "\xff");
  CHECK_URL("%25", false, "%");
  CHECK_URL("%2525", false, "%25"); /* decoded once */
  CHECK_URL("a+b", false, "a+b");
  CHECK_URL("a+b", true, "a b");
  CHECK_URL("%2B+", true, "+ ");
  char d[16];
  CHECK_EQ(urldec("%", false, d), -1);
  CHECK_EQ(urldec("%2", false, d), -1);
  CHECK_EQ(urldec("a%", false, d), -1);
  CHECK_EQ(urldec("ab%4", false, d), -1);
  CHECK_EQ(urldec("%zz", false, d), -1);
  CHECK_EQ(urldec("%2g", false, d), -1);
  CHECK_EQ(urldec("%g2", false, d), -1);
  CHECK_EQ(urldec("%+1", true, d), -1);
  CHECK_EQ(urldec("%00", false, d), -1);
  CHECK_EQ(urldec("a%00b", true, d), -1);
  /* The length bounds the input: a '%' at the end of the slice is bad even
   * when hex digits follow outside it. */
  CHECK_EQ(http_url_decode("a%41", 2, d, false), -1);
  CHECK_EQ(http_url_decode("a%41", 3, d, false), -1);
  CHECK_EQ(http_url_decode("a%41", 4, d, false), 2);
}

/* ================================================================ queries */

typedef struct {
  const char *k, *v;
} kv_t;

static void check_query(const char *query, const kv_t *want, size_t nwant) {
  const char *q = query, *k, *v;
  size_t ql = strlen(query), kl, vl, i = 0;
  while (http_query_next(&q, &ql, &k, &kl, &v, &vl)) {
    if (!CHECK(i < nwant)) {
      fprintf(stderr, "    query \"%s\": extra pair\n", query);
      return;
    }
    CHECK(k >= query && k + kl <= query + strlen(query));
    CHECK(v >= query && v + vl <= query + strlen(query));
    CHECK_STR(k, kl, want[i].k);
    CHECK_STR(v, vl, want[i].v);
    i++;
  }
  if (!CHECK(i == nwant)) fprintf(stderr, "    query \"%s\": %zu pairs, want %zu\n", query, i, nwant);
  CHECK_EQ(ql, 0);
}

static void test_query_next(void) {
  check_query("", NULL, 0);
  check_query("&", NULL, 0);
  check_query("&&&", NULL, 0);
  check_query("a=1&b=2", (kv_t[]){{"a", "1"}, {"b", "2"}}, 2);
  check_query("&&a=1&&b=2&&", (kv_t[]){{"a", "1"}, {"b", "2"}}, 2);
  check_query("a=1&", (kv_t[]){{"a", "1"}}, 1);
  check_query("flag", (kv_t[]){{"flag", ""}}, 1);
  check_query("flag&x=y", (kv_t[]){{"flag", ""}, {"x", "y"}}, 2);
  check_query("a=&=b", (kv_t[]){{"a", ""}, {"", "b"}}, 2);
  check_query("=", (kv_t[]){{"", ""}}, 1);
  check_query("a=1=2", (kv_t[]){{"a", "1=2"}}, 1);
  check_query("channel=a%2Fb&since=x:1", (kv_t[]){{"channel", "a%2Fb"}, {"since", "x:1"}}, 2);
}

int main(void) {
  RUN(test_get_with_query);
  RUN(test_post_with_headers);
  RUN(test_value_trimming);
  RUN(test_head_get);
  RUN(test_bare_lf);
  RUN(test_obs_fold_rejected);
  RUN(test_bad_request_line);
  RUN(test_versions);
  RUN(test_too_many_headers);
  RUN(test_bad_headers);
  RUN(test_every_prefix);
  RUN(test_leading_empty_lines);
  RUN(test_chunked_ok);
  RUN(test_chunked_rest);
  RUN(test_chunked_split);
  RUN(test_chunked_bad);
  RUN(test_chunked_bounds);
  RUN(test_url_decode);
  RUN(test_query_next);
  return test_report("test_http_parser");
}
