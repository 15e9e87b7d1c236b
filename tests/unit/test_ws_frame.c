/* Unit tests of WebSocket framing (src/transport/ws_frame.c): the header
 * parser, unmasking, the incremental UTF-8 validator, close codes and frame
 * building; and of the shared frames of a published message, plain and
 * compressed (src/transport/ws.c). */
#include <errno.h>
#include <stdlib.h>
#include <zlib.h>

#include "test.h"
#include "transport/transport.h"

/* ================================================================ helpers */

/* Parses a copy of exactly `len` bytes, so ASan catches a read past its end. */
static int parse_copy(const uint8_t *buf, size_t len, ws_frame_t *f) {
  uint8_t *p = tt_malloc(len ? len : 1);
  if (len) memcpy(p, buf, len);
  int rc = ws_frame_parse(p, len, f);
  free(p);
  return rc;
}

/* A header as RFC 6455 5.2 lays it out, written byte by byte here rather
 * than with ws_frame_header, so the two are checked against each other. */
static size_t rfc_header(uint8_t *out, uint8_t b0, bool masked, uint64_t len, const uint8_t *mask) {
  size_t n = 0;
  out[n++] = b0;
  uint8_t m = masked ? 0x80 : 0;
  if (len <= 125) {
    out[n++] = (uint8_t)(m | len);
  } else if (len <= 0xffff) {
    out[n++] = m | 126;
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
  } else {
    out[n++] = m | 127;
    for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)(len >> (8 * i));
  }
  if (masked) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

/* ================================================================ header parsing */

static void test_parse_lengths(void) {
  static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 65537, 0xffffffffull, 1ull << 40, INT64_MAX};
  static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  for (size_t i = 0; i < TT_ARRAY_SIZE(lens); i++) {
    for (int masked = 0; masked <= 1; masked++) {
      uint8_t h[WS_MAX_HEADER];
      size_t hl = rfc_header(h, 0x81, masked, lens[i], mask);
      size_t want = (lens[i] <= 125 ? 2 : lens[i] <= 0xffff ? 4 : 10) + (masked ? 4 : 0);
      CHECK_EQ(hl, want);
      ws_frame_t f;
      memset(&f, 0xee, sizeof(f));
      int rc = parse_copy(h, hl, &f);
      if (!CHECK(rc == (int)want)) fprintf(stderr, "    length %llu masked %d: %d\n", (unsigned long long)lens[i], masked, rc);
      CHECK(f.payload_len == lens[i]);
      CHECK(f.fin);
      CHECK_EQ(f.rsv, 0);
      CHECK_EQ(f.opcode, WS_OP_TEXT);
      CHECK_EQ(f.masked, masked);
      if (masked) CHECK_MEM(f.mask, 4, mask, 4);
    }
  }
}

/* The boundaries, spelled out. */
static void test_parse_boundaries(void) {
  ws_frame_t f;
  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7d", 2, &f), 2);
  CHECK_EQ(f.payload_len, 125);
  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7e\x00\x7e", 4, &f), 4);
  CHECK_EQ(f.payload_len, 126);
  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7e\xff\xff", 4, &f), 4);
  CHECK_EQ(f.payload_len, 65535);
  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10, &f), 10);
  CHECK_EQ(f.payload_len, 65536);
  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10, &f), 10);
  CHECK(f.payload_len == (uint64_t)INT64_MAX);
  /* Bytes after the header are the payload's, not the parser's. */
  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7e\x01\x00xyz", 7, &f), 4);
  CHECK_EQ(f.payload_len, 256);
}

static void test_parse_non_minimal(void) {
  ws_frame_t f;
  /* 16-bit encodings of lengths that fit in 7 bits */
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7e\x00\x00", 4, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7e\x00\x05", 4, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7e\x00\x7d", 4, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\xfe\x00\x7d\x01\x02\x03\x04", 8, &f), WS_PARSE_BAD);
  /* 64-bit encodings of lengths that fit in 16 bits */
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x00\x00\x00", 10, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x00\x00\x7d", 10, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x00\x00\x7e", 10, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x00\xff\xff", 10, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\xff\x00\x00\x00\x00\x00\x00\xff\xff\x01\x02\x03\x04", 14, &f),
           WS_PARSE_BAD);
  /* The error is known once the length is in: the mask need not follow. */
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\xfe\x00\x7d", 4, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\xff\x00\x00\x00\x00\x00\x00\x00\x10", 10, &f), WS_PARSE_BAD);
}

static void test_parse_high_bit(void) {
  ws_frame_t f;
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\x80\x00\x00\x00\x00\x01\x00\x00", 10, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\xff\xff\xff\xff\xff\xff\xff\xff", 10, &f), WS_PARSE_BAD);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04", 14, &f),
           WS_PARSE_BAD);
}

/* Every proper prefix of a valid masked header is INCOMPLETE, never BAD. */
static void test_parse_every_prefix(void) {
  static const uint64_t lens[] = {0, 125, 126, 65535, 65536, INT64_MAX};
  static const uint8_t mask[4] = {0x00, 0xff, 0x80, 0x7f};
  for (size_t i = 0; i < TT_ARRAY_SIZE(lens); i++) {
    uint8_t h[WS_MAX_HEADER];
    size_t hl = rfc_header(h, 0x89, true, lens[i], mask);
    for (size_t n = 0; n < hl; n++) {
      ws_frame_t f;
      int rc = parse_copy(h, n, &f);
      if (!CHECK(rc == WS_PARSE_INCOMPLETE)) fprintf(stderr, "    length %zu, prefix %zu: %d\n", i, n, rc);
    }
    ws_frame_t f;
    CHECK_EQ(parse_copy(h, hl, &f), hl);
  }
  /* unmasked: complete without a mask */
  ws_frame_t f;
  CHECK_EQ(parse_copy((const uint8_t *)"\x81", 1, &f), WS_PARSE_INCOMPLETE);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7e\x00", 3, &f), WS_PARSE_INCOMPLETE);
  CHECK_EQ(parse_copy((const uint8_t *)"\x81\x7f\x00\x00\x00\x00\x00\x01\x00", 9, &f), WS_PARSE_INCOMPLETE);
}

/* FIN, the RSV bits and the opcode come out as sent; the parser leaves the
 * protocol rules (reserved opcodes, RSV without an extension) to its caller. */
static void test_parse_flags(void) {
  ws_frame_t f;
  CHECK_EQ(parse_copy((const uint8_t *)"\x01\x00", 2, &f), 2);
  CHECK(!f.fin);
  CHECK_EQ(f.rsv, 0);
  CHECK_EQ(f.opcode, WS_OP_TEXT);
  CHECK(!f.masked);
  CHECK_EQ(parse_copy((const uint8_t *)"\xc1\x00", 2, &f), 2);
  CHECK(f.fin);
  CHECK_EQ(f.rsv, 4); /* RSV1 */
  CHECK_EQ(parse_copy((const uint8_t *)"\xa0\x00", 2, &f), 2);
  CHECK_EQ(f.rsv, 2); /* RSV2 */
  CHECK_EQ(f.opcode, WS_OP_CONT);
  CHECK_EQ(parse_copy((const uint8_t *)"\x90\x00", 2, &f), 2);
  CHECK_EQ(f.rsv, 1); /* RSV3 */
  CHECK_EQ(parse_copy((const uint8_t *)"\x7f\x00", 2, &f), 2);
  CHECK(!f.fin);
  CHECK_EQ(f.rsv, 7);
  CHECK_EQ(f.opcode, 0xf);
  for (unsigned op = 0; op < 16; op++) {
    uint8_t h[2] = {(uint8_t)(0x80 | op), 0};
    CHECK_EQ(parse_copy(h, 2, &f), 2);
    CHECK_EQ(f.opcode, op);
  }
}

/* The examples of RFC 6455 5.7. */
static void test_parse_rfc_examples(void) {
  ws_frame_t f;
  uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  CHECK_EQ(parse_copy(hello, sizeof(hello), &f), 2);
  CHECK_EQ(f.payload_len, 5);
  CHECK_STR((char *)hello + 2, 5, "Hello");

  uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  CHECK_EQ(parse_copy(masked, sizeof(masked), &f), 6);
  CHECK(f.masked && f.fin);
  CHECK_EQ(f.payload_len, 5);
  CHECK_MEM(f.mask, 4, "\x37\xfa\x21\x3d", 4);
  ws_unmask(masked + 6, 5, f.mask, 0);
  CHECK_STR((char *)masked + 6, 5, "Hello");

  CHECK_EQ(parse_copy((const uint8_t *)"\x01\x03Hel", 5, &f), 2);
  CHECK(!f.fin);
  CHECK_EQ(f.opcode, WS_OP_TEXT);
  CHECK_EQ(parse_copy((const uint8_t *)"\x80\x02lo", 4, &f), 2);
  CHECK(f.fin);
  CHECK_EQ(f.opcode, WS_OP_CONT);

  CHECK_EQ(parse_copy((const uint8_t *)"\x89\x05Hello", 7, &f), 2);
  CHECK_EQ(f.opcode, WS_OP_PING);
  CHECK_EQ(parse_copy((const uint8_t *)"\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11, &f), 6);
  CHECK_EQ(f.opcode, WS_OP_PONG);

  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7e\x01\x00", 4, &f), 4);
  CHECK_EQ(f.opcode, WS_OP_BINARY);
  CHECK_EQ(f.payload_len, 256);
  CHECK_EQ(parse_copy((const uint8_t *)"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10, &f), 10);
  CHECK_EQ(f.payload_len, 65536);
}

/* ================================================================ unmasking */

static void test_unmask(void) {
  static const uint8_t mask[4] = {0xa5, 0x01, 0xff, 0x5a};
  uint8_t plain[67], ref[67];
  for (size_t i = 0; i < sizeof(plain); i++) plain[i] = (uint8_t)(i * 37 + 11);
  for (size_t i = 0; i < sizeof(plain); i++) ref[i] = plain[i] ^ mask[i % 4];

  uint8_t p[sizeof(plain)];
  memcpy(p, plain, sizeof(p));
  ws_unmask(p, sizeof(p), mask, 0);
  CHECK_MEM(p, sizeof(p), ref, sizeof(ref));
  ws_unmask(p, sizeof(p), mask, 0); /* the XOR is its own inverse */
  CHECK_MEM(p, sizeof(p), plain, sizeof(plain));
  ws_unmask(p, 0, mask, 3); /* nothing */
  CHECK_MEM(p, sizeof(p), plain, sizeof(plain));

  /* In two pieces, the second `start` bytes in: the same as whole. */
  for (size_t k = 0; k <= sizeof(plain); k++) {
    memcpy(p, plain, sizeof(p));
    ws_unmask(p, k, mask, 0);
    ws_unmask(p + k, sizeof(p) - k, mask, k);
    if (!CHECK(memcmp(p, ref, sizeof(ref)) == 0)) fprintf(stderr, "    split at %zu\n", k);
  }
  /* In three pieces. */
  for (size_t a = 0; a <= 9; a++) {
    for (size_t b = a; b <= 17; b++) {
      memcpy(p, plain, sizeof(p));
      ws_unmask(p, a, mask, 0);
      ws_unmask(p + a, b - a, mask, a);
      ws_unmask(p + b, sizeof(p) - b, mask, b);
      if (!CHECK(memcmp(p, ref, sizeof(ref)) == 0)) fprintf(stderr, "    split at %zu, %zu\n", a, b);
    }
  }
  /* Only the start modulo 4 matters. */
  memcpy(p, plain, sizeof(p));
  ws_unmask(p + 5, 20, mask, 4 * 1000 + 5);
  ws_unmask(p, 5, mask, 0);
  ws_unmask(p + 25, sizeof(p) - 25, mask, 25);
  CHECK_MEM(p, sizeof(p), ref, sizeof(ref));
}

/* ================================================================ UTF-8 */

enum { U_VALID, U_INVALID, U_OPEN };

typedef struct {
  const char *bytes;
  size_t len;
  int verdict; /* U_VALID: fed and complete; U_OPEN: fed, a sequence left open */
} utf8_case_t;

#define U(s, v) {s, sizeof(s) - 1, v}

static const utf8_case_t utf8_cases[] = {
    U("", U_VALID),
    U("plain ASCII", U_VALID),
    U("\x00", U_VALID),
    U("\x7f", U_VALID),
    U("\xc2\x80", U_VALID),                 /* U+0080 */
    U("\xdf\xbf", U_VALID),                 /* U+07FF */
    U("\xe0\xa0\x80", U_VALID),             /* U+0800 */
    U("\xe2\x82\xac", U_VALID),             /* the euro sign */
    U("\xed\x9f\xbf", U_VALID),             /* U+D7FF, below the surrogates */
    U("\xee\x80\x80", U_VALID),             /* U+E000, above them */
    U("\xef\xbf\xbf", U_VALID),             /* U+FFFF */
    U("\xf0\x90\x80\x80", U_VALID),         /* U+10000 */
    U("\xf0\x9f\x8e\xb5", U_VALID),         /* a musical note */
    U("\xf4\x8f\xbf\xbf", U_VALID),         /* U+10FFFF */
    U("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", U_VALID),
    U("a\xc3\xa9z\xe2\x82\xac\xf0\x9f\x8e\xb5!", U_VALID),
    /* overlong forms */
    U("\xc0\x80", U_INVALID),
    U("\xc0\xaf", U_INVALID),
    U("\xc1\xbf", U_INVALID),
    U("\xe0\x80\x80", U_INVALID),
    U("\xe0\x80\xaf", U_INVALID),
    U("\xe0\x9f\xbf", U_INVALID),
    U("\xf0\x80\x80\x80", U_INVALID),
    U("\xf0\x8f\xbf\xbf", U_INVALID),
    /* surrogates */
    U("\xed\xa0\x80", U_INVALID),
    U("\xed\xbf\xbf", U_INVALID),
    U("\xed\xa0\x80\xed\xb0\x80", U_INVALID),
    /* past U+10FFFF and leads that cannot start anything */
    U("\xf4\x90\x80\x80", U_INVALID),
    U("\xf4\xbf\xbf\xbf", U_INVALID),
    U("\xf5\x80\x80\x80", U_INVALID),
    U("\xf7\xbf\xbf\xbf", U_INVALID),
    U("\xf8\x88\x80\x80\x80", U_INVALID),
    U("\xfc\x84\x80\x80\x80\x80", U_INVALID),
    U("\xfe", U_INVALID),
    U("\xff", U_INVALID),
    U("ab\xf5", U_INVALID),
    /* continuation bytes where a lead is due, and leads where a continuation is */
    U("\x80", U_INVALID),
    U("\xbf", U_INVALID),
    U("a\x80", U_INVALID),
    U("\xc2\x80\x80", U_INVALID),
    U("\xc2\x41", U_INVALID),
    U("\xc2\xc2\x80", U_INVALID),
    U("\xe1\x80\x41", U_INVALID),
    U("\xe1\x80\xc0", U_INVALID),
    U("\xf0\x90\x80\xc0", U_INVALID),
    U("\xf0\x90\x80\x7f", U_INVALID),
    /* truncated */
    U("\xc2", U_OPEN),
    U("\xdf", U_OPEN),
    U("\xe0\xa0", U_OPEN),
    U("\xe1", U_OPEN),
    U("\xe1\x80", U_OPEN),
    U("\xf0\x90\x80", U_OPEN),
    U("\xf4\x8f\xbf", U_OPEN),
    U("abc\xf0", U_OPEN),
    U("\xc3\xa9\xe2\x82", U_OPEN),
};

/* Feeds s in the pieces [0, cuts[0]), [cuts[0], cuts[1]), ... [cuts[n-1], len). */
static int utf8_verdict(const utf8_case_t *c, const size_t *cuts, size_t ncuts) {
  ws_utf8_t st = {0};
  size_t from = 0;
  for (size_t i = 0; i <= ncuts; i++) {
    size_t to = i < ncuts ? cuts[i] : c->len;
    /* each piece in its own exact-size block */
    uint8_t *p = tt_malloc(to - from + 1);
    memcpy(p, c->bytes + from, to - from);
    int rc = ws_utf8_feed(&st, p, to - from);
    free(p);
    if (rc != 0) return rc == -EILSEQ ? U_INVALID : -100;
    from = to;
  }
  return ws_utf8_complete(&st) ? U_VALID : U_OPEN;
}

static void test_utf8_table(void) {
  for (size_t i = 0; i < TT_ARRAY_SIZE(utf8_cases); i++) {
    const utf8_case_t *c = &utf8_cases[i];
    int whole = utf8_verdict(c, NULL, 0);
    if (!CHECK(whole == c->verdict)) {
      fputs("    case ", stderr);
      test__print_bytes(c->bytes, c->len);
      fprintf(stderr, ": %d, want %d\n", whole, c->verdict);
    }
    /* split in two at every point */
    for (size_t k = 0; k <= c->len; k++) {
      int v = utf8_verdict(c, &k, 1);
      if (!CHECK(v == c->verdict)) fprintf(stderr, "    case %zu split at %zu: %d\n", i, k, v);
    }
    /* byte by byte */
    size_t cuts[16];
    size_t n = c->len < 16 ? c->len : 16;
    for (size_t k = 0; k < n; k++) cuts[k] = k;
    if (c->len <= 16) {
      int v = utf8_verdict(c, cuts, n);
      if (!CHECK(v == c->verdict)) fprintf(stderr, "    case %zu byte by byte: %d\n", i, v);
    }
  }
}

/* Valid cases glued together stay valid, whatever the order. */
static void test_utf8_concat(void) {
  for (size_t i = 0; i < TT_ARRAY_SIZE(utf8_cases); i++) {
    for (size_t j = 0; j < TT_ARRAY_SIZE(utf8_cases); j++) {
      const utf8_case_t *a = &utf8_cases[i], *b = &utf8_cases[j];
      if (a->verdict != U_VALID || b->verdict == U_OPEN) continue;
      char buf[64];
      memcpy(buf, a->bytes, a->len);
      memcpy(buf + a->len, b->bytes, b->len);
      utf8_case_t ab = {buf, a->len + b->len, b->verdict};
      size_t cut = a->len;
      CHECK(utf8_verdict(&ab, NULL, 0) == ab.verdict);
      CHECK(utf8_verdict(&ab, &cut, 1) == ab.verdict);
    }
  }
}

static void test_utf8_complete(void) {
  static const uint8_t note[] = {0xf0, 0x9f, 0x8e, 0xb5};
  ws_utf8_t st = {0};
  CHECK(ws_utf8_complete(&st));
  for (size_t i = 0; i < sizeof(note); i++) {
    CHECK_EQ(ws_utf8_feed(&st, note + i, 1), 0);
    if (!CHECK(ws_utf8_complete(&st) == (i == sizeof(note) - 1))) fprintf(stderr, "    after byte %zu\n", i);
  }
  /* an empty feed changes nothing, open or not */
  CHECK_EQ(ws_utf8_feed(&st, note, 0), 0);
  CHECK(ws_utf8_complete(&st));
  CHECK_EQ(ws_utf8_feed(&st, note, 2), 0);
  CHECK_EQ(ws_utf8_feed(&st, note, 0), 0);
  CHECK(!ws_utf8_complete(&st));
  /* the open sequence remembers the range of its next byte: F0 9F is past
   * the first-byte check, so 80 is fine now where it was not after F0 */
  CHECK_EQ(ws_utf8_feed(&st, (const uint8_t *)"\x80", 1), 0);
  CHECK(!ws_utf8_complete(&st));
  CHECK_EQ(ws_utf8_feed(&st, (const uint8_t *)"\x80", 1), 0);
  CHECK(ws_utf8_complete(&st));
  /* while ED waits, A0 (a surrogate) is refused */
  ws_utf8_t s2 = {0};
  CHECK_EQ(ws_utf8_feed(&s2, (const uint8_t *)"ok\xed", 3), 0);
  CHECK(!ws_utf8_complete(&s2));
  CHECK_EQ(ws_utf8_feed(&s2, (const uint8_t *)"\xa0", 1), -EILSEQ);
}

/* ================================================================ close codes */

static void test_close_codes(void) {
  static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
  static const unsigned invalid[] = {0,    1,    999,  1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016,
                                     2000, 2999, 5000, 5001, 9999, 65535, 65536, 0x103e8, 0xffffffffu};
  for (size_t i = 0; i < TT_ARRAY_SIZE(valid); i++)
    if (!CHECK(ws_close_code_valid(valid[i]))) fprintf(stderr, "    code %u\n", valid[i]);
  for (size_t i = 0; i < TT_ARRAY_SIZE(invalid); i++)
    if (!CHECK(!ws_close_code_valid(invalid[i]))) fprintf(stderr, "    code %u\n", invalid[i]);
  /* every code of the ranges */
  int n = 0;
  for (unsigned c = 0; c < 70000; c++) n += ws_close_code_valid(c);
  CHECK_EQ(n, 9 + 2000);
}

/* ================================================================ building */

static void test_frame_header_layout(void) {
  uint8_t h[WS_MAX_HEADER];
  CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, false, 0), 2);
  CHECK_MEM(h, 2, "\x81\x00", 2);
  CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, false, 125), 2);
  CHECK_MEM(h, 2, "\x81\x7d", 2);
  CHECK_EQ(ws_frame_header(h, WS_OP_BINARY, false, 126), 4);
  CHECK_MEM(h, 4, "\x82\x7e\x00\x7e", 4);
  CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, false, 65535), 4);
  CHECK_MEM(h, 4, "\x81\x7e\xff\xff", 4);
  CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, false, 65536), 10);
  CHECK_MEM(h, 10, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, false, 0x0102030405060708ull), 10);
  CHECK_MEM(h, 10, "\x81\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
  /* RSV1 for a compressed message; control opcodes */
  CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, true, 3), 2);
  CHECK_MEM(h, 2, "\xc1\x03", 2);
  CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, true, 300), 4);
  CHECK_MEM(h, 4, "\xc1\x7e\x01\x2c", 4);
  CHECK_EQ(ws_frame_header(h, WS_OP_CLOSE, false, 2), 2);
  CHECK_MEM(h, 2, "\x88\x02", 2);
  CHECK_EQ(ws_frame_header(h, WS_OP_PING, false, 0), 2);
  CHECK_MEM(h, 2, "\x89\x00", 2);
  CHECK_EQ(ws_frame_header(h, WS_OP_PONG, false, 5), 2);
  CHECK_MEM(h, 2, "\x8a\x05", 2);
}

/* ws_frame_build: the RFC layout, the payload after it, and the parser reads
 * back what was built. */
static void test_frame_build(void) {
  static const size_t lens[] = {0, 1, 125, 126, 65535, 65536};
  char *payload = tt_malloc(65536);
  for (size_t i = 0; i < 65536; i++) payload[i] = (char)(i * 7);
  for (size_t i = 0; i < TT_ARRAY_SIZE(lens); i++) {
    for (int rsv1 = 0; rsv1 <= 1; rsv1++) {
      size_t len = lens[i];
      tt_buf_t *b = ws_frame_build(WS_OP_TEXT, rsv1, payload, len);
      uint8_t want[WS_MAX_HEADER];
      size_t wl = rfc_header(want, rsv1 ? 0xc1 : 0x81, false, len, NULL);
      CHECK_EQ(b->len, wl + len);
      CHECK_MEM(b->data, wl, want, wl);
      CHECK(len == 0 || memcmp(b->data + wl, payload, len) == 0);
      ws_frame_t f;
      CHECK_EQ(ws_frame_parse((const uint8_t *)b->data, b->len, &f), wl);
      CHECK(f.fin && !f.masked);
      CHECK_EQ(f.rsv, rsv1 ? 4 : 0);
      CHECK_EQ(f.opcode, WS_OP_TEXT);
      CHECK_EQ(f.payload_len, len);
      tt_buf_unref(b);
    }
  }
  free(payload);
  tt_buf_t *b = ws_frame_build(WS_OP_PONG, false, NULL, 0);
  CHECK_MEM(b->data, b->len, "\x8a\x00", 2);
  tt_buf_unref(b);
}

static void test_close_frame(void) {
  tt_buf_t *b = ws_close_frame(1000, NULL);
  CHECK_MEM(b->data, b->len, "\x88\x02\x03\xe8", 4);
  tt_buf_unref(b);
  b = ws_close_frame(1002, "");
  CHECK_MEM(b->data, b->len, "\x88\x02\x03\xea", 4);
  tt_buf_unref(b);
  b = ws_close_frame(1008, "SLOW_CONSUMER");
  CHECK_MEM(b->data, b->len, "\x88\x0f\x03\xf0SLOW_CONSUMER", 17);
  tt_buf_unref(b);
  b = ws_close_frame(4999, "x");
  CHECK_MEM(b->data, b->len, "\x88\x03\x13\x87x", 5);
  tt_buf_unref(b);
  /* A reason is cut so the payload stays within a control frame's 125. */
  char reason[201];
  memset(reason, 'r', 200);
  reason[200] = '\0';
  b = ws_close_frame(1001, reason);
  CHECK_EQ(b->len, 2 + 125);
  CHECK_MEM(b->data, 4, "\x88\x7d\x03\xe9", 4);
  CHECK_MEM(b->data + 4, 123, reason, 123);
  tt_buf_unref(b);
  memset(reason, 'q', 123);
  reason[123] = '\0';
  b = ws_close_frame(1001, reason);
  CHECK_EQ(b->len, 2 + 125);
  tt_buf_unref(b);
}

/* ================================================================ published messages */

/* The payload of an unmasked server frame; NULL when it is not one. */
static const char *frame_payload(const tt_buf_t *b, ws_frame_t *f, size_t *len) {
  int hl = ws_frame_parse((const uint8_t *)b->data, b->len, f);
  if (hl < 0 || (uint64_t)(b->len - (size_t)hl) != f->payload_len) return NULL;
  *len = (size_t)f->payload_len;
  return b->data + hl;
}

/* permessage-deflate decompression (RFC 7692 7.2.2): a fresh raw inflater,
 * the payload with 00 00 ff ff appended. */
static int inflate_message(const char *p, size_t len, tt_str_t *out) {
  z_stream z = {0};
  if (inflateInit2(&z, -15) != Z_OK) return -1;
  tt_str_t in = {0};
  tt_str_append(&in, p, len);
  tt_str_append(&in, "\x00\x00\xff\xff", 4);
  z.next_in = (Bytef *)in.data;
  z.avail_in = (uInt)in.len;
  int rc = Z_OK;
  while (z.avail_in > 0 && rc == Z_OK) {
    tt_str_reserve(out, 4096);
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = (uInt)(out->cap - out->len - 1);
    size_t before = z.avail_out;
    rc = inflate(&z, Z_SYNC_FLUSH);
    out->len += before - z.avail_out;
  }
  inflateEnd(&z);
  tt_str_free(&in);
  return rc == Z_OK || rc == Z_BUF_ERROR ? 0 : -1;
}

static void test_frame_message(void) {
  static const char data[] = "{\"text\":\"hi \\u00e9 \xc3\xa9\", \"n\": [1, 2.5e3, null]}";
  tt_msg_t *m = tt_msg_new("news", 4, "update", 6, data, sizeof(data) - 1, "k3f9a2c1", 42);
  tt_buf_t *b = ws_frame_message(m);
  ws_frame_t f;
  size_t len = 0;
  const char *p = frame_payload(b, &f, &len);
  if (CHECK(p != NULL)) {
    CHECK(f.fin && !f.masked);
    CHECK_EQ(f.rsv, 0);
    CHECK_EQ(f.opcode, WS_OP_TEXT);
    char want[256];
    snprintf(want, sizeof(want), "{\"type\":\"message\",\"channel\":\"news\",\"id\":\"k3f9a2c1:42\",\"event\":\"update\",\"data\":%s}",
             data);
    CHECK_STR(p, len, want);
    CHECK_EQ(tt_json_validate(p, len), 0);
  }
  tt_buf_unref(b);
  tt_msg_unref(m);

  /* data is passed through byte for byte, whatever its JSON shape */
  static const char *const datas[] = {"0", "\"\"", " [ ] ", "\"a\\\"b\\\\\"", "null", "{\"deep\":{\"er\":[[[]]]}}"};
  for (size_t i = 0; i < TT_ARRAY_SIZE(datas); i++) {
    m = tt_msg_new("a:b/c-d_e.f", 11, "ev.t:1", 6, datas[i], strlen(datas[i]), "zz", 18446744073709551615ull);
    b = ws_frame_message(m);
    p = frame_payload(b, &f, &len);
    char want[256];
    snprintf(want, sizeof(want),
             "{\"type\":\"message\",\"channel\":\"a:b/c-d_e.f\",\"id\":\"zz:18446744073709551615\",\"event\":\"ev.t:1\","
             "\"data\":%s}",
             datas[i]);
    if (CHECK(p != NULL)) CHECK_STR(p, len, want);
    tt_buf_unref(b);
    tt_msg_unref(m);
  }

  /* a data big enough for a 16-bit length */
  tt_str_t big = {0};
  tt_str_appends(&big, "\"");
  for (int i = 0; i < 300; i++) tt_str_appends(&big, "x");
  tt_str_appends(&big, "\"");
  m = tt_msg_new("c", 1, "message", 7, big.data, big.len, "e", 1);
  b = ws_frame_message(m);
  p = frame_payload(b, &f, &len);
  if (CHECK(p != NULL)) {
    CHECK_EQ(b->data[1], 126);
    CHECK_EQ(len, strlen("{\"type\":\"message\",\"channel\":\"c\",\"id\":\"e:1\",\"event\":\"message\",\"data\":}") + big.len);
    CHECK_MEM(p + len - big.len - 1, big.len, big.data, big.len);
  }
  tt_buf_unref(b);
  tt_msg_unref(m);
  tt_str_free(&big);
}

/* A message whose envelope is exactly `total` bytes. */
static tt_msg_t *msg_of_size(size_t total, char fill, uint64_t offset) {
  static const char frame[] = "{\"type\":\"message\",\"channel\":\"room\",\"id\":\"ep:%llu\",\"event\":\"message\",\"data\":\"\"}";
  char probe[160];
  size_t base = (size_t)snprintf(probe, sizeof(probe), frame, (unsigned long long)offset);
  tt_str_t d = {0};
  tt_str_appends(&d, "\"");
  for (size_t i = 0; i + base < total; i++) tt_str_append(&d, &fill, 1);
  tt_str_appends(&d, "\"");
  tt_msg_t *m = tt_msg_new("room", 4, "message", 7, d.data, d.len, "ep", offset);
  tt_str_free(&d);
  return m;
}

static void check_deflated_matches(tt_msg_t *m, bool want_compressed) {
  tt_buf_t *plain = ws_frame_message(m);
  tt_buf_t *z = ws_frame_message_deflated(m);
  ws_frame_t pf, zf;
  size_t pl = 0, zl = 0;
  const char *pp = frame_payload(plain, &pf, &pl);
  const char *zp = frame_payload(z, &zf, &zl);
  if (CHECK(pp != NULL && zp != NULL)) {
    CHECK(zf.fin && !zf.masked);
    CHECK_EQ(zf.opcode, WS_OP_TEXT);
    if (want_compressed) {
      CHECK_EQ(zf.rsv, 4);
      CHECK(zl < pl);
      /* RFC 7692 7.2.1: the trailing 00 00 ff ff is removed */
      CHECK(zl < 4 || memcmp(zp + zl - 4, "\x00\x00\xff\xff", 4) != 0);
      tt_str_t out = {0};
      CHECK_EQ(inflate_message(zp, zl, &out), 0);
      CHECK_MEM(out.data, out.len, pp, pl);
      tt_str_free(&out);
    } else {
      CHECK_EQ(zf.rsv, 0);
      CHECK_MEM(z->data, z->len, plain->data, plain->len);
    }
  }
  tt_buf_unref(plain);
  tt_buf_unref(z);
}

static void test_frame_message_deflated(void) {
  hub_t *hub = hub_new(&(hub_options_t){.workers = 1});
  ws_init(hub,
          &(ws_options_t){.max_message = 1 << 20, .max_publish = 1 << 20, .ping_interval = 30, .ping_timeout = 10,
                          .deflate = true, .deflate_threshold = 256, .max_channels = 16},
          1);

  /* big and repetitive: compressed, and inflates to the plain frame's payload */
  tt_msg_t *m = msg_of_size(4000, 'a', 7);
  check_deflated_matches(m, true);
  tt_msg_unref(m);

  /* Each compressed message stands alone (no context takeover): a second
   * one, alike, still inflates with a fresh inflater. */
  tt_msg_t *m2 = msg_of_size(4000, 'a', 8);
  check_deflated_matches(m2, true);
  tt_msg_unref(m2);

  /* around the threshold: under it plain, at it compressed */
  m = msg_of_size(255, 'b', 1);
  tt_buf_t *probe = ws_frame_message(m);
  CHECK_EQ(probe->len, 4 + 255); /* 16-bit header + 255 bytes */
  tt_buf_unref(probe);
  check_deflated_matches(m, false);
  tt_msg_unref(m);
  m = msg_of_size(256, 'b', 1);
  check_deflated_matches(m, true);
  tt_msg_unref(m);
  m = msg_of_size(100, 'c', 1);
  check_deflated_matches(m, false);
  tt_msg_unref(m);

  /* a message of varied data, past 64 KiB before compression */
  tt_str_t d = {0};
  tt_str_appends(&d, "[");
  for (int i = 0; i < 12000; i++) tt_str_appendf(&d, "%s%d", i ? "," : "", i * 7919 % 100003);
  tt_str_appends(&d, "]");
  m = tt_msg_new("big", 3, "message", 7, d.data, d.len, "ep", 3);
  check_deflated_matches(m, true);
  /* the frames are the ones the message caches */
  tt_buf_t *f1 = tt_msg_frame(m, TT_FRAME_WS_DEFLATE, ws_frame_message_deflated);
  CHECK(tt_msg_frame(m, TT_FRAME_WS_DEFLATE, ws_frame_message_deflated) == f1);
  tt_msg_unref(m);
  tt_str_free(&d);

  ws_free();
  hub_free(hub);
}

int main(void) {
  RUN(test_parse_lengths);
  RUN(test_parse_boundaries);
  RUN(test_parse_non_minimal);
  RUN(test_parse_high_bit);
  RUN(test_parse_every_prefix);
  RUN(test_parse_flags);
  RUN(test_parse_rfc_examples);
  RUN(test_unmask);
  RUN(test_utf8_table);
  RUN(test_utf8_concat);
  RUN(test_utf8_complete);
  RUN(test_close_codes);
  RUN(test_frame_header_layout);
  RUN(test_frame_build);
  RUN(test_close_frame);
  RUN(test_frame_message);
  RUN(test_frame_message_deflated);
  return test_report("test_ws_frame");
}
