#!/usr/bin/env node
// Renders a MusicalParameters piece (bench/render_piece.json) with Tone.js in Node, for
// bench/render.sh's side-by-side comparison with `tutti render`.
//
//   node bench/render_tone.mjs PIECE.json [--duration S] [-o OUT.wav] [--json]
//   node bench/render_tone.mjs --wav-stats FILE.wav      (peak and RMS of a 16-bit WAV)
//
// Tone.js needs a Web Audio API: npm `node-web-audio-api` (Rust, napi) provides one; its
// classes are installed as globals (and on a `window` object) before Tone is imported, so
// Tone's standardized-audio-context finds a native OfflineAudioContext.
//
// The notes come from the SAME JSON, expanded here by the rules of src/audio/params.c
// (scales, rootNote, up/down/upDown/downUp over `octaves`, steps with degrees, note names
// and chords, drum grids, looping until the piece ends), so both engines play the same
// notes at the same times, lengths and velocities. Instruments, as close as Tone has them:
//   synth     -> Tone.Synth (+ Tone.Filter when the track has a filter)
//   fmSynth   -> Tone.FMSynth
//   polySynth -> Tone.PolySynth(Tone.Synth or Tone.FMSynth, maxPolyphony)
//   sampler   -> Tone has no built-in drum kit (Tone.Sampler plays audio files), so the kit
//                is synthesised like tutti's (src/audio/synth.c): kick = Tone.MembraneSynth
//                (150 -> 50 Hz), snare = Tone.NoiseSynth through a 1.5 kHz bandpass plus a
//                180 Hz sine Tone.Synth, hat / openhat = Tone.NoiseSynth through a 7 kHz
//                highpass (50 / 300 ms), clap = three Tone.NoiseSynths (10 ms bursts, 10 ms
//                apart) and a fourth for its 150 ms tail, through a 1.2 kHz bandpass.
//   volume/pan -> instrument volume and Tone.Panner (equal power, like tutti's pan)
//   effects   -> Tone.FeedbackDelay then Tone.Reverb (a ConvolverNode whose impulse Tone
//                renders in a nested OfflineContext) on the master bus. tutti's reverb is a
//                Freeverb (combs + allpasses); Tone.Freeverb runs its combs in an
//                AudioWorklet, so the convolution reverb is the one used here.
// Levels follow tutti's: a voice at velocity 1 peaks at 0.5 (-6 dB), then the track
// volume. Web Audio's lowpass/highpass Q is in dB (tutti's is the RBJ linear Q), so it is
// converted: 20*log10(Q), at least 0 (Tone's Q takes no negative value: the hats' Q 0.7,
// -3.1 dB, becomes 0 dB).
//
// Every note (a chord: one PolySynth call) is a Transport event (transport.schedule at the
// note's time, the Transport at the piece's tempo), as Tone pieces are usually written.
// (Calling PolySynth.triggerAttackRelease with future times instead, which Tone defers with
// context.setTimeout, dropped chord notes in Tone.Offline here: "Max polyphony exceeded"
// with at most 6 voices sounding.)
//
// Timed: from the Tone.Offline call until it returns the buffer (building the graph,
// scheduling every note, generating the reverb's impulse, and the render), as "seconds";
// "setup_seconds" is the part before the render proper starts. Not timed: Node's start,
// importing Tone and the native module, expanding the notes, writing -o.
// Prints a summary line on stderr and, with --json, one JSON line on stdout.
//
// Tone's time grows faster than the piece is long: in an offline context Tone disconnects
// and disposes no ended source (Oscillator._cleanUpConnections and
// OneShotSource._onended return early when context.isOffline), so every PolySynth voice's
// note and every drum hit leaves an OscillatorNode or AudioBufferSourceNode connected
// (the voice's frequency signal fans out to all of them), and node-web-audio-api processes
// the whole growing graph to the end. Here: the 10 s cut (--quick) renders in about 2 s,
// the 60 s piece in about 30 s, almost all of it in startRendering.
//
// node-web-audio-api 2.x declares Node >= 22 (npm warns EBADENGINE); it runs on Node 20
// too, except its polyfill.js (globalThis.navigator), which is why the globals are set here.

import fs from 'node:fs';
import webaudio from 'node-web-audio-api';

// ------------------------------------------------------------------ arguments

const argv = process.argv.slice(2);
function usage(msg) {
  if (msg) process.stderr.write(`render_tone: ${msg}\n`);
  process.stderr.write('usage: node render_tone.mjs PIECE.json [--duration S] [-o OUT.wav] [--json]\n' +
                       '       node render_tone.mjs --wav-stats FILE.wav\n');
  process.exit(2);
}
let piecePath = null, outPath = null, json = false, durationOverride = null, statsOf = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '-o') outPath = argv[++i] ?? usage('-o needs a file');
  else if (a === '--json') json = true;
  else if (a === '--duration') durationOverride = Number(argv[++i]);
  else if (a === '--wav-stats') statsOf = argv[++i] ?? usage('--wav-stats needs a file');
  else if (a === '-h' || a === '--help') usage();
  else if (!a.startsWith('-') && !piecePath) piecePath = a;
  else usage(`unknown argument '${a}'`);
}

// ------------------------------------------------------------------ WAV in and out

function stats(channels) {
  let peak = 0, sum = 0, n = 0;
  for (const ch of channels) {
    for (let i = 0; i < ch.length; i++) {
      const v = ch[i], a = Math.abs(v);
      if (a > peak) peak = a;
      sum += v * v;
    }
    n += ch.length;
  }
  return { peak: +peak.toFixed(4), rms: +Math.sqrt(n ? sum / n : 0).toFixed(4) };
}

function readWav16(path) {
  const b = fs.readFileSync(path);
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw new Error('not a WAV file');
  let off = 12, fmt = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4), size = b.readUInt32LE(off + 4), body = off + 8;
    if (id === 'fmt ') fmt = { channels: b.readUInt16LE(body + 2), rate: b.readUInt32LE(body + 4), bits: b.readUInt16LE(body + 14) };
    if (id === 'data') {
      if (!fmt || fmt.bits !== 16) throw new Error('only 16-bit PCM WAV');
      const frames = Math.floor(Math.min(size, b.length - body) / (2 * fmt.channels));
      const chans = Array.from({ length: fmt.channels }, () => new Float32Array(frames));
      for (let i = 0; i < frames; i++)
        for (let c = 0; c < fmt.channels; c++) chans[c][i] = b.readInt16LE(body + 2 * (i * fmt.channels + c)) / 32767;
      return { rate: fmt.rate, channels: chans };
    }
    off = body + size + (size & 1);
  }
  throw new Error('no data chunk');
}

function writeWav16(path, channels, rate) {
  const nc = channels.length, frames = channels[0].length, bytes = frames * nc * 2;
  const b = Buffer.alloc(44 + bytes);
  b.write('RIFF', 0, 'ascii'); b.writeUInt32LE(36 + bytes, 4); b.write('WAVE', 8, 'ascii');
  b.write('fmt ', 12, 'ascii'); b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(nc, 22);
  b.writeUInt32LE(rate, 24); b.writeUInt32LE(rate * nc * 2, 28); b.writeUInt16LE(nc * 2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36, 'ascii'); b.writeUInt32LE(bytes, 40);
  let o = 44;
  for (let i = 0; i < frames; i++)
    for (let c = 0; c < nc; c++, o += 2) {
      const v = Math.max(-1, Math.min(1, channels[c][i])) * 32767; // as tutti: clamp, scale, round
      b.writeInt16LE(Math.round(v), o);
    }
  fs.writeFileSync(path, b);
}

if (statsOf) {
  const w = readWav16(statsOf);
  process.stdout.write(JSON.stringify({ file: statsOf, ...stats(w.channels) }) + '\n');
  process.exit(0);
}
if (!piecePath) usage('no piece given');

// ------------------------------------------------------------------ the piece -> notes
// A transcription of src/audio/params.c's expansion, for the features the benchmark
// piece uses (everything but the random patterns and loaded samples).

const SCALES = {
  'major': [0, 2, 4, 5, 7, 9, 11], 'minor': [0, 2, 3, 5, 7, 8, 10],
  'harmonic minor': [0, 2, 3, 5, 7, 8, 11], 'melodic minor': [0, 2, 3, 5, 7, 9, 11],
  'dorian': [0, 2, 3, 5, 7, 9, 10], 'phrygian': [0, 1, 3, 5, 7, 8, 10], 'lydian': [0, 2, 4, 6, 7, 9, 11],
  'mixolydian': [0, 2, 4, 5, 7, 9, 10], 'locrian': [0, 1, 3, 5, 6, 8, 10],
  'major pentatonic': [0, 2, 4, 7, 9], 'minor pentatonic': [0, 3, 5, 7, 10], 'blues': [0, 3, 5, 6, 7, 10],
  'whole tone': [0, 2, 4, 6, 8, 10], 'chromatic': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
};
const DRUMS = ['kick', 'snare', 'hat', 'openhat', 'clap'];

function noteMidi(s) { // "C4", "F#3", "Bb5", "c-1"
  const m = /^([A-Ga-g])([#sb]?)(-?)(\d)$/.exec(s);
  if (!m) throw new Error(`not a note name: ${JSON.stringify(s)}`);
  let pc = { A: 9, B: 11, C: 0, D: 2, E: 4, F: 5, G: 7 }[m[1].toUpperCase()];
  if (m[2] === '#' || m[2] === 's') pc++; else if (m[2] === 'b') pc--;
  return (Number(m[4]) * (m[3] ? -1 : 1) + 1) * 12 + pc;
}

function beats(v) { // a number of beats, or "4n", "8n", "16n", "8t", "4n."
  if (typeof v === 'number') return v;
  const m = /^(\d+)(n|t|n\.)$/.exec(v);
  if (!m) throw new Error(`not a beat value: ${JSON.stringify(v)}`);
  const b = 4 / Number(m[1]);
  return m[2] === 'n' ? b : m[2] === 't' ? b * 2 / 3 : b * 1.5;
}

function applyScale(obj, scale) { // rootNote moves the scale; "scale" replaces it
  if (obj.rootNote !== undefined) {
    const shift = noteMidi(obj.rootNote) - scale[0];
    scale = scale.map((n) => n + shift);
  }
  if (obj.scale === undefined) return scale;
  if (typeof obj.scale === 'string') {
    if (!SCALES[obj.scale]) throw new Error(`unknown scale ${obj.scale}`);
    return SCALES[obj.scale].map((s) => Math.min(127, scale[0] + s));
  }
  return obj.scale.map(noteMidi);
}

function degreeMidi(scale, d) {
  const n = scale.length, oct = Math.floor(d / n);
  return Math.max(0, Math.min(127, scale[d - oct * n] + 12 * oct));
}
const pitch = (v, scale) => (typeof v === 'number' ? degreeMidi(scale, v) : noteMidi(v));

// -> { interval, start, loop, steps: [{ midi: [...], drum, velocity (0..1), length (beats; < 0: same time as the last) }] }
function expandPattern(pat, scale, kind) {
  if (Array.isArray(pat)) pat = { steps: pat };
  pat ??= {};
  let type = kind === 'sampler' ? 'drums' : 'up';
  if (pat.steps && !pat.type) type = 'steps';
  if (pat.grid && !pat.type) type = 'drums';
  if (pat.type) type = pat.type;
  let interval = kind === 'sampler' ? 0.25 : 0.5;
  if (type === 'drums') interval = 1 / Math.trunc(pat.stepsPerBeat ?? 4);
  if (pat.interval !== undefined) interval = beats(pat.interval);
  const length = pat.length !== undefined ? beats(pat.length) : interval;
  const velocity = (pat.velocity ?? 100) / 127;
  const steps = [];
  const step = (o) => steps.push({ midi: [], drum: -1, velocity, length, ...o });
  if (type === 'steps') {
    for (const x of pat.steps) {
      if (x === null || x === 'rest') step({});
      else if (kind === 'sampler' && typeof x === 'string') step({ drum: DRUMS.indexOf(x), midi: [0] });
      else if (typeof x !== 'object') step({ midi: [pitch(x, scale)] });
      else {
        const o = {};
        if (x.velocity !== undefined) o.velocity = x.velocity / 127;
        if (x.length !== undefined) o.length = beats(x.length);
        const one = x.note ?? x.degree;
        o.midi = one !== undefined ? [pitch(one, scale)] : x.notes.map((n) => pitch(n, scale));
        step(o);
      }
    }
  } else if (type === 'drums') {
    const grid = pat.grid ?? { kick: 'x.......x.......', snare: '....x.......x...', hat: 'x.x.x.x.x.x.x.x.' };
    const len = Math.max(...Object.values(grid).map((r) => r.length));
    for (let i = 0; i < len; i++) {
      let first = true;
      for (const [name, row] of Object.entries(grid)) {
        const c = row[i % row.length];
        if (c !== 'x' && c !== 'X') continue;
        step({ drum: DRUMS.indexOf(name), midi: [0], velocity: c === 'X' ? 1 : velocity, length: first ? length : -length });
        first = false;
      }
      if (first) step({}); // a rest
    }
  } else if (['up', 'down', 'upDown', 'downUp'].includes(type)) {
    let vals;
    if (pat.notes) vals = pat.notes.map((n) => pitch(n, scale));
    else {
      vals = [];
      for (let o = 0; o < Math.trunc(pat.octaves ?? 1); o++) for (const n of scale) vals.push(Math.min(127, n + 12 * o));
    }
    const n = vals.length, order = [];
    if (type === 'up') for (let i = 0; i < n; i++) order.push(i);
    else if (type === 'down') for (let i = n - 1; i >= 0; i--) order.push(i);
    else if (type === 'upDown') {
      for (let i = 0; i < n; i++) order.push(i);
      for (let i = n - 2; i >= 1; i--) order.push(i);
    } else {
      for (let i = n - 1; i >= 0; i--) order.push(i);
      for (let i = 1; i <= n - 2; i++) order.push(i);
    }
    for (const i of order) step({ midi: [vals[i]] });
  } else {
    throw new Error(`pattern type ${type} is not supported by this benchmark script`);
  }
  return { interval, start: pat.start !== undefined ? beats(pat.start) : 0, loop: pat.loop ?? true, steps };
}

// The notes of one track: [{ time (s), length (s), midi, drum, velocity }], as parse_track lays them.
function trackNotes(pattern, tempo, duration) {
  const beat = 60 / tempo, notes = [];
  let at = pattern.start;
  for (let i = 0; ; i++) {
    if (i === pattern.steps.length) {
      if (!pattern.loop) break;
      i = 0;
    }
    const st = pattern.steps[i], same = st.length < 0, when = same ? at - pattern.interval : at;
    if (when * beat >= duration) break;
    for (const midi of st.midi) notes.push({ time: when * beat, length: Math.abs(st.length) * beat, midi, drum: st.drum, velocity: st.velocity });
    if (!same) at += pattern.interval;
  }
  return notes;
}

const piece = JSON.parse(fs.readFileSync(piecePath, 'utf8'));
const params = piece.musicalParams ?? piece;
const tempo = params.tempo ?? 120;
const duration = durationOverride ?? params.duration ?? 5;
const rate = params.sampleRate ?? 48000;
const nch = params.channels ?? 2;
let baseScale = [60];
baseScale = params.scale === undefined ? applyScale({ scale: 'major' }, applyScale({ rootNote: params.rootNote }, baseScale))
                                       : applyScale(params, baseScale);
const trackDefs = params.tracks ?? [params];
const tracks = trackDefs.map((t) => {
  const kind = t.instrumentType ?? 'synth';
  const scale = applyScale(t, baseScale);
  const notes = trackNotes(expandPattern(t.pattern, scale, kind), tempo, duration);
  return { def: t, kind, notes };
});
const noteCount = tracks.reduce((s, t) => s + t.notes.length, 0);

// ------------------------------------------------------------------ Tone.js

// node-web-audio-api's classes as browser globals, before Tone is imported.
Object.assign(globalThis, webaudio);
globalThis.window ??= {};
for (const k of Object.keys(webaudio)) if (k !== 'mediaDevices') globalThis.window[k] = webaudio[k];
const Tone = await import('tone');
// Keep Tone from ever opening a realtime AudioContext (Tone.Offline asks for the current
// context to restore it afterwards): a small offline context stands as the default.
Tone.setContext(new Tone.OfflineContext(1, 0.1, rate));

const hz = (midi) => 440 * Math.pow(2, (midi - 69) / 12);
const db = (g) => 20 * Math.log10(g);
const qDb = (q) => Math.max(0, db(q)); // linear Q -> Web Audio's lowpass/highpass Q (dB; Tone: >= 0)
const VOICE_DB = db(0.5); // tutti: a voice at velocity 1 peaks at 0.5
// A Tone.Filter like tutti's filter options (Web Audio lowpass/highpass Q is in dB).
function filterFor(f) {
  const type = f.type ?? 'lowpass', q = f.Q ?? 1;
  if (type === 'none') return null;
  if (type === 'onepole') return new Tone.OnePoleFilter(f.frequency ?? 1000, 'lowpass');
  return new Tone.Filter({ type, frequency: f.frequency ?? 1000, rolloff: -12,
                           Q: type === 'bandpass' ? q : qDb(q) });
}
const envOf = (e, dflt) => ({ ...dflt, ...(e ?? {}) });
const minRamp = (e) => ({ ...e, attack: Math.max(e.attack, 0.001), release: Math.max(e.release, 0.001) });

// Builds one track's instruments, connected to `out` (the track's panner); returns a
// function that schedules one note.
function buildTrack(t, out) {
  const o = t.def.instrumentOptions ?? {};
  const volDb = o.volume ?? t.def.volume ?? 0;
  const chain = (node) => {
    const f = o.filter ? filterFor(o.filter) : null;
    if (f) node.chain(f, out); else node.connect(out);
    return node;
  };
  const synthOpts = () => ({
    oscillator: { type: o.oscillator?.type ?? 'triangle' },
    envelope: minRamp(envOf(o.envelope, { attack: 0.005, decay: 0.1, sustain: 0.3, release: 1 })),
  });
  const fmOpts = () => ({
    oscillator: { type: o.oscillator?.type ?? 'sine' },
    envelope: minRamp(envOf(o.envelope, { attack: 0.01, decay: 0.01, sustain: 1, release: 0.5 })),
    modulation: { type: o.modulation?.type ?? 'square' },
    modulationEnvelope: minRamp(envOf(o.modulationEnvelope, { attack: 0.5, decay: 0, sustain: 1, release: 0.5 })),
    harmonicity: o.harmonicity ?? 3,
    modulationIndex: o.modulationIndex ?? 10,
  });
  if (t.kind === 'synth' || t.kind === 'fmSynth') {
    const inst = chain(t.kind === 'synth' ? new Tone.Synth({ ...synthOpts(), volume: volDb + VOICE_DB })
                                          : new Tone.FMSynth({ ...fmOpts(), volume: volDb + VOICE_DB }));
    return (n, time) => inst.triggerAttackRelease(hz(n.midi), n.length, time, n.velocity);
  }
  if (t.kind === 'polySynth') {
    const fm = o.voice === 'fmSynth';
    const inst = chain(new Tone.PolySynth({ voice: fm ? Tone.FMSynth : Tone.Synth, maxPolyphony: o.maxPolyphony ?? 8,
                                            options: fm ? fmOpts() : synthOpts(), volume: volDb + VOICE_DB }));
    // chords: the notes of one step are one call, as a Tone user writes them
    return { chord: true, play: (ns, time) => inst.triggerAttackRelease(ns.map((n) => hz(n.midi)), ns[0].length, time, ns[0].velocity) };
  }
  if (t.kind === 'sampler') {
    // Levels of tutti's kit (src/audio/synth.c KIT_*), times the 0.5 voice level.
    const lvl = (g) => volDb + VOICE_DB + db(g);
    const perc = (decay) => ({ attack: 0.001, decay, sustain: 0, release: 0.001 });
    const kick = new Tone.MembraneSynth({ pitchDecay: 0.08, octaves: Math.log2(3), oscillator: { type: 'sine' },
                                          envelope: perc(0.4), volume: lvl(1) }).connect(out);
    const snareBp = new Tone.Filter({ type: 'bandpass', frequency: 1500, Q: 0.8 }).connect(out);
    const snare = new Tone.NoiseSynth({ envelope: perc(0.2), volume: lvl(1.3) }).connect(snareBp);
    const snareTone = new Tone.Synth({ oscillator: { type: 'sine' }, envelope: perc(0.12), volume: lvl(0.45) }).connect(out);
    const hatHp = new Tone.Filter({ type: 'highpass', frequency: 7000, Q: qDb(0.7) }).connect(out);
    const hat = new Tone.NoiseSynth({ envelope: perc(0.05), volume: lvl(0.85) }).connect(hatHp);
    const openhat = new Tone.NoiseSynth({ envelope: perc(0.3), volume: lvl(0.85) }).connect(hatHp);
    const clapBp = new Tone.Filter({ type: 'bandpass', frequency: 1200, Q: 1.2 }).connect(out);
    // one NoiseSynth per burst: retriggering one 10 ms apart made clicks (node-web-audio-api)
    const claps = [0, 1, 2].map(() => new Tone.NoiseSynth({ envelope: perc(0.01), volume: lvl(2.0) }).connect(clapBp));
    const clapTail = new Tone.NoiseSynth({ envelope: perc(0.15), volume: lvl(2.0 * 0.7) }).connect(clapBp);
    return (n, t0) => {
      const v = n.velocity;
      switch (DRUMS[n.drum]) {
        case 'kick': kick.triggerAttackRelease(50, 0.4, t0, v); break;
        case 'snare': snare.triggerAttackRelease(0.2, t0, v); snareTone.triggerAttackRelease(180, 0.12, t0, v); break;
        case 'hat': hat.triggerAttackRelease(0.05, t0, v); break;
        case 'openhat': openhat.triggerAttackRelease(0.3, t0, v); break;
        case 'clap':
          claps.forEach((c, k) => c.triggerAttackRelease(0.01, t0 + 0.01 * k, v));
          clapTail.triggerAttackRelease(0.15, t0 + 0.03, v);
          break;
        default: break; // loaded samples: not in this benchmark
      }
    };
  }
  throw new Error(`instrumentType ${t.kind} is not supported`);
}

let setupSeconds = 0, nativeSeconds = 0;
const t0 = performance.now();
const buffer = await Tone.Offline(async (ctx) => {
  const fx = params.effects ?? {};
  const bus = new Tone.Gain(1);
  const chainFx = [];
  if (fx.delay && (fx.delay.wet ?? 0.25) > 0) {
    const dt = typeof fx.delay.time === 'string' ? beats(fx.delay.time) * 60 / tempo : (fx.delay.time ?? 0.375);
    chainFx.push(new Tone.FeedbackDelay({ delayTime: dt, maxDelay: Math.max(1, dt), feedback: fx.delay.feedback ?? 0.3,
                                          wet: fx.delay.wet ?? 0.25 }));
  }
  let reverb = null;
  if (fx.reverb && (fx.reverb.wet ?? 0.25) > 0) {
    reverb = new Tone.Reverb({ decay: fx.reverb.decay ?? 1.5, preDelay: 0, wet: fx.reverb.wet ?? 0.25 });
    chainFx.push(reverb);
  }
  bus.chain(...chainFx, ctx.destination);
  const transport = ctx.transport;
  transport.bpm.value = tempo; // so that the piece's beats are whole Transport ticks
  for (const t of tracks) {
    const pan = new Tone.Panner(nch === 2 ? (t.def.pan ?? 0) : 0).connect(bus);
    const play = buildTrack(t, pan);
    if (play.chord) {
      // the notes of one step share a time: one PolySynth call per chord
      for (let i = 0; i < t.notes.length;) {
        let j = i + 1;
        while (j < t.notes.length && t.notes[j].time === t.notes[i].time) j++;
        const chord = t.notes.slice(i, j);
        transport.schedule((time) => play.play(chord, time), chord[0].time);
        i = j;
      }
    } else {
      for (const n of t.notes) transport.schedule((time) => play(n, time), n.time);
    }
  }
  transport.start(0);
  if (reverb) await reverb.ready; // the impulse response, rendered in its own OfflineContext
  setupSeconds = (performance.now() - t0) / 1000;
  // After the setup Tone steps its clock through the piece in JS (a "tick" per 128 frames),
  // then calls the OfflineAudioContext's startRendering: timed apart as native_seconds.
  const raw = ctx.rawContext, start = raw.startRendering.bind(raw);
  raw.startRendering = () => {
    const n0 = performance.now();
    return start().then((b) => { nativeSeconds = (performance.now() - n0) / 1000; return b; });
  };
}, duration, nch, rate);
const seconds = (performance.now() - t0) / 1000;

const chans = [];
for (let c = 0; c < buffer.numberOfChannels; c++) chans.push(buffer.getChannelData(c));
const audioSeconds = buffer.length / buffer.sampleRate;
const st = stats(chans);
if (outPath) writeWav16(outPath, chans, buffer.sampleRate);

process.stderr.write(`tone render: ${audioSeconds.toFixed(2)} s of audio in ${seconds.toFixed(3)} s ` +
                     `(${(audioSeconds / seconds).toFixed(1)}x real time; setup ${setupSeconds.toFixed(3)} s, ` +
                     `Tone's clock ${(seconds - setupSeconds - nativeSeconds).toFixed(3)} s, ` +
                     `node-web-audio-api's render ${nativeSeconds.toFixed(3)} s), ` +
                     `${tracks.length} tracks, ${noteCount} notes` + (outPath ? ` -> ${outPath}` : '') + '\n');
if (json) {
  process.stdout.write(JSON.stringify({
    engine: 'tone', tone_version: Tone.version, seconds: +seconds.toFixed(4), setup_seconds: +setupSeconds.toFixed(4),
    native_seconds: +nativeSeconds.toFixed(4),
    audio_seconds: audioSeconds, x_real_time: +(audioSeconds / seconds).toFixed(1), notes: noteCount,
    notes_per_track: tracks.map((t) => t.notes.length), sample_rate: buffer.sampleRate, channels: buffer.numberOfChannels,
    ...st,
  }) + '\n');
}
// node-web-audio-api keeps native threads; nothing else is pending.
process.exit(0);
