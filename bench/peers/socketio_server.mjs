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

import { Server } from 'socket.io';

import { publishServer, serve } from './publish_http.mjs';

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8080);

// Socket.IO users emit objects: the payload is parsed (false: not JSON, answered 400).
const httpServer = publishServer((channel, body) => {
  let payload;
  try {
    payload = JSON.parse(body);
  } catch {
    return false;
  }
  io.to(channel).emit('message', payload);
  return true;
});

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

serve(httpServer, host, port, () => io.close());
