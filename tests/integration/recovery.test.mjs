// Recovery: Last-Event-ID and ?since=, history limits, epochs, multi-channel positions,
// and a real EventSource client whose connection is cut in the middle of a burst.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createRequire } from 'node:module';
import {
  startTutti, publish, waitFor, openSSE, getJSON, parsePosition, sseAgent,
} from '../lib/harness.mjs';

const require = createRequire(import.meta.url);
const EventSource = require('eventsource');

// ---- helpers ---------------------------------------------------------------

const offsets = (events) => events.map((e) => parsePosition(e.id)[0].offset);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

async function subscribers(url, channel) {
  return (await getJSON(url, `/health/channel/${channel}`)).json.subscribers;
}
async function waitSubscribers(url, channel, n) {
  await waitFor(async () => (await subscribers(url, channel)) === n, 5000, `${n} subscribers on ${channel}`);
}

async function publishN(url, channel, n, tag = channel) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await publish(url, channel, { tag, i }));
  return out;
}

// Opens a stream and waits for its `connected` event; returns [client, connectedData].
async function connect(url, path, headers = {}) {
  const c = await openSSE(url, path, { headers });
  assert.equal(c.status, 200, `GET ${path}: ${c.body}`);
  await c.waitForCount('connected', 1);
  return [c, JSON.parse(c.of('connected')[0].data)];
}

// ---- servers ---------------------------------------------------------------

let srv; // --history-size 5 (small on purpose), retry 100 ms for fast EventSource reconnects
before(async () => { srv = await startTutti(['--history-size', '5', '--sse-retry', '100']); });
after(async () => {
  sseAgent.destroy();
  assert.equal(await srv.stop(), 0, 'tutti exit code after SIGTERM');
});

// ---- tests -----------------------------------------------------------------

test('EventSource: connection destroyed twice during a 300-message burst, every message exactly once, in order', async () => {
  const s = await startTutti(['--sse-retry', '100', '--history-size', '1000']);
  const sockets = [];
  const es = new EventSource(`${s.url}/sse/burst`, {
    // lets the test reach and destroy the TCP connection under the client
    createConnection: (opts) => {
      const sock = net.createConnection({ host: opts.hostname || opts.host, port: opts.port });
      sockets.push(sock);
      return sock;
    },
  });
  const got = [];
  const connected = [];
  es.onmessage = (e) => got.push({ id: e.lastEventId, data: e.data });
  let published = 0;
  es.addEventListener('connected', (e) => connected.push({ id: e.lastEventId, data: JSON.parse(e.data), published }));
  es.addEventListener('recovery_incomplete', (e) => got.push({ id: 'RECOVERY_INCOMPLETE', data: e.data }));
  try {
    await waitFor(() => connected.length === 1, 5000, 'first connected event');
    await waitSubscribers(s.url, 'burst', 1);
    const sent = new Map();
    for (let i = 1; i <= 300; i++) {
      const a = await publish(s.url, 'burst', { i, pad: 'x'.repeat(i % 50) });
      sent.set(a.offset, JSON.stringify({ i, pad: 'x'.repeat(i % 50) }));
      published = a.offset;
      if (i === 100) sockets[sockets.length - 1].destroy(); // cut the live connection
      if (i === 200) {
        await waitFor(() => connected.length >= 2, 5000, 'EventSource reconnected after the first cut');
        sockets[sockets.length - 1].destroy();
      }
    }
    await waitFor(() => got.length >= 300, 15000, `300 messages (have ${got.length})`);
    await new Promise((r) => setTimeout(r, 200)); // give duplicates, if any, a chance to show
    assert.ok(connected.length >= 3, `EventSource reconnected twice (connected events: ${connected.length})`);
    assert.ok(sockets.length >= 3);
    for (const c of connected.slice(1)) {
      assert.equal(c.data.recovered, true, 'reconnect via Last-Event-ID recovered');
      // publishing went on while the client was away, so the reconnect really had messages to replay
      assert.ok(parsePosition(c.id)[0].offset < c.published,
        `reconnected at ${c.id} while ${c.published} were published: something to recover`);
    }
    const epoch = parsePosition(got[0].id)[0].epoch;
    assert.equal(got.length, 300, 'no duplicates');
    assert.deepEqual(got.map((g) => g.id), range(1, 300).map((o) => `${epoch}:${o}`));
    got.forEach((g, k) => assert.equal(g.data, sent.get(k + 1), `data of offset ${k + 1}`));
  } finally {
    es.close();
    assert.equal(await s.stop(), 0);
  }
});

test('?since=epoch:offset (and a bare offset) recovers exactly the missed messages, then live ones', async () => {
  const answers = await publishN(srv.url, 'since1', 5);
  const epoch = answers[0].epoch;

  const [c, d] = await connect(srv.url, `/sse/since1?since=${epoch}:2`);
  assert.equal(d.recovered, true);
  assert.equal(c.of('connected')[0].id, `${epoch}:2`, 'connected id = position before the first message that follows');
  await c.waitFor((cl) => cl.messages().length >= 3);
  const live = await publish(srv.url, 'since1', { live: true });
  await c.waitFor((cl) => cl.messages().length >= 4);
  assert.deepEqual(offsets(c.messages()), [3, 4, 5, 6]);
  assert.equal(c.messages()[3].id, live.id);
  assert.equal(c.messages()[0].data, '{"tag":"since1","i":2}');
  assert.equal(c.of('recovery_incomplete').length, 0);

  const [b, bd] = await connect(srv.url, '/sse/since1?since=4');
  assert.equal(bd.recovered, true);
  await b.waitFor((cl) => cl.messages().length >= 2);
  assert.deepEqual(offsets(b.messages()), [5, 6]);

  // Last-Event-ID wins over since
  const [h, hd] = await connect(srv.url, `/sse/since1?since=${epoch}:1`, { 'Last-Event-ID': `${epoch}:5` });
  assert.equal(hd.recovered, true);
  await h.waitFor((cl) => cl.messages().length >= 1);
  await publish(srv.url, 'since1', { after: true });
  await h.waitFor((cl) => cl.messages().length >= 2);
  assert.deepEqual(offsets(h.messages()), [6, 7]);

  // up to date: nothing replayed, recovered true
  const [u, ud] = await connect(srv.url, `/sse/since1?since=${epoch}:7`);
  assert.equal(ud.recovered, true);
  await publish(srv.url, 'since1', { last: true });
  await u.waitFor((cl) => cl.messages().length >= 1);
  assert.deepEqual(offsets(u.messages()), [8]);
  for (const x of [c, b, h, u]) x.close();
});

test('history_size 5: an old offset gives recovery_incomplete history_expired, then what is held, then live', async () => {
  const answers = await publishN(srv.url, 'small', 10);
  const epoch = answers[0].epoch;
  const hc = (await getJSON(srv.url, '/health/channel/small')).json;
  assert.equal(hc.history_size, 5);
  assert.equal(hc.last_offset, 10);

  const [c, d] = await connect(srv.url, `/sse/small?since=${epoch}:2`);
  assert.equal(d.recovered, false);
  await c.waitForCount('recovery_incomplete', 1);
  await c.waitFor((cl) => cl.messages().length >= 5);
  const ri = JSON.parse(c.of('recovery_incomplete')[0].data);
  assert.deepEqual(ri, {
    channel: 'small', reason: 'history_expired', requested: `${epoch}:2`, epoch, oldest_offset: 6, last_offset: 10,
  });
  assert.equal(c.of('recovery_incomplete')[0].id, undefined, 'recovery_incomplete has no id');
  // event order: connected, recovery_incomplete, then messages 6..10
  assert.deepEqual(c.events.slice(0, 2).map((e) => e.type), ['connected', 'recovery_incomplete']);
  assert.equal(c.of('connected')[0].id, `${epoch}:5`, 'connected id = position before message 6');
  await publish(srv.url, 'small', { live: 11 });
  await c.waitFor((cl) => cl.messages().length >= 6);
  assert.deepEqual(offsets(c.messages()), [6, 7, 8, 9, 10, 11]);

  // boundary: since 6 (oldest held is 7 now) is complete; since 5 is not
  const [ok, okd] = await connect(srv.url, `/sse/small?since=${epoch}:6`);
  assert.equal(okd.recovered, true);
  await ok.waitFor((cl) => cl.messages().length >= 5);
  assert.deepEqual(offsets(ok.messages()), [7, 8, 9, 10, 11]);
  assert.equal(ok.of('recovery_incomplete').length, 0);
  const [nok, nokd] = await connect(srv.url, `/sse/small?since=${epoch}:5`);
  assert.equal(nokd.recovered, false);
  await nok.waitForCount('recovery_incomplete', 1);
  assert.equal(JSON.parse(nok.of('recovery_incomplete')[0].data).reason, 'history_expired');
  for (const x of [c, ok, nok]) x.close();
});

test('wrong epoch gives epoch_changed; a position ahead of the channel or unreadable gives bad_position', async () => {
  const answers = await publishN(srv.url, 'epo', 3);
  const epoch = answers[0].epoch;
  const other = epoch === 'zzzzzzzz' ? 'yyyyyyyy' : 'zzzzzzzz';

  const [c, d] = await connect(srv.url, `/sse/epo?since=${other}:2`);
  assert.equal(d.recovered, false);
  await c.waitForCount('recovery_incomplete', 1);
  await c.waitFor((cl) => cl.messages().length >= 3);
  const ri = JSON.parse(c.of('recovery_incomplete')[0].data);
  assert.equal(ri.reason, 'epoch_changed');
  assert.equal(ri.channel, 'epo');
  assert.equal(ri.requested, `${other}:2`);
  assert.equal(ri.epoch, epoch);
  assert.equal(ri.last_offset, 3);
  assert.deepEqual(offsets(c.messages()), [1, 2, 3], 'every held message follows');
  assert.equal(parsePosition(c.messages()[0].id)[0].epoch, epoch);

  const [a, ad] = await connect(srv.url, `/sse/epo?since=${epoch}:999`);
  assert.equal(ad.recovered, false);
  await a.waitForCount('recovery_incomplete', 1);
  assert.equal(JSON.parse(a.of('recovery_incomplete')[0].data).reason, 'bad_position');
  await a.waitFor((cl) => cl.messages().length >= 3);
  assert.deepEqual(offsets(a.messages()), [1, 2, 3]);

  const [g, gd] = await connect(srv.url, '/sse/epo', { 'Last-Event-ID': 'not a position' });
  assert.equal(gd.recovered, false);
  await g.waitForCount('recovery_incomplete', 1);
  assert.equal(JSON.parse(g.of('recovery_incomplete')[0].data).reason, 'bad_position');
  for (const x of [c, a, g]) x.close();
});

test('idle channel: reconnect with the connected id as Last-Event-ID gets what was published meanwhile', async () => {
  const [c, d] = await connect(srv.url, '/sse/idle1');
  const pos = c.of('connected')[0].id;
  assert.deepEqual(d.channels, ['idle1']);
  c.close();
  await waitSubscribers(srv.url, 'idle1', 0);
  const answers = await publishN(srv.url, 'idle1', 3);
  const [r, rd] = await connect(srv.url, '/sse/idle1', { 'Last-Event-ID': pos });
  assert.equal(rd.recovered, true, `recovered with Last-Event-ID ${pos} (publishes got ${answers.map((a) => a.id)})`);
  assert.equal(r.of('recovery_incomplete').length, 0, r.of('recovery_incomplete').map((e) => e.data).join());
  await r.waitFor((cl) => cl.messages().length >= 3);
  assert.deepEqual(r.messages().map((m) => m.id), answers.map((a) => a.id));
  r.close();
});

test('multi-channel recovery with a comma-joined position (Last-Event-ID and since)', async () => {
  const [c] = await connect(srv.url, '/sse?channel=fA&channel=fB');
  await waitSubscribers(srv.url, 'fA', 1);
  await waitSubscribers(srv.url, 'fB', 1);
  const a1 = await publish(srv.url, 'fA', 'a1');
  await publish(srv.url, 'fB', 'b1');
  await publish(srv.url, 'fA', 'a2');
  await c.waitFor((cl) => cl.messages().length >= 3);
  const last = c.lastId;
  const ea = a1.epoch;
  const eb = parsePosition(last)[1].epoch;
  assert.equal(last, `${ea}:2,${eb}:1`);
  c.close();
  await waitSubscribers(srv.url, 'fA', 0);
  await publish(srv.url, 'fB', 'b2');
  await publish(srv.url, 'fA', 'a3');
  await publish(srv.url, 'fB', 'b3');

  const check = (client) => {
    const ms = client.messages();
    assert.equal(ms.length, 3, `recovered ${ms.map((m) => m.id)}`);
    // each id advances exactly one channel by one, starting from `last`
    let prev = parsePosition(last);
    const seen = { 0: [], 1: [] };
    for (const m of ms) {
      const p = parsePosition(m.id);
      assert.equal(p.length, 2);
      const moved = [0, 1].filter((k) => p[k].offset !== prev[k].offset);
      assert.equal(moved.length, 1, `one channel advances per message: ${m.id}`);
      const k = moved[0];
      assert.equal(p[k].offset, prev[k].offset + 1, `no gap: ${m.id}`);
      seen[k].push(JSON.parse(m.data));
      prev = p;
    }
    assert.deepEqual(seen, { 0: ['a3'], 1: ['b2', 'b3'] });
    assert.equal(ms[2].id, `${ea}:3,${eb}:3`);
  };

  const [r, rd] = await connect(srv.url, '/sse?channel=fA&channel=fB', { 'Last-Event-ID': last });
  assert.equal(rd.recovered, true);
  assert.equal(r.of('connected')[0].id, last);
  await r.waitFor((cl) => cl.messages().length >= 3);
  check(r);

  const [q, qd] = await connect(srv.url, `/sse?channel=fA&channel=fB&since=${encodeURIComponent(last)}`);
  assert.equal(qd.recovered, true);
  await q.waitFor((cl) => cl.messages().length >= 3);
  check(q);

  const live = await publish(srv.url, 'fA', 'a4');
  await r.waitFor((cl) => cl.messages().length >= 4);
  assert.equal(r.messages()[3].id, `${live.epoch}:4,${eb}:3`);

  // one channel expired (history 5), the other complete: recovery_incomplete only for the expired one
  await publishN(srv.url, 'fA', 6); // fA now 10, holds 6..10
  const [x, xd] = await connect(srv.url, '/sse?channel=fA&channel=fB', { 'Last-Event-ID': `${ea}:1,${eb}:2` });
  assert.equal(xd.recovered, false);
  await x.waitForCount('recovery_incomplete', 1);
  const ri = x.of('recovery_incomplete').map((e) => JSON.parse(e.data));
  assert.equal(ri.length, 1);
  assert.equal(ri[0].channel, 'fA');
  assert.equal(ri[0].reason, 'history_expired');
  await x.waitFor((cl) => cl.messages().length >= 6);
  const fbMsgs = x.messages().filter((m) => m.data.startsWith('"b'));
  assert.deepEqual(fbMsgs.map((m) => m.data), ['"b3"'], 'only the missed fB message');
  for (const y of [r, q, x]) y.close();
});

test('--workers 2, several clients cut and resumed with Last-Event-ID during a burst: exact delivery', async () => {
  const s = await startTutti(['--workers', '2', '--history-size', '1000']);
  const N = 200;
  const K = 12;
  try {
    const health = (await getJSON(s.url, '/health')).json;
    assert.equal(health.workers, 2);

    // a resumable client: all message events across its successive connections
    const clients = [];
    for (let k = 0; k < K; k++) {
      const st = { msgs: [], conn: null, incomplete: 0, connects: 0, gen: 0, lastId: undefined };
      st.open = async (lastId) => {
        const headers = lastId ? { 'Last-Event-ID': lastId } : {};
        const gen = ++st.gen; // events of a closed connection are ignored
        const c = await openSSE(s.url, '/sse/w2', {
          headers,
          keepRaw: false,
          onEvent: (e) => {
            if (gen !== st.gen) return;
            if (e.id !== undefined) st.lastId = e.id;
            if (e.type === 'message') st.msgs.push(e);
            if (e.type === 'recovery_incomplete') st.incomplete++;
          },
        });
        st.conn = c;
        st.connects++;
        await c.waitForCount('connected', 1);
      };
      await st.open();
      clients.push(st);
    }
    await waitSubscribers(s.url, 'w2', K);

    const sent = [];
    for (let i = 1; i <= N; i++) {
      sent.push(await publish(s.url, 'w2', { i }));
      if (i === 60 || i === 140) {
        // cut every other client and resume it from the last id it saw
        await Promise.all(clients.filter((_, k) => k % 2 === (i === 60 ? 0 : 1)).map(async (st) => {
          st.gen++;
          const lastId = st.lastId;
          st.conn.close();
          await st.open(lastId);
        }));
      }
    }
    for (const [k, st] of clients.entries()) {
      await waitFor(() => st.msgs.length >= N, 15000, `client ${k}: ${N} messages (has ${st.msgs.length})`);
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const [k, st] of clients.entries()) {
      assert.equal(st.incomplete, 0, `client ${k}: no recovery_incomplete`);
      assert.equal(st.connects, 2, `client ${k} was resumed once`);
      assert.deepEqual(st.msgs.map((m) => m.id), sent.map((a) => a.id), `client ${k}: every message once, in order`);
      assert.deepEqual(st.msgs.map((m) => JSON.parse(m.data).i), range(1, N));
      st.conn.close();
    }
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

test('--history-ttl: expired history gives history_expired; a forgotten channel starts a new epoch', async () => {
  const s = await startTutti(['--history-ttl', '1']);
  try {
    // kept alive by a subscriber: the history empties, the epoch stays
    const [keep] = await connect(s.url, '/sse/ttl1');
    const first = await publishN(s.url, 'ttl1', 3);
    const epoch = first[0].epoch;
    await waitFor(async () => (await getJSON(s.url, '/health/channel/ttl1')).json.history_size === 0, 5000, 'history to expire');
    const [c, d] = await connect(s.url, `/sse/ttl1?since=${epoch}:1`);
    assert.equal(d.recovered, false);
    await c.waitForCount('recovery_incomplete', 1);
    const ri = JSON.parse(c.of('recovery_incomplete')[0].data);
    assert.equal(ri.reason, 'history_expired');
    assert.equal(ri.epoch, epoch);
    assert.equal(ri.last_offset, 3);
    const live = await publish(s.url, 'ttl1', 'live');
    assert.equal(live.epoch, epoch, 'same epoch while the channel has a subscriber');
    assert.equal(live.offset, 4);
    await c.waitFor((cl) => cl.messages().length >= 1);
    assert.deepEqual(c.messages().map((m) => m.id), [live.id], 'nothing replayed, then live');
    c.close();
    keep.close();

    // no subscriber and no history: forgotten, and used again with a new epoch
    const old = await publishN(s.url, 'ttl2', 2);
    await waitFor(async () => (await getJSON(s.url, '/health/channel/ttl2')).json.exists === false, 8000, 'channel forgotten');
    const again = await publish(s.url, 'ttl2', 'again');
    assert.notEqual(again.epoch, old[0].epoch, 'new epoch');
    assert.equal(again.offset, 1);
    const [r, rd] = await connect(s.url, '/sse/ttl2', { 'Last-Event-ID': old[1].id });
    assert.equal(rd.recovered, false);
    await r.waitForCount('recovery_incomplete', 1);
    assert.equal(JSON.parse(r.of('recovery_incomplete')[0].data).reason, 'epoch_changed');
    await r.waitFor((cl) => cl.messages().length >= 1);
    assert.deepEqual(r.messages().map((m) => m.id), [again.id]);
    r.close();
  } finally {
    assert.equal(await s.stop(), 0);
  }
});
