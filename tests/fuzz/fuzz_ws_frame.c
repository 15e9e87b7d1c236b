/*
 * libFuzzer target for WebSocket framing (src/transport/ws_frame.c).
 *
 * The input is a client's bytes. The header parser runs over them and must
 * agree with a reference written here from RFC 6455 5.2 (lengths minimally
 * encoded, the top bit of a 64-bit length clear); every prefix of a header
 * it accepts is incomplete; re-encoding the header gives the same length
 * bytes; the frames that follow parse one after another as the server's
 * reader walks them. Unmasking whole and in two pieces agree. The UTF-8
 * validator agrees with a reference decoder, whole, split at a point taken
 * from the data, and byte by byte. Close codes agree with the RFC's table.
 * Frames built from the data parse back to what was built. Every invariant
 * that fails aborts, so libFuzzer keeps the input.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/transport.h"
#include "fuzz.h"


/* An exact-size copy, so ASan sees any read past the end. */
static uint8_t *fuzz_copy(const uint8_t *p, size_t n) {
  uint8_t *c = tt_malloc(n ? n : 1);
  if (n) memcpy(c, p, n);
  return c;
}

/* ================================================================ header */

/* RFC 6455 5.2, as plainly as it reads. */
static int ref_parse(const uint8_t *b, size_t n, ws_frame_t *f) {
  if (n < 2) return WS_PARSE_INCOMPLETE;
  size_t need = 2;
  unsigned l7 = b[1] & 0x7f;
  if (l7 == 126) need = 4;
  if (l7 == 127) need = 10;
  if (n < need) return WS_PARSE_INCOMPLETE;
  uint64_t len = l7;
  if (l7 >= 126) {
    len = 0;
    for (size_t i = 2; i < need; i++) len = len * 256 + b[i];
    if (l7 == 126 && len <= 125) return WS_PARSE_BAD;
    if (l7 == 127 && (len <= 65535 || len > (uint64_t)INT64_MAX)) return WS_PARSE_BAD;
  }
  bool masked = b[1] >= 0x80;
  if (masked) need += 4;
  if (n < need) return WS_PARSE_INCOMPLETE;
  f->fin = b[0] >= 0x80;
  f->rsv = (b[0] & 0x70) >> 4;
  f->opcode = b[0] & 0x0f;
  f->masked = masked;
  if (masked) memcpy(f->mask, b + need - 4, 4);
  f->payload_len = len;
  return (int)need;
}

/* Parses the header at buf[0..n) (an exact-size block); returns its length
 * or the parser's code after checking it against the reference. */
static int fuzz_header(const uint8_t *buf, size_t n, ws_frame_t *f) {
  int rc = ws_frame_parse(buf, n, f);
  ws_frame_t r;
  int want = ref_parse(buf, n, &r);
  FUZZ_CHECK(rc == want);
  FUZZ_CHECK(rc == WS_PARSE_INCOMPLETE || rc == WS_PARSE_BAD || (rc >= 2 && rc <= WS_MAX_HEADER));
  if (rc < 0) return rc;
  size_t hl = (size_t)rc;
  FUZZ_CHECK(hl <= n);
  FUZZ_CHECK(f->fin == r.fin && f->rsv == r.rsv && f->opcode == r.opcode && f->masked == r.masked);
  FUZZ_CHECK(f->payload_len == r.payload_len);
  if (f->masked) FUZZ_CHECK(memcmp(f->mask, r.mask, 4) == 0 && memcmp(f->mask, buf + hl - 4, 4) == 0);
  /* minimal length encodings only */
  size_t lb = hl - (f->masked ? 4 : 0);
  if (lb == 2) FUZZ_CHECK(f->payload_len <= 125);
  if (lb == 4) FUZZ_CHECK(f->payload_len >= 126 && f->payload_len <= 0xffff);
  if (lb == 10) FUZZ_CHECK(f->payload_len > 0xffff && (f->payload_len >> 63) == 0);
  /* so a server header of that length is the same bytes */
  uint8_t out[WS_MAX_HEADER];
  size_t ol = ws_frame_header(out, f->opcode, (f->rsv & 4) != 0, f->payload_len);
  FUZZ_CHECK(ol == lb);
  FUZZ_CHECK(out[0] == (uint8_t)(0x80 | (f->rsv & 4) << 4 | f->opcode));
  FUZZ_CHECK(out[1] == (buf[1] & 0x7f));
  FUZZ_CHECK(memcmp(out + 2, buf + 2, lb - 2) == 0);
  /* every shorter prefix is incomplete */
  for (size_t k = 0; k < hl; k++) {
    uint8_t *p = fuzz_copy(buf, k);
    ws_frame_t g;
    FUZZ_CHECK(ws_frame_parse(p, k, &g) == WS_PARSE_INCOMPLETE);
    free(p);
  }
  return rc;
}

/* Walks the frames of buf as the server's reader does: a header, its
 * payload unmasked in place, the next header. */
static void fuzz_frames(uint8_t *buf, size_t n) {
  size_t off = 0;
  while (off < n) {
    size_t left = n - off;
    uint8_t *h = fuzz_copy(buf + off, TT_MIN(left, (size_t)WS_MAX_HEADER));
    ws_frame_t f;
    int hl = fuzz_header(h, TT_MIN(left, (size_t)WS_MAX_HEADER), &f);
    free(h);
    if (hl < 0) {
      if (hl == WS_PARSE_INCOMPLETE) FUZZ_CHECK(left < WS_MAX_HEADER);
      return;
    }
    if (left - (size_t)hl < f.payload_len) return;
    uint8_t *payload = buf + off + hl;
    size_t pl = (size_t)f.payload_len;
    if (f.masked) {
      uint8_t *whole = fuzz_copy(payload, pl);
      ws_unmask(whole, pl, f.mask, 0);
      for (size_t i = 0; i < pl; i++) FUZZ_CHECK(whole[i] == (payload[i] ^ f.mask[i & 3]));
      memcpy(payload, whole, pl);
      free(whole);
    }
    off += (size_t)hl + pl;
  }
}

/* ================================================================ unmasking */

static void fuzz_unmask(const uint8_t *data, size_t n, size_t k) {
  if (n < 4) return;
  const uint8_t *mask = data;
  const uint8_t *src = data + 4;
  size_t len = n - 4;
  k = len ? k % (len + 1) : 0;
  uint8_t *a = fuzz_copy(src, len), *b = fuzz_copy(src, len);
  ws_unmask(a, len, mask, 0);
  ws_unmask(b, k, mask, 0);
  ws_unmask(b + k, len - k, mask, k);
  FUZZ_CHECK(len == 0 || memcmp(a, b, len) == 0);
  /* the same mask again gives the original back */
  ws_unmask(a, len, mask, 0);
  FUZZ_CHECK(len == 0 || memcmp(a, src, len) == 0);
  free(a);
  free(b);
}

/* ================================================================ UTF-8 */

enum { U_VALID, U_INVALID, U_OPEN };

/* A decoder that builds each code point and checks it afterwards; reports
 * an open sequence at the end only when the bytes so far could still make
 * a valid character (the validator fails at the first byte that cannot). */
static int ref_utf8(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    uint32_t cp, min;
    if (c >= 0xc0 && c <= 0xdf) {
      need = 1, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf7) {
      need = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return U_INVALID;
    }
    size_t j = 1;
    for (; j <= need && i + j < n; j++) {
      if ((p[i + j] & 0xc0) != 0x80) return U_INVALID;
      cp = cp << 6 | (p[i + j] & 0x3f);
    }
    if (j <= need) {
      /* truncated: could the rest still make a valid code point? Take the
       * smallest and largest completions. */
      size_t missing = need + 1 - j;
      uint32_t lo = cp << (6 * missing), hi = lo | ((1u << (6 * missing)) - 1);
      bool any = false;
      if (hi >= min && lo <= 0x10ffff) {
        /* [max(lo,min), min(hi,0x10ffff)] minus the surrogates */
        uint32_t a = lo < min ? min : lo, b = hi > 0x10ffff ? 0x10ffff : hi;
        any = a <= b && !(a >= 0xd800 && b <= 0xdfff);
      }
      return any ? U_OPEN : U_INVALID;
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return U_INVALID;
    i += need + 1;
  }
  return U_VALID;
}

static int fuzz_utf8_pieces(const uint8_t *p, size_t n, size_t k) {
  ws_utf8_t st = {0};
  uint8_t *a = fuzz_copy(p, k), *b = fuzz_copy(p + k, n - k);
  int rc = ws_utf8_feed(&st, a, k);
  if (rc == 0) rc = ws_utf8_feed(&st, b, n - k);
  free(a);
  free(b);
  FUZZ_CHECK(rc == 0 || rc == -EILSEQ);
  return rc ? U_INVALID : ws_utf8_complete(&st) ? U_VALID : U_OPEN;
}

static void fuzz_utf8(const uint8_t *p, size_t n, size_t k) {
  k = n ? k % (n + 1) : 0;
  int whole = fuzz_utf8_pieces(p, n, n);
  FUZZ_CHECK(whole == ref_utf8(p, n));
  FUZZ_CHECK(fuzz_utf8_pieces(p, n, k) == whole);
  FUZZ_CHECK(fuzz_utf8_pieces(p, n, 0) == whole);
  if (n <= 512) {
    ws_utf8_t st = {0};
    int v = U_VALID;
    for (size_t i = 0; i < n; i++) {
      uint8_t *b = fuzz_copy(p + i, 1);
      int rc = ws_utf8_feed(&st, b, 1);
      free(b);
      if (rc != 0) {
        v = U_INVALID;
        break;
      }
    }
    if (v == U_VALID && !ws_utf8_complete(&st)) v = U_OPEN;
    FUZZ_CHECK(v == whole);
  }
}

/* ================================================================ close codes */

static bool ref_close_code(unsigned c) { return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1011) || (c >= 3000 && c <= 4999); }

static void fuzz_close_codes(const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 1 < n && i < 64; i += 2) {
    unsigned code = (unsigned)p[i] << 8 | p[i + 1];
    FUZZ_CHECK(ws_close_code_valid(code) == ref_close_code(code));
    /* and near the edges of the ranges */
    unsigned near = 1000 + code % 4100;
    FUZZ_CHECK(ws_close_code_valid(near) == ref_close_code(near));
  }
}

/* ================================================================ building */

static void fuzz_build(const uint8_t *p, size_t n) {
  if (n == 0) return;
  unsigned op = p[0] & 0x0f;
  bool rsv1 = (p[0] & 0x40) != 0;
  const uint8_t *payload = p + 1;
  size_t len = n - 1;
  tt_buf_t *b = ws_frame_build(op, rsv1, payload, len);
  uint8_t *copy = fuzz_copy((const uint8_t *)b->data, b->len);
  ws_frame_t f;
  int hl = ws_frame_parse(copy, b->len, &f);
  FUZZ_CHECK(hl == (len <= 125 ? 2 : len <= 0xffff ? 4 : 10));
  FUZZ_CHECK(f.fin && !f.masked && f.opcode == op && f.rsv == (rsv1 ? 4u : 0u));
  FUZZ_CHECK(f.payload_len == len && b->len == (size_t)hl + len);
  FUZZ_CHECK(len == 0 || memcmp(b->data + hl, payload, len) == 0);
  free(copy);
  tt_buf_unref(b);

  /* a header for any length the data spells, read back */
  if (n >= 9) {
    uint64_t l = 0;
    for (int i = 1; i <= 8; i++) l = l << 8 | p[i];
    l >>= p[0] & 63; /* short lengths too */
    l &= (uint64_t)INT64_MAX;
    uint8_t h[WS_MAX_HEADER];
    size_t hl2 = ws_frame_header(h, op, rsv1, l);
    FUZZ_CHECK(ws_frame_parse(h, hl2, &f) == (int)hl2);
    FUZZ_CHECK(f.payload_len == l && f.opcode == op && f.fin && !f.masked);
  }

  /* a close frame with a reason from the data */
  char reason[200];
  size_t rl = TT_MIN(len, sizeof(reason) - 1);
  memcpy(reason, payload, rl);
  reason[rl] = '\0';
  unsigned code = n >= 3 ? (unsigned)p[1] << 8 | p[2] : 1000;
  b = ws_close_frame(code, reason);
  size_t want = 2 + TT_MIN(strlen(reason), (size_t)123);
  FUZZ_CHECK(b->len == 2 + want);
  FUZZ_CHECK((uint8_t)b->data[0] == 0x88 && (uint8_t)b->data[1] == want);
  FUZZ_CHECK((uint8_t)b->data[2] == (uint8_t)(code >> 8) && (uint8_t)b->data[3] == (uint8_t)code);
  FUZZ_CHECK(memcmp(b->data + 4, reason, want - 2) == 0);
  tt_buf_unref(b);
}

/* ================================================================ entry */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = fuzz_copy(data, size);
  size_t k = size ? (size_t)data[size - 1] * 131u : 0;

  ws_frame_t f;
  fuzz_header(buf, size, &f);
  fuzz_unmask(buf, size, k);
  fuzz_utf8(buf, size, k);
  /* the text after a frame header, as the server would validate it */
  int hl = ws_frame_parse(buf, size, &f);
  if (hl > 0) fuzz_utf8(buf + hl, size - (size_t)hl, k);
  fuzz_close_codes(buf, size);
  fuzz_build(buf, size);
  fuzz_frames(buf, size); /* last: unmasks buf in place */
  free(buf);
  return 0;
}
