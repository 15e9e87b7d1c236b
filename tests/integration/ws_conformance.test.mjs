// RFC 6455 conformance of the WebSocket transport, checked with a raw-socket client built
// in tests/lib/ws.mjs: the handshake is written by hand, frames are built byte by byte
// (masked or not, any RSV bits, opcodes and length encodings) and server frames are parsed
// without a library. Each row of CASES gives the bytes to send and the exact outcome.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti, waitFor, publishRaw, connectRaw, getJSON } from '../lib/harness.mjs';
import { openRawWS, encodeFrame, closePayload, OP, acceptFor, describeFrames, parseFrames, upgradeRequest, randomKey } from '../lib/ws.mjs';

const MAX = 1024; // --ws-max-message for the main server

let srv;
const servers = [];
const conns = [];
before(async () => {
  srv = await startTutti(['--ws-max-message', String(MAX), '--workers', '2']);
  servers.push(srv);
});
after(async () => {
  for (const c of conns) c.destroy();
  for (const s of servers) assert.equal(await s.stop(), 0, 'tutti exit code after SIGTERM');
});

// ---- helpers ---------------------------------------------------------------

async function raw(opts = {}, s = srv) {
  const c = await openRawWS(s.port, opts);
  conns.push(c);
  return c;
}

// An upgraded connection past its welcome message.
async function ready(opts = {}, s = srv) {
  const c = await raw(opts, s);
  assert.equal(c.status, 101, `handshake: ${c.status} ${c.body}`);
  const w = await c.waitJSON('welcome');
  assert.equal(w.json.type, 'welcome');
  return c;
}

const f = (opts) => encodeFrame(opts);
const text = (payload, o = {}) => f({ opcode: OP.TEXT, payload, ...o });
const cont = (payload, o = {}) => f({ opcode: OP.CONT, payload, ...o });
const ctl = (opcode, payload = '', o = {}) => f({ opcode, payload, ...o });
const close = (code, reason = '') => ctl(OP.CLOSE, closePayload(code, reason));
const bytes = (...parts) => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Array.isArray(p) ? Buffer.from(p) : Buffer.from(p, 'utf8'))));

const pingJSON = (t = 12345, extra = '') => `{"type":"ping","client_time":${t}${extra}}`;
// A ping request padded to exactly n bytes.
function pingOfSize(n, t = 777) {
  const base = pingJSON(t, ',"pad":""');
  const s = pingJSON(t, `,"pad":"${'x'.repeat(n - base.length)}"`);
  assert.equal(Buffer.byteLength(s), n);
  return s;
}

// ---- the table -------------------------------------------------------------
// send: frames to write (one Buffer each, written separately); expect:
//   { close: code }                 a close frame with this code, then the TCP connection ends
//   { closeNoCodeOr1000: true }     a close frame without a code or with 1000, then the end
//   { pongs: [payload...] }         pong frames with exactly these payloads, connection open
//   { reply: { client_time } }      a JSON pong message echoing client_time, connection open
//   plus pongsBefore: [payload...]  pong frames expected before the reply

const CASES = [];
const add = (name, send, expect) => CASES.push({ name, send, expect });

// masking, RSV, opcodes
add('unmasked client text frame', [text(pingJSON(), { mask: false })], { close: 1002 });
add('unmasked client ping frame', [ctl(OP.PING, 'x', { mask: false })], { close: 1002 });
add('RSV1 set without a negotiated extension', [text(pingJSON(), { rsv1: true })], { close: 1002 });
add('RSV2 set', [text(pingJSON(), { rsv2: true })], { close: 1002 });
add('RSV3 set', [text(pingJSON(), { rsv3: true })], { close: 1002 });
add('RSV2 set on a ping', [ctl(OP.PING, 'x', { rsv2: true })], { close: 1002 });
for (const op of [3, 4, 5, 6, 7]) add(`reserved data opcode 0x${op.toString(16)}`, [f({ opcode: op, payload: 'x' })], { close: 1002 });
for (const op of [0xb, 0xc, 0xd, 0xe, 0xf]) add(`reserved control opcode 0x${op.toString(16)}`, [f({ opcode: op, payload: 'x' })], { close: 1002 });

// fragmentation
add('continuation without a start (FIN=1)', [cont('{"type":"ping"}')], { close: 1002 });
add('continuation without a start (FIN=0)', [cont('{"type":', { fin: false })], { close: 1002 });
add('new text frame inside a fragmented text message', [text('{"type":', { fin: false }), text('"ping"}')], { close: 1002 });
add('new binary frame inside a fragmented text message', [text('{"type":', { fin: false }), f({ opcode: OP.BINARY, payload: 'x' })], { close: 1002 });
add('new text frame (FIN=0) inside a fragmented text message', [text('{"type":', { fin: false }), text('"ping"', { fin: false })], { close: 1002 });

// control frames
add('ping with a 126-byte payload', [ctl(OP.PING, Buffer.alloc(126, 0x61))], { close: 1002 });
add('pong with a 126-byte payload', [ctl(OP.PONG, Buffer.alloc(126, 0x61))], { close: 1002 });
add('close with a 126-byte payload', [ctl(OP.CLOSE, closePayload(1000, 'r'.repeat(124)))], { close: 1002 });
add('fragmented ping (FIN=0)', [ctl(OP.PING, 'abc', { fin: false })], { close: 1002 });
add('fragmented close (FIN=0)', [ctl(OP.CLOSE, closePayload(1000), { fin: false })], { close: 1002 });
add('ping with a 5-byte payload in the 16-bit length form', [ctl(OP.PING, 'hello', { lengthForm: 16 })], { close: 1002 });

// close frames
add('close with a 1-byte payload', [ctl(OP.CLOSE, Buffer.from([0x03]))], { close: 1002 });
for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
  add(`close with reserved/invalid code ${code}`, [close(code)], { close: 1002 });
}
for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]) {
  add(`close with valid code ${code} is echoed`, [close(code)], { close: code });
}
add('close with code 1000 and a UTF-8 reason is echoed', [close(1000, 'bye – ✓')], { close: 1000 });
add('close without payload', [ctl(OP.CLOSE)], { closeNoCodeOr1000: true });
add('close reason that is not UTF-8', [ctl(OP.CLOSE, bytes(closePayload(1000), [0xff, 0xfe]))], { close: 1007 });
add('close reason with a truncated UTF-8 sequence', [ctl(OP.CLOSE, bytes(closePayload(1000), [0xe2, 0x82]))], { close: 1007 });

// UTF-8
add('text frame with an invalid byte (C3 28)', [text(bytes('{"type":"ping","x":"', [0xc3, 0x28], '"}'))], { close: 1007 });
add('text frame with a 0xFF byte', [text(bytes('{"type":"ping","x":"', [0xff], '"}'))], { close: 1007 });
add('text frame with an overlong encoding (C0 AF)', [text(bytes('{"x":"', [0xc0, 0xaf], '"}'))], { close: 1007 });
add('text frame with a UTF-16 surrogate (ED A0 80)', [text(bytes('{"x":"', [0xed, 0xa0, 0x80], '"}'))], { close: 1007 });
add('text frame with a code point over U+10FFFF (F4 90 80 80)', [text(bytes('{"x":"', [0xf4, 0x90, 0x80, 0x80], '"}'))], { close: 1007 });
add('text message ending inside a multi-byte sequence', [text(bytes('{"x":"', [0xe2, 0x82]))], { close: 1007 });
add('invalid UTF-8 completed only in the last fragment', [
  text(bytes('{"type":"ping","x":"', [0xe2, 0x82]), { fin: false }),
  cont(bytes([0x28], '"}')),
], { close: 1007 });
add('invalid UTF-8 in a first fragment is caught before the message ends', [
  text(bytes('{"type":"ping","x":"', [0xff]), { fin: false }),
], { close: 1007 });
add('valid multi-byte characters split across fragments are accepted (€ and 😀)', [
  text(bytes('{"type":"ping","client_time":4242,"x":"', [0xe2]), { fin: false }),
  cont(bytes([0x82, 0xac, 0xf0, 0x9f]), { fin: false }),
  cont(bytes([0x98]), { fin: false }),
  cont(bytes([0x80], '"}')),
], { reply: { client_time: 4242 } });
add('U+FFFF and U+10FFFF (valid edges) are accepted', [
  text(bytes('{"type":"ping","client_time":4343,"x":"', [0xef, 0xbf, 0xbf, 0xf4, 0x8f, 0xbf, 0xbf], '"}')),
], { reply: { client_time: 4343 } });

// length encodings
add('64-bit length with the most significant bit set', [f({ opcode: OP.TEXT, payload: 'abc', highBit: true })], { close: 1002 });
add('non-minimal length: 5 bytes in the 16-bit form', [text(pingJSON().slice(0, 5), { lengthForm: 16 })], { close: 1002 });
add('non-minimal length: 30 bytes in the 64-bit form', [text(pingJSON(), { lengthForm: 64 })], { close: 1002 });
add('non-minimal length: 200 bytes in the 64-bit form', [text(pingOfSize(200), { lengthForm: 64 })], { close: 1002 });

// size limit (--ws-max-message 1024)
add(`message of exactly --ws-max-message (${MAX}) bytes is accepted`, [text(pingOfSize(MAX, 1024))], { reply: { client_time: 1024 } });
add(`single frame of ${MAX + 1} bytes`, [text(pingOfSize(MAX + 1))], { close: 1009 });
add('single frame declaring 2^40 bytes (header only)', [f({ opcode: OP.TEXT, declaredLength: 2n ** 40n })], { close: 1009 });
add('binary frame over the limit', [f({ opcode: OP.BINARY, payload: Buffer.alloc(MAX + 100) })], { close: 1009 });
add(`fragments adding up to ${MAX + 176} bytes (600 + 600)`, (() => {
  const s = pingOfSize(1200);
  return [text(s.slice(0, 600), { fin: false }), cont(s.slice(600))];
})(), { close: 1009 });
add('many small fragments adding up to more than the limit', (() => {
  const s = pingOfSize(MAX + 300);
  const out = [];
  for (let i = 0; i < s.length; i += 100) {
    const last = i + 100 >= s.length;
    out.push(i === 0 ? text(s.slice(i, i + 100), { fin: false }) : cont(s.slice(i, i + 100), { fin: last }));
  }
  return out;
})(), { close: 1009 });

// ping / pong
add('ping with an empty payload', [ctl(OP.PING)], { pongs: [''] });
add('ping with a 5-byte payload', [ctl(OP.PING, 'hello')], { pongs: ['hello'] });
add('ping with a 125-byte binary payload', [ctl(OP.PING, Buffer.from(Array.from({ length: 125 }, (_, i) => (i * 7 + 3) & 0xff)))],
  { pongs: [Buffer.from(Array.from({ length: 125 }, (_, i) => (i * 7 + 3) & 0xff))] });
add('three pings answered in order', [ctl(OP.PING, 'a'), ctl(OP.PING, 'bb'), ctl(OP.PING, 'ccc')], { pongs: ['a', 'bb', 'ccc'] });
add('an unsolicited pong is ignored', [ctl(OP.PONG, 'zzz'), text(pingJSON(5151))], { reply: { client_time: 5151 } });
add('ping and pong interleaved between fragments; the message still completes', [
  text('{"type":"pi', { fin: false }),
  ctl(OP.PING, 'mid-1'),
  cont('ng","client_t', { fin: false }),
  ctl(OP.PONG, 'unsolicited'),
  ctl(OP.PING, 'mid-2'),
  cont('ime":6161}'),
], { pongsBefore: ['mid-1', 'mid-2'], reply: { client_time: 6161 } });
add('empty first fragment and 1-byte fragments', (() => {
  const s = pingJSON(7171);
  return [text('', { fin: false }), ...[...s].map((ch, i) => cont(ch, { fin: i === s.length - 1 }))];
})(), { reply: { client_time: 7171 } });
add('all-zero masking key', [text(pingJSON(8181), { maskKey: [0, 0, 0, 0] })], { reply: { client_time: 8181 } });
add('frames written byte by byte', [Buffer.from(text(pingJSON(9191)))].flatMap((b) => [...b].map((x) => Buffer.from([x]))),
  { reply: { client_time: 9191 } });

// ---- run the table -----------------------------------------------------------

function payloadText(p) { return Buffer.isBuffer(p) ? p.toString('hex') : Buffer.from(p).toString('hex'); }

for (const tc of CASES) {
  const exp = tc.expect.close !== undefined ? `close ${tc.expect.close}`
    : tc.expect.closeNoCodeOr1000 ? 'close (no code or 1000)'
      : tc.expect.pongs ? 'pong(s)' : 'JSON pong reply';
  test(`frame table: ${tc.name} -> ${exp}`, async () => {
    const c = await ready();
    const before = c.messages.length;
    if (tc.send.some((b) => (b[0] & 0x0f) === OP.CLOSE)) c.sentClose = true; // no second close from us
    for (const b of tc.send) c.write(b);
    const e = tc.expect;
    if (e.close !== undefined || e.closeNoCodeOr1000) {
      const cf = await c.expectClose(3000);
      if (e.close !== undefined) {
        assert.equal(cf.code, e.close, `close code; frames received: ${describeFrames(c.frames)}`);
      } else {
        assert.ok(cf.code === undefined || cf.code === 1000, `close without code or 1000; got ${cf.code}`);
      }
      // nothing was processed from a rejected message
      if (e.close >= 1002) {
        const replies = c.messages.slice(before).filter((m) => m.json && m.json.type === 'pong');
        assert.deepEqual(replies.map((m) => m.text), [], 'no reply to a rejected message');
      }
    } else if (e.pongs) {
      await c.waitFor(() => c.controls.filter((x) => x.opcode === OP.PONG).length >= e.pongs.length || c.isClosed, 3000, 'pongs');
      const pongs = c.controls.filter((x) => x.opcode === OP.PONG);
      assert.deepEqual(pongs.map((p) => p.payload.toString('hex')), e.pongs.map(payloadText), 'pong payloads');
      for (const p of pongs) assert.equal(p.fin, true);
    } else {
      const m = await c.waitMessage((x) => x.json && x.json.type === 'pong', 3000, 'the JSON pong');
      assert.equal(m.json.client_time, e.reply.client_time);
      assert.equal(typeof m.json.server_time, 'number');
      if (e.pongsBefore) {
        const pongs = c.controls.filter((x) => x.opcode === OP.PONG);
        assert.deepEqual(pongs.map((p) => p.payload.toString('utf8')), e.pongsBefore);
        for (const p of pongs) assert.ok(p.at <= m.at, 'pong frames answered before the message completed');
      }
    }
    if (e.close === undefined && !e.closeNoCodeOr1000) {
      // still open and still answering
      assert.equal(c.closeFrame, undefined, `unexpected close ${JSON.stringify(c.closeFrame)}`);
      c.write(ctl(OP.PING, 'still-open'));
      await c.waitFor(() => c.controls.some((x) => x.opcode === OP.PONG && x.payload.toString() === 'still-open') || c.isClosed, 3000, 'pong after the case');
      assert.equal(c.isClosed, false);
    }
    assert.deepEqual(c.errors, [], 'server frames well-formed (unmasked, nothing after close)');
  });
}

test('a closing handshake started by the client: the server answers with a close and then closes TCP', async () => {
  const c = await ready({ autoCloseReply: false });
  c.close(1000, 'done');
  const cf = await c.expectClose(3000);
  assert.equal(cf.code, 1000);
  // the server must not send data frames after its close
  assert.deepEqual(c.errors, []);
  const closeIdx = c.frames.findIndex((x) => x.opcode === OP.CLOSE);
  assert.equal(closeIdx, c.frames.length - 1, 'close is the last frame');
});

test('frames after the client close are ignored (no reply to a ping sent after close)', async () => {
  const c = await ready({ autoCloseReply: false });
  c.write(Buffer.concat([close(1000), text(pingJSON(1)), ctl(OP.PING, 'after')]));
  await c.expectClose(3000);
  assert.equal(c.controls.filter((x) => x.opcode === OP.PONG).length, 0, 'no pong after close');
  assert.equal(c.messages.filter((m) => m.json && m.json.type === 'pong').length, 0, 'no JSON reply after close');
});

// ---- handshake -------------------------------------------------------------

test('handshake: Sec-WebSocket-Accept for the RFC 6455 sample key, 101 headers, welcome as the first frame', async () => {
  const c = await raw({ key: 'dGhlIHNhbXBsZSBub25jZQ==' });
  assert.equal(c.status, 101);
  assert.equal(c.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  assert.match(c.headers.upgrade, /^websocket$/i);
  assert.match(c.headers.connection, /\bupgrade\b/i);
  assert.equal(c.headers['sec-websocket-extensions'], undefined, 'no extension when none was offered');
  assert.equal(c.headers['content-length'], undefined, '101 has no body');
  const w = await c.waitJSON('welcome');
  assert.equal(c.messages[0], w, 'welcome is the first message');
  assert.equal(c.frames[0].opcode, OP.TEXT);
  assert.equal(c.frames[0].rsv1, false);

  const d = await raw();
  assert.equal(d.status, 101);
  assert.equal(d.headers['sec-websocket-accept'], acceptFor(d.key));
});

test('handshake: header names and tokens are case-insensitive; Connection may list several tokens', async () => {
  const c = await raw({ headers: { Upgrade: 'WebSocket', Connection: 'keep-alive, Upgrade' } });
  assert.equal(c.status, 101, c.body);
  assert.equal(c.headers['sec-websocket-accept'], acceptFor(c.key));
  const d = await raw({ request: `GET /ws HTTP/1.1\r\nhost: 127.0.0.1:${srv.port}\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: ${'AAAAAAAAAAAAAAAAAAAAAA=='}\r\nsec-websocket-version: 13\r\n\r\n` });
  assert.equal(d.status, 101, d.body);
  assert.equal(d.headers['sec-websocket-accept'], acceptFor('AAAAAAAAAAAAAAAAAAAAAA=='));
});

function assertError(c, status, code, what) {
  assert.equal(c.status, status, `${what}: status (body ${c.body})`);
  assert.ok(c.json && c.json.error, `${what}: JSON error body, got ${JSON.stringify(c.body)}`);
  assert.equal(c.json.error.code, code, `${what}: error code`);
  assert.equal(typeof c.json.error.message, 'string');
  assert.match(c.headers['content-type'] || '', /^application\/json/);
}

const HANDSHAKE_ERRORS = [
  ['no Upgrade header', { headers: { Upgrade: null } }, 400, 'BAD_UPGRADE'],
  ['Upgrade: h2c', { headers: { Upgrade: 'h2c' } }, 400, 'BAD_UPGRADE'],
  ['no Connection header', { headers: { Connection: null } }, 400, 'BAD_UPGRADE'],
  ['Connection: keep-alive (no Upgrade token)', { headers: { Connection: 'keep-alive' } }, 400, 'BAD_UPGRADE'],
  ['no Sec-WebSocket-Key', { headers: { 'Sec-WebSocket-Key': null } }, 400, 'BAD_UPGRADE'],
  ['key "abc"', { key: 'abc' }, 400, 'BAD_UPGRADE'],
  ['key of 15 bytes in base64', { key: Buffer.alloc(15, 1).toString('base64') }, 400, 'BAD_UPGRADE'],
  ['key of 17 bytes in base64', { key: Buffer.alloc(17, 1).toString('base64') }, 400, 'BAD_UPGRADE'],
  ['key of 24 characters that are not base64', { key: '!!!!!!!!!!!!!!!!!!!!!!==' }, 400, 'BAD_UPGRADE'],
  ['key without its padding', { key: 'dGhlIHNhbXBsZSBub25jZQ' }, 400, 'BAD_UPGRADE'],
  ['HTTP/1.0', { httpVersion: '1.0' }, 400, 'BAD_UPGRADE'],
  ['Sec-WebSocket-Version: 8', { headers: { 'Sec-WebSocket-Version': '8' } }, 426, 'UPGRADE_REQUIRED'],
  ['Sec-WebSocket-Version: 14', { headers: { 'Sec-WebSocket-Version': '14' } }, 426, 'UPGRADE_REQUIRED'],
  ['Origin from another host (no --cors-origins)', { headers: { Origin: 'http://evil.example' } }, 403, 'FORBIDDEN_ORIGIN'],
  ['/ws/{channel} with a bad channel', { path: '/ws/bad%20channel!' }, 400, 'BAD_CHANNEL'],
  ['/ws/{channel} with a bad since', { path: '/ws/okchan?since=e1:notanumber' }, 400, 'BAD_SINCE'],
];
for (const [name, opts, status, code] of HANDSHAKE_ERRORS) {
  test(`handshake error: ${name} -> ${status} ${code}`, async () => {
    const c = await raw(opts);
    assertError(c, status, code, name);
    assert.equal(c.headers['sec-websocket-accept'], undefined);
    if (status === 426) assert.equal(c.headers['sec-websocket-version'], '13', 'a 426 names the supported version');
  });
}

test('handshake error: POST with upgrade headers is refused (docs: 400 BAD_UPGRADE)', async (t) => {
  const c = await raw({ method: 'POST' });
  t.diagnostic(`POST /ws upgrade answered ${c.status} ${c.json?.error?.code}`);
  assert.ok(c.status === 400 || c.status === 405, `400 or 405, got ${c.status} ${c.body}`);
  if (c.status === 400) assertError(c, 400, 'BAD_UPGRADE', 'POST');
  else {
    assertError(c, 405, 'METHOD_NOT_ALLOWED', 'POST');
    assert.match(c.headers.allow || '', /\bGET\b/);
  }
  // the documented answer
  assert.equal(c.status, 400, 'PROTOCOL.md: "not GET" is 400 BAD_UPGRADE');
});

test('handshake: a same-host Origin and no Origin are accepted without --cors-origins', async () => {
  const a = await raw({ headers: { Origin: `http://127.0.0.1:${srv.port}` } });
  assert.equal(a.status, 101, a.body);
  const b = await raw({ headers: { Origin: null } });
  assert.equal(b.status, 101, b.body);
});

test('handshake with --cors-origins: listed origin accepted, others 403 FORBIDDEN_ORIGIN', async () => {
  const s = await startTutti(['--cors-origins', 'https://ok.example,https://also.example']);
  servers.push(s);
  const ok = await raw({ headers: { Origin: 'https://ok.example' } }, s);
  assert.equal(ok.status, 101, ok.body);
  const also = await raw({ headers: { Origin: 'https://also.example' } }, s);
  assert.equal(also.status, 101, also.body);
  const bad = await raw({ headers: { Origin: 'https://bad.example' } }, s);
  assertError(bad, 403, 'FORBIDDEN_ORIGIN', 'unlisted origin');
  const sameHost = await raw({ headers: { Origin: `http://127.0.0.1:${s.port}` } }, s);
  assertError(sameHost, 403, 'FORBIDDEN_ORIGIN', 'same-host origin not in the list');
});

// ---- server frames and connection handling ------------------------------------

test('server frames use the minimal length encoding at 125/126/65535/65536 bytes', async () => {
  const c = await ready();
  c.write(text('{"type":"subscribe","channel":"lenform","id":1}'));
  await c.waitJSON('subscribed');
  await waitFor(async () => (await getJSON(srv.url, '/health/channel/lenform')).json.subscribers === 1, 3000, 'subscribed');
  // measure the envelope around data with a first message (offsets stay one digit)
  await publishRaw(srv.url, 'lenform', '"m"');
  const m1 = await c.waitMessage((m) => m.json?.type === 'message');
  const overhead = m1.payload.length - 3;
  const sizes = [125, 126, 127, 65535, 65536, 65537];
  for (const size of sizes) await publishRaw(srv.url, 'lenform', `"${'x'.repeat(size - overhead - 2)}"`);
  await c.waitFor(() => c.messages.filter((m) => m.json?.type === 'message').length >= 1 + sizes.length, 5000, 'the sized messages');
  const ms = c.messages.filter((m) => m.json?.type === 'message').slice(1);
  assert.deepEqual(ms.map((m) => m.payload.length), sizes, 'message sizes as planned');
  assert.ok(ms.every((m) => m.frames === 1), 'one frame per message');
  const frames = c.frames.filter((f) => f.opcode === OP.TEXT).slice(-sizes.length);
  assert.deepEqual(frames.map((f) => [f.payload.length, f.lengthForm]),
    [[125, 7], [126, 16], [127, 16], [65535, 16], [65536, 64], [65537, 64]], 'one frame per message, minimal length form');
  assert.deepEqual(c.errors, []);
});

test('frames sent in the same TCP write as the handshake are processed', async () => {
  const initial = Buffer.concat([text(pingJSON(2468)), ctl(OP.PING, 'early')]);
  const c = await raw({ initial });
  assert.equal(c.status, 101);
  const m = await c.waitMessage((x) => x.json?.type === 'pong');
  assert.equal(m.json.client_time, 2468);
  await c.waitFor(() => c.controls.some((x) => x.opcode === OP.PONG && x.payload.toString() === 'early'), 3000, 'pong frame');
  assert.equal(c.messages[0].json.type, 'welcome', 'welcome still comes first');
});

test('upgrade on a keep-alive connection after an ordinary HTTP request', async () => {
  const conn = await connectRaw(srv.port);
  try {
    conn.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\n\r\n`);
    const h = await conn.readResponse();
    assert.equal(h.status, 200);
    const key = randomKey();
    conn.write(upgradeRequest({ port: srv.port, key }));
    const u = await conn.readResponse({ head: true });
    assert.equal(u.status, 101);
    assert.equal(u.headers['sec-websocket-accept'], acceptFor(key));
    conn.write(text(pingJSON(1357)));
    let frames = [];
    await waitFor(() => {
      frames = parseFrames(conn.buffered).frames;
      return frames.some((fr) => fr.opcode === OP.TEXT && fr.payload.toString().includes('"pong"')) || conn.isClosed;
    }, 3000, 'welcome and pong on the upgraded connection');
    const texts = frames.filter((fr) => fr.opcode === OP.TEXT).map((fr) => JSON.parse(fr.payload.toString()));
    assert.equal(texts[0].type, 'welcome');
    assert.equal(texts.find((t) => t.type === 'pong').client_time, 1357);
  } finally {
    conn.destroy();
  }
});

test('an HTTP request pipelined after the upgrade request is not answered as HTTP', async () => {
  // after a 101 the bytes are WebSocket frames: an HTTP request there is a protocol error
  const c = await raw({ initial: Buffer.from(`GET /health HTTP/1.1\r\nHost: x\r\n\r\n`) });
  assert.equal(c.status, 101);
  const cf = await c.expectClose(3000);
  assert.equal(cf.code, 1002, 'unmasked/invalid frame bytes');
});

// ---- server pings ------------------------------------------------------------

test('idle ping: a client that never answers gets a ping, then close 1001, then TCP close', async () => {
  const s = await startTutti(['--ws-ping-interval', '0.3', '--ws-ping-timeout', '0.3']);
  servers.push(s);
  const c = await ready({ autoPong: false }, s);
  const opened = Date.now();
  await c.waitFor(() => c.controls.some((x) => x.opcode === OP.PING) || c.isClosed, 3000, 'a server ping');
  const ping = c.controls.find((x) => x.opcode === OP.PING);
  assert.ok(ping, `a ping before anything else; frames ${describeFrames(c.frames)}`);
  assert.ok(ping.at - opened >= 200, `first ping after ~0.3 s of silence, came after ${ping.at - opened} ms`);
  assert.ok(ping.payload.length <= 125);
  const cf = await c.expectClose(3000);
  assert.equal(cf.code, 1001);
  const closeFrame = c.controls.find((x) => x.opcode === OP.CLOSE);
  assert.ok(closeFrame.at - ping.at >= 200, `close ~0.3 s after the ping, came after ${closeFrame.at - ping.at} ms`);
  assert.deepEqual(c.errors, []);
});

test('idle ping: a client that answers pings stays open over several intervals', async () => {
  const s = await startTutti(['--ws-ping-interval', '0.3', '--ws-ping-timeout', '0.3']);
  servers.push(s);
  const c = await ready({ autoPong: true }, s);
  await c.waitFor(() => c.controls.filter((x) => x.opcode === OP.PING).length >= 4 || c.isClosed, 5000, '4 server pings');
  assert.equal(c.closeFrame, undefined, `closed: ${JSON.stringify(c.closeFrame)}`);
  assert.equal(c.isClosed, false);
  // and it still works
  c.write(text(pingJSON(31337)));
  const m = await c.waitMessage((x) => x.json && x.json.type === 'pong');
  assert.equal(m.json.client_time, 31337);
});

test('idle ping: a client that keeps sending is not pinged', async () => {
  const s = await startTutti(['--ws-ping-interval', '0.3', '--ws-ping-timeout', '0.3']);
  servers.push(s);
  const c = await ready({ autoPong: false }, s);
  let n = 0;
  const timer = setInterval(() => c.write(text(pingJSON(++n))), 50);
  try {
    await c.waitFor(() => c.messages.filter((m) => m.json && m.json.type === 'pong').length >= 24 || c.isClosed, 5000, '24 pong replies (> 1 s)');
  } finally {
    clearInterval(timer);
  }
  assert.equal(c.isClosed, false);
  assert.equal(c.controls.filter((x) => x.opcode === OP.PING).length, 0, 'no server ping while the client is active');
  // once silent, it is pinged again
  await c.waitFor(() => c.controls.some((x) => x.opcode === OP.PING), 3000, 'a ping after the client went silent');
});

test('the main server is healthy after all the protocol errors', async () => {
  const c = await ready();
  c.write(text(pingJSON(1)));
  const m = await c.waitMessage((x) => x.json && x.json.type === 'pong');
  assert.equal(m.json.client_time, 1);
  await waitFor(async () => (await fetch(`${srv.url}/health`)).status === 200, 2000, '/health 200');
});
