// tutti jam-session client: a small, dependency-free ES module for browsers.
//
// It speaks the WebSocket protocol of docs/PROTOCOL.md ("Jam sessions (rooms)"):
//
//   import { JamClient } from './jam.js';
//   const jam = new JamClient({
//     onJoined({ roomCode, userId, participants, created, rejoined }) {},
//     onUserJoined(user) {}, onUserLeft(userId, user) {},
//     onEvent({ eventName, payload, senderId, sender, seq, serverTime, latency }) {},
//     onError({ code, message }) {}, onClock({ rtt, offset, samples }) {},
//   });
//   await jam.connect();                       // ws(s)://<this page's host>/ws by default
//   const { roomCode } = await jam.createSession({ name: 'Friday jam', user: { name: 'Ann', instrument: 'drums' } });
//   // ...or: await jam.joinSession('MUSIC-42', { name: 'Bob', instrument: 'piano' });
//   jam.broadcast('drum_hit', { pad: 'kick', velocity: 100 });
//   const at = jam.serverNow();                // the server's clock, to schedule on a shared time line
//
// The connection reconnects by itself (backoff with jitter, 0.5 s doubling up to 15 s) and,
// once welcomed again, joins the room it was in (a new connection is a new user_id: the
// others see a leave and a join). Clock: a ping {client_time} every second; each pong gives
// an NTP-style sample, offset = server_time - (t0 + t1) / 2 and rtt = t1 - t0; the sample
// with the smallest rtt among the last 8 is used.
//
// A participant does not receive its own events; the client asks for an ack (`id`) for
// each broadcast so it knows its own seqs, and reports a gap (onGap) only for seqs that
// neither reached it nor were its own (e.g. events played while it was reconnecting).

export const PING_INTERVAL_MS = 1000;
export const CLOCK_SAMPLES = 8;
export const RETRY_MIN_MS = 500;
export const RETRY_MAX_MS = 15000;
// A socket whose pings have gone unanswered this long is treated as dead and replaced.
export const PONG_TIMEOUT_MS = 6000;
// How long a hole in the seqs may wait for the acks of this client's own broadcasts.
const GAP_WAIT_MS = 2000;

const noop = () => {};
const CALLBACKS = ['onJoined', 'onLeft', 'onUserJoined', 'onUserLeft', 'onEvent', 'onGap', 'onAck',
  'onError', 'onClock', 'onStatus', 'onWelcome', 'onMessage'];

// Milliseconds since the Unix epoch from the monotonic clock (sub-millisecond, no jumps).
export function nowMs() {
  return typeof performance !== 'undefined' && performance.timeOrigin
    ? performance.timeOrigin + performance.now() : Date.now();
}

// The WebSocket URL of a tutti server: `url` may be ws(s)://, http(s)://, a path relative
// to the page (default "ws", so the page also works under a reverse-proxy sub-path).
export function wsUrl(url) {
  const base = typeof location !== 'undefined' ? location.href : 'http://127.0.0.1/';
  const u = new URL(url || 'ws', base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (!url) { u.search = ''; u.hash = ''; }
  return u.href;
}

function jamError(code, message, extra) {
  const e = new Error(message ? `${code}: ${message}` : code);
  e.code = code;
  if (extra) Object.assign(e, extra);
  return e;
}

export class JamClient {
  constructor(handlers = {}) {
    for (const k of CALLBACKS) this[k] = typeof handlers[k] === 'function' ? handlers[k] : noop;
    this.url = null;
    this.ws = null;
    this.status = 'idle';          // idle | connecting | open | reconnecting | closed
    this.connectionId = null;      // this connection's id (= user_id in rooms)
    this.welcome = null;
    this.reconnects = 0;           // successful reconnections (welcomes after the first)
    this.lastLatency = null;       // serverNow() at receipt - server_time of the last relayed event
    this.lastEvent = null;
    this._want = false;            // connect() was called and disconnect() was not
    this._welcomed = false;
    this._everWelcomed = false;
    this._retryDelay = RETRY_MIN_MS;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pings = new Map();       // client_time key -> true, pings of the live socket
    this._lastPong = 0;
    this._samples = [];            // { rtt, offset, at }
    this._best = null;             // the chosen sample, kept across reconnects until a new one
    this._reqId = 0;
    this._pending = new Map();     // request id -> { kind, resolve, reject, ... }
    this._readyWaiters = [];
    this._room = null;             // { code, user, name } of the room this client is in (or rejoins)
    this._roomLive = false;        // joined on the live socket (false while rejoining)
    this._participants = new Map();
    this._resetSeqs();
    this._onOnline = () => { if (this.status === 'reconnecting') this._retryNow(); };
  }

  // ---------- connection ----------

  // Opens the connection; resolves with the server's welcome. It keeps trying until
  // disconnect() (which rejects the promise if no welcome came).
  connect(url) {
    this.url = wsUrl(url || this.url);
    if (!this._want) {
      this._want = true;
      if (typeof window !== 'undefined') window.addEventListener('online', this._onOnline);
    }
    if (!this.ws && !this._retryTimer) this._open();
    if (this._welcomed) return Promise.resolve(this.welcome);
    return new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
  }

  // Closes for good: no reconnect, the room is left (the server sees the close).
  disconnect() {
    this._want = false;
    if (typeof window !== 'undefined') window.removeEventListener('online', this._onOnline);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const ws = this.ws;
    this._dropSocket();
    if (ws) { try { ws.close(1000, 'bye'); } catch { /* already closed */ } }
    this._failPending('DISCONNECTED', 'disconnected');
    for (const w of this._readyWaiters.splice(0)) w.reject(jamError('DISCONNECTED', 'disconnected'));
    const room = this._room;
    this._room = null;
    this._participants.clear();
    this._setStatus('closed', 'disconnected');
    if (room) this.onLeft({ roomCode: room.code, reason: 'disconnected' });
  }

  get connected() { return this._welcomed && !!this.ws && this.ws.readyState === 1; }

  _setStatus(status, detail) {
    if (this.status === status && !detail) return;
    this.status = status;
    this.onStatus(status, detail || '');
  }

  _open() {
    let ws;
    this._setStatus(this._everWelcomed ? 'reconnecting' : 'connecting', 'opening ' + this.url);
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.onError({ code: 'CONNECT_FAILED', message: err.message });
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    this._welcomed = false;
    this._pings.clear();
    this._samples = [];
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (typeof ev.data !== 'string') return; // binary frames are reserved for audio
      let msg;
      try { msg = JSON.parse(ev.data); } catch { msg = null; }
      if (!msg || typeof msg !== 'object') { this.onError({ code: 'BAD_MESSAGE', message: String(ev.data).slice(0, 200) }); return; }
      this._onMessage(msg);
    };
    ws.onclose = (ev) => { if (this.ws === ws) this._onClose(ev.code, ev.reason); };
    ws.onerror = noop; // a close follows
  }

  // Forgets the live socket (its late callbacks are ignored from now on).
  _dropSocket() {
    const ws = this.ws;
    this.ws = null;
    this._welcomed = false;
    clearInterval(this._pingTimer);
    this._pingTimer = null;
    this._pings.clear();
    if (ws) { ws.onmessage = null; ws.onclose = null; }
  }

  _onClose(code, reason) {
    const wasInRoom = !!this._room;
    this._dropSocket();
    // Requests in flight cannot be answered on a new connection (the room is rejoined).
    this._failPending('DISCONNECTED', `connection closed (${code}${reason ? ' ' + reason : ''})`);
    this._unacked = 0;
    this._roomLive = false;
    if (wasInRoom) this._participants.clear();
    if (!this._want) { this._setStatus('closed', `closed (${code})`); return; }
    this._scheduleRetry(code);
  }

  _scheduleRetry(code) {
    const delay = Math.round(this._retryDelay * (0.8 + Math.random() * 0.4));
    this._retryDelay = Math.min(this._retryDelay * 2, RETRY_MAX_MS);
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => { this._retryTimer = null; if (this._want) this._open(); }, delay);
    this._setStatus('reconnecting', `connection lost${code ? ' (' + code + ')' : ''}; retrying in ${(delay / 1000).toFixed(1)} s`);
  }

  _retryNow() {
    if (!this._retryTimer) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._open();
  }

  // The server stopped answering pings: give up on this socket at once (a browser may take
  // minutes to notice a dead TCP connection) and reconnect.
  _abandonSocket(why) {
    const ws = this.ws;
    if (!ws) return;
    this._onClose(4000, why);
    try { ws.close(4000, why); } catch { /* ignore */ }
  }

  _send(obj) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  // Sends a request with an id; resolves with the answer handled by `kind`.
  _request(kind, obj, extra = {}) {
    return new Promise((resolve, reject) => {
      if (!this.connected) { reject(jamError('NOT_CONNECTED', 'not connected to the server')); return; }
      const id = ++this._reqId;
      this._pending.set(id, { kind, resolve, reject, ...extra });
      this._send({ ...obj, id });
    });
  }

  _failPending(code, message, keep = () => false) {
    for (const [id, p] of [...this._pending]) {
      if (keep(p)) continue;
      this._pending.delete(id);
      p.reject(jamError(code, message));
    }
  }

  // ---------- messages ----------

  _onMessage(msg) {
    this.onMessage(msg);
    const req = msg.ref !== undefined ? this._pending.get(msg.ref) : undefined;
    switch (msg.type) {
      case 'welcome': this._onWelcome(msg); break;
      case 'pong': this._onPong(msg); break;
      case 'session:created':
        if (req && req.kind === 'create') req.code = msg.room_code;
        break;
      case 'session:joined': this._onJoined(msg, req); break;
      case 'session:left':
        if (req) { this._pending.delete(msg.ref); req.resolve(msg); }
        break;
      case 'session:user-joined': this._onUserJoined(msg); break;
      case 'session:user-left': this._onUserLeft(msg); break;
      case 'event:broadcast': this._onBroadcast(msg); break;
      case 'event:ack': this._onAck(msg, req); break;
      case 'error': this._onServerError(msg, req); break;
      default: break; // other types (replay, stats, ...) reach onMessage only
    }
  }

  _onWelcome(msg) {
    this._welcomed = true;
    this.welcome = msg;
    this.connectionId = msg.connection_id;
    this._retryDelay = RETRY_MIN_MS;
    const again = this._everWelcomed;
    this._everWelcomed = true;
    if (again) this.reconnects++;
    this._setStatus('open', `connection ${msg.connection_id}`);
    this.onWelcome(msg, { reconnected: again });
    // Clock: one ping at once, then one a second.
    this._lastPong = nowMs();
    this._ping();
    this._pingTimer = setInterval(() => this._ping(), PING_INTERVAL_MS);
    for (const w of this._readyWaiters.splice(0)) w.resolve(msg);
    // Back in the room after a reconnect.
    if (this._room) {
      const room = this._room;
      const p = this._request('join', { type: 'session:join', room_code: room.code, user: room.user }, { rejoin: true, code: room.code });
      p.then(() => {}, (err) => {
        if (err.code === 'DISCONNECTED' || err.code === 'NOT_CONNECTED') return; // tried again on the next welcome
        if (this._room === room) {
          this._room = null;
          this._participants.clear();
          this.onLeft({ roomCode: room.code, reason: err.code });
        }
      });
    }
  }

  _onJoined(msg, req) {
    // The answer to our join or create (with our ref), or an unsolicited one after create.
    let p = req;
    let pid = msg.ref;
    if (!p) {
      for (const [id, x] of this._pending) {
        if ((x.kind === 'create' || x.kind === 'join') && x.code === msg.room_code) { p = x; pid = id; break; }
      }
    }
    if (!p) { // a server that sent session:created without the ref: the oldest create waiting
      for (const [id, x] of this._pending) if (x.kind === 'create' && !x.code) { p = x; pid = id; break; }
    }
    if (p) this._pending.delete(pid);
    const rejoined = !!(p && p.rejoin);
    const created = !!(p && p.kind === 'create');
    const user = p ? p.user : this._room && this._room.user;
    const sameRoom = this._room && this._room.code === msg.room_code;
    if (!sameRoom) this._resetSeqs();
    const name = p && p.name !== undefined ? p.name : sameRoom ? this._room.name : undefined;
    this._room = { code: msg.room_code, user: user || (this._room && this._room.user), name };
    this._roomLive = true;
    this.connectionId = msg.user_id || this.connectionId;
    this._participants.clear();
    for (const u of msg.participants || []) this._participants.set(u.user_id, u);
    const info = {
      roomCode: msg.room_code, userId: msg.user_id, participants: this.participants, created, rejoined,
      reconnect: rejoined,
    };
    this.onJoined(info);
    if (p) p.resolve(info);
  }

  _onUserJoined(msg) {
    if (!this._room || msg.room_code !== this._room.code || !msg.user) return;
    this._participants.set(msg.user.user_id, msg.user);
    this.onUserJoined(msg.user, msg.room_code);
  }

  _onUserLeft(msg) {
    if (!this._room || msg.room_code !== this._room.code) return;
    const user = this._participants.get(msg.user_id) || null;
    this._participants.delete(msg.user_id);
    this.onUserLeft(msg.user_id, user, msg.room_code);
  }

  _onBroadcast(msg) {
    if (!this._room || msg.room_code !== this._room.code) return;
    const now = this.serverNow();
    const latency = typeof msg.server_time === 'number' ? now - msg.server_time : null;
    if (latency !== null) this.lastLatency = latency;
    const sender = this._participants.get(msg.sender_id) || null;
    const ev = {
      roomCode: msg.room_code, eventName: msg.event_name, payload: msg.payload, senderId: msg.sender_id,
      sender, senderName: sender ? sender.name : null, seq: msg.seq, serverTime: msg.server_time,
      receivedAt: now, latency, own: msg.sender_id === this.connectionId,
    };
    this.lastEvent = ev;
    this._noteSeq(msg.seq, false);
    this.onEvent(ev);
  }

  _onAck(msg, req) {
    if (req) this._pending.delete(msg.ref);
    if (req && req.kind === 'broadcast') this._unacked = Math.max(0, this._unacked - 1);
    if (!this._room || msg.room_code !== this._room.code) { if (req) req.resolve(msg); return; }
    const ack = { roomCode: msg.room_code, seq: msg.seq, serverTime: msg.server_time, eventName: req && req.eventName, payload: req && req.payload };
    this._noteSeq(msg.seq, true);
    this.onAck(ack);
    if (req) req.resolve(ack);
    if (this._unacked === 0) this._checkGaps();
  }

  _onServerError(msg, req) {
    const err = { code: msg.code || 'ERROR', message: msg.message || '', ref: msg.ref, request: req ? req.kind : undefined };
    if (req) {
      this._pending.delete(msg.ref);
      if (req.kind === 'broadcast') { this._unacked = Math.max(0, this._unacked - 1); if (this._unacked === 0) this._checkGaps(); }
      if (req.rejoin) err.rejoin = true;
    }
    this.onError(err);
    if (req) req.reject(jamError(err.code, err.message, { ref: msg.ref }));
  }

  // ---------- rooms ----------

  get roomCode() { return this._room ? this._room.code : null; }
  // In the room right now (false while a reconnect is rejoining it).
  get inRoom() { return !!this._room && this._roomLive && this.connected; }
  get userId() { return this._room ? this.connectionId : null; }
  get participants() { return [...this._participants.values()]; }
  participant(userId) { return this._participants.get(userId) || null; }

  // Creates a room and joins it; resolves with { roomCode, userId, participants, created: true }.
  async createSession({ name, maxParticipants, user } = {}) {
    await this._leaveIfIn();
    const msg = { type: 'session:create' };
    if (name !== undefined && name !== '') msg.name = name;
    if (maxParticipants !== undefined) msg.max_participants = maxParticipants;
    if (user !== undefined) msg.user = user;
    return this._request('create', msg, { user, name });
  }

  // Joins a room by its code; resolves with { roomCode, userId, participants }.
  async joinSession(code, user) {
    code = String(code || '').trim();
    if (this._room && this._room.code === code) return { roomCode: code, userId: this.connectionId, participants: this.participants };
    await this._leaveIfIn();
    return this._request('join', { type: 'session:join', room_code: code, user }, { user, code });
  }

  async _leaveIfIn() {
    if (this._room) await this.leave().catch(() => {});
  }

  // Leaves the room (no rejoin after this).
  async leave() {
    const room = this._room;
    if (!room) return null;
    this._room = null;
    this._roomLive = false;
    this._participants.clear();
    this._resetSeqs();
    let answer = null;
    if (this.connected) {
      answer = await this._request('leave', { type: 'session:leave', room_code: room.code }).catch((err) => {
        if (err.code !== 'NOT_IN_ROOM') throw err; // gone already: fine
        return null;
      });
    }
    this.onLeft({ roomCode: room.code, reason: 'left' });
    return answer;
  }

  // Sends an event to every other participant. Resolves with the ack { seq, serverTime };
  // rejects when not in a room or not connected (the event is not queued: a late note is
  // worse than a missing one).
  broadcast(eventName, payload, { echo = false } = {}) {
    if (!this._room) return Promise.reject(jamError('NOT_IN_ROOM', 'not in a room'));
    if (!this.inRoom) return Promise.reject(jamError('NOT_CONNECTED', 'rejoining the room after a reconnect'));
    const msg = { type: 'event:broadcast', room_code: this._room.code, event_name: eventName, payload };
    if (echo) msg.echo = true;
    const p = this._request('broadcast', msg, { eventName, payload });
    if (this.connected) this._unacked++;
    return p;
  }

  // ---------- seqs and gaps ----------

  _resetSeqs() {
    this._floor = null;            // every seq <= floor was received, acked (own) or reported
    this._seen = new Set();        // seqs above floor that were received or acked
    this._maxRecv = 0;
    this._unacked = this._unacked || 0;
    clearTimeout(this._gapTimer);
    this._gapTimer = null;
  }

  _noteSeq(seq, own) {
    if (typeof seq !== 'number') return;
    if (this._floor === null) this._floor = seq - 1;
    if (seq > this._floor) this._seen.add(seq);
    while (this._seen.has(this._floor + 1)) { this._floor++; this._seen.delete(this._floor); }
    if (!own && seq > this._maxRecv) this._maxRecv = seq;
    if (!own && this._maxRecv > this._floor + 1) {
      // A hole below a received seq: ours (ack on its way) or lost.
      if (this._unacked === 0) this._checkGaps();
      else if (!this._gapTimer) this._gapTimer = setTimeout(() => { this._gapTimer = null; this._checkGaps(); }, GAP_WAIT_MS);
    }
  }

  _checkGaps() {
    clearTimeout(this._gapTimer);
    this._gapTimer = null;
    if (this._floor === null) return;
    const ranges = [];
    for (let s = this._floor + 1; s < this._maxRecv; s++) {
      if (this._seen.has(s)) continue;
      const last = ranges[ranges.length - 1];
      if (last && last.to === s - 1) last.to = s; else ranges.push({ from: s, to: s });
    }
    if (!ranges.length) return;
    for (const r of ranges) for (let s = r.from; s <= r.to; s++) this._seen.add(s);
    while (this._seen.has(this._floor + 1)) { this._floor++; this._seen.delete(this._floor); }
    for (const r of ranges) this.onGap({ roomCode: this.roomCode, from: r.from, to: r.to, count: r.to - r.from + 1, before: this._maxRecv });
  }

  // ---------- clock ----------

  _ping() {
    if (!this.connected) return;
    const t = nowMs();
    if (this._pings.size && t - this._lastPong > PONG_TIMEOUT_MS) { this._abandonSocket('no pong'); return; }
    if (this._pings.size > 16) this._pings.delete(this._pings.keys().next().value);
    const t0 = Math.round(t * 1000) / 1000; // echoed exactly as sent
    this._pings.set(String(t0), true);
    this._send({ type: 'ping', client_time: t0 });
  }

  _onPong(msg) {
    const t1 = nowMs();
    this._lastPong = t1;
    const key = String(msg.client_time);
    if (!this._pings.has(key)) return; // not a ping of this socket
    this._pings.delete(key);
    const t0 = Number(msg.client_time);
    const ts = Number(msg.server_time);
    if (!Number.isFinite(t0) || !Number.isFinite(ts) || t1 < t0) return;
    this._samples.push({ rtt: t1 - t0, offset: ts - (t0 + t1) / 2, at: t1 });
    if (this._samples.length > CLOCK_SAMPLES) this._samples.shift();
    let best = this._samples[0];
    for (const s of this._samples) if (s.rtt < best.rtt) best = s;
    this._best = best;
    this.onClock(this.clock);
  }

  // { rtt, offset, samples, lastRtt } of the chosen sample (null before the first pong).
  get clock() {
    if (!this._best) return { rtt: null, offset: null, samples: 0, lastRtt: null };
    const last = this._samples[this._samples.length - 1];
    return { rtt: this._best.rtt, offset: this._best.offset, samples: this._samples.length, lastRtt: last ? last.rtt : null };
  }

  get offset() { return this._best ? this._best.offset : 0; }
  get rtt() { return this._best ? this._best.rtt : null; }

  // The server's clock now (ms since the Unix epoch): this page's clock plus the offset.
  serverNow() { return nowMs() + this.offset; }

  // This page's clock (nowMs) at a given server time: for setTimeout/AudioContext scheduling.
  toLocalTime(serverTime) { return serverTime - this.offset; }
}

// Shorthand: a client connected to `url` (resolves after the welcome).
export async function connect(url, handlers) {
  const c = new JamClient(handlers);
  await c.connect(url);
  return c;
}
