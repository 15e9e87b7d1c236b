// The benchmark peer "socketio": one Node process running Socket.IO 4 the way its users
// write it (rooms, io.to(room).emit), WebSocket transport only. Started by peers.sh with
// HOST and PORT in the environment; prints "ready" once it listens; exits on SIGTERM.
//
// Subscribe:  Engine.IO v4 over WebSocket: GET /socket.io/?EIO=4&transport=websocket
//   client -> 40                          connect to the default namespace
//   server -> 40{"sid":"..."}
//   client -> 42["subscribe","<channel>"] join room <channel>
//   server -> 42["subscribed","<channel>"]
//   server -> 42["message",<payload>]     for every message published to <channel>
//   The server pings with "2" every pingInterval; a client must answer "3".
// Publish:    POST /publish/{channel}, body = a JSON text: parsed (Socket.IO users emit
//   objects) and emitted with io.to(channel).emit('message', payload), then 200 "ok".
//   A body that is not JSON answers 400.
// Channel names in paths: [A-Za-z0-9._~-]+ (taken as they are, no percent-decoding); any
// other path answers 404.
// Jam relay (for the jam-relay workload):
//   client -> 42["join","<room>"]         join room <room>
//   server -> 42["joined","<room>"]
//   client -> 42["relay","<room>",<data>] socket.to(room).emit('relay', data): everyone
//   in the room but the sender gets 42["relay",<data>] (the sender need not have joined).

import http from 'node:http';
import { Server } from 'socket.io';

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8080);

const PUBLISH = /^\/publish\/([A-Za-z0-9._~-]+)$/;

const httpServer = http.createServer((req, res) => {
  const m = req.method === 'POST' && PUBLISH.exec(req.url);
  if (!m) {
    // socket.io answers its own /socket.io/ requests before this listener runs.
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 9 });
    res.end('not found');
    return;
  }
  const channel = m[1];
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let payload;
    try {
      payload = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400, { 'Content-Type': 'text/plain', 'Content-Length': 8 });
      res.end('bad json');
      return;
    }
    io.to(channel).emit('message', payload);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
    res.end('ok');
  });
});
// Publishers keep one connection for the whole run.
httpServer.keepAliveTimeout = 0;
httpServer.headersTimeout = 0;
httpServer.requestTimeout = 0;

const io = new Server(httpServer, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  httpCompression: false,
  maxHttpBufferSize: 1e6,
  // Socket.IO's defaults (25 s / 20 s): clients must answer pings, as real ones do.
  pingInterval: 25000,
  pingTimeout: 20000,
});

io.on('connection', (socket) => {
  socket.on('subscribe', (channel) => {
    socket.join(String(channel));
    socket.emit('subscribed', String(channel));
  });
  socket.on('join', (room) => {
    socket.join(String(room));
    socket.emit('joined', String(room));
  });
  socket.on('relay', (room, data) => {
    socket.to(String(room)).emit('relay', data);
  });
});

const shutdown = () => {
  io.close();
  httpServer.closeAllConnections?.();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

httpServer.listen({ host, port, backlog: 16384 }, () => {
  process.stdout.write('ready\n');
});
