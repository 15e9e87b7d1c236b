// The HTTP side the Node peers share, and how they run: POST /publish/{channel} hands
// the body (text) to `publish(channel, body)` and answers 200 "ok" once it returns;
// anything else is 404 (socket.io answers its own /socket.io/ requests before this
// listener runs). Publishers keep one connection for the whole run, so no timeouts.
import http from 'node:http';

const PUBLISH = /^\/publish\/([A-Za-z0-9._~-]+)$/;

export function publishServer(publish) {
  const server = http.createServer((req, res) => {
    const m = req.method === 'POST' && PUBLISH.exec(req.url);
    if (!m) {
      res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 9 });
      res.end('not found');
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const [status, text] = publish(m[1], Buffer.concat(chunks).toString('utf8')) === false
        ? [400, 'bad json'] : [200, 'ok'];
      res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': text.length });
      res.end(text);
    });
  });
  server.keepAliveTimeout = 0;
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  return server;
}

// Listens on HOST:PORT (a deep backlog: thousands of subscribers connect at once),
// prints "ready", and on SIGTERM or SIGINT calls stop(), closes every connection and
// exits 0.
export function serve(server, host, port, stop) {
  const shutdown = () => {
    stop();
    server.closeAllConnections?.();
    process.exit(0);
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  server.listen({ host, port, backlog: 16384 }, () => {
    process.stdout.write('ready\n');
  });
}
