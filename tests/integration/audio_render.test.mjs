// Music rendered from parameters, end to end against the real binary: renders published
// to a channel once per encoding (opus, pcm16, json, json16) and received by EventSource,
// raw SSE and `ws` clients each in its own encoding (binary frames for opus/pcm16 over
// WebSocket), recovery, job status, every kind of bad input, RENDER_BUSY, the wall-time
// timeout, samples, file renders (checked with ffprobe/ffmpeg/soxi), music:generated,
// the /stream/{ch}/test route, the `tutti render` command line and the metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  startTutti, publish, waitFor, openSSE, getJSON, parsePosition, sseAgent, tuttiBin, connectRaw,
} from '../lib/harness.mjs';
import { openWS } from '../lib/ws.mjs';
import {
  runTool, ffprobe, decodeMono, soxi, soxReads, parseAudioFrame, int16s, interleave, peak, wavData,
} from '../lib/audio.mjs';

const require = createRequire(import.meta.url);
const EventSource = require('eventsource');

// ---- servers and cleanup ---------------------------------------------------

// --render-max-duration 10: the bad-input table asks for 11 s; --sse-retry 100: fast
// EventSource reconnects; two workers: renders are published from one worker's loop and
// delivered on both.
const MAIN_ARGS = ['--workers', '2', '--render-max-duration', '10', '--sse-retry', '100'];
let srv;
let tmp;
const closers = [];
const track = (c, close = () => c.close()) => { closers.push(close); return c; };

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tutti-audio-'));
  srv = await startTutti(MAIN_ARGS);
});
after(async () => {
  for (const close of closers) { try { close(); } catch { /* already closed */ } }
  sseAgent.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });
  assert.equal(await srv.stop(), 0, 'tutti exit code after SIGTERM (ASan/LSan clean)');
});

// ---- helpers ---------------------------------------------------------------

const ENCODINGS = ['opus', 'pcm16', 'json', 'json16'];
const RAW_AUDIO_EVENTS = ENCODINGS.map((e) => `audio_buffer.${e}`);
const ES_EVENTS = ['connected', 'audio_buffer', 'audio_error', 'barrier', 'music:generated', 'message', 'shutdown',
  ...RAW_AUDIO_EVENTS];
const offsetOf = (id) => parsePosition(id)[0].offset;

// A short, busy piece: arpeggio + FM + reverb, so that every encoding has real signal.
const PIECE = {
  tempo: 132, duration: 1, seed: 7, scale: ['C4', 'E4', 'G4', 'B4'], rootNote: 'C4', instrumentType: 'synth',
  pattern: { type: 'upDown', interval: '16n' }, effects: { reverb: { wet: 0.2 } },
};
// Heavy: 4 polySynth tracks of chords with reverb and delay (for long renders).
function heavy(duration, tracks = 4) {
  return {
    tempo: 140, duration,
    tracks: Array.from({ length: tracks }, (_, i) => ({
      instrumentType: 'polySynth',
      instrumentOptions: { voice: i % 2 ? 'fmSynth' : 'synth', maxPolyphony: 16, oscillator: { type: 'sawtooth' } },
      pattern: { type: 'steps', interval: '16n', steps: [{ notes: [0, 2, 4, 6] }, { notes: [1, 3, 5, 7] }] },
    })),
    effects: { reverb: { decay: 3, wet: 0.3 }, delay: { time: '8n', feedback: 0.4, wet: 0.2 } },
  };
}

// EventSource (the `eventsource` package) keeping every event of ES_EVENTS.
function openES(url, init) {
  const es = new EventSource(url, init);
  const c = {
    es, url, events: [], errors: 0,
    of(type) { return c.events.filter((e) => e.type === type); },
    waitCount(type, n = 1, ms = 10000) {
      return waitFor(() => c.of(type).length >= n, ms, `${n} '${type}' on ${url} (have ${c.of(type).length})`);
    },
    close() { es.close(); },
  };
  for (const t of ES_EVENTS) es.addEventListener(t, (e) => c.events.push({ type: t, id: e.lastEventId, data: e.data }));
  es.onerror = () => { c.errors++; };
  return track(c);
}

async function sse(s, p, opts) { return track(await openSSE(s.url, p, opts)); }
async function wsc(s, p = '/ws', opts = {}) {
  const c = track(await openWS(s.url, p, opts), () => c.terminate());
  await c.waitType('welcome');
  return c;
}
async function subscribers(s, ch) { return (await getJSON(s.url, `/health/channel/${ch}`)).json.subscribers; }
async function waitSubscribers(s, ch, n) {
  await waitFor(async () => (await subscribers(s, ch)) === n, 5000, `${n} subscribers on ${ch}`);
}

async function post(s, p, body, headers = {}) {
  const res = await fetch(`${s.url}${p}`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  const text = bytes.toString('utf8');
  let json;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, bytes, text, json };
}
const renderTo = (s, ch, params, headers) => post(s, `/api/channels/${ch}/render`, params, headers);

// POST a render to a channel and check the 202 answer; returns its JSON.
async function accepted(s, ch, params, headers) {
  const r = await renderTo(s, ch, params, headers);
  assert.equal(r.status, 202, `render to ${ch}: ${r.text}`);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  const j = r.json;
  assert.match(j.job_id, /^[A-Za-z0-9]{8,32}$/, `job_id in ${r.text}`);
  assert.equal(j.status, 'queued');
  assert.equal(j.channel, ch);
  assert.equal(j.status_url, `/api/render/jobs/${j.job_id}`);
  assert.equal(r.headers.get('location'), j.status_url, 'Location header is the status URL');
  return j;
}

// Polls the job until it has ended; returns its last status.
async function jobEnded(s, id, ms = 15000) {
  let st;
  await waitFor(async () => {
    st = await getJSON(s.url, `/api/render/jobs/${id}`);
    return st.status === 200 && (st.json.status === 'done' || st.json.status === 'failed');
  }, ms, `render job ${id} to end (last: ${st?.text})`);
  return st.json;
}

// Publishes an ordinary message after a render: once a client has it, every message of the
// render (published before it) has been delivered or filtered.
let barrierN = 0;
async function barrier(s, ch) { return publish(s.url, ch, { barrier: ++barrierN }, { event: 'barrier' }); }

// Audio messages a `ws` client got: binary frames and text `audio_buffer` messages.
function wsAudio(c) {
  return c.msgs.filter((m) => m.binary || (m.json?.type === 'message' && m.json.event === 'audio_buffer'));
}
const wsBarrier = (c, b) => c.waitFor(() => c.msgs.some((m) => m.json?.type === 'message' && m.json.id === b.id),
  10000, `barrier ${b.id}`);

function assertCloseTo(actual, expected, tol, what) {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} is not within ${tol} of ${expected}`);
}

// The common members of every encoding's data.
function assertAudioMeta(d, { renderId, encoding, channels = 2, sampleRate = 48000, duration }) {
  assert.equal(d.render_id, renderId, `render_id of ${encoding}`);
  assert.equal(d.encoding, encoding);
  assert.equal(d.sampleRate, sampleRate, `${encoding} sampleRate`);
  assert.equal(d.numberOfChannels, channels, `${encoding} numberOfChannels`);
  assert.equal(d.length, Math.round(duration * sampleRate), `${encoding} length in frames`);
  assertCloseTo(d.duration, d.length / d.sampleRate, 1e-6, `${encoding} duration == length/sampleRate`);
}

// Checks a json + json16 pair of the same render; returns nothing.
function assertJsonPair(j, j16) {
  assert.equal(j.channels.length, j.numberOfChannels, 'json: one array per channel');
  for (const ch of j.channels) {
    assert.equal(ch.length, j.length, 'json: each channel has `length` samples');
    for (const v of ch) assert.ok(typeof v === 'number' && v >= -1 && v <= 1, `json sample ${v} in [-1,1]`);
  }
  assert.ok(peak(j.channels) > 0.01, `json samples are not silent (peak ${peak(j.channels)})`);
  assert.ok(!('compressed' in j) || j.compressed === false, 'json is not compressed');
  assert.equal(j16.compressed, true, 'json16 has "compressed":true');
  assert.equal(j16.channels.length, j16.numberOfChannels);
  for (const ch of j16.channels) {
    assert.equal(ch.length, j16.length);
    for (const v of ch) assert.ok(Number.isInteger(v) && v >= -32768 && v <= 32767, `json16 sample ${v} is an int16`);
  }
  // same render, same samples: every index (both are small), to 1/32767 + the 6 decimals
  let worst = 0;
  for (let c = 0; c < j.channels.length; c++) {
    for (let i = 0; i < j.length; i++) worst = Math.max(worst, Math.abs(j16.channels[c][i] / 32767 - j.channels[c][i]));
  }
  assert.ok(worst <= 1 / 32767 + 1e-6, `json16/32767 differs from json by up to ${worst}`);
}

// Checks an Ogg Opus payload: OggS, decodes to about `frames` frames (1%), not silent.
async function assertOpus(bytes, frames, what) {
  assert.equal(bytes.subarray(0, 4).toString('latin1'), 'OggS', `${what} starts with OggS`);
  const pcm = await decodeMono(bytes);
  assert.ok(Math.abs(pcm.length - frames) <= frames * 0.01,
    `${what} decodes to ${pcm.length} frames, expected ${frames} within 1%`);
  assert.ok(peak(pcm) > 0.01, `${what} decodes to sound (peak ${peak(pcm)})`);
}

// The bad-params error body: 400 BAD_PARAMS whose `fields` names each of `fields`.
function assertBadParams(r, fields, what) {
  assert.equal(r.status, 400, `${what}: ${r.text}`);
  assert.equal(r.json?.error?.code, 'BAD_PARAMS', `${what}: ${r.text}`);
  assert.ok(Array.isArray(r.json.error.fields), `${what}: fields is a list: ${r.text}`);
  const named = r.json.error.fields.map((f) => f.field);
  for (const f of fields) {
    assert.ok(named.includes(f), `${what}: fields names ${JSON.stringify(f)}; got ${JSON.stringify(named)}`);
    const entry = r.json.error.fields.find((x) => x.field === f);
    assert.equal(typeof entry.message, 'string');
    assert.ok(entry.message.length > 0, `${what}: a message for ${f}`);
    if (f) assert.ok(r.json.error.message.includes(`${f} ${entry.message}`), `${what}: the message says "${f} ${entry.message}": ${r.json.error.message}`);
  }
  return named;
}

// ---- 1. SSE, one client per encoding ----------------------------------------

test('render to a channel: each SSE client (EventSource) gets exactly one audio_buffer, in its encoding', { timeout: 30000 }, async () => {
  const ch = 'enc-sse';
  const base = `${srv.url}`;
  const clients = {
    opus: openES(`${base}/sse/${ch}?encoding=opus`),
    pcm16: openES(`${base}/sse/${ch}?encoding=pcm16`),
    json: openES(`${base}/sse/${ch}?encoding=json`),
    json16: openES(`${base}/sse/${ch}?encoding=json16`),
    stream: openES(`${base}/stream/${ch}`), // the document's route: json by default
    sseDefault: openES(`${base}/sse/${ch}`), // /sse: opus by default
    multi: openES(`${base}/sse?channel=${ch}&channel=enc-other&encoding=pcm16`),
  };
  for (const c of Object.values(clients)) await c.waitCount('connected');
  await waitSubscribers(srv, ch, Object.keys(clients).length);

  const job = await accepted(srv, ch, PIECE);
  assert.equal(job.duration, 1);
  for (const c of Object.values(clients)) await c.waitCount('audio_buffer', 1, 15000);
  const b = await barrier(srv, ch);
  for (const c of Object.values(clients)) await c.waitCount('barrier');

  const got = {};
  for (const [name, c] of Object.entries(clients)) {
    assert.equal(c.of('audio_buffer').length, 1, `${name}: exactly one audio_buffer for one render, not one per encoding`);
    for (const raw of RAW_AUDIO_EVENTS) assert.equal(c.of(raw).length, 0, `${name}: no raw ${raw} event name`);
    assert.equal(c.of('audio_error').length, 0, `${name}: no audio_error`);
    const ev = c.of('audio_buffer')[0];
    got[name] = { id: ev.id, data: JSON.parse(ev.data) };
    assert.equal(got[name].data.render_id, job.job_id, `${name}: render_id is the job id of the 202`);
  }
  assert.equal(got.stream.data.encoding, 'json', '/stream/{ch} defaults to json');
  assert.equal(got.sseDefault.data.encoding, 'opus', '/sse/{ch} defaults to opus');
  assert.equal(got.multi.data.encoding, 'pcm16', '/sse?channel=..&encoding=pcm16');

  // the four encodings are four consecutive offsets; the barrier comes right after
  const offs = ENCODINGS.map((e) => offsetOf(got[e].id)).sort((x, y) => x - y);
  assert.deepEqual(offs, [offs[0], offs[0] + 1, offs[0] + 2, offs[0] + 3], `offsets ${offs}`);
  assert.equal(b.offset, offs[3] + 1, 'nothing else was published for the render');
  assert.equal(got.stream.id, got.json.id, 'same message for both json clients');

  const meta = { renderId: job.job_id, duration: 1 };
  const opus = got.opus.data;
  assertAudioMeta(opus, { ...meta, encoding: 'opus' });
  assert.equal(opus.mimeType, 'audio/ogg; codecs=opus');
  const opusBytes = Buffer.from(opus.data, 'base64');
  assert.equal(opusBytes.length, opus.bytes, 'opus: "bytes" is the decoded length');
  await assertOpus(opusBytes, opus.length, 'SSE opus');
  assert.deepEqual(got.sseDefault.data, opus, 'default /sse stream got the same opus message');

  const p16 = got.pcm16.data;
  assertAudioMeta(p16, { ...meta, encoding: 'pcm16' });
  assert.equal(p16.mimeType, 'audio/pcm; format=s16le');
  const p16Bytes = Buffer.from(p16.data, 'base64');
  assert.equal(p16Bytes.length, p16.length * p16.numberOfChannels * 2, 'pcm16: length * channels * 2 bytes');
  assert.equal(p16.bytes, p16Bytes.length);
  assert.deepEqual(got.multi.data, p16);

  const j = got.json.data;
  const j16 = got.json16.data;
  assertAudioMeta(j, { ...meta, encoding: 'json' });
  assertAudioMeta(j16, { ...meta, encoding: 'json16' });
  assertJsonPair(j, j16);
  // pcm16 and json16 are the same int16 samples (interleaved vs planar)
  assert.deepEqual(Array.from(int16s(p16Bytes)), interleave(j16.channels), 'pcm16 == json16, sample for sample');
});

// ---- 2. WebSocket ------------------------------------------------------------

test('render over WebSocket: opus/pcm16 as one binary frame (also deflated), json/json16 as text', { timeout: 30000 }, async () => {
  const ch = 'enc-ws';
  const clients = {};
  for (const e of ENCODINGS) {
    clients[e] = await wsc(srv);
    const r = await clients[e].request({ type: 'subscribe', channel: ch, encoding: e });
    assert.equal(r.type, 'subscribed', `subscribe ${e}: ${JSON.stringify(r)}`);
  }
  clients.path = await wsc(srv, `/ws/${ch}?encoding=pcm16`);
  clients.deflateOpus = await wsc(srv, '/ws', { perMessageDeflate: true });
  clients.deflatePcm = await wsc(srv, '/ws', { perMessageDeflate: true });
  clients.deflateJson16 = await wsc(srv, '/ws', { perMessageDeflate: true });
  for (const [name, enc] of [['deflateOpus', 'opus'], ['deflatePcm', 'pcm16'], ['deflateJson16', 'json16']]) {
    assert.match(clients[name].ws.extensions, /permessage-deflate/, 'deflate negotiated');
    const r = await clients[name].request({ type: 'subscribe', channel: ch, encoding: enc });
    assert.equal(r.type, 'subscribed');
  }
  clients.defaultEnc = await wsc(srv);
  assert.equal((await clients.defaultEnc.request({ type: 'subscribe', channel: ch })).type, 'subscribed');
  const ssePcm = await sse(srv, `/sse/${ch}?encoding=pcm16`); // the same render over SSE
  await ssePcm.waitForCount('connected', 1);
  await waitSubscribers(srv, ch, Object.keys(clients).length + 1);

  const job = await accepted(srv, ch, { ...PIECE, channels: 2, seed: 11 });
  for (const c of Object.values(clients)) await c.waitFor(() => wsAudio(c).length >= 1, 15000, 'an audio message');
  const b = await barrier(srv, ch);
  for (const c of Object.values(clients)) await wsBarrier(c, b);
  await ssePcm.waitForCount('barrier', 1);

  const bin = {};
  for (const [name, c] of Object.entries(clients)) {
    const audio = wsAudio(c);
    assert.equal(audio.length, 1, `${name}: exactly one audio message for one render`);
    assert.equal(c.msgs.filter((m) => m.json?.type === 'message' && /^audio_buffer\./.test(m.json.event)).length, 0,
      `${name}: no raw audio_buffer.X event`);
    assert.deepEqual(c.errors, [], `${name}: client-side errors`);
    const enc = { opus: 'opus', pcm16: 'pcm16', path: 'pcm16', deflateOpus: 'opus', deflatePcm: 'pcm16', defaultEnc: 'opus', json: 'json', json16: 'json16', deflateJson16: 'json16' }[name];
    const m = audio[0];
    if (enc === 'opus' || enc === 'pcm16') {
      assert.ok(m.binary, `${name}: ${enc} comes as a binary message, got ${m.raw?.slice(0, 200)}`);
      const f = parseAudioFrame(m.binary);
      const h = f.header;
      assert.equal(h.type, 'audio_buffer');
      assert.equal(h.event, 'audio_buffer');
      assert.equal(h.channel, ch);
      assert.match(h.id, /^[^\s:,]+:\d+$/, `${name}: id epoch:offset`);
      assert.equal(h.id.split(':')[1], String(offsetOf(h.id)));
      assert.equal('data' in h, false, 'the header carries no base64 data');
      assertAudioMeta(h, { renderId: job.job_id, encoding: enc, duration: 1 });
      assert.equal(h.mimeType, enc === 'opus' ? 'audio/ogg; codecs=opus' : 'audio/pcm; format=s16le');
      assert.equal(f.audio.length, h.bytes, `${name}: exactly "bytes" bytes of audio follow the header`);
      if (enc === 'opus') assert.equal(f.audio.subarray(0, 4).toString('latin1'), 'OggS', `${name}: an Ogg file`);
      else assert.equal(f.audio.length, h.length * h.numberOfChannels * 2);
      bin[name] = f;
    } else {
      assert.ok(m.json, `${name}: ${enc} comes as text`);
      assert.equal(m.json.type, 'message');
      assert.equal(m.json.event, 'audio_buffer');
      assert.equal(m.json.channel, ch);
      assert.match(m.json.id, /^[^\s:,]+:\d+$/);
      assertAudioMeta(m.json.data, { renderId: job.job_id, encoding: enc, duration: 1 });
      bin[name] = m.json;
    }
  }
  await assertOpus(bin.opus.audio, bin.opus.header.length, 'WebSocket opus');
  assert.deepEqual(bin.deflateOpus.audio, bin.opus.audio, 'deflate client: same Ogg bytes');
  assert.deepEqual(bin.defaultEnc.audio, bin.opus.audio, 'subscribe without encoding: opus');
  assert.equal(bin.deflateOpus.header.id, bin.opus.header.id);
  assert.deepEqual(bin.path.audio, bin.pcm16.audio, '/ws/{ch}?encoding=pcm16 gets the same pcm16');
  assert.deepEqual(bin.deflatePcm.audio, bin.pcm16.audio, 'deflate client: same pcm16');
  assert.deepEqual(bin.deflateJson16.data, bin.json16.data, 'deflated json16 text is the same');
  assertJsonPair(bin.json.data, bin.json16.data);
  // pcm16 binary == json16 text == SSE pcm16 of the same render
  assert.deepEqual(Array.from(int16s(bin.pcm16.audio)), interleave(bin.json16.data.channels), 'WS pcm16 == WS json16');
  const ssePcmData = JSON.parse(ssePcm.of('audio_buffer')[0].data);
  assert.equal(ssePcm.of('audio_buffer').length, 1);
  assert.equal(ssePcmData.render_id, job.job_id);
  assert.ok(Buffer.from(ssePcmData.data, 'base64').equals(bin.pcm16.audio), 'WS pcm16 bytes == SSE pcm16 bytes');
  assert.equal(ssePcm.of('audio_buffer')[0].id, bin.pcm16.header.id, 'same message id over SSE and WebSocket');
});

// ---- 3. recovery -------------------------------------------------------------

// A TCP proxy to `port` whose first connection goes straight through; later ones wait until
// open() is called. Keeps each connection's first bytes (the request head).
async function gatedProxy(port) {
  let release;
  const gate = new Promise((r) => { release = r; });
  const conns = [];
  const server = net.createServer((client) => {
    const conn = { client, upstream: null, head: '', pending: [] };
    conns.push(conn);
    client.on('error', () => {});
    client.on('data', (d) => {
      if (conn.head.length < 4096) conn.head += d.toString('latin1');
      if (conn.upstream) conn.upstream.write(d); else conn.pending.push(d);
    });
    const go = () => {
      if (client.destroyed) return;
      const up = net.connect(port, '127.0.0.1');
      conn.upstream = up;
      up.on('error', () => {});
      up.on('data', (d) => { if (!client.destroyed) client.write(d); });
      up.on('close', () => client.destroy());
      client.on('close', () => up.destroy());
      for (const d of conn.pending) up.write(d);
      conn.pending = [];
    };
    if (conns.length === 1) go(); else gate.then(go);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const p = { port: server.address().port, conns, open: release, close: () => { for (const c of conns) { c.client.destroy(); c.upstream?.destroy(); } server.close(); } };
  closers.push(p.close);
  return p;
}

test('recovery: EventSource json16 reconnecting with Last-Event-ID, ?since= and WebSocket since replay the render once, in their encoding', { timeout: 30000 }, async () => {
  const ch = 'recov';
  const proxy = await gatedProxy(srv.port);
  const es = openES(`http://127.0.0.1:${proxy.port}/sse/${ch}?encoding=json16`);
  await es.waitCount('connected');
  const before = es.of('connected')[0].id;
  assert.equal(offsetOf(before), 0);
  // cut the connection; EventSource reconnects (retry 100 ms) into the closed gate
  proxy.conns[0].client.destroy();
  await waitFor(() => proxy.conns.length >= 2, 5000, 'EventSource reconnecting');
  await waitSubscribers(srv, ch, 0);

  const live = await sse(srv, `/sse/${ch}?encoding=json`);
  await live.waitForCount('connected', 1);
  const job = await accepted(srv, ch, { ...PIECE, duration: 0.5 });
  await live.waitForCount('audio_buffer', 1, 15000);
  const st = await jobEnded(srv, job.job_id);
  assert.equal(st.status, 'done');

  proxy.open();
  await es.waitCount('connected', 2);
  assert.match(proxy.conns[1].head, new RegExp(`\\r\\nlast-event-id: ${before}\\r\\n`, 'i'),
    `the reconnect sent Last-Event-ID ${before}: ${JSON.stringify(proxy.conns[1].head)}`);
  assert.equal(JSON.parse(es.of('connected')[1].data).recovered, true, 'reconnect recovered');
  await es.waitCount('audio_buffer', 1);
  const b = await barrier(srv, ch);
  await es.waitCount('barrier');
  assert.equal(es.of('barrier')[0].id, b.id);
  assert.equal(es.of('audio_buffer').length, 1, 'the render is replayed once, not once per encoding');
  const replay = JSON.parse(es.of('audio_buffer')[0].data);
  assertAudioMeta(replay, { renderId: job.job_id, encoding: 'json16', duration: 0.5 });
  assert.equal(replay.compressed, true);
  assertJsonPair(JSON.parse(live.of('audio_buffer')[0].data), replay);

  // ?since= on a fresh stream, in json16 and in pcm16
  for (const enc of ['json16', 'pcm16']) {
    const c = await sse(srv, `/sse/${ch}?encoding=${enc}&since=${before}`);
    await c.waitForCount('barrier', 1);
    assert.equal(JSON.parse(c.of('connected')[0].data).recovered, true);
    assert.equal(c.of('audio_buffer').length, 1, `since=: one replayed audio_buffer in ${enc}`);
    const d = JSON.parse(c.of('audio_buffer')[0].data);
    assert.equal(d.encoding, enc);
    assert.equal(d.render_id, job.job_id);
    for (const raw of RAW_AUDIO_EVENTS) assert.equal(c.of(raw).length, 0);
  }
  // Last-Event-ID header on a raw stream, default encoding of /stream: json
  const h = await sse(srv, `/stream/${ch}`, { headers: { 'last-event-id': before } });
  await h.waitForCount('barrier', 1);
  assert.equal(h.of('audio_buffer').length, 1);
  assert.equal(JSON.parse(h.of('audio_buffer')[0].data).encoding, 'json');

  // WebSocket subscribe with since: only the chosen encoding is replayed
  for (const enc of ['json', 'pcm16', undefined]) {
    const c = await wsc(srv);
    const r = await c.request({ type: 'subscribe', channel: ch, since: before, ...(enc ? { encoding: enc } : {}) });
    assert.equal(r.type, 'subscribed', JSON.stringify(r));
    assert.equal(r.recovered, true);
    const b2 = await barrier(srv, ch);
    await wsBarrier(c, b2);
    const audio = wsAudio(c);
    assert.equal(audio.length, 1, `WS since, encoding ${enc}: exactly one replayed audio message`);
    if (enc === 'json') {
      assert.equal(audio[0].json.data.encoding, 'json');
      assert.equal(audio[0].json.data.render_id, job.job_id);
    } else {
      const f = parseAudioFrame(audio[0].binary);
      assert.equal(f.header.encoding, enc ?? 'opus');
      assert.equal(f.header.render_id, job.job_id);
    }
  }
});

// ---- 4. job status -------------------------------------------------------------

test('job status: queued/running -> done with progress 1 and render_seconds; unknown id -> 404', { timeout: 20000 }, async () => {
  const job = await accepted(srv, 'jobs', { ...PIECE, duration: 2 });
  const first = await getJSON(srv.url, job.status_url);
  assert.equal(first.status, 200);
  assert.equal(first.json.job_id, job.job_id);
  assert.ok(['queued', 'running', 'done'].includes(first.json.status), first.text);
  assert.ok(first.json.progress >= 0 && first.json.progress <= 1);
  const st = await jobEnded(srv, job.job_id);
  assert.equal(st.status, 'done', JSON.stringify(st));
  assert.equal(st.progress, 1);
  assert.equal(st.duration, 2);
  assert.equal(typeof st.render_seconds, 'number');
  assert.ok(st.render_seconds > 0 && st.render_seconds < 15, `render_seconds ${st.render_seconds}`);
  assert.equal('error' in st, false);

  for (const id of ['nosuchjob123', 'x'.repeat(33), '%00']) {
    const r = await getJSON(srv.url, `/api/render/jobs/${id}`);
    assert.equal(r.status, 404, `${id}: ${r.text}`);
    assert.equal(r.json.error.code, 'NOT_FOUND');
  }
  const m = await fetch(`${srv.url}${job.status_url}`, { method: 'DELETE' });
  assert.equal(m.status, 405);
});

// ---- 5. bad input ----------------------------------------------------------------

test('bad parameters: 400 BAD_PARAMS naming each bad field', { timeout: 20000 }, async () => {
  const table = [
    ['bad JSON', '{"tempo": 120,', ['']],
    ['tempo 500', { tempo: 500 }, ['tempo']],
    ['tempo not a number', { tempo: 'fast' }, ['tempo']],
    ['unknown instrumentType', { instrumentType: 'theremin' }, ['instrumentType']],
    ['bad note in scale', { scale: ['C4', 'H9', 'G4'] }, ['scale[1]']],
    ['unknown scale name', { scale: 'klingon' }, ['scale']],
    ['duration over --render-max-duration 10', { duration: 11 }, ['duration']],
    ['unknown top-level field', { tempo: 120, bpm: 120 }, ['bpm']],
    ['pattern type unknown', { pattern: { type: 'sideways' } }, ['pattern.type']],
    ['nested path', { tracks: [{}, { pattern: { type: 'steps', steps: [0, 1, null, { note: 'Q9' }] } }] }, ['tracks[1].pattern.steps[3].note']],
    ['samples without --samples-dir', { instrumentType: 'sampler', instrumentOptions: { samples: { C4: 'ping' } }, pattern: [{ note: 'C4' }] }, ['instrumentOptions.samples']],
    ['sampleRate', { sampleRate: 22050 }, ['sampleRate']],
    ['too many tracks', { tracks: Array.from({ length: 17 }, () => ({})) }, ['tracks']],
    ['not an object', '[1,2,3]', ['']],
    ['several at once', { tempo: 500, instrumentType: 'theremin', scale: ['C4', 'zz'], bpm: 1, duration: 11, effects: { reverb: { wet: 2 } } },
      ['tempo', 'instrumentType', 'scale[1]', 'bpm', 'duration', 'effects.reverb.wet']],
  ];
  for (const [what, body, fields] of table) {
    const r = await renderTo(srv, 'badp', body);
    const named = assertBadParams(r, fields, what);
    if (what === 'several at once') assert.ok(named.length >= fields.length);
    if (what === 'bad JSON') assert.match(r.json.error.message, /JSON/);
  }
  // the same checks on the file route and the test route
  assertBadParams(await post(srv, '/api/render', { tempo: 500 }), ['tempo'], 'POST /api/render');
  assertBadParams(await post(srv, '/stream/badp/test', { tempo: 500 }), ['tempo'], 'POST /stream/{ch}/test');
  assertBadParams(await renderTo(srv, 'badp', ''), [''], 'empty body on /render (only /test has a default piece)');
  // nothing was rendered or published for any of them
  assert.equal((await getJSON(srv.url, '/health/channel/badp')).json.last_offset, 0);
});

test('bad parameters: each bad field is named once (one `fields` entry per bad field)', async () => {
  // audio.h: "What was wrong, one entry per bad field."
  const dups = [];
  for (const body of [{ scale: ['C4', 'H9'] }, { rootNote: 'Z1' }, { scale: 'klingon' }, { tracks: [{ scale: ['C4', 'H9'] }] }]) {
    const r = await renderTo(srv, 'badp', body);
    assert.equal(r.status, 400, r.text);
    const named = r.json.error.fields.map((f) => f.field);
    if (named.length !== new Set(named).size) dups.push(`${JSON.stringify(body)} -> fields ${JSON.stringify(named)}`);
  }
  assert.deepEqual(dups, [], 'bad fields named more than once');
});

test('bad parameters inside the {"musicalParams":{...}} wrapper are errors too (unknown fields included)', async () => {
  // API.md: "Unknown fields are errors (so a typo is not silently ignored)"; the wrapper is accepted too.
  const wrapped = await renderTo(srv, 'badp', { repoId: 'o/r', musicalParams: { duration: 0.5, tempo: 999 } });
  assertBadParams(wrapped, ['tempo'], 'wrapped tempo 999');
  const typo = await renderTo(srv, 'badp', { repoId: 'o/r', musicalParams: { duration: 0.5, bpm: 120 } });
  assert.equal(typo.status, 400, `a typo inside musicalParams is silently ignored: ${typo.status} ${typo.text}`);
  assert.ok(typo.json.error.fields.some((f) => /(^|\.)bpm$/.test(f.field)), typo.text);
  const ev = await post(srv, '/api/publish', { channel: 'badp-ev', event: 'music:generated', data: { repoId: 'badp-ev', musicalParams: { duration: 0.5, bmp: 120 } } });
  assert.equal(ev.status, 400, `music:generated with a typo in musicalParams: ${ev.status} ${ev.text}`);
  assert.equal(ev.json.error.code, 'BAD_PARAMS');
});

test('bad encodings, room channels, methods: BAD_ENCODING (SSE 400, WS error with ref, /ws/x 400), 403, 405', { timeout: 20000 }, async () => {
  for (const p of ['/sse/x?encoding=mp3', '/stream/x?encoding=mp3', '/sse?channel=x&encoding=OPUS', '/sse/x?encoding=']) {
    const c = await sse(srv, p);
    assert.equal(c.status, 400, `${p}: ${c.body}`);
    assert.equal(c.json?.error?.code, 'BAD_ENCODING', `${p}: ${c.body}`);
  }
  const w = await wsc(srv);
  const e = await w.request({ type: 'subscribe', channel: 'x', encoding: 'mp3', id: 'enc-1' });
  assert.equal(e.type, 'error');
  assert.equal(e.code, 'BAD_ENCODING');
  assert.equal(e.ref, 'enc-1');
  assert.equal(await subscribers(srv, 'x'), 0, 'no subscription was made');
  const pong = await w.request({ type: 'ping', client_time: Date.now() });
  assert.equal(pong.type, 'pong', 'the connection stays open');
  assert.equal(w.closeInfo, undefined);
  const ok = await w.request({ type: 'subscribe', channel: 'x', encoding: 'json' });
  assert.equal(ok.type, 'subscribed', 'and still subscribes');

  await assert.rejects(openWS(srv.url, '/ws/x?encoding=mp3'), (err) => {
    assert.equal(err.status, 400, err.message);
    assert.equal(JSON.parse(err.body).error.code, 'BAD_ENCODING');
    return true;
  });

  const badCh = await post(srv, '/api/channels/bad%20name/render', { duration: 0.5 });
  assert.equal(badCh.status, 400, badCh.text);
  assert.equal(badCh.json.error.code, 'BAD_CHANNEL');
  for (const p of ['/api/channels/room:ABC/render', '/stream/room:ABC/test']) {
    const r = await post(srv, p, { duration: 0.5 });
    assert.equal(r.status, 403, `${p}: ${r.text}`);
    assert.equal(r.json.error.code, 'FORBIDDEN');
  }
  for (const [method, p] of [['GET', '/api/channels/x/render'], ['PUT', '/api/channels/x/render'], ['GET', '/api/render'], ['POST', '/api/render/jobs/abc']]) {
    const r = await fetch(`${srv.url}${p}`, { method });
    assert.equal(r.status, 405, `${method} ${p}`);
    await r.arrayBuffer();
  }
});

test('--api-key: rendering needs the Bearer key (401 without, 202 with)', { timeout: 20000 }, async () => {
  const s = await startTutti(['--api-key', 'k']);
  try {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'k' }]) {
      const r = await renderTo(s, 'keyed', { duration: 0.5 }, headers);
      assert.equal(r.status, 401, `${JSON.stringify(headers)}: ${r.text}`);
      assert.equal(r.json.error.code, 'UNAUTHORIZED');
    }
    assert.equal((await post(s, '/api/render', { duration: 0.5 })).status, 401, 'file render needs the key too');
    assert.equal((await post(s, '/stream/keyed/test', '')).status, 401, 'the test route needs the key too');
    const job = await accepted(s, 'keyed', { duration: 0.5 }, { authorization: 'Bearer k' });
    assert.equal((await jobEnded(s, job.job_id)).status, 'done');
    const f = await post(s, '/api/render', { duration: 0.5 }, { authorization: 'Bearer k' });
    assert.equal(f.status, 200);
    assert.equal(f.headers.get('content-type'), 'audio/wav');
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

// ---- 6. RENDER_BUSY and shutdown during a render ------------------------------------

test('RENDER_BUSY with --render-queue 1; SIGTERM during a long render exits 0 promptly', { timeout: 30000 }, async () => {
  const s = await startTutti(['--render-queue', '1', '--render-concurrency', '1', '--render-max-duration', '600']);
  let stopped = false;
  try {
    const sub = openES(`${s.url}/sse/busy?encoding=json16`);
    await sub.waitCount('connected');
    for (let i = 0; i < 2; i++) { // the one slot is given back after each render
      const short = await accepted(s, 'busy', { duration: 0.5 });
      assert.equal((await jobEnded(s, short.job_id)).status, 'done');
    }
    await sub.waitCount('audio_buffer', 2);
    const long = await accepted(s, 'busy', heavy(300));
    assert.equal(long.duration, 300);
    const r = await renderTo(s, 'busy', { duration: 0.5 });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.error.code, 'RENDER_BUSY');
    assert.equal(r.headers.get('retry-after'), '1');
    const f = await post(s, '/api/render', { duration: 0.5 });
    assert.equal(f.status, 503, 'file renders share the queue');
    assert.equal(f.json.error.code, 'RENDER_BUSY');
    assert.equal(f.headers.get('retry-after'), '1');
    const g = await post(s, '/api/publish', { channel: 'busy', event: 'music:generated', data: { repoId: 'busy', musicalParams: { duration: 0.5 } } });
    assert.equal(g.status, 503, `music:generated while busy: ${g.text}`);
    assert.equal(g.json.error.code, 'RENDER_BUSY');

    // the long job is running and moving
    let st;
    await waitFor(async () => { st = (await getJSON(s.url, long.status_url)).json; return st.status === 'running' && st.progress > 0; },
      10000, `the long render running with progress (${JSON.stringify(st)})`);
    assert.ok(st.progress < 1, JSON.stringify(st));
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /^tutti_render_jobs(\{[^}]*\})? 1$/m, 'tutti_render_jobs counts the running job');

    const t0 = Date.now();
    const code = await s.stop();
    stopped = true;
    const took = Date.now() - t0;
    assert.equal(code, 0, 'exit code 0 with a render cancelled mid-way (ASan/LSan clean)');
    assert.ok(took < 5000, `SIGTERM during a render took ${took} ms to exit`);
    assert.equal(sub.of('audio_buffer').length, 2, 'a cancelled render publishes no audio');
    assert.equal(sub.of('audio_error').length, 0, 'nor an error');
  } finally {
    if (!stopped) await s.stop();
  }
});

// ---- 7. timeout -------------------------------------------------------------------------

test('--render-timeout 1: a 600 s render fails with RENDER_TIMEOUT (audio_error to subscribers, job failed)', { timeout: 30000 }, async () => {
  const s = await startTutti(['--render-timeout', '1', '--render-max-duration', '600']);
  try {
    const es = openES(`${s.url}/sse/slow?encoding=pcm16`);
    await es.waitCount('connected');
    const w = await wsc(s);
    assert.equal((await w.request({ type: 'subscribe', channel: 'slow', encoding: 'json' })).type, 'subscribed');
    await waitSubscribers(s, 'slow', 2);
    const t0 = Date.now();
    const job = await accepted(s, 'slow', heavy(600));
    await es.waitCount('audio_error', 1, 15000);
    const took = Date.now() - t0;
    assert.ok(took >= 900, `the timeout is 1 s of wall time; the error came after ${took} ms`);
    const err = JSON.parse(es.of('audio_error')[0].data);
    assert.equal(err.render_id, job.job_id);
    assert.equal(err.code, 'RENDER_TIMEOUT');
    assert.equal(typeof err.message, 'string');
    assert.equal(es.of('audio_buffer').length, 0);
    await w.waitFor(() => w.msgs.some((m) => m.json?.event === 'audio_error'), 5000, 'audio_error over WebSocket');
    const we = w.msgs.find((m) => m.json?.event === 'audio_error').json;
    assert.equal(we.type, 'message');
    assert.equal(we.data.code, 'RENDER_TIMEOUT');
    assert.equal(we.data.render_id, job.job_id);
    const st = await jobEnded(s, job.job_id);
    assert.equal(st.status, 'failed', JSON.stringify(st));
    assert.equal(st.error.code, 'RENDER_TIMEOUT');
    assert.ok(st.progress < 1);
    assert.ok(st.render_seconds >= 0.9 && st.render_seconds < 5, `render_seconds ${st.render_seconds}`);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.match(metrics, /^tutti_renders_failed_total(\{[^}]*\})? [1-9]/m, 'the failure is counted');
    // the timed-out job gave back its slot: a short render goes through
    const next = await accepted(s, 'slow', { duration: 0.5 });
    await es.waitCount('audio_buffer', 1, 10000);
    assert.equal(JSON.parse(es.of('audio_buffer')[0].data).render_id, next.job_id);
    assert.equal((await jobEnded(s, next.job_id)).status, 'done');
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

// ---- 8. samples ----------------------------------------------------------------------------

test('sampler: a missing sample -> audio_error SAMPLE_NOT_FOUND; a real WAV plays', { timeout: 30000 }, async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'samples-'));
  const s = await startTutti(['--samples-dir', dir]);
  try {
    const sampler = (name) => ({
      duration: 0.5, instrumentType: 'sampler', instrumentOptions: { samples: { C4: name } },
      pattern: { type: 'steps', interval: 0.25, steps: [{ note: 'C4' }] },
    });
    const es = openES(`${s.url}/sse/samp?encoding=json`);
    await es.waitCount('connected');
    const missing = await accepted(s, 'samp', sampler('nothere'));
    await es.waitCount('audio_error', 1, 10000);
    const err = JSON.parse(es.of('audio_error')[0].data);
    assert.equal(err.code, 'SAMPLE_NOT_FOUND');
    assert.equal(err.render_id, missing.job_id);
    const st = await jobEnded(s, missing.job_id);
    assert.equal(st.status, 'failed');
    assert.equal(st.error.code, 'SAMPLE_NOT_FOUND');

    fs.writeFileSync(path.join(dir, 'broken.wav'), 'RIFF nonsense, not a wave file at all');
    const broken = await accepted(s, 'samp', sampler('broken'));
    await es.waitCount('audio_error', 2, 10000);
    const err2 = JSON.parse(es.of('audio_error')[1].data);
    assert.equal(err2.render_id, broken.job_id);
    assert.equal(err2.code, 'SAMPLE_UNREADABLE');

    const made = await runTool('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', path.join(dir, 'ping.wav'), 'synth', '0.2', 'sine', '440']);
    assert.equal(made.code, 0, made.stderr);
    const ok = await accepted(s, 'samp', sampler('ping'));
    await es.waitCount('audio_buffer', 1, 10000);
    const d = JSON.parse(es.of('audio_buffer')[0].data);
    assert.equal(d.render_id, ok.job_id);
    assert.equal(d.encoding, 'json');
    assert.ok(peak(d.channels) > 0.05, `the sample sounds (peak ${peak(d.channels)})`);
    assert.equal(es.of('audio_error').length, 2);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});

// ---- 9. POST /api/render --------------------------------------------------------------------

test('POST /api/render: WAV by default, Ogg Opus by Accept or ?format, 406 otherwise; deterministic', { timeout: 40000 }, async () => {
  const params = { ...PIECE, duration: 1.5, seed: 21 };
  const wav = await post(srv, '/api/render', params);
  assert.equal(wav.status, 200, wav.text.slice(0, 300));
  assert.equal(wav.headers.get('content-type'), 'audio/wav');
  const rid = wav.headers.get('x-render-id');
  assert.match(rid ?? '', /^[A-Za-z0-9]{8,32}$/, 'X-Render-Id');
  assert.ok(Number(wav.headers.get('x-render-seconds')) >= 0, 'X-Render-Seconds');
  assert.equal(Number(wav.headers.get('content-length')), wav.bytes.length);
  const wavFile = path.join(tmp, 'api.wav');
  fs.writeFileSync(wavFile, wav.bytes);
  const pw = await ffprobe(wavFile);
  assert.equal(pw.streams[0].codec_name, 'pcm_s16le');
  assert.equal(Number(pw.streams[0].sample_rate), 48000);
  assert.equal(pw.streams[0].channels, 2);
  assertCloseTo(Number(pw.format.duration), 1.5, 0.015, 'ffprobe WAV duration');
  const sw = await soxi(wavFile);
  assert.equal(sw.code, 0, `soxi rejects the WAV: ${sw.stderr}`);
  assert.match(sw.stdout, /Channels\s*:\s*2/);
  assert.match(sw.stdout, /Sample Rate\s*:\s*48000/);
  assert.match(sw.stdout, /= 72000 samples/);
  const rendered = await getJSON(srv.url, `/api/render/jobs/${rid}`);
  assert.equal(rendered.json?.status, 'done', `X-Render-Id names the job: ${rendered.text}`);

  const again = await post(srv, '/api/render', params, { accept: 'audio/*' });
  assert.equal(again.headers.get('content-type'), 'audio/wav');
  assert.ok(again.bytes.equals(wav.bytes), 'same parameters -> byte-identical WAV');
  assert.notEqual(again.headers.get('x-render-id'), rid, 'a new render id');
  const other = await post(srv, '/api/render', { ...params, pattern: { type: 'random', interval: '16n' }, seed: 22 });
  assert.ok(!other.bytes.equals(wav.bytes), 'other parameters -> other bytes (the comparison can fail)');

  const oggs = [];
  for (const [what, p, accept] of [
    ['Accept: audio/ogg', '/api/render', 'audio/ogg'],
    ['Accept: audio/opus', '/api/render', 'audio/opus'],
    ['?format=ogg', '/api/render?format=ogg', undefined],
    ['?format=ogg wins over Accept', '/api/render?format=ogg', 'text/html'],
  ]) {
    const r = await post(srv, p, params, accept ? { accept } : {});
    assert.equal(r.status, 200, `${what}: ${r.text.slice(0, 200)}`);
    assert.equal(r.headers.get('content-type'), 'audio/ogg', what);
    assert.ok(r.headers.get('x-render-id'), `${what}: X-Render-Id`);
    oggs.push(r.bytes);
  }
  const oggFile = path.join(tmp, 'api.ogg');
  fs.writeFileSync(oggFile, oggs[0]);
  const po = await ffprobe(oggFile);
  assert.equal(po.streams[0].codec_name, 'opus');
  assert.equal(po.streams[0].channels, 2);
  await assertOpus(oggs[0], 72000, 'POST /api/render Ogg');
  if (await soxReads('opus')) {
    const so = await soxi(oggFile);
    assert.equal(so.code, 0, `soxi rejects the Ogg Opus file: ${so.stderr}`);
  }
  const wf = await post(srv, '/api/render?format=wav', params, { accept: 'audio/ogg' });
  assert.equal(wf.headers.get('content-type'), 'audio/wav', '?format=wav wins over Accept');
  assert.ok(wf.bytes.equals(wav.bytes));

  for (const [p, accept] of [['/api/render', 'text/html'], ['/api/render', 'application/json'], ['/api/render?format=mp3', undefined]]) {
    const r = await post(srv, p, params, accept ? { accept } : {});
    assert.equal(r.status, 406, `${p} Accept ${accept}: ${r.text}`);
    assert.equal(r.json.error.code, 'NOT_ACCEPTABLE');
  }

  // the file render and a channel render of the same parameters: the same samples
  const c = await sse(srv, '/sse/samefile?encoding=pcm16');
  await c.waitForCount('connected', 1);
  await accepted(srv, 'samefile', params);
  await c.waitForCount('audio_buffer', 1, 15000);
  const pcm = Buffer.from(JSON.parse(c.of('audio_buffer')[0].data).data, 'base64');
  const wd = wavData(wav.bytes);
  assert.deepEqual(wd.format, { tag: 1, channels: 2, sampleRate: 48000, bits: 16 });
  assert.ok(wd.data.equals(pcm), 'WAV data chunk == pcm16 of the channel render');
});

// ---- 10. music:generated ------------------------------------------------------------------

test('music:generated: published as usual and rendered to the repo channel; bad params publish nothing', { timeout: 30000 }, async () => {
  const events = openES(`${srv.url}/sse/events`);
  const repo = openES(`${srv.url}/stream/owner/repo`);
  const w = await wsc(srv, '/ws/owner/repo?encoding=json16');
  await events.waitCount('connected');
  await repo.waitCount('connected');
  await waitSubscribers(srv, 'owner/repo', 2);
  const data = {
    repoId: 'owner/repo',
    musicalParams: { tempo: 120, scale: ['C4', 'E4', 'G4', 'B4'], rootNote: 'C4', instrumentType: 'synth', duration: 1 },
  };
  const r = await post(srv, '/api/publish', { channel: 'events', event: 'music:generated', data });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.channel, 'events');
  assert.match(r.json.render_job, /^[A-Za-z0-9]{8,32}$/, `render_job in ${r.text}`);
  await events.waitCount('music:generated');
  const ev = events.of('music:generated')[0];
  assert.equal(ev.id, r.json.id);
  assert.deepEqual(JSON.parse(ev.data), data, 'the event itself is published unchanged');
  await repo.waitCount('audio_buffer', 1, 15000);
  const a = JSON.parse(repo.of('audio_buffer')[0].data);
  assertAudioMeta(a, { renderId: r.json.render_job, encoding: 'json', duration: 1 });
  assert.ok(peak(a.channels) > 0.01);
  await w.waitFor(() => wsAudio(w).length >= 1, 10000, 'json16 over WebSocket');
  assert.equal(wsAudio(w)[0].json.data.render_id, r.json.render_job);
  assert.equal(wsAudio(w)[0].json.data.encoding, 'json16');
  assert.equal((await jobEnded(srv, r.json.render_job)).status, 'done');
  assert.equal(events.of('audio_buffer').length, 0, 'the render goes to the repo channel, not to "events"');

  // through /api/channels/{ch}/publish?event=: data.channel wins over repoId
  const r2 = await post(srv, '/api/channels/events/publish?event=music:generated',
    { channel: 'owner/repo', repoId: 'elsewhere', musicalParams: { duration: 0.5 } });
  assert.equal(r2.status, 200, r2.text);
  assert.ok(r2.json.render_job);
  await repo.waitCount('audio_buffer', 2, 15000);
  assert.equal(JSON.parse(repo.of('audio_buffer')[1].data).render_id, r2.json.render_job);
  await events.waitCount('music:generated', 2);

  // bad musicalParams: 400 and nothing published; missing musicalParams: MISSING_FIELD
  const bad = await post(srv, '/api/publish', { channel: 'events', event: 'music:generated', data: { repoId: 'owner/repo', musicalParams: { tempo: 500, instrumentType: 'kazoo' } } });
  assertBadParams(bad, [], 'bad musicalParams');
  const named = bad.json.error.fields.map((f) => f.field);
  assert.ok(named.some((f) => /tempo$/.test(f)) && named.some((f) => /instrumentType$/.test(f)), `fields ${JSON.stringify(named)}`);
  const missing = await post(srv, '/api/publish', { channel: 'events', event: 'music:generated', data: { repoId: 'owner/repo' } });
  assert.equal(missing.status, 400, missing.text);
  assert.equal(missing.json.error.code, 'MISSING_FIELD');
  const notObj = await post(srv, '/api/publish', { channel: 'events', event: 'music:generated', data: { repoId: 'owner/repo', musicalParams: 'loud' } });
  assert.equal(notObj.status, 400);
  const room = await post(srv, '/api/publish', { channel: 'events', event: 'music:generated', data: { repoId: 'room:ABC', musicalParams: { duration: 0.5 } } });
  assert.equal(room.status, 400, `render target room:ABC: ${room.text}`);
  assert.equal(room.json.error.code, 'BAD_CHANNEL');
  const after = await publish(srv.url, 'events', { plain: true }, { event: 'barrier' });
  await events.waitCount('barrier');
  assert.equal(events.of('barrier')[0].id, after.id);
  assert.equal(offsetOf(after.id), offsetOf(r2.json.id) + 1, 'the rejected events took no offset');
  assert.equal(events.of('music:generated').length, 2, 'the rejected events were not published');
  assert.equal(events.events.filter((e) => e.type !== 'connected').length, 3, 'events got nothing else');
  await publish(srv.url, 'owner/repo', 1, { event: 'barrier' });
  await repo.waitCount('barrier');
  assert.equal(repo.of('audio_buffer').length, 2, 'no render for the rejected events');
});

// ---- 11. the test route ---------------------------------------------------------------------

test('POST /stream/{ch}/test with an empty body renders the 5 s test piece', { timeout: 30000 }, async () => {
  const c = openES(`${srv.url}/stream/testpiece`);
  await c.waitCount('connected');
  const r = await fetch(`${srv.url}/stream/testpiece/test`, { method: 'POST' });
  assert.equal(r.status, 202);
  const j = await r.json();
  assert.equal(j.duration, 5);
  assert.equal(j.channel, 'testpiece');
  await c.waitCount('audio_buffer', 1, 20000);
  const d = JSON.parse(c.of('audio_buffer')[0].data);
  assertAudioMeta(d, { renderId: j.job_id, encoding: 'json', duration: 5 });
  assert.equal(d.duration, 5);
  assert.equal(d.channels[0].length, 240000);
  assert.ok(peak(d.channels) > 0.01);
  // a body there is a MusicalParameters document like on /render
  const r2 = await post(srv, '/stream/testpiece/test', { duration: 0.5 });
  assert.equal(r2.status, 202);
  assert.equal(r2.json.duration, 0.5);
  await c.waitCount('audio_buffer', 2, 10000);
  assert.equal(JSON.parse(c.of('audio_buffer')[1].data).duration, 0.5);
});

// ---- 12. command line ----------------------------------------------------------------------

function cli(args, { input, timeoutMs = 20000 } = {}) {
  return runTool(tuttiBin, args, { input, timeoutMs, env: { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0' } });
}

test('tutti render: WAV and Ogg files, summary without a progress bar when piped, exit 2 on bad input, stdin/stdout', { timeout: 40000 }, async () => {
  const dir = fs.mkdtempSync(path.join(tmp, 'cli-'));
  const params = path.join(dir, 'params.json');
  const p = { tempo: 110, duration: 1, instrumentType: 'fmSynth', scale: 'minor pentatonic', rootNote: 'A3', seed: 5 };
  fs.writeFileSync(params, JSON.stringify(p));
  const wav = path.join(dir, 'out.wav');
  const ogg = path.join(dir, 'out.ogg');

  const a = await cli(['render', params, '-o', wav]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stderr.includes('\r'), false, `no progress bar when stderr is piped: ${JSON.stringify(a.stderr)}`);
  assert.match(a.stderr, /real time/);
  assert.match(a.stderr, /1\.00 s of audio .* -> .*out\.wav \(\d+ bytes, WAV\)/);
  assert.equal(a.stdout.length, 0);
  const pw = await ffprobe(wav);
  assert.equal(pw.streams[0].codec_name, 'pcm_s16le');
  assert.equal(Number(pw.streams[0].sample_rate), 48000);
  assert.equal(pw.streams[0].channels, 2);
  assertCloseTo(Number(pw.format.duration), 1, 0.01, 'CLI WAV duration');
  assert.equal((await soxi(wav)).code, 0, 'soxi accepts the CLI WAV');

  const b = await cli(['render', params, '-o', ogg]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stderr.includes('\r'), false);
  assert.match(b.stderr, /real time/);
  assert.match(b.stderr, /Ogg Opus/);
  const po = await ffprobe(ogg);
  assert.equal(po.streams[0].codec_name, 'opus');
  await assertOpus(fs.readFileSync(ogg), 48000, 'CLI Ogg');
  if (await soxReads('opus')) assert.equal((await soxi(ogg)).code, 0, 'soxi accepts the CLI Ogg');

  // --quiet: nothing on stderr
  const q = await cli(['render', params, '-o', path.join(dir, 'q.wav'), '--quiet']);
  assert.equal(q.code, 0);
  assert.equal(q.stderr, '');

  // params from stdin, WAV to a file and to stdout: the same bytes as from the file
  const s1 = await cli(['render', '-', '-o', path.join(dir, 'stdin.wav')], { input: JSON.stringify(p) });
  assert.equal(s1.code, 0, s1.stderr);
  assert.ok(fs.readFileSync(path.join(dir, 'stdin.wav')).equals(fs.readFileSync(wav)), 'stdin params: same WAV');
  const s2 = await cli(['render', '-', '-o', '-', '--quiet'], { input: JSON.stringify(p) });
  assert.equal(s2.code, 0, s2.stderr);
  assert.ok(s2.stdout.equals(fs.readFileSync(wav)), '-o -: the WAV on stdout');

  // the server renders the same samples as the command line
  const served = await post(srv, '/api/render', p);
  assert.ok(served.bytes.equals(fs.readFileSync(wav)), 'POST /api/render == tutti render, byte for byte');

  // bad params: exit 2, each bad field on stderr
  const badFile = path.join(dir, 'bad.json');
  fs.writeFileSync(badFile, JSON.stringify({ tempo: 500, instrumentType: 'kazoo' }));
  const bad = await cli(['render', badFile, '-o', path.join(dir, 'bad.wav')]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /tutti render: tempo must be a number from 20 to 400/);
  assert.match(bad.stderr, /tutti render: instrumentType /);
  assert.equal(fs.existsSync(path.join(dir, 'bad.wav')), false, 'no file written on bad params');
  const badJson = await cli(['render', '-', '-o', path.join(dir, 'bad.wav')], { input: '{"tempo":' });
  assert.equal(badJson.code, 2);
  assert.match(badJson.stderr, /JSON/);

  // bad usage: exit 2
  for (const args of [['render'], ['render', params], ['render', '-o', wav], ['render', params, '-o', wav, '--format', 'mp3'],
    ['render', params, '-o', wav, '--bitrate', '5'], ['render', params, '-o', wav, '--nope']]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code} ${r.stderr}`);
    assert.ok(r.stderr.length > 0, `${args.join(' ')}: says why`);
  }
  // a missing params file: exit 1 (a failure, not bad usage)
  const nf = await cli(['render', path.join(dir, 'nothere.json'), '-o', wav]);
  assert.equal(nf.code, 1, nf.stderr);
  assert.match(nf.stderr, /cannot read/);
});

// ---- more: rates, worker-published audio, clients that leave, shutdown with a waiting job ----

test('44100 Hz mono render: every encoding carries the rate and channel count; Opus still decodes to the duration', { timeout: 30000 }, async () => {
  const ch = 'mono441';
  const cs = Object.fromEntries(ENCODINGS.map((e) => [e, openES(`${srv.url}/sse/${ch}?encoding=${e}`)]));
  for (const c of Object.values(cs)) await c.waitCount('connected');
  await waitSubscribers(srv, ch, 4);
  const job = await accepted(srv, ch, { ...PIECE, sampleRate: 44100, channels: 1, duration: 0.75 });
  for (const c of Object.values(cs)) await c.waitCount('audio_buffer', 1, 15000);
  const d = Object.fromEntries(ENCODINGS.map((e) => [e, JSON.parse(cs[e].of('audio_buffer')[0].data)]));
  for (const e of ENCODINGS) assertAudioMeta(d[e], { renderId: job.job_id, encoding: e, channels: 1, sampleRate: 44100, duration: 0.75 });
  assert.equal(d.json.length, 33075);
  assert.equal(Buffer.from(d.pcm16.data, 'base64').length, 33075 * 2);
  assertJsonPair(d.json, d.json16);
  assert.deepEqual(Array.from(int16s(Buffer.from(d.pcm16.data, 'base64'))), d.json16.channels[0]);
  // Opus runs at 48 kHz: the decoded file lasts the same 0.75 s
  await assertOpus(Buffer.from(d.opus.data, 'base64'), 36000, '44.1 kHz render as Opus');
});

test('audio_buffer.<encoding> published by a worker reaches only that encoding\'s subscribers (binary over WebSocket)', { timeout: 20000 }, async () => {
  const ch = 'worker-audio';
  const e16 = openES(`${srv.url}/sse/${ch}?encoding=json16`);
  const eOpus = openES(`${srv.url}/sse/${ch}`);
  await e16.waitCount('connected');
  await eOpus.waitCount('connected');
  const wPcm = await wsc(srv, `/ws/${ch}?encoding=pcm16`);
  const wJson16 = await wsc(srv, `/ws/${ch}?encoding=json16`);
  await waitSubscribers(srv, ch, 4);
  const samples = Buffer.from(new Int16Array([0, 1000, -1000, 32767]).buffer);
  const pcmData = { render_id: 'worker1', encoding: 'pcm16', mimeType: 'audio/pcm; format=s16le', sampleRate: 48000, length: 2, duration: 2 / 48000, numberOfChannels: 2, bytes: 8, data: samples.toString('base64') };
  const a1 = await publish(srv.url, ch, pcmData, { event: 'audio_buffer.pcm16' });
  const j16 = { render_id: 'worker1', encoding: 'json16', sampleRate: 48000, length: 2, duration: 2 / 48000, numberOfChannels: 2, compressed: true, channels: [[0, -1000], [1000, 32767]] };
  const a2 = await publish(srv.url, ch, j16, { event: 'audio_buffer.json16' });
  // pcm16 data that is not base64: still delivered, as text
  const a3 = await publish(srv.url, ch, { render_id: 'worker2', encoding: 'pcm16', data: 42 }, { event: 'audio_buffer.pcm16' });
  const b = await barrier(srv, ch);
  for (const c of [e16, eOpus]) await c.waitCount('barrier');
  for (const c of [wPcm, wJson16]) await wsBarrier(c, b);

  assert.equal(e16.of('audio_buffer').length, 1);
  assert.equal(e16.of('audio_buffer')[0].id, a2.id);
  assert.deepEqual(JSON.parse(e16.of('audio_buffer')[0].data), j16);
  assert.equal(eOpus.of('audio_buffer').length, 0, 'the opus subscriber gets none of them');
  const pa = wsAudio(wPcm);
  assert.equal(pa.length, 2, 'pcm16 subscriber: the two pcm16 messages');
  const f = parseAudioFrame(pa[0].binary);
  assert.equal(f.header.id, a1.id);
  assert.equal(f.header.render_id, 'worker1');
  assert.equal(f.header.bytes, 8);
  assert.ok(f.audio.equals(samples), 'the base64 data as raw bytes');
  assert.equal(pa[1].binary, undefined, 'not a render\'s shape: text');
  assert.equal(pa[1].json.id, a3.id);
  assert.equal(pa[1].json.event, 'audio_buffer');
  assert.deepEqual(pa[1].json.data, { render_id: 'worker2', encoding: 'pcm16', data: 42 });
  const ja = wsAudio(wJson16);
  assert.equal(ja.length, 1);
  assert.deepEqual(ja[0].json.data, j16);
});

test('a file render whose client goes away: the render ends, the server goes on', { timeout: 20000 }, async () => {
  const jobsNow = async () => Number(/^tutti_render_jobs(?:\{[^}]*\})? (\d+)$/m.exec(await (await fetch(`${srv.url}/metrics`)).text())[1]);
  const ac = new AbortController();
  const req = fetch(`${srv.url}/api/render`, { method: 'POST', body: JSON.stringify(heavy(3, 2)), signal: ac.signal });
  req.catch(() => {});
  await waitFor(async () => (await jobsNow()) === 1, 5000, 'the file render running');
  ac.abort();
  await assert.rejects(req);
  await waitFor(async () => (await jobsNow()) === 0, 15000, 'the abandoned render to end');
  const ok = await post(srv, '/api/render', { duration: 0.5 });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('content-type'), 'audio/wav');
});

test('SIGTERM with one render running and two waiting (one a file render): exit 0 promptly', { timeout: 30000 }, async () => {
  const s = await startTutti(['--render-queue', '3', '--render-concurrency', '1', '--render-max-duration', '600']);
  let stopped = false;
  try {
    const a = await accepted(s, 'wait', heavy(300));
    const b = await accepted(s, 'wait', heavy(300));
    // the file render on a raw connection, to see its answer's headers
    const raw = await connectRaw(s.port);
    closers.push(() => raw.destroy());
    const body = JSON.stringify({ duration: 1 });
    raw.write(`POST /api/render HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await waitFor(async () => (await getJSON(s.url, a.status_url)).json.status === 'running', 10000, 'job a running');
    await waitFor(async () => /^tutti_render_jobs(\{[^}]*\})? 3$/m.test(await (await fetch(`${s.url}/metrics`)).text()), 5000, 'three jobs');
    assert.equal((await getJSON(s.url, b.status_url)).json.status, 'queued', 'concurrency 1: b waits');
    const full = await renderTo(s, 'wait', { duration: 0.5 });
    assert.equal(full.status, 503);
    const t0 = Date.now();
    const exit = s.stop();
    const answer = await raw.readResponse({ timeoutMs: 5000 });
    const answeredIn = Date.now() - t0;
    const closedByServer = await raw.waitClosed(2000);
    const code = await exit;
    stopped = true;
    const took = Date.now() - t0;
    assert.equal(code, 0, 'exit code 0 (waiting renders never start, the running one stops; LSan clean)');
    assert.equal(answer.status, 503, `the waiting file render's answer: ${answer.body}`);
    assert.equal(answer.json.error.code, 'SHUTTING_DOWN');
    assert.ok(answeredIn < 1000, `answered ${answeredIn} ms after SIGTERM`);
    // an answer sent while draining ends its connection, as for requests that arrive while draining
    assert.equal(answer.headers.connection, 'close', `the answer during shutdown says Connection: ${answer.headers.connection}`);
    assert.ok(closedByServer, 'the server closes the connection after its answer');
    assert.ok(took < 2000, `exit took ${took} ms (the idle connection was kept until --drain-timeout?)`);
  } finally {
    if (!stopped) await s.stop();
  }
});

// ---- 13. metrics -------------------------------------------------------------------------------

test('metrics: renders counted with their audio seconds', async () => {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const value = (name) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    assert.ok(m, `${name} in /metrics`);
    return Number(m[1]);
  };
  assert.ok(value('tutti_renders_total') >= 5, `tutti_renders_total ${value('tutti_renders_total')}`);
  assert.ok(value('tutti_render_audio_seconds_total') > 5, `tutti_render_audio_seconds_total ${value('tutti_render_audio_seconds_total')}`);
  assert.ok(value('tutti_render_wall_seconds_total') > 0);
  assert.equal(value('tutti_renders_failed_total'), 0, 'nothing failed on the main server');
  assert.equal(value('tutti_render_jobs'), 0, 'no job running now');
});
