/*
 * libFuzzer target for the JSON scanner (src/core/json.c) and SSE framing
 * (src/transport/sse.c).
 *
 * JSON: validation and object scanning must agree; every span lies in the
 * input, every member value is valid JSON on its own, and strings decode
 * and survive a re-encode (tt_str_append_json) round trip.
 * SSE: the input as a message's data; stripping the "data: " prefixes of
 * the frame and joining the lines with "\n" gives the data back with "\r\n"
 * and "\r" turned into "\n". Every invariant that fails aborts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "transport/transport.h"
#include "fuzz.h"


static int inside(const char *p, size_t len, const char *buf, size_t buflen) {
  return p >= buf && len <= buflen && p - buf <= (ptrdiff_t)(buflen - len);
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ================================================================ JSON */

/* Decodes a string span; the result, re-encoded, validates and decodes to
 * the same bytes. */
static void fuzz_string(tt_json_span_t s) {
  tt_str_t dec = {0};
  FUZZ_CHECK(tt_json_string_decode(s, &dec) == 0);
  FUZZ_CHECK(dec.len <= s.len - 2); /* escapes only shrink */
  tt_str_t enc = {0};
  tt_str_append(&enc, "\"", 1);
  if (dec.len) tt_str_append_json(&enc, dec.data, dec.len);
  tt_str_append(&enc, "\"", 1);
  FUZZ_CHECK(tt_json_validate(enc.data, enc.len) == 0);
  tt_str_t again = {0};
  FUZZ_CHECK(tt_json_string_decode((tt_json_span_t){enc.data, enc.len}, &again) == 0);
  FUZZ_CHECK(again.len == dec.len && (dec.len == 0 || memcmp(again.data, dec.data, dec.len) == 0));
  tt_str_free(&again);
  tt_str_free(&enc);
  tt_str_free(&dec);
}

typedef struct {
  const char *buf;
  size_t len;
  const char *last_end; /* end of the previous member's value */
  size_t members;
} scan_ctx_t;

static int on_member(void *ctx, tt_json_span_t key, tt_json_span_t value) {
  scan_ctx_t *c = ctx;
  c->members++;
  /* the key's raw span sits between its quotes */
  FUZZ_CHECK(key.p > c->buf && inside(key.p, key.len, c->buf, c->len));
  FUZZ_CHECK(key.p[-1] == '"' && key.p + key.len < c->buf + c->len && key.p[key.len] == '"');
  FUZZ_CHECK(key.p > c->last_end); /* in order, no overlap */
  /* the value is a trimmed slice that is valid JSON by itself */
  FUZZ_CHECK(value.len > 0 && inside(value.p, value.len, c->buf, c->len));
  FUZZ_CHECK(value.p > key.p + key.len);
  FUZZ_CHECK(!is_ws(value.p[0]) && !is_ws(value.p[value.len - 1]));
  FUZZ_CHECK(tt_json_validate(value.p, value.len) == 0);
  c->last_end = value.p + value.len;
  fuzz_string((tt_json_span_t){key.p - 1, key.len + 2});
  if (value.p[0] == '"') fuzz_string(value);
  return 0;
}

static void fuzz_json(const char *buf, size_t len) {
  int v = tt_json_validate(buf, len);
  FUZZ_CHECK(v == 0 || v == -EINVAL);
  scan_ctx_t ctx = {.buf = buf, .len = len, .last_end = buf};
  int s = tt_json_object_scan(buf, len, on_member, &ctx);
  size_t i = 0;
  while (i < len && is_ws(buf[i])) i++;
  if (v != 0) {
    FUZZ_CHECK(s == -EINVAL);
    FUZZ_CHECK(ctx.members == 0);
  } else {
    FUZZ_CHECK(i < len);
    FUZZ_CHECK(s == (buf[i] == '{' ? 0 : -ENOTSUP));
    if (s == -ENOTSUP) FUZZ_CHECK(ctx.members == 0);
    /* a top-level string decodes */
    if (buf[i] == '"') {
      size_t j = len;
      while (j > i && is_ws(buf[j - 1])) j--;
      fuzz_string((tt_json_span_t){buf + i, j - i});
    }
  }
  /* The decoder on raw bytes: memory-safe, and -EINVAL when not quoted. */
  tt_str_t out = {0};
  int d = tt_json_string_decode((tt_json_span_t){buf, len}, &out);
  FUZZ_CHECK(d == 0 || d == -EINVAL);
  if (len < 2 || buf[0] != '"' || buf[len - 1] != '"') FUZZ_CHECK(d == -EINVAL);
  tt_str_free(&out);
}

/* ================================================================ SSE */

static void fuzz_sse(const char *data, size_t len) {
  uint64_t offset = len ? (uint64_t)(unsigned char)data[0] * 1000003u : 0;
  tt_msg_t *m = tt_msg_new("chan", 4, "message", 7, data, len, "fuzzepch", offset);
  tt_buf_t *f = tt_msg_frame(m, TT_FRAME_SSE, sse_frame_build);
  FUZZ_CHECK(tt_msg_frame(m, TT_FRAME_SSE, sse_frame_build) == f);

  char head[96];
  int hl = snprintf(head, sizeof(head), "id: fuzzepch:%" PRIu64 "\nevent: message\n", offset);
  FUZZ_CHECK(hl > 0 && f->len >= (size_t)hl && memcmp(f->data, head, (size_t)hl) == 0);

  /* the data as EventSource sees it: line ends normalised to "\n" */
  tt_str_t want = {0};
  tt_str_reserve(&want, len);
  for (size_t i = 0; i < len; i++) {
    if (data[i] == '\r') {
      tt_str_append(&want, "\n", 1);
      if (i + 1 < len && data[i + 1] == '\n') i++;
    } else {
      tt_str_append(&want, data + i, 1);
    }
  }

  /* "data: line\n" ... then the blank line that ends the event */
  tt_str_t got = {0};
  tt_str_reserve(&got, len);
  const char *p = f->data + hl, *end = f->data + f->len;
  size_t lines = 0;
  for (;;) {
    FUZZ_CHECK(end - p >= 7 && memcmp(p, "data: ", 6) == 0);
    p += 6;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    FUZZ_CHECK(nl != NULL);
    FUZZ_CHECK(memchr(p, '\r', (size_t)(nl - p)) == NULL);
    if (lines++ > 0) tt_str_append(&got, "\n", 1);
    if (nl > p) tt_str_append(&got, p, (size_t)(nl - p));
    p = nl + 1;
    if (end - p == 1 && *p == '\n') break;
  }
  FUZZ_CHECK(got.len == want.len && (got.len == 0 || memcmp(got.data, want.data, got.len) == 0));
  tt_str_free(&got);
  tt_str_free(&want);
  tt_msg_unref(m);
}

/* sse_pos_parse: what it accepts formats back to a position it reads the same. */
static void fuzz_pos(const char *s, size_t len) {
  engine_pos_t pos;
  if (sse_pos_parse(s, len, &pos) != 0) return;
  FUZZ_CHECK(strlen(pos.epoch) <= TT_EPOCH_MAX);
  FUZZ_CHECK(len <= TT_EPOCH_MAX + 1 + 19);
  char text[80];
  int n = pos.epoch[0] ? snprintf(text, sizeof(text), "%s:%" PRIu64, pos.epoch, pos.offset)
                       : snprintf(text, sizeof(text), "%" PRIu64, pos.offset);
  engine_pos_t again;
  FUZZ_CHECK(n > 0 && sse_pos_parse(text, (size_t)n, &again) == 0);
  FUZZ_CHECK(strcmp(again.epoch, pos.epoch) == 0 && again.offset == pos.offset);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size copy, so ASan sees any read past the end. */
  char *buf = tt_malloc(size ? size : 1);
  if (size) memcpy(buf, data, size);
  fuzz_json(buf, size);
  fuzz_sse(buf, size);
  fuzz_pos(buf, size);
  free(buf);
  return 0;
}
