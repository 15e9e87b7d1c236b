// Clients that go away before the Redis engine has answered: the engine's answer must
// find nothing to call (the server, built with AddressSanitizer, exits 0 only if no
// freed memory was touched), and the others keep working.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startRedis, startTuttiRedis, redisCli } from '../lib/redis.mjs';
import { openWS } from '../lib/ws.mjs';
import { waitFor } from '../lib/harness.mjs';

let redis;
let t;
before(async () => {
  redis = await startRedis();
  t = await startTuttiRedis(redis.url(0), ['--workers', '1']);
});
after(async () => {
  assert.equal(await t.stop(), 0, `tutti exits 0 (no AddressSanitizer report)\n${t.stderr.slice(-3000)}`);
  await redis.cleanup();
});

// Sends `bytes` and closes at once, so the read and the end arrive together.
function hitAndRun(bytes) {
  return new Promise((resolve) => {
    const s = net.connect({ port: t.port, host: '127.0.0.1' }, () => { s.end(bytes); });
    s.on('error', () => {});
    s.on('close', resolve);
    s.resume();
  });
}

const upgrade = (path) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
  + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

test('SSE and WebSocket subscribers that close before the engine answers', async () => {
  for (let i = 0; i < 30; i++) {
    await hitAndRun(`GET /sse/race${i % 3} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await hitAndRun(upgrade(`/ws/race${i % 3}`));
  }
  // subscribe then unsubscribe at once, on a connection that stays
  const c = await openWS(t.url);
  await c.waitType('welcome');
  for (let i = 0; i < 20; i++) {
    c.send({ type: 'subscribe', channel: `flip${i}` });
    c.send({ type: 'unsubscribe', channel: `flip${i}` });
  }
  const r = await c.request({ type: 'ping' });
  assert.equal(r.type, 'pong');
  c.close(1000);
});

test('a participant that closes while its join is in flight', async () => {
  const a = await openWS(t.url);
  await a.waitType('welcome');
  const created = await a.request({ type: 'session:create', user: { name: 'A' } });
  assert.equal(created.type, 'session:created');
  const code = created.room_code;
  for (let i = 0; i < 20; i++) {
    const b = await openWS(t.url);
    await b.waitType('welcome');
    b.send({ type: 'session:join', room_code: code, user: { name: `B${i}` } });
    b.terminate();
  }
  // the room still works, and nobody is left in it but A (the others left or never joined)
  await waitFor(async () => {
    const s = await (await fetch(`${t.url}/api/sessions/${code}`)).json();
    return s.participants.length === 1;
  }, 5000, 'only A left in the room');
  a.close(1000);
});

test('a replay of several events, each released as it is sent', async () => {
  const a = await openWS(t.url);
  await a.waitType('welcome');
  const code = (await a.request({ type: 'session:create', user: { name: 'A' } })).room_code;
  for (let i = 0; i < 3; i++) {
    await a.request({ type: 'event:broadcast', room_code: code, event_name: 'hit', payload: { i } });
    await new Promise((r) => setTimeout(r, 120));
  }
  const b = await openWS(t.url);
  await b.waitType('welcome');
  b.send({ type: 'session:replay', room_code: code, speed: 4 });
  await b.waitType('replay:end', 1, 5000);
  assert.deepEqual(b.of('replay:event').map((m) => m.json.payload.i), [0, 1, 2]);
  a.close(1000);
  b.close(1000);
});

test('a channel with no message yet loses nothing across a lost subscriber connection', async () => {
  const ch = 'quiet:1';
  const got = [];
  const es = await new Promise((resolve) => {
    const s = net.connect({ port: t.port, host: '127.0.0.1' }, () => {
      s.write(`GET /sse/${ch} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      for (const m of buf.matchAll(/id: [^:\n]+:(\d+)\nevent: message\n/g)) if (!got.includes(Number(m[1]))) got.push(Number(m[1]));
      if (buf.includes('event: connected')) resolve(s);
    });
  });
  // drop tutti's pub/sub connection, and publish like a worker before it is back
  redisCli(redis.port, ['CLIENT', 'KILL', 'TYPE', 'pubsub']);
  redisCli(redis.port, ['FCALL', 'tutti_publish', '2', `tutti:{${ch}}:m`, `tutti:{${ch}}:s`, ch, 'message', '{"n":1}', '100', '300000', '604800000', '0']);
  await waitFor(async () => {
    const r = await fetch(`${t.url}/api/publish`, { method: 'POST', body: JSON.stringify({ channel: ch, data: { n: 2 } }) });
    return r.status === 200;
  }, 5000, 'a publish through tutti once the engine is back');
  await waitFor(() => got.length >= 2, 5000, `both messages (got ${JSON.stringify(got)})`);
  assert.deepEqual(got, [1, 2]);
  es.destroy();
});
