// Jam-session recordings and replay: GET /api/sessions/{code}/recording (ndjson in seq
// order, payloads byte for byte, bounded by --recording-size, outliving the room for
// --recording-ttl) and session:replay (replay:start, replay:event in order with the
// original spacing divided by speed, replay:end).
// Contract: docs/PROTOCOL.md "Jam sessions (rooms)", docs/API.md "Jam sessions".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti, waitFor } from '../lib/harness.mjs';
import {
  participant, createRoom, joinRoom, leaveRoom, broadcast, expectError, waitMsg, rawMember,
  rawPayload, getSession, getRecording, sleep,
  stopAllExpectZero,
} from '../lib/jam.mjs';

const GRACE = 1;
const TTL = 6;
let rec; // --room-grace 1 --recording-ttl 6
let small; // --recording-size 5
const servers = [];
const serverName = new Map();
const clients = [];

before(async () => {
  const started = await Promise.allSettled([
    startTutti(['--workers', '2', '--room-grace', String(GRACE), '--recording-ttl', String(TTL)]),
    startTutti(['--workers', '1', '--recording-size', '5']),
  ]);
  started.forEach((s, i) => { if (s.status === 'fulfilled') serverName.set(s.value, ['rec (--room-grace 1 --recording-ttl 6)', 'small (--recording-size 5)'][i]); });
  for (const s of started) if (s.status === 'fulfilled') servers.push(s.value);
  for (const s of started) if (s.status === 'rejected') throw s.reason;
  [rec, small] = started.map((s) => s.value);
});

after(async () => {
  for (const c of clients) { try { c.terminate(); } catch { /* closed */ } }
  await stopAllExpectZero(servers, servers.map((s) => serverName.get(s)));
});

const P = (server, name, instrument) => participant(server, name, { instrument, registry: clients });

async function duo(server) {
  const alice = await P(server, 'Alice', 'drums');
  const bob = await P(server, 'Bob', 'piano');
  const { code } = await createRoom(alice);
  await joinRoom(bob, code);
  return { alice, bob, code };
}

const PAYLOADS = [
  ['drum_hit', '{"note":"C4", "velocity":80,"timestamp":1634567890123}'],
  ['piano_note', '{"note":"D#5","velocity":64,"duration":250.0}'],
  ['pattern_change', '{"patternId":"p-7","bpm":120,"steps":[1,0,0,1, 0,0,1,0]}'],
  ['custom:fx', '"a \\"quoted\\" string \\u00e9 ü"'],
  ['midi_cc', '[176,74,  100]'],
  ['tempo', '1e2'],
  ['drum_hit', '{"pad":"snare","nested":{"a":[{}],"b":null}}'],
  ['piano_note', '{"note":"G4","velocity":127}'],
];

// Alternating Alice and Bob, `gap` ms apart; resolves to the list of
// { sender, name, payload, ack, ev } where ev is the event:broadcast the other one got
// (its seq and server_time are what the recording and replays must carry).
async function play(alice, bob, code, gap = 0) {
  const sent = [];
  const marks = new Map([[alice, alice.mark()], [bob, bob.mark()]]);
  for (const [i, [name, payload]] of PAYLOADS.entries()) {
    const p = i % 2 === 0 ? alice : bob;
    const ack = await broadcast(p, code, name, payload);
    sent.push({ sender: p, name, payload, ack });
    if (gap && i < PAYLOADS.length - 1) await sleep(gap);
  }
  for (const s of sent) {
    const other = s.sender === alice ? bob : alice;
    const m = await waitMsg(other, 'event:broadcast', code, (j) => j.seq === s.ack.seq, { from: marks.get(other) });
    s.ev = m.json;
  }
  return sent;
}

function checkLine(line, s, what) {
  let j;
  try { j = JSON.parse(line); } catch { assert.fail(`${what}: not JSON: ${line}`); }
  assert.equal(j.seq, s.ack.seq, `${what}: seq in ${line}`);
  assert.equal(j.server_time, s.ev.server_time, `${what}: server_time (the relayed event's) in ${line}`);
  assert.equal(j.sender_id, s.sender.id, `${what}: sender_id in ${line}`);
  assert.equal(j.event_name, s.name, `${what}: event_name in ${line}`);
  assert.equal(rawMember(line, 'payload'), s.payload, `${what}: payload byte for byte in ${line}`);
}

test('GET /api/sessions/{code}/recording: one JSON line per event in seq order, with seq, server_time, sender_id, event_name and the payload byte for byte', async () => {
  const { alice, bob, code } = await duo(rec);
  const sent = await play(alice, bob, code);
  assert.deepEqual(sent.map((s) => s.ack.seq), sent.map((_, i) => i + 1));
  const r = await getRecording(rec, code);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') || '', /^application\/x-ndjson/);
  assert.ok(r.text.endsWith('\n'), 'every line ends with \\n');
  assert.equal(r.lines.length, sent.length, r.text);
  r.lines.forEach((l, i) => checkLine(l, sent[i], `line ${i + 1}`));
  const times = r.lines.map((l) => JSON.parse(l).server_time);
  for (let i = 1; i < times.length; i++) assert.ok(times[i] >= times[i - 1], `server_time never goes back: ${times}`);

  const none = await getRecording(rec, 'NOSUCH-4242');
  assert.equal(none.status, 404, none.text);
  assert.equal(none.json?.error?.code, 'ROOM_NOT_FOUND', none.text);
});

test('the recording of a live room with no event yet is 200 with no line (404 is only for neither a room nor a recording)', async () => {
  const { code } = await duo(rec);
  const empty = await getRecording(rec, code);
  assert.equal(empty.status, 200, `a live room with no event yet: ${empty.status} ${empty.text}`);
  assert.deepEqual(empty.lines, [], 'no line yet');
});

test('the recording is bounded by --recording-size 5: after 8 events it holds the last 5 (seq 4-8)', async () => {
  const { alice, bob, code } = await duo(small);
  const sent = await play(alice, bob, code);
  const r = await getRecording(small, code);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.lines.length, 5, r.text);
  r.lines.forEach((l, i) => checkLine(l, sent[3 + i], `line ${i + 1}`));
  const g = await getSession(small, code);
  assert.equal(g.json.event_count, 8, 'event_count is still the last seq');
});

test('the recording outlives the room: after --room-grace the room is 404 but its recording is served, until --recording-ttl', async () => {
  const { alice, bob, code } = await duo(rec);
  const sent = [];
  for (const [name, payload] of PAYLOADS.slice(0, 3)) sent.push({ sender: alice, name, payload, ack: await broadcast(alice, code, name, payload) });
  for (const s of sent) s.ev = (await waitMsg(bob, 'event:broadcast', code, (j) => j.seq === s.ack.seq)).json;
  await leaveRoom(bob, code);
  const t0 = Date.now();
  await leaveRoom(alice, code);
  let last;
  try {
    await waitFor(async () => (last = await getSession(rec, code)).status === 404, 10000);
  } catch {
    assert.fail(`the room was still there 10 s after the last one left (--room-grace ${GRACE}): ${last.status} ${last.text}`);
  }
  const goneAt = (Date.now() - t0) / 1000;
  assert.ok(goneAt < TTL - 1.5, `the room went at ${goneAt} s, early enough to check the recording within the ttl`);
  const r = await getRecording(rec, code);
  assert.equal(r.status, 200, `recording after the room went (${goneAt} s): ${r.status} ${r.text}`);
  assert.equal(r.lines.length, 3, r.text);
  r.lines.forEach((l, i) => checkLine(l, sent[i], `line ${i + 1}`));

  // then the recording expires too
  try {
    await waitFor(async () => { last = await getRecording(rec, code); return last.status === 404 || last.lines.length === 0; }, (TTL + GRACE + 8) * 1000);
  } catch {
    assert.fail(`the recording's events were still served ${((Date.now() - t0) / 1000).toFixed(1)} s after they were played, with --recording-ttl ${TTL}: ${last.status} ${last.text.slice(0, 300)}`);
  }
  const expiredAt = (Date.now() - t0) / 1000;
  assert.ok(expiredAt >= TTL - 1, `the recording lived about --recording-ttl (${expiredAt} s)`);
  assert.equal(last.status, 404, `with neither the room nor a recorded event left the answer is 404 ROOM_NOT_FOUND, got ${last.status} ${JSON.stringify(last.text)}`);
  assert.equal(last.json?.error?.code, 'ROOM_NOT_FOUND', last.text);
});

// Sends session:replay from p and waits for replay:end; returns { start, events, end }.
async function replay(p, code, speed, ms = 10000) {
  const from = p.mark();
  const req = { type: 'session:replay', room_code: code, id: `replay-${code}-${speed}` };
  if (speed !== undefined) req.speed = speed;
  p.w.send(req);
  const end = await waitMsg(p, 'replay:end', code, () => true, { from, ms });
  const got = p.since(from).filter((m) => m.json && m.json.room_code === code);
  const start = got.find((m) => m.json.type === 'replay:start');
  const events = got.filter((m) => m.json.type === 'replay:event');
  assert.ok(start, `replay:start came: ${JSON.stringify(got.map((m) => m.raw))}`);
  const iS = p.w.msgs.indexOf(start);
  const iE = p.w.msgs.indexOf(end);
  assert.ok(events.every((e) => { const i = p.w.msgs.indexOf(e); return i > iS && i < iE; }), 'replay:start, the events, then replay:end');
  return { start, events, end, from };
}

function checkReplayed(events, sent, code, what) {
  assert.equal(events.length, sent.length, `${what}: ${events.length} replay:event for ${sent.length} events`);
  events.forEach((e, i) => {
    const s = sent[i];
    assert.equal(e.json.room_code, code);
    assert.equal(e.json.event_name, s.name, `${what} #${i + 1}: event_name`);
    assert.equal(e.json.sender_id, s.sender.id, `${what} #${i + 1}: sender_id`);
    assert.equal(e.json.seq, s.ack.seq, `${what} #${i + 1}: seq`);
    assert.equal(e.json.server_time, s.ev.server_time, `${what} #${i + 1}: server_time (the relayed event's)`);
    assert.equal(rawPayload(e), s.payload, `${what} #${i + 1}: payload byte for byte in ${e.raw}`);
  });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

// The recorded events are 100 ms apart; shared by the replay tests.
let spaced;
async function spacedRoom() {
  if (spaced) return spaced;
  const { alice, bob, code } = await duo(rec);
  const sent = await play(alice, bob, code, 100);
  spaced = { alice, bob, code, sent };
  return spaced;
}

test('session:replay at speed 2 by a non-participant: replay:start, the events in order as replay:event, replay:end; spacing halved', async () => {
  const { code, sent } = await spacedRoom();
  const dave = await P(rec, 'Dave', 'listener');
  const { start, events, end } = await replay(dave, code, 2);
  assert.equal(start.json.count, sent.length, `replay:start count: ${start.raw}`);
  assert.equal(end.json.count, sent.length, `replay:end count: ${end.raw}`);
  const span = sent.at(-1).ev.server_time - sent[0].ev.server_time;
  assert.equal(typeof start.json.duration_ms, 'number', start.raw);
  assert.ok(Math.abs(start.json.duration_ms - span / 2) <= 5 || Math.abs(start.json.duration_ms - span) <= 5,
    `duration_ms ${start.json.duration_ms} is the recording's span (${span} ms) or that over the speed`);
  checkReplayed(events, sent, code, 'replay');
  assert.equal(dave.of('event:broadcast').length, 0, 'a replay is not a live event');

  // timing: the original gaps (by server_time) over 2, measured at arrival
  const expected = [];
  const actual = [];
  for (let i = 1; i < sent.length; i++) {
    expected.push((sent[i].ev.server_time - sent[i - 1].ev.server_time) / 2);
    actual.push(events[i].at - events[i - 1].at);
  }
  const errs = actual.map((a, i) => Math.abs(a - expected[i]));
  const report = `expected gaps ${expected.map((x) => x.toFixed(0))}, got ${actual.map((x) => x.toFixed(0))}`;
  assert.ok(expected.every((g) => g >= 40), `the originals were ~100 ms apart: ${report}`);
  assert.ok(median(errs) <= 40, `median gap error ${median(errs).toFixed(1)} ms > 40: ${report}`);
  // every gap within 40 ms of its target; one load hiccup of up to 80 ms is forgiven
  const over40 = errs.filter((e) => e > 40);
  assert.ok(over40.length <= 1 && Math.max(...errs) <= 80, `gaps off by more than 40 ms: ${over40.map((e) => e.toFixed(0))}: ${report}`);
  const total = events.at(-1).at - events[0].at;
  assert.ok(Math.abs(total - span / 2) <= 45, `replay span ${total.toFixed(0)} ms for ${span} ms recorded at speed 2: ${report}`);
});

test('session:replay at the default speed 1 keeps the original spacing; one replay at a time per connection', async () => {
  const { code, sent, alice } = await spacedRoom();
  const eve = await P(rec, 'Eve', 'listener');
  const from = eve.mark();
  eve.w.send({ type: 'session:replay', room_code: code, id: 'first' });
  await waitMsg(eve, 'replay:start', code, () => true, { from });
  // a second replay while the first runs is refused
  const second = await eve.w.request({ type: 'session:replay', room_code: code, speed: 4, id: 'second' });
  assert.equal(second.type, 'error', `a second replay on the same connection is refused: ${JSON.stringify(second)}`);
  const end = await waitMsg(eve, 'replay:end', code, () => true, { from, ms: 10000 });
  await sleep(300);
  const got = eve.since(from).filter((m) => m.json.room_code === code);
  const events = got.filter((m) => m.json.type === 'replay:event');
  assert.equal(got.filter((m) => m.json.type === 'replay:start').length, 1, 'one replay:start');
  assert.equal(got.filter((m) => m.json.type === 'replay:end').length, 1, 'one replay:end');
  assert.equal(end.json.count, sent.length);
  checkReplayed(events, sent, code, 'replay at speed 1');
  const span = sent.at(-1).ev.server_time - sent[0].ev.server_time;
  const total = events.at(-1).at - events[0].at;
  assert.ok(Math.abs(total - span) <= 120, `replay span ${total.toFixed(0)} ms for ${span} ms recorded at speed 1`);
  // a participant may replay too, and afterwards the same connection may replay again
  const again = await replay(alice, code, 100);
  checkReplayed(again.events, sent, code, 'replay at speed 100');
  const fast = again.events.at(-1).at - again.events[0].at;
  assert.ok(fast < span / 3, `speed 100 is quick (${fast.toFixed(0)} ms for ${span} ms)`);
});

test('replay:event frames go out when due: the first right after replay:start, the next one original gap later (600 ms)', async () => {
  const { alice, bob, code } = await duo(rec);
  const a1 = await broadcast(alice, code, 'drum_hit', '{"n":1}');
  await sleep(600);
  const a2 = await broadcast(alice, code, 'drum_hit', '{"n":2}');
  const ev2 = await waitMsg(bob, 'event:broadcast', code, (j) => j.seq === a2.seq);
  const ev1 = bob.events(code).find((m) => m.json.seq === a1.seq);
  const gap = ev2.json.server_time - ev1.json.server_time;
  const dave = await P(rec, 'Dave', 'listener');
  const { start, events, end } = await replay(dave, code, 1);
  assert.equal(events.length, 2);
  const first = events[0].at - start.at;
  const second = events[1].at - events[0].at;
  const last = end.at - events[1].at;
  const report = `replay:start -> event 1: ${first.toFixed(0)} ms, event 1 -> event 2: ${second.toFixed(0)} ms (recorded ${gap} ms apart), event 2 -> replay:end: ${last.toFixed(0)} ms`;
  assert.ok(first <= 150, `the first event is due at once: ${report}`);
  assert.ok(Math.abs(second - gap) <= 150, `the second follows after the original gap: ${report}`);
});

test('session:replay of an unknown room is ROOM_NOT_FOUND', async () => {
  const dave = await P(rec, 'Dave', 'listener');
  await expectError(dave, { type: 'session:replay', room_code: 'NOSUCH-4243' }, 'ROOM_NOT_FOUND');
});
