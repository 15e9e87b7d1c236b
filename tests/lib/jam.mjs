// Jam-session (rooms) helpers for tests/integration/jam_*.test.mjs: named WebSocket
// participants over the `ws` package (every message kept with its raw text and arrival
// time), create / join / leave / broadcast with the reply matched by `ref`, raw payload
// extraction, quiet-period checks and the HTTP session routes.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { waitFor, getJSON } from './harness.mjs';
import { openWS, rawMember } from './ws.mjs';

export { rawMember };
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const DEFAULT_CODE_RE = /^[A-Z]+-\d+$/;

let nextRef = 1;
const newRef = (tag) => `${tag}-${nextRef++}`;
const short = (msgs) => JSON.stringify(msgs.map((m) => m.raw ?? '<binary>').slice(-12));

// A participant: a `ws` client past its welcome.
//   { name, instrument, w, id (connection_id), msgs, mark() -> index, since(i),
//     of(type, code?), events(code?), ...the helpers below bound to it }
// `registry` (an array) collects the clients so after() can terminate them.
export async function participant(server, name, { instrument, registry, path = '/ws' } = {}) {
  const w = await openWS(server.url, path, {
    onMessage: (m) => { m.at = performance.now(); },
  });
  if (registry) registry.push(w);
  const welcome = await w.waitType('welcome');
  const p = {
    name, instrument, w, server,
    id: welcome.json.connection_id,
    get msgs() { return w.msgs; },
    mark() { return w.msgs.length; },
    since(i) { return w.msgs.slice(i); },
    of(type, code) {
      return w.msgs.filter((m) => m.json && m.json.type === type && (code === undefined || m.json.room_code === code));
    },
    events(code) { return p.of('event:broadcast', code); },
    user() {
      const u = { name };
      if (instrument !== undefined) u.instrument = instrument;
      return u;
    },
    terminate() { w.terminate(); },
  };
  assert.equal(typeof p.id, 'string', `welcome has a connection_id: ${welcome.raw}`);
  return p;
}

// Sends `text` (a JSON object text with "id":ref inside) and waits for either the first
// message from index `from` on that satisfies `ok`, or an error whose ref is `ref`.
// Resolves to { m, error } (m: the message found; error: the error's json if that came).
async function sendAndWait(p, text, ref, ok, ms, what) {
  const from = p.mark();
  p.w.sendRaw(text);
  let found;
  await waitFor(() => {
    const rest = p.w.msgs.slice(from);
    found = rest.find((m) => m.json && m.json.type === 'error' && m.json.ref === ref)
      || rest.find((m) => m.json && ok(m.json));
    return found !== undefined || p.w.closeInfo !== undefined;
  }, ms, `${what} for ${p.name} (sent ${text.slice(0, 300)}; last messages ${short(p.w.msgs)})`);
  if (!found) throw new Error(`${p.name}'s connection closed (${JSON.stringify(p.w.closeInfo)}) before ${what}; sent ${text.slice(0, 300)}`);
  return found.json.type === 'error' && found.json.ref === ref ? { m: found, error: found.json } : { m: found, error: undefined };
}

// session:create -> { code, created (json), joined (json), createdMsg, joinedMsg }.
// Asserts session:created comes before session:joined and both name the same room.
export async function createRoom(p, { name, max_participants, user = p.user(), extra = {}, ms = 5000 } = {}) {
  const ref = newRef('create');
  const req = { type: 'session:create', ...extra, id: ref };
  if (name !== undefined) req.name = name;
  if (max_participants !== undefined) req.max_participants = max_participants;
  if (user !== undefined) req.user = user;
  const from = p.mark();
  const r = await sendAndWait(p, JSON.stringify(req), ref, (j) => j.type === 'session:created', ms, 'session:created');
  if (r.error) assert.fail(`${p.name}: session:create ${JSON.stringify(req)} answered an error: ${r.m.raw}`);
  const created = r.m.json;
  assert.equal(typeof created.room_code, 'string', `session:created has room_code: ${r.m.raw}`);
  assert.equal(created.user_id, p.id, `session:created user_id is the connection_id ${p.id}: ${r.m.raw}`);
  const code = created.room_code;
  await p.w.waitFor(() => p.of('session:joined', code).length >= 1, ms,
    `session:joined after session:created for ${p.name} (last ${short(p.w.msgs)})`);
  const joinedMsg = p.of('session:joined', code)[0];
  const iCreated = p.w.msgs.indexOf(r.m);
  const iJoined = p.w.msgs.indexOf(joinedMsg);
  assert.ok(iCreated >= from && iJoined > iCreated, `session:created (#${iCreated}) then session:joined (#${iJoined}): ${short(p.since(from))}`);
  return { code, created, joined: joinedMsg.json, createdMsg: r.m, joinedMsg };
}

// session:join -> the session:joined json (asserts success).
export async function joinRoom(p, code, { user = p.user(), ms = 5000 } = {}) {
  const r = await tryJoin(p, code, { user, ms });
  if (r.error) assert.fail(`${p.name}: session:join ${code} answered an error: ${r.m.raw}`);
  return r.json;
}

// session:join that may fail -> { json, error, m }.
export async function tryJoin(p, code, { user = p.user(), ms = 5000, rawCode } = {}) {
  const ref = newRef('join');
  const req = { type: 'session:join', room_code: rawCode !== undefined ? rawCode : code, id: ref };
  if (user !== undefined) req.user = user;
  const r = await sendAndWait(p, JSON.stringify(req), ref,
    (j) => j.type === 'session:joined' && (j.ref === ref || j.room_code === code), ms, `session:joined ${code}`);
  return { json: r.error ? undefined : r.m.json, error: r.error, m: r.m };
}

// session:leave -> session:left json (asserts success).
export async function leaveRoom(p, code, { ms = 5000 } = {}) {
  const ref = newRef('leave');
  const r = await sendAndWait(p, JSON.stringify({ type: 'session:leave', room_code: code, id: ref }), ref,
    (j) => j.type === 'session:left' && j.room_code === code, ms, `session:left ${code}`);
  if (r.error) assert.fail(`${p.name}: session:leave ${code} answered an error: ${r.m.raw}`);
  return r.m.json;
}

// Builds an event:broadcast text with the payload's raw JSON text inserted as is.
export function broadcastText(code, eventName, payloadRaw, { id, echo, extra = '' } = {}) {
  let t = `{"type":"event:broadcast","room_code":${JSON.stringify(code)},"event_name":${JSON.stringify(eventName)},"payload":${payloadRaw}`;
  if (echo !== undefined) t += `,"echo":${JSON.stringify(echo)}`;
  if (id !== undefined) t += `,"id":${JSON.stringify(id)}`;
  return t + extra + '}';
}

// event:broadcast with an id -> the event:ack json (asserts success).
export async function broadcast(p, code, eventName, payloadRaw, opts = {}) {
  const r = await tryBroadcast(p, code, eventName, payloadRaw, opts);
  if (r.error) assert.fail(`${p.name}: event:broadcast ${eventName} in ${code} answered an error: ${r.m.raw}`);
  return r.ack;
}

// event:broadcast with an id that may fail -> { ack, error, m, ref }.
export async function tryBroadcast(p, code, eventName, payloadRaw, { echo, ms = 5000, id } = {}) {
  const ref = id ?? newRef('ev');
  const text = broadcastText(code, eventName, payloadRaw, { id: ref, echo });
  const r = await sendAndWait(p, text, ref, (j) => j.type === 'event:ack' && j.ref === ref, ms, `event:ack ${ref}`);
  return { ack: r.error ? undefined : r.m.json, error: r.error, m: r.m, ref };
}

// Sends a request (an object, or a JSON object text) with an id added and expects an
// error with that ref and `code`; returns the error json.
export async function expectError(p, req, code, { ms = 5000 } = {}) {
  const ref = newRef('err');
  const tt = typeof req === 'string'
    ? req.replace(/\}\s*$/, `,"id":${JSON.stringify(ref)}}`)
    : JSON.stringify({ ...req, id: ref });
  const from = p.mark();
  p.w.sendRaw(tt);
  let found;
  await waitFor(() => (found = p.w.msgs.slice(from).find((m) => m.json && m.json.ref === ref)) !== undefined
    || p.w.closeInfo !== undefined, ms,
  `a reply with ref ${ref} to ${tt.slice(0, 200)} (expected error ${code}; got ${short(p.since(from))})`);
  if (!found) assert.fail(`${p.name}'s connection closed (${JSON.stringify(p.w.closeInfo)}) before the ${code} error for ${tt.slice(0, 200)}`);
  assert.equal(found.json.type, 'error', `expected error ${code} for ${tt.slice(0, 200)}, got ${found.raw}`);
  assert.equal(found.json.code, code, `error code for ${tt.slice(0, 200)}: ${found.raw}`);
  assert.equal(typeof found.json.message, 'string', `error has a message: ${found.raw}`);
  assert.equal(p.w.closeInfo, undefined, 'the connection stays open after an error');
  return found.json;
}

// A round trip on p's connection (ping/pong with a ref): everything the server queued for
// p before handling this request has been sent before the pong.
export async function roundTrip(p, ms = 5000) {
  const ref = newRef('ping');
  const r = await p.w.request({ type: 'ping', client_time: 1, id: ref }, ms);
  assert.equal(r.type, 'pong', JSON.stringify(r));
}

// Waits `ms` and asserts that p got no message matching pred from index `from` on.
export async function expectQuiet(p, from, pred, ms = 250, what = 'unexpected message') {
  await sleep(ms);
  const bad = p.since(from).filter((m) => m.json && pred(m.json));
  assert.deepEqual(bad.map((m) => m.raw), [], `${p.name} got ${what}`);
}

// Waits until p has at least n event:broadcast messages in room `code` (from index from).
export async function waitEvents(p, code, n, { from = 0, ms = 5000 } = {}) {
  const get = () => p.since(from).filter((m) => m.json && m.json.type === 'event:broadcast' && m.json.room_code === code);
  await p.w.waitFor(() => get().length >= n, ms,
    `${n} event:broadcast in ${code} for ${p.name} (have ${get().length}: ${short(get())})`);
  return get();
}

// Waits until p got a message of `type` in room code matching pred (from index from); returns it.
export async function waitMsg(p, type, code, pred = () => true, { from = 0, ms = 5000 } = {}) {
  let found;
  await p.w.waitFor(() => (found = p.since(from).find((m) => m.json && m.json.type === type
    && (code === undefined || m.json.room_code === code) && pred(m.json))) !== undefined, ms,
  `a ${type} in ${code} for ${p.name} (last ${short(p.w.msgs)})`);
  return found;
}

// The raw payload text of a received message.
export const rawPayload = (m) => rawMember(m.raw, 'payload');

// ---- HTTP -------------------------------------------------------------------

export async function getSession(server, code) {
  return getJSON(server.url, `/api/sessions/${encodeURIComponent(code)}`);
}

export async function postSession(server, body, headers = {}) {
  const res = await fetch(`${server.url}/api/sessions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, json, text };
}

export async function getRecording(server, code) {
  const res = await fetch(`${server.url}/api/sessions/${encodeURIComponent(code)}/recording`);
  const text = await res.text();
  const lines = text.split('\n').filter((l) => l !== '');
  let json;
  try { json = JSON.parse(text); } catch { /* ndjson */ }
  return { status: res.status, headers: res.headers, text, lines, json };
}

// Participants of a GET /api/sessions/{code} answer, sorted by user_id.
export const sortedIds = (participants) => participants.map((x) => x.user_id).sort();

// ---- servers ------------------------------------------------------------------

// Stops every server (SIGTERM) and asserts each exited with 0; the message carries the
// non-JSON stderr (sanitizer reports) of any that did not.
export async function stopAllExpectZero(servers, names = []) {
  const codes = [];
  for (const s of servers) codes.push(await s.stop());
  const bad = servers.map((s, i) => [s, i]).filter(([, i]) => codes[i] !== 0);
  const detail = bad.map(([s, i]) => {
    const text = s.stderr.split('\n').filter((l) => l && !l.startsWith('{')).slice(0, 40).join('\n');
    return `--- ${names[i] ?? `server ${i}`} (port ${s.port}) exited ${codes[i]}:\n${text}`;
  }).join('\n');
  assert.deepEqual(codes, servers.map(() => 0), `every tutti exits with 0 after SIGTERM\n${detail}`);
}
