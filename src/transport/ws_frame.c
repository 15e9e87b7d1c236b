/*
 * WebSocket framing (RFC 6455 section 5): the frame-header parser, an
 * incremental UTF-8 validator, close-code rules, and frame building.
 * Pure functions over caller buffers; no I/O.
 */
#include <errno.h>
#include <string.h>

#include "transport.h"

/* ================================================================ parsing */

int ws_frame_parse(const uint8_t *buf, size_t len, ws_frame_t *f) {
  if (len < 2) return WS_PARSE_INCOMPLETE;
  f->fin = (buf[0] & 0x80) != 0;
  f->rsv = (buf[0] >> 4) & 0x07;
  f->opcode = buf[0] & 0x0f;
  f->masked = (buf[1] & 0x80) != 0;
  uint64_t plen = buf[1] & 0x7f;
  size_t pos = 2;
  if (plen == 126) {
    if (len < 4) return WS_PARSE_INCOMPLETE;
    plen = ((uint64_t)buf[2] << 8) | buf[3];
    if (plen < 126) return WS_PARSE_BAD; /* not the minimal encoding */
    pos = 4;
  } else if (plen == 127) {
    if (len < 10) return WS_PARSE_INCOMPLETE;
    plen = 0;
    for (int i = 0; i < 8; i++) plen = (plen << 8) | buf[2 + i];
    if (plen >> 63) return WS_PARSE_BAD; /* the most significant bit must be 0 */
    if (plen <= 0xffff) return WS_PARSE_BAD;
    pos = 10;
  }
  if (f->masked) {
    if (len < pos + 4) return WS_PARSE_INCOMPLETE;
    memcpy(f->mask, buf + pos, 4);
    pos += 4;
  }
  f->payload_len = plen;
  return (int)pos;
}

void ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t start) {
  for (size_t i = 0; i < len; i++) p[i] ^= mask[(start + i) & 3];
}

/* ================================================================ UTF-8 */

/* Lead bytes of multi-byte sequences: how many continuation bytes follow and
 * the range allowed for the first of them (which excludes overlong forms,
 * surrogates and code points past U+10FFFF); later ones are 80..BF. */
static const struct {
  uint8_t lead_lo, lead_hi, need, next_lo, next_hi;
} ws_utf8_leads[] = {
    {0xc2, 0xdf, 1, 0x80, 0xbf}, {0xe0, 0xe0, 2, 0xa0, 0xbf}, {0xe1, 0xec, 2, 0x80, 0xbf},
    {0xed, 0xed, 2, 0x80, 0x9f}, {0xee, 0xef, 2, 0x80, 0xbf}, {0xf0, 0xf0, 3, 0x90, 0xbf},
    {0xf1, 0xf3, 3, 0x80, 0xbf}, {0xf4, 0xf4, 3, 0x80, 0x8f},
};

int ws_utf8_feed(ws_utf8_t *st, const uint8_t *p, size_t len) {
  uint8_t need = st->need, lo = st->lo, hi = st->hi;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = p[i];
    if (need > 0) {
      if (c < lo || c > hi) return -EILSEQ;
      need--;
      lo = 0x80;
      hi = 0xbf;
      continue;
    }
    if (c < 0x80) continue;
    size_t k = 0;
    while (k < TT_ARRAY_SIZE(ws_utf8_leads) && (c < ws_utf8_leads[k].lead_lo || c > ws_utf8_leads[k].lead_hi)) k++;
    if (k == TT_ARRAY_SIZE(ws_utf8_leads)) return -EILSEQ;
    need = ws_utf8_leads[k].need;
    lo = ws_utf8_leads[k].next_lo;
    hi = ws_utf8_leads[k].next_hi;
  }
  st->need = need;
  st->lo = lo;
  st->hi = hi;
  return 0;
}

bool ws_utf8_complete(const ws_utf8_t *st) { return st->need == 0; }

/* ================================================================ close codes */

bool ws_close_code_valid(unsigned code) {
  if (code >= 3000 && code <= 4999) return true;
  switch (code) {
    case 1000: case 1001: case 1002: case 1003: case 1007: case 1008: case 1009: case 1010: case 1011:
      return true;
    default:
      return false;
  }
}

/* ================================================================ building */

size_t ws_frame_header(uint8_t *out, unsigned opcode, bool rsv1, uint64_t len) {
  out[0] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xffff) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

tt_buf_t *ws_frame_build(unsigned opcode, bool rsv1, const void *payload, size_t len) {
  uint8_t head[WS_MAX_HEADER];
  size_t hl = ws_frame_header(head, opcode, rsv1, len);
  tt_buf_t *b = tt_buf_new(hl + len);
  memcpy(b->data, head, hl);
  if (len) memcpy(b->data + hl, payload, len);
  return b;
}

tt_buf_t *ws_close_frame(unsigned code, const char *reason) {
  uint8_t payload[125];
  size_t rl = reason ? TT_MIN(strlen(reason), sizeof(payload) - 2) : 0;
  payload[0] = (uint8_t)(code >> 8);
  payload[1] = (uint8_t)code;
  if (rl) memcpy(payload + 2, reason, rl);
  return ws_frame_build(WS_OP_CLOSE, false, payload, rl + 2);
}
