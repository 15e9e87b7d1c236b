// The benchmark peer "ws": one Node process with the `ws` library and the broadcast loop
// people write by hand (a Map channel -> Set of sockets; send the body to each). Started by
// peers.sh with HOST and PORT in the environment; prints "ready" once it listens; exits on
// SIGTERM.
//
// Subscribe: GET /ws/{channel} (WebSocket upgrade, no permessage-deflate). Once the socket
//   is in the channel's set the server sends {"type":"subscribed","channel":"<channel>"},
//   then every payload published to the channel as one text message, verbatim.
// Publish:   POST /publish/{channel}, body = the payload: sent as text to every subscriber
//   of the channel, then 200 "ok".
// Channel names in paths: [A-Za-z0-9._~-]+ (taken as they are, no percent-decoding); any
// other path answers 404.

import { WebSocketServer } from 'ws';

import { publishServer, serve } from './publish_http.mjs';

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8080);

const SUBSCRIBE = /^\/ws\/([A-Za-z0-9._~-]+)$/;

/** @type {Map<string, Set<import('ws').WebSocket>>} */
const channels = new Map();

// The body stays a string, so that ws sends a text frame.
const httpServer = publishServer((channel, body) => {
  const subs = channels.get(channel);
  if (subs) for (const ws of subs) ws.send(body);
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1 << 20 });

httpServer.on('upgrade', (req, socket, head) => {
  const m = SUBSCRIBE.exec(req.url);
  if (!m) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  const channel = m[1];
  wss.handleUpgrade(req, socket, head, (ws) => {
    let subs = channels.get(channel);
    if (!subs) {
      subs = new Set();
      channels.set(channel, subs);
    }
    subs.add(ws);
    ws.on('close', () => {
      subs.delete(ws);
      if (subs.size === 0 && channels.get(channel) === subs) channels.delete(channel);
    });
    ws.on('error', () => {});
    ws.send(JSON.stringify({ type: 'subscribed', channel }));
  });
});

serve(httpServer, host, port, () => {
  for (const subs of channels.values()) for (const ws of subs) ws.terminate();
});
