// Redis engine presence: WebSocket subscribers with "presence" info are members of the
// channel's presence on every node; unsubscribe and close remove them; a killed node's
// members vanish after --presence-ttl.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor, getJSON } from '../lib/harness.mjs';
import { openWS } from '../lib/ws.mjs';
import { startRedis, startTuttiRedis, logTail } from '../lib/redis.mjs';

let redis;
let A; // default --presence-ttl (30 s)
let B; // --presence-ttl 2
const open = [];

before(async () => {
  redis = await startRedis();
  A = await startTuttiRedis(redis.url(0), ['--workers', '2']);
  B = await startTuttiRedis(redis.url(0), ['--workers', '1', '--presence-ttl', '2']);
});

after(async () => {
  for (const w of open) w.terminate();
  const codes = [];
  for (const t of [A, B]) if (t) codes.push(await t.stop());
  await redis?.cleanup();
  assert.ok(codes.every((c) => c === 0), `tutti exit codes after SIGTERM: ${codes}`);
});

// A WebSocket client on `node`: { w, id (connection_id) }.
async function client(node) {
  const w = await openWS(node.url);
  open.push(w);
  const welcome = await w.waitType('welcome');
  assert.ok(welcome.json.server_info.features.includes('presence'), `features: ${welcome.json.server_info.features}`);
  return { w, id: welcome.json.connection_id };
}
async function join(c, channel, presence) {
  const r = await c.w.request(presence === undefined ? { type: 'subscribe', channel } : { type: 'subscribe', channel, presence });
  assert.equal(r.type, 'subscribed', JSON.stringify(r));
}

const sortMembers = (ms) => [...ms].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
async function httpMembers(node, channel) {
  const r = await getJSON(node.url, `/api/channels/${channel}/presence`);
  assert.equal(r.status, 200, `GET presence on ${node.url}: ${r.status} ${r.text}`);
  assert.equal(r.json.channel, channel);
  assert.ok(Array.isArray(r.json.members), r.text);
  return sortMembers(r.json.members);
}
async function wsMembers(c, channel) {
  const r = await c.w.request({ type: 'presence', channel });
  assert.equal(r.type, 'presence', JSON.stringify(r));
  assert.equal(r.channel, channel);
  return sortMembers(r.members);
}
// Polls both nodes until each lists exactly `want` (order-free).
async function expectMembers(nodes, channel, want, ms = 3000) {
  const w = sortMembers(want);
  let last;
  try {
    await waitFor(async () => {
      last = [];
      for (const n of nodes) last.push(await httpMembers(n, channel));
      return last.every((l) => JSON.stringify(l) === JSON.stringify(w));
    }, ms);
  } catch {
    assert.fail(`presence of ${channel}: want ${JSON.stringify(w)} on every node, got ${JSON.stringify(last)}`);
  }
}

let alice;
let bob;

test('members on both nodes are listed by GET /api/channels/{ch}/presence and the WebSocket presence request on each node', async () => {
  assert.deepEqual(await httpMembers(A, 'room:empty'), [], 'no members yet');
  alice = await client(A);
  bob = await client(B);
  const quiet = await client(A); // subscribed without presence: not a member
  await join(alice, 'room:1', { name: 'alice' });
  await join(bob, 'room:1', { name: 'bob', tags: [1, 'two', null], nested: { ok: true } });
  await join(quiet, 'room:1');
  const want = [
    { id: alice.id, info: { name: 'alice' } },
    { id: bob.id, info: { name: 'bob', tags: [1, 'two', null], nested: { ok: true } } },
  ];
  await expectMembers([A, B], 'room:1', want);
  assert.deepEqual(await wsMembers(alice, 'room:1'), sortMembers(want), 'presence request on node A');
  assert.deepEqual(await wsMembers(bob, 'room:1'), sortMembers(want), 'presence request on node B');
  assert.deepEqual(await wsMembers(quiet, 'room:1'), sortMembers(want), 'presence asked by a non-member');
  // presence is per channel
  await join(alice, 'room:2', 'alice in room 2');
  await expectMembers([A, B], 'room:2', [{ id: alice.id, info: 'alice in room 2' }]);
  await expectMembers([A, B], 'room:1', want);
  quiet.w.close();
});

test('a member stays listed past --presence-ttl while its node renews it (every ttl/3)', async () => {
  // bob's node has --presence-ttl 2: without renewal he would vanish within 2 s
  const end = Date.now() + 3500;
  let checks = 0;
  while (Date.now() < end) {
    const ms = await httpMembers(A, 'room:1');
    assert.ok(ms.some((m) => m.id === bob.id), `bob still listed ${3500 - (end - Date.now())} ms into the check: ${JSON.stringify(ms)}`);
    checks++;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(checks > 10);
});

test('unsubscribe removes the member; subscribing again with new info adds it back; closing the connection removes it', async () => {
  const r = await alice.w.request({ type: 'unsubscribe', channel: 'room:1' });
  assert.equal(r.type, 'unsubscribed', JSON.stringify(r));
  const bobMember = { id: bob.id, info: { name: 'bob', tags: [1, 'two', null], nested: { ok: true } } };
  await expectMembers([A, B], 'room:1', [bobMember]);
  await expectMembers([A, B], 'room:2', [{ id: alice.id, info: 'alice in room 2' }]); // other channel kept

  await join(alice, 'room:1', { name: 'alice', back: true });
  await expectMembers([A, B], 'room:1', [bobMember, { id: alice.id, info: { name: 'alice', back: true } }]);

  const carol = await client(B);
  await join(carol, 'room:1', { name: 'carol' });
  await expectMembers([A, B], 'room:1', [bobMember, { id: alice.id, info: { name: 'alice', back: true } }, { id: carol.id, info: { name: 'carol' } }]);
  carol.w.close();
  await expectMembers([A, B], 'room:1', [bobMember, { id: alice.id, info: { name: 'alice', back: true } }]);
  const dave = await client(A);
  await join(dave, 'room:1', { name: 'dave' });
  await expectMembers([A], 'room:1', [bobMember, { id: alice.id, info: { name: 'alice', back: true } }, { id: dave.id, info: { name: 'dave' } }]);
  dave.w.terminate(); // TCP closed without a close frame
  await expectMembers([A, B], 'room:1', [bobMember, { id: alice.id, info: { name: 'alice', back: true } }]);
});

test('SIGKILL of node B (--presence-ttl 2): its member disappears from node A\'s list within ~2-4 s', async () => {
  const both = [{ id: alice.id, info: { name: 'alice', back: true } },
    { id: bob.id, info: { name: 'bob', tags: [1, 'two', null], nested: { ok: true } } }];
  // let node B renew bob at least once after alice's last change (B renews every 2/3 s):
  // both stay listed meanwhile
  const until = Date.now() + 1200;
  while (Date.now() < until) {
    await expectMembers([A], 'room:1', both, 500);
    await new Promise((r) => setTimeout(r, 100));
  }
  const killed = B;
  B = null;
  killed.proc.kill('SIGKILL');
  await killed.stop();
  const t0 = Date.now();
  const right = (list) => list.some((m) => m.id === bob.id);
  const stillThere = right(await httpMembers(A, 'room:1'));
  let last;
  try {
    await waitFor(async () => { last = await httpMembers(A, 'room:1'); return !right(last); }, 6000);
  } catch {
    assert.fail(`bob still listed ${Date.now() - t0} ms after his node was killed: ${JSON.stringify(last)}\n${logTail(A, 10)}`);
  }
  const elapsed = Date.now() - t0;
  assert.ok(elapsed <= 4500, `bob vanished ${elapsed} ms after the kill (ttl 2 s)`);
  assert.deepEqual(last, [{ id: alice.id, info: { name: 'alice', back: true } }],
    'alice (a member of live node A, --presence-ttl 30) stays when bob (node B, --presence-ttl 2) expires');
  assert.deepEqual(await wsMembers(alice, 'room:1'), last);
  console.log(`# presence: member of the killed node listed right after the kill: ${stillThere}; gone after ${elapsed} ms`);
});
