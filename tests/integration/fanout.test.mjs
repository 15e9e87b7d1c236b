// Fan-out to 1000 concurrent SSE subscribers, and a slow consumer that never reads.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import {
  startTutti, publish, publishRaw, waitFor, openSSE, getJSON, parsePosition, createSSEParser, connectRaw,
} from '../lib/harness.mjs';
import { openWS } from '../lib/ws.mjs';

// ---- helpers ---------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const servers = [];

async function start(args) {
  const s = await startTutti(args);
  servers.push(s);
  return s;
}

async function subscribers(url, channel) {
  return (await getJSON(url, `/health/channel/${channel}`)).json.subscribers;
}

// A subscriber that checks message order and data as they arrive instead of storing them.
// expected(offset) gives the data that offset must carry.
async function checkingSubscriber(url, path, expected) {
  const st = { next: 1, errors: [], count: 0 };
  st.client = await openSSE(url, path, {
    agent,
    keepRaw: false,
    keep: (e) => e.type !== 'message',
    onEvent: (e) => {
      if (e.type !== 'message') return;
      st.count++;
      const off = parsePosition(e.id)[0].offset;
      if (off !== st.next) st.errors.push(`expected offset ${st.next}, got ${off}`);
      else if (e.data !== expected(off)) st.errors.push(`offset ${off}: wrong data (${e.data.length} bytes)`);
      st.next = off + 1;
    },
  });
  return st;
}

// Removes chunked transfer coding from a (possibly truncated) body.
function dechunk(buf) {
  const out = [];
  let pos = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) break;
    const size = parseInt(buf.subarray(pos, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(buf.subarray(eol + 2, Math.min(buf.length, eol + 2 + size)));
    pos = eol + 2 + size + 2;
    if (pos > buf.length) break;
  }
  return Buffer.concat(out);
}

after(async () => {
  agent.destroy();
  for (const s of servers) assert.equal(await s.stop(), 0, 'tutti exit code after SIGTERM');
});

// ---- tests -----------------------------------------------------------------

test('1000 subscribers (--workers 2) each receive all 200 messages in order', { timeout: 50000 }, async () => {
  const s = await start(['--workers', '2']);
  const N = 1000;
  const M = 200;
  const expected = (off) => `{"i":${off},"text":"message number ${off}"}`;
  const subs = [];
  for (let batch = 0; batch < N / 100; batch++) {
    const opened = await Promise.all(Array.from({ length: 100 }, () => checkingSubscriber(s.url, '/sse/fan', expected)));
    for (const st of opened) assert.equal(st.client.status, 200);
    await Promise.all(opened.map((st) => st.client.waitForCount('connected', 1, 10000)));
    subs.push(...opened);
  }
  await waitFor(async () => (await subscribers(s.url, 'fan')) === N, 10000, `${N} subscribers`);
  assert.equal((await getJSON(s.url, '/health')).json.connections.sse, N);

  for (let i = 1; i <= M; i++) {
    const a = await publishRaw(s.url, 'fan', expected(i));
    assert.equal(a.offset, i);
  }
  await waitFor(() => subs.every((st) => st.count >= M), 30000,
    `all ${N} subscribers to get ${M} messages (slowest has ${Math.min(...subs.map((st) => st.count))})`);
  const broken = subs.map((st, k) => [k, st]).filter(([, st]) => st.errors.length || st.count !== M);
  assert.deepEqual(broken.slice(0, 5).map(([k, st]) => ({ k, count: st.count, errors: st.errors.slice(0, 3) })), []);

  const h = (await getJSON(s.url, '/health')).json;
  assert.ok(h.messages.delivered >= N * M, `delivered ${h.messages.delivered} >= ${N * M}`);
  assert.equal(h.slow_consumers_dropped, 0);

  for (const st of subs) st.client.close();
  await waitFor(async () => (await subscribers(s.url, 'fan')) === 0, 10000, 'all subscribers gone');
  await waitFor(async () => (await getJSON(s.url, '/health')).json.connections.sse === 0, 5000, 'sse connections 0');
});

test('concurrent publishers on --workers 2: unique consecutive offsets, delivered in offset order', { timeout: 30000 }, async () => {
  const s = await start(['--workers', '2']);
  const subs = [];
  for (let k = 0; k < 4; k++) {
    const c = await openSSE(s.url, '/sse/conc', { agent, keepRaw: false });
    await c.waitForCount('connected', 1);
    subs.push(c);
  }
  await waitFor(async () => (await subscribers(s.url, 'conc')) === 4, 5000, '4 subscribers');
  const M = 300;
  const answers = [];
  let next = 0;
  // 16 publishers at once, each on its own keep-alive connection (fetch pools them)
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < M) {
      const n = next++;
      const a = await publish(s.url, 'conc', { n });
      answers.push({ ...a, n });
    }
  }));
  const byOffset = [...answers].sort((x, y) => x.offset - y.offset);
  assert.deepEqual(byOffset.map((a) => a.offset), Array.from({ length: M }, (_, i) => i + 1), 'offsets 1..M, no gap, no duplicate');
  for (const c of subs) {
    await c.waitFor((cl) => cl.messages().length >= M, 10000, `${M} messages`);
    const ms = c.messages();
    assert.deepEqual(ms.map((m) => m.id), byOffset.map((a) => a.id), 'delivered in offset order');
    assert.deepEqual(ms.map((m) => JSON.parse(m.data).n), byOffset.map((a) => a.n), 'each offset carries its own data');
    c.close();
  }
});

test('slow consumer (never reads) is dropped at --max-queue; a normal subscriber gets everything', { timeout: 50000 }, async (t) => {
  const s = await start(['--max-queue', '65536']);
  const big = (i) => `"${i}:${'x'.repeat(60000)}"`;

  // the slow one: a raw TCP client that sends the request and never reads
  const slow = net.connect({ port: s.port, host: '127.0.0.1' });
  await new Promise((r) => slow.once('connect', r));
  slow.on('error', () => {});
  let slowClosed = false;
  slow.on('close', () => { slowClosed = true; });
  slow.write('GET /sse/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
  slow.pause();

  const normal = await checkingSubscriber(s.url, '/sse/slow', big);
  await normal.client.waitForCount('connected', 1);
  await waitFor(async () => (await subscribers(s.url, 'slow')) === 2, 5000, '2 subscribers');

  // The normal subscriber is paced: the next message goes out once it has the previous one, so
  // it is never more than one 60 KB message behind (a reader two messages behind is over
  // max_queue too, and dropping it would be right).
  let published = 0;
  let dropped = 0;
  while (published < 400) {
    const a = await publishRaw(s.url, 'slow', big(published + 1));
    published++;
    assert.equal(a.offset, published);
    await waitFor(() => normal.count >= published || normal.client.ended, 5000, `normal subscriber to get message ${published}`);
    assert.equal(normal.client.ended, false, `normal subscriber dropped at message ${published}: ${JSON.stringify(normal.client.of('error').map((e) => e.data))}`);
    dropped = (await getJSON(s.url, '/health')).json.slow_consumers_dropped;
    if (dropped >= 1) break;
  }
  // start reading right away: the server may hold the connection only briefly to flush its
  // error frame to a client that never reads
  const chunks = [];
  slow.on('data', (d) => chunks.push(d));
  slow.resume();
  assert.ok(dropped >= 1, `slow_consumers_dropped >= 1 after ${published} messages of 60 KB`);
  for (let k = 0; k < 5; k++) {
    await publishRaw(s.url, 'slow', big(published + 1));
    published++;
    await waitFor(() => normal.count >= published || normal.client.ended, 5000, `normal subscriber to get message ${published}`);
  }

  await waitFor(() => normal.count >= published, 20000, `normal subscriber: ${published} messages (has ${normal.count})`);
  assert.deepEqual(normal.errors, []);
  assert.equal(normal.count, published);
  assert.equal(normal.client.ended, false, 'normal subscriber still connected');
  // the dropped client may linger (bounded, no more frames queued) while its error frame flushes
  await waitFor(async () => (await subscribers(s.url, 'slow')) === 1, 5000, 'the slow consumer to be unsubscribed');
  assert.equal((await getJSON(s.url, '/health')).json.slow_consumers_dropped, 1);

  // the stream must have been closed by the server
  await waitFor(() => slowClosed, 10000, 'server closed the slow consumer connection');

  await t.test('the dropped stream ends with an error event SLOW_CONSUMER', () => {
    const all = Buffer.concat(chunks);
    const headEnd = all.indexOf('\r\n\r\n');
    assert.ok(headEnd > 0, 'response head');
    const head = all.subarray(0, headEnd).toString('latin1');
    assert.match(head, /^HTTP\/1\.1 200/);
    let body = all.subarray(headEnd + 4);
    if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) body = dechunk(body);
    const events = [];
    createSSEParser((b) => { if (b.hasData) events.push(b); }).push(body.toString('utf8') + '\n\n');
    const errs = events.filter((e) => e.type === 'error');
    assert.equal(errs.length, 1, `one error event (got types ${[...new Set(events.map((e) => e.type))]})`);
    assert.equal(JSON.parse(errs[0].data).code, 'SLOW_CONSUMER');
    assert.equal(events[events.length - 1].type, 'error', 'error is the last event');
  });
});

test('a burst of publishes in one write reaches every kind of subscriber whole, once and in order', { timeout: 30000 }, async () => {
  // 200 pipelined publishes in one write land in one loop turn: the server sends them to
  // each subscriber as one block (the concatenation of the messages' frames) where it can.
  const s = await start([]);
  const M = 200;
  const data = (i) => `{"i":${i},"pad":"${'p'.repeat(i % 37)}"}`;
  const ws = await openWS(s.url, '/ws/burst');
  const wsz = await openWS(s.url, '/ws/burst', { perMessageDeflate: true });
  const ws2 = await openWS(s.url, '/ws');
  await ws2.request({ type: 'subscribe', channel: 'burst' });
  await ws2.request({ type: 'subscribe', channel: 'burst-other' });
  const sse = await openSSE(s.url, '/sse/burst', { agent, keepRaw: false });
  const sse2 = await openSSE(s.url, '/sse?channel=burst&channel=burst-other', { agent, keepRaw: false });
  await Promise.all([sse, sse2].map((c) => c.waitForCount('connected', 1)));
  await Promise.all([ws, wsz].map((c) => c.waitType('subscribed')));
  assert.ok(wsz.upgradeHeaders['sec-websocket-extensions'].includes('permessage-deflate'), 'deflate negotiated');
  await waitFor(async () => (await subscribers(s.url, 'burst')) === 5, 5000, '5 subscribers');
  const before = (await getJSON(s.url, '/health')).json.messages.delivered;

  const raw = await connectRaw(s.port);
  let reqs = '';
  for (let i = 1; i <= M; i++) {
    const body = data(i);
    reqs += `POST /api/channels/burst/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n`
      + `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  }
  raw.write(reqs);
  for (let i = 1; i <= M; i++) assert.equal((await raw.readResponse()).status, 200, `publish ${i}`);
  raw.destroy();

  const wsMsgs = (c) => c.msgs.filter((m) => m.json && m.json.type === 'message');
  for (const [name, c] of [['ws', ws], ['ws deflate', wsz], ['ws two channels', ws2]]) {
    await c.waitFor(() => wsMsgs(c).length >= M, 10000, `${name}: ${M} messages`);
    const got = wsMsgs(c);
    assert.equal(got.length, M, `${name}: exactly ${M}`);
    assert.deepEqual(got.map((m) => parsePosition(m.json.id)[0].offset), Array.from({ length: M }, (_, k) => k + 1), `${name}: offsets 1..${M} in order`);
    got.forEach((m, k) => assert.equal(JSON.stringify(m.json.data), data(k + 1), `${name}: data of ${k + 1}`));
    assert.deepEqual(c.errors, [], `${name}: every frame was JSON`);
  }
  for (const [name, c] of [['sse', sse], ['sse two channels', sse2]]) {
    await c.waitFor(() => c.messages().length >= M, 10000, `${name}: ${M} messages`);
    const got = c.messages();
    assert.equal(got.length, M, `${name}: exactly ${M}`);
    got.forEach((e, k) => assert.equal(e.data, data(k + 1), `${name}: data of ${k + 1}`));
    // a multi-channel stream's id is the position on each of its channels, in order
    const offsets = got.map((e) => parsePosition(e.id)[0].offset);
    assert.deepEqual(offsets, Array.from({ length: M }, (_, k) => k + 1), `${name}: ids advance one by one`);
  }
  const h = (await getJSON(s.url, '/health')).json;
  assert.equal(h.messages.delivered - before, 5 * M, 'delivered counts every message to every subscriber');
  for (const c of [ws, wsz, ws2]) c.close();
  for (const c of [sse, sse2]) c.close();
});
