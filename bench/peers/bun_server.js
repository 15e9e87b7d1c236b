// The benchmark peer "bun": Bun.serve with its built-in pub/sub (uWebSockets inside) for
// WebSocket subscribers, and a ReadableStream per SSE subscriber. Run with the Bun binary
// from bench/peers/node_modules/.bin/bun (npm package `bun`). Started by peers.sh with HOST
// and PORT in the environment; prints "ready" once it listens; exits on SIGTERM.
//
// Subscribe:
//   WebSocket: GET /ws/{channel} (upgrade, no permessage-deflate): ws.subscribe(channel),
//     then {"type":"subscribed","channel":"<channel>"}; then every payload published to the
//     channel as one text message, verbatim.
//   SSE: GET /sse/{channel} -> 200 text/event-stream (chunked, no compression): first
//     "event: subscribed\ndata: {"channel":"<channel>"}\n\n", then "data: <payload>\n\n"
//     per message.
// Publish: POST /publish/{channel}, body = the payload: server.publish(channel, body) to the
//   WebSocket subscribers and "data: <body>\n\n" written to every SSE subscriber of the
//   channel, then 200 "ok". Or over a WebSocket, GET /pubws/{channel} (upgrade): every text
//   message is published as a POST body is, and answered with the text message "ok".
// Channel names in paths: [A-Za-z0-9._~-]+ (taken as they are, no percent-decoding); any
// other path answers 404.
//
// No idle timeouts (HTTP idleTimeout 0 and websocket idleTimeout 0, no server pings), and
// no backpressure limit: a slow reader is buffered for, never dropped mid-benchmark.

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8080);

const PUBLISH = /^\/publish\/([A-Za-z0-9._~-]+)$/;
const WS = /^\/ws\/([A-Za-z0-9._~-]+)$/;
const SSE = /^\/sse\/([A-Za-z0-9._~-]+)$/;
const PUBWS = /^\/pubws\/([A-Za-z0-9._~-]+)$/;

const encoder = new TextEncoder();
/** @type {Map<string, Set<ReadableStreamDefaultController>>} */
const sseChannels = new Map();

function sseSubscribe(channel) {
  let ctl;
  let subs;
  const stream = new ReadableStream({
    start(controller) {
      ctl = controller;
      subs = sseChannels.get(channel);
      if (!subs) {
        subs = new Set();
        sseChannels.set(channel, subs);
      }
      subs.add(controller);
      controller.enqueue(
        encoder.encode(`event: subscribed\ndata: ${JSON.stringify({ channel })}\n\n`),
      );
    },
    cancel() {
      subs.delete(ctl);
      if (subs.size === 0 && sseChannels.get(channel) === subs) sseChannels.delete(channel);
    },
  });
  return new Response(stream, {
    status: 200,
    headers: {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    },
  });
}

// To the channel's WebSocket subscribers (uWebSockets' pub/sub) and SSE subscribers.
function publish(channel, body) {
  server.publish(channel, body);
  const subs = sseChannels.get(channel);
  if (subs) {
    const chunk = encoder.encode(`data: ${body}\n\n`);
    for (const c of subs) {
      try {
        c.enqueue(chunk);
      } catch {
        subs.delete(c);
      }
    }
  }
}

const server = Bun.serve({
  hostname: host,
  port,
  idleTimeout: 0,
  async fetch(req, server) {
    const path = new URL(req.url).pathname;
    let m;
    if (req.method === 'POST' && (m = PUBLISH.exec(path))) {
      publish(m[1], await req.text());
      return new Response('ok', { status: 200, headers: { 'Content-Type': 'text/plain' } });
    }
    if (req.method === 'GET' && ((m = WS.exec(path)) || (m = PUBWS.exec(path)))) {
      const data = PUBWS.test(path) ? { publishTo: m[1] } : { channel: m[1] };
      if (server.upgrade(req, { data })) return undefined;
      return new Response('upgrade failed', { status: 400 });
    }
    if (req.method === 'GET' && (m = SSE.exec(path))) {
      return sseSubscribe(m[1]);
    }
    return new Response('not found', { status: 404 });
  },
  websocket: {
    perMessageDeflate: false,
    idleTimeout: 0,
    sendPings: false,
    backpressureLimit: 4294967295,
    closeOnBackpressureLimit: false,
    maxPayloadLength: 1 << 20,
    open(ws) {
      if (ws.data.publishTo) return;
      ws.subscribe(ws.data.channel);
      ws.send(JSON.stringify({ type: 'subscribed', channel: ws.data.channel }));
    },
    message(ws, message) {
      if (!ws.data.publishTo) return;
      publish(ws.data.publishTo, typeof message === 'string' ? message : message.toString());
      ws.send('ok');
    },
  },
});

const shutdown = () => {
  server.stop(true);
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

process.stdout.write('ready\n');
