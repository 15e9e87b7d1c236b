// Interoperability with a WebSocket client that is not ours: Python's `websockets` 10.4
// (Debian's /usr/bin/python3), which offers permessage-deflate by default, compresses what it
// sends and fragments iterables. The script ws_python_client.py prints what it saw as JSON.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTutti, getJSON, waitFor } from '../lib/harness.mjs';
import { rawMember } from '../lib/ws.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = '/usr/bin/python3';
const SCRIPT = path.join(here, 'ws_python_client.py');

let srv;
before(async () => { srv = await startTutti(['--workers', '2']); });
after(async () => { assert.equal(await srv.stop(), 0, 'tutti exit code after SIGTERM'); });

function runPython(args, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const p = spawn(PYTHON, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`python client timed out; stderr:\n${stderr}`)); }, timeoutMs);
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    p.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

test('Python websockets: deflate negotiated, welcome, subscribe, HTTP-published messages, pong, fragments, close 1000', { timeout: 40000 }, async () => {
  assert.ok(existsSync(PYTHON), `${PYTHON} exists`);
  const bodies = [
    '{ "from" : "http",  "n":[1, 2.50] }',
    JSON.stringify({ big: 'chord '.repeat(2000), n: 2 }), // over the deflate threshold: sent compressed
    '"ünïcödé ♪"',
  ];
  const r = await runPython([srv.url, 'pychan', JSON.stringify(bodies)]);
  assert.equal(r.code, 0, `python exit code; stderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.deepEqual(out.steps, ['welcome', 'subscribed', 'messages', 'pong', 'pong_fragmented', 'ws_ping', 'closed', 'plain']);

  // handshake
  assert.match(out.extensions_header || '', /^permessage-deflate\b/, `extensions header ${out.extensions_header}`);
  assert.match(out.extensions_header, /server_no_context_takeover/);
  assert.deepEqual(out.extensions, ['permessage-deflate']);
  assert.equal(out.welcome.type, 'welcome');
  assert.equal(typeof out.welcome.connection_id, 'string');
  assert.equal(out.welcome.server_info.permessage_deflate, true);

  // subscribe and messages
  assert.equal(out.subscribed.type, 'subscribed');
  assert.equal(out.subscribed.channel, 'pychan');
  assert.equal(out.subscribed.ref, 'py-sub');
  assert.equal(out.messages_raw.length, bodies.length);
  out.messages_raw.forEach((raw, i) => {
    const m = JSON.parse(raw);
    assert.equal(m.type, 'message');
    assert.equal(m.channel, 'pychan');
    assert.equal(m.event, 'py');
    assert.equal(m.id, out.published[i].id);
    assert.equal(rawMember(raw, 'data'), bodies[i], `message ${i} data byte for byte`);
  });

  // requests (compressed by the client)
  assert.equal(out.pong.type, 'pong');
  assert.equal(out.pong.client_time, 12345);
  assert.equal(typeof out.pong.server_time, 'number');
  assert.equal(out.pong_fragmented.type, 'pong');
  assert.equal(out.pong_fragmented.client_time, 67890);
  assert.equal(out.ws_ping_answered, true);

  // clean close: the server echoes 1000
  assert.equal(out.close_code, 1000);

  // without compression
  assert.equal(out.plain_extensions_header, null);
  assert.equal(out.plain_welcome.server_info.permessage_deflate, false);
  assert.equal(out.plain_close_code, 4001, 'the client code is echoed');

  // the connections are gone
  await waitFor(async () => (await getJSON(srv.url, '/health/channel/pychan')).json.subscribers === 0, 3000, 'no subscriber left');
});
