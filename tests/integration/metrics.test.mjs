// GET /metrics: Prometheus text format 0.0.4, the buoy-compatible series, and a grammar
// check of every line (plus promtool when it is installed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { startTutti, publish, waitFor, openSSE, sseAgent } from '../lib/harness.mjs';

// ---- a small Prometheus text-format (0.0.4) validator -------------------------

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*';
const LVALUE = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const NUMBER = '(?:[+-]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][+-]?\\d+)?|[+-]?Inf|NaN)';
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL}=${LVALUE})(?:,${LABEL}=${LVALUE})*,?)?\\})? (${NUMBER})(?: -?\\d+)?$`);
const HELP_RE = new RegExp(`^# HELP (${NAME}) (.*)$`);
const TYPE_RE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const LABEL_PAIR_RE = new RegExp(`(${LABEL})=(${LVALUE})`, 'g');

const num = (s) => (s === '+Inf' || s === 'Inf' ? Infinity : s === '-Inf' ? -Infinity : Number(s));

// Parses and checks an exposition; throws an AssertionError naming the first bad line.
// Returns { types, samples: [{ name, labels, value }] }.
function parseExposition(text) {
  assert.ok(text.endsWith('\n'), 'exposition ends with a newline');
  const types = new Map();
  const helps = new Set();
  const samples = [];
  const seen = new Set();
  const finished = new Set(); // families whose group of lines has ended
  let current = null;
  const familyOf = (name) => {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      const base = name.slice(0, -suffix.length);
      if (name.endsWith(suffix) && ['histogram', 'summary'].includes(types.get(base))) return base;
    }
    return name;
  };
  const enter = (fam, lineNo) => {
    if (fam === current) return;
    assert.ok(!finished.has(fam), `line ${lineNo}: lines of ${fam} are not one group`);
    if (current) finished.add(current);
    current = fam;
  };
  text.slice(0, -1).split('\n').forEach((line, i) => {
    const n = i + 1;
    if (line === '') return;
    if (line.startsWith('#')) {
      let m;
      if ((m = HELP_RE.exec(line))) {
        assert.ok(!helps.has(m[1]), `line ${n}: second HELP for ${m[1]}`);
        helps.add(m[1]);
        enter(m[1], n);
      } else if ((m = TYPE_RE.exec(line))) {
        assert.ok(!types.has(m[1]), `line ${n}: second TYPE for ${m[1]}`);
        assert.ok(!samples.some((s) => familyOf(s.name) === m[1] || s.name === m[1]), `line ${n}: TYPE ${m[1]} after its samples`);
        types.set(m[1], m[2]);
        enter(m[1], n);
      } else {
        assert.doesNotMatch(line, /^# (HELP|TYPE)/, `line ${n}: malformed HELP/TYPE: ${JSON.stringify(line)}`);
      }
      return;
    }
    const m = SAMPLE_RE.exec(line);
    assert.ok(m, `line ${n} is not a valid sample: ${JSON.stringify(line)}`);
    const labels = {};
    for (const [, k, v] of (m[2] || '').matchAll(LABEL_PAIR_RE)) {
      assert.ok(!(k in labels), `line ${n}: label ${k} twice`);
      labels[k] = JSON.parse(v);
    }
    const key = m[1] + JSON.stringify(Object.entries(labels).sort());
    assert.ok(!seen.has(key), `line ${n}: duplicate sample ${line}`);
    seen.add(key);
    const fam = familyOf(m[1]);
    enter(fam, n);
    samples.push({ name: m[1], labels, value: num(m[3]), family: fam, line: n });
  });

  for (const [fam, type] of types) {
    const own = samples.filter((s) => s.family === fam);
    if (type === 'counter') for (const s of own) assert.ok(s.value >= 0, `counter ${s.name} is negative`);
    if (type !== 'histogram') continue;
    assert.ok(own.length > 0, `histogram ${fam} has samples`);
    for (const s of own) {
      assert.ok([`${fam}_bucket`, `${fam}_sum`, `${fam}_count`].includes(s.name), `histogram ${fam}: unexpected sample ${s.name}`);
    }
    // group by label set without `le`
    const groups = new Map();
    for (const s of own) {
      const { le, ...rest } = s.labels;
      const g = JSON.stringify(Object.entries(rest).sort());
      if (!groups.has(g)) groups.set(g, { buckets: [], sum: undefined, count: undefined });
      const grp = groups.get(g);
      if (s.name.endsWith('_bucket')) {
        assert.ok(le !== undefined, `line ${s.line}: bucket without le`);
        grp.buckets.push({ le: num(le), value: s.value, line: s.line });
      } else {
        assert.equal(le, undefined, `line ${s.line}: le on ${s.name}`);
        if (s.name.endsWith('_sum')) grp.sum = s.value; else grp.count = s.value;
      }
    }
    for (const [g, grp] of groups) {
      const where = `histogram ${fam}${g === '[]' ? '' : ' ' + g}`;
      assert.ok(grp.buckets.length >= 1, `${where}: has buckets`);
      for (let k = 1; k < grp.buckets.length; k++) {
        assert.ok(grp.buckets[k].le > grp.buckets[k - 1].le, `${where}: le ascending at line ${grp.buckets[k].line}`);
        assert.ok(grp.buckets[k].value >= grp.buckets[k - 1].value, `${where}: cumulative counts at line ${grp.buckets[k].line}`);
      }
      assert.equal(grp.buckets.at(-1).le, Infinity, `${where}: last bucket is le="+Inf"`);
      assert.notEqual(grp.sum, undefined, `${where}: has _sum`);
      assert.notEqual(grp.count, undefined, `${where}: has _count`);
      assert.equal(grp.count, grp.buckets.at(-1).value, `${where}: _count equals the +Inf bucket`);
    }
  }
  return { types, samples };
}

function value(expo, name, labels = {}) {
  const s = expo.samples.find((x) => x.name === name
    && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  return s?.value;
}

async function scrape(url) {
  const r = await fetch(`${url}/metrics`);
  assert.equal(r.status, 200);
  const text = await r.text();
  return { res: r, text, expo: parseExposition(text) };
}

// ---- server ------------------------------------------------------------------

let srv;
before(async () => { srv = await startTutti(['--workers', '2']); });
after(async () => {
  sseAgent.destroy();
  assert.equal(await srv.stop(), 0, 'tutti exit code after SIGTERM');
});

// ---- tests ---------------------------------------------------------------------

test('the validator itself rejects bad expositions', () => {
  assert.throws(() => parseExposition('foo{a="b" 1\n'));
  assert.throws(() => parseExposition('foo 1'));
  assert.throws(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'));
  assert.throws(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'));
  assert.throws(() => parseExposition('# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'));
  assert.throws(() => parseExposition('a 1\nb 1\na{x="1"} 2\n'));
  assert.doesNotThrow(() => parseExposition('# HELP a x\n# TYPE a counter\na{k="v\\"q"} 1.5e3\n# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n'));
});

test('GET /metrics: content type and valid exposition with the buoy series', async () => {
  const { res, text, expo } = await scrape(srv.url);
  assert.match(res.headers.get('content-type'), /^text\/plain;\s*version=0\.0\.4(;\s*charset=utf-8)?$/i);
  assert.equal(expo.types.get('sse_connections_total'), 'gauge');
  assert.equal(expo.types.get('sse_events_sent_total'), 'counter');
  assert.equal(expo.types.get('sse_connection_duration_seconds'), 'histogram');
  assert.equal(expo.types.get('sse_broadcast_latency_ms'), 'histogram');
  assert.ok(expo.samples.some((s) => s.name.startsWith('tutti_')), 'tutti_* series present');
  for (const suffix of ['_bucket', '_sum', '_count']) {
    assert.match(text, new RegExp(`^sse_connection_duration_seconds${suffix}[{ ]`, 'm'));
    assert.match(text, new RegExp(`^sse_broadcast_latency_ms${suffix}[{ ]`, 'm'));
  }
  for (const s of expo.samples.filter((x) => x.name === 'sse_events_sent_total')) {
    assert.ok(['connected', 'message', 'heartbeat', 'shutdown', 'error', 'recovery_incomplete'].includes(s.labels.event_type),
      `event_type ${s.labels.event_type}`);
  }
});

test('sse_connections_total follows open SSE clients; events and histograms move', async () => {
  const base = (await scrape(srv.url)).expo;
  const open0 = value(base, 'sse_connections_total');
  assert.equal(open0, 0, 'no SSE client yet');
  const msg0 = value(base, 'sse_events_sent_total', { event_type: 'message' }) ?? 0;
  const con0 = value(base, 'sse_events_sent_total', { event_type: 'connected' }) ?? 0;
  const dur0 = value(base, 'sse_connection_duration_seconds_count') ?? 0;
  const lat0 = value(base, 'sse_broadcast_latency_ms_count') ?? 0;

  const clients = [];
  for (let i = 0; i < 3; i++) {
    const c = await openSSE(srv.url, i < 2 ? '/sse/m1' : '/sse/other');
    await c.waitForCount('connected', 1);
    clients.push(c);
  }
  let e = (await scrape(srv.url)).expo;
  assert.equal(value(e, 'sse_connections_total'), 3);
  assert.equal(value(e, 'sse_events_sent_total', { event_type: 'connected' }), con0 + 3);

  for (let i = 0; i < 5; i++) await publish(srv.url, 'm1', { i });
  await clients[0].waitFor((c) => c.messages().length >= 5);
  await clients[1].waitFor((c) => c.messages().length >= 5);
  await waitFor(async () => value((await scrape(srv.url)).expo, 'sse_events_sent_total', { event_type: 'message' }) >= msg0 + 10,
    3000, 'message counter +10');
  e = (await scrape(srv.url)).expo;
  assert.equal(value(e, 'sse_events_sent_total', { event_type: 'message' }), msg0 + 10, '5 messages x 2 subscribers');
  assert.ok(value(e, 'sse_broadcast_latency_ms_count') >= lat0 + 5, 'broadcast latency observed');
  assert.ok(value(e, 'sse_broadcast_latency_ms_sum') >= 0);

  clients[0].close();
  await waitFor(async () => value((await scrape(srv.url)).expo, 'sse_connections_total') === 2, 3000, 'gauge back to 2');
  e = (await scrape(srv.url)).expo;
  assert.equal(value(e, 'sse_connection_duration_seconds_count'), dur0 + 1, 'one finished connection observed');
  assert.ok(value(e, 'sse_connection_duration_seconds_sum') > 0);
  for (const c of clients.slice(1)) c.close();
  await waitFor(async () => value((await scrape(srv.url)).expo, 'sse_connections_total') === 0, 3000, 'gauge back to 0');
});

test('promtool check metrics: only the two buoy names are flagged, and only as lint', async () => {
  const which = spawnSync('sh', ['-c', 'command -v promtool']);
  assert.equal(which.status, 0, 'promtool is installed by scripts/deps.sh test');
  const { text } = await scrape(srv.url);
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text });
  const out = `${r.stdout}${r.stderr}`;
  // The buoy names are part of the contract (a gauge called sse_connections_total, a histogram
  // in ms), so promtool's naming lints about exactly those two are expected; anything else
  // (parse errors, other lints) is a failure. Exit status 3 is promtool's "lint only".
  const contractNames = [
    /^sse_connections_total non-counter metrics should not have "_total" suffix$/,
    /^sse_broadcast_latency_ms metric names should not contain abbreviated units$/,
  ];
  const lines = out.split('\n').filter((l) => l.trim());
  const problems = lines.filter((l) => !contractNames.some((re) => re.test(l.trim())));
  assert.deepEqual(problems, []);
  assert.equal(lines.length, 2, out);
  assert.equal(r.status, 3, out);
});

test('with --metrics-buoy-names 0, promtool check metrics passes cleanly', async () => {
  const s = await startTutti(['--metrics-buoy-names', '0']);
  try {
    const { text } = await scrape(s.url);
    assert.ok(!/^sse_connections_total /m.test(text));
    assert.ok(!/^sse_broadcast_latency_ms/m.test(text));
    assert.match(text, /^tutti_sse_connections 0$/m);
    assert.match(text, /^tutti_broadcast_latency_seconds_count /m);
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  } finally {
    assert.equal(await s.stop(), 0);
  }
});
