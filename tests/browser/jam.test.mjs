// Browser test of the jam-session page (web/jam.html, web/jam.js) against the real tutti
// binary: two Chromium pages, A (Alice, drums) and B (Bob, piano), play together in a room.
// Page A goes through a small TCP proxy (node:net) so the test can cut its WebSocket: the
// page must reconnect by itself, rejoin the room and show the seqs it missed as a gap.
//
//   cd tests && TUTTI_BIN=../build/asan/tutti node --test browser/jam.test.mjs
//   CHROMIUM=/path/to/chromium         (default /usr/bin/chromium)
//   JAM_SCREENSHOT=/tmp/jam.png        (optional: screenshot of page A during the session)
import { test, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTutti, waitFor } from '../lib/harness.mjs';
import { sleep, launchChromium, openPage, startProxy, screenshotFromEnv, closeAll } from '../lib/browser.mjs';

const SERVER_ARGS = ['--drain-timeout', '1'];

let server;
let proxy;
let browser;
let pageA;
let pageB;
let code;
let bobId;
const pageErrors = [];

const newPage = (url, label) => openPage(browser, url, { errors: pageErrors, label, viewport: { width: 1280, height: 1000 } });
// The server must still be running: a crash shows its report instead of a page timeout.
function assertAlive() {
  const p = server.proc;
  const report = server.stderr.split('\n').filter((l) => l && !l.startsWith('{')).slice(0, 40).join('\n');
  assert.ok(p.exitCode === null && p.signalCode === null, `tutti exited (${p.exitCode ?? p.signalCode}):\n${report}`);
}
const text = (page, sel) => page.locator(sel).textContent();
const names = (page) => page.$$eval('#participants li .pname', (els) => els.map((e) => e.textContent).sort());
const ids = (page) => page.$$eval('#participants li', (lis) => lis.map((li) => li.dataset.userId).sort());
const selfId = (page) => page.$eval('#participants li[data-self="true"]', (li) => li.dataset.userId);
// Records, in the page, every time a pad or key gets the remote-hit class `lit`.
const watchLit = (page) => page.evaluate(() => {
  window.__lit = [];
  new MutationObserver((muts) => {
    for (const m of muts) {
      const t = m.target;
      const was = (m.oldValue || '').split(/\s+/).includes('lit');
      if (!was && t.classList.contains('lit')) window.__lit.push(t.dataset.pad || t.dataset.note);
    }
  }).observe(document.querySelector('main'), { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ['class'] });
});

before(async () => {
  server = await startTutti(SERVER_ARGS);
  proxy = await startProxy(server.port);
  browser = await launchChromium({ args: ['--autoplay-policy=no-user-gesture-required'] });
  pageA = await newPage(`http://127.0.0.1:${proxy.port}/jam.html`, 'A');
  pageB = await newPage(`${server.url}/jam.html`, 'B');
});

beforeEach(() => assertAlive());

after(() => closeAll({ browser, proxy, server }));

test('the page has its controls, pads and keys', { timeout: 10000 }, async () => {
  for (const id of ['name', 'instrument', 'create', 'room-code', 'join', 'leave', 'code-display', 'participants', 'rtt', 'clock-offset', 'latency', 'log']) {
    assert.equal(await pageA.locator(`#${id}`).count(), 1, `#${id}`);
  }
  const pads = await pageA.$$eval('button.pad', (bs) => bs.map((b) => b.dataset.pad));
  assert.equal(pads.length, 8);
  assert.ok(pads.includes('kick') && pads.includes('snare') && pads.includes('crash'), pads.join());
  const keys = await pageA.$$eval('button.key', (bs) => bs.map((b) => b.dataset.note));
  assert.deepEqual(keys, ['C4', 'C#4', 'D4', 'D#4', 'E4', 'F4', 'F#4', 'G4', 'G#4', 'A4', 'A#4', 'B4', 'C5']);
  for (const b of await pageA.locator('button.pad, button.key').all()) assert.ok(await b.getAttribute('aria-label'));
  await pageA.waitForSelector('#conn-status[data-state="open"]', { timeout: 5000 });
  assert.equal(await pageA.evaluate(() => window.jam.status), 'open');
});

test('A creates a room, B joins with the code; both lists show both', { timeout: 15000 }, async () => {
  await pageA.fill('#name', 'Alice');
  await pageA.selectOption('#instrument', 'drums');
  await pageA.click('#create');
  await pageA.waitForFunction(() => document.querySelector('#code-display').textContent.trim() !== '', null, { timeout: 5000 });
  code = (await text(pageA, '#code-display')).trim();
  assert.match(code, /^[A-Za-z0-9]+-\d+$/, `room code ${code}`);
  assert.equal(new URL(pageA.url()).searchParams.get('room'), code, 'the page URL is the invitation link');
  assert.equal(await pageA.getAttribute('#share-link', 'href'), new URL(`/jam.html?room=${code}`, pageA.url()).href);
  await waitFor(async () => (await names(pageA)).length === 1, 5000, 'A in its own room');

  await pageB.fill('#name', 'Bob');
  await pageB.selectOption('#instrument', 'piano');
  await pageB.fill('#room-code', code);
  await pageB.click('#join');
  await pageB.waitForFunction((c) => document.querySelector('#code-display').textContent.trim() === c, code, { timeout: 5000 });

  for (const page of [pageA, pageB]) {
    await waitFor(async () => (await names(page)).length === 2, 5000, 'two participants');
    assert.deepEqual(await names(page), ['Alice', 'Bob']);
  }
  assert.deepEqual(await ids(pageA), await ids(pageB), 'the same user ids on both pages');
  bobId = await selfId(pageB);
  const aliceId = await selfId(pageA);
  assert.notEqual(aliceId, bobId);
  assert.match(await pageA.locator(`#participants li[data-user-id="${bobId}"] .pinst`).textContent(), /piano/);
  assert.match(await pageB.locator(`#participants li[data-user-id="${aliceId}"] .pinst`).textContent(), /drums/);
});

test('a kick in A lights the kick in B with Alice\'s name, not as a remote hit in A', { timeout: 15000 }, async () => {
  await watchLit(pageA);
  await watchLit(pageB);
  await pageA.click('button.pad[data-pad="kick"]');
  await pageB.waitForSelector('button.pad[data-pad="kick"].lit[data-sender="Alice"]', { timeout: 3000 });
  await pageB.waitForSelector('button.pad[data-pad="kick"]:not(.lit)', { timeout: 3000 }); // ~300 ms, then off
  assert.equal(await pageB.getAttribute('button.pad[data-pad="kick"]', 'data-sender'), null);

  // The relayed event in B's log, with its seq; A's own line gets the same seq from the ack.
  const ev = pageB.locator('#log li[data-type="event"][data-event="drum_hit"]').first();
  await ev.waitFor({ timeout: 3000 });
  const seq = Number(await ev.getAttribute('data-seq'));
  assert.ok(seq >= 1, `seq ${seq}`);
  await pageA.waitForSelector(`#log li[data-type="own"][data-seq="${seq}"]`, { timeout: 3000 });
  assert.match(await ev.textContent(), /Alice/);
  assert.ok(Number.isFinite(Number(await text(pageB, '#latency'))), 'B shows the relayed latency');
  await sleep(300);
  assert.deepEqual(await pageA.evaluate(() => window.__lit), [], 'A never receives its own hit');
  assert.deepEqual(await pageB.evaluate(() => window.__lit), ['kick']);
});

test('a piano key in B lights in A with Bob\'s name', { timeout: 15000 }, async () => {
  await pageB.click('button.key[data-note="E4"]');
  await pageA.waitForSelector('button.key[data-note="E4"].lit[data-sender="Bob"]', { timeout: 3000 });
  // And from the computer keyboard (G = G4), into a pad-free part of the page.
  await pageB.locator('body').press('g');
  await pageA.waitForSelector('button.key[data-note="G4"].lit[data-sender="Bob"]', { timeout: 3000 });
  await pageA.waitForSelector('#log li[data-type="event"][data-event="piano_note"]', { timeout: 3000 });
  assert.ok(Number.isFinite(Number(await text(pageA, '#latency'))), 'A shows the relayed latency');
  const lat = Number(await text(pageA, '#latency'));
  assert.ok(lat > -50 && lat < 1000, `latency ${lat}`);
  assert.deepEqual(await pageB.evaluate(() => window.__lit), ['kick'], 'B never receives its own notes');
  assert.equal(await pageA.locator('#log li[data-type="gap"]').count(), 0, 'no gap: the missing seqs are A\'s own');
  assert.equal(await pageB.locator('#log li[data-type="gap"]').count(), 0);
});

test('RTT and clock offset show numbers on both pages', { timeout: 10000 }, async () => {
  for (const page of [pageA, pageB]) {
    await waitFor(async () => Number.isFinite(Number(await text(page, '#rtt'))) && Number.isFinite(Number(await text(page, '#clock-offset'))),
      5000, 'RTT and offset shown as numbers');
    const rtt = Number(await text(page, '#rtt'));
    const offset = Number(await text(page, '#clock-offset'));
    assert.ok(rtt >= 0 && rtt < 1000, `rtt ${rtt}`);
    assert.ok(Math.abs(offset) < 50, `offset ${offset}`);
    const skew = await page.evaluate(() => window.jam.serverNow() - Date.now());
    assert.ok(Math.abs(skew) < 50, `serverNow() - Date.now() = ${skew}`);
  }
});

test('an invitation link (?room=CODE) joins directly', { timeout: 15000 }, async () => {
  const pageC = await newPage(`${server.url}/jam.html?room=${encodeURIComponent(code)}&name=Carol`, 'C');
  await pageC.waitForFunction((c) => document.querySelector('#code-display').textContent.trim() === c, code, { timeout: 5000 });
  await waitFor(async () => (await names(pageA)).length === 3, 5000, 'Carol in A\'s list');
  assert.deepEqual(await names(pageA), ['Alice', 'Bob', 'Carol']);
  assert.deepEqual(await names(pageC), ['Alice', 'Bob', 'Carol']);
  await pageC.click('#leave');
  await waitFor(async () => (await names(pageA)).length === 2, 5000, 'Carol left');
  assert.equal(await pageC.isVisible('#lobby'), true);
  await pageC.close();
});

test('an unknown code shows an error; a code typed in lower case still joins', { timeout: 15000 }, async () => {
  const pageD = await newPage(`${server.url}/jam.html`, 'D');
  await pageD.fill('#name', 'Dave');
  await pageD.fill('#room-code', 'NOPE-0');
  await pageD.click('#join');
  await waitFor(async () => server.proc.exitCode !== null || /No live room/.test(await text(pageD, '#form-error')), 5000, 'ROOM_NOT_FOUND shown');
  assertAlive();
  assert.equal(await pageD.isVisible('#lobby'), true);
  assert.equal((await text(pageD, '#code-display')).trim(), '');
  assert.equal(await pageD.evaluate(() => window.jam.status), 'open', 'an error does not close the connection');
  await pageD.fill('#room-code', code.toLowerCase());
  await pageD.click('#join');
  await waitFor(async () => server.proc.exitCode !== null || (await text(pageD, '#code-display')).trim() === code, 5000, 'D in the room');
  assertAlive();
  assert.equal(await text(pageD, '#form-error'), '');
  await waitFor(async () => (await names(pageA)).includes('Dave'), 5000, 'Dave in A\'s list');
  await pageD.close();
  await waitFor(async () => !(await names(pageA)).includes('Dave'), 5000, 'Dave gone');
});

test('A\'s connection is cut: it reconnects, rejoins, and shows the missed seqs as a gap', { timeout: 25000 }, async () => {
  const aliceBefore = await selfId(pageA);
  proxy.block(true);
  assert.ok(proxy.cut() >= 1, 'A\'s WebSocket went through the proxy');
  await pageA.waitForSelector('#conn-status[data-state="reconnecting"]', { timeout: 5000 });
  await waitFor(async () => (await names(pageB)).length === 1, 5000, 'B sees A leave');
  // Two notes A cannot hear.
  await pageB.click('button.key[data-note="C4"]');
  await pageB.click('button.key[data-note="D4"]');
  const ownSeqs = () => pageB.$$eval('#log li[data-type="own"]', (lis) => lis.slice(0, 2).map((li) => Number(li.dataset.seq)));
  await waitFor(async () => (await ownSeqs()).every((s) => s > 0), 3000, 'B\'s two notes acknowledged');
  const missed = (await ownSeqs()).sort((a, b) => a - b);
  assert.equal(missed[1], missed[0] + 1);
  await sleep(200);
  proxy.block(false);
  await pageA.waitForSelector('#conn-status[data-state="open"]', { timeout: 10000 });
  await waitFor(async () => (await names(pageB)).length === 2, 5000, 'A back in B\'s list');
  await waitFor(async () => (await names(pageA)).length === 2, 5000, 'A rejoined the room');
  assert.equal((await text(pageA, '#code-display')).trim(), code);
  const aliceAfter = await selfId(pageA);
  assert.notEqual(aliceAfter, aliceBefore, 'a new connection is a new user id');
  assert.deepEqual(await ids(pageA), await ids(pageB));

  // The next note reaches A, which notices the seqs it missed.
  await pageB.click('button.key[data-note="A4"]');
  await pageA.waitForSelector('button.key[data-note="A4"].lit[data-sender="Bob"]', { timeout: 3000 });
  const gap = pageA.locator('#log li[data-type="gap"]');
  await gap.waitFor({ timeout: 3000 });
  assert.equal(await gap.count(), 1);
  assert.deepEqual([Number(await gap.getAttribute('data-from')), Number(await gap.getAttribute('data-to'))], missed);

  if (process.env.JAM_SCREENSHOT) {
    await pageA.click('button.pad[data-pad="snare"]');
    await pageB.click('button.pad[data-pad="hat_open"]');
    // Bob keeps playing while the screenshot is taken, so A shows lit pads and keys.
    let playing = true;
    const bob = (async () => {
      while (playing) {
        await pageB.click('button.key[data-note="F#4"]');
        await pageB.click('button.pad[data-pad="hat_open"]');
        await sleep(60);
      }
    })();
    await pageA.waitForSelector('button.key[data-note="F#4"].lit', { timeout: 3000 });
    await screenshotFromEnv(pageA, 'JAM_SCREENSHOT');
    playing = false;
    await bob;
  }
});

test('closing page B drops Bob from A\'s list', { timeout: 10000 }, async () => {
  await pageB.close();
  await waitFor(async () => !(await ids(pageA)).includes(bobId), 5000, 'Bob gone from A\'s list');
  assert.deepEqual(await names(pageA), ['Alice']);
  assert.match(await pageA.locator('#log li[data-type="system"]').first().textContent(), /Bob left/);
  assert.deepEqual(pageErrors, [], 'no JavaScript errors on the pages');
});
