/*
 * transport: the ways clients receive channels. Each transport adapts a
 * connection the net module hands over to the hub's clients and
 * subscriptions, and frames messages once per transport (tt_msg_frame).
 * Now: Server-Sent Events.
 */
#ifndef TUTTI_TRANSPORT_H
#define TUTTI_TRANSPORT_H

#include "../hub/hub.h"
#include "../net/net.h"

typedef struct sse_options_s {
  double heartbeat_interval; /* s */
  int retry_ms;
  int max_channels;
} sse_options_t;

void sse_init(hub_t *hub, const sse_options_t *opts, int workers);
/* Starts worker `id`'s heartbeat timer on its loop; before the loop runs. */
void sse_worker_init(int id, uv_loop_t *loop);
void sse_free(void);

/*
 * Opens an SSE stream for `req`. `channel` is the raw (percent-encoded)
 * channel from the path, or NULL to take the `channel` query parameters.
 * `encoding` is the audio encoding unless the query names one (?encoding=).
 * Answers 400 itself on bad channels, positions or encodings.
 */
void sse_open(net_request_t *req, const char *channel, size_t len, const char *encoding);

/* Builds the SSE frame of a message: "id: E:O\nevent: N\ndata: ...\n\n",
 * with one data: line per line of the data. */
tt_buf_t *sse_frame_build(const tt_msg_t *msg);

/* Parses "epoch:offset" or a bare offset into `pos`. Returns 0 or -EINVAL. */
int sse_pos_parse(const char *s, size_t len, engine_pos_t *pos);

/* Appends presence members as a JSON array: [{"id":..,"info":<raw>},...]. */
void transport_members_json(tt_str_t *out, const engine_member_t *members, size_t count);

/* ================================================================ WebSocket */

typedef struct ws_options_s {
  int64_t max_message;        /* bytes */
  int64_t max_publish;        /* bytes of `data` in a client publish */
  double ping_interval;       /* s */
  double ping_timeout;        /* s */
  bool deflate;
  int deflate_threshold;      /* bytes */
  int rate;                   /* messages per second; 0: no limit */
  int burst;
  int max_channels;
  const char *client_publish; /* channel prefixes, "*" or NULL */
  double presence_ttl;        /* s */
  uint64_t started_ms;
} ws_options_t;

void ws_init(hub_t *hub, const ws_options_t *opts, int workers);
/* Starts worker `id`'s idle-ping timer on its loop; before the loop runs. */
void ws_worker_init(int id, uv_loop_t *loop);
void ws_free(void);

/* Upgrades `req` (GET /ws or /ws/{channel}, `channel` raw or NULL). Answers
 * the HTTP error itself when the upgrade is refused. */
void ws_open(net_request_t *req, const char *channel, size_t len);

/* The shared frames of a published message: plain, and compressed without
 * context takeover (plain when under the threshold). */
tt_buf_t *ws_frame_message(const tt_msg_t *m);
tt_buf_t *ws_frame_message_deflated(const tt_msg_t *m);

/* ================================================================ WebSocket framing */

enum {
  WS_OP_CONT = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xa,
};

enum {
  WS_PARSE_INCOMPLETE = -1,
  WS_PARSE_BAD = -2,  /* length not minimally encoded or over 2^63 */
};

#define WS_MAX_HEADER 14

typedef struct ws_frame_s {
  bool fin;
  unsigned rsv;        /* the three RSV bits, RSV1 = 4 */
  unsigned opcode;
  bool masked;
  uint8_t mask[4];
  uint64_t payload_len;
} ws_frame_t;

/* Parses a frame header from buf[0..len). Returns the header's length (the
 * payload follows it), or WS_PARSE_*. Checks only the encoding; the caller
 * applies the protocol rules (masking, opcodes, sizes). */
int ws_frame_parse(const uint8_t *buf, size_t len, ws_frame_t *f);
/* XORs p[0..len) with the mask, `start` bytes into the payload. */
void ws_unmask(uint8_t *p, size_t len, const uint8_t mask[4], size_t start);

/* Incremental UTF-8 validation across fragments. Zero-initialise. */
typedef struct ws_utf8_s {
  uint8_t need, lo, hi;
} ws_utf8_t;
/* 0, or -EILSEQ at the first byte that cannot be valid UTF-8. */
int ws_utf8_feed(ws_utf8_t *st, const uint8_t *p, size_t len);
/* True when no multi-byte sequence is left open. */
bool ws_utf8_complete(const ws_utf8_t *st);

/* Close codes a peer may send (RFC 6455 7.4). */
bool ws_close_code_valid(unsigned code);

/* Writes an unmasked server frame header; returns its length. */
size_t ws_frame_header(uint8_t *out, unsigned opcode, bool rsv1, uint64_t len);
tt_buf_t *ws_frame_build(unsigned opcode, bool rsv1, const void *payload, size_t len);
tt_buf_t *ws_close_frame(unsigned code, const char *reason);

#endif
