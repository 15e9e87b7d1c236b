// tutti's JSON protocol over WebSocket, with the `ws` package (with and without
// permessage-deflate) and, where the bytes on the wire matter, the raw-socket client of
// tests/lib/ws.mjs: welcome, subscribe/unsubscribe, byte-exact data, recovery with `since`,
// every error code with its `ref`, rate limiting, stats, /ws/{channel}, compression,
// 1000-subscriber fan-out and shutdown.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import {
  startTutti, publish, publishRaw, waitFor, openSSE, getJSON, parsePosition, sseAgent,
} from '../lib/harness.mjs';
import {
  openWS, openRawWS, rawMember, OP, encodeFrame, deflateMessage, describeFrames,
} from '../lib/ws.mjs';

// ---- servers ---------------------------------------------------------------

const MAIN_ARGS = [
  '--workers', '2', '--client-publish', 'jam:', '--history-size', '1000', '--max-body', '8192',
  '--ws-max-message', '65536', '--ws-deflate-threshold', '512', '--max-channels-per-stream', '4',
];
let srv;
const servers = [];
const clients = [];
const sses = [];

async function start(args) {
  const s = await startTutti(args);
  servers.push(s);
  return s;
}
before(async () => { srv = await start(MAIN_ARGS); });
after(async () => {
  for (const c of clients) { try { c.terminate(); } catch { /* closed */ } }
  for (const c of sses) c.close();
  sseAgent.destroy();
  for (const s of servers) assert.equal(await s.stop(), 0, 'tutti exit code after SIGTERM');
});

// ---- helpers ---------------------------------------------------------------

// A `ws` client past its welcome message.
async function wsc(s = srv, path = '/ws', opts = {}) {
  const c = await openWS(s.url, path, opts);
  clients.push(c);
  await c.waitType('welcome');
  return c;
}
async function rawc(s, opts) {
  const c = await openRawWS(s.port, opts);
  clients.push({ terminate: () => c.destroy() });
  return c;
}
async function sse(s, path) {
  const c = await openSSE(s.url, path);
  sses.push(c);
  return c;
}
async function subscribe(c, channel, extra = {}) {
  const r = await c.request({ type: 'subscribe', channel, ...extra });
  assert.equal(r.type, 'subscribed', `subscribe ${channel}: ${JSON.stringify(r)}`);
  return r;
}
async function subscribers(s, channel) {
  return (await getJSON(s.url, `/health/channel/${encodeURIComponent(channel)}`)).json.subscribers;
}
async function waitSubscribers(s, channel, n) {
  await waitFor(async () => (await subscribers(s, channel)) === n, 5000, `${n} subscribers on ${channel}`);
}
const offsetOf = (id) => parsePosition(id)[0].offset;
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

function assertErrorShape(e, code, ref, what = code) {
  assert.equal(e.type, 'error', `${what}: ${JSON.stringify(e)}`);
  assert.equal(e.code, code, `${what}: code in ${JSON.stringify(e)}`);
  assert.equal(typeof e.message, 'string', `${what}: message`);
  assert.ok(e.message.length > 0, `${what}: non-empty message`);
  assert.equal(typeof e.timestamp, 'number', `${what}: timestamp`);
  assert.ok(Math.abs(e.timestamp - Date.now()) < 60000, `${what}: timestamp ${e.timestamp} is ms since the epoch`);
  if (ref === undefined) assert.ok(!('ref' in e) || e.ref === null, `${what}: no ref without an id, got ${JSON.stringify(e)}`);
  else assert.deepEqual(e.ref, ref, `${what}: ref echoes the request id`);
}

// Sends raw text and waits for the next error after it.
async function errorFor(c, text, what) {
  const seen = c.msgs.length;
  c.sendRaw(text);
  await c.waitFor(() => c.msgs.slice(seen).some((m) => m.json?.type === 'error') || c.closeInfo, 3000, `an error for ${what}`);
  return c.msgs.slice(seen).find((m) => m.json?.type === 'error').json;
}

// Ping round trip: proves the connection is open and serving.
async function assertAlive(c, what = 'connection') {
  const t = Date.now();
  const r = await c.request({ type: 'ping', client_time: t });
  assert.equal(r.type, 'pong', `${what} still answers`);
  assert.equal(c.closeInfo, undefined, `${what} still open`);
}

// ---- welcome ---------------------------------------------------------------

test('welcome: fields, limits from the flags, permessage_deflate as negotiated', async () => {
  const plain = await wsc(srv, '/ws', { perMessageDeflate: false });
  const comp = await wsc(srv, '/ws', { perMessageDeflate: true });
  for (const [c, negotiated] of [[plain, false], [comp, true]]) {
    assert.equal(c.msgs[0].json.type, 'welcome', 'welcome is the first message');
    const w = c.msgs[0].json;
    assert.equal(typeof w.connection_id, 'string');
    assert.ok(w.connection_id.length > 0);
    assert.match(w.server_info.version, /^\d+\.\d+\.\d+/);
    for (const f of ['subscribe', 'unsubscribe', 'publish', 'recovery', 'ping', 'get_stats', 'permessage-deflate']) {
      assert.ok(w.server_info.features.includes(f), `features include ${f}: ${JSON.stringify(w.server_info.features)}`);
    }
    assert.deepEqual(w.server_info.limits, {
      max_message_bytes: 65536, max_channels: 4, rate_per_second: 1000, rate_burst: 2000,
    });
    assert.equal(w.server_info.permessage_deflate, negotiated);
    assert.equal(typeof w.server_time, 'number');
    assert.ok(Math.abs(w.server_time - Date.now()) < 60000);
    assert.equal(/permessage-deflate/.test(c.ws.extensions), negotiated, `ws.extensions ${JSON.stringify(c.ws.extensions)}`);
  }
  assert.notEqual(plain.msgs[0].json.connection_id, comp.msgs[0].json.connection_id);
});

// ---- subscribe, messages, unsubscribe ----------------------------------------

test('subscribe -> subscribed (fields, ref); `topic` is accepted for `channel`', async () => {
  const c = await wsc();
  const r = await c.request({ type: 'subscribe', channel: 'sub1', id: 11 });
  assert.equal(r.type, 'subscribed');
  assert.equal(r.channel, 'sub1');
  assert.equal(typeof r.epoch, 'string');
  assert.match(r.epoch, /^[^\s:,]+$/);
  assert.equal(r.offset, 0, 'fresh channel');
  assert.equal(r.id, `${r.epoch}:0`);
  assert.equal(r.recovered, false, 'recovered is true only when since was given');
  assert.equal(r.ref, 11);
  await waitSubscribers(srv, 'sub1', 1);

  const t = await c.request({ type: 'subscribe', topic: 'sub2', id: 'topic' });
  assert.equal(t.type, 'subscribed', JSON.stringify(t));
  assert.equal(t.channel, 'sub2');
  await waitSubscribers(srv, 'sub2', 1);

  // the position after messages already published
  await publish(srv.url, 'sub3', 1);
  await publish(srv.url, 'sub3', 2);
  const u = await c.request({ type: 'subscribe', channel: 'sub3' });
  assert.equal(u.offset, 2);
  assert.equal(u.id, `${u.epoch}:2`);
  assert.equal(c.of('message').length, 0, 'no history without since');
});

test('messages carry the published data byte for byte (raw frame text), with id and event', async () => {
  for (const perMessageDeflate of [false, true]) {
    const ch = `bytes-${perMessageDeflate}`;
    const c = await wsc(srv, '/ws', { perMessageDeflate });
    const sub = await subscribe(c, ch);
    const bodies = [
      '{ "a" :1,"b":[1, 2] ,  "c" : { } }',
      '{\n  "pretty": [\n    1,\n    2.50\n  ],\r\n  "s": "a\\u0041\\n\\"q\\""\n}',
      '"héllo ✓ 😀"',
      '42',
      '-0.0e+5',
      'null',
      '[ ]',
      ` { "big": "${'x'.repeat(2000)}" } `.trim(),
    ];
    const answers = [];
    for (const b of bodies) answers.push(await publishRaw(srv.url, ch, b, { event: 'note' }));
    // through POST /api/publish: data is the value's own bytes
    const res = await fetch(`${srv.url}/api/publish`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: `{"channel":"${ch}","data":  { "x" : [ 1 ,2 ] , "s":"a\\u0041 b"}  }`,
    });
    assert.equal(res.status, 200);
    answers.push(await res.json());
    await c.waitType('message', bodies.length + 1);
    const ms = c.of('message');
    assert.deepEqual(ms.map((m) => m.json.id), answers.map((a) => a.id));
    assert.deepEqual(ms.map((m) => offsetOf(m.json.id)), range(sub.offset + 1, sub.offset + bodies.length + 1));
    for (let i = 0; i < bodies.length; i++) {
      assert.equal(rawMember(ms[i].raw, 'data'), bodies[i], `message ${i} data bytes (deflate ${perMessageDeflate})`);
      assert.equal(ms[i].json.event, 'note');
      assert.equal(ms[i].json.channel, ch);
    }
    const last = ms[bodies.length];
    assert.equal(rawMember(last.raw, 'data'), '{ "x" : [ 1 ,2 ] , "s":"a\\u0041 b"}');
    assert.equal(last.json.event, 'message', 'default event name');
  }
});

test('one HTTP publish reaches an SSE subscriber and a WebSocket subscriber with identical data', async () => {
  const s = await sse(srv, '/sse/both');
  await s.waitForCount('connected', 1);
  const a = await wsc(srv, '/ws', { perMessageDeflate: false });
  const b = await wsc(srv, '/ws', { perMessageDeflate: true });
  await subscribe(a, 'both');
  await subscribe(b, 'both');
  await waitSubscribers(srv, 'both', 3);
  const body = '{ "k" :\n  [1, 2.50, "é\\u00e9"],  "long": "' + 'abc '.repeat(300) + '" }';
  const ans = await publishRaw(srv.url, 'both', body, { event: 'chord' });
  await s.waitForCount('chord', 1);
  await a.waitType('message');
  await b.waitType('message');
  const se = s.of('chord')[0];
  assert.equal(se.id, ans.id);
  assert.equal(se.data, body);
  for (const c of [a, b]) {
    const m = c.of('message')[0];
    assert.equal(m.json.id, ans.id);
    assert.equal(m.json.event, 'chord');
    assert.equal(rawMember(m.raw, 'data'), se.data, 'WebSocket data equals SSE data');
  }
});

test('unsubscribe -> unsubscribed, and delivery stops', async () => {
  const c = await wsc();
  await subscribe(c, 'un1');
  await subscribe(c, 'un2');
  await publish(srv.url, 'un1', { n: 1 });
  await c.waitType('message', 1);
  const r = await c.request({ type: 'unsubscribe', channel: 'un1', id: [1, 'x'] });
  assert.deepEqual(r, { type: 'unsubscribed', channel: 'un1', ref: [1, 'x'] });
  await waitSubscribers(srv, 'un1', 0);
  await publish(srv.url, 'un1', { n: 2 });
  await publish(srv.url, 'un2', { barrier: true });
  await c.waitFor(() => c.of('message').some((m) => m.json.channel === 'un2'), 3000, 'barrier message on un2');
  assert.deepEqual(c.of('message').map((m) => m.json.channel), ['un1', 'un2'], 'nothing from un1 after unsubscribe');
  // can subscribe again
  const again = await subscribe(c, 'un1');
  assert.equal(again.offset, 2);
});

// ---- recovery ---------------------------------------------------------------

test('subscribe with since after a forced disconnect mid-burst of 300: nothing lost, nothing duplicated', { timeout: 30000 }, async () => {
  const N = 300;
  const ch = 'burst';
  const first = [];
  let cut = false;
  const a = await openWS(srv.url, '/ws', {
    onMessage: (m, c) => {
      if (m.json?.type !== 'message' || cut) return;
      first.push(m.json);
      if (first.length === 60) { cut = true; c.terminate(); }
    },
  });
  clients.push(a);
  await a.waitType('welcome');
  await subscribe(a, ch);
  await waitSubscribers(srv, ch, 1);

  const expected = new Map();
  let done = false;
  const publishing = (async () => {
    for (let i = 0; i < N; i++) {
      const r = await publish(srv.url, ch, { i, pad: 'p'.repeat(i % 50) });
      expected.set(r.offset, JSON.stringify({ i, pad: 'p'.repeat(i % 50) }));
    }
    done = true;
  })();
  await waitFor(() => cut, 10000, 'the forced disconnect');
  await a.closed;
  assert.ok(!done, 'the disconnect happened during the burst');
  const lastId = first[first.length - 1].id;

  const b = await wsc(srv, '/ws', { perMessageDeflate: true });
  const sub = await b.request({ type: 'subscribe', channel: ch, since: lastId, id: 'resume' });
  assert.equal(sub.type, 'subscribed', JSON.stringify(sub));
  assert.equal(sub.recovered, true);
  await publishing;
  await b.waitFor(() => b.of('message').length >= N - first.length, 10000,
    `the remaining ${N - first.length} messages (have ${b.of('message').length})`);

  const subIdx = b.msgs.findIndex((m) => m.json?.type === 'subscribed');
  const missed = b.msgs.slice(0, subIdx).filter((m) => m.json?.type === 'message');
  if (missed.length) assert.equal(sub.offset, offsetOf(missed[missed.length - 1].json.id), 'subscribed.offset is after the missed messages');
  else assert.equal(sub.offset, offsetOf(lastId));
  assert.equal(b.of('recovery_incomplete').length, 0);

  const all = [...first, ...b.of('message').map((m) => m.json)];
  const offs = all.map((m) => offsetOf(m.id));
  assert.deepEqual(offs, range(1, N), 'every offset exactly once, in order');
  for (const m of b.of('message')) {
    assert.equal(rawMember(m.raw, 'data'), expected.get(offsetOf(m.json.id)), `data of ${m.json.id}`);
  }
  for (const m of first) assert.equal(JSON.stringify(m.data), expected.get(offsetOf(m.id)));
});

test('recovery with since: numbers, strings, recovery_incomplete (history_expired, epoch_changed, bad_position)', async () => {
  const s = await start(['--history-size', '5']);
  const ch = 'ri';
  const answers = [];
  for (let i = 1; i <= 20; i++) answers.push(await publish(s.url, ch, { i }));
  const epoch = answers[0].epoch;

  async function recover(since) {
    const c = await wsc(s);
    const r = await c.request({ type: 'subscribe', channel: ch, since, id: `since-${JSON.stringify(since)}` });
    assert.equal(r.type, 'subscribed', `since ${JSON.stringify(since)}: ${JSON.stringify(r)}`);
    const subIdx = c.msgs.findIndex((m) => m.json?.type === 'subscribed');
    const before = c.msgs.slice(1, subIdx).map((m) => m.json);
    return { c, r, before };
  }

  // complete: same epoch, held in history
  for (const since of [`${epoch}:17`, 17, '17']) {
    const { r, before } = await recover(since);
    assert.deepEqual(before.map((m) => m.type), ['message', 'message', 'message'], `since ${JSON.stringify(since)}`);
    assert.deepEqual(before.map((m) => offsetOf(m.id)), [18, 19, 20]);
    assert.deepEqual(before.map((m) => m.data.i), [18, 19, 20]);
    assert.equal(r.recovered, true);
    assert.equal(r.offset, 20);
    assert.equal(r.epoch, epoch);
  }
  {
    const { r, before } = await recover(`${epoch}:20`);
    assert.deepEqual(before, [], 'nothing missed');
    assert.equal(r.recovered, true);
    assert.equal(r.offset, 20);
  }
  // incomplete
  const cases = [
    [`${epoch}:2`, 'history_expired'],
    ['zzzzzzzz:3', 'epoch_changed'],
    [`${epoch}:999`, 'bad_position'],
  ];
  for (const [since, reason] of cases) {
    const { r, before } = await recover(since);
    assert.equal(before[0]?.type, 'recovery_incomplete', `since ${since}: first ${JSON.stringify(before[0])}`);
    const ri = before[0];
    assert.equal(ri.channel, ch);
    assert.equal(ri.reason, reason, `since ${since}`);
    assert.equal(ri.requested, since);
    assert.equal(ri.epoch, epoch);
    assert.equal(ri.oldest_offset, 16);
    assert.equal(ri.last_offset, 20);
    assert.deepEqual(before.slice(1).map((m) => offsetOf(m.id)), [16, 17, 18, 19, 20], `since ${since}: what the server holds`);
    assert.ok(before.slice(1).every((m) => m.type === 'message'));
    assert.equal(r.recovered, false);
    assert.equal(r.offset, 20);
  }
  // live messages follow a recovery
  const { c } = await recover(`${epoch}:19`);
  const live = await publish(s.url, ch, { i: 21 });
  await c.waitType('message', 2);
  assert.deepEqual(c.of('message').map((m) => m.json.id), [answers[19].id, live.id]);
});

test('/ws/{channel} subscribes at once; ?since= recovers', async () => {
  const pre = [];
  for (let i = 0; i < 3; i++) pre.push(await publish(srv.url, 'direct', { i }));
  const c = await wsc(srv, '/ws/direct');
  const sub = await c.waitType('subscribed');
  assert.equal(sub.json.channel, 'direct');
  assert.equal(sub.json.offset, 3);
  assert.equal(c.of('message').length, 0);
  await waitSubscribers(srv, 'direct', 1);
  const ans = await publish(srv.url, 'direct', { live: 1 });
  await c.waitType('message');
  assert.equal(c.of('message')[0].json.id, ans.id);
  assert.equal(c.of('message')[0].json.channel, 'direct');

  const d = await wsc(srv, `/ws/direct?since=${encodeURIComponent(pre[0].id)}`);
  const s2 = await d.waitType('subscribed');
  assert.equal(s2.json.recovered, true);
  assert.equal(s2.json.offset, 4);
  const subIdx = d.msgs.indexOf(s2);
  assert.deepEqual(d.msgs.slice(0, subIdx).filter((m) => m.json.type === 'message').map((m) => offsetOf(m.json.id)), [2, 3, 4]);

  // channel with a slash, percent-encoded
  const e = await wsc(srv, '/ws/repo%3Aowner%2Fname');
  assert.equal((await e.waitType('subscribed')).json.channel, 'repo:owner/name');
  // already subscribed through the path
  const dup = await e.request({ type: 'subscribe', channel: 'repo:owner/name', id: 'dup' });
  assertErrorShape(dup, 'ALREADY_SUBSCRIBED', 'dup');
});

// ---- errors -----------------------------------------------------------------

test('errors: every code with code/message/timestamp and ref equal to the id (numbers, strings, objects)', async () => {
  const c = await wsc();
  const big = 'x'.repeat(8192 - 2);
  const table = [
    [{ id: 1 }, 'MISSING_FIELD', 'no type'],
    [{ type: 'subscribe', id: 2.5 }, 'MISSING_FIELD', 'subscribe without channel'],
    [{ type: 'unsubscribe', id: -3 }, 'MISSING_FIELD', 'unsubscribe without channel'],
    [{ type: 'publish', channel: 'jam:e', id: 'pub-no-data' }, 'MISSING_FIELD', 'publish without data'],
    [{ type: 'dance', id: 'str-id' }, 'UNKNOWN_TYPE', 'unknown type'],
    [{ type: 'subscribe', channel: 'bad channel!', id: { nested: { id: [1, 2] } } }, 'BAD_CHANNEL', 'bad channel'],
    [{ type: 'subscribe', channel: 'c'.repeat(256), id: 7 }, 'BAD_CHANNEL', '256-byte channel'],
    [{ type: 'subscribe', channel: 'okc', since: 'abc', id: 8 }, 'BAD_SINCE', 'since abc'],
    [{ type: 'subscribe', channel: 'okc', since: 'e1:notanumber', id: 9 }, 'BAD_SINCE', 'since e1:notanumber'],
    [{ type: 'subscribe', channel: 'okc', since: -1, id: 9.5 }, 'BAD_SINCE', 'since -1'],
    [{ type: 'subscribe', channel: 'okc', since: { o: 1 }, id: 9.75 }, 'BAD_SINCE', 'since as an object'],
    [{ type: 'publish', channel: 'jam:e', event: 'bad event!', data: 1, id: 10 }, 'BAD_EVENT', 'bad event'],
    [{ type: 'unsubscribe', channel: 'never-subscribed', id: 'ns' }, 'NOT_SUBSCRIBED', 'not subscribed'],
    [{ type: 'publish', channel: 'news', data: { a: 1 }, id: { who: 'forbidden' } }, 'FORBIDDEN', 'publish outside jam:'],
    [{ type: 'publish', channel: 'jamx', data: 1, id: 12 }, 'FORBIDDEN', 'prefix is jam: with the colon'],
    [{ type: 'publish', channel: 'jam:big', data: big + 'y', id: 13 }, 'TOO_LARGE', `data of ${big.length + 3} bytes over --max-body 8192`],
  ];
  for (const [req, code, what] of table) {
    const r = await c.request(req);
    assertErrorShape(r, code, req.id, what);
  }
  // exactly --max-body bytes of data is accepted
  const ok = await c.request({ type: 'publish', channel: 'jam:big', data: big, id: 14 });
  assert.equal(ok.type, 'published', `data of exactly 8192 bytes: ${JSON.stringify(ok).slice(0, 200)}`);

  await subscribe(c, 'twice');
  const dup = await c.request({ type: 'subscribe', channel: 'twice', id: 'again' });
  assertErrorShape(dup, 'ALREADY_SUBSCRIBED', 'again');

  // an error without an id has no ref
  assertErrorShape(await errorFor(c, '{"type":"dance"}', 'unknown type without id'), 'UNKNOWN_TYPE', undefined);
  await assertAlive(c, 'after the errors');
});

test('ref carries any JSON id back unchanged (falsy values, big numbers, spacing), on replies and errors', async () => {
  const c = await wsc();
  const ids = ['0', 'null', 'false', '""', '[]', '12345678901234567890', '1.50', '-7e3', '{ "a" : [1, 2], "b":{"c":"\\u00e9"} }', '"ünï"'];
  for (const idText of ids) {
    for (const [req, type] of [[`{"type":"ping","id":${idText}}`, 'pong'], [`{"type":"dance","id":${idText}}`, 'error']]) {
      const seen = c.msgs.length;
      c.sendRaw(req);
      await c.waitFor(() => c.msgs.length > seen, 3000, `reply to ${req}`);
      const m = c.msgs[seen];
      assert.equal(m.json.type, type, `${req} -> ${m.raw}`);
      assert.equal(rawMember(m.raw, 'ref'), idText, `ref of ${req}: ${m.raw}`);
    }
  }
  // a request without id gets a reply without ref
  const seen = c.msgs.length;
  c.sendRaw('{"type":"ping","client_time":3}');
  await c.waitFor(() => c.msgs.length > seen, 3000, 'pong');
  assert.equal(rawMember(c.msgs[seen].raw, 'ref'), undefined);
});

test('BAD_JSON for text that is not a JSON object; the connection stays open', async () => {
  const c = await wsc();
  for (const text of ['not json', '{"type":"ping"', '[1,2]', '"str"', '42', '', '{"type":"ping"} x']) {
    const e = await errorFor(c, text, JSON.stringify(text));
    assertErrorShape(e, 'BAD_JSON', undefined, `BAD_JSON for ${JSON.stringify(text)}`);
    await assertAlive(c, `after ${JSON.stringify(text)}`);
  }
});

test('UNSUPPORTED for a binary message; the connection stays open', async () => {
  const c = await wsc();
  const seen = c.msgs.length;
  c.sendRaw(Buffer.from('{"type":"ping"}'), { binary: true });
  await c.waitFor(() => c.msgs.slice(seen).some((m) => m.json?.type === 'error'), 3000, 'UNSUPPORTED');
  assertErrorShape(c.msgs.slice(seen).find((m) => m.json?.type === 'error').json, 'UNSUPPORTED', undefined);
  assert.equal(c.msgs.slice(seen).filter((m) => m.json?.type === 'pong').length, 0, 'binary content is not processed');
  await assertAlive(c);
});

test('TOO_MANY_CHANNELS past --max-channels-per-stream (4); freed by unsubscribe', async () => {
  const c = await wsc(srv, '/ws/tm0');
  await c.waitType('subscribed');
  for (let i = 1; i < 4; i++) await subscribe(c, `tm${i}`);
  const e = await c.request({ type: 'subscribe', channel: 'tm4', id: 'fifth' });
  assertErrorShape(e, 'TOO_MANY_CHANNELS', 'fifth');
  assert.equal(await subscribers(srv, 'tm4'), 0);
  await c.request({ type: 'unsubscribe', channel: 'tm0' });
  await subscribe(c, 'tm4');
});

test('FORBIDDEN: no client publishing without --client-publish', async () => {
  const s = await start([]);
  const c = await wsc(s);
  for (const ch of ['jam:1', 'news']) {
    const e = await c.request({ type: 'publish', channel: ch, data: { n: 1 }, id: ch });
    assertErrorShape(e, 'FORBIDDEN', ch);
  }
  assert.equal((await getJSON(s.url, '/health/channel/jam:1')).json.last_offset, 0, 'nothing was published');
});

test('publish on a jam: channel with --client-publish jam: reaches WS and SSE subscribers byte for byte', async () => {
  const ch = 'jam:room1';
  const pub = await wsc();
  const sub = await wsc(srv, '/ws', { perMessageDeflate: true });
  await subscribe(sub, ch);
  const s = await sse(srv, `/sse/${ch}`);
  await s.waitForCount('connected', 1);
  await waitSubscribers(srv, ch, 2);
  const dataText = '{ "note" : 60,"vel":0.75 , "name":"C4 ♪" }';
  pub.sendRaw(`{"type":"publish","channel":"${ch}","event":"note","data":${dataText},"id":{"seq":1}}`);
  await pub.waitType('published');
  const r = pub.of('published')[0].json;
  assert.equal(r.channel, ch);
  assert.equal(typeof r.epoch, 'string');
  assert.equal(r.offset, 1);
  assert.equal(r.id, `${r.epoch}:1`);
  assert.deepEqual(r.ref, { seq: 1 });
  await sub.waitType('message');
  const m = sub.of('message')[0];
  assert.equal(m.json.id, r.id);
  assert.equal(m.json.event, 'note');
  assert.equal(m.json.channel, ch);
  assert.equal(rawMember(m.raw, 'data'), dataText);
  await s.waitForCount('note', 1);
  assert.equal(s.of('note')[0].id, r.id);
  assert.equal(s.of('note')[0].data, dataText);
  // HTTP and WebSocket publications share the channel's offsets
  const h = await publish(srv.url, ch, { via: 'http' });
  assert.equal(h.offset, 2);
  assert.equal(h.epoch, r.epoch);
});

test('RATE_LIMITED: --ws-rate 5 --ws-burst 5, 50 quick pings: some pongs, then errors; the connection stays open', async () => {
  const s = await start(['--ws-rate', '5', '--ws-burst', '5']);
  const c = await wsc(s);
  const lim = c.msgs[0].json.server_info.limits;
  assert.equal(lim.rate_per_second, 5);
  assert.equal(lim.rate_burst, 5);
  const t0 = Date.now();
  for (let i = 0; i < 50; i++) c.send({ type: 'ping', client_time: i, id: i });
  const replies = () => c.msgs.filter((m) => m.json && (m.json.type === 'pong' || m.json.type === 'error'));
  await c.waitFor(() => replies().length >= 50, 5000, `50 replies (have ${replies().length})`);
  const elapsed = (Date.now() - t0) / 1000;
  const pongs = c.of('pong').map((m) => m.json);
  const errors = c.of('error').map((m) => m.json);
  assert.ok(pongs.length >= 5, `at least the burst is served: ${pongs.length} pongs`);
  assert.ok(pongs.length <= 5 + Math.ceil(elapsed * 5) + 1, `${pongs.length} pongs in ${elapsed} s is over the rate`);
  assert.deepEqual(pongs.slice(0, 5).map((p) => p.ref), [0, 1, 2, 3, 4], 'the first five are served');
  for (const p of pongs) assert.equal(p.client_time, p.ref);
  assert.equal(pongs.length + errors.length, 50);
  for (const e of errors) assertErrorShape(e, 'RATE_LIMITED', e.ref);
  assert.deepEqual([...pongs.map((p) => p.ref), ...errors.map((e) => e.ref)].sort((a, b) => a - b), range(0, 49), 'one answer per request');
  // tokens come back: poll until a ping is served again
  let served = false;
  await waitFor(async () => {
    const r = await c.request({ type: 'ping', client_time: 1 });
    served = r.type === 'pong';
    return served;
  }, 4000, 'a pong after the rate refills');
  assert.equal(c.closeInfo, undefined);
});

test('ping -> pong: client_time echoed as sent, server_time, ref', async () => {
  const c = await wsc();
  const seen = c.msgs.length;
  c.sendRaw('{"type":"ping","client_time":1763800000000.5,"id":"p1"}');
  await c.waitFor(() => c.msgs.length > seen, 3000, 'pong');
  const m = c.msgs[seen];
  assert.equal(m.json.type, 'pong');
  assert.equal(rawMember(m.raw, 'client_time'), '1763800000000.5', 'echoed as sent');
  assert.equal(m.json.ref, 'p1');
  assert.equal(typeof m.json.server_time, 'number');
  assert.ok(Math.abs(m.json.server_time - Date.now()) < 60000);
  const n = await c.request({ type: 'ping', client_time: 'opaque-token' });
  assert.equal(n.client_time, 'opaque-token');
});

test('get_stats -> stats with server and connection figures that move', async () => {
  const c = await wsc();
  const s1 = await c.request({ type: 'get_stats', id: 'st1' });
  assert.equal(s1.type, 'stats');
  assert.equal(s1.ref, 'st1');
  const sv = s1.server;
  const cn = s1.connection;
  assert.ok(sv && cn, JSON.stringify(s1));
  const num = (o, re, what) => {
    const k = Object.keys(o).find((x) => re.test(x));
    assert.ok(k !== undefined, `${what}: a field matching ${re} in ${JSON.stringify(o)}`);
    assert.equal(typeof o[k], 'number', `${what}.${k} is a number`);
    return o[k];
  };
  const fig = (st) => ({
    uptime: num(st.server, /uptime/, 'server'),
    connections: num(st.server, /^connections/, 'server'),
    channels: num(st.server, /^channels/, 'server'),
    subscriptions: num(st.server, /^subscriptions/, 'server'),
    published: num(st.server, /published/, 'server'),
    delivered: num(st.server, /delivered/, 'server'),
    age: num(st.connection, /age/, 'connection'),
    csubs: num(st.connection, /^subscriptions/, 'connection'),
    min: num(st.connection, /messages_in|msgs_in|^in_messages/, 'connection'),
    mout: num(st.connection, /messages_out|msgs_out|^out_messages/, 'connection'),
    bin: num(st.connection, /bytes_in|^in_bytes/, 'connection'),
    bout: num(st.connection, /bytes_out|^out_bytes/, 'connection'),
  });
  const idKey = Object.keys(cn).find((k) => /id$/.test(k));
  assert.equal(cn[idKey], c.msgs[0].json.connection_id, 'the stats name this connection');
  const f1 = fig(s1);
  await subscribe(c, 'stats-ch');
  for (let i = 0; i < 3; i++) await c.request({ type: 'ping', client_time: i });
  await publish(srv.url, 'stats-ch', { x: 'y'.repeat(100) });
  await c.waitType('message');
  const f2 = fig(await c.request({ type: 'get_stats' }));
  assert.ok(f2.min >= f1.min + 5, `messages in ${f1.min} -> ${f2.min}`);
  assert.ok(f2.mout >= f1.mout + 5, `messages out ${f1.mout} -> ${f2.mout}`);
  assert.ok(f2.bin > f1.bin, `bytes in ${f1.bin} -> ${f2.bin}`);
  assert.ok(f2.bout > f1.bout + 100, `bytes out ${f1.bout} -> ${f2.bout}`);
  assert.equal(f2.csubs, f1.csubs + 1);
  assert.ok(f2.subscriptions >= f1.subscriptions + 1);
  assert.ok(f2.published >= f1.published + 1);
  assert.ok(f2.delivered >= f1.delivered + 1);
  assert.ok(f2.connections >= 1);
  assert.ok(f2.channels >= 1);
  assert.ok(f2.age >= f1.age && f2.uptime >= f1.uptime);
});

// ---- permessage-deflate -------------------------------------------------------

test('permessage-deflate with the ws client: negotiated, large messages arrive intact', async () => {
  const c = await wsc(srv, '/ws', { perMessageDeflate: true });
  assert.equal(c.ws.extensions, 'permessage-deflate');
  const answered = c.upgradeHeaders['sec-websocket-extensions'] || '';
  assert.match(answered, /^permessage-deflate\b/);
  assert.match(answered, /server_no_context_takeover/);
  // the ws client offers "permessage-deflate; client_max_window_bits"; PROTOCOL.md: client_no_context_takeover only when offered
  assert.doesNotMatch(answered, /client_no_context_takeover/, answered);
  await subscribe(c, 'deflate-big');
  const bodies = [];
  for (let i = 0; i < 3; i++) {
    const body = JSON.stringify({ i, notes: Array.from({ length: 250 }, (_, k) => ({ n: (k * 7 + i) % 128, t: k / 8 })) });
    assert.ok(body.length > 4000 && body.length < 8192, `body of ${body.length} bytes`);
    bodies.push(body);
    await publishRaw(srv.url, 'deflate-big', body);
  }
  await c.waitType('message', 3);
  assert.deepEqual(c.of('message').map((m) => rawMember(m.raw, 'data')), bodies);
});

async function deflateRaw(s, ext) {
  const c = await rawc(s, { headers: { 'Sec-WebSocket-Extensions': ext } });
  assert.equal(c.status, 101, c.body);
  await c.waitJSON('welcome');
  return c;
}

test('permessage-deflate on the wire: RSV1 above --ws-deflate-threshold only, each message stands alone, answer headers', async () => {
  const c = await deflateRaw(srv, 'permessage-deflate');
  assert.ok(c.deflate, `negotiated: ${c.extensions}`);
  const params = c.extensions.split(';').map((x) => x.trim());
  assert.equal(params[0], 'permessage-deflate');
  assert.ok(params.includes('server_no_context_takeover'), c.extensions);
  assert.ok(!params.includes('client_no_context_takeover'), `not offered, not answered: ${c.extensions}`);
  assert.equal(c.messages[0].json.server_info.permessage_deflate, true);

  c.sendJSON({ type: 'subscribe', channel: 'rsv', id: 1 });
  await c.waitJSON('subscribed');
  await waitSubscribers(srv, 'rsv', 1);
  const small = JSON.stringify({ s: 'a'.repeat(300) }); // message ~370 bytes: under the 512 threshold
  const large = JSON.stringify({ s: 'b'.repeat(900) }); // over it
  await publishRaw(srv.url, 'rsv', small);
  await publishRaw(srv.url, 'rsv', large);
  await publishRaw(srv.url, 'rsv', large);
  await publishRaw(srv.url, 'rsv', large);
  await c.waitFor(() => c.messages.filter((m) => m.json?.type === 'message').length >= 4, 3000, '4 messages');
  const ms = c.messages.filter((m) => m.json?.type === 'message');
  assert.ok(ms[0].payload.length < 512, `small message is ${ms[0].payload.length} bytes`);
  assert.equal(ms[0].compressed, false, 'a message under the threshold is sent uncompressed');
  for (const m of ms.slice(1)) {
    assert.equal(m.compressed, true, 'a message over the threshold has RSV1');
    assert.equal(rawMember(m.text, 'data'), large, 'and inflates on its own to the right text');
  }
  assert.deepEqual(c.errors, [], 'every compressed message inflated without the previous ones (no context takeover)');
  const frame = c.frames.find((f) => f.rsv1);
  assert.ok(frame.payload.length < 900, `compressed frame is smaller (${frame.payload.length} bytes)`);
});

test('permessage-deflate offers: client_no_context_takeover answered, server_max_window_bits < 15 declined, 15 accepted', async () => {
  const a = await deflateRaw(srv, 'permessage-deflate; client_no_context_takeover');
  assert.match(a.extensions, /client_no_context_takeover/);
  assert.match(a.extensions, /server_no_context_takeover/);

  const b = await deflateRaw(srv, 'permessage-deflate; server_max_window_bits=10');
  assert.equal(b.extensions, '', `declined: got ${JSON.stringify(b.extensions)}`);
  assert.equal(b.messages[0].json.server_info.permessage_deflate, false);
  b.sendJSON({ type: 'ping', client_time: 5 });
  const p = await b.waitJSON('pong');
  assert.equal(p.compressed, false);

  const d = await deflateRaw(srv, 'permessage-deflate; server_max_window_bits=15');
  assert.ok(d.deflate, `server_max_window_bits=15 accepted: ${JSON.stringify(d.extensions)}`);

  // a list of offers: the first acceptable one wins
  const e = await deflateRaw(srv, 'permessage-deflate; server_max_window_bits=9, permessage-deflate');
  assert.ok(e.deflate, `second offer accepted: ${JSON.stringify(e.extensions)}`);
  assert.doesNotMatch(e.extensions, /server_max_window_bits=9/);
});

test('with context takeover, a compressed message may end the deflate stream (BFINAL) and the next ones still inflate', async () => {
  const c = await deflateRaw(srv, 'permessage-deflate');
  // deflateRawSync with the default flush ends each message with a final block (RFC 7692 7.2.3.4)
  for (let i = 0; i < 3; i++) {
    const z = zlib.deflateRawSync(Buffer.from(`{"type":"ping","client_time":${900 + i}}`));
    c.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, payload: z }));
    await c.waitMessage((m) => m.json?.type === 'pong' && m.json.client_time === 900 + i, 3000, `pong ${i}`);
  }
  // and a message that refers back to the previous one's text (window carried over)
  const dict = zlib.deflateRawSync(Buffer.from('{"type":"ping","client_time":903}'), {
    dictionary: Buffer.from('{"type":"ping","client_time":902}'),
  });
  c.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, payload: dict }));
  await c.waitMessage((m) => m.json?.type === 'pong' && m.json.client_time === 903, 3000, 'pong to a message using the window');
  c.sock.destroy();
});

test('keys and type written with JSON escapes mean the same', async () => {
  const w = await wsc(srv, '/ws');
  w.sendRaw('{"\\u0074ype":"\\u0070ing","\\u0069d":41,"client_time":5}');
  await w.waitFor((c) => c.msgs.some((m) => m.json?.type === 'pong' && m.json.ref === 41), 3000, 'a pong with ref 41');
});

test('compressed client messages are accepted (single frame and fragmented); errors in compression close the connection', async () => {
  const c = await deflateRaw(srv, 'permessage-deflate; client_no_context_takeover');
  c.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, payload: deflateMessage('{"type":"ping","client_time":777}') }));
  assert.equal((await c.waitMessage((m) => m.json?.type === 'pong' && m.json.client_time === 777)).json.client_time, 777);
  const z = deflateMessage(`{"type":"ping","client_time":778,"pad":"${'q'.repeat(3000)}"}`);
  const half = z.length >> 1;
  c.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, fin: false, payload: z.subarray(0, half) }));
  c.write(encodeFrame({ opcode: OP.CONT, payload: z.subarray(half) }));
  await c.waitMessage((m) => m.json?.type === 'pong' && m.json.client_time === 778, 3000, 'pong to a fragmented compressed ping');
  // the same through the ws package (compresses everything with threshold 0)
  const w = await wsc(srv, '/ws', { perMessageDeflate: { threshold: 0 } });
  const r = await w.request({ type: 'ping', client_time: 779 });
  assert.equal(r.client_time, 779);

  // RSV1 on a continuation frame
  const d = await deflateRaw(srv, 'permessage-deflate');
  d.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, fin: false, payload: z.subarray(0, half) }));
  d.write(encodeFrame({ opcode: OP.CONT, rsv1: true, payload: z.subarray(half) }));
  assert.equal((await d.expectClose()).code, 1002, 'RSV1 on a continuation frame');
  // RSV1 on a control frame
  const e = await deflateRaw(srv, 'permessage-deflate');
  e.write(encodeFrame({ opcode: OP.PING, rsv1: true, payload: 'x' }));
  assert.equal((await e.expectClose()).code, 1002, 'RSV1 on a ping');
  // inflates past --ws-max-message (65536): 1009
  const f = await deflateRaw(srv, 'permessage-deflate');
  const bomb = deflateMessage(`{"type":"ping","pad":"${'0'.repeat(200000)}"}`);
  assert.ok(bomb.length < 65536);
  f.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, payload: bomb }));
  assert.equal((await f.expectClose()).code, 1009, `a ${bomb.length}-byte message that inflates to 200 KB`);
  // invalid UTF-8 after inflating: 1007
  const g = await deflateRaw(srv, 'permessage-deflate');
  g.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, payload: deflateMessage(Buffer.from([0x7b, 0xff, 0x7d])) }));
  assert.equal((await g.expectClose()).code, 1007);
});

test('--ws-deflate 0: offers are declined, RSV1 from the client is a protocol error', async () => {
  const s = await start(['--ws-deflate', '0']);
  const w = await wsc(s, '/ws', { perMessageDeflate: true });
  assert.equal(w.ws.extensions, '');
  assert.equal(w.msgs[0].json.server_info.permessage_deflate, false);
  await subscribe(w, 'nd');
  const body = JSON.stringify({ s: 'c'.repeat(2000) });
  await publishRaw(s.url, 'nd', body);
  await w.waitType('message');
  assert.equal(rawMember(w.of('message')[0].raw, 'data'), body);
  const c = await deflateRaw(s, 'permessage-deflate');
  assert.equal(c.extensions, '');
  c.write(encodeFrame({ opcode: OP.TEXT, rsv1: true, payload: deflateMessage('{"type":"ping"}') }));
  assert.equal((await c.expectClose()).code, 1002);
});

// ---- fan-out ------------------------------------------------------------------

test('1000 WebSocket subscribers (--workers 2) each receive all 200 messages in order', { timeout: 50000 }, async () => {
  const s = await start(['--workers', '2', '--ws-ping-interval', '60']);
  const N = 1000;
  const M = 200;
  const expected = (i) => `{"i":${i},"text":"message number ${i}"}`;
  const subs = [];
  for (let batch = 0; batch < N / 100; batch++) {
    const opened = await Promise.all(Array.from({ length: 100 }, async () => {
      const st = { next: 1, count: 0, errors: [], subscribed: false };
      st.c = await openWS(s.url, '/ws/wsfan', {
        keep: () => false,
        onMessage: (m) => {
          const j = m.json;
          if (!j) { st.errors.push('non-JSON'); return; }
          if (j.type === 'subscribed') { st.subscribed = true; return; }
          if (j.type !== 'message') return;
          st.count++;
          const off = offsetOf(j.id);
          if (off !== st.next) st.errors.push(`expected offset ${st.next}, got ${off}`);
          else if (rawMember(m.raw, 'data') !== expected(off)) st.errors.push(`offset ${off}: wrong data`);
          st.next = off + 1;
        },
      });
      clients.push(st.c);
      return st;
    }));
    subs.push(...opened);
  }
  await waitFor(() => subs.every((st) => st.subscribed), 15000, 'every client subscribed');
  await waitFor(async () => (await subscribers(s, 'wsfan')) === N, 10000, `${N} subscribers`);
  for (let i = 1; i <= M; i++) {
    const r = await publishRaw(s.url, 'wsfan', expected(i));
    assert.equal(r.offset, i);
  }
  await waitFor(() => subs.every((st) => st.count >= M || st.errors.length), 30000,
    `all clients to get ${M} messages`);
  const bad = subs.filter((st) => st.errors.length || st.count !== M);
  assert.equal(bad.length, 0, `clients with problems: ${bad.length}; first: ${JSON.stringify(bad[0] && { count: bad[0].count, errors: bad[0].errors.slice(0, 3) })}`);
  assert.ok(subs.every((st) => st.c.closeInfo === undefined), 'nobody was disconnected');
  for (const st of subs) st.c.terminate();
  await waitFor(async () => (await subscribers(s, 'wsfan')) === 0, 10000, 'subscribers back to 0');
});

test('deflate and plain subscribers on --workers 2 share messages of mixed sizes, all intact and in order', { timeout: 30000 }, async () => {
  const s = await start(['--workers', '2']);
  const subs = [];
  for (let k = 0; k < 60; k++) {
    const st = { got: [] };
    st.c = await openWS(s.url, '/ws/mixed', {
      perMessageDeflate: k % 2 === 0,
      keep: (m) => m.json?.type !== 'message',
      onMessage: (m) => { if (m.json?.type === 'message') st.got.push([offsetOf(m.json.id), rawMember(m.raw, 'data')]); },
    });
    clients.push(st.c);
    subs.push(st);
  }
  await waitFor(async () => (await subscribers(s, 'mixed')) === 60, 10000, '60 subscribers');
  assert.equal(subs.filter((st) => /permessage-deflate/.test(st.c.ws.extensions)).length, 30);
  const bodies = [];
  for (let i = 1; i <= 40; i++) {
    const size = [10, 300, 5000, 20000, 100][i % 5];
    const body = JSON.stringify({ i, s: Array.from({ length: size }, (_, k) => String.fromCharCode(97 + ((k * i) % 26))).join('') });
    bodies.push(body);
    await publishRaw(s.url, 'mixed', body);
  }
  await waitFor(() => subs.every((st) => st.got.length >= 40), 15000, 'every subscriber to get 40 messages');
  for (const st of subs) {
    assert.deepEqual(st.got.map(([o]) => o), range(1, 40));
    assert.ok(st.got.every(([o, d]) => d === bodies[o - 1]), 'data intact');
  }
});

test('slow consumer: a WebSocket client that stops reading is dropped at --max-queue with close 1008 SLOW_CONSUMER', { timeout: 50000 }, async () => {
  const s = await start(['--max-queue', '65536']);
  const big = (i) => `"${i}:${'x'.repeat(60000)}"`;
  const slow = await rawc(s, {});
  await slow.waitJSON('welcome');
  slow.sendJSON({ type: 'subscribe', channel: 'slowws', id: 1 });
  await slow.waitJSON('subscribed');
  slow.sock.pause();

  const normal = { count: 0, errors: [] };
  normal.c = await wsc(s, '/ws', {
    keep: (m) => m.json?.type !== 'message',
    onMessage: (m) => {
      if (m.json?.type !== 'message') return;
      normal.count++;
      if (rawMember(m.raw, 'data') !== big(offsetOf(m.json.id))) normal.errors.push(`bad data at ${m.json.id}`);
    },
  });
  await subscribe(normal.c, 'slowws');
  await waitSubscribers(s, 'slowws', 2);

  // paced on the normal subscriber, which is never more than one message behind
  let published = 0;
  let dropped = 0;
  while (published < 400) {
    await publishRaw(s.url, 'slowws', big(published + 1));
    published++;
    await waitFor(() => normal.count >= published || normal.c.closeInfo, 5000, `normal subscriber to get message ${published}`);
    assert.equal(normal.c.closeInfo, undefined, `normal subscriber dropped at ${published}`);
    dropped = (await getJSON(s.url, '/health')).json.slow_consumers_dropped;
    if (dropped >= 1) break;
  }
  slow.sock.resume();
  assert.ok(dropped >= 1, `slow_consumers_dropped >= 1 after ${published} messages of 60 KB`);
  await waitSubscribers(s, 'slowws', 1);
  for (let k = 0; k < 3; k++) { // paced as well: two unread 60 KB messages would be over max_queue
    await publishRaw(s.url, 'slowws', big(published + 1));
    published++;
    await waitFor(() => normal.count >= published || normal.c.closeInfo, 10000, `normal subscriber: ${published} messages`);
  }
  assert.deepEqual(normal.errors, []);
  assert.equal(normal.c.closeInfo, undefined, 'normal subscriber still connected');
  assert.equal(normal.count, published);
  assert.equal((await getJSON(s.url, '/health')).json.slow_consumers_dropped, 1);
  assert.ok(await slow.waitClosed(10000), 'server closed the slow consumer');
  assert.ok(slow.closeFrame, `the slow consumer got a close frame; last frames ${describeFrames(slow.frames.slice(-2))}`);
  assert.equal(slow.closeFrame.code, 1008);
  assert.equal(slow.closeFrame.reason, 'SLOW_CONSUMER');
  assert.equal(slow.frames[slow.frames.length - 1].opcode, OP.CLOSE, 'close is the last frame');
  const got = slow.messages.filter((m) => m.json?.type === 'message').map((m) => offsetOf(m.json.id));
  assert.deepEqual(got, range(1, got.length), 'what the slow consumer got before the close is a prefix, in order');
  assert.deepEqual(slow.errors, []);
});

// ---- shutdown -----------------------------------------------------------------

test('SIGTERM: WebSocket clients receive close 1001 and the server exits 0', async () => {
  const s = await startTutti([]);
  const a = await wsc(s, '/ws/bye', { perMessageDeflate: false });
  const b = await wsc(s, '/ws', { perMessageDeflate: true });
  await subscribe(b, 'bye2');
  const r = await openRawWS(s.port, {});
  await r.waitJSON('welcome');
  const exit = s.stop();
  const [ca, cb] = await Promise.all([a.closed, b.closed]);
  assert.equal(ca.code, 1001, `ws client without deflate: ${JSON.stringify(ca)}`);
  assert.equal(cb.code, 1001, `ws client with deflate: ${JSON.stringify(cb)}`);
  const cf = await r.expectClose(5000);
  assert.equal(cf.code, 1001, `raw client: ${describeFrames(r.frames)}`);
  assert.equal(await exit, 0);
});
