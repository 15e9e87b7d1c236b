// Redis engine on a 3-primary Redis Cluster: channels spread over slots and primaries,
// sharded pub/sub, cross-node delivery and recovery, and a worker publishing with
// FCALL tutti_publish ... SHARDED=1 through redis-cli -c.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  publish, waitFor, openSSE, getJSON, parsePosition, sseAgent,
} from '../lib/harness.mjs';
import { openWS, rawMember } from '../lib/ws.mjs';
import {
  startRedisCluster, clusterPortForKey, startTuttiRedis, workerPublish, health, logTail,
} from '../lib/redis.mjs';

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const offsetOf = (id) => parsePosition(id)[0].offset;

let cluster;
let A; // --workers 2, seeded with the first primary
let B; // seeded with the second primary
const CHANNELS = range(0, 29).map((k) => `cl:${k}`);
const M = 10; // messages per channel
const sent = new Map(); // channel -> [answers in offset order]

before(async () => {
  cluster = await startRedisCluster(3);
  A = await startTuttiRedis(cluster.nodes[0].url(0), ['--workers', '2', '--history-size', '100']);
  B = await startTuttiRedis(cluster.nodes[1].url(0), ['--workers', '1', '--history-size', '100']);
});

after(async () => {
  sseAgent.destroy();
  const codes = [];
  for (const t of [A, B]) if (t) codes.push(await t.stop());
  await cluster?.cleanup();
  assert.ok(codes.every((c) => c === 0), `tutti exit codes after SIGTERM: ${codes}`);
});

async function sseOn(node, path, headers = {}) {
  const c = await openSSE(node.url, path, { headers, keepRaw: false });
  assert.equal(c.status, 200, `GET ${path} on ${node.url}: ${c.status} ${c.body}\n${logTail(node, 10)}`);
  await c.waitForCount('connected', 1);
  return c;
}

test('30 channels over 3 primaries: published on node A, received in order by SSE and WebSocket subscribers on node B', async () => {
  for (const t of [A, B]) {
    const h = await health(t.url);
    assert.equal(h.http, 200);
    assert.equal(h.engine_state, 'up');
  }
  const owners = new Set();
  for (const ch of CHANNELS) owners.add(await clusterPortForKey(cluster, `tutti:{${ch}}:m`));
  assert.equal(owners.size, 3, `the 30 channels live on every primary (owners: ${[...owners]})`);

  const streams = [];
  for (const ch of CHANNELS) streams.push(await sseOn(B, `/sse/${ch}`));
  const multi = await sseOn(B, `/sse?${CHANNELS.slice(0, 16).map((c) => `channel=${c}`).join('&')}`);
  const wss = [];
  for (const part of [CHANNELS.slice(0, 15), CHANNELS.slice(15)]) {
    const w = await openWS(B.url);
    await w.waitType('welcome');
    for (const ch of part) {
      const r = await w.request({ type: 'subscribe', channel: ch });
      assert.equal(r.type, 'subscribed', `${ch}: ${JSON.stringify(r)}`);
    }
    wss.push(w);
  }

  // round-robin over the channels, 6 publishers at once
  const jobs = [];
  for (let i = 1; i <= M; i++) for (const ch of CHANNELS) jobs.push([ch, i]);
  for (const ch of CHANNELS) sent.set(ch, []);
  let next = 0;
  await Promise.all(Array.from({ length: 6 }, async () => {
    while (next < jobs.length) {
      const [ch, i] = jobs[next++];
      const a = await publish(A.url, ch, { ch, i });
      sent.get(ch).push({ ...a, data: JSON.stringify({ ch, i }) });
    }
  }));
  for (const ch of CHANNELS) {
    const list = sent.get(ch).sort((x, y) => x.offset - y.offset);
    assert.deepEqual(list.map((a) => a.offset), range(1, M), `${ch}: offsets 1..${M}`);
  }

  for (const [k, ch] of CHANNELS.entries()) {
    const c = streams[k];
    await c.waitFor((cl) => cl.messages().length >= M, 10000, `${ch} on B: ${M} messages (have ${c.messages().length})`);
    assert.deepEqual(c.messages().map((m) => m.id), sent.get(ch).map((a) => a.id), `${ch}: SSE on B, in order, once`);
    assert.deepEqual(c.messages().map((m) => m.data), sent.get(ch).map((a) => a.data), `${ch}: data`);
  }
  for (const [w, part] of [[wss[0], CHANNELS.slice(0, 15)], [wss[1], CHANNELS.slice(15)]]) {
    await w.waitFor((x) => x.of('message').length >= part.length * M, 10000, `WS on B: ${part.length * M} messages (have ${w.of('message').length})`);
    for (const ch of part) {
      const ms = w.of('message').filter((m) => m.json.channel === ch);
      assert.deepEqual(ms.map((m) => m.json.id), sent.get(ch).map((a) => a.id), `${ch}: WS on B, in order, once`);
      assert.deepEqual(ms.map((m) => rawMember(m.raw, 'data')), sent.get(ch).map((a) => a.data));
    }
    assert.equal(w.of('message').length, part.length * M, 'no extra WS messages');
  }
  // one stream over 16 channels: each message advances one channel by one
  await multi.waitFor((cl) => cl.messages().length >= 16 * M, 10000, `multi-channel stream: ${16 * M} messages (have ${multi.messages().length})`);
  let prev = parsePosition(multi.of('connected')[0].id);
  const perChannel = Array(16).fill(0);
  for (const m of multi.messages()) {
    const p = parsePosition(m.id);
    const moved = range(0, 15).filter((k) => p[k].offset !== prev[k].offset);
    assert.equal(moved.length, 1, `one channel advances per message: ${m.id}`);
    const k = moved[0];
    assert.equal(p[k].offset, prev[k].offset + 1, 'no gap');
    assert.equal(JSON.parse(m.data).ch, CHANNELS[k], `message of ${CHANNELS[k]}`);
    perChannel[k]++;
    prev = p;
  }
  assert.deepEqual(perChannel, Array(16).fill(M));
  for (const x of [...streams, multi, ...wss]) x.close();
});

test('recovery from node B on every channel (since=epoch:3 and Last-Event-ID), and /health/channel agrees on both nodes', async () => {
  assert.equal(sent.size, 30, 'the previous test published');
  const clients = [];
  for (const [k, ch] of CHANNELS.entries()) {
    const from = sent.get(ch)[2]; // offset 3
    const c = k % 2
      ? await sseOn(B, `/sse/${ch}?since=${from.id}`)
      : await sseOn(B, `/sse/${ch}`, { 'Last-Event-ID': from.id });
    clients.push([ch, c]);
  }
  for (const [ch, c] of clients) {
    assert.equal(JSON.parse(c.of('connected')[0].data).recovered, true, `${ch}: recovered`);
    await c.waitFor((cl) => cl.messages().length >= M - 3, 5000, `${ch}: ${M - 3} recovered messages`);
    assert.deepEqual(c.messages().map((m) => m.id), sent.get(ch).slice(3).map((a) => a.id), `${ch}: offsets 4..${M}`);
    assert.deepEqual(c.of('recovery_incomplete'), []);
    const ha = (await getJSON(A.url, `/health/channel/${ch}`)).json;
    const hb = (await getJSON(B.url, `/health/channel/${ch}`)).json;
    assert.equal(ha.epoch, sent.get(ch)[0].epoch, `${ch}: epoch on A`);
    assert.equal(hb.epoch, ha.epoch, `${ch}: same epoch on B`);
    assert.equal(ha.last_offset, M);
    assert.equal(hb.last_offset, M);
  }
  // live after the recovery
  const live = await publish(A.url, CHANNELS[7], 'live');
  const c7 = clients[7][1];
  await c7.waitFor((cl) => cl.messages().some((m) => m.id === live.id), 5000, 'the live message after recovery');
  assert.equal(offsetOf(live.id), M + 1);
  sent.get(CHANNELS[7]).push({ ...live, data: '"live"' });
  for (const [, c] of clients) c.close();
});

test('a worker publishing with redis-cli -c FCALL tutti_publish ... SHARDED=1 reaches subscribers on both nodes', async () => {
  // one channel per primary, each called through a primary that does not own it (redis-cli -c follows MOVED)
  const picks = new Map(); // owner port -> channel
  for (const ch of CHANNELS) {
    const owner = await clusterPortForKey(cluster, `tutti:{${ch}}:m`);
    if (!picks.has(owner)) picks.set(owner, ch);
  }
  assert.equal(picks.size, 3);
  for (const [owner, ch] of picks) {
    const via = cluster.ports.find((p) => p !== owner);
    const sseA = await sseOn(A, `/sse/${ch}`);
    const sseB = await sseOn(B, `/sse/${ch}`);
    const wsB = await openWS(B.url);
    await wsB.waitType('welcome');
    assert.equal((await wsB.request({ type: 'subscribe', channel: ch })).type, 'subscribed');
    const data = `{"worker":"${ch}","owner":${owner}}`;
    const w = await workerPublish(via, ch, 'worker.done', data, { sharded: true, cluster: true, maxlen: 100 });
    const prev = sent.get(ch);
    assert.equal(w.epoch, prev[0].epoch, `${ch}: the worker publishes in the channel epoch`);
    assert.equal(w.offset, prev[prev.length - 1].offset + 1, `${ch}: next offset`);
    for (const [name, c] of [['SSE on A', sseA], ['SSE on B', sseB]]) {
      await c.waitFor((cl) => cl.messages().length >= 1, 5000, `${ch}: ${name} gets the worker message\n${logTail(name.endsWith('A') ? A : B, 8)}`);
      assert.deepEqual(c.messages().map((m) => [m.id, m.type, m.data]), [[w.id, 'worker.done', data]], `${ch}: ${name}`);
    }
    await wsB.waitType('message', 1);
    const m = wsB.of('message')[0];
    assert.deepEqual([m.json.id, m.json.event, rawMember(m.raw, 'data')], [w.id, 'worker.done', data], `${ch}: WS on B`);
    for (const x of [sseA, sseB, wsB]) x.close();
  }
});
