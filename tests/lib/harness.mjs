// Test harness: starts the real tutti binary on a free port and waits until it listens.
// The binary comes from TUTTI_BIN (set by ctest); the web root from TUTTI_WEB_ROOT.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const tuttiBin = process.env.TUTTI_BIN || path.join(repoRoot, 'build', 'asan', 'tutti');
export const webRoot = process.env.TUTTI_WEB_ROOT || path.join(repoRoot, 'web');

// Starts tutti with extra command-line arguments; resolves to
// { port, url, proc, logs, stop() }. `logs` collects parsed JSON log lines.
// stop() sends SIGTERM and resolves to the exit code.
// Options: env (extra environment), timeoutMs, webRoot (defaults to TUTTI_WEB_ROOT / web/).
export async function startTutti(args = [], { env = {}, timeoutMs = 10000, webRoot: root = webRoot } = {}) {
  const proc = spawn(tuttiBin, ['--port', '0', '--web-root', root, '--log-level', 'info', ...args], {
    env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = [];
  let stderr = '';
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve(code ?? signal)));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tutti did not start:\n' + stderr)), timeoutMs);
    let pending = '';
    proc.stderr.on('data', (chunk) => {
      stderr += chunk;
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        let rec;
        try { rec = JSON.parse(line); } catch { continue; }
        logs.push(rec);
        if (rec.event === 'server.listening') { clearTimeout(timer); resolve(rec.context.port); }
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`tutti exited with ${code}:\n` + stderr)); });
  });
  proc.stdout.resume();
  const url = `http://127.0.0.1:${port}`;
  return {
    port, url, proc, logs,
    get stderr() { return stderr; },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}

// Publishes through POST /api/publish; resolves to the parsed JSON answer.
export async function publish(url, channel, data, { event, headers = {} } = {}) {
  const body = { channel, data };
  if (event) body.event = event;
  const res = await fetch(`${url}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`publish failed ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

// Waits until pred() is true, polling every 10 ms; throws after timeoutMs.
export async function waitFor(pred, timeoutMs = 5000, what = 'condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------
// Helpers added for the integration tests (existing exports above are unchanged).
// ---------------------------------------------------------------------------

// One keep-alive agent with no socket limit for raw SSE streams (node:http).
export const sseAgent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

// Incremental text/event-stream parser (WHATWG rules: lines end with \r\n, \n or \r;
// a blank line ends a block; one space after the colon is dropped).
// onBlock receives every non-empty block:
//   { lines, id (undefined if no id line), event, type (event or 'message'),
//     dataLines, data (dataLines joined by \n), hasData, retry, comments }
export function createSSEParser(onBlock) {
  let pending = '';
  let block = newBlock();
  function newBlock() {
    return { lines: [], id: undefined, event: undefined, dataLines: [], retry: undefined, comments: [] };
  }
  function dispatch() {
    if (block.lines.length === 0) return;
    const b = block;
    block = newBlock();
    b.type = b.event ?? 'message';
    b.hasData = b.dataLines.length > 0;
    b.data = b.dataLines.join('\n');
    onBlock(b);
  }
  function line(l) {
    if (l === '') return dispatch();
    block.lines.push(l);
    if (l.startsWith(':')) { block.comments.push(l.slice(1)); return; }
    const c = l.indexOf(':');
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? '' : l.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') block.dataLines.push(value);
    else if (field === 'event') block.event = value;
    else if (field === 'id') block.id = value;
    else if (field === 'retry') block.retry = value;
  }
  return {
    push(text) {
      pending += text;
      let start = 0;
      for (let i = 0; i < pending.length; i++) {
        const ch = pending.charCodeAt(i);
        if (ch === 10) { line(pending.slice(start, i)); start = i + 1; }
        else if (ch === 13) {
          if (i + 1 === pending.length) break; // need the next char to know if \r\n
          line(pending.slice(start, i));
          if (pending.charCodeAt(i + 1) === 10) i++;
          start = i + 1;
        }
      }
      pending = pending.slice(start);
    },
  };
}

// Opens an SSE stream with node:http. Resolves once the response head arrives to a client:
//   status, headers, body (for non-200), raw (all text, unless keepRaw false), blocks,
//   events (blocks with data), lastId, ended, closed (promise), close(),
//   of(type) -> events of that type, messages() -> events that have an id and are not `connected`,
//   waitFor(pred, ms, what), waitForCount(type, n, ms)
// Options: headers, keepRaw (store raw text), keepBlocks (store every block, default keepRaw),
//   keep(event) -> whether to store an event in `events` (default: all), onEvent(event, client).
export function openSSE(baseUrl, pathAndQuery, {
  headers = {}, keepRaw = true, keepBlocks = keepRaw, keep = () => true, onEvent, agent = sseAgent, timeoutMs = 5000,
} = {}) {
  const u = new URL(pathAndQuery, baseUrl);
  return new Promise((resolve, reject) => {
    const client = {
      status: 0, headers: {}, body: '', raw: '', blocks: [], events: [], lastId: undefined,
      ended: false, error: undefined,
      of(type) { return this.events.filter((e) => e.type === type); },
      messages() { return this.events.filter((e) => e.id !== undefined && e.type !== 'connected'); },
      waitFor(pred, ms = 5000, what = 'SSE condition') { return waitFor(() => pred(this), ms, what); },
      waitForCount(type, n, ms = 5000) {
        return waitFor(() => this.of(type).length >= n, ms, `${n} '${type}' events on ${pathAndQuery} (have ${this.of(type).length})`);
      },
      close() { req.destroy(); },
    };
    let resolveClosed;
    client.closed = new Promise((r) => { resolveClosed = r; });
    const parser = createSSEParser((b) => {
      if (keepBlocks) client.blocks.push(b);
      if (b.id !== undefined) client.lastId = b.id;
      if (b.hasData) {
        if (keep(b)) client.events.push(b);
        if (onEvent) onEvent(b, client);
      }
    });
    const timer = setTimeout(() => { req.destroy(); reject(new Error(`no SSE response for ${pathAndQuery}`)); }, timeoutMs);
    const req = http.get(u, { agent, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      clearTimeout(timer);
      client.status = res.statusCode;
      client.headers = res.headers;
      client.res = res;
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        if (client.status !== 200) { client.body += chunk; return; }
        if (keepRaw) client.raw += chunk;
        parser.push(chunk);
      });
      const done = () => { client.ended = true; resolveClosed(); };
      res.on('end', done);
      res.on('close', done);
      res.on('error', () => {});
      if (res.statusCode !== 200) {
        res.on('end', () => { try { client.json = JSON.parse(client.body); } catch {} resolve(client); });
      } else {
        resolve(client);
      }
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      client.error = err;
      client.ended = true;
      resolveClosed();
      if (!client.status) reject(err);
    });
  });
}

// GET url (path relative to base) and parse JSON; resolves to { status, headers, json, text }.
export async function getJSON(baseUrl, p, init = {}) {
  const res = await fetch(new URL(p, baseUrl), init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch {}
  return { status: res.status, headers: res.headers, json, text };
}

// Raw TCP connection for byte-exact HTTP tests.
//   write(bytes), readResponse({ head, timeoutMs }) -> { status, reason, headers, rawHeaders, body, json },
//   waitClosed(ms) -> true if the peer closed within ms, isClosed, destroy()
export function connectRaw(port, { host = '127.0.0.1' } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host });
    let buf = Buffer.alloc(0);
    let closed = false;
    let wake = () => {};
    const conn = {
      sock,
      get isClosed() { return closed; },
      get buffered() { return buf; },
      write(data) { if (!closed && !sock.destroyed) sock.write(data); },
      destroy() { sock.destroy(); },
      async waitClosed(ms = 2000) {
        const end = Date.now() + ms;
        while (!closed && Date.now() < end) await new Promise((r) => { wake = r; setTimeout(r, 20); });
        return closed;
      },
      // Reads one response from the stream. SSE responses return right after the head.
      async readResponse({ head = false, timeoutMs = 5000 } = {}) {
        const end = Date.now() + timeoutMs;
        const need = async (pred) => {
          for (;;) {
            const r = pred();
            if (r !== undefined) return r;
            if (closed) throw new Error(`connection closed before a full response; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`);
            if (Date.now() > end) throw new Error(`timed out reading response; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`);
            await new Promise((r2) => { wake = r2; setTimeout(r2, 20); });
          }
        };
        const headEnd = await need(() => { const i = buf.indexOf('\r\n\r\n'); return i >= 0 ? i : undefined; });
        const headText = buf.subarray(0, headEnd).toString('latin1');
        buf = buf.subarray(headEnd + 4);
        const [statusLine, ...hl] = headText.split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
        if (!m) throw new Error('bad status line: ' + JSON.stringify(statusLine));
        const status = Number(m[1]);
        const headers = {};
        const rawHeaders = [];
        for (const h of hl) {
          const c = h.indexOf(':');
          const name = h.slice(0, c).trim().toLowerCase();
          const value = h.slice(c + 1).trim();
          rawHeaders.push([name, value]);
          headers[name] = name in headers ? headers[name] + ', ' + value : value;
        }
        let body = Buffer.alloc(0);
        const noBody = head || status === 204 || status === 304 || (status >= 100 && status < 200);
        if (noBody) {
          // nothing
        } else if (/text\/event-stream/.test(headers['content-type'] || '')) {
          // streaming: leave the rest in the buffer
        } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
          const parts = [];
          for (;;) {
            const lineEnd = await need(() => { const i = buf.indexOf('\r\n'); return i >= 0 ? i : undefined; });
            const size = parseInt(buf.subarray(0, lineEnd).toString('latin1'), 16);
            await need(() => (buf.length >= lineEnd + 2 + size + 2 ? true : undefined));
            parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
            buf = buf.subarray(lineEnd + 2 + size + 2);
            if (size === 0) break;
          }
          body = Buffer.concat(parts);
        } else if (headers['content-length'] !== undefined) {
          const n = Number(headers['content-length']);
          await need(() => (buf.length >= n ? true : undefined));
          body = buf.subarray(0, n);
          buf = buf.subarray(n);
        } else {
          await need(() => (closed ? true : undefined)).catch(() => {});
          body = buf;
          buf = Buffer.alloc(0);
        }
        const text = body.toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch {}
        return { status, reason: m[2] ?? '', headers, rawHeaders, body: text, json };
      },
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); wake(); });
    sock.on('error', () => {}); // ECONNRESET/EPIPE after the server closes: treated as close
    sock.on('close', () => { closed = true; wake(); });
    let connected = false;
    sock.once('connect', () => { connected = true; resolve(conn); });
    sock.once('error', (e) => { if (!connected) reject(e); });
  });
}

// Publishes raw bytes as the whole data through POST /api/channels/{ch}/publish.
export async function publishRaw(url, channel, body, { event, headers = {} } = {}) {
  const q = event ? `?event=${encodeURIComponent(event)}` : '';
  const ch = /^[A-Za-z0-9_.:\/-]+$/.test(channel) ? channel : encodeURIComponent(channel);
  const res = await fetch(`${url}/api/channels/${ch}/publish${q}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body,
  });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`publish failed ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

// Splits "e:1,f:2" into [{ epoch, offset }, ...].
export function parsePosition(id) {
  return id.split(',').map((p) => {
    const i = p.lastIndexOf(':');
    return { epoch: p.slice(0, i), offset: Number(p.slice(i + 1)) };
  });
}
