// Jam-session limits: a participant's event rate (--room-rate / --room-burst: the excess is
// RATE_LIMITED and never relayed; receivers get exactly the acknowledged events) and the
// payload size (--room-max-payload: over it TOO_LARGE and not relayed, exactly at it
// accepted; bytes, not characters). Contract: docs/PROTOCOL.md "Jam sessions (rooms)".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti } from '../lib/harness.mjs';
import {
  participant, createRoom, joinRoom, broadcast, tryBroadcast, broadcastText, expectError,
  waitEvents, rawPayload, getSession, roundTrip, sleep,
  stopAllExpectZero,
} from '../lib/jam.mjs';

let srv; // --room-rate 10 --room-burst 10 --room-max-payload 100
let dflt; // defaults: --room-max-payload 16384
const servers = [];
const serverName = new Map();
const clients = [];

before(async () => {
  const started = await Promise.allSettled([
    startTutti(['--workers', '2', '--room-rate', '10', '--room-burst', '10', '--room-max-payload', '100']),
    startTutti(['--workers', '1']),
  ]);
  started.forEach((s, i) => { if (s.status === 'fulfilled') serverName.set(s.value, ['srv (--room-rate 10 ...)', 'dflt (defaults)'][i]); });
  for (const s of started) if (s.status === 'fulfilled') servers.push(s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  [srv, dflt] = started.map((s) => s.value);
});

after(async () => {
  for (const c of clients) { try { c.terminate(); } catch { /* closed */ } }
  await stopAllExpectZero(servers, servers.map((s) => serverName.get(s)));
});

const P = (server, name, instrument) => participant(server, name, { instrument, registry: clients });

async function trio(server) {
  const alice = await P(server, 'Alice', 'drums');
  const bob = await P(server, 'Bob', 'piano');
  const carol = await P(server, 'Carol', 'bass');
  const { code } = await createRoom(alice);
  await joinRoom(bob, code);
  await joinRoom(carol, code);
  return { alice, bob, carol, code };
}

test('--room-rate 10 --room-burst 10: of 50 quick broadcasts some are acknowledged, the rest RATE_LIMITED; receivers get exactly the acknowledged ones', async () => {
  const { alice, bob, carol, code } = await trio(srv);
  const N = 50;
  const from = alice.mark();
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    alice.w.sendRaw(broadcastText(code, 'drum_hit', `{"i":${i},"pad":"kick"}`, { id: i }));
  }
  await alice.w.waitFor(() => new Set(alice.since(from).filter((m) => m.json && 'ref' in m.json).map((m) => m.json.ref)).size >= N, 10000,
    `a reply to each of the ${N} broadcasts`);
  const elapsed = (Date.now() - t0) / 1000;
  const replies = alice.since(from).filter((m) => m.json && 'ref' in m.json);
  assert.equal(replies.length, N, `exactly one reply per broadcast: ${replies.length}`);
  const acked = replies.filter((m) => m.json.type === 'event:ack').map((m) => m.json);
  const limited = replies.filter((m) => m.json.type === 'error');
  for (const e of limited) assert.equal(e.json.code, 'RATE_LIMITED', e.raw);
  assert.equal(acked.length + limited.length, N, `only acks and RATE_LIMITED errors: ${JSON.stringify(replies.map((m) => m.raw).slice(0, 5))}`);
  assert.ok(acked.length >= 10, `at least the burst of 10 is accepted (got ${acked.length})`);
  assert.ok(acked.length <= 10 + Math.ceil(10 * elapsed) + 2, `no more than burst + rate x ${elapsed.toFixed(2)} s accepted (got ${acked.length})`);
  assert.ok(limited.length >= 1, 'some were refused');
  // the accepted ones take seq 1..k in the order they were sent
  acked.sort((a, b) => a.ref - b.ref);
  assert.deepEqual(acked.map((a) => a.seq), acked.map((_, i) => i + 1), 'accepted events take consecutive seqs in send order');
  const ackedRefs = acked.map((a) => a.ref);

  // Bob and Carol get exactly the acknowledged events, no refused one
  const barrierFrom = [bob.mark(), carol.mark()];
  await sleep(1200); // refill
  const barrier = await broadcast(alice, code, 'drum_hit', '{"barrier":true}');
  assert.equal(barrier.seq, acked.length + 1, 'tokens come back: the next event is accepted after a pause');
  for (const [k, p] of [bob, carol].entries()) {
    await waitEvents(p, code, 1, { from: barrierFrom[k] });
    const evs = p.events(code);
    const got = evs.slice(0, -1).map((e) => JSON.parse(rawPayload(e)).i);
    assert.deepEqual(got, ackedRefs, `${p.name} received exactly the acknowledged events (${ackedRefs.length}), in order`);
    assert.deepEqual(evs.slice(0, -1).map((e) => e.json.seq), acked.map((a) => a.seq), `${p.name}: their seqs`);
  }
  const r = await getSession(srv, code);
  assert.equal(r.json.event_count, acked.length + 1, 'refused events are not counted');
});

test('the rate limit is per participant: Bob can play while Alice is limited', async () => {
  const { alice, bob, carol, code } = await trio(srv);
  const from = alice.mark();
  for (let i = 0; i < 30; i++) alice.w.sendRaw(broadcastText(code, 'drum_hit', `{"i":${i}}`, { id: i }));
  await alice.w.waitFor(() => alice.since(from).filter((m) => m.json && 'ref' in m.json).length >= 30, 10000, '30 replies');
  const limited = alice.since(from).filter((m) => m.json.type === 'error' && m.json.code === 'RATE_LIMITED');
  assert.ok(limited.length >= 1, 'Alice is limited');
  const r = await tryBroadcast(bob, code, 'piano_note', '{"note":"C5"}');
  assert.equal(r.error, undefined, `Bob is not limited by Alice's flood: ${r.m.raw}`);
  const evs = await waitEvents(carol, code, 1, { from: 0 });
  assert.ok(evs.length >= 1);
  await roundTrip(carol);
});

test('--room-max-payload 100: a payload of exactly 100 bytes is accepted and relayed; 101 bytes (or 100 characters in more bytes) is TOO_LARGE and not relayed', async () => {
  const { alice, bob, carol, code } = await trio(srv);
  const at = `"${'a'.repeat(98)}"`; // 100 bytes
  const atObj = `{"pad":"kick", "pad2":"${'b'.repeat(100 - 25)}"}`;
  assert.equal(Buffer.byteLength(at), 100);
  assert.equal(Buffer.byteLength(atObj), 100);
  const over = `"${'a'.repeat(99)}"`; // 101 bytes
  const overObj = `{"pad":"kick", "pad2":"${'b'.repeat(101 - 25)}"}`;
  const multi = `"${'é'.repeat(60)}"`; // 62 characters, 122 bytes
  assert.equal(Buffer.byteLength(over), 101);
  assert.equal(Buffer.byteLength(overObj), 101);
  assert.equal(Buffer.byteLength(multi), 122);

  for (const pl of [over, overObj, multi, `{"big":"${'z'.repeat(5000)}"}`]) {
    await expectError(alice, broadcastText(code, 'drum_hit', pl), 'TOO_LARGE');
  }
  const a1 = await broadcast(alice, code, 'drum_hit', at);
  const a2 = await broadcast(alice, code, 'drum_hit', atObj);
  assert.equal(a1.seq, 1, 'the refused payloads took no seq');
  assert.equal(a2.seq, 2);
  for (const p of [bob, carol]) {
    await waitEvents(p, code, 2);
    await sleep(100);
    assert.deepEqual(p.events(code).map((e) => rawPayload(e)), [at, atObj], `${p.name}: only the payloads at the limit, byte for byte`);
  }
  const r = await getSession(srv, code);
  assert.equal(r.json.event_count, 2);
});

test('default --room-max-payload is 16384 bytes: 16384 accepted, 16385 TOO_LARGE', async () => {
  const { alice, bob, code } = await trio(dflt);
  const at = `"${'x'.repeat(16382)}"`;
  const over = `"${'x'.repeat(16383)}"`;
  await expectError(alice, broadcastText(code, 'sample', over), 'TOO_LARGE');
  const ack = await broadcast(alice, code, 'sample', at);
  assert.equal(ack.seq, 1);
  const [ev] = await waitEvents(bob, code, 1);
  assert.equal(rawPayload(ev), at);
  await sleep(100);
  assert.equal(bob.events(code).length, 1);
});
