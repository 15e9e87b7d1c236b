// Browser test of the demo page (web/index.html) against the real tutti binary.
// Chromium loads the page through a small TCP proxy (node:net) so the test can cut the
// browser's connections while messages are being published, then checks that the page
// shows every message exactly once, marks the replayed ones as recovered, and counts
// reconnects and heartbeats.
//
//   cd tests && TUTTI_BIN=../build/asan/tutti node --test browser/demo.test.mjs
//   CHROMIUM=/path/to/chromium            (default /usr/bin/chromium)
//   DEMO_SCREENSHOT=/tmp/demo.png         (optional: full-page screenshot at the end)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti, publish, waitFor } from '../lib/harness.mjs';
import { sleep, launchChromium, openPage, startProxy, screenshotFromEnv, closeAll, demoPageReaders, cutDuringBurst } from '../lib/browser.mjs';

const KEY = 'demo-test-key';
const AUTH = { authorization: `Bearer ${KEY}` };
const CHANNEL = `demo-test:browser/${process.pid}-${Date.now()}`; // ':' and '/' on purpose
// --sse-retry: the `retry:` hint, so the browser reconnects quickly after a cut;
// --drain-timeout: a quick restart in the server-restart test.
const SERVER_ARGS = ['--heartbeat-interval', '0.3', '--api-key', KEY, '--sse-retry', '500', '--drain-timeout', '1'];

let server;
let proxy;
let browser;
let page;
const pageErrors = [];

const { text, num, messages } = demoPageReaders(() => page);

before(async () => {
  server = await startTutti(SERVER_ARGS);
  proxy = await startProxy(server.port);
  browser = await launchChromium();
  page = await openPage(browser, `http://127.0.0.1:${proxy.port}/`, { errors: pageErrors });
});

after(async () => {
  if (page) await screenshotFromEnv(page, 'DEMO_SCREENSHOT', { ignoreErrors: true });
  await closeAll({ browser, proxy, server });
});

test('page loads with the documented controls', { timeout: 10000 }, async () => {
  for (const id of ['channel', 'connect', 'disconnect', 'status', 'log', 'count-messages',
    'count-heartbeats', 'count-recovered', 'event', 'data', 'publish', 'publish-result', 'api-key']) {
    assert.equal(await page.locator(`#${id}`).count(), 1, `#${id}`);
  }
  assert.equal(await page.inputValue('#channel'), 'demo');
  assert.equal(await text('#status'), 'closed');
});

test('rejects a bad channel name without connecting', { timeout: 10000 }, async () => {
  await page.fill('#channel', 'no spaces allowed');
  await page.click('#connect');
  assert.equal(await page.getAttribute('#channel', 'aria-invalid'), 'true');
  assert.equal(await text('#status'), 'closed');
});

test('connects, and heartbeats arrive', { timeout: 15000 }, async () => {
  await page.fill('#channel', CHANNEL);
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="open"]', { timeout: 5000 });
  await page.waitForSelector('#log li[data-type="connected"]', { timeout: 5000 });
  assert.equal(await text('#status'), 'open');
  await waitFor(async () => (await num('#count-heartbeats')) >= 3, 5000, 'three heartbeats');
});

test('publishes from the page box', { timeout: 15000 }, async () => {
  // Invalid JSON never leaves the page.
  await page.fill('#event', 'note');
  await page.fill('#data', '{"note": "E4",');
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-state="error"]');
  assert.match(await text('#publish-result'), /not valid JSON/);

  // No API key: the server's error code is shown.
  const data = '{"note": "E4",  "seq": "page-1"}'; // odd spacing: must arrive byte for byte
  await page.fill('#data', data);
  await page.click('#publish');
  await waitFor(async () => /UNAUTHORIZED/.test(await text('#publish-result')), 5000, '401 shown');
  assert.equal(await page.getAttribute('#publish-result', 'data-state'), 'error');
  assert.match(await text('#publish-result'), /^401 UNAUTHORIZED/);

  await page.fill('#api-key', KEY);
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-state="ok"]', { timeout: 5000 });
  const offset = Number(await page.getAttribute('#publish-result', 'data-offset'));
  assert.ok(offset >= 1, 'offset shown');
  assert.match(await text('#publish-result'), new RegExp(`offset ${offset}\\b`));

  await waitFor(async () => (await messages()).some((m) => m.data === data), 5000, 'page message in log');
  const m = (await messages()).find((x) => x.data === data);
  assert.equal(m.event, 'note');
  assert.equal(m.offset, offset);
  assert.match(m.id, new RegExp(`^[^:]+:${offset}$`));
  assert.equal(await num('#count-messages'), 1);
});

test('shows a message published from outside', { timeout: 15000 }, async () => {
  const before = await num('#count-messages');
  const r = await publish(server.url, CHANNEL, { seq: 'ext-1' }, { headers: AUTH });
  await waitFor(async () => (await messages()).some((m) => m.data === '{"seq":"ext-1"}'), 5000, 'outside message');
  const m = (await messages()).find((x) => x.data === '{"seq":"ext-1"}');
  assert.equal(m.event, 'message');
  assert.equal(m.id, r.id);
  assert.equal(await num('#count-messages'), before + 1);
});

test('survives cut connections: every message exactly once, gap recovered', { timeout: 40000 }, async () => {
  const base = await num('#count-messages');
  const reconnects0 = await num('#count-reconnects');
  const recovered0 = await num('#count-recovered');
  const N = 60;
  const pub = (i) => publish(server.url, CHANNEL, { seq: i }, { headers: AUTH });
  const seqOf = (m) => { try { return JSON.parse(m.data).seq; } catch { return undefined; } };

  await cutDuringBurst({ page, proxy, pub, num, n: N, base, reconnects0, what: 'SSE connection' });

  const all = (await messages()).filter((m) => m.event === 'message' && typeof seqOf(m) === 'number');
  const seqs = all.map(seqOf).sort((a, b) => a - b);
  assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i + 1), 'each message exactly once');
  assert.equal(await num('#count-messages'), base + N);
  assert.equal(await num('#count-duplicates'), 0);
  assert.equal(await num('#count-skipped'), 0);
  // Log is newest first: offsets strictly decrease down the list.
  const offs = all.map((m) => m.offset);
  for (let i = 1; i < offs.length; i++) assert.ok(offs[i] < offs[i - 1], 'log order');

  // 11..30 were published while the page was away: the server replayed them.
  const rec = new Set(all.filter((m) => m.recovered).map(seqOf));
  for (let i = 11; i <= 30; i++) assert.ok(rec.has(i), `message ${i} marked recovered`);
  for (let i = 1; i <= 10; i++) assert.ok(!rec.has(i), `message ${i} was live`);
  const recovered = (await num('#count-recovered')) - recovered0;
  assert.equal(recovered, rec.size);
  assert.ok(recovered >= 20 && recovered <= 50, `recovered count ${recovered}`);

  const reconnectEntries = await page.locator('#log li[data-type="connected"].ok .tag.reconnect, #log li[data-type="connected"] .tag.reconnect').count();
  assert.ok(reconnectEntries >= 2, 'reconnects are shown in the log');
  assert.equal(await text('#status'), 'open');
});

test('history expired while away: recovery_incomplete is shown, held messages replayed', { timeout: 20000 }, async () => {
  assert.equal(await page.locator('#alert').isVisible(), false);
  const base = await num('#count-messages');
  const recovered0 = await num('#count-recovered');
  const reconnects0 = await num('#count-reconnects');
  // history_size is 100 (default): 110 messages while away, so the first 10 are gone.
  proxy.block(true);
  proxy.cut();
  await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 5000 });
  let first;
  for (let i = 1; i <= 110; i++) {
    const r = await publish(server.url, CHANNEL, { lost: i }, { headers: AUTH });
    if (i === 1) first = r.offset;
  }
  proxy.block(false);
  await waitFor(async () => (await num('#count-reconnects')) > reconnects0, 10000, 'reconnect');
  await page.waitForSelector('#alert', { state: 'visible', timeout: 5000 });
  const alertText = await text('#alert');
  assert.match(alertText, /history_expired/);
  assert.match(alertText, new RegExp(`Lost: 10 messages \\(offsets ${first}–${first + 9}\\)`));
  assert.equal(await page.locator('#log li[data-type="recovery_incomplete"]').count(), 1);
  await waitFor(async () => (await num('#count-messages')) >= base + 100, 5000, 'the 100 held messages');
  await sleep(200);
  assert.equal(await num('#count-messages'), base + 100);
  const got = (await messages()).map((m) => { try { return JSON.parse(m.data).lost; } catch { return undefined; } })
    .filter((x) => x !== undefined).sort((a, b) => a - b);
  assert.deepEqual(got, Array.from({ length: 100 }, (_, i) => i + 11));
  assert.equal((await num('#count-recovered')) - recovered0, 100);
  assert.equal(await num('#count-duplicates'), 0);
  assert.equal(await num('#count-skipped'), 0);
  await page.click('#alert-close');
});

test('server restart: shutdown shown, then recovery_incomplete epoch_changed', { timeout: 20000 }, async () => {
  const reconnects0 = await num('#count-reconnects');
  const recovered0 = await num('#count-recovered');
  const code = await server.stop();
  assert.equal(code, 0, 'first tutti exit code\n' + server.stderr.slice(-4000));
  await page.waitForSelector('#log li[data-type="shutdown"]', { state: 'attached', timeout: 5000 });
  await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 5000 });
  server = await startTutti(SERVER_ARGS); // memory engine: the channel comes back with a new epoch
  proxy.target = server.port;
  const r = await publish(server.url, CHANNEL, { after: 'restart' }, { headers: AUTH });
  await waitFor(async () => (await num('#count-reconnects')) > reconnects0, 15000, 'reconnect to the new server');
  await page.waitForSelector('#alert', { state: 'visible', timeout: 5000 });
  assert.match(await text('#alert'), /epoch_changed/);
  await waitFor(async () => (await messages()).some((m) => m.id === r.id), 5000, 'message from the new server');
  const m = (await messages()).find((x) => x.id === r.id);
  assert.equal(m.data, '{"after":"restart"}');
  assert.ok(m.recovered, 'published before the page was back: recovered');
  assert.equal((await num('#count-recovered')) - recovered0, 1);
  assert.equal(await num('#count-duplicates'), 0);
  assert.equal(await text('#status'), 'open');
});

test('disconnect closes the stream', { timeout: 10000 }, async () => {
  await page.click('#disconnect');
  assert.equal(await text('#status'), 'closed');
  const n = await num('#count-messages');
  await publish(server.url, CHANNEL, { seq: 'after-close' }, { headers: AUTH });
  await sleep(300);
  assert.equal(await num('#count-messages'), n);
  assert.deepEqual(pageErrors, [], 'no JavaScript errors on the page');
});
