// Real Redis servers for the Redis-engine integration tests (tests/integration/redis_*.test.mjs).
// Uses Debian's /usr/bin/redis-server and /usr/bin/redis-cli (override with REDIS_SERVER / REDIS_CLI).
//
//   const r = await startRedis();                 // free port, --save '' --appendonly no, temp dir
//   r.url(db)                                    // "redis://127.0.0.1:PORT/DB"
//   await r.cli('SET', 'k', 'v')                  // redis-cli -p PORT SET k v  -> stdout (trimmed)
//   await r.kill() / r.stop()                     // SIGKILL / SIGTERM, resolves once the process exited
//   await r.restart()                             // same port, same dir, same arguments
//   await r.cleanup()                             // stop (SIGKILL if running) and remove the temp dir
//
//   const c = await startRedisCluster(3);         // 3 primaries, cluster_state:ok on all
//   c.nodes[i] (as above), c.ports, c.cli(...) (redis-cli -c against the first node), c.cleanup()
//
// Every process is tracked by PID; anything still running when node exits is SIGKILLed.
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startTutti, getJSON, openSSE, waitFor } from './harness.mjs';

export const redisServerBin = process.env.REDIS_SERVER || '/usr/bin/redis-server';
export const redisCliBin = process.env.REDIS_CLI || '/usr/bin/redis-cli';

const live = new Set(); // child processes still running
process.on('exit', () => {
  for (const p of live) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* already gone */ } }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

// A free TCP port on 127.0.0.1. With { bus: true } also port + 10000 (the cluster bus) is free.
export async function freePort({ bus = false } = {}) {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 35000);
    if (!(await portFree(port))) continue;
    if (bus && !(await portFree(port + 10000))) continue;
    return port;
  }
  throw new Error('no free port found');
}

// redis-cli with an argument array (no shell: JSON and spaces pass through as they are).
// Resolves to stdout without the trailing newline; rejects when redis-cli fails or prints
// an error reply ("(error) ..." / "ERR ..." in raw mode), unless allowError.
export function redisCli(port, args, { cluster = false, raw = true, allowError = false, timeoutMs = 10000 } = {}) {
  const argv = ['-h', '127.0.0.1', '-p', String(port)];
  if (cluster) argv.push('-c');
  if (raw) argv.push('--raw');
  argv.push(...args.map(String));
  return new Promise((resolve, reject) => {
    execFile(redisCliBin, argv, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const out = stdout.replace(/\n$/, '');
      if (err) return reject(new Error(`redis-cli ${argv.join(' ')} failed: ${err.message}\n${stderr}${stdout}`));
      if (!allowError && /^(\(error\) )?(ERR|WRONGTYPE|NOSCRIPT|MOVED|ASK|CROSSSLOT|CLUSTERDOWN|LOADING|BUSY|NOPERM|Could not connect)\b/m.test(out + stderr)) {
        return reject(new Error(`redis-cli ${argv.slice(4).join(' ')}: ${out}${stderr}`));
      }
      resolve(out);
    });
  });
}

async function waitPong(port, proc, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`redis-server on ${port} exited (${proc.exitCode ?? proc.signalCode})`);
    let out = '';
    try { out = await redisCli(port, ['PING'], { allowError: true, timeoutMs: 2000 }); } catch { /* not yet */ }
    if (out === 'PONG') return;
    if (Date.now() > end) throw new Error(`redis-server on ${port} did not answer PONG (last: ${out})`);
    await sleep(30);
  }
}

// Starts redis-server. Options:
//   port (default: a free one), dir (default: a new temp dir), persist (AOF with fsync always,
//   so acknowledged writes survive SIGKILL), args (extra redis-server arguments), bus (pick a
//   port whose cluster bus port is free too).
export async function startRedis({ port, dir, persist = false, args = [], bus = false } = {}) {
  const ownDir = !dir;
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'tutti-redis-'));
  port = port || (await freePort({ bus }));
  const argv = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    ...(persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
    '--daemonize', 'no', '--protected-mode', 'no', '--logfile', '', '--loglevel', 'notice',
    ...args,
  ];
  const r = {
    port, dir, argv, proc: null, log: '', exits: [],
    url(db = 0) { return `redis://127.0.0.1:${port}/${db}`; },
    get running() { return !!r.proc && r.proc.exitCode === null && r.proc.signalCode === null; },
    cli(...a) { return redisCli(port, a); },
    cliOpts(opts, ...a) { return redisCli(port, a, opts); },
    async launch() {
      const proc = spawn(redisServerBin, argv, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      r.proc = proc;
      live.add(proc);
      proc.exited = new Promise((resolve) => proc.on('exit', (code, sig) => {
        live.delete(proc);
        r.exits.push(code ?? sig);
        resolve(code ?? sig);
      }));
      const keep = (d) => { r.log += d; if (r.log.length > 200000) r.log = r.log.slice(-100000); };
      proc.stdout.on('data', keep);
      proc.stderr.on('data', keep);
      try {
        await waitPong(port, proc);
      } catch (e) {
        proc.kill('SIGKILL');
        throw new Error(`${e.message}\n${r.log.slice(-3000)}`);
      }
      return r;
    },
    // Sends `signal` and resolves once the process exited (SIGKILL after timeoutMs).
    async stop(signal = 'SIGTERM', timeoutMs = 10000) {
      const p = r.proc;
      if (!p || p.exitCode !== null || p.signalCode !== null) return p ? p.exited : undefined;
      p.kill(signal);
      const t = setTimeout(() => { try { p.kill('SIGKILL'); } catch { /* gone */ } }, timeoutMs);
      const code = await p.exited;
      clearTimeout(t);
      return code;
    },
    kill() { return r.stop('SIGKILL'); },
    async restart() {
      await r.stop();
      await r.launch();
      return r;
    },
    async cleanup() {
      await r.stop('SIGKILL');
      if (ownDir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return r.launch();
}

// Starts n primaries in cluster mode, creates the cluster and waits for cluster_state:ok on all.
export async function startRedisCluster(n = 3, { timeoutMs = 30000 } = {}) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tutti-rcluster-'));
  const nodes = [];
  const c = {
    root, nodes,
    get ports() { return nodes.map((x) => x.port); },
    url(db = 0) { return nodes[0].url(db); },
    cli(...a) { return redisCli(nodes[0].port, a, { cluster: true }); },
    async cleanup() {
      await Promise.all(nodes.map((x) => x.stop('SIGKILL')));
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    const used = new Set();
    for (let i = 0; i < n; i++) {
      let port;
      do { port = await freePort({ bus: true }); } while (used.has(port) || used.has(port + 10000) || used.has(port - 10000));
      used.add(port); used.add(port + 10000);
      const dir = path.join(root, `n${i}`);
      fs.mkdirSync(dir);
      nodes.push(await startRedis({
        port, dir,
        args: ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--cluster-node-timeout', '5000'],
      }));
    }
    const create = ['--cluster', 'create', ...nodes.map((x) => `127.0.0.1:${x.port}`), '--cluster-replicas', '0', '--cluster-yes'];
    await new Promise((resolve, reject) => {
      execFile(redisCliBin, create, { timeout: 20000 }, (err, stdout, stderr) => {
        if (err || !/All 16384 slots covered/.test(stdout)) reject(new Error(`redis-cli ${create.join(' ')}: ${err?.message}\n${stdout}${stderr}`));
        else resolve();
      });
    });
    const end = Date.now() + timeoutMs;
    for (const x of nodes) {
      for (;;) {
        const info = await redisCli(x.port, ['CLUSTER', 'INFO'], { allowError: true }).catch(() => '');
        if (/cluster_state:ok/.test(info)) break;
        if (Date.now() > end) throw new Error(`cluster node ${x.port} not ok:\n${info}`);
        await sleep(50);
      }
    }
    return c;
  } catch (e) {
    await c.cleanup();
    throw e;
  }
}

// The primary (port) that serves `key` in a cluster started by startRedisCluster.
export async function clusterPortForKey(cluster, key) {
  const slot = Number(await redisCli(cluster.nodes[0].port, ['CLUSTER', 'KEYSLOT', key]));
  const nodesText = await redisCli(cluster.nodes[0].port, ['CLUSTER', 'NODES']);
  for (const line of nodesText.split('\n')) {
    const f = line.split(' ');
    if (!f[2] || !f[2].includes('master')) continue;
    const port = Number(f[1].split('@')[0].split(':').pop());
    for (const range of f.slice(8)) {
      const [a, b = a] = range.split('-').map(Number);
      if (slot >= a && slot <= b) return port;
    }
  }
  throw new Error(`no primary holds slot ${slot}`);
}

// ---------------------------------------------------------------------------
// tutti on Redis: start a node, read its metrics, publish like a worker, resumable SSE.
// ---------------------------------------------------------------------------

// Starts tutti with --engine redis on redisUrl; with waitUp (default) waits until /health
// says engine_state "up".
export async function startTuttiRedis(redisUrl, args = [], { waitUp = true, ...opts } = {}) {
  const t = await startTutti(['--engine', 'redis', '--redis-url', redisUrl, ...args], opts);
  if (waitUp) {
    try {
      await waitForEngine(t.url, 'up', 10000);
    } catch (e) {
      await t.stop();
      throw new Error(`${e.message}\nlogs:\n${logTail(t)}`);
    }
  }
  return t;
}

export async function health(url) {
  const r = await getJSON(url, '/health');
  return { ...r.json, http: r.status }; // status is the body's ("ok" / "degraded")
}

export async function waitForEngine(url, state = 'up', timeoutMs = 10000) {
  let last;
  try {
    await waitFor(async () => {
      try { last = await health(url); } catch (e) { last = e.message; return false; }
      return last.engine_state === state && (state !== 'up' || last.http === 200);
    }, timeoutMs);
  } catch {
    throw new Error(`timed out waiting for engine_state ${state} on ${url} (last /health: ${JSON.stringify(last)})`);
  }
}

// /metrics as { name: value } for series without labels, and name{labels} keys for the rest.
export async function metrics(url) {
  const res = await fetch(`${url}/metrics`);
  const text = await res.text();
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+?)(\{.*\})?\s+(\S+)$/.exec(line);
    if (m) out[m[1] + (m[2] || '')] = Number(m[3]);
  }
  return out;
}

// The last `n` log records of a tutti started by the harness, one JSON line each.
export function logTail(t, n = 30, pred = () => true) {
  return t.logs.filter(pred).slice(-n).map((l) => JSON.stringify(l)).join('\n');
}

// Publishes like a worker: FCALL tutti_publish on Redis. Resolves to { epoch, offset, id }.
export async function workerPublish(port, channel, event, data, {
  sharded = false, cluster = false, maxlen = 1000, ttlMs = 300000, metaTtlMs = 604800000,
} = {}) {
  const out = await redisCli(port, [
    'FCALL', 'tutti_publish', '2', `tutti:{${channel}}:m`, `tutti:{${channel}}:s`,
    channel, event, data, String(maxlen), String(ttlMs), String(metaTtlMs), sharded ? '1' : '0',
  ], { cluster });
  const [epoch, offset] = out.split('\n');
  if (!epoch || !/^\d+$/.test(offset)) throw new Error(`unexpected FCALL answer: ${JSON.stringify(out)}`);
  return { epoch, offset: Number(offset), id: `${epoch}:${offset}` };
}

// An SSE reader that reconnects by itself with Last-Event-ID when its stream ends, to the
// base URL getBase() answers at that moment (so it can move between nodes).
//   msgs: message events ({ id, type, data }) across all connections; connected: the
//   `connected` events' { id, data }; incomplete: recovery_incomplete data; refusals:
//   non-200 answers or connection errors while reconnecting; connects; conn (current client).
//   drop(): closes the current stream (it reconnects); stop(): closes it for good.
//   beforeReconnect: async function awaited before each reconnection.
export function resumableSSE(getBase, path, { retryMs = 100, autoReconnect = true, beforeReconnect } = {}) {
  const st = {
    msgs: [], connected: [], incomplete: [], refusals: [], ends: 0, connects: 0,
    lastId: undefined, conn: null, stopped: false, gen: 0,
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  async function loop() {
    while (!st.stopped) {
      const gen = ++st.gen;
      let c;
      try {
        c = await openSSE(getBase(), path, {
          headers: st.lastId ? { 'Last-Event-ID': st.lastId } : {},
          keepRaw: false,
          onEvent: (e) => {
            if (gen !== st.gen) return;
            if (e.id !== undefined) st.lastId = e.id;
            if (e.type === 'connected') st.connected.push({ id: e.id, data: JSON.parse(e.data), at: st.msgs.length });
            else if (e.type === 'recovery_incomplete') st.incomplete.push(JSON.parse(e.data));
            else if (e.id !== undefined) st.msgs.push({ id: e.id, type: e.type, data: e.data });
          },
        });
      } catch (e) {
        st.refusals.push(e.message);
        await sleep(retryMs);
        continue;
      }
      if (c.status !== 200) {
        st.refusals.push(`${c.status} ${c.body}`);
        await sleep(retryMs);
        continue;
      }
      st.conn = c;
      st.connects++;
      await c.closed;
      if (gen === st.gen) st.gen++; // ignore anything late from this connection
      st.ends++;
      if (!autoReconnect) return;
      if (!st.stopped) await sleep(retryMs);
      if (!st.stopped && beforeReconnect) await beforeReconnect();
    }
  }
  st.done = loop();
  st.drop = () => { if (st.conn) st.conn.close(); };
  st.stop = async () => { st.stopped = true; st.gen++; if (st.conn) st.conn.close(); await st.done; };
  st.waitConnected = (n = 1, ms = 5000) => waitFor(() => st.connected.length >= n, ms, `${n} connected events on ${path} (refusals: ${st.refusals.slice(-3).join(' | ')})`);
  st.waitMsgs = (n, ms = 10000) => waitFor(() => st.msgs.length >= n, ms, `${n} messages on ${path} (have ${st.msgs.length}; refusals: ${st.refusals.slice(-3).join(' | ')})`);
  return st;
}
