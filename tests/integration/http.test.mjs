// HTTP layer over raw TCP: error table, keep-alive, pipelining, chunked bodies, header
// timeout, CORS, static files, API key, and isolation between connections.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startTutti, publish, waitFor, openSSE, getJSON, connectRaw, sseAgent,
} from '../lib/harness.mjs';

// ---- helpers ---------------------------------------------------------------

const HOST = 'Host: 127.0.0.1\r\n';

// Builds a request; body gets a Content-Length unless headers already frame it.
function req(method, target, { headers = {}, body, version = 'HTTP/1.1' } = {}) {
  let s = `${method} ${target} ${version}\r\n${HOST}`;
  const hasFraming = Object.keys(headers).some((h) => /^(content-length|transfer-encoding)$/i.test(h));
  for (const [k, v] of Object.entries(headers)) s += `${k}: ${v}\r\n`;
  if (body !== undefined && !hasFraming) s += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  s += '\r\n';
  if (body !== undefined) s += body;
  return s;
}
const postJSON = (target, body, headers = {}) => req('POST', target, { headers: { 'Content-Type': 'application/json', ...headers }, body });

// Every error: JSON body {"error":{"code","message"}} with Content-Type application/json.
function assertError(res, status, code, what = '') {
  assert.equal(res.status, status, `${what}: status (body ${res.body})`);
  assert.match(res.headers['content-type'] || '', /^application\/json/, `${what}: content-type`);
  assert.ok(res.json, `${what}: body is JSON: ${res.body}`);
  assert.deepEqual(Object.keys(res.json), ['error'], `${what}: body ${res.body}`);
  assert.deepEqual(Object.keys(res.json.error).sort(), ['code', 'message'], `${what}: body ${res.body}`);
  assert.equal(res.json.error.code, code, `${what}: code`);
  assert.equal(typeof res.json.error.message, 'string');
  assert.ok(res.json.error.message.length > 0, `${what}: message not empty`);
}

// Sends raw bytes on a fresh connection and reads one response.
async function exchange(port, bytes, opts) {
  const c = await connectRaw(port);
  c.write(bytes);
  const res = await c.readResponse(opts);
  return { c, res };
}

// ---- servers ---------------------------------------------------------------

let srv; // --max-body 1024, a CORS list, a private web root
let tmp;
const SECRET = 'TOP-SECRET-' + Math.random().toString(36).slice(2);
const INDEX = '<!doctype html><html><head><title>tutti test</title></head><body>hello</body></html>\n';
const ORIGIN_A = 'https://a.example';
const ORIGIN_B = 'https://b.example';

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tutti-http-'));
  const www = path.join(tmp, 'www');
  fs.mkdirSync(path.join(www, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(www, 'index.html'), INDEX);
  fs.writeFileSync(path.join(www, 'app.js'), 'console.log("hi");\n');
  fs.writeFileSync(path.join(www, 'style.css'), 'body { color: red }\n');
  fs.writeFileSync(path.join(www, 'sub', 'page.html'), '<p>sub</p>\n');
  fs.writeFileSync(path.join(tmp, 'secret.txt'), SECRET + '\n');
  srv = await startTutti(['--max-body', '1024', '--cors-origins', `${ORIGIN_A},${ORIGIN_B}`], { webRoot: www });
});
after(async () => {
  sseAgent.destroy();
  assert.equal(await srv.stop(), 0, 'tutti exit code after SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- the error table ---------------------------------------------------------

const ch256 = 'a'.repeat(256);
const ch255 = 'b'.repeat(255);
const manyHeaders = Array.from({ length: 300 }, (_, i) => `X-H${i}: ${'v'.repeat(50)}\r\n`).join('');
const bigBody = JSON.stringify({ channel: 'big', data: 'x'.repeat(2000) });

// close: true = the server must close after answering; false = must keep the connection.
const BAD = [
  ['malformed request line', 'GARBAGE\r\n\r\n', 400, 'BAD_REQUEST', true],
  ['request line without a target', `GET HTTP/1.1\r\n${HOST}\r\n`, 400, 'BAD_REQUEST', true],
  ['header line without a colon', `GET /health HTTP/1.1\r\n${HOST}NoColonHere\r\n\r\n`, 400, 'BAD_REQUEST', true],
  ['space in a header name', `GET /health HTTP/1.1\r\n${HOST}Bad Name: x\r\n\r\n`, 400, 'BAD_REQUEST', true],
  ['one header over 16 KiB', `GET /health HTTP/1.1\r\n${HOST}X-Big: ${'a'.repeat(17000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE', true],
  ['300 headers over 16 KiB', `GET /health HTTP/1.1\r\n${HOST}${manyHeaders}\r\n`, 431, 'HEADERS_TOO_LARGE', true],
  ['request line over 16 KiB', `GET /${'p'.repeat(17000)} HTTP/1.1\r\n${HOST}\r\n`, 431, 'HEADERS_TOO_LARGE', true],
  ['body over --max-body (Content-Length)', postJSON('/api/publish', bigBody), 413, 'BODY_TOO_LARGE', true],
  ['body over --max-body (chunked)',
    req('POST', '/api/publish', { headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' },
      body: `400\r\n${'{'.repeat(1024)}\r\n400\r\n${'{'.repeat(1024)}\r\n0\r\n\r\n` }), 413, 'BODY_TOO_LARGE', true],
  ['Content-Length not a number', req('POST', '/api/publish', { headers: { 'Content-Length': 'abc' }, body: '{}' }), 400, 'BAD_REQUEST', true],
  ['negative Content-Length', req('POST', '/api/publish', { headers: { 'Content-Length': '-5' }, body: '{}' }), 400, 'BAD_REQUEST', true],
  ['two different Content-Length', `POST /api/publish HTTP/1.1\r\n${HOST}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x`, 400, 'BAD_REQUEST', true],
  ['bad chunk size', req('POST', '/api/publish', { headers: { 'Transfer-Encoding': 'chunked' }, body: 'zz\r\n{}\r\n0\r\n\r\n' }), 400, 'BAD_REQUEST', true],
  ['two Transfer-Encoding headers', `POST /api/publish HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n`, 400, 'BAD_REQUEST', true],
  ['chunked in HTTP/1.0', `POST /api/publish HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'BAD_REQUEST', true],
  ['chunk extension over 256 bytes', req('POST', '/api/publish', { headers: { 'Transfer-Encoding': 'chunked' }, body: `1;${'e'.repeat(300)}\r\n{\r\n0\r\n\r\n` }), 400, 'BAD_REQUEST', true],
  ['trailers over 16 KiB', req('POST', '/api/publish', { headers: { 'Transfer-Encoding': 'chunked' }, body: `0\r\n${'X-T: aaaaaaaaaaaaaaaa\r\n'.repeat(1000)}\r\n` }), 400, 'BAD_REQUEST', true],
  ['chunked framing over 2 x max_body', req('POST', '/api/publish', { headers: { 'Transfer-Encoding': 'chunked' }, body: `${'1;eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\r\n \r\n'.repeat(900)}0\r\n\r\n` }), 413, 'BODY_TOO_LARGE', true],
  ['Transfer-Encoding gzip', req('POST', '/api/publish', { headers: { 'Transfer-Encoding': 'gzip' }, body: '' }), 501, 'NOT_IMPLEMENTED', undefined],
  ['HTTP/2.0', req('GET', '/health', { version: 'HTTP/2.0' }), 505, 'VERSION_NOT_SUPPORTED', undefined],
  ['HTTP/0.5', req('GET', '/health', { version: 'HTTP/0.5' }), 505, 'VERSION_NOT_SUPPORTED', undefined],
  ['unknown API route', req('GET', '/api/nope'), 404, 'NOT_FOUND', false],
  ['POST to an unknown API route', postJSON('/api/nope', '{}'), 404, 'NOT_FOUND', false],
  ['unknown file', req('GET', '/no-such-file.txt'), 404, 'NOT_FOUND', false],
  ['empty channel (POST /api/publish)', postJSON('/api/publish', '{"channel":"","data":1}'), 400, 'BAD_CHANNEL', false],
  ['256-byte channel (SSE)', req('GET', `/sse/${ch256}`), 400, 'BAD_CHANNEL', false],
  ['256-byte channel (publish)', postJSON('/api/publish', `{"channel":"${ch256}","data":1}`), 400, 'BAD_CHANNEL', false],
  ['channel with a space (SSE, %20)', req('GET', '/sse/a%20b'), 400, 'BAD_CHANNEL', false],
  ['channel with a space (publish)', postJSON('/api/publish', '{"channel":"a b","data":1}'), 400, 'BAD_CHANNEL', false],
  ['unicode channel (SSE, percent-encoded)', req('GET', '/sse/caf%C3%A9'), 400, 'BAD_CHANNEL', false],
  ['unicode channel (publish)', postJSON('/api/publish', '{"channel":"café","data":1}'), 400, 'BAD_CHANNEL', false],
  ['unicode channel (channel publish path)', postJSON('/api/channels/caf%C3%A9/publish', '1'), 400, 'BAD_CHANNEL', false],
  ['bad channel in a multi-channel stream', req('GET', '/sse?channel=ok&channel=a%20b'), 400, 'BAD_CHANNEL', false],
  ['no channel for a stream', req('GET', '/sse'), 400, 'MISSING_FIELD', false],
  ['body is not JSON', postJSON('/api/publish', 'nope'), 400, 'BAD_JSON', false],
  ['body is a JSON array', postJSON('/api/publish', '[1,2]'), 400, 'BAD_JSON', false],
  ['truncated JSON', postJSON('/api/publish', '{"channel":"x","data":'), 400, 'BAD_JSON', false],
  ['invalid data value', postJSON('/api/publish', '{"channel":"x","data":{"a":}}'), 400, 'BAD_JSON', false],
  ['channel publish: two JSON values', postJSON('/api/channels/x/publish', '{"a":1} {"b":2}'), 400, 'BAD_JSON', false],
  ['channel publish: not JSON', postJSON('/api/channels/x/publish', '{bad}'), 400, 'BAD_JSON', false],
  ['channel publish: empty body', postJSON('/api/channels/x/publish', ''), 400, 'BAD_JSON', false],
  ['missing channel', postJSON('/api/publish', '{"data":1}'), 400, 'MISSING_FIELD', false],
  ['missing data', postJSON('/api/publish', '{"channel":"x"}'), 400, 'MISSING_FIELD', false],
  ['event with a space', postJSON('/api/publish', '{"channel":"x","data":1,"event":"a b"}'), 400, 'BAD_EVENT', false],
  ['event of 65 bytes', postJSON('/api/publish', `{"channel":"x","data":1,"event":"${'e'.repeat(65)}"}`), 400, 'BAD_EVENT', false],
  ['empty event', postJSON('/api/publish', '{"channel":"x","data":1,"event":""}'), 400, 'BAD_EVENT', false],
  ['bad ?event= on channel publish', postJSON('/api/channels/x/publish?event=a%20b', '1'), 400, 'BAD_EVENT', false],
  ['since a:b', req('GET', '/sse/x?since=abc:def'), 400, 'BAD_SINCE', false],
  ['since word', req('GET', '/sse/x?since=hello'), 400, 'BAD_SINCE', false],
  ['since negative', req('GET', '/sse/x?since=-3'), 400, 'BAD_SINCE', false],
  ['17 channels', req('GET', '/sse?' + Array.from({ length: 17 }, (_, i) => `channel=c${i}`).join('&')), 400, 'TOO_MANY_CHANNELS', false],
];

for (const [name, bytes, status, code, closes] of BAD) {
  test(`error table: ${name} -> ${status} ${code}`, async () => {
    const { c, res } = await exchange(srv.port, bytes);
    try {
      assertError(res, status, code, name);
      if (closes === true) {
        assert.ok(await c.waitClosed(2000), `${name}: connection closed after ${status}`);
      } else if (closes === false) {
        // connection stays usable
        c.write(req('GET', '/health'));
        const next = await c.readResponse();
        assert.equal(next.status, 200, `${name}: next request on the same connection`);
        assert.equal(next.json.status, 'ok');
      }
    } finally {
      c.destroy();
    }
  });
}

test('405 METHOD_NOT_ALLOWED carries an Allow header listing the methods', async () => {
  const cases = [
    ['DELETE', '/api/publish', 'POST'],
    ['GET', '/api/publish', 'POST'],
    ['PUT', '/api/channels/x/publish', 'POST'],
    ['PUT', '/sse/x', 'GET'],
    ['POST', '/health', 'GET'],
  ];
  for (const [method, target, allowed] of cases) {
    const body = method === 'GET' ? undefined : '{}';
    const { c, res } = await exchange(srv.port, req(method, target, { body }));
    assertError(res, 405, 'METHOD_NOT_ALLOWED', `${method} ${target}`);
    const allow = (res.headers.allow || '').split(',').map((m) => m.trim());
    assert.ok(allow.includes(allowed), `${method} ${target}: Allow "${res.headers.allow}" includes ${allowed}`);
    assert.ok(!allow.includes(method), `${method} ${target}: Allow does not list ${method}`);
    c.write(req('GET', '/health'));
    assert.equal((await c.readResponse()).status, 200, 'connection stays open after 405');
    c.destroy();
  }
});

test('limits accept values right at the boundary', async () => {
  // 255-byte channel
  const { c, res } = await exchange(srv.port, req('GET', `/sse/${ch255}`));
  assert.equal(res.status, 200);
  assert.match(res.headers['content-type'], /^text\/event-stream/);
  c.destroy();
  const p = await exchange(srv.port, postJSON('/api/publish', `{"channel":"${ch255}","data":1}`));
  assert.equal(p.res.status, 200, p.res.body);
  assert.equal(p.res.json.channel, ch255);
  p.c.destroy();
  // 64-byte event, every allowed character
  const ev = ('Az09_.:-' + 'e'.repeat(64)).slice(0, 64);
  const e = await exchange(srv.port, postJSON('/api/publish', `{"channel":"x","data":1,"event":"${ev}"}`));
  assert.equal(e.res.status, 200, e.res.body);
  e.c.destroy();
  // 16 channels in one stream
  const s16 = await exchange(srv.port, req('GET', '/sse?' + Array.from({ length: 16 }, (_, i) => `channel=c${i}`).join('&')));
  assert.equal(s16.res.status, 200, s16.res.body);
  s16.c.destroy();
  // headers of ~15 KiB
  const h15 = await exchange(srv.port, `GET /health HTTP/1.1\r\n${HOST}X-Big: ${'a'.repeat(15000)}\r\n\r\n`);
  assert.equal(h15.res.status, 200);
  h15.c.destroy();
  // body of exactly --max-body bytes
  let body = JSON.stringify({ channel: 'mb', data: '' });
  body = JSON.stringify({ channel: 'mb', data: 'y'.repeat(1024 - body.length) });
  assert.equal(body.length, 1024);
  const b = await exchange(srv.port, postJSON('/api/publish', body));
  assert.equal(b.res.status, 200, b.res.body);
  b.c.destroy();
});

// ---- connection handling -----------------------------------------------------

test('keep-alive: two requests on one socket; HTTP/1.0 and Connection: close end it', async () => {
  const c = await connectRaw(srv.port);
  c.write(req('GET', '/health'));
  const r1 = await c.readResponse();
  assert.equal(r1.status, 200);
  c.write(req('GET', '/health/channel/ka'));
  const r2 = await c.readResponse();
  assert.equal(r2.status, 200);
  assert.equal(r2.json.channel, 'ka');
  assert.equal(c.isClosed, false);
  c.write(req('GET', '/health', { headers: { Connection: 'close' } }));
  assert.equal((await c.readResponse()).status, 200);
  assert.ok(await c.waitClosed(2000), 'closed after Connection: close');

  const { c: d, res } = await exchange(srv.port, 'GET /health HTTP/1.0\r\n\r\n');
  assert.equal(res.status, 200);
  assert.ok(await d.waitClosed(2000), 'HTTP/1.0 without keep-alive is closed after the answer');
});

test('pipelining: four requests in one write are answered in order', async () => {
  const c = await connectRaw(srv.port);
  c.write(
    req('GET', '/health/channel/pipe1')
    + postJSON('/api/publish', '{"channel":"pipe2","data":{"n":1}}')
    + req('GET', '/definitely-missing')
    + req('GET', '/health/channel/pipe2'),
  );
  const r1 = await c.readResponse();
  const r2 = await c.readResponse();
  const r3 = await c.readResponse();
  const r4 = await c.readResponse();
  assert.equal(r1.status, 200);
  assert.equal(r1.json.channel, 'pipe1');
  assert.equal(r2.status, 200);
  assert.equal(r2.json.channel, 'pipe2');
  assert.equal(r2.json.offset, 1);
  assertError(r3, 404, 'NOT_FOUND', 'pipelined 404');
  assert.equal(r4.status, 200);
  assert.equal(r4.json.channel, 'pipe2');
  assert.equal(r4.json.last_offset, 1, 'the publish before it was applied first');
  assert.equal(c.isClosed, false);
  c.destroy();
});

test('chunked request body for publish, sent in several TCP writes', async () => {
  const sub = await openSSE(srv.url, '/sse/chk');
  await sub.waitForCount('connected', 1);
  await waitFor(async () => (await getJSON(srv.url, '/health/channel/chk')).json.subscribers === 1);
  const c = await connectRaw(srv.port);
  const data = '{ "k" : [1, 2],  "s": "chunked ✓" }';
  const bytes = Buffer.from(data);
  const pieces = [bytes.subarray(0, 5), bytes.subarray(5, 17), bytes.subarray(17)];
  c.write(`POST /api/channels/chk/publish?event=chunky HTTP/1.1\r\n${HOST}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
  for (const p of pieces) {
    await new Promise((r) => setTimeout(r, 20));
    c.write(p.length.toString(16).toUpperCase() + '\r\n');
    await new Promise((r) => setTimeout(r, 10));
    c.write(Buffer.concat([p, Buffer.from('\r\n')]));
  }
  c.write('0\r\n\r\n');
  const res = await c.readResponse();
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.offset, 1);
  await sub.waitForCount('chunky', 1);
  assert.equal(sub.of('chunky')[0].data, data);
  // the connection is usable after a chunked body
  c.write(req('GET', '/health'));
  assert.equal((await c.readResponse()).status, 200);
  c.destroy();
  sub.close();
});

test('chunked body with a chunk extension and an empty trailer section', async () => {
  const { c, res } = await exchange(srv.port,
    `POST /api/publish HTTP/1.1\r\n${HOST}Transfer-Encoding: chunked\r\n\r\n`
    + '10;name=value\r\n{"channel":"ext"\r\na\r\n,"data":7}\r\n0\r\n\r\n');
  assert.equal(res.status, 200, res.body);
  assert.equal(res.json.channel, 'ext');
  c.destroy();
});

test('a bad request on one connection does not disturb a subscriber on another', async () => {
  const sub = await openSSE(srv.url, '/sse/calm');
  await sub.waitForCount('connected', 1);
  const bad = [
    'GARBAGE\r\n\r\n',
    `GET /health HTTP/1.1\r\n${HOST}X-Big: ${'a'.repeat(20000)}\r\n\r\n`,
    req('POST', '/api/publish', { headers: { 'Transfer-Encoding': 'chunked' }, body: 'zz\r\n' }),
    req('GET', '/health', { version: 'HTTP/2.0' }),
    '\x00\x01\x02\xff\xfe\r\n\r\n',
  ];
  for (const b of bad) {
    const c = await connectRaw(srv.port);
    c.write(b);
    await c.readResponse().catch(() => {});
    c.destroy();
  }
  // half a request, then the socket vanishes
  const h = await connectRaw(srv.port);
  h.write('POST /api/publish HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"chan');
  h.destroy();
  const a = await publish(srv.url, 'calm', { still: 'here' });
  await sub.waitFor((cl) => cl.messages().length >= 1);
  assert.equal(sub.messages()[0].id, a.id);
  assert.equal(sub.ended, false);
  assert.equal((await getJSON(srv.url, '/health')).json.status, 'ok');
  sub.close();
});

test('--header-timeout 0.5: partial request line and a trickled header get 408 and are closed; SSE streams are not', async () => {
  const s = await startTutti(['--header-timeout', '0.5']);
  try {
    const t0 = Date.now();
    const c = await connectRaw(s.port);
    c.write('GET /hea');
    const res = await c.readResponse({ timeoutMs: 5000 });
    const elapsed = Date.now() - t0;
    assertError(res, 408, 'REQUEST_TIMEOUT', 'partial request line');
    assert.ok(elapsed >= 400, `not before the timeout (${elapsed} ms)`);
    assert.ok(elapsed < 3000, `soon after the timeout (${elapsed} ms)`);
    assert.ok(await c.waitClosed(2000), 'closed after 408');

    // slowloris: one header byte every 100 ms must not extend the deadline
    const d = await connectRaw(s.port);
    const t1 = Date.now();
    d.write(`GET /health HTTP/1.1\r\n${HOST}X-Slow: `);
    const trickle = setInterval(() => d.write('a'), 100);
    try {
      const r2 = await d.readResponse({ timeoutMs: 5000 });
      assertError(r2, 408, 'REQUEST_TIMEOUT', 'trickled header');
      assert.ok(Date.now() - t1 < 3000, `408 despite the trickle (${Date.now() - t1} ms)`);
      assert.ok(await d.waitClosed(2000));
    } finally {
      clearInterval(trickle);
      d.destroy();
    }

    // a connection that never sends a byte, and one idle after a keep-alive answer, are closed quietly
    const silent = await connectRaw(s.port);
    assert.ok(await silent.waitClosed(3000), 'a silent connection is closed after the header timeout');
    const idle = await connectRaw(s.port);
    idle.write(`GET /health HTTP/1.1\r\n${HOST}\r\n`);
    assert.equal((await idle.readResponse({ timeoutMs: 3000 })).status, 200);
    assert.ok(await idle.waitClosed(3000), 'an idle keep-alive connection is closed after the header timeout');

    // an SSE stream that stays open longer than the header timeout is fine
    const sub = await openSSE(s.url, '/sse/long');
    await sub.waitForCount('connected', 1);
    await new Promise((r) => setTimeout(r, 1200)); // deliberately outlive the header timeout
    const a = await publish(s.url, 'long', 1);
    await sub.waitFor((cl) => cl.messages().length >= 1);
    assert.equal(sub.messages()[0].id, a.id);
    assert.equal(sub.ended, false);
    sub.close();
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

// ---- CORS ----------------------------------------------------------------------

test('CORS: allowed origin echoed with Vary: Origin; others get no grant', async () => {
  const r = await getJSON(srv.url, '/health', { headers: { Origin: ORIGIN_A } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('access-control-allow-origin'), ORIGIN_A);
  assert.match(r.headers.get('vary') || '', /(^|,\s*)Origin(\s*,|$)/i);

  const e = await getJSON(srv.url, '/health', { headers: { Origin: 'https://evil.example' } });
  assert.equal(e.status, 200);
  assert.equal(e.headers.get('access-control-allow-origin'), null);

  const n = await getJSON(srv.url, '/health');
  assert.equal(n.headers.get('access-control-allow-origin'), null);

  const sub = await openSSE(srv.url, '/sse/cors', { headers: { Origin: ORIGIN_B } });
  assert.equal(sub.status, 200);
  assert.equal(sub.headers['access-control-allow-origin'], ORIGIN_B);
  sub.close();
});

test('CORS preflight: allowed origin 204 with methods and headers; other origin 403 FORBIDDEN_ORIGIN', async () => {
  const ok = await exchange(srv.port, req('OPTIONS', '/api/publish', {
    headers: { Origin: ORIGIN_B, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type, authorization' },
  }));
  assert.equal(ok.res.status, 204);
  assert.equal(ok.res.headers['access-control-allow-origin'], ORIGIN_B);
  assert.match(ok.res.headers['access-control-allow-methods'] || '', /\bPOST\b/);
  assert.match(ok.res.headers['access-control-allow-headers'] || '', /content-type/i);
  assert.equal(ok.res.body, '');
  ok.c.destroy();

  const bad = await exchange(srv.port, req('OPTIONS', '/api/publish', {
    headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
  }));
  assertError(bad.res, 403, 'FORBIDDEN_ORIGIN', 'preflight from another origin');
  assert.equal(bad.res.headers['access-control-allow-origin'], undefined);
  bad.c.destroy();
});

test('CORS "*": any origin is allowed', async () => {
  const s = await startTutti(['--cors-origins', '*']);
  try {
    const r = await getJSON(s.url, '/health', { headers: { Origin: 'https://anything.example' } });
    assert.ok(['*', 'https://anything.example'].includes(r.headers.get('access-control-allow-origin')),
      `ACAO ${r.headers.get('access-control-allow-origin')}`);
    const p = await exchange(s.port, req('OPTIONS', '/api/publish', {
      headers: { Origin: 'https://anything.example', 'Access-Control-Request-Method': 'POST' },
    }));
    assert.equal(p.res.status, 204);
    assert.match(p.res.headers['access-control-allow-methods'] || '', /\bPOST\b/);
    p.c.destroy();
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

// ---- static files ----------------------------------------------------------------

test('static: GET / is index.html with ETag, Last-Modified, Cache-Control; If-None-Match gives 304', async () => {
  const r = await fetch(`${srv.url}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/html/);
  assert.equal(await r.text(), INDEX);
  const etag = r.headers.get('etag');
  assert.ok(etag, 'ETag');
  assert.ok(r.headers.get('last-modified'), 'Last-Modified');
  assert.ok(!Number.isNaN(Date.parse(r.headers.get('last-modified'))));
  assert.equal(r.headers.get('cache-control'), 'no-cache');

  const same = await fetch(`${srv.url}/index.html`);
  assert.equal(same.headers.get('etag'), etag);
  await same.text();

  const { c, res } = await exchange(srv.port, req('GET', '/', { headers: { 'If-None-Match': etag } }));
  assert.equal(res.status, 304);
  assert.equal(res.body, '');
  c.write(req('GET', '/', { headers: { 'If-None-Match': '"something-else"' } }));
  const full = await c.readResponse();
  assert.equal(full.status, 200);
  assert.equal(full.body, INDEX);
  c.destroy();
});

test('static: HEAD, content types by extension, subdirectory', async () => {
  const c = await connectRaw(srv.port);
  c.write(req('HEAD', '/'));
  const h = await c.readResponse({ head: true });
  assert.equal(h.status, 200);
  assert.equal(Number(h.headers['content-length']), Buffer.byteLength(INDEX));
  // no body bytes may follow a HEAD answer: the next answer parses cleanly
  c.write(req('GET', '/health'));
  const next = await c.readResponse();
  assert.equal(next.status, 200);
  assert.equal(next.json.status, 'ok');
  c.destroy();

  const js = await fetch(`${srv.url}/app.js`);
  assert.match(js.headers.get('content-type'), /^(text|application)\/javascript/);
  assert.equal(await js.text(), 'console.log("hi");\n');
  const css = await fetch(`${srv.url}/style.css`);
  assert.match(css.headers.get('content-type'), /^text\/css/);
  await css.text();
  const sub = await fetch(`${srv.url}/sub/page.html`);
  assert.equal(sub.status, 200);
  assert.equal(await sub.text(), '<p>sub</p>\n');
});

test('static: path traversal never serves files outside the web root', async () => {
  const attempts = [
    '/../secret.txt',
    '/../../../../../../etc/passwd',
    '/%2e%2e/secret.txt',
    '/%2E%2E/%2E%2E/%2E%2E/etc/passwd',
    '/..%2fsecret.txt',
    '/%2e%2e%2fsecret.txt',
    '/sub/../../secret.txt',
    '/sub/%2e%2e/%2e%2e/secret.txt',
    '/..\\secret.txt',
    '/.%2e/secret.txt',
    '/sub/..%5c..%5csecret.txt',
    '/secret.txt%00.html',
  ];
  for (const target of attempts) {
    const { c, res } = await exchange(srv.port, req('GET', target));
    assert.ok([400, 404].includes(res.status), `${target}: status ${res.status}`);
    assert.ok(!res.body.includes(SECRET), `${target}: leaked the secret file`);
    assert.ok(!res.body.includes('root:'), `${target}: leaked /etc/passwd`);
    c.destroy();
  }
});

// ---- API key -------------------------------------------------------------------

test('--api-key: publishing needs Authorization: Bearer KEY; reading does not', async () => {
  const s = await startTutti(['--api-key', 'sekret-key']);
  try {
    const body = '{"channel":"auth","data":1}';
    const none = await exchange(s.port, postJSON('/api/publish', body));
    assertError(none.res, 401, 'UNAUTHORIZED', 'no key');
    none.c.destroy();
    const wrong = await exchange(s.port, postJSON('/api/publish', body, { Authorization: 'Bearer nope' }));
    assertError(wrong.res, 401, 'UNAUTHORIZED', 'wrong key');
    wrong.c.destroy();
    const scheme = await exchange(s.port, postJSON('/api/publish', body, { Authorization: 'sekret-key' }));
    assertError(scheme.res, 401, 'UNAUTHORIZED', 'key without Bearer');
    scheme.c.destroy();
    const chNone = await exchange(s.port, postJSON('/api/channels/auth/publish', '1'));
    assertError(chNone.res, 401, 'UNAUTHORIZED', 'channel publish without key');
    chNone.c.destroy();

    const sub = await openSSE(s.url, '/sse/auth');
    assert.equal(sub.status, 200, 'subscribing needs no key');
    await sub.waitForCount('connected', 1);
    const right = await exchange(s.port, postJSON('/api/publish', body, { Authorization: 'Bearer sekret-key' }));
    assert.equal(right.res.status, 200, right.res.body);
    assert.equal(right.res.json.offset, 1, 'rejected publishes did not take an offset');
    right.c.destroy();
    await sub.waitFor((cl) => cl.messages().length >= 1);
    assert.equal(sub.messages().length, 1);
    sub.close();
    assert.equal((await getJSON(s.url, '/health')).status, 200);

    // without a CORS list, a cross-origin request gets no grant
    const co = await getJSON(s.url, '/health', { headers: { Origin: 'https://x.example' } });
    assert.equal(co.headers.get('access-control-allow-origin'), null);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});
