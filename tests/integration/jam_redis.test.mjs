// Jam sessions across two tutti nodes on one real Redis (--engine redis): Alice on node A
// and Bob on node B play in the same room: joins, events both ways with one seq numbering,
// GET /api/sessions/{code} on either node, leaving, and the recording from either node.
// Contract: docs/PROTOCOL.md "Jam sessions (rooms)" (rooms work across nodes on Redis).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../lib/harness.mjs';
import { startRedis, startTuttiRedis } from '../lib/redis.mjs';
import {
  participant, createRoom, joinRoom, leaveRoom, broadcast, expectError, roundTrip, waitEvents,
  waitMsg, rawPayload, getSession, postSession, getRecording, sortedIds, sleep, DEFAULT_CODE_RE, stopAllExpectZero,
} from '../lib/jam.mjs';

let redis;
let A;
let B;
const clients = [];

before(async () => {
  redis = await startRedis();
  A = await startTuttiRedis(redis.url(0), ['--workers', '2']);
  B = await startTuttiRedis(redis.url(0), ['--workers', '1']);
});

after(async () => {
  for (const c of clients) { try { c.terminate(); } catch { /* closed */ } }
  try {
    await stopAllExpectZero([A, B].filter(Boolean), ['node A', 'node B']);
  } finally {
    await redis?.cleanup();
  }
});

const P = (server, name, instrument) => participant(server, name, { instrument, registry: clients });
const leftCount = (p, code, uid) => p.of('session:user-left', code).filter((m) => m.json.user_id === uid).length;
const joinedCount = (p, code, uid) => p.of('session:user-joined', code).filter((m) => m.json.user && m.json.user.user_id === uid).length;
const seqs = (msgs) => msgs.map((m) => m.json.seq);

// GET on both nodes until both list exactly `ids`; returns the two answers.
async function bothList(code, ids, ms = 5000) {
  let last;
  try {
    await waitFor(async () => {
      last = [await getSession(A, code), await getSession(B, code)];
      return last.every((r) => r.status === 200 && JSON.stringify(sortedIds(r.json.participants)) === JSON.stringify([...ids].sort()));
    }, ms);
  } catch {
    assert.fail(`GET /api/sessions/${code}: want participants ${JSON.stringify([...ids].sort())} on A and B, got ${JSON.stringify(last?.map((r) => [r.status, r.text]))}`);
  }
  return last;
}

let room; // { alice (A), bob (B), carol (A), code }

test('Alice creates a room on node A, Bob joins it on node B: both see each other (participants, user-joined once)', async () => {
  const alice = await P(A, 'Alice', 'drums');
  const bob = await P(B, 'Bob', 'piano');
  const { code } = await createRoom(alice, { name: 'two nodes' });
  assert.match(code, DEFAULT_CODE_RE);
  const jb = await joinRoom(bob, code);
  assert.deepEqual(sortedIds(jb.participants), [alice.id, bob.id].sort(), `Bob's session:joined on B lists Alice from A: ${JSON.stringify(jb.participants)}`);
  const a = jb.participants.find((x) => x.user_id === alice.id);
  assert.equal(a.name, 'Alice');
  assert.equal(a.instrument, 'drums');
  const uj = await waitMsg(alice, 'session:user-joined', code, (j) => j.user && j.user.user_id === bob.id);
  assert.equal(uj.json.user.name, 'Bob');
  assert.equal(uj.json.user.instrument, 'piano');
  assert.equal(typeof uj.json.user.joined_at, 'number');

  // Carol joins on A too: one user-joined for each, whatever node
  const carol = await P(A, 'Carol', 'bass');
  const jc = await joinRoom(carol, code);
  assert.deepEqual(sortedIds(jc.participants), [alice.id, bob.id, carol.id].sort());
  for (const p of [alice, bob]) await waitMsg(p, 'session:user-joined', code, (j) => j.user && j.user.user_id === carol.id);
  for (const p of [alice, bob, carol]) await roundTrip(p);
  await sleep(300);
  assert.equal(joinedCount(alice, code, bob.id), 1, 'Alice: Bob joined once');
  assert.equal(joinedCount(alice, code, carol.id), 1, 'Alice: Carol joined once');
  assert.equal(joinedCount(bob, code, carol.id), 1, 'Bob: Carol joined once');
  assert.equal(joinedCount(bob, code, bob.id), 0);
  const [ga, gb] = await bothList(code, [alice.id, bob.id, carol.id]);
  for (const g of [ga, gb]) {
    assert.equal(g.json.room_code, code);
    assert.equal(g.json.name, 'two nodes');
    assert.equal(g.json.created_at, ga.json.created_at, 'one room, one created_at');
    assert.equal(g.json.participants.find((x) => x.user_id === bob.id).instrument, 'piano');
  }
  room = { alice, bob, carol, code };
});

test('events cross nodes both ways with one seq numbering; each participant gets each other\'s event once, payload byte for byte', async () => {
  assert.ok(room, 'the room of the previous test');
  const { alice, bob, carol, code } = room;
  const pl = (who, i) => `{"from":"${who}", "i":${i},"x":[1.50,"\\u00e9"]}`;
  // alternate, one at a time: seqs 1..6
  const order = [alice, bob, carol, bob, alice, carol];
  for (const [i, p] of order.entries()) {
    const ack = await broadcast(p, code, i % 2 ? 'piano_note' : 'drum_hit', pl(p.name, i + 1));
    assert.equal(ack.seq, i + 1, `${p.name}'s event on ${p.server === A ? 'A' : 'B'} takes seq ${i + 1}`);
  }
  for (const p of [alice, bob, carol]) {
    const want = order.map((q, i) => [q, i + 1]).filter(([q]) => q !== p).map(([, s]) => s);
    const evs = await waitEvents(p, code, want.length);
    assert.deepEqual(seqs(evs), want, `${p.name} gets the others' events in seq order`);
    for (const e of evs) {
      const sender = order[e.json.seq - 1];
      assert.equal(e.json.sender_id, sender.id, `seq ${e.json.seq} sender`);
      assert.equal(rawPayload(e), pl(sender.name, e.json.seq), `${p.name}: payload of seq ${e.json.seq}`);
    }
  }

  // Alice (A) and Bob (B) at once, 20 each
  const N = 20;
  const [acksA, acksB] = await Promise.all([alice, bob].map((p) => Promise.all(
    Array.from({ length: N }, (_, k) => broadcast(p, code, 'burst', `{"from":"${p.name}","k":${k}}`)))));
  const all = [...acksA, ...acksB].map((a) => a.seq).sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: 2 * N }, (_, i) => 7 + i), 'one numbering across nodes: each seq once');
  const check = async (p, wantSeqs) => {
    const evs = await waitEvents(p, code, 4 + wantSeqs.length);
    assert.deepEqual(seqs(evs.slice(4)), wantSeqs, `${p.name}: exactly the others' burst events, in seq order`);
  };
  await check(alice, acksB.map((a) => a.seq));
  await check(bob, acksA.map((a) => a.seq));
  await check(carol, all);
  await sleep(300);
  assert.equal(alice.events(code).length, 4 + N, 'no duplicate for Alice');
  assert.equal(bob.events(code).length, 4 + N, 'no duplicate for Bob');
  assert.equal(carol.events(code).length, 4 + 2 * N, 'no duplicate for Carol');
  for (const node of [A, B]) {
    const g = await getSession(node, code);
    assert.equal(g.json.event_count, 6 + 2 * N, `event_count on ${node === A ? 'A' : 'B'}`);
  }
});

test('across nodes the ack and the relayed event carry the same seq and server_time', async () => {
  assert.ok(room, 'the room of the first test');
  const { alice, bob, code } = room;
  const fromB = bob.mark();
  const ack = await broadcast(alice, code, 'drum_hit', '{"t":"time"}');
  const m = await waitMsg(bob, 'event:broadcast', code, (j) => j.seq === ack.seq, { from: fromB });
  assert.equal(m.json.server_time, ack.server_time, `one event, one server_time: ack ${JSON.stringify(ack)}, relayed ${m.raw}`);
});

test('the recording is served by either node, in seq order', async () => {
  assert.ok(room, 'the room of the first test');
  const { code } = room;
  const rA = await getRecording(A, code);
  const rB = await getRecording(B, code);
  for (const [n, r] of [['A', rA], ['B', rB]]) {
    assert.equal(r.status, 200, `${n}: ${r.text.slice(0, 300)}`);
    assert.equal(r.lines.length, 47, `${n}: 47 lines`);
    assert.deepEqual(r.lines.map((l) => JSON.parse(l).seq), Array.from({ length: 47 }, (_, i) => i + 1), `${n}: seq order`);
  }
  assert.equal(rA.text, rB.text, 'both nodes serve the same recording');
});

test('Bob leaves on node B: session:left to him, session:user-left exactly once to Alice and Carol on A; he gets no more events', async () => {
  assert.ok(room, 'the room of the first test');
  const { alice, bob, carol, code } = room;
  const left = await leaveRoom(bob, code);
  assert.equal(left.room_code, code);
  for (const p of [alice, carol]) await waitMsg(p, 'session:user-left', code, (j) => j.user_id === bob.id);
  const fromB = bob.mark();
  const ack = await broadcast(alice, code, 'drum_hit', '{"after":"bob"}');
  await waitEvents(carol, code, 4 + 2 * 20 + 2);
  await roundTrip(bob);
  await sleep(400);
  assert.equal(leftCount(alice, code, bob.id), 1, 'Alice: Bob left once');
  assert.equal(leftCount(carol, code, bob.id), 1, 'Carol: Bob left once');
  assert.equal(bob.since(fromB).filter((m) => m.json.type === 'event:broadcast').length, 0, `Bob gets nothing after leaving (seq ${ack.seq})`);
  await expectError(bob, { type: 'event:broadcast', room_code: code, event_name: 'x', payload: 1 }, 'NOT_IN_ROOM');
  await bothList(code, [alice.id, carol.id]);
});

test('a participant on B whose connection drops: user-left exactly once on A; a room made over HTTP on B is joined from A', async () => {
  assert.ok(room, 'the room of the first test');
  const { alice, carol, code } = room;
  const dave = await P(B, 'Dave', 'sax');
  await joinRoom(dave, code);
  await waitMsg(alice, 'session:user-joined', code, (j) => j.user && j.user.user_id === dave.id);
  dave.terminate();
  for (const p of [alice, carol]) await waitMsg(p, 'session:user-left', code, (j) => j.user_id === dave.id);
  await sleep(400);
  assert.equal(leftCount(alice, code, dave.id), 1);
  assert.equal(leftCount(carol, code, dave.id), 1);
  await bothList(code, [alice.id, carol.id]);

  const made = await postSession(B, { name: 'from B', max_participants: 2 });
  assert.equal(made.status, 201, made.text);
  const c2 = made.json.room_code;
  const g = await getSession(A, c2);
  assert.equal(g.status, 200, `node A knows the room made on B: ${g.text}`);
  assert.equal(g.json.max_participants, 2);
  const erin = await P(A, 'Erin', 'cello');
  const frank = await P(B, 'Frank', 'flute');
  const gina = await P(A, 'Gina');
  await joinRoom(erin, c2);
  await joinRoom(frank, c2);
  await expectError(gina, { type: 'session:join', room_code: c2, user: { name: 'Gina' } }, 'ROOM_FULL');
  const ack = await broadcast(frank, c2, 'flute_note', '{"note":"A5"}');
  assert.equal(ack.seq, 1);
  const [ev] = await waitEvents(erin, c2, 1);
  assert.equal(ev.json.sender_id, frank.id);
  assert.equal(rawPayload(ev), '{"note":"A5"}');
});
