// Audio helpers for the render tests: external tools (ffmpeg, ffprobe, soxi, sox) run on
// buffers or files, the binary WebSocket audio frame, and the encodings' payloads.
import { spawn } from 'node:child_process';

// Runs a program to completion; resolves to { code, signal, stdout (Buffer), stderr (string) }.
// `input` (Buffer or string) is written to its stdin; it is killed (by its pid) after timeoutMs.
export function runTool(cmd, args, { input, timeoutMs = 20000, env } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
    const out = [];
    let stderr = '';
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.stdout.on('data', (d) => out.push(d));
    proc.stderr.on('data', (d) => { stderr += d; });
    proc.stdin.on('error', () => {}); // EPIPE when the tool stops reading early
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr });
    });
    if (input !== undefined) proc.stdin.end(input);
    else proc.stdin.end();
  });
}

// ffprobe's view of a file (path) or of bytes: { streams, format }.
export async function ffprobe(fileOrBytes) {
  const fromStdin = typeof fileOrBytes !== 'string';
  const r = await runTool('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', '-show_format',
    fromStdin ? '-' : fileOrBytes], { input: fromStdin ? fileOrBytes : undefined });
  if (r.code !== 0) throw new Error(`ffprobe failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.toString('utf8'));
}

// Decodes any file ffmpeg reads (bytes) to mono float32 at its own rate: a Float32Array.
export async function decodeMono(bytes) {
  const r = await runTool('ffmpeg', ['-v', 'error', '-i', '-', '-f', 'f32le', '-ac', '1', '-'], { input: bytes });
  if (r.code !== 0) throw new Error(`ffmpeg could not decode ${bytes.length} bytes (${r.code}): ${r.stderr}`);
  const b = r.stdout;
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + (b.length & ~3)));
}

// soxi on a file: { code, stdout, stderr }.
export async function soxi(file) {
  const r = await runTool('soxi', [file]);
  return { code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr };
}

// Whether this sox build reads a format ("opus" is missing from Debian's sox, for one).
let soxFormats;
export async function soxReads(format) {
  if (soxFormats === undefined) {
    const r = await runTool('sox', ['-h']);
    const m = /AUDIO FILE FORMATS:([^\n]*)/.exec(r.stdout.toString('utf8') + r.stderr);
    soxFormats = m ? m[1].trim().split(/\s+/) : [];
  }
  return soxFormats.includes(format);
}

// A WebSocket binary audio message: 4-byte little-endian header length N, N bytes of
// JSON header, then the audio bytes.
export function parseAudioFrame(buf) {
  if (buf.length < 4) throw new Error(`binary frame of ${buf.length} bytes has no header length`);
  const n = buf.readUInt32LE(0);
  if (4 + n > buf.length) throw new Error(`header length ${n} runs past the ${buf.length}-byte frame`);
  const headerText = buf.subarray(4, 4 + n).toString('utf8');
  let header;
  try { header = JSON.parse(headerText); } catch (e) {
    throw new Error(`the binary audio frame's ${n}-byte header is not JSON (${e.message}): ${headerText}`);
  }
  return { headerLength: n, headerText, header, audio: buf.subarray(4 + n) };
}

// Interleaved little-endian int16 bytes -> Int16Array (a copy, aligned).
export function int16s(bytes) {
  const copy = Buffer.from(bytes);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length >> 1);
}

// Planar channels -> interleaved array (frame-major), as pcm16 orders its samples.
export function interleave(channels) {
  const n = channels[0].length;
  const out = new Array(n * channels.length);
  for (let i = 0; i < n; i++) for (let c = 0; c < channels.length; c++) out[i * channels.length + c] = channels[c][i];
  return out;
}

// Largest absolute sample value over planar or flat arrays.
export function peak(arrays) {
  let m = 0;
  for (const a of Array.isArray(arrays[0]) || ArrayBuffer.isView(arrays[0]) ? arrays : [arrays]) {
    for (const v of a) { const x = Math.abs(v); if (x > m) m = x; }
  }
  return m;
}

// The data chunk of a RIFF WAVE file: { format: {channels, sampleRate, bits}, data (Buffer) }.
export function wavData(buf) {
  if (buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') throw new Error('not a RIFF WAVE file');
  let at = 12;
  let format;
  while (at + 8 <= buf.length) {
    const id = buf.toString('latin1', at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    const body = buf.subarray(at + 8, at + 8 + size);
    if (id === 'fmt ') format = { tag: body.readUInt16LE(0), channels: body.readUInt16LE(2), sampleRate: body.readUInt32LE(4), bits: body.readUInt16LE(14) };
    if (id === 'data') return { format, data: body };
    at += 8 + size + (size & 1);
  }
  throw new Error('no data chunk');
}
