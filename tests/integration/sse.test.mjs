// SSE wire format, routes, heartbeats, health and graceful shutdown, checked over raw
// node:http (not EventSource) so that the exact bytes on the wire are visible.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startTutti, publish, publishRaw, waitFor, openSSE, getJSON, parsePosition, sseAgent,
} from '../lib/harness.mjs';

// ---- helpers ---------------------------------------------------------------

const POSITION = /^[^\s:,]+:\d+$/; // one channel's epoch:offset

// The raw lines of the first block that has the given id.
function blockWithId(client, id) {
  return client.blocks.find((b) => b.id === id);
}

function connectedData(client) {
  const c = client.of('connected')[0];
  assert.ok(c, 'a connected event');
  return { block: c, data: JSON.parse(c.data) };
}

async function subscribers(url, channel) {
  const r = await getJSON(url, `/health/channel/${channel}`);
  assert.equal(r.status, 200);
  return r.json.subscribers;
}

// Waits until the server counts `n` subscribers on the channel (the subscription is live).
async function waitSubscribers(url, channel, n) {
  await waitFor(async () => (await subscribers(url, channel)) === n, 5000, `${n} subscribers on ${channel}`);
}

// ---- servers ---------------------------------------------------------------

let srv; // default settings
const opened = [];
async function sse(path, opts) {
  const c = await openSSE(srv.url, path, opts);
  opened.push(c);
  return c;
}

before(async () => { srv = await startTutti(); });
after(async () => {
  for (const c of opened) c.close();
  sseAgent.destroy();
  const code = await srv.stop();
  assert.equal(code, 0, 'tutti exit code after SIGTERM');
});

// ---- tests -----------------------------------------------------------------

test('SSE response head and preamble: headers, retry line, connected event', async () => {
  const c = await sse('/sse/wire1');
  assert.equal(c.status, 200);
  assert.match(c.headers['content-type'], /^text\/event-stream(\s*;\s*charset=utf-8)?$/i);
  assert.equal(c.headers['cache-control'], 'no-cache');
  assert.equal(c.headers['connection'], 'keep-alive');
  assert.equal(c.headers['x-accel-buffering'], 'no');

  await c.waitForCount('connected', 1);
  assert.match(c.raw, /^retry: 2000\r?\n/, 'stream starts with the retry hint (default 2000 ms)');
  // the first event (block with data) is `connected`
  assert.equal(c.events[0].type, 'connected');
  const { block, data } = connectedData(c);
  assert.match(block.id, POSITION, 'connected has an epoch:offset id');
  assert.equal(parsePosition(block.id)[0].offset, 0, 'fresh channel: position before the first message is offset 0');
  assert.equal(typeof data.client_id, 'string');
  assert.ok(data.client_id.length > 0);
  assert.deepEqual(data.channels, ['wire1']);
  assert.equal(typeof data.server_time, 'number');
  assert.ok(Math.abs(data.server_time - Date.now()) < 60000, `server_time ${data.server_time} is ms since epoch`);
  assert.equal('recovered' in data, false, 'recovered only present when recovery was asked');
});

test('two streams get distinct client ids', async () => {
  const a = await sse('/sse/ids');
  const b = await sse('/sse/ids');
  await a.waitForCount('connected', 1);
  await b.waitForCount('connected', 1);
  assert.notEqual(JSON.parse(a.of('connected')[0].data).client_id, JSON.parse(b.of('connected')[0].data).client_id);
});

test('published bytes arrive unchanged with id epoch:offset and the event name', async () => {
  const c = await sse('/sse/wire2');
  await c.waitForCount('connected', 1);
  await waitSubscribers(srv.url, 'wire2', 1);
  const epoch = parsePosition(c.of('connected')[0].id)[0].epoch;

  // whole body = data, odd spacing must survive byte for byte
  const body = '{ "a" :1,"b":[1, 2] }';
  const res = await fetch(`${srv.url}/api/channels/wire2/publish?event=note`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body,
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  const ans = await res.json();
  assert.deepEqual(ans, { channel: 'wire2', epoch, offset: 1, id: `${epoch}:1` });

  await c.waitForCount('note', 1);
  const b = blockWithId(c, `${epoch}:1`);
  assert.ok(b, 'a block with id epoch:1');
  assert.ok(b.lines.includes(`id: ${epoch}:1`), `raw id line; block was ${JSON.stringify(b.lines)}`);
  assert.ok(b.lines.includes('event: note'), `raw event line; block was ${JSON.stringify(b.lines)}`);
  assert.ok(b.lines.includes('data: { "a" :1,"b":[1, 2] }'), `raw data line; block was ${JSON.stringify(b.lines)}`);
  assert.equal(b.dataLines.length, 1);

  // POST /api/publish: data is the value's bytes, from its first to its last byte
  const res2 = await fetch(`${srv.url}/api/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: '{"channel":"wire2","data":  { "x" : [ 1 ,2 ] , "s":"a\\u0041 b"}  }',
  });
  assert.equal(res2.status, 200);
  const ans2 = await res2.json();
  assert.equal(ans2.offset, 2);
  await c.waitFor((cl) => cl.messages().length >= 2);
  const m2 = c.messages()[1];
  assert.equal(m2.id, `${epoch}:2`);
  assert.equal(m2.type, 'message', 'default event name is message');
  assert.equal(m2.data, '{ "x" : [ 1 ,2 ] , "s":"a\\u0041 b"}');
  assert.ok(m2.lines.includes('data: { "x" : [ 1 ,2 ] , "s":"a\\u0041 b"}'));

  // scalar data and unicode
  await publish(srv.url, 'wire2', 'héllo ✓');
  await publishRaw(srv.url, 'wire2', '42');
  await c.waitFor((cl) => cl.messages().length >= 4);
  assert.equal(c.messages()[2].data, '"héllo ✓"');
  assert.equal(c.messages()[3].data, '42');
});

test('multi-line data is split into one data: line per line (\\n, \\r\\n and \\r)', async () => {
  const c = await sse('/sse/pretty');
  await c.waitForCount('connected', 1);
  await waitSubscribers(srv.url, 'pretty', 1);

  const pretty = JSON.stringify({ a: 1, b: [2, 3], c: { d: 'x' } }, null, 2);
  await publishRaw(srv.url, 'pretty', pretty);
  await publishRaw(srv.url, 'pretty', '{\r\n  "crlf": true\r\n}');
  await publishRaw(srv.url, 'pretty', '[\r1,\r2\r]');
  await c.waitFor((cl) => cl.messages().length >= 3);
  const [m1, m2, m3] = c.messages();

  assert.deepEqual(m1.dataLines, pretty.split('\n'));
  assert.ok(m1.dataLines.length > 5);
  assert.equal(m1.data, pretty, 'EventSource-style join gives back the published text');
  for (const l of pretty.split('\n')) assert.ok(m1.lines.includes(`data: ${l}`), `raw line "data: ${l}"`);

  assert.deepEqual(m2.dataLines, ['{', '  "crlf": true', '}']);
  assert.deepEqual(m3.dataLines, ['[', '1,', '2', ']']);
  // no stray field lines: every line of a message block is id/event/data
  for (const m of [m1, m2, m3]) {
    for (const l of m.lines) assert.match(l, /^(id|event|data): /, `unexpected line ${JSON.stringify(l)}`);
  }
});

test('/stream/{channel} is an alias of /sse/{channel}', async () => {
  const c = await sse('/stream/alias1');
  assert.equal(c.status, 200);
  assert.match(c.headers['content-type'], /^text\/event-stream/);
  await c.waitForCount('connected', 1);
  assert.deepEqual(JSON.parse(c.of('connected')[0].data).channels, ['alias1']);
  await waitSubscribers(srv.url, 'alias1', 1);
  const ans = await publish(srv.url, 'alias1', { via: 'stream' }, { event: 'ping' });
  await c.waitForCount('ping', 1);
  assert.equal(c.of('ping')[0].id, ans.id);
  assert.equal(c.of('ping')[0].data, '{"via":"stream"}');
});

test('channel with a slash in the path: /sse/repo:owner/name (plain and percent-encoded)', async () => {
  const c = await sse('/sse/repo:owner/name');
  assert.equal(c.status, 200);
  await c.waitForCount('connected', 1);
  assert.deepEqual(JSON.parse(c.of('connected')[0].data).channels, ['repo:owner/name']);
  await waitSubscribers(srv.url, 'repo:owner/name', 1);
  const ans = await publish(srv.url, 'repo:owner/name', { push: 1 });
  assert.equal(ans.channel, 'repo:owner/name');
  await c.waitFor((cl) => cl.messages().length >= 1);
  assert.equal(c.messages()[0].id, ans.id);

  const e = await sse('/sse/repo%3Aowner%2Fother');
  assert.equal(e.status, 200);
  await e.waitForCount('connected', 1);
  assert.deepEqual(JSON.parse(e.of('connected')[0].data).channels, ['repo:owner/other']);
  await waitSubscribers(srv.url, 'repo:owner/other', 1);
  const ans2 = await publish(srv.url, 'repo:owner/other', 7);
  await e.waitFor((cl) => cl.messages().length >= 1);
  assert.equal(e.messages()[0].id, ans2.id);
  assert.equal(e.messages()[0].data, '7');

  // POST /api/channels/{channel}/publish with a slash in the channel
  const ans3 = await publishRaw(srv.url, 'repo:owner/name', '{"via":"path"}', { event: 'push' });
  assert.equal(ans3.channel, 'repo:owner/name');
  assert.equal(ans3.offset, 2);
  await c.waitForCount('push', 1);
  assert.equal(c.of('push')[0].data, '{"via":"path"}');
});

test('multi-channel stream /sse?channel=a&channel=b: both channels, comma-joined positions', async () => {
  const c = await sse('/sse?channel=mA&channel=mB');
  assert.equal(c.status, 200);
  await c.waitForCount('connected', 1);
  const { block, data } = connectedData(c);
  assert.deepEqual(data.channels, ['mA', 'mB']);
  const start = parsePosition(block.id);
  assert.equal(start.length, 2, `connected id ${block.id} has one position per channel`);
  assert.deepEqual(start.map((p) => p.offset), [0, 0]);
  await waitSubscribers(srv.url, 'mA', 1);
  await waitSubscribers(srv.url, 'mB', 1);

  const a1 = await publish(srv.url, 'mA', { n: 'a1' });
  const b1 = await publish(srv.url, 'mB', { n: 'b1' }, { event: 'bee' });
  const a2 = await publish(srv.url, 'mA', { n: 'a2' });
  assert.equal(a1.epoch, start[0].epoch, 'publish epoch equals the epoch in the stream position');
  assert.equal(b1.epoch, start[1].epoch);
  await c.waitFor((cl) => cl.messages().length >= 3);
  const ms = c.messages();
  assert.deepEqual(ms.map((m) => m.id), [
    `${a1.epoch}:1,${b1.epoch}:0`,
    `${a1.epoch}:1,${b1.epoch}:1`,
    `${a1.epoch}:2,${b1.epoch}:1`,
  ]);
  assert.deepEqual(ms.map((m) => m.type), ['message', 'bee', 'message']);
  assert.deepEqual(ms.map((m) => m.data), ['{"n":"a1"}', '{"n":"b1"}', '{"n":"a2"}']);
  assert.equal(a2.offset, 2);
});

test('offsets increase by one per publish; the answer has channel, epoch, offset, id', async () => {
  const c = await sse('/sse/seq');
  await c.waitForCount('connected', 1);
  await waitSubscribers(srv.url, 'seq', 1);
  const answers = [];
  for (let i = 0; i < 10; i++) answers.push(await publish(srv.url, 'seq', { i }));
  const epoch = answers[0].epoch;
  assert.match(epoch, /^[^\s:,]+$/);
  answers.forEach((a, i) => {
    assert.deepEqual(Object.keys(a).sort(), ['channel', 'epoch', 'id', 'offset']);
    assert.equal(a.channel, 'seq');
    assert.equal(a.epoch, epoch);
    assert.equal(a.offset, i + 1);
    assert.equal(a.id, `${epoch}:${i + 1}`);
  });
  await c.waitFor((cl) => cl.messages().length >= 10);
  assert.deepEqual(c.messages().map((m) => m.id), answers.map((a) => a.id));
  assert.deepEqual(c.messages().map((m) => JSON.parse(m.data).i), [...Array(10).keys()]);

  const h = await getJSON(srv.url, '/health/channel/seq');
  assert.equal(h.json.last_offset, 10);
  assert.equal(h.json.epoch, epoch);
  assert.equal(h.json.history_size, 10);
  assert.equal(h.json.exists, true);
});

test('closing a client brings /health/channel subscribers back to 0 quickly', async () => {
  assert.equal(await subscribers(srv.url, 'gone'), 0);
  const a = await sse('/sse/gone');
  const b = await sse('/sse?channel=gone&channel=gone2');
  await a.waitForCount('connected', 1);
  await b.waitForCount('connected', 1);
  await waitSubscribers(srv.url, 'gone', 2);
  a.close();
  await waitSubscribers(srv.url, 'gone', 1);
  b.close();
  await waitFor(async () => (await subscribers(srv.url, 'gone')) === 0 && (await subscribers(srv.url, 'gone2')) === 0,
    2000, 'subscribers back to 0 within 2 s');
});

test('/health, /health/channel and /health/repo fields', async () => {
  const h = await getJSON(srv.url, '/health');
  assert.equal(h.status, 200);
  assert.match(h.headers.get('content-type'), /^application\/json/);
  const j = h.json;
  assert.equal(j.status, 'ok');
  assert.match(j.version, /^\d+\.\d+\.\d+/);
  assert.equal(typeof j.uptime_s, 'number');
  assert.ok(j.uptime_s >= 0);
  assert.ok(Number.isInteger(j.workers) && j.workers >= 1);
  assert.equal(j.engine, 'memory');
  assert.ok(Number.isInteger(j.connections.total));
  assert.ok(Number.isInteger(j.connections.sse));
  assert.ok(Number.isInteger(j.channels));
  assert.ok(Number.isInteger(j.messages.published));
  assert.ok(Number.isInteger(j.messages.delivered));
  assert.ok(Number.isInteger(j.slow_consumers_dropped));
  assert.ok(Number.isInteger(j.rss_bytes) && j.rss_bytes > 0);

  // counters move
  const sseBefore = j.connections.sse;
  const c = await sse('/sse/hcount');
  await c.waitForCount('connected', 1);
  await publish(srv.url, 'hcount', 1);
  await c.waitFor((cl) => cl.messages().length >= 1);
  const h2 = (await getJSON(srv.url, '/health')).json;
  assert.equal(h2.connections.sse, sseBefore + 1);
  assert.ok(h2.connections.total >= h2.connections.sse);
  assert.ok(h2.messages.published >= j.messages.published + 1);
  assert.ok(h2.messages.delivered >= j.messages.delivered + 1);
  assert.ok(h2.channels >= 1);
  c.close();
  await waitFor(async () => (await getJSON(srv.url, '/health')).json.connections.sse === sseBefore, 2000, 'sse count back');

  const none = await getJSON(srv.url, '/health/channel/never-used-channel');
  assert.equal(none.status, 200);
  assert.equal(none.json.exists, false);
  assert.equal(none.json.subscribers, 0);
  assert.equal(none.json.last_offset, 0);
  assert.equal(none.json.history_size, 0);

  const repo = await getJSON(srv.url, '/health/repo/42');
  assert.equal(repo.status, 200);
  for (const k of ['channel', 'exists', 'subscribers', 'epoch', 'last_offset', 'history_size']) {
    assert.ok(k in repo.json, `/health/repo/42 has ${k}: ${repo.text}`);
  }
});

test('heartbeat events every --heartbeat-interval with count 1, 2, ... per connection', async () => {
  const hb = await startTutti(['--heartbeat-interval', '0.2']);
  try {
    const c = await openSSE(hb.url, '/sse/hb');
    const t0 = Date.now();
    await c.waitForCount('heartbeat', 2, 3000);
    const elapsed = Date.now() - t0;
    const beats = c.of('heartbeat');
    assert.deepEqual(beats.slice(0, 2).map((b) => JSON.parse(b.data).count), [1, 2]);
    for (const b of beats) {
      assert.equal(b.id, undefined, 'heartbeat has no id');
      assert.equal(typeof JSON.parse(b.data).server_time, 'number');
    }
    assert.ok(elapsed >= 150, `two heartbeats 0.2 s apart cannot arrive within ${elapsed} ms`);
    // a new connection starts its own count at 1
    const d = await openSSE(hb.url, '/sse/hb');
    await d.waitForCount('heartbeat', 1, 2000);
    assert.equal(JSON.parse(d.of('heartbeat')[0].data).count, 1);
    // heartbeats do not move the position: a message id after heartbeats is still epoch:1
    const ans = await publish(hb.url, 'hb', 1);
    await d.waitFor((cl) => cl.messages().length >= 1);
    assert.equal(d.messages()[0].id, ans.id);
    assert.equal(ans.offset, 1);
    c.close();
    d.close();
  } finally {
    assert.equal(await hb.stop(), 0);
  }
});

test('SIGTERM: open SSE clients get a shutdown event, streams end, exit code 0', async () => {
  const s = await startTutti(['--sse-retry', '1500']);
  const a = await openSSE(s.url, '/sse/bye');
  const b = await openSSE(s.url, '/sse?channel=bye&channel=bye2');
  await a.waitForCount('connected', 1);
  await b.waitForCount('connected', 1);
  assert.match(a.raw, /^retry: 1500\r?\n/, '--sse-retry sets the retry line');
  const exit = s.stop();
  await a.waitForCount('shutdown', 1, 5000);
  await b.waitForCount('shutdown', 1, 5000);
  for (const c of [a, b]) {
    const ev = c.of('shutdown')[0];
    const d = JSON.parse(ev.data);
    assert.equal(typeof d.reason, 'string');
    assert.equal(typeof d.retry_ms, 'number');
    assert.equal(ev.id, undefined, 'shutdown has no id');
    await waitFor(() => c.ended, 5000, 'stream closed after shutdown');
  }
  assert.equal(await exit, 0);
});
