// Jam sessions (rooms) over WebSocket and HTTP, with three real clients Alice, Bob and
// Carol: create and join, event:broadcast to the others only (AC1-AC5 of the jam-session
// story: relay, no echo to the sender, any event name, payloads byte for byte, solo rooms),
// acks and seq numbering, leaving (clean, abrupt, heartbeat timeout), the room's grace
// period, every room error code, and POST/GET /api/sessions.
// Contract: docs/PROTOCOL.md "Jam sessions (rooms)" and docs/API.md "Jam sessions".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti, waitFor, openSSE, sseAgent } from '../lib/harness.mjs';
import { openRawWS } from '../lib/ws.mjs';
import {
  participant, createRoom, joinRoom, tryJoin, leaveRoom, broadcast, tryBroadcast, broadcastText,
  expectError, roundTrip, expectQuiet, waitEvents, waitMsg, rawPayload, getSession, postSession,
  sortedIds, sleep, DEFAULT_CODE_RE,
  stopAllExpectZero,
} from '../lib/jam.mjs';

// ---- servers ---------------------------------------------------------------

let main; // defaults (grace 60 s, 16 participants)
let pingSrv; // heartbeat: --ws-ping-interval 0.3 --ws-ping-timeout 0.3
let keySrv; // --api-key
const servers = [];
const serverName = new Map();
const clients = [];
const sses = [];

before(async () => {
  const starts = [
    startTutti(['--workers', '2']),
    startTutti(['--workers', '2', '--ws-ping-interval', '0.3', '--ws-ping-timeout', '0.3']),
    startTutti(['--workers', '1', '--api-key', 'sekret-key']),
  ];
  const started = await Promise.allSettled(starts);
  started.forEach((s, i) => { if (s.status === 'fulfilled') serverName.set(s.value, ['main', 'pingSrv (--ws-ping-interval 0.3)', 'keySrv (--api-key)'][i]); });
  for (const s of started) if (s.status === 'fulfilled') servers.push(s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  [main, pingSrv, keySrv] = started.map((s) => s.value);
});

after(async () => {
  for (const c of clients) { try { c.terminate(); } catch { /* closed */ } }
  for (const c of sses) c.close();
  sseAgent.destroy();
  await stopAllExpectZero(servers, servers.map((s) => serverName.get(s)));
});

// ---- helpers ---------------------------------------------------------------

const P = (server, name, instrument) => participant(server, name, { instrument, registry: clients });

// A server of its own for one test (so that a crash there does not take other tests down);
// stopped, with its exit code checked, in after().
async function fresh(args, name) {
  const s = await startTutti(['--workers', '2', ...args]);
  servers.push(s);
  serverName.set(s, `${name} (${args.join(' ')})`);
  return s;
}

// A fresh room with Alice (drums, creator), Bob (piano) and Carol (no instrument) in it,
// once every participant has seen every join.
async function trio(server = main, { name = 'Friday jam' } = {}) {
  const alice = await P(server, 'Alice', 'drums');
  const bob = await P(server, 'Bob', 'piano');
  const carol = await P(server, 'Carol');
  const { code } = await createRoom(alice, { name });
  await joinRoom(bob, code);
  await joinRoom(carol, code);
  await waitMsg(alice, 'session:user-joined', code, (j) => j.user && j.user.user_id === carol.id);
  await waitMsg(bob, 'session:user-joined', code, (j) => j.user && j.user.user_id === carol.id);
  return { alice, bob, carol, code };
}

const leftCount = (p, code, uid) => p.of('session:user-left', code).filter((m) => m.json.user_id === uid).length;
const joinedCount = (p, code, uid) => p.of('session:user-joined', code).filter((m) => m.json.user && m.json.user.user_id === uid).length;
const seqs = (msgs) => msgs.map((m) => m.json.seq);

function assertParticipant(entry, p, what) {
  assert.ok(entry, `${what}: ${p.name} (${p.id}) is listed`);
  assert.equal(entry.user_id, p.id, `${what}: user_id`);
  assert.equal(entry.name, p.name, `${what}: name of ${p.id}`);
  if (p.instrument !== undefined) assert.equal(entry.instrument, p.instrument, `${what}: instrument of ${p.name}`);
  assert.equal(typeof entry.joined_at, 'number', `${what}: joined_at of ${p.name} is a number: ${JSON.stringify(entry)}`);
  assert.ok(Math.abs(entry.joined_at - Date.now()) < 120000, `${what}: joined_at is ms since the epoch: ${entry.joined_at}`);
}
const byId = (list, id) => list.find((x) => x.user_id === id);

// The payload of the story's AC1, plus things a re-serialiser would change: spaces, number
// spellings, escapes, non-ASCII, key order, an empty object.
const AC1_PAYLOAD = '{"note":"C4", "velocity":80,"timestamp":1634567890123,"x":[1.50,1e3,-0.0,"\\u00e9\\n\\/",true,null,{}],"z":1,"a":"ü 🎹"}';

// ---- create and join --------------------------------------------------------

test('session:create: a code like MUSIC-42, session:created (user_id = connection_id) then session:joined with the creator in the room', async () => {
  const alice = await P(main, 'Alice', 'drums');
  const before0 = Date.now();
  const { code, created, joined } = await createRoom(alice, { name: 'Friday jam' });
  assert.match(code, DEFAULT_CODE_RE, `room code ${code}`);
  assert.equal(created.type, 'session:created');
  assert.equal(joined.room_code, code);
  assert.equal(joined.user_id, alice.id, `session:joined user_id: ${JSON.stringify(joined)}`);
  assert.ok(Array.isArray(joined.participants), `participants: ${JSON.stringify(joined)}`);
  assert.equal(joined.participants.length, 1, `only Alice: ${JSON.stringify(joined.participants)}`);
  assertParticipant(joined.participants[0], alice, 'session:joined');
  assert.ok(joined.participants[0].joined_at >= before0 - 1000, 'joined_at is now');

  const r = await getSession(main, code);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.room_code, code);
  assert.equal(r.json.name, 'Friday jam');
  assert.equal(r.json.max_participants, 16, 'default --room-max-participants');
  assert.equal(typeof r.json.created_at, 'number');
  assert.ok(r.json.created_at >= before0 - 1000 && r.json.created_at <= Date.now() + 1000, `created_at ${r.json.created_at}`);
  assert.equal(r.json.event_count, 0);
  assert.equal(r.json.participants.length, 1);
  assertParticipant(r.json.participants[0], alice, 'GET /api/sessions');

  // with no field at all, create still works
  const solo = await P(main, 'Nobody');
  const ref = 'bare';
  solo.w.send({ type: 'session:create', id: ref });
  const m = await waitMsg(solo, 'session:created', undefined);
  assert.match(m.json.room_code, DEFAULT_CODE_RE);
  assert.notEqual(m.json.room_code, code, 'codes are unique among live rooms');
  await waitMsg(solo, 'session:joined', m.json.room_code);
});

test('session:join: session:joined lists every participant; session:user-joined reaches the others only, once', async () => {
  const alice = await P(main, 'Alice', 'drums');
  const bob = await P(main, 'Bob', 'piano');
  const carol = await P(main, 'Carol');
  const { code } = await createRoom(alice);

  const jb = await joinRoom(bob, code);
  assert.equal(jb.room_code, code);
  assert.equal(jb.user_id, bob.id);
  assert.deepEqual(sortedIds(jb.participants), [alice.id, bob.id].sort(), JSON.stringify(jb.participants));
  assertParticipant(byId(jb.participants, alice.id), alice, 'Bob\'s session:joined');
  assertParticipant(byId(jb.participants, bob.id), bob, 'Bob\'s session:joined');
  const uj = await waitMsg(alice, 'session:user-joined', code, (j) => j.user && j.user.user_id === bob.id);
  assertParticipant(uj.json.user, bob, 'Alice\'s session:user-joined');

  const jc = await joinRoom(carol, code);
  assert.deepEqual(sortedIds(jc.participants), [alice.id, bob.id, carol.id].sort(), JSON.stringify(jc.participants));
  assertParticipant(byId(jc.participants, carol.id), carol, 'Carol\'s session:joined');
  for (const p of [alice, bob]) {
    const m = await waitMsg(p, 'session:user-joined', code, (j) => j.user && j.user.user_id === carol.id);
    assertParticipant(m.json.user, carol, `${p.name}'s session:user-joined`);
  }
  for (const p of [alice, bob, carol]) await roundTrip(p);
  await sleep(200);
  assert.equal(joinedCount(alice, code, bob.id), 1, 'Alice: one user-joined for Bob');
  assert.equal(joinedCount(alice, code, carol.id), 1, 'Alice: one user-joined for Carol');
  assert.equal(joinedCount(bob, code, carol.id), 1, 'Bob: one user-joined for Carol');
  assert.equal(joinedCount(bob, code, bob.id), 0, 'Bob gets no user-joined about himself');
  assert.equal(joinedCount(carol, code, carol.id), 0, 'Carol gets no user-joined about herself');
  assert.equal(joinedCount(alice, code, alice.id), 0, 'Alice gets no user-joined about herself');
  assert.equal(carol.of('session:user-joined', code).length, 0, 'Carol joined last: no user-joined for the earlier ones');

  const r = await getSession(main, code);
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id, bob.id, carol.id].sort());
  for (const p of [alice, bob, carol]) assertParticipant(byId(r.json.participants, p.id), p, 'GET /api/sessions');
});

// ---- broadcasting (AC1-AC5) -------------------------------------------------

test('AC1-AC3: Alice\'s event:broadcast reaches Bob and Carol (sender_id, seq, server_time, payload byte for byte) and not Alice', async () => {
  const { alice, bob, carol, code } = await trio();
  const fromA = alice.mark();
  const fromB = bob.mark();
  const fromC = carol.mark();
  const t0 = Date.now();
  const ack = await broadcast(alice, code, 'drum_hit', AC1_PAYLOAD);
  const t1 = Date.now();
  assert.equal(ack.type, 'event:ack');
  assert.equal(ack.room_code, code);
  assert.equal(ack.seq, 1, `first event of the room: ${JSON.stringify(ack)}`);
  assert.equal(typeof ack.server_time, 'number');
  assert.ok(ack.server_time >= t0 - 1000 && ack.server_time <= t1 + 1000, `server_time ${ack.server_time} is the server clock (${t0}..${t1})`);

  for (const [p, from] of [[bob, fromB], [carol, fromC]]) {
    const [ev] = await waitEvents(p, code, 1, { from });
    assert.equal(ev.json.type, 'event:broadcast');
    assert.equal(ev.json.room_code, code);
    assert.equal(ev.json.event_name, 'drum_hit');
    assert.equal(ev.json.sender_id, alice.id, `${p.name}: sender_id`);
    assert.equal(ev.json.seq, ack.seq, `${p.name}: seq`);
    assert.equal(typeof ev.json.server_time, 'number', `${p.name}: server_time`);
    assert.equal(rawPayload(ev), AC1_PAYLOAD, `${p.name}: payload byte for byte in ${ev.raw}`);
    assert.ok(!('ref' in ev.json), `the relayed event carries no ref of Alice's request: ${ev.raw}`);
  }

  // barrier: a later event from Bob reaches Alice; her own event never does
  const ackB = await broadcast(bob, code, 'piano_note', '{"note":"E4","velocity":64}');
  assert.equal(ackB.seq, 2);
  const [evB] = await waitEvents(alice, code, 1, { from: fromA });
  assert.equal(evB.json.sender_id, bob.id);
  assert.equal(evB.json.seq, 2);
  await expectQuiet(alice, fromA, (j) => j.type === 'event:broadcast' && j.sender_id === alice.id, 300, 'her own event back (AC3)');
  assert.deepEqual(seqs(alice.events(code)), [2], 'Alice saw only Bob\'s event');
  await waitEvents(carol, code, 2, { from: fromC });
  await sleep(100);
  assert.deepEqual(seqs(bob.events(code)), [1], 'Bob saw only Alice\'s event, once');
  assert.deepEqual(seqs(carol.events(code)), [1, 2], 'Carol saw both, once each, in order');
  // one event, one server_time: the ack carries the time the event was accepted
  assert.equal(bob.events(code)[0].json.server_time, ack.server_time, 'the relayed event\'s server_time equals the ack\'s');
  assert.equal(alice.events(code)[0].json.server_time, ackB.server_time, 'Bob\'s event: relayed server_time equals his ack\'s');
});

test('event:ack only when the request has an id (ref echoes it, any JSON value); without one the event is relayed and nothing comes back', async () => {
  const { alice, bob, code } = await trio();
  const fromA = alice.mark();
  alice.w.sendRaw(broadcastText(code, 'drum_hit', '{"pad":"snare"}'));
  const [ev] = await waitEvents(bob, code, 1);
  assert.equal(ev.json.seq, 1);
  assert.equal(rawPayload(ev), '{"pad":"snare"}');
  await roundTrip(alice);
  await sleep(250);
  const got = alice.since(fromA).map((m) => m.json.type);
  assert.deepEqual(got.filter((t) => t !== 'pong'), [], `no ack and no error without an id: ${JSON.stringify(alice.since(fromA).map((m) => m.raw))}`);

  const a7 = await broadcast(alice, code, 'drum_hit', '{"pad":"kick"}', { id: 7 });
  assert.equal(a7.ref, 7);
  assert.equal(a7.seq, 2);
  const objRef = { n: [1, 'two'] };
  const ref = JSON.stringify(objRef);
  const fromA2 = alice.mark();
  alice.w.sendRaw(broadcastText(code, 'drum_hit', '{"pad":"hat"}', { id: objRef }));
  await alice.w.waitFor(() => alice.since(fromA2).some((m) => m.json.type === 'event:ack' && JSON.stringify(m.json.ref) === ref), 5000,
    `an ack with ref ${ref} (got ${JSON.stringify(alice.since(fromA2).map((m) => m.raw))})`);
  const ackObj = alice.since(fromA2).find((m) => m.json.type === 'event:ack');
  assert.equal(ackObj.json.seq, 3);
  await waitEvents(bob, code, 3);
  assert.deepEqual(seqs(bob.events(code)), [1, 2, 3]);
});

test('echo:true gives the sender its own event too; the others get it once; echo:false does not', async () => {
  const { alice, bob, carol, code } = await trio();
  const fromA = alice.mark();
  const ack = await broadcast(alice, code, 'drum_hit', '{"pad":"kick", "echo":"me"}', { echo: true });
  const [own] = await waitEvents(alice, code, 1, { from: fromA, ms: 2000 });
  assert.equal(own.json.sender_id, alice.id);
  assert.equal(own.json.seq, ack.seq);
  assert.equal(own.json.event_name, 'drum_hit');
  assert.equal(rawPayload(own), '{"pad":"kick", "echo":"me"}');
  for (const p of [bob, carol]) await waitEvents(p, code, 1);

  const ack2 = await broadcast(alice, code, 'drum_hit', '{"pad":"snare"}', { echo: false });
  for (const p of [bob, carol]) await waitEvents(p, code, 2);
  const ack3 = await broadcast(bob, code, 'piano_note', '{"note":"A4"}');
  await waitEvents(alice, code, 2, { from: fromA });
  await sleep(200);
  assert.deepEqual(seqs(alice.events(code)), [ack.seq, ack3.seq], 'Alice: her echoed event and Bob\'s, not the echo:false one');
  assert.deepEqual(seqs(bob.events(code)), [ack.seq, ack2.seq], 'Bob: each of Alice\'s events once');
  assert.deepEqual(seqs(carol.events(code)), [ack.seq, ack2.seq, ack3.seq], 'Carol: everything once');
});

test('AC4: drum_hit, piano_note, pattern_change and custom event names all pass through in order, payloads intact', async () => {
  const { alice, bob, carol, code } = await trio();
  const sent = [
    ['drum_hit', '{"note":"C4","velocity":80,"timestamp":1634567890123}'],
    ['piano_note', '{"note":"D#5","velocity":64,"timestamp":1634567890200,"duration":250.0}'],
    ['pattern_change', '{"patternId":"p-7","bpm":120,"steps":[1,0,0,1, 0,0,1,0],"timestamp":1634567890300}'],
    ['custom:fx.sweep-1', '"a bare string \\"payload\\""'],
    ['midi_cc', '[176,74,  100]'],
    ['tempo', '128.00'],
    ['mute', 'false'],
    ['transport', '{"state":"play","at":{"bar":1,"beat":1},"meta":{"by":"Alice","tags":["a","b"]}}'],
  ];
  // sent back to back; each gets its ack
  const acks = await Promise.all(sent.map(([n, p]) => broadcast(alice, code, n, p)));
  assert.deepEqual(acks.map((a) => a.seq).sort((a, b) => a - b), sent.map((_, i) => i + 1));
  for (const p of [bob, carol]) {
    const evs = await waitEvents(p, code, sent.length);
    assert.deepEqual(evs.map((e) => e.json.event_name), sent.map(([n]) => n), `${p.name}: event names in order`);
    assert.deepEqual(evs.map((e) => rawPayload(e)), sent.map(([, pl]) => pl), `${p.name}: payloads byte for byte`);
    assert.deepEqual(seqs(evs), sent.map((_, i) => i + 1), `${p.name}: seq 1..${sent.length}`);
    assert.ok(evs.every((e) => e.json.sender_id === alice.id));
  }
});

test('event names are any string of 1-64 bytes: a space, UTF-8, exactly 64 bytes are accepted and relayed as sent', async () => {
  const { alice, bob, code } = await trio();
  const names = ['chord change', 'piano_ñ', 'é'.repeat(32), 'x'.repeat(64), 'drum/hit#1'];
  for (const n of names) {
    const r = await tryBroadcast(alice, code, n, '{"ok":1}');
    assert.equal(r.error, undefined, `event_name ${JSON.stringify(n)} (${Buffer.byteLength(n)} bytes) refused: ${r.m.raw}`);
  }
  const evs = await waitEvents(bob, code, names.length);
  assert.deepEqual(evs.map((e) => e.json.event_name), names);
});

test('BAD_EVENT: event_name empty, over 64 bytes (65 ASCII, or 33 two-byte chars) or not a string; nothing relayed, no seq taken', async () => {
  const { alice, bob, carol, code } = await trio();
  const bad = ['""', JSON.stringify('a'.repeat(65)), JSON.stringify('é'.repeat(33)), '5', '{"n":"drum_hit"}', '["drum_hit"]'];
  for (const b of bad) {
    await expectError(alice, `{"type":"event:broadcast","room_code":"${code}","event_name":${b},"payload":{"pad":"kick"}}`, 'BAD_EVENT');
  }
  const ack = await broadcast(alice, code, 'drum_hit', '{"pad":"barrier"}');
  assert.equal(ack.seq, 1, 'refused events took no seq');
  for (const p of [bob, carol]) {
    await waitEvents(p, code, 1);
    await sleep(100);
    assert.deepEqual(p.events(code).map((e) => rawPayload(e)), ['{"pad":"barrier"}'], `${p.name} got only the valid event`);
  }
});

test('NOT_IN_ROOM: a connection that is not a participant cannot broadcast (nothing relayed, no seq) or leave', async () => {
  const { alice, bob, carol, code } = await trio();
  const dave = await P(main, 'Dave', 'bass');
  await expectError(dave, broadcastText(code, 'drum_hit', '{"pad":"intruder"}'), 'NOT_IN_ROOM');
  await expectError(dave, broadcastText(code, 'drum_hit', '{"pad":"intruder"}', { echo: true }), 'NOT_IN_ROOM');
  await expectError(dave, { type: 'session:leave', room_code: code }, 'NOT_IN_ROOM');
  const ack = await broadcast(alice, code, 'drum_hit', '{"pad":"barrier"}');
  assert.equal(ack.seq, 1, 'the refused events took no seq');
  for (const p of [bob, carol]) {
    await waitEvents(p, code, 1);
    await sleep(100);
    assert.deepEqual(p.events(code).map((e) => e.json.sender_id), [alice.id], `${p.name}: nothing from Dave`);
  }
  assert.equal(alice.events(code).length, 0);
  assert.equal(dave.events().length, 0, 'Dave receives nothing from a room he is not in');
  assert.equal(leftCount(alice, code, dave.id), 0);
  const r = await getSession(main, code);
  assert.equal(r.json.event_count, 1);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id, bob.id, carol.id].sort(), 'Dave is not listed');
});

test('AC5: a solo room: events are acknowledged (seq 1, 2, 3) and counted, relayed to no one, and the server goes on', async () => {
  const solo = await P(main, 'Solo', 'synth');
  const observer = await P(main, 'Observer');
  const { code } = await createRoom(solo);
  const from = solo.mark();
  for (let i = 1; i <= 3; i++) {
    const ack = await broadcast(solo, code, i === 2 ? 'piano_note' : 'drum_hit', `{"i":${i}}`);
    assert.equal(ack.seq, i);
  }
  solo.w.sendRaw(broadcastText(code, 'drum_hit', '{"i":4}')); // without id: nothing back at all
  await roundTrip(solo);
  await sleep(250);
  assert.deepEqual(solo.since(from).map((m) => m.json.type).filter((t) => t !== 'event:ack' && t !== 'pong'), [],
    `only acks and the pong: ${JSON.stringify(solo.since(from).map((m) => m.raw))}`);
  assert.equal(observer.events().length, 0);
  const r = await getSession(main, code);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.event_count, 4, 'the solo events were recorded');
  assert.deepEqual(sortedIds(r.json.participants), [solo.id]);
  // the server is fine: a new room with a second player still works
  await joinRoom(observer, code);
  const ack5 = await broadcast(solo, code, 'drum_hit', '{"i":5}');
  assert.equal(ack5.seq, 5);
  const [ev] = await waitEvents(observer, code, 1);
  assert.equal(ev.json.seq, 5);
});

test('seq counts the room\'s events across senders (1, 2, 3, ...); each receiver sees the others\' seqs in order', async () => {
  const { alice, bob, carol, code } = await trio();
  const ps = [alice, bob, carol];
  // round robin, one at a time: Alice 1, Bob 2, Carol 3, Alice 4, Bob 5, Carol 6
  for (let i = 0; i < 6; i++) {
    const ack = await broadcast(ps[i % 3], code, 'note', `{"i":${i + 1}}`);
    assert.equal(ack.seq, i + 1, `event ${i + 1} from ${ps[i % 3].name}`);
  }
  const want = { Alice: [2, 3, 5, 6], Bob: [1, 3, 4, 6], Carol: [1, 2, 4, 5] };
  for (const p of ps) {
    const evs = await waitEvents(p, code, 4);
    assert.deepEqual(seqs(evs), want[p.name], `${p.name} sees the others' seqs, gaps where it played`);
    assert.deepEqual(evs.map((e) => JSON.parse(rawPayload(e)).i), want[p.name], `${p.name}: payload i matches seq`);
  }

  // all three at once, 15 each, without waiting
  const N = 15;
  const acksBy = await Promise.all(ps.map((p) => Promise.all(
    Array.from({ length: N }, (_, k) => broadcast(p, code, 'burst', `{"from":"${p.name}","k":${k}}`)))));
  const all = acksBy.flat().map((a) => a.seq).sort((a, b) => a - b);
  assert.deepEqual(all, Array.from({ length: 3 * N }, (_, i) => 7 + i), 'seqs 7.. are each used once');
  for (const [i, p] of ps.entries()) {
    const own = acksBy[i].map((a) => a.seq);
    for (let k = 1; k < own.length; k++) assert.ok(own[k] > own[k - 1], `${p.name}'s own events keep their order: ${own}`);
    const others = acksBy.filter((_, j) => j !== i).flat().map((a) => a.seq).sort((a, b) => a - b);
    const evs = await waitEvents(p, code, 4 + others.length);
    const got = seqs(evs).slice(4);
    assert.deepEqual(got, others, `${p.name} receives exactly the others' seqs, in increasing order`);
    // payloads belong to the seq: the k-th of one sender carries k
    const bySender = {};
    for (const e of evs.slice(4)) {
      const pl = JSON.parse(rawPayload(e));
      const s = ps.find((q) => q.id === e.json.sender_id);
      assert.ok(s && pl.from === s.name, `sender_id ${e.json.sender_id} matches payload ${rawPayload(e)}`);
      (bySender[s.name] ||= []).push(pl.k);
    }
    for (const [n, ks] of Object.entries(bySender)) assert.deepEqual(ks, Array.from({ length: N }, (_, k) => k), `${p.name}: ${n}'s events in order`);
  }
  const r = await getSession(main, code);
  assert.equal(r.json.event_count, 6 + 3 * N, 'event_count is the last seq');
});

test('seq is per room: one connection in two rooms, each room counts from 1', async () => {
  const alice = await P(main, 'Alice', 'drums');
  const bob = await P(main, 'Bob', 'piano');
  const { code: r1 } = await createRoom(alice);
  const { code: r2 } = await createRoom(alice);
  assert.notEqual(r1, r2);
  await joinRoom(bob, r1);
  await joinRoom(bob, r2);
  assert.equal((await broadcast(alice, r1, 'a', '1')).seq, 1);
  assert.equal((await broadcast(alice, r2, 'b', '2')).seq, 1);
  assert.equal((await broadcast(alice, r1, 'c', '3')).seq, 2);
  const e1 = await waitEvents(bob, r1, 2);
  const e2 = await waitEvents(bob, r2, 1);
  assert.deepEqual(e1.map((e) => [e.json.event_name, e.json.seq, rawPayload(e)]), [['a', 1, '1'], ['c', 2, '3']]);
  assert.deepEqual(e2.map((e) => [e.json.event_name, e.json.seq, rawPayload(e)]), [['b', 1, '2']]);
});

// ---- leaving ----------------------------------------------------------------

test('session:leave: session:left to the leaver, session:user-left exactly once to each other participant; no more events for the leaver', async () => {
  const { alice, bob, carol, code } = await trio();
  const left = await leaveRoom(bob, code);
  assert.equal(left.type, 'session:left');
  assert.equal(left.room_code, code);
  for (const p of [alice, carol]) {
    const m = await waitMsg(p, 'session:user-left', code, (j) => j.user_id === bob.id);
    assert.equal(m.json.room_code, code);
  }
  const fromB = bob.mark();
  const ack = await broadcast(alice, code, 'drum_hit', '{"after":"leave"}');
  await waitEvents(carol, code, 1);
  await roundTrip(bob);
  await sleep(300);
  assert.equal(leftCount(alice, code, bob.id), 1, 'Alice: user-left once');
  assert.equal(leftCount(carol, code, bob.id), 1, 'Carol: user-left once');
  assert.equal(leftCount(bob, code, bob.id), 0, 'the leaver gets session:left, not user-left');
  assert.equal(bob.since(fromB).filter((m) => m.json.type === 'event:broadcast').length, 0, `Bob gets no events after leaving (seq ${ack.seq})`);
  await expectError(bob, broadcastText(code, 'drum_hit', '{}'), 'NOT_IN_ROOM');
  await expectError(bob, { type: 'session:leave', room_code: code }, 'NOT_IN_ROOM');
  const r = await getSession(main, code);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id, carol.id].sort());
  // and he may come back
  const marks = [alice.mark(), carol.mark()];
  const j = await joinRoom(bob, code);
  assert.deepEqual(sortedIds(j.participants), [alice.id, bob.id, carol.id].sort());
  for (const [i, p] of [alice, carol].entries()) {
    await waitMsg(p, 'session:user-joined', code, (x) => x.user && x.user.user_id === bob.id, { from: marks[i] });
  }
});

test('abrupt disconnect (socket terminated) and a clean close each give session:user-left exactly once to each other participant', async () => {
  const { alice, bob, carol, code } = await trio();
  carol.terminate(); // no close frame: TCP gone
  for (const p of [alice, bob]) await waitMsg(p, 'session:user-left', code, (j) => j.user_id === carol.id);
  bob.w.close(1000, 'bye'); // close handshake
  await waitMsg(alice, 'session:user-left', code, (j) => j.user_id === bob.id);
  await roundTrip(alice);
  await sleep(400);
  assert.equal(leftCount(alice, code, carol.id), 1, 'Alice: user-left for Carol once');
  assert.equal(leftCount(bob, code, carol.id), 1, 'Bob: user-left for Carol once');
  assert.equal(leftCount(alice, code, bob.id), 1, 'Alice: user-left for Bob once');
  const r = await getSession(main, code);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id], 'only Alice is left');
  const ack = await broadcast(alice, code, 'drum_hit', '{"still":"here"}');
  assert.equal(ack.seq, 1);
});

test('a connection in two rooms that disconnects leaves both (user-left once in each)', async () => {
  const alice = await P(main, 'Alice', 'drums');
  const bob = await P(main, 'Bob', 'piano');
  const dave = await P(main, 'Dave', 'bass');
  const { code: r1 } = await createRoom(alice);
  const { code: r2 } = await createRoom(bob);
  await joinRoom(dave, r1);
  await joinRoom(dave, r2);
  await waitMsg(alice, 'session:user-joined', r1, (j) => j.user.user_id === dave.id);
  await waitMsg(bob, 'session:user-joined', r2, (j) => j.user.user_id === dave.id);
  dave.terminate();
  await waitMsg(alice, 'session:user-left', r1, (j) => j.user_id === dave.id);
  await waitMsg(bob, 'session:user-left', r2, (j) => j.user_id === dave.id);
  await sleep(300);
  assert.equal(leftCount(alice, r1, dave.id), 1);
  assert.equal(leftCount(bob, r2, dave.id), 1);
  assert.equal(alice.of('session:user-left', r2).length, 0, 'Alice is not in r2: no news from it');
  for (const [code, p] of [[r1, alice], [r2, bob]]) {
    const r = await getSession(main, code);
    assert.deepEqual(sortedIds(r.json.participants), [p.id]);
  }
});

test('heartbeat timeout: a participant that stops answering pings is closed (1001) and leaves the room: user-left exactly once', async () => {
  const alice = await P(pingSrv, 'Alice', 'drums'); // the ws package answers pings
  const bob = await P(pingSrv, 'Bob', 'piano');
  const { code } = await createRoom(alice);
  await joinRoom(bob, code);
  const eve = await openRawWS(pingSrv.port, { autoPong: false });
  clients.push({ terminate: () => eve.destroy() });
  const welcome = await eve.waitJSON('welcome');
  const eveId = welcome.json.connection_id;
  eve.sendJSON({ type: 'session:join', room_code: code, user: { name: 'Eve', instrument: 'theremin' }, id: 1 });
  const j = await eve.waitJSON('session:joined');
  assert.equal(j.json.user_id, eveId);
  await waitMsg(alice, 'session:user-joined', code, (x) => x.user.user_id === eveId);
  // Eve goes silent: pinged after 0.3 s, closed 0.3 s later
  const cf = await eve.expectClose(5000);
  assert.equal(cf.code, 1001, 'closed for not answering the ping');
  for (const p of [alice, bob]) await waitMsg(p, 'session:user-left', code, (x) => x.user_id === eveId, { ms: 5000 });
  await sleep(800); // more ping rounds: Alice and Bob answer and stay; no second user-left
  assert.equal(leftCount(alice, code, eveId), 1);
  assert.equal(leftCount(bob, code, eveId), 1);
  assert.equal(alice.w.closeInfo, undefined, 'Alice (answering pings) is still connected');
  const r = await getSession(pingSrv, code);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id, bob.id].sort());
  const ack = await broadcast(alice, code, 'drum_hit', '{"pad":"kick"}');
  const [ev] = await waitEvents(bob, code, 1);
  assert.equal(ev.json.seq, ack.seq);
});

// ---- the room's life ----------------------------------------------------------

test('an empty room stays for --room-grace (2 s) and is then gone: GET 404 ROOM_NOT_FOUND, join ROOM_NOT_FOUND', async () => {
  const graceSrv = await fresh(['--room-grace', '2'], 'grace test');
  const alice = await P(graceSrv, 'Alice', 'drums');
  const bob = await P(graceSrv, 'Bob', 'piano');
  const carol = await P(graceSrv, 'Carol');
  const { code } = await createRoom(alice);
  await joinRoom(bob, code);
  await leaveRoom(alice, code);
  await waitMsg(bob, 'session:user-left', code, (j) => j.user_id === alice.id);
  bob.terminate();
  const t0 = Date.now();
  await waitFor(async () => (await getSession(graceSrv, code)).json?.participants?.length === 0, 3000, 'the room to be empty');
  const r1 = await getSession(graceSrv, code);
  const t1 = Date.now() - t0;
  assert.equal(r1.status, 200, `the empty room is still there ${t1} ms after the last left: ${r1.text}`);
  assert.ok(t1 < 1500, `checked within the grace (${t1} ms)`);
  let last;
  await waitFor(async () => (last = await getSession(graceSrv, code)).status === 404, 10000, `the room to be removed (last ${last?.status} ${last?.text})`);
  const gone = Date.now() - t0;
  assert.ok(gone >= 1500, `removed after the 2 s grace, not before (${gone} ms)`);
  assert.equal(last.json?.error?.code, 'ROOM_NOT_FOUND', last.text);
  const e = await tryJoin(carol, code);
  assert.equal(e.error?.code, 'ROOM_NOT_FOUND', `join after the grace: ${e.m.raw}`);
});

test('a room nobody joins (POST /api/sessions) is removed --room-grace after its creation; a rejoin within the grace keeps a room', async () => {
  const graceSrv = await fresh(['--room-grace', '2'], 'grace (POST) test');
  const p = await postSession(graceSrv, { name: 'nobody comes' });
  assert.equal(p.status, 201, p.text);
  const code = p.json.room_code;
  const t0 = Date.now();
  assert.equal((await getSession(graceSrv, code)).status, 200);
  await waitFor(async () => (await getSession(graceSrv, code)).status === 404, 10000, 'the unjoined room to be removed');
  assert.ok(Date.now() - t0 >= 1500, `not before the grace (${Date.now() - t0} ms)`);

  const alice = await P(graceSrv, 'Alice', 'drums');
  const { code: c2 } = await createRoom(alice);
  await leaveRoom(alice, c2);
  await sleep(800);
  await joinRoom(alice, c2); // back within the grace
  await sleep(3000); // past the grace of the first leave
  const r = await getSession(graceSrv, c2);
  assert.equal(r.status, 200, `a room with someone in it is not removed: ${r.text}`);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id]);
});

test('room codes: --room-code-words JAZZ,FUNK --room-code-digits 3 give JAZZ-123 / FUNK-7 (at most 3 digits); codes are unique among live rooms', async () => {
  const graceSrv = await fresh(['--room-code-words', 'JAZZ,FUNK', '--room-code-digits', '3'], 'room code test');
  const alice = await P(graceSrv, 'Alice', 'drums');
  const codes = [];
  for (let i = 0; i < 6; i++) codes.push((await createRoom(alice)).code);
  const viaHttp = await postSession(graceSrv, {});
  assert.equal(viaHttp.status, 201, viaHttp.text);
  codes.push(viaHttp.json.room_code);
  // the number has up to 3 digits (it is not zero-padded: JAZZ-92 happens); with 7 codes
  // at least one has all 3 unless --room-code-digits is ignored
  for (const c of codes) assert.match(c, /^(JAZZ|FUNK)-\d{1,3}$/, `code ${c}`);
  assert.ok(codes.some((c) => /-\d{3}$/.test(c)), `some code has 3 digits: ${codes}`);
  assert.equal(new Set(codes).size, codes.length, `unique: ${codes}`);
});

test('ROOM_NOT_FOUND for an unknown code (join, GET); broadcasting to it is refused', async () => {
  const srv = await fresh([], 'unknown room test');
  const dave = await P(srv, 'Dave', 'bass');
  await expectError(dave, { type: 'session:join', room_code: 'NOSUCH-99999', user: { name: 'Dave' } }, 'ROOM_NOT_FOUND');
  const r = await getSession(srv, 'NOSUCH-99999');
  assert.equal(r.status, 404, r.text);
  assert.equal(r.json?.error?.code, 'ROOM_NOT_FOUND', r.text);
  assert.match(r.headers.get('content-type') || '', /application\/json/);
  // broadcasting to a room that does not exist: the connection is not in it (either code fits the contract)
  const r2 = await tryBroadcast(dave, 'NOSUCH-99998', 'drum_hit', '{}');
  assert.ok(r2.error && ['NOT_IN_ROOM', 'ROOM_NOT_FOUND'].includes(r2.error.code), `broadcast to an unknown room: ${r2.m.raw}`);
});

test('BAD_ROOM_CODE: room_code not a string, or with characters no code has', async () => {
  const srv = await fresh([], 'BAD_ROOM_CODE test');
  const dave = await P(srv, 'Dave', 'bass');
  await expectError(dave, { type: 'session:join', room_code: 42, user: { name: 'Dave' } }, 'BAD_ROOM_CODE');
  await expectError(dave, { type: 'session:join', room_code: 'no spaces <allowed>!', user: { name: 'Dave' } }, 'BAD_ROOM_CODE');
  await expectError(dave, { type: 'event:broadcast', room_code: ['MUSIC-42'], event_name: 'drum_hit', payload: {} }, 'BAD_ROOM_CODE');
  assert.equal(dave.w.closeInfo, undefined);
});

test('ROOM_FULL: --room-max-participants 2 is the default cap; a place freed can be taken', async () => {
  const graceSrv = await fresh(['--room-max-participants', '2'], 'ROOM_FULL test');
  const alice = await P(graceSrv, 'Alice', 'drums');
  const bob = await P(graceSrv, 'Bob', 'piano');
  const carol = await P(graceSrv, 'Carol');
  const { code } = await createRoom(alice);
  assert.equal((await getSession(graceSrv, code)).json.max_participants, 2);
  await joinRoom(bob, code);
  await expectError(carol, { type: 'session:join', room_code: code, user: { name: 'Carol' } }, 'ROOM_FULL');
  await sleep(200);
  assert.equal(joinedCount(alice, code, carol.id), 0, 'no user-joined for a refused join');
  const r = await getSession(graceSrv, code);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id, bob.id].sort());
  await expectError(carol, broadcastText(code, 'drum_hit', '{}'), 'NOT_IN_ROOM');
  await leaveRoom(bob, code);
  await joinRoom(carol, code);
});

test('ROOM_FULL: max_participants 1 in session:create makes a room of one', async () => {
  const graceSrv = await fresh([], 'ROOM_FULL (max_participants) test');
  const a2 = await P(graceSrv, 'Alice', 'drums');
  const b2 = await P(graceSrv, 'Bob', 'piano');
  const { code: c1 } = await createRoom(a2, { max_participants: 1 });
  const g = await getSession(graceSrv, c1);
  assert.equal(g.json.max_participants, 1);
  await expectError(b2, { type: 'session:join', room_code: c1, user: { name: 'Bob' } }, 'ROOM_FULL');
});

test('ALREADY_IN_ROOM: session:join for a room the connection is in (the creator, or a second join)', async () => {
  const srv = await fresh([], 'ALREADY_IN_ROOM test');
  const { alice, bob, carol, code } = await trio(srv);
  await expectError(alice, { type: 'session:join', room_code: code, user: { name: 'Alice' } }, 'ALREADY_IN_ROOM');
  await expectError(bob, { type: 'session:join', room_code: code, user: { name: 'Bob again' } }, 'ALREADY_IN_ROOM');
  await roundTrip(carol);
  await sleep(200);
  assert.equal(joinedCount(carol, code, bob.id), 0, 'no new user-joined');
  assert.equal(joinedCount(alice, code, bob.id), 1);
  const r = await getSession(srv, code);
  assert.equal(r.json.participants.length, 3, 'still three participants');
  assert.equal(byId(r.json.participants, bob.id).name, 'Bob', 'Bob\'s name unchanged');
});

test('BAD_USER: user not an object, no name, a name that is not a string of 1-64 bytes, an instrument that is not a string', async () => {
  const srv = await fresh([], 'BAD_USER test');
  const alice = await P(srv, 'Alice', 'drums');
  const dave = await P(srv, 'Dave');
  const { code } = await createRoom(alice);
  const bad = [
    'Dave', 5, null, [], {}, { name: '' }, { name: 5 }, { name: 'x'.repeat(65) }, { name: 'é'.repeat(33) },
    { name: 'Dave', instrument: 5 }, { name: 'Dave', instrument: { kind: 'bass' } },
  ];
  for (const u of bad) {
    await expectError(dave, { type: 'session:join', room_code: code, user: u }, 'BAD_USER');
  }
  await expectError(dave, { type: 'session:create', user: 'Dave' }, 'BAD_USER');
  await expectError(dave, { type: 'session:create', user: { name: '' } }, 'BAD_USER');
  await roundTrip(alice);
  await sleep(200);
  assert.equal(alice.of('session:user-joined', code).length, 0, 'no user-joined for refused joins');
  const r = await getSession(srv, code);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id]);
  // the limits themselves are fine: 64 bytes of name
  const ok = await tryJoin(dave, code, { user: { name: 'é'.repeat(32), instrument: 'bass' } });
  assert.equal(ok.error, undefined, `a 64-byte name is accepted: ${ok.m.raw}`);
  const uj = await waitMsg(alice, 'session:user-joined', code, (j) => j.user.user_id === dave.id);
  assert.equal(uj.json.user.name, 'é'.repeat(32));
});

// ---- HTTP -----------------------------------------------------------------------

test('POST /api/sessions: 201 with room_code, name, max_participants, created_at; WebSocket clients join it; BAD_JSON / BAD_FIELD', async () => {
  const t0 = Date.now();
  const p = await postSession(main, { name: 'Friday jam', max_participants: 8 });
  assert.equal(p.status, 201, p.text);
  assert.match(p.headers.get('content-type') || '', /application\/json/);
  assert.match(p.json.room_code, DEFAULT_CODE_RE);
  assert.equal(p.json.name, 'Friday jam');
  assert.equal(p.json.max_participants, 8);
  assert.equal(typeof p.json.created_at, 'number');
  assert.ok(p.json.created_at >= t0 - 1000 && p.json.created_at <= Date.now() + 1000, `created_at ${p.json.created_at}`);
  const code = p.json.room_code;
  const g = await getSession(main, code);
  assert.equal(g.status, 200, g.text);
  assert.deepEqual(g.json.participants, [], 'nobody is in a room made over HTTP');
  assert.equal(g.json.event_count, 0);
  assert.equal(g.json.created_at, p.json.created_at);
  assert.equal(g.json.max_participants, 8);

  const alice = await P(main, 'Alice', 'drums');
  const bob = await P(main, 'Bob', 'piano');
  const ja = await joinRoom(alice, code);
  assert.deepEqual(sortedIds(ja.participants), [alice.id]);
  await joinRoom(bob, code);
  await broadcast(alice, code, 'drum_hit', '{"pad":"kick"}');
  await waitEvents(bob, code, 1);

  const noBody = await postSession(main, undefined);
  assert.equal(noBody.status, 201, `the body is optional: ${noBody.text}`);
  assert.equal(noBody.json.max_participants, 16, 'default max_participants');
  const empty = await postSession(main, {});
  assert.equal(empty.status, 201, empty.text);
  assert.notEqual(empty.json.room_code, noBody.json.room_code);

  const badJson = await postSession(main, '{"name":');
  assert.equal(badJson.status, 400, badJson.text);
  assert.equal(badJson.json?.error?.code, 'BAD_JSON');
  for (const body of [{ name: 5 }, { name: 'x'.repeat(129) }, { max_participants: 0 }, { max_participants: 1001 },
    { max_participants: 2.5 }, { max_participants: '8' }]) {
    const r = await postSession(main, body);
    assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 60)}: ${r.text}`);
    assert.equal(r.json?.error?.code, 'BAD_FIELD', `${JSON.stringify(body).slice(0, 60)}: ${r.text}`);
  }
  const edge = await postSession(main, { name: 'x'.repeat(128), max_participants: 1000 });
  assert.equal(edge.status, 201, `a 128-byte name and 1000 participants are allowed: ${edge.text}`);
});

test('POST /api/sessions with --api-key needs Authorization: Bearer KEY (401 UNAUTHORIZED otherwise); GET does not', async () => {
  const none = await postSession(keySrv, { name: 'x' });
  assert.equal(none.status, 401, none.text);
  assert.equal(none.json?.error?.code, 'UNAUTHORIZED');
  const wrong = await postSession(keySrv, { name: 'x' }, { authorization: 'Bearer nope' });
  assert.equal(wrong.status, 401, wrong.text);
  const ok = await postSession(keySrv, { name: 'keyed' }, { authorization: 'Bearer sekret-key' });
  assert.equal(ok.status, 201, ok.text);
  const g = await getSession(keySrv, ok.json.room_code);
  assert.equal(g.status, 200, g.text);
  assert.equal(g.json.name, 'keyed');
  // WebSocket rooms are not behind the API key
  const alice = await P(keySrv, 'Alice', 'drums');
  await joinRoom(alice, ok.json.room_code);
});

test('GET /api/sessions/{code} follows the room: participants with name, instrument, joined_at; event_count is the last seq', async () => {
  const { alice, bob, carol, code } = await trio(main, { name: 'Tuesday' });
  let r = await getSession(main, code);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.room_code, code);
  assert.equal(r.json.name, 'Tuesday');
  assert.equal(r.json.event_count, 0);
  for (const p of [alice, bob, carol]) assertParticipant(byId(r.json.participants, p.id), p, 'GET');
  const created = r.json.created_at;
  assert.ok(byId(r.json.participants, alice.id).joined_at >= created - 5, 'joined after creation');
  assert.ok(byId(r.json.participants, carol.id).joined_at >= byId(r.json.participants, bob.id).joined_at, 'Carol joined after Bob');
  await broadcast(alice, code, 'a', '1');
  await broadcast(bob, code, 'b', '2');
  await broadcast(carol, code, 'c', '3');
  r = await getSession(main, code);
  assert.equal(r.json.event_count, 3);
  assert.equal(r.json.created_at, created, 'created_at does not move');
  await leaveRoom(carol, code);
  r = await getSession(main, code);
  assert.deepEqual(sortedIds(r.json.participants), [alice.id, bob.id].sort());
});

test('observers: the channel room:CODE carries the events over SSE; it cannot be published to directly', async () => {
  const { alice, code } = await trio();
  const s = await openSSE(main.url, `/sse/room:${code}`);
  sses.push(s);
  assert.equal(s.status, 200, s.body);
  await s.waitFor((c) => c.events.some((e) => e.type === 'connected'), 3000, 'connected');
  await broadcast(alice, code, 'drum_hit', '{"pad":"observed"}');
  await s.waitFor((c) => c.events.some((e) => e.data.includes('{"pad":"observed"}')), 3000,
    `the event on the SSE stream (got ${JSON.stringify(s.events.map((e) => e.data))})`);
  const res = await fetch(`${main.url}/api/publish`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ channel: `room:${code}`, event: 'drum_hit', data: { forged: true } }),
  });
  const text = await res.text();
  assert.ok(res.status >= 400 && res.status < 500, `publishing to room:${code} directly is refused: ${res.status} ${text}`);
  await sleep(200);
  assert.equal(alice.events(code).filter((e) => rawPayload(e).includes('forged')).length, 0);
});
