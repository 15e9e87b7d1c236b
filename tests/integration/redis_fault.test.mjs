// Redis engine faults: Redis unreachable when tutti starts, and Redis SIGKILLed in the
// middle of a publishing burst and restarted (with AOF, fsync always) on the same port.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor, openSSE, parsePosition, sseAgent } from '../lib/harness.mjs';
import { openWS } from '../lib/ws.mjs';
import {
  startRedis, freePort, startTuttiRedis, health, waitForEngine, metrics, resumableSSE, logTail,
} from '../lib/redis.mjs';

const cleanups = [];
after(async () => {
  sseAgent.destroy();
  for (const f of cleanups.reverse()) await f();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// POST /api/publish that never throws: { status, json, error } (status 0 on a timeout or a
// network error).
async function tryPublish(url, channel, data, timeoutMs = 5000) {
  try {
    const res = await fetch(`${url}/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { /* kept as text */ }
    return { status: res.status, json, text };
  } catch (e) {
    return { status: 0, error: e.message };
  }
}

test('Redis unreachable at start: tutti starts degraded, refuses publish/SSE/subscribe with ENGINE_UNAVAILABLE, and comes up when Redis does', async () => {
  const port = await freePort();
  const t = await startTuttiRedis(`redis://127.0.0.1:${port}/0`, ['--workers', '2', '--sse-retry', '100'], { waitUp: false });
  let redis;
  cleanups.push(async () => { await t.stop(); await redis?.cleanup(); });

  const h = await health(t.url);
  assert.equal(h.http, 503, `/health while Redis is unreachable: ${JSON.stringify(h)}`);
  assert.equal(h.status, 'degraded');
  assert.equal(h.engine, 'redis');
  assert.notEqual(h.engine_state, 'up');
  assert.ok(['connecting', 'down'].includes(h.engine_state), `engine_state ${h.engine_state}`);
  const m0 = await metrics(t.url);
  assert.equal(m0.tutti_engine_up, 0, 'tutti_engine_up 0');

  const p = await tryPublish(t.url, 'fault:start', { x: 1 });
  assert.equal(p.status, 503, `publish: ${JSON.stringify(p)}`);
  assert.equal(p.json?.error?.code, 'ENGINE_UNAVAILABLE');
  const res = await fetch(`${t.url}/api/channels/fault:start/publish`, { method: 'POST', body: '{"y":2}' });
  assert.equal(res.status, 503, 'POST /api/channels/{ch}/publish');
  assert.equal((await res.json()).error.code, 'ENGINE_UNAVAILABLE');

  const s = await openSSE(t.url, '/sse/fault:start');
  assert.equal(s.status, 503, `SSE open: ${s.status} ${s.body}`);
  assert.equal(s.json?.error?.code, 'ENGINE_UNAVAILABLE', s.body);

  const ws = await openWS(t.url);
  await ws.waitType('welcome');
  const e = await ws.request({ type: 'subscribe', channel: 'fault:start', id: 7 });
  assert.equal(e.type, 'error', JSON.stringify(e));
  assert.equal(e.code, 'ENGINE_UNAVAILABLE');
  assert.equal(e.ref, 7);
  assert.equal(ws.closeInfo, undefined, 'the WebSocket stays open after the error');

  // Redis appears on that port
  redis = await startRedis({ port });
  await waitForEngine(t.url, 'up', 15000);
  const h2 = await health(t.url);
  assert.equal(h2.http, 200);
  assert.equal(h2.status, 'ok');
  assert.equal((await metrics(t.url)).tutti_engine_up, 1);

  const r = await ws.request({ type: 'subscribe', channel: 'fault:start', id: 8 });
  assert.equal(r.type, 'subscribed', JSON.stringify(r));
  const sse = await openSSE(t.url, '/sse/fault:start');
  assert.equal(sse.status, 200, sse.body);
  await sse.waitForCount('connected', 1);
  const ok = await tryPublish(t.url, 'fault:start', { now: 'up' });
  assert.equal(ok.status, 200, JSON.stringify(ok));
  assert.equal(ok.json.offset, 1, 'the refused publishes left nothing behind');
  await sse.waitFor((c) => c.messages().length === 1);
  assert.equal(sse.messages()[0].id, ok.json.id);
  await ws.waitType('message', 1);
  assert.equal(ws.of('message')[0].json.id, ok.json.id);
  sse.close();
  ws.close();
  assert.equal(await t.stop(), 0, 'exit code after SIGTERM');
});

test('Redis SIGKILLed mid-burst and restarted on the same port: refused while down, and the subscriber gets every acknowledged message exactly once, in order', async () => {
  const redis = await startRedis({ persist: true }); // AOF, fsync always: acknowledged writes survive SIGKILL
  const t = await startTuttiRedis(redis.url(0), ['--workers', '2', '--history-size', '1000', '--sse-retry', '100']);
  let rs;
  let e503;
  cleanups.push(async () => { await rs?.stop(); await t.stop(); await redis.cleanup(); });
  const ch = 'fault:burst';
  rs = resumableSSE(() => t.url, `/sse/${ch}`, { retryMs: 100 });
  await rs.waitConnected(1);
  // a WebSocket subscriber that stays connected throughout (the engine re-subscribes and refills)
  const ws = await openWS(t.url);
  await ws.waitType('welcome');
  assert.equal((await ws.request({ type: 'subscribe', channel: ch })).type, 'subscribed');

  const attempts = []; // { i, phase, status, code, offset, id }
  let phase = 'before';
  let stop = false;
  let i = 0;
  const publisher = (async () => {
    while (!stop) {
      const n = ++i;
      const ph = phase;
      const r = await tryPublish(t.url, ch, { i: n });
      attempts.push({
        i: n, phase: ph, phaseAfter: phase, status: r.status, code: r.json?.error?.code, offset: r.json?.offset, id: r.json?.id, error: r.error,
      });
      await sleep(3);
    }
  })();

  await waitFor(() => attempts.filter((a) => a.status === 200).length >= 100, 15000, '100 acknowledged publishes');
  phase = 'killing';
  await redis.kill();
  phase = 'down';
  const downSince = Date.now();
  // while down: tutti up and degraded, the stream open
  await waitFor(async () => (await health(t.url)).engine_state !== 'up', 5000, 'engine_state to leave "up"');
  const hd = await health(t.url);
  assert.equal(hd.http, 503, JSON.stringify(hd));
  assert.equal(hd.status, 'degraded');
  assert.equal((await metrics(t.url)).tutti_engine_up, 0, 'tutti_engine_up 0 while Redis is down');
  await waitFor(() => attempts.filter((a) => a.phase === 'down').length >= 30 && Date.now() - downSince > 1000, 10000, 'publishes while Redis is down');
  const s503 = await openSSE(t.url, '/sse/fault:other');
  assert.equal(s503.status, 503, `a new SSE stream while Redis is down: ${s503.status} ${s503.body}`);
  assert.equal(s503.json?.error?.code, 'ENGINE_UNAVAILABLE');
  e503 = await ws.request({ type: 'subscribe', channel: 'fault:other' });
  assert.equal(e503.type, 'error', `WS subscribe while Redis is down: ${JSON.stringify(e503)}`);
  assert.equal(e503.code, 'ENGINE_UNAVAILABLE');
  assert.equal(rs.ends, 0, 'the SSE stream stays open while Redis is down');
  assert.equal(t.proc.exitCode, null, 'tutti still running');
  phase = 'restarting';
  await redis.launch(); // same port, same dir: the AOF is loaded
  phase = 'restarted';
  await waitForEngine(t.url, 'up', 15000);
  phase = 'after';
  const afterFrom = attempts.length;
  await waitFor(() => attempts.slice(afterFrom).filter((a) => a.phase === 'after' && a.status === 200).length >= 100, 15000, '100 publishes after the restart');
  stop = true;
  await publisher;

  const acked = attempts.filter((a) => a.status === 200);
  const down = attempts.filter((a) => a.phase === 'down' && a.phaseAfter === 'down');
  const bad = attempts.filter((a) => a.status !== 200 && !(a.status === 503 && a.code === 'ENGINE_UNAVAILABLE'));
  assert.deepEqual(bad, [], 'every refusal is 503 ENGINE_UNAVAILABLE (no timeouts, no other status)');
  assert.ok(down.length >= 30);
  assert.deepEqual(down.filter((a) => a.status !== 503), [], 'every publish while Redis is down is refused');
  assert.deepEqual(attempts.filter((a) => a.phase === 'before' && a.phaseAfter === 'before').map((a) => a.status).filter((s) => s !== 200), [], 'all accepted before the kill');
  assert.deepEqual(attempts.filter((a) => a.phase === 'after').map((a) => a.status).filter((s) => s !== 200), [], 'all accepted once the engine is up again');
  const epoch = acked[0].id.split(':')[0];
  assert.deepEqual(acked.filter((a) => !a.id.startsWith(`${epoch}:`)), [], 'the epoch survived the Redis restart (AOF)');
  // acknowledged offsets grow with the publish order
  for (let k = 1; k < acked.length; k++) assert.ok(acked[k].offset > acked[k - 1].offset, `offsets grow: ${acked[k - 1].id} then ${acked[k].id}`);

  const last = acked[acked.length - 1];
  await waitFor(() => rs.msgs.some((m) => m.id === last.id), 15000,
    `the subscriber to get the last acknowledged message ${last.id} (has ${rs.msgs.length}, last ${rs.lastId}, refusals ${rs.refusals.slice(-3)})`);
  const got = rs.msgs;
  const offs = got.map((m) => parsePosition(m.id)[0].offset);
  assert.deepEqual(offs, Array.from({ length: offs.length }, (_, k) => k + 1), 'offsets 1..n, each once, in order (no gap, no duplicate)');
  assert.deepEqual(got.filter((m) => !m.id.startsWith(`${epoch}:`)).map((m) => m.id), [], 'one epoch');
  const byId = new Map(got.map((m) => [m.id, m.data]));
  for (const a of acked) assert.equal(byId.get(a.id), JSON.stringify({ i: a.i }), `acknowledged publish ${a.i} (${a.id}) delivered with its data`);
  // anything delivered but not acknowledged was a refused publish whose write reached Redis
  const ackedIds = new Set(acked.map((a) => a.id));
  const extra = got.filter((m) => !ackedIds.has(m.id)).map((m) => JSON.parse(m.data).i);
  const refused = new Set(attempts.filter((a) => a.status !== 200).map((a) => a.i));
  assert.deepEqual(extra.filter((x) => !refused.has(x)), [], 'unacknowledged messages come only from refused publishes');
  assert.deepEqual(rs.incomplete, [], 'no recovery_incomplete');

  // the WebSocket subscriber: the same messages, once each, in order, over one connection
  await ws.waitFor((w) => w.of('message').some((x) => x.json.id === last.id), 10000, `WS: the last acknowledged message ${last.id}`);
  assert.equal(ws.closeInfo, undefined, 'the WebSocket stayed open');
  assert.deepEqual(ws.of('recovery_incomplete'), []);
  assert.deepEqual(ws.of('error').filter((x) => x.json.ref !== e503.ref).map((x) => x.raw), [], 'no other error message on the WebSocket');
  assert.deepEqual(ws.of('message').map((x) => x.json.id), got.map((x) => x.id), 'WS: same messages as the SSE subscriber');
  ws.close();

  const m = await metrics(t.url);
  assert.ok(m.tutti_engine_disconnects_total > 0, `tutti_engine_disconnects_total ${m.tutti_engine_disconnects_total}`);
  assert.equal(m.tutti_engine_up, 1);
  const h = await health(t.url);
  assert.equal(h.http, 200);
  assert.equal(h.engine_state, 'up');
  console.log(`# fault burst: ${attempts.length} publishes, ${acked.length} acknowledged, ${down.length} while down, `
    + `${extra.length} delivered unacknowledged; SSE reconnections ${rs.connects - 1}; engine logs:\n`
    + logTail(t, 12, (r) => /^(engine|redis)\./.test(r.event)));
  await rs.stop();
  assert.equal(await t.stop(), 0, 'exit code after SIGTERM');
});
