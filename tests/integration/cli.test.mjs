// Command line, environment and config file: --help/--version, invalid values (exit 2
// with a message naming the setting), and precedence flags > env > config > defaults.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startTutti, publish, openSSE, getJSON, tuttiBin, webRoot, sseAgent,
} from '../lib/harness.mjs';

// ---- helpers ---------------------------------------------------------------

// Runs tutti to completion; kills it (by its pid) if it is still running after timeoutMs.
function run(args, { env = {}, timeoutMs = 8000 } = {}) {
  return new Promise((resolve) => {
    const proc = spawn(tuttiBin, args, {
      env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; proc.kill('SIGKILL'); }, timeoutMs);
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, out: stdout + stderr, timedOut });
    });
  });
}

let tmp;
function writeConfig(name, content) {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

// Publishes 10 messages to a fresh channel and returns how many the server keeps:
// /health/channel history_size, and the number of messages a recovery from offset 0 replays.
async function observedHistory(s) {
  let last;
  for (let i = 1; i <= 10; i++) last = await publish(s.url, 'prec', { i });
  const h = (await getJSON(s.url, '/health/channel/prec')).json;
  const c = await openSSE(s.url, `/sse/prec?since=${last.epoch}:0`);
  await c.waitForCount('connected', 1);
  const marker = await publish(s.url, 'prec', 'marker');
  await c.waitFor((cl) => cl.messages().some((m) => m.id === marker.id));
  const replayed = c.messages().filter((m) => m.id !== marker.id).length;
  c.close();
  return { health: h.history_size, replayed };
}

before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tutti-cli-')); });
after(() => {
  sseAgent.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- tests -----------------------------------------------------------------

test('--help exits 0 and prints usage', async () => {
  const r = await run(['--help']);
  assert.equal(r.timedOut, false, '--help returned');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /--port/);
  assert.match(r.out, /--history-size/);
});

test('--version exits 0 and prints the version that /health reports', async () => {
  const r = await run(['--version']);
  assert.equal(r.timedOut, false);
  assert.equal(r.code, 0, r.out);
  const m = /(\d+\.\d+\.\d+)/.exec(r.out);
  assert.ok(m, `a version number in ${JSON.stringify(r.out)}`);
  const s = await startTutti();
  try {
    assert.equal((await getJSON(s.url, '/health')).json.version, m[1]);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

const INVALID = [
  ['--port 70000', ['--port', '70000'], {}, /port/i],
  ['--port -1', ['--port', '-1'], {}, /port/i],
  ['--workers 0', ['--port', '0', '--workers', '0'], {}, /workers/i],
  ['--heartbeat-interval abc', ['--port', '0', '--heartbeat-interval', 'abc'], {}, /heartbeat[_-]interval/i],
  ['--history-size -1', ['--port', '0', '--history-size', '-1'], {}, /history[_-]size/i],
  ['--max-body 12x', ['--port', '0', '--max-body', '12x'], {}, /max[_-]body/i],
  ['--log-level loud', ['--port', '0', '--log-level', 'loud'], {}, /log[_-]level/i],
  ['TUTTI_HISTORY_SIZE=abc', ['--port', '0'], { env: { TUTTI_HISTORY_SIZE: 'abc' } }, /history[_-]size/i],
  ['TUTTI_WORKERS=-2', ['--port', '0'], { env: { TUTTI_WORKERS: '-2' } }, /workers/i],
  ['config {"history_size": -1}', ['--port', '0'], { config: { history_size: -1 } }, /history[_-]size/i],
  ['config {"history_size": "many"}', ['--port', '0'], { config: { history_size: 'many' } }, /history[_-]size/i],
  ['config {"stale_timeout": -5}', ['--port', '0'], { config: { stale_timeout: -5 } }, /stale[_-]timeout/i],
  ['config that is not JSON', ['--port', '0'], { config: '{"history_size": 3,' }, /config/i],
  ['config file that does not exist', ['--port', '0', '--config', '/nonexistent/tutti-config.json'], {}, /config/i],
  ['config path that is a directory', ['--port', '0', '--config', os.tmpdir()], {}, /config/i],
];

for (const [name, args, { env = {}, config }, pattern] of INVALID) {
  test(`invalid setting exits 2 naming it: ${name}`, async () => {
    const extra = config === undefined ? [] : ['--config', writeConfig(`bad-${name.replace(/\W+/g, '_')}.json`, config)];
    const r = await run([...args, '--web-root', webRoot, ...extra], { env });
    assert.equal(r.timedOut, false, `tutti exited by itself (output: ${r.out.slice(0, 500)})`);
    assert.equal(r.code, 2, `exit status (output: ${r.out.slice(0, 500)})`);
    assert.match(r.out, pattern, 'the message names the setting');
    assert.doesNotMatch(r.out, /server\.listening/, 'it did not start listening');
  });
}

test('an unknown flag does not start the server', async () => {
  const r = await run(['--port', '0', '--web-root', webRoot, '--no-such-flag', '1']);
  assert.equal(r.timedOut, false, 'tutti exited by itself');
  assert.notEqual(r.code, 0);
  assert.match(r.out, /no-such-flag/);
});

test('precedence for history_size: flag > env > config file > default', async () => {
  const cfg = writeConfig('prec.json', { history_size: 3 });
  const cases = [
    ['default', [], {}, 10],
    ['config', ['--config', cfg], {}, 3],
    ['env over config', ['--config', cfg], { TUTTI_HISTORY_SIZE: '4' }, 4],
    ['flag over env and config', ['--config', cfg, '--history-size', '5'], { TUTTI_HISTORY_SIZE: '4' }, 5],
    ['env alone', [], { TUTTI_HISTORY_SIZE: '4' }, 4],
  ];
  for (const [name, args, env, expected] of cases) {
    const s = await startTutti(args, { env });
    try {
      const o = await observedHistory(s);
      assert.deepEqual(o, { health: expected, replayed: expected }, `${name}: history kept`);
    } finally {
      assert.equal(await s.stop(), 0, `${name}: exit code`);
    }
  }
});

test('config file keys in snake_case (workers, heartbeat_interval, sse_retry) and env/flag overrides', async () => {
  const cfg = writeConfig('keys.json', { workers: 2, heartbeat_interval: 0.2, sse_retry: 1234 });
  const s = await startTutti(['--config', cfg]);
  try {
    assert.equal((await getJSON(s.url, '/health')).json.workers, 2);
    const c = await openSSE(s.url, '/sse/keys');
    await c.waitForCount('heartbeat', 1, 3000);
    assert.match(c.raw, /^retry: 1234\r?\n/);
    c.close();
  } finally {
    assert.equal(await s.stop(), 0);
  }

  const e = await startTutti(['--config', cfg], { env: { TUTTI_SSE_RETRY: '777', TUTTI_WORKERS: '1' } });
  try {
    assert.equal((await getJSON(e.url, '/health')).json.workers, 1);
    const c = await openSSE(e.url, '/sse/keys');
    await c.waitForCount('connected', 1);
    assert.match(c.raw, /^retry: 777\r?\n/);
    c.close();
  } finally {
    assert.equal(await e.stop(), 0);
  }

  const f = await startTutti(['--config', cfg, '--sse-retry', '888'], { env: { TUTTI_SSE_RETRY: '777' } });
  try {
    const c = await openSSE(f.url, '/sse/keys');
    await c.waitForCount('connected', 1);
    assert.match(c.raw, /^retry: 888\r?\n/);
    c.close();
  } finally {
    assert.equal(await f.stop(), 0);
  }
});
