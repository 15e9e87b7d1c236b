// WebSocket test helpers: a raw-socket RFC 6455 client (hand-built frames, byte-exact
// handshake, permessage-deflate decoding) and a thin wrapper over the `ws` package that
// keeps the raw text of every message. Used by tests/integration/ws_*.test.mjs.
import net from 'node:net';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { waitFor } from './harness.mjs';

export { WebSocket };

export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xA };
const DEFLATE_TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);

export const acceptFor = (key) => crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
export const randomKey = () => crypto.randomBytes(16).toString('base64');
const toBuf = (p) => (Buffer.isBuffer(p) ? p : typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p ?? []));

// Builds one frame.
//   fin, rsv1..3, opcode, payload (Buffer|string|array), mask (client frames: true),
//   maskKey (4 bytes; random by default),
//   lengthForm: undefined (minimal), 16 (force the 126 form), 64 (force the 127 form),
//   declaredLength: a length to write in the header instead of payload.length (number or
//     BigInt; implies the 127 form when it does not fit 16 bits), highBit: set the MSB of
//     the 64-bit length.
export function encodeFrame({
  fin = true, rsv1 = false, rsv2 = false, rsv3 = false, opcode = OP.TEXT, payload = Buffer.alloc(0),
  mask = true, maskKey, lengthForm, declaredLength, highBit = false,
} = {}) {
  const data = toBuf(payload);
  const len = declaredLength !== undefined ? BigInt(declaredLength) : BigInt(data.length);
  let form = lengthForm;
  if (form === undefined) form = highBit || len > 0xffffn ? 64 : len > 125n ? 16 : 7;
  const head = [];
  head.push((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (rsv2 ? 0x20 : 0) | (rsv3 ? 0x10 : 0) | (opcode & 0x0f));
  const m = mask ? 0x80 : 0;
  let ext = Buffer.alloc(0);
  if (form === 7) head.push(m | Number(len));
  else if (form === 16) { head.push(m | 126); ext = Buffer.alloc(2); ext.writeUInt16BE(Number(len)); }
  else {
    head.push(m | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(highBit ? (len | (1n << 63n)) : len);
  }
  let key = Buffer.alloc(0);
  let body = data;
  if (mask) {
    key = maskKey ? toBuf(maskKey) : crypto.randomBytes(4);
    body = Buffer.from(data);
    for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3];
  }
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

export const closePayload = (code, reason = '') => {
  const r = toBuf(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code);
  r.copy(b, 2);
  return b;
};

// Compresses one message for permessage-deflate (RFC 7692 7.2.1: strip the 00 00 ff ff tail).
export function deflateMessage(data) {
  const out = zlib.deflateRawSync(toBuf(data), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}
export function inflateMessage(data) {
  return zlib.inflateRawSync(Buffer.concat([data, DEFLATE_TRAILER]), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

// Parses frames from a server byte stream. Returns { frames, rest }; a frame that is not
// complete stays in `rest`.
export function parseFrames(buf) {
  const frames = [];
  let pos = 0;
  for (;;) {
    if (buf.length - pos < 2) break;
    const b0 = buf[pos];
    const b1 = buf[pos + 1];
    let len = b1 & 0x7f;
    let hdr = 2;
    let lengthForm = 7;
    if (len === 126) {
      if (buf.length - pos < 4) break;
      len = buf.readUInt16BE(pos + 2); hdr = 4; lengthForm = 16;
    } else if (len === 127) {
      if (buf.length - pos < 10) break;
      const big = buf.readBigUInt64BE(pos + 2);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`server sent a 64-bit length ${big}`);
      len = Number(big); hdr = 10; lengthForm = 64;
    }
    const masked = (b1 & 0x80) !== 0;
    if (masked) hdr += 4;
    if (buf.length - pos < hdr + len) break;
    let payload = Buffer.from(buf.subarray(pos + hdr, pos + hdr + len));
    if (masked) {
      const key = buf.subarray(pos + hdr - 4, pos + hdr);
      for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    }
    frames.push({
      fin: (b0 & 0x80) !== 0, rsv1: (b0 & 0x40) !== 0, rsv2: (b0 & 0x20) !== 0, rsv3: (b0 & 0x10) !== 0,
      opcode: b0 & 0x0f, masked, lengthForm, payload,
    });
    pos += hdr + len;
  }
  return { frames, rest: buf.subarray(pos) };
}

function parseHead(text) {
  const [statusLine, ...lines] = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) throw new Error('bad status line ' + JSON.stringify(statusLine));
  const headers = {};
  for (const l of lines) {
    const c = l.indexOf(':');
    if (c < 0) continue;
    const name = l.slice(0, c).trim().toLowerCase();
    const value = l.slice(c + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers };
}

// Builds an upgrade request. headers: extra or replacing headers (case-insensitive names);
// a null value leaves the default header out.
export function upgradeRequest({
  port, path = '/ws', method = 'GET', httpVersion = '1.1', key = randomKey(), headers = {},
} = {}) {
  const h = new Map([
    ['host', ['Host', `127.0.0.1:${port}`]],
    ['upgrade', ['Upgrade', 'websocket']],
    ['connection', ['Connection', 'Upgrade']],
    ['sec-websocket-key', ['Sec-WebSocket-Key', key]],
    ['sec-websocket-version', ['Sec-WebSocket-Version', '13']],
  ]);
  for (const [k, v] of Object.entries(headers)) {
    if (v === null) h.delete(k.toLowerCase());
    else h.set(k.toLowerCase(), [k, String(v)]);
  }
  let text = `${method} ${path} HTTP/${httpVersion}\r\n`;
  for (const [, [k, v]] of h) text += `${k}: ${v}\r\n`;
  if (method === 'POST') text += 'Content-Length: 0\r\n';
  return text + '\r\n';
}

// Raw WebSocket client over node:net.
// Resolves once the handshake response head (and, for non-101, its body) has arrived:
//   { status, headers, body, json, key, extensions (negotiated header or ''), deflate,
//     frames (every server frame), messages (assembled data messages:
//       { opcode, compressed, payload (inflated), text, json }), controls (ping/pong/close frames),
//     closeFrame ({ code, reason, payload } once received), isClosed, errors (client-side
//     findings: masked server frames, frames after close, bad compressed data),
//     write(bytes), sendFrame(opts), sendText(str, opts), sendJSON(obj), ping(p), pong(p), close(code, reason),
//     waitFor(pred, ms, what), waitMessage(pred, ms, what), waitJSON(type, ms),
//     expectClose(code, ms) -> closeFrame after the server closes the TCP connection,
//     waitClosed(ms), destroy() }
// Options: path, key, headers, method, httpVersion, request (exact request text),
//   initial (bytes written in the same write as the request, e.g. the first frames),
//   autoPong (answer server pings; default false), autoCloseReply (answer a close with a
//   close, as RFC 6455 clients do; default true).
export function openRawWS(port, {
  path = '/ws', key = randomKey(), headers = {}, method, httpVersion, request, initial,
  autoPong = false, autoCloseReply = true, timeoutMs = 5000,
} = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let gotHead = false;
    let partial = null; // { opcode, compressed, parts }
    const c = {
      sock, key, status: 0, headers: {}, body: '', json: undefined, extensions: '', deflate: false,
      frames: [], messages: [], controls: [], closeFrame: undefined, isClosed: false, errors: [],
      sentClose: false, closedAt: 0,
      write(bytes) { if (!sock.destroyed) sock.write(bytes); },
      sendFrame(opts) { c.write(encodeFrame(opts)); },
      sendText(str, opts = {}) { c.sendFrame({ opcode: OP.TEXT, payload: str, ...opts }); },
      sendJSON(obj) { c.sendText(JSON.stringify(obj)); },
      ping(p = '') { c.sendFrame({ opcode: OP.PING, payload: p }); },
      pong(p = '') { c.sendFrame({ opcode: OP.PONG, payload: p }); },
      close(code, reason = '') {
        c.sentClose = true;
        c.sendFrame({ opcode: OP.CLOSE, payload: code === undefined ? Buffer.alloc(0) : closePayload(code, reason) });
      },
      waitFor(pred, ms = 3000, what = 'raw WebSocket condition') { return waitFor(() => pred(c), ms, what); },
      async waitMessage(pred, ms = 3000, what = 'a message') {
        let found;
        await waitFor(() => (found = c.messages.find(pred)) !== undefined || c.isClosed, ms, what);
        if (!found) found = c.messages.find(pred);
        if (!found) throw new Error(`connection closed before ${what}; close frame ${JSON.stringify(c.closeFrame)}; messages ${JSON.stringify(c.messages.map((m) => m.text))}`);
        return found;
      },
      waitJSON(type, ms = 3000) { return c.waitMessage((m) => m.json && m.json.type === type, ms, `a "${type}" message`); },
      async waitClosed(ms = 3000) {
        try { await waitFor(() => c.isClosed, ms); } catch { /* returns false */ }
        return c.isClosed;
      },
      // Waits for the server's close frame and then the end of the TCP connection.
      async expectClose(ms = 3000) {
        try {
          await waitFor(() => c.closeFrame !== undefined || c.isClosed, ms);
        } catch {
          throw new Error(`no close frame within ${ms} ms; frames ${describeFrames(c.frames)}`);
        }
        if (!c.closeFrame) throw new Error(`TCP closed without a close frame; frames ${describeFrames(c.frames)}`);
        if (!(await c.waitClosed(ms))) throw new Error(`close frame ${JSON.stringify(c.closeFrame)} received but the server kept the TCP connection open for ${ms} ms`);
        return c.closeFrame;
      },
      destroy() { sock.destroy(); },
    };
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no handshake answer for ${path}: ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`)); }, timeoutMs);

    function onFrame(f) {
      f.at = Date.now();
      c.frames.push(f);
      if (f.masked) c.errors.push('server frame is masked');
      if ((f.lengthForm === 16 && f.payload.length < 126) || (f.lengthForm === 64 && f.payload.length < 65536)) {
        c.errors.push(`server frame of ${f.payload.length} bytes uses the ${f.lengthForm}-bit length form`);
      }
      if (f.rsv2 || f.rsv3) c.errors.push('server frame with RSV2/RSV3');
      if (f.rsv1 && (f.opcode === OP.CONT || f.opcode >= 0x8)) c.errors.push(`RSV1 on a server frame with opcode ${f.opcode}`);
      if (f.opcode >= 0x8 && (!f.fin || f.payload.length > 125)) c.errors.push('bad server control frame');
      if (f.opcode === OP.CLOSE && f.payload.length >= 2) {
        try { new TextDecoder('utf-8', { fatal: true }).decode(f.payload.subarray(2)); } catch { c.errors.push('close reason is not UTF-8'); }
      }
      if (c.closeFrame) c.errors.push(`frame opcode ${f.opcode} after the close frame`);
      if (f.opcode >= 0x8) {
        c.controls.push(f);
        if (f.opcode === OP.PING && autoPong && !c.sentClose) c.pong(f.payload);
        if (f.opcode === OP.CLOSE && !c.closeFrame) {
          const p = f.payload;
          c.closeFrame = {
            code: p.length >= 2 ? p.readUInt16BE(0) : undefined,
            reason: p.length > 2 ? p.subarray(2).toString('utf8') : '',
            payload: p,
          };
          if (autoCloseReply && !c.sentClose) {
            c.sentClose = true;
            c.write(encodeFrame({ opcode: OP.CLOSE, payload: p.length >= 2 ? p.subarray(0, 2) : Buffer.alloc(0) }));
          }
        }
        return;
      }
      if (f.opcode === OP.CONT) {
        if (!partial) { c.errors.push('server continuation without a start'); return; }
        partial.parts.push(f.payload);
      } else {
        if (partial) c.errors.push('server started a message inside a fragmented one');
        partial = { opcode: f.opcode, compressed: f.rsv1, parts: [f.payload], frameRsv1: f.rsv1 };
      }
      if (!f.fin) return;
      let payload = Buffer.concat(partial.parts);
      if (partial.compressed) {
        if (!c.deflate) c.errors.push('RSV1 without a negotiated extension');
        try { payload = inflateMessage(payload); } catch (e) { c.errors.push(`inflate failed: ${e.message}`); }
      }
      const msg = { opcode: partial.opcode, compressed: partial.compressed, payload, frames: partial.parts.length, at: f.at };
      if (msg.opcode === OP.TEXT) {
        msg.text = payload.toString('utf8');
        try { msg.json = JSON.parse(msg.text); } catch { /* kept as text */ }
      }
      partial = null;
      c.messages.push(msg);
    }

    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!gotHead) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = parseHead(buf.subarray(0, i).toString('latin1'));
        Object.assign(c, head);
        buf = buf.subarray(i + 4);
        gotHead = true;
        if (c.status === 101) {
          c.extensions = c.headers['sec-websocket-extensions'] || '';
          c.deflate = /permessage-deflate/i.test(c.extensions);
          clearTimeout(timer);
          resolve(c);
        }
      }
      if (!gotHead) return;
      if (c.status !== 101) {
        const n = Number(c.headers['content-length'] ?? -1);
        if (n >= 0 && buf.length >= n) {
          c.body = buf.subarray(0, n).toString('utf8');
          try { c.json = JSON.parse(c.body); } catch { /* not JSON */ }
          clearTimeout(timer);
          resolve(c);
        }
        return;
      }
      let parsed;
      try { parsed = parseFrames(buf); } catch (e) { c.errors.push(e.message); sock.destroy(); return; }
      buf = Buffer.from(parsed.rest);
      for (const f of parsed.frames) onFrame(f);
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      c.isClosed = true;
      c.closedAt = Date.now();
      clearTimeout(timer);
      if (!gotHead) reject(new Error(`connection closed before a handshake answer: ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`));
      else if (c.status !== 101) {
        c.body = buf.toString('utf8');
        try { c.json = JSON.parse(c.body); } catch { /* not JSON */ }
        resolve(c);
      }
    });
    sock.once('connect', () => {
      const req = Buffer.from(request ?? upgradeRequest({ port, path, key, headers, method, httpVersion }), 'latin1');
      sock.write(initial ? Buffer.concat([req, initial]) : req);
    });
  });
}

export function describeFrames(frames) {
  return JSON.stringify(frames.map((f) => ({
    op: f.opcode, fin: f.fin, rsv1: f.rsv1, len: f.payload.length,
    payload: f.opcode === OP.CLOSE && f.payload.length >= 2
      ? `${f.payload.readUInt16BE(0)} ${f.payload.subarray(2).toString('utf8')}`
      : f.payload.subarray(0, 80).toString('utf8'),
  })));
}

// Returns the raw source text of a top-level member of a JSON object text (no re-serialisation),
// or undefined when the member is absent.
export function rawMember(text, name) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\r\n'.includes(text[i])) i++; };
  const skipString = () => {
    if (text[i] !== '"') throw new Error(`expected a string at ${i} in ${text.slice(0, 200)}`);
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
  };
  const skipValue = () => {
    if (text[i] === '"') return skipString();
    if (text[i] === '{' || text[i] === '[') {
      let depth = 0;
      for (; i < text.length; i++) {
        const ch = text[i];
        if (ch === '"') { skipString(); i--; continue; }
        if (ch === '{' || ch === '[') depth++;
        else if (ch === '}' || ch === ']') { depth--; if (depth === 0) { i++; return; } }
      }
      throw new Error('unterminated value');
    }
    while (i < text.length && !',}] \t\r\n'.includes(text[i])) i++;
  };
  ws();
  if (text[i] !== '{') throw new Error('not an object');
  i++;
  for (;;) {
    ws();
    if (text[i] === '}') return undefined;
    const ks = i;
    skipString();
    const key = JSON.parse(text.slice(ks, i));
    ws();
    if (text[i] !== ':') throw new Error(`expected : at ${i}`);
    i++;
    ws();
    const vs = i;
    skipValue();
    if (key === name) return text.slice(vs, i);
    ws();
    if (text[i] === ',') i++;
  }
}

// `ws` package client that keeps every message as { raw, json } (binary ones as { binary }).
// Resolves on open (or rejects with the HTTP status on a failed handshake):
//   { ws, msgs, upgradeHeaders (the 101's headers), closed (promise of { code, reason }), closeInfo, of(type), waitFor(pred, ms, what),
//     waitType(type, n, ms) -> the n-th message of that type, send(obj), sendRaw(text|Buffer),
//     request(obj, ms) -> the reply (or error) whose ref deep-equals obj.id (an id is added if missing) }
let nextId = 1;
export function openWS(baseUrl, path = '/ws', { perMessageDeflate = false, headers, timeoutMs = 5000, keep = () => true, onMessage } = {}) {
  const url = baseUrl.replace(/^http/, 'ws') + path;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate, headers, handshakeTimeout: timeoutMs });
    let resolveClosed;
    const c = {
      ws, msgs: [], closeInfo: undefined, errors: [],
      closed: new Promise((r) => { resolveClosed = r; }),
      of(type) { return c.msgs.filter((m) => m.json && m.json.type === type); },
      waitFor(pred, ms = 5000, what = 'WebSocket condition') { return waitFor(() => pred(c), ms, what); },
      async waitType(type, n = 1, ms = 5000) {
        await waitFor(() => c.of(type).length >= n || c.closeInfo !== undefined, ms,
          `${n} "${type}" messages (have ${c.of(type).length}: ${JSON.stringify(c.msgs.slice(-5).map((m) => m.raw))})`);
        if (c.of(type).length < n) throw new Error(`closed (${JSON.stringify(c.closeInfo)}) before ${n} "${type}" messages; got ${JSON.stringify(c.msgs.map((m) => m.raw).slice(-10))}`);
        return c.of(type)[n - 1];
      },
      send(obj) { ws.send(JSON.stringify(obj)); },
      sendRaw(data, opts) { ws.send(data, opts); },
      async request(obj, ms = 5000) {
        const o = 'id' in obj ? obj : { ...obj, id: `r${nextId++}` };
        const want = JSON.stringify(o.id);
        const seen = c.msgs.length;
        c.send(o);
        let found;
        await waitFor(() => (found = c.msgs.slice(seen).find((m) => m.json && 'ref' in m.json && JSON.stringify(m.json.ref) === want)) !== undefined
          || c.closeInfo !== undefined, ms, `a reply with ref ${want} to ${JSON.stringify(o)}`);
        if (!found) throw new Error(`closed (${JSON.stringify(c.closeInfo)}) before a reply to ${JSON.stringify(o)}`);
        return found.json;
      },
      close(code, reason) { ws.close(code, reason); },
      terminate() { ws.terminate(); },
    };
    ws.on('message', (data, isBinary) => {
      let m;
      if (isBinary) m = { binary: data };
      else {
        const raw = data.toString('utf8');
        m = { raw };
        try { m.json = JSON.parse(raw); } catch { c.errors.push(`not JSON: ${raw.slice(0, 100)}`); }
      }
      if (onMessage) onMessage(m, c);
      if (keep(m)) c.msgs.push(m);
    });
    ws.once('upgrade', (res) => { c.upgradeHeaders = res.headers; });
    ws.on('close', (code, reason) => { c.closeInfo = { code, reason: reason.toString() }; resolveClosed(c.closeInfo); });
    ws.on('error', (e) => { c.errors.push(e.message); });
    ws.once('open', () => resolve(c));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => reject(Object.assign(new Error(`handshake answered ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
    });
    ws.once('error', (e) => reject(e));
  });
}
