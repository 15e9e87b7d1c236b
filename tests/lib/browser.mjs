// Shared pieces of the headless-Chromium tests (tests/browser/): Debian's chromium through
// playwright-core, a TCP proxy that can cut the browser's connections, page error
// collection, optional screenshots and the common teardown.
//
//   CHROMIUM=/path/to/chromium   (default /usr/bin/chromium)
import assert from 'node:assert/strict';
import net from 'node:net';
import { chromium } from 'playwright-core';
import { waitFor } from './harness.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The flags every browser test runs Chromium with.
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Launches $CHROMIUM (default /usr/bin/chromium) with CHROMIUM_ARGS plus `args`.
export function launchChromium({ args = [] } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [...CHROMIUM_ARGS, ...args],
  });
}

// Opens `url` in a new page of `browser` and asserts a 200. Uncaught page errors are pushed
// onto `errors` (prefixed with `label: ` when a label is given).
export async function openPage(browser, url, { errors, label, viewport = { width: 1280, height: 900 } } = {}) {
  const page = await browser.newPage({ viewport });
  if (errors) page.on('pageerror', (e) => errors.push(label ? `${label}: ${e}` : String(e)));
  const res = await page.goto(url);
  assert.equal(res.status(), 200);
  return page;
}

// Full-page screenshot of `page` to the path in environment variable `envVar`, if it is set.
// Resolves to whether one was taken; with ignoreErrors a failed screenshot is not an error.
export async function screenshotFromEnv(page, envVar, { ignoreErrors = false } = {}) {
  const file = process.env[envVar];
  if (!file) return false;
  const shot = page.screenshot({ path: file, fullPage: true });
  await (ignoreErrors ? shot.catch(() => {}) : shot);
  return true;
}

// A TCP proxy on 127.0.0.1 between Chromium and tutti. Resolves to
// { port, open, target, cut(), block(on), close() }: cut() resets every proxied connection
// and returns how many there were; block(true) makes it reset new connections at once (the
// server looks unreachable); `open` is the number of proxied connections; setting `target`
// points new connections at another port (a restarted server).
export function startProxy(targetPort) {
  const pairs = new Set();
  let blocked = false;
  const state = { target: targetPort };
  const srv = net.createServer((client) => {
    if (blocked) { client.resetAndDestroy(); return; }
    const upstream = net.connect(state.target, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      if (!client.destroyed) client.destroy();
      if (!upstream.destroyed) upstream.destroy();
    };
    client.on('error', end); upstream.on('error', end);
    client.on('close', end); upstream.on('close', end);
    client.pipe(upstream); upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve({
      port: srv.address().port,
      get open() { return pairs.size; },
      set target(port) { state.target = port; },
      cut() {
        const n = pairs.size;
        for (const { client, upstream } of [...pairs]) {
          if (!client.destroyed) client.resetAndDestroy();
          if (!upstream.destroyed) upstream.destroy();
        }
        return n;
      },
      block(on) { blocked = on; },
      close() {
        this.cut();
        return new Promise((r) => srv.close(() => r()));
      },
    }));
  });
}

// Teardown for an `after` hook: closes the browser and the proxy, then stops tutti and
// asserts it exited with 0. Any of the three may be undefined (a failed `before`).
export async function closeAll({ browser, proxy, server }) {
  await browser?.close().catch(() => {});
  await proxy?.close().catch(() => {});
  if (server) {
    const code = await server.stop();
    assert.equal(code, 0, 'tutti exit code\n' + server.stderr.slice(-4000));
  }
}

// Readers for the demo page (web/index.html); `getPage` returns the current page.
// text(sel): an element's text; num(sel): the same as a number; messages(): the log's
// message entries, newest first, as { event, id, offset, data, recovered, duplicate }.
export function demoPageReaders(getPage) {
  const text = (sel) => getPage().locator(sel).textContent();
  const num = async (sel) => Number(await text(sel));
  const messages = () => getPage().$$eval('#log li[data-type="message"]', (lis) => lis.map((li) => ({
    event: li.dataset.event,
    id: li.dataset.id,
    offset: Number(li.dataset.offset),
    data: li.querySelector('.data').textContent,
    recovered: li.classList.contains('recovered'),
    duplicate: li.classList.contains('duplicate'),
  })));
  return { text, num, messages };
}

// The demo pages' reconnection scenario: messages 1..10 live; every connection cut and
// the server kept unreachable while 11..30 are published; then 31..n with one more cut
// (at 45) that the page recovers from at once. Waits until the page counted all n and
// reconnected twice; the caller then checks what the page shows.
//   page, proxy: from openPage and startProxy; pub(i): publishes message i;
//   num(selector): reads a counter; base, reconnects0: the counters before.
export async function cutDuringBurst({ page, proxy, pub, num, n = 60, base, reconnects0, what }) {
  for (let i = 1; i <= 10; i++) await pub(i);
  await waitFor(async () => (await num('#count-messages')) === base + 10, 5000, 'live messages 1-10');

  proxy.block(true);
  assert.ok(proxy.cut() >= 1, `the ${what} went through the proxy`);
  await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 5000 });
  for (let i = 11; i <= 30; i++) await pub(i);
  await sleep(300);
  proxy.block(false);
  await waitFor(async () => (await num('#count-reconnects')) >= reconnects0 + 1, 10000, 'first reconnect');
  await page.waitForSelector('#status[data-state="open"]', { timeout: 5000 });

  for (let i = 31; i <= n; i++) {
    await pub(i);
    if (i === 45) proxy.cut();
    await sleep(15);
  }
  await waitFor(async () => (await num('#count-messages')) >= base + n, 15000,
    `all ${n} messages (have ${await num('#count-messages')})`);
  await waitFor(async () => (await num('#count-reconnects')) >= reconnects0 + 2, 5000, 'second reconnect');
  await sleep(300); // anything extra (a duplicate) would show up now
}
