// Redis engine, two tutti nodes on one Redis: cross-node delivery over SSE and WebSocket,
// workers publishing with FCALL tutti_publish, the plain-PUBLISH bridge and its lease,
// recovery across nodes, a restarted node, and a flushed Redis (epoch_changed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  publish, waitFor, openSSE, getJSON, parsePosition, sseAgent,
} from '../lib/harness.mjs';
import { openWS, rawMember } from '../lib/ws.mjs';
import {
  startRedis, startTuttiRedis, metrics, workerPublish, resumableSSE, logTail,
} from '../lib/redis.mjs';

// ---- helpers ---------------------------------------------------------------

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const offsetOf = (id) => parsePosition(id)[0].offset;
const epochOf = (id) => parsePosition(id)[0].epoch;

async function sseOn(node, path, headers = {}) {
  const c = await openSSE(node.url, path, { headers });
  assert.equal(c.status, 200, `GET ${path} on ${node.url}: ${c.status} ${c.body}\n${logTail(node, 10)}`);
  await c.waitForCount('connected', 1);
  return c;
}

async function wsOn(node, channel, extra = {}) {
  const w = await openWS(node.url);
  await w.waitType('welcome');
  const r = await w.request({ type: 'subscribe', channel, ...extra });
  assert.equal(r.type, 'subscribed', `subscribe ${channel} on ${node.url}: ${JSON.stringify(r)}`);
  return w;
}
const wsMsgs = (w, ch) => w.of('message').filter((m) => m.json.channel === ch);

async function channelHealth(node, ch) {
  const r = await getJSON(node.url, `/health/channel/${ch}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

// The nodes whose latest bridge.lease log says they relay.
function leaseHolders(nodes) {
  return nodes.filter((n) => {
    const l = n.logs.filter((r) => r.event === 'bridge.lease');
    return l.length > 0 && /this node relays/.test(l[l.length - 1].message);
  });
}

// ---- servers ---------------------------------------------------------------

const BRIDGE = ['--redis-bridge', 'observations:new=observations'];
const COMMON = ['--history-size', '1000', '--sse-retry', '100', ...BRIDGE];
let redis;
let A; // --workers 2
let B;

before(async () => {
  redis = await startRedis();
  A = await startTuttiRedis(redis.url(0), ['--workers', '2', ...COMMON]);
  B = await startTuttiRedis(redis.url(0), ['--workers', '1', ...COMMON]);
});

after(async () => {
  sseAgent.destroy();
  const codes = [];
  for (const t of [A, B]) if (t) codes.push(await t.stop());
  await redis?.cleanup();
  assert.ok(codes.every((c) => c === 0), `tutti exit codes after SIGTERM: ${codes}`);
});

// ---- tests -----------------------------------------------------------------

test('300 messages published over HTTP on node A (2 workers, 10 concurrent publishers) reach SSE and WebSocket subscribers on node B exactly once, in order', async () => {
  const ch = 'nodes:burst';
  const sse = await sseOn(B, `/sse/${ch}`);
  const ws = await wsOn(B, ch);
  const local = await sseOn(A, `/sse/${ch}`);
  const N = 300;
  const sent = new Map(); // offset -> data text
  let next = 0;
  let epoch;
  await Promise.all(Array.from({ length: 10 }, async () => {
    while (next < N) {
      const i = ++next;
      const data = { i, pad: 'y'.repeat(i % 40) };
      const a = await publish(A.url, ch, data);
      epoch ??= a.epoch;
      assert.equal(a.epoch, epoch, 'one epoch for the whole burst');
      assert.ok(!sent.has(a.offset), `offset ${a.offset} given twice`);
      sent.set(a.offset, JSON.stringify(data));
    }
  }));
  assert.deepEqual([...sent.keys()].sort((x, y) => x - y), range(1, N), 'publish answers: offsets 1..300');
  // one more message, published after the burst, marks the end: duplicates would come before it
  const end = await publish(A.url, ch, 'end');
  sent.set(end.offset, '"end"');
  const want = range(1, N + 1).map((o) => `${epoch}:${o}`);

  for (const [name, c] of [['SSE on B', sse], ['SSE on A', local]]) {
    await c.waitFor((cl) => cl.messages().some((m) => m.id === end.id), 15000, `${name}: the end marker (have ${c.messages().length})`);
    const ms = c.messages();
    assert.deepEqual(ms.map((m) => m.id), want, `${name}: every offset once, in order`);
    ms.forEach((m, k) => {
      assert.equal(m.type, 'message');
      assert.equal(m.data, sent.get(k + 1), `${name}: data of offset ${k + 1}`);
    });
  }
  await ws.waitFor((w) => wsMsgs(w, ch).some((m) => m.json.id === end.id), 15000, `WS on B: the end marker (have ${wsMsgs(ws, ch).length})`);
  const wm = wsMsgs(ws, ch);
  assert.deepEqual(wm.map((m) => m.json.id), want, 'WS on B: every offset once, in order');
  wm.forEach((m, k) => {
    assert.equal(m.json.event, 'message');
    assert.equal(rawMember(m.raw, 'data'), sent.get(k + 1), `WS on B: data bytes of offset ${k + 1}`);
  });
  const hb = await channelHealth(B, ch);
  assert.equal(hb.epoch, epoch);
  assert.equal(hb.last_offset, N + 1);
  sse.close();
  local.close();
  ws.close();
});

test('a worker publishing with redis-cli FCALL tutti_publish reaches subscribers on both nodes with its event and data; its offset is the SSE id', async () => {
  const ch = 'nodes:worker';
  const first = await publish(A.url, ch, { via: 'http' });
  const sseA = await sseOn(A, `/sse/${ch}`);
  const sseB = await sseOn(B, `/sse/${ch}`);
  const wsB = await wsOn(B, ch);
  const wsA = await wsOn(A, ch);

  const payloads = [
    ['score.update', '{"note":"C4","vel":0.5}'],
    ['raw', '[1,  2 ,{"\u00e9":"\u00fc \\n"}]'], // spacing and UTF-8 kept byte for byte
  ];
  const answers = [];
  for (const [ev, data] of payloads) answers.push(await workerPublish(redis.port, ch, ev, data));
  assert.equal(answers[0].epoch, first.epoch, 'the worker publishes in the channel epoch');
  assert.deepEqual(answers.map((a) => a.offset), [first.offset + 1, first.offset + 2], 'FCALL offsets follow the HTTP one');

  for (const [name, c] of [['SSE on A', sseA], ['SSE on B', sseB]]) {
    await c.waitFor((cl) => cl.messages().length >= 2, 5000, `${name}: 2 worker messages (have ${c.messages().length})`);
    const ms = c.messages();
    assert.equal(ms.length, 2, `${name}: ${JSON.stringify(ms)}`);
    ms.forEach((m, k) => {
      assert.equal(m.id, answers[k].id, `${name}: SSE id = FCALL answer`);
      assert.equal(m.type, payloads[k][0], `${name}: event`);
      assert.equal(m.data, payloads[k][1], `${name}: data`);
    });
  }
  for (const [name, w] of [['WS on A', wsA], ['WS on B', wsB]]) {
    await w.waitFor((x) => wsMsgs(x, ch).length >= 2, 5000, `${name}: 2 worker messages`);
    const ms = wsMsgs(w, ch);
    assert.equal(ms.length, 2);
    ms.forEach((m, k) => {
      assert.equal(m.json.id, answers[k].id, `${name}: id`);
      assert.equal(m.json.event, payloads[k][0], `${name}: event`);
      assert.equal(rawMember(m.raw, 'data'), payloads[k][1], `${name}: data bytes`);
    });
  }
  // and the worker's messages are in the history any node recovers from
  const r = await sseOn(B, `/sse/${ch}?since=${first.id}`);
  await r.waitFor((cl) => cl.messages().length >= 2);
  assert.deepEqual(r.messages().map((m) => m.id), answers.map((a) => a.id));
  assert.equal(JSON.parse(r.of('connected')[0].data).recovered, true);
  for (const x of [sseA, sseB, wsA, wsB, r]) x.close();
});

test('bridge: a plain PUBLISH on observations:new is relayed once (one lease holder) to subscribers on both nodes; invalid JSON is counted, not relayed', async () => {
  await waitFor(() => leaseHolders([A, B]).length === 1, 8000,
    `exactly one node holding the bridge lease (holders: ${leaseHolders([A, B]).map((n) => n.url)}; lease logs A: ${logTail(A, 5, (r) => r.event === 'bridge.lease')} B: ${logTail(B, 5, (r) => r.event === 'bridge.lease')})`);
  const [holder] = leaseHolders([A, B]);
  const other = holder === A ? B : A;
  const before = { A: await metrics(A.url), B: await metrics(B.url) };
  const invalidBefore = (before.A.tutti_bridge_invalid_total ?? NaN) + (before.B.tutti_bridge_invalid_total ?? NaN);
  assert.equal(invalidBefore, 0, 'tutti_bridge_invalid_total exported by both nodes, 0 so far');

  const ch = 'observations';
  const sseA = await sseOn(A, `/sse/${ch}`);
  const sseB = await sseOn(B, `/sse/${ch}`);
  const wsB = await wsOn(B, ch);

  await redis.cli('PUBLISH', 'observations:new', '{"t":1}');
  await redis.cli('PUBLISH', 'observations:new', '{"t": oops');
  await redis.cli('PUBLISH', 'observations:new', '{"t":2, "s":"x"}');

  for (const [name, c] of [['SSE on A', sseA], ['SSE on B', sseB]]) {
    await c.waitFor((cl) => cl.messages().some((m) => m.data === '{"t":2, "s":"x"}'), 5000,
      `${name}: the second bridged message (have ${JSON.stringify(c.messages().map((m) => m.data))})`);
    const ms = c.messages();
    assert.deepEqual(ms.map((m) => m.data), ['{"t":1}', '{"t":2, "s":"x"}'], `${name}: each bridged message once, the invalid one not at all`);
    assert.deepEqual(ms.map((m) => offsetOf(m.id)), [1, 2], `${name}: offsets`);
    assert.equal(ms[0].type, 'message');
  }
  await wsB.waitFor((w) => wsMsgs(w, ch).length >= 2, 5000, 'WS on B: 2 bridged messages');
  assert.deepEqual(wsMsgs(wsB, ch).map((m) => rawMember(m.raw, 'data')), ['{"t":1}', '{"t":2, "s":"x"}']);
  assert.deepEqual(wsMsgs(wsB, ch).map((m) => offsetOf(m.json.id)), [1, 2]);
  for (const n of [A, B]) {
    const h = await channelHealth(n, ch);
    assert.equal(h.last_offset, 2, `${n.url}: the channel holds 2 messages (a double relay would make more)`);
  }

  let m = {};
  await waitFor(async () => {
    m = { holder: await metrics(holder.url), other: await metrics(other.url) };
    return m.holder.tutti_bridge_invalid_total + m.other.tutti_bridge_invalid_total >= 1;
  }, 5000, 'tutti_bridge_invalid_total to count the invalid message');
  assert.equal(m.holder.tutti_bridge_invalid_total, 1, 'counted on the lease holder');
  assert.equal(m.other.tutti_bridge_invalid_total, 0, 'not counted on the other node');
  assert.ok(holder.logs.some((r) => r.event === 'bridge.invalid_json'), 'bridge.invalid_json logged by the lease holder');
  assert.ok(!other.logs.some((r) => r.event === 'bridge.invalid_json'), 'the other node does not log it');
  for (const x of [sseA, sseB, wsB]) x.close();
});

// The channel of the cross-node recovery tests below, and the last position its reader saw.
const REC = 'nodes:rec';
let recLast;
const recSent = [];

test('recovery across nodes: a reader of node A dropped mid-burst resumes on node B with Last-Event-ID and gets every missed message once, in order', async () => {
  let base = A.url;
  let gate;
  const rs = resumableSSE(() => base, `/sse/${REC}`, {
    retryMs: 20,
    beforeReconnect: () => gate, // the test opens the gate once messages were published meanwhile
  });
  try {
    await rs.waitConnected(1);
    assert.equal(rs.connected[0].data.recovered, undefined, 'first connect asked for no recovery');
    const N = 200;
    let released;
    for (let i = 1; i <= N; i++) {
      recSent.push(await publish(i % 2 ? A.url : B.url, REC, { i }));
      if (i === 70) {
        gate = new Promise((r) => { released = r; });
        rs.drop();
        await waitFor(() => rs.ends === 1, 5000, 'the reader to see its stream end');
      }
      if (i === 100) {
        base = B.url; // missed 71..100 (at least), resumes on the other node
        released();
      }
    }
    await rs.waitMsgs(N, 15000);
    const marker = await publish(A.url, REC, 'marker');
    recSent.push(marker);
    await waitFor(() => rs.msgs.some((m) => m.id === marker.id), 5000, 'the marker');
    assert.equal(rs.connects, 2, 'one reconnection');
    assert.deepEqual(rs.incomplete, [], 'no recovery_incomplete');
    const resumed = rs.connected[1];
    assert.equal(resumed.data.recovered, true, 'resumed with recovered: true');
    assert.ok(offsetOf(resumed.id) <= 70, `resumed from ${resumed.id}, before the messages published meanwhile`);
    assert.deepEqual(rs.msgs.map((m) => m.id), recSent.map((a) => a.id), 'every message once, in order, across the two nodes');
    assert.deepEqual(rs.msgs.slice(0, N).map((m) => JSON.parse(m.data).i), range(1, N));
    assert.deepEqual(recSent.map((a) => a.offset), range(1, N + 1));
    recLast = rs.lastId;
  } finally {
    await rs.stop();
  }
  const ha = await channelHealth(A, REC);
  const hb = await channelHealth(B, REC);
  assert.equal(ha.epoch, recSent[0].epoch, 'node A: epoch');
  assert.equal(hb.epoch, recSent[0].epoch, 'node B: same epoch');
  assert.equal(ha.last_offset, recSent.length, 'node A: last_offset');
  assert.equal(hb.last_offset, recSent.length, 'node B: same last_offset');
});

test('node B restarted (SIGTERM, start again): recovering from the previous position still works (the epoch lives in Redis)', async () => {
  assert.ok(recLast, 'the previous test left a position');
  const old = B;
  B = null;
  assert.equal(await old.stop(), 0, 'node B exit code after SIGTERM');
  const missed = [];
  for (let i = 0; i < 5; i++) missed.push(await publish(A.url, REC, { while_b_down: i }));
  assert.equal(missed[0].epoch, epochOf(recLast));
  B = await startTuttiRedis(redis.url(0), ['--workers', '1', ...COMMON]);
  const hb = await channelHealth(B, REC);
  assert.equal(hb.epoch, epochOf(recLast), 'restarted node B knows the epoch');
  assert.equal(hb.last_offset, missed[4].offset);

  const c = await sseOn(B, `/sse/${REC}`, { 'Last-Event-ID': recLast });
  const d = JSON.parse(c.of('connected')[0].data);
  assert.equal(d.recovered, true, `recovered from ${recLast}: ${c.of('recovery_incomplete').map((e) => e.data)}`);
  await c.waitFor((cl) => cl.messages().length >= 5);
  const live = await publish(A.url, REC, 'after restart');
  await c.waitFor((cl) => cl.messages().length >= 6);
  assert.deepEqual(c.messages().map((m) => m.id), [...missed, live].map((a) => a.id));
  assert.deepEqual(c.messages().slice(0, 5).map((m) => JSON.parse(m.data)), range(0, 4).map((i) => ({ while_b_down: i })));
  assert.equal(c.of('recovery_incomplete').length, 0);
  recLast = live.id;
  c.close();
});

test('FLUSHALL on Redis: reconnecting with the old position gives recovery_incomplete epoch_changed, then the new epoch', async (t) => {
  // a subscriber that stays connected across the flush (observed, reported below)
  const across = await sseOn(A, `/sse/${REC}`);
  await redis.cli('FLUSHALL');
  const c = await sseOn(B, `/sse/${REC}`, { 'Last-Event-ID': recLast });
  const d = JSON.parse(c.of('connected')[0].data);
  assert.equal(d.recovered, false);
  await c.waitForCount('recovery_incomplete', 1);
  const ri = JSON.parse(c.of('recovery_incomplete')[0].data);
  assert.equal(ri.channel, REC);
  assert.equal(ri.reason, 'epoch_changed', JSON.stringify(ri));
  assert.equal(ri.requested, recLast);
  assert.notEqual(ri.epoch, epochOf(recLast), 'a new epoch');
  assert.equal(ri.last_offset, 0);
  assert.deepEqual(c.messages(), [], 'nothing held after the flush');
  const p = await publish(A.url, REC, 'after flush');
  assert.equal(p.epoch, ri.epoch, 'publishing goes on in the new epoch');
  assert.equal(p.offset, 1);
  await c.waitFor((cl) => cl.messages().length >= 1, 5000, 'the first message of the new epoch');
  assert.deepEqual(c.messages().map((m) => [m.id, m.data]), [[p.id, '"after flush"']]);
  // the same position on node A gives the same answer
  const a = await sseOn(A, `/sse/${REC}`, { 'Last-Event-ID': recLast });
  await a.waitForCount('recovery_incomplete', 1);
  assert.equal(JSON.parse(a.of('recovery_incomplete')[0].data).reason, 'epoch_changed');
  await a.waitFor((cl) => cl.messages().length >= 1);
  assert.deepEqual(a.messages().map((m) => m.id), [p.id]);
  await new Promise((r) => setTimeout(r, 300));
  t.diagnostic(`subscriber live across FLUSHALL got: ${JSON.stringify(across.events.slice(1).map((e) => [e.type, e.id, e.data]))}`);
  for (const x of [c, a, across]) x.close();
});

test('bridge lease failover: the lease holder is SIGKILLed; the other node takes the lease once it runs out, and relays once', async () => {
  // the lease key (tutti:{CHANNEL}:lease:REDIS-CHANNEL, see engine_redis.c) must be held and fresh
  // (the FLUSHALL of the test above deleted it) before the holder dies
  // and the holder must be settled: no lease change logged by either node over a full renewal
  // period (after the flush both nodes may briefly believe they relay)
  const key = 'tutti:{observations}:lease:observations:new';
  const leaseLogs = () => [A, B].map((n) => n.logs.filter((r) => r.event === 'bridge.lease').length).join();
  let holder;
  const settleBy = Date.now() + 10000;
  for (;;) {
    await waitFor(async () => leaseHolders([A, B]).length === 1 && Number(await redis.cli('PTTL', key)) > 0, 8000, 'one lease holder');
    const seen = leaseLogs();
    [holder] = leaseHolders([A, B]);
    await new Promise((r) => setTimeout(r, 1200));
    if (leaseLogs() === seen && Number(await redis.cli('PTTL', key)) > 1500) break;
    assert.ok(Date.now() < settleBy, 'the bridge lease settles on one node');
  }
  const survivor = holder === A ? B : A;
  holder.proc.kill('SIGKILL');
  await holder.stop();
  if (holder === A) A = null; else B = null;
  const killedAt = Date.now();
  const ch = 'observations';
  const c = await sseOn(survivor, `/sse/${ch}`);
  // the lease (3 s) runs out; the survivor tries every second and takes it
  await waitFor(() => leaseHolders([survivor]).length === 1, 8000,
    `the surviving node to take the lease (its lease logs: ${logTail(survivor, 5, (r) => r.event === 'bridge.lease')})`);
  const tookAfter = Date.now() - killedAt;
  assert.ok(tookAfter >= 1000 && tookAfter < 6000, `lease taken over ${tookAfter} ms after the holder died (lease 3 s, renewed every second)`);
  const before = (await channelHealth(survivor, ch)).last_offset;
  await redis.cli('PUBLISH', 'observations:new', '{"t":"failover"}');
  await c.waitFor((cl) => cl.messages().some((m) => m.data === '{"t":"failover"}'), 5000, 'the relayed message');
  assert.deepEqual(c.messages().map((m) => [offsetOf(m.id), m.data]), [[before + 1, '{"t":"failover"}']]);
  c.close();
});
