// Browser test of the demo page's WebSocket transport (web/index.html) against the real
// tutti binary. As in demo.test.mjs, Chromium loads the page through a small TCP proxy
// (node:net) so the test can cut the browser's WebSocket while messages are being published;
// the page must reconnect by itself, resubscribe with `since` and show every message exactly
// once, in order, marking the replayed ones as recovered.
//
//   cd tests && TUTTI_BIN=../build/asan/tutti node --test browser/demo_ws.test.mjs
//   CHROMIUM=/path/to/chromium            (default /usr/bin/chromium)
//   DEMO_WS_SCREENSHOT=/tmp/demo-ws.png   (optional: full-page screenshot of the live page)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti, publish, waitFor } from '../lib/harness.mjs';
import { sleep, launchChromium, openPage, startProxy, screenshotFromEnv, closeAll, demoPageReaders, cutDuringBurst } from '../lib/browser.mjs';

// `demo:` channels accept publish messages from WebSocket clients (--client-publish demo:).
const CHANNEL = `demo:ws-test/${process.pid}-${Date.now()}`;
const SERVER_ARGS = ['--client-publish', 'demo:', '--drain-timeout', '1'];

let server;
let proxy;
let browser;
let page;
const pageErrors = [];

const { text, num, messages } = demoPageReaders(() => page);
const seqOf = (m) => { try { return JSON.parse(m.data).seq; } catch { return undefined; } };

before(async () => {
  server = await startTutti(SERVER_ARGS);
  proxy = await startProxy(server.port);
  browser = await launchChromium();
  page = await openPage(browser, `http://127.0.0.1:${proxy.port}/`, { errors: pageErrors });
});

after(() => closeAll({ browser, proxy, server }));

test('transport switch: SSE by default, no clock over SSE', { timeout: 10000 }, async () => {
  for (const id of ['transport', 'welcome', 'rtt', 'clock-offset', 'publish-ws']) {
    assert.equal(await page.locator(`#${id}`).count(), 1, `#${id}`);
  }
  assert.equal(await page.inputValue('#transport'), 'sse');
  const values = await page.$$eval('#transport option', (os) => os.map((o) => o.value));
  assert.deepEqual(values, ['sse', 'ws']);
  assert.equal(await text('#rtt'), '—');
  assert.equal(await text('#clock-offset'), '—');
  assert.equal(await page.isDisabled('#publish-ws'), true);
});

test('connects over WebSocket and shows the welcome (permessage-deflate on)', { timeout: 15000 }, async () => {
  await page.selectOption('#transport', 'ws');
  assert.equal(await page.isDisabled('#publish-ws'), false);
  await page.fill('#channel', CHANNEL);
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="open"]', { timeout: 5000 });
  await page.waitForSelector('#welcome[data-state="live"]', { timeout: 5000 });
  assert.ok(proxy.open >= 1, 'the WebSocket goes through the proxy');

  const connId = await text('#welcome-connection');
  assert.match(connId, /^[a-z0-9]+-\d+$/, 'connection id shown');
  assert.equal(await page.getAttribute('#welcome', 'data-connection-id'), connId);
  assert.match(await text('#welcome-version'), /^\d+\.\d+\.\d+/);
  assert.match(await text('#welcome-features'), /subscribe.*publish.*ping/);
  // Chromium offers permessage-deflate; tutti accepts it (--ws-deflate 1 by default).
  assert.equal(await page.getAttribute('#welcome', 'data-permessage-deflate'), 'true');
  assert.equal(await text('#welcome-deflate'), 'on');
  assert.match(await text('#status-detail'), new RegExp(`connection ${connId}`));

  // The log shows the welcome and the subscribed reply (a first subscribe: no reconnect tag).
  assert.equal(await page.locator('#log li[data-type="welcome"]').count(), 1);
  const sub = page.locator('#log li[data-type="subscribed"]');
  assert.equal(await sub.count(), 1);
  assert.equal(await sub.locator('.tag.reconnect').count(), 0);
  const subReply = JSON.parse(await sub.locator('.data').textContent());
  assert.equal(subReply.channel, CHANNEL);
  assert.equal(await num('#count-reconnects'), 0);

  // The server's own view of this connection agrees (get_stats).
  await page.click('#get-stats');
  await page.waitForSelector('#log li[data-type="stats"]', { timeout: 5000 });
  const stats = JSON.parse(await page.locator('#log li[data-type="stats"] .data').first().textContent());
  assert.equal(stats.connection.connection_id, connId);
  assert.equal(stats.connection.permessage_deflate, true);
  assert.equal(stats.connection.subscriptions, 1);
});

test('clock: round trip and offset from ping/pong', { timeout: 10000 }, async () => {
  await waitFor(async () => Number.isFinite(Number(await text('#rtt'))) && Number.isFinite(Number(await text('#clock-offset'))),
    5000, 'RTT and offset shown as numbers');
  // A few pings (one a second) so the fastest-of-8 choice has something to choose from.
  await sleep(2200);
  const rtt = await num('#rtt');
  const offset = await num('#clock-offset');
  assert.ok(rtt >= 0 && rtt < 1000, `rtt ${rtt}`);
  // Same machine, same clock: the offset is the rounding of server_time (1 ms) and the
  // difference between performance.timeOrigin and the wall clock.
  assert.ok(Math.abs(offset) < 50, `offset ${offset}`);
  assert.match(await text('#clock-detail'), /Fastest of the last [2-8] pings/);
});

test('shows messages published over HTTP, from outside and from the page', { timeout: 15000 }, async () => {
  const before = await num('#count-messages');
  const r = await publish(server.url, CHANNEL, { seq: 'ext-1' });
  await waitFor(async () => (await messages()).some((m) => m.data === '{"seq":"ext-1"}'), 5000, 'outside message');
  const m = (await messages()).find((x) => x.data === '{"seq":"ext-1"}');
  assert.equal(m.event, 'message');
  assert.equal(m.id, r.id);
  assert.equal(m.offset, r.offset);
  assert.equal(await num('#count-messages'), before + 1);

  // The page's publish box over HTTP (the WebSocket checkbox is off): data byte for byte.
  assert.equal(await page.isChecked('#publish-ws'), false);
  const data = '{"note": "E4",  "seq": "page-http"}';
  await page.fill('#event', 'note');
  await page.fill('#data', data);
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-state="ok"]', { timeout: 5000 });
  assert.equal(await page.getAttribute('#publish-result', 'data-via'), 'http');
  const offset = Number(await page.getAttribute('#publish-result', 'data-offset'));
  await waitFor(async () => (await messages()).some((x) => x.data === data), 5000, 'page message in log');
  const pm = (await messages()).find((x) => x.data === data);
  assert.equal(pm.event, 'note');
  assert.equal(pm.offset, offset);
  assert.equal(await num('#count-messages'), before + 2);
});

test('publishes over the WebSocket; FORBIDDEN outside --client-publish', { timeout: 15000 }, async () => {
  const before = await num('#count-messages');
  await page.check('#publish-ws');
  const data = '{"note": "G4",\n  "seq": "page-ws"}'; // odd spacing and a line break: byte for byte
  await page.fill('#event', 'note');
  await page.fill('#data', data);
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-state="ok"]', { timeout: 5000 });
  assert.match(await text('#publish-result'), /^Published over WebSocket to /);
  assert.equal(await page.getAttribute('#publish-result', 'data-via'), 'ws');
  const offset = Number(await page.getAttribute('#publish-result', 'data-offset'));
  await waitFor(async () => (await messages()).some((m) => m.data === data), 5000, 'message published over WebSocket came back');
  const m = (await messages()).find((x) => x.data === data);
  assert.equal(m.event, 'note');
  assert.equal(m.offset, offset);

  // Over the compression threshold (256 bytes): compressed both ways, still byte for byte.
  const big = JSON.stringify({ seq: 'page-ws-big', pad: 'la '.repeat(1500) });
  await page.fill('#data', big);
  await page.click('#publish');
  await waitFor(async () => (await messages()).some((x) => x.data === big), 5000, 'big WebSocket message came back');
  const big2 = JSON.stringify({ seq: 'ext-big', pad: 'do re mi '.repeat(500) });
  await publish(server.url, CHANNEL, JSON.parse(big2));
  await waitFor(async () => (await messages()).some((x) => x.data === big2), 5000, 'big HTTP message');
  assert.equal(await num('#count-messages'), before + 3);

  // A channel outside the `demo:` prefix: the server refuses, the page shows the code.
  await page.fill('#channel', `other-ws-test-${process.pid}`);
  await page.fill('#data', '{"seq":"forbidden"}');
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-state="error"]', { timeout: 5000 });
  assert.match(await text('#publish-result'), /FORBIDDEN/);
  await page.fill('#channel', CHANNEL);
  await page.uncheck('#publish-ws');
  await page.fill('#event', 'message');
  assert.equal(await num('#count-messages'), before + 3);
  assert.equal(await text('#status'), 'open', 'errors do not close the connection');
});

test('survives cut connections: every message exactly once, in order, recovered with since', { timeout: 40000 }, async () => {
  const base = await num('#count-messages');
  const reconnects0 = await num('#count-reconnects');
  const recovered0 = await num('#count-recovered');
  const subscribed0 = await page.locator('#log li[data-type="subscribed"]').count();
  const N = 60;
  const pub = (i) => publish(server.url, CHANNEL, { seq: i });

  await cutDuringBurst({ page, proxy, pub, num, n: N, base, reconnects0, what: 'WebSocket' });

  const all = (await messages()).filter((m) => typeof seqOf(m) === 'number');
  // Log is newest first: reversed, it is the arrival order, which must be 1..60 exactly.
  assert.deepEqual(all.map(seqOf).reverse(), Array.from({ length: N }, (_, i) => i + 1), 'each message exactly once, in order');
  const offs = all.map((m) => m.offset);
  for (let i = 1; i < offs.length; i++) assert.equal(offs[i], offs[i - 1] - 1, 'consecutive offsets');
  assert.equal(await num('#count-messages'), base + N);
  assert.equal(await num('#count-duplicates'), 0);
  assert.equal(await num('#count-skipped'), 0);

  // 11..30 were published while the page was away: replayed before `subscribed`.
  const rec = new Set(all.filter((m) => m.recovered).map(seqOf));
  for (let i = 11; i <= 30; i++) assert.ok(rec.has(i), `message ${i} marked recovered`);
  for (let i = 1; i <= 10; i++) assert.ok(!rec.has(i), `message ${i} was live`);
  assert.equal((await num('#count-recovered')) - recovered0, rec.size);
  assert.ok(rec.size >= 20 && rec.size <= 50, `recovered count ${rec.size}`);

  // The resubscriptions are in the log, tagged, and the server said recovered: true.
  const subs = page.locator('#log li[data-type="subscribed"]');
  assert.ok((await subs.count()) >= subscribed0 + 2);
  const reconnectSubs = page.locator('#log li[data-type="subscribed"]:has(.tag.reconnect)');
  assert.ok((await reconnectSubs.count()) >= 2, 'reconnects are shown in the log');
  for (const d of await reconnectSubs.locator('.data').allTextContents()) {
    assert.equal(JSON.parse(d).recovered, true, d);
  }
  assert.equal(await text('#status'), 'open');
  assert.equal(await page.getAttribute('#welcome', 'data-permessage-deflate'), 'true');
});

test('history expired while away: recovery_incomplete shown, held messages replayed', { timeout: 20000 }, async () => {
  assert.equal(await page.locator('#alert').isVisible(), false);
  const base = await num('#count-messages');
  const recovered0 = await num('#count-recovered');
  const reconnects0 = await num('#count-reconnects');
  proxy.block(true);
  proxy.cut();
  await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 5000 });
  let first;
  for (let i = 1; i <= 110; i++) { // history_size is 100: the first 10 are gone
    const r = await publish(server.url, CHANNEL, { lost: i });
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
    .filter((x) => x !== undefined);
  assert.deepEqual(got.reverse(), Array.from({ length: 100 }, (_, i) => i + 11));
  assert.equal((await num('#count-recovered')) - recovered0, 100);
  assert.equal(await num('#count-duplicates'), 0);
  assert.equal(await num('#count-skipped'), 0);
  const lastSub = JSON.parse(await page.locator('#log li[data-type="subscribed"] .data').first().textContent());
  assert.equal(lastSub.recovered, false);
  await page.click('#alert-close');
});

test('switching back to SSE resumes without duplicates; clock shows —', { timeout: 15000 }, async () => {
  if (process.env.DEMO_WS_SCREENSHOT) {
    await waitFor(async () => /Fastest of the last [3-8] pings/.test(await text('#clock-detail')), 6000, 'a few clock samples');
    await screenshotFromEnv(page, 'DEMO_WS_SCREENSHOT');
  }
  const before = await num('#count-messages');
  await page.selectOption('#transport', 'sse');
  await page.waitForSelector('#log li[data-type="connected"]', { timeout: 5000 });
  await page.waitForSelector('#status[data-state="open"]', { timeout: 5000 });
  assert.equal(await text('#rtt'), '—');
  assert.equal(await text('#clock-offset'), '—');
  assert.equal(await page.isDisabled('#publish-ws'), true);
  const r = await publish(server.url, CHANNEL, { seq: 'sse-after-ws' });
  await waitFor(async () => (await messages()).some((m) => m.id === r.id), 5000, 'message over SSE');
  await sleep(200);
  assert.equal(await num('#count-messages'), before + 1);
  assert.equal(await num('#count-duplicates'), 0);
  assert.equal(await num('#count-skipped'), 0);
});

test('disconnect closes the connection', { timeout: 10000 }, async () => {
  await page.selectOption('#transport', 'ws');
  await page.waitForSelector('#welcome[data-state="live"]', { timeout: 5000 });
  await page.waitForSelector('#status[data-state="open"]', { timeout: 5000 });
  await page.click('#disconnect');
  assert.equal(await text('#status'), 'closed');
  const n = await num('#count-messages');
  await publish(server.url, CHANNEL, { seq: 'after-close' });
  await sleep(300);
  assert.equal(await num('#count-messages'), n);
  assert.deepEqual(pageErrors, [], 'no JavaScript errors on the page');
});
