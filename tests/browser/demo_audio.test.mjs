// Browser test of the demo page's render panel (web/index.html) against the real tutti
// binary: the page POSTs MusicalParameters to /api/channels/{channel}/render, receives the
// result on its own subscription (SSE or WebSocket, in the encoding chosen on the page),
// turns it into a Web Audio AudioBuffer, plays it and draws its waveform. The page reports
// what it played in window.tuttiAudio.played (peak/rms computed from the AudioBuffer itself)
// and marks the canvas with data-render-id.
//
//   cd tests && TUTTI_BIN=../build/dev/tutti TUTTI_WEB_ROOT=../web node --test browser/demo_audio.test.mjs
//   CHROMIUM=/path/to/chromium                  (default /usr/bin/chromium)
//   DEMO_AUDIO_SCREENSHOT=/tmp/demo-audio.png   (optional: full-page screenshot at the end)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti } from '../lib/harness.mjs';
import { launchChromium, openPage, screenshotFromEnv, closeAll, demoPageReaders } from '../lib/browser.mjs';

const KEY = 'demo-audio-key';
const CHANNEL = `demo-audio:browser/${process.pid}-${Date.now()}`; // ':' and '/' on purpose
const SERVER_ARGS = ['--api-key', KEY];
const RATE = 48000;   // --render-sample-rate default; Opus decodes at 48 kHz too
const CHANNELS = 2;   // --render-channels default

let server;
let browser;
let page;
const pageErrors = [];
const { text, num } = demoPageReaders(() => page);

before(async () => {
  server = await startTutti(SERVER_ARGS);
  // Headless Chromium must be allowed to start an AudioContext without a user gesture.
  browser = await launchChromium({ args: ['--autoplay-policy=no-user-gesture-required'] });
  page = await openPage(browser, `${server.url}/`, { errors: pageErrors });
});

after(async () => {
  if (page) await screenshotFromEnv(page, 'DEMO_AUDIO_SCREENSHOT', { ignoreErrors: true });
  await closeAll({ browser, server });
});

// Ink on the waveform canvas, read back in the page: columns with any non-transparent pixel,
// and the tallest column (a flat line of silence is 1-2 px tall).
function canvasInk() {
  return page.evaluate(() => {
    const c = document.getElementById('waveform');
    const { width: w, height: h } = c;
    const px = c.getContext('2d').getImageData(0, 0, w, h).data;
    let columns = 0, tallest = 0, inked = 0;
    for (let x = 0; x < w; x++) {
      let top = -1, bottom = -1;
      for (let y = 0; y < h; y++) {
        if (px[(y * w + x) * 4 + 3] > 0) { inked++; if (top < 0) top = y; bottom = y; }
      }
      if (top >= 0) { columns++; tallest = Math.max(tallest, bottom - top + 1); }
    }
    return { width: w, height: h, columns, tallest, inked };
  });
}

const played = () => page.evaluate(() => window.tuttiAudio.played.slice());
const audioErrors = () => page.evaluate(() => window.tuttiAudio.errors.slice());

// The log entries of audio_buffer messages for a render: the metadata the page showed
// (the message's members, audio data summarised) and the tags.
async function audioLogEntries(renderId) {
  const entries = await page.$$eval('#log li[data-type="message"][data-event="audio_buffer"]', (lis) => lis.map((li) => ({
    id: li.dataset.id,
    data: li.querySelector('.data').textContent,
    tags: [...li.querySelectorAll('.meta .tag')].map((t) => t.textContent),
  })));
  return entries.map((e) => ({ ...e, meta: JSON.parse(e.data.slice(0, e.data.lastIndexOf('}') + 1)) }))
    .filter((e) => e.meta.render_id === renderId);
}

async function connectWith({ transport, encoding }) {
  if (await page.inputValue('#channel') !== CHANNEL) await page.fill('#channel', CHANNEL);
  // Changing the transport or the encoding while connected reconnects by itself.
  await page.selectOption('#transport', transport);
  await page.selectOption('#render-encoding', encoding);
  if (await page.isDisabled('#disconnect')) await page.click('#connect'); // not connected yet
  await page.waitForFunction(([t, e]) => {
    const s = document.getElementById('status');
    if (s.dataset.state !== 'open') return false;
    if (t === 'ws') return document.getElementById('welcome').dataset.state === 'live';
    return true;
  }, [transport, encoding], { timeout: 10000 });
}

// Fills the form, clicks Render, and waits until the page played the result.
async function renderAndPlay({ instrument = 'synth', tempo = '120', duration = '1.5', scale, pattern }) {
  await page.selectOption('#render-instrument', instrument);
  await page.fill('#render-tempo', tempo);
  await page.fill('#render-duration', duration);
  if (scale) await page.selectOption('#render-scale', scale);
  if (pattern) await page.selectOption('#render-pattern', pattern);
  const errorsBefore = (await audioErrors()).length;
  const answer = page.waitForResponse((r) => r.request().method() === 'POST' && /\/api\/channels\/.+\/render$/.test(r.url()));
  await page.click('#render');
  const res = await answer;
  const body = await res.json();
  assert.equal(res.status(), 202, JSON.stringify(body));
  assert.equal(body.status, 'queued');
  assert.equal(body.channel, CHANNEL);
  const jobId = body.job_id;
  assert.match(jobId, /^[a-z0-9]+$/);
  // The job id is shown at once; the page then follows the job and the audio.
  await page.waitForSelector(`#render-result[data-job-id="${jobId}"]`, { timeout: 5000 });
  assert.match(await text('#render-result'), new RegExp(`Job ${jobId}`));
  // Played, or the page reported a problem (then fail at once, with the page's words).
  let waitError = '';
  await page.waitForFunction(([id, n]) => window.tuttiAudio.played.some((p) => p.render_id === id) || window.tuttiAudio.errors.length > n,
    [jobId, errorsBefore], { timeout: 30000 }).catch((err) => { waitError = err.message; });
  if (!(await played()).some((p) => p.render_id === jobId)) {
    throw new Error(`render ${jobId} was not played${waitError ? ': ' + waitError : ''}\n` +
      `page audio errors: ${JSON.stringify((await audioErrors()).slice(errorsBefore))}\nrender result: ${await text('#render-result')}`);
  }
  const entries = (await played()).filter((p) => p.render_id === jobId);
  assert.equal(entries.length, 1, 'played once');
  const entry = entries[0];
  const logs = await audioLogEntries(jobId);
  assert.equal(logs.length, 1, 'one audio_buffer message for the render in the log');
  const log = logs[0];
  assert.ok(log.tags.includes('played'), `log entry tagged played (${log.tags})`);

  // The status line says it was played.
  await page.waitForSelector('#render-result[data-status="played"]', { timeout: 5000 });
  assert.match(await text('#render-result'), new RegExp(`Job ${jobId}: done, playing ${entry.encoding}`));

  // Not silence, from the AudioBuffer's own data.
  assert.ok(entry.peak > 0.01 && entry.peak <= 1.0001, `peak ${entry.peak}`);
  assert.ok(entry.rms > 0.001 && entry.rms <= entry.peak, `rms ${entry.rms}`);
  assert.equal(entry.numberOfChannels, log.meta.numberOfChannels, 'channels as in the message');
  assert.equal(entry.numberOfChannels, CHANNELS);
  assert.equal(log.meta.sampleRate, RATE);
  assert.equal(log.meta.length, Math.round(Number(duration) * RATE), 'length in the message');

  // The waveform drawn is this buffer's, and it is a waveform (not blank, not a flat line).
  assert.equal(await page.getAttribute('#waveform', 'data-render-id'), jobId);
  assert.equal(await page.getAttribute('#waveform', 'data-encoding'), entry.encoding);
  const ink = await canvasInk();
  assert.ok(ink.columns >= ink.width * 0.9, `waveform spans the canvas (${ink.columns}/${ink.width} columns)`);
  assert.ok(ink.tallest >= 4, `waveform has amplitude (${ink.tallest} px)`);
  return { jobId, entry, log, ink };
}

test('the render panel is there, nothing played yet', { timeout: 10000 }, async () => {
  for (const id of ['render-form', 'render-instrument', 'render-tempo', 'render-scale', 'render-root', 'render-pattern',
    'render-duration', 'render-encoding', 'render', 'render-result', 'waveform']) {
    assert.equal(await page.locator(`#${id}`).count(), 1, `#${id}`);
  }
  assert.deepEqual(await page.$$eval('#render-instrument option', (os) => os.map((o) => o.value)),
    ['synth', 'fmSynth', 'polySynth', 'sampler']);
  assert.deepEqual(await page.$$eval('#render-encoding option', (os) => os.map((o) => o.value)),
    ['opus', 'pcm16', 'json', 'json16']);
  assert.equal(await page.inputValue('#render-encoding'), 'opus');
  const scales = await page.$$eval('#render-scale option', (os) => os.map((o) => o.value));
  for (const s of ['major', 'minor', 'major pentatonic', 'minor pentatonic', 'blues', 'dorian']) assert.ok(scales.includes(s), s);
  assert.deepEqual(await played(), []);
  assert.equal(await page.getAttribute('#waveform', 'data-render-id'), null);
  const ink = await canvasInk();
  assert.equal(ink.inked, 0, 'blank canvas before anything is played');
  // The sampler plays a drum grid: the scale controls do not apply.
  await page.selectOption('#render-instrument', 'sampler');
  assert.equal(await page.isDisabled('#render-scale'), true);
  await page.selectOption('#render-instrument', 'synth');
  assert.equal(await page.isDisabled('#render-scale'), false);
  await page.fill('#api-key', KEY);
});

test('SSE, opus: render, decode with decodeAudioData, play, draw', { timeout: 45000 }, async () => {
  await connectWith({ transport: 'sse', encoding: 'opus' });
  const { entry, log } = await renderAndPlay({ instrument: 'synth', tempo: '120', duration: '1.5', scale: 'minor pentatonic', pattern: 'up' });
  assert.equal(entry.encoding, 'opus');
  assert.equal(entry.transport, 'sse');
  assert.equal(log.meta.encoding, 'opus');
  assert.equal(log.meta.mimeType, 'audio/ogg; codecs=opus');
  assert.equal(entry.sampleRate, RATE, 'Opus decodes to 48 kHz');
  const want = 1.5 * entry.sampleRate;
  assert.ok(Math.abs(entry.length - want) <= 0.01 * want, `length ${entry.length} within 1% of ${want}`);
  // The render's other three encodings took offsets the page never gets: not "missing".
  assert.equal(await num('#count-skipped'), 0);
  assert.equal(await num('#count-duplicates'), 0);
});

test('WebSocket, pcm16 (binary frames): exact length', { timeout: 45000 }, async () => {
  await connectWith({ transport: 'ws', encoding: 'pcm16' });
  const { entry, log } = await renderAndPlay({ instrument: 'fmSynth', tempo: '120', duration: '1.5', scale: 'dorian', pattern: 'upDown' });
  assert.equal(entry.encoding, 'pcm16');
  assert.equal(entry.transport, 'ws');
  assert.match(log.data, /\+ \d+ audio bytes \(binary frame\)$/, 'came as a binary WebSocket frame');
  assert.equal(log.meta.bytes, 1.5 * RATE * CHANNELS * 2);
  assert.equal(entry.sampleRate, log.meta.sampleRate);
  assert.equal(entry.length, 1.5 * RATE, 'pcm16: exact length');
  assert.equal(entry.length, log.meta.length);
  // Switching resumed after the opus render: the server replayed it as pcm16, but a render
  // is only played once.
  const ids = (await played()).map((p) => p.render_id);
  assert.equal(new Set(ids).size, ids.length, `each render played once (${ids})`);
  assert.equal(await num('#count-skipped'), 0);
  assert.equal(await num('#count-duplicates'), 0);
});

test('SSE, json16: exact length', { timeout: 45000 }, async () => {
  await connectWith({ transport: 'sse', encoding: 'json16' });
  const { entry, log } = await renderAndPlay({ instrument: 'polySynth', tempo: '140', duration: '1.5', scale: 'blues', pattern: 'up' });
  assert.equal(entry.encoding, 'json16');
  assert.equal(entry.transport, 'sse');
  assert.equal(log.meta.compressed, true);
  assert.equal(entry.length, 1.5 * RATE, 'json16: exact length');
  assert.equal(entry.sampleRate, RATE);
  assert.equal(await num('#count-skipped'), 0);
});

test('WebSocket, json (text): the sampler plays the drum grid', { timeout: 45000 }, async () => {
  await connectWith({ transport: 'ws', encoding: 'json' });
  const { entry, log } = await renderAndPlay({ instrument: 'sampler', tempo: '100', duration: '2' });
  assert.equal(entry.encoding, 'json');
  assert.equal(entry.transport, 'ws');
  assert.doesNotMatch(log.data, /binary frame/);
  assert.equal(entry.length, 2 * RATE);
  assert.equal(await num('#count-skipped'), 0);
  assert.equal(await num('#count-duplicates'), 0);
});

test('a bad render shows the BAD_PARAMS message next to the tempo field', { timeout: 15000 }, async () => {
  const before = (await played()).length;
  await page.selectOption('#render-instrument', 'synth');
  await page.fill('#render-tempo', '1000');
  await page.fill('#render-duration', '1.5');
  assert.equal(await page.isHidden('#render-tempo-error'), true);
  const answer = page.waitForResponse((r) => r.request().method() === 'POST' && /\/render$/.test(r.url()));
  await page.click('#render');
  const res = await answer;
  assert.equal(res.status(), 400);
  const body = await res.json();
  assert.equal(body.error.code, 'BAD_PARAMS');
  const field = body.error.fields.find((f) => f.field === 'tempo');
  assert.ok(field, 'the server names the tempo field');
  await page.waitForSelector('#render-tempo-error', { state: 'visible', timeout: 5000 });
  assert.equal(await text('#render-tempo-error'), field.message);
  assert.equal(await page.getAttribute('#render-tempo', 'aria-invalid'), 'true');
  assert.equal(await page.getAttribute('#render-result', 'data-state'), 'error');
  assert.match(await text('#render-result'), /^400 BAD_PARAMS: tempo /);
  assert.equal(await page.getAttribute('#render-result', 'data-job-id'), null);
  // Only the tempo is wrong: no other field is flagged.
  assert.equal(await page.isHidden('#render-duration-error'), true);
  assert.equal(await page.locator('#render-errors li').count(), 0);

  // Fixed, it renders again and the message goes away.
  await page.fill('#render-tempo', '120');
  const ok = page.waitForResponse((r) => r.request().method() === 'POST' && /\/render$/.test(r.url()));
  await page.click('#render');
  assert.equal((await ok).status(), 202);
  assert.equal(await page.isHidden('#render-tempo-error'), true);
  assert.equal(await page.getAttribute('#render-tempo', 'aria-invalid'), null);
  await page.waitForFunction((n) => window.tuttiAudio.played.length > n, before, { timeout: 30000 });
});

test('no JavaScript or audio errors on the page', { timeout: 5000 }, async () => {
  if (process.env.DEMO_AUDIO_DEBUG) console.log(JSON.stringify(await played(), null, 1), await canvasInk());
  assert.deepEqual(await audioErrors(), [], 'no audio errors on the page');
  assert.deepEqual(pageErrors, [], 'no JavaScript errors on the page');
});
