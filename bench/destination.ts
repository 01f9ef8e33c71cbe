/**
 * The benchmark destination, run as its own process so the load generator
 * and the data source never share one event loop. Two listeners on loopback:
 *
 * - HTTP: a minimal HTTP/1.1 responder on raw sockets, same endpoints as the
 *   demo target of src/dev/local-cluster.ts: `GET /bytes/N` answers N bytes
 *   of 'a' (written in 1 MiB slices with backpressure), any other path a
 *   ~70-byte text body; keep-alive, Content-Length framing. Raw sockets
 *   rather than node:http so that the destination is never the bottleneck of
 *   the `direct` baseline.
 * - echo: a TCP echo server, for the many-connections scenario.
 * - stall: accepts and never reads (sockets paused from the start, so only
 *   the kernel's buffers take bytes), for the head-of-line scenario's
 *   "destination stops reading" variant.
 *
 * Prints one JSON line `{"http":PORT,"echo":PORT,"stall":PORT}` on stdout when
 * ready and exits when stdin closes (so it never outlives the bench). A line
 * `release-stalled` on stdin destroys every socket the stall listener holds
 * (a paused socket never notices its peer going away by itself); the answer
 * is a line `released N` on stdout.
 */
import net from 'node:net';
import { once } from 'node:events';

const SLICE = Buffer.alloc(1024 * 1024, 0x61);
const HEAD_END = Buffer.from('\r\n\r\n');

function smallAnswer(path: string): Buffer {
  const body = `hello from the demo target behind konnectivity: GET ${path}\n`;
  return Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, 'latin1');
}

function serveHttp(socket: net.Socket): void {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  let pending: Buffer = Buffer.alloc(0);
  let streaming = false;

  const next = (): void => {
    while (!streaming) {
      const end = pending.indexOf(HEAD_END);
      if (end < 0) return;
      const line = pending.toString('latin1', 0, pending.indexOf('\r\n'));
      pending = pending.subarray(end + 4);
      const path = line.split(' ')[1] ?? '/';
      if (path.startsWith('/bytes/')) {
        const total = Number(path.slice('/bytes/'.length)) || 0;
        socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`);
        streaming = true;
        let left = total;
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, SLICE.length);
            left -= n;
            if (!socket.write(n === SLICE.length ? SLICE : SLICE.subarray(0, n))) {
              if (left > 0) socket.once('drain', pump);
              else finish();
              return;
            }
          }
          finish();
        };
        const finish = (): void => {
          streaming = false;
          next();
        };
        pump();
      } else {
        socket.write(smallAnswer(path));
      }
    }
  };

  socket.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    next();
  });
}

const http = net.createServer(serveHttp);
const echo = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  socket.pipe(socket);
});
/** Sockets of the stall listener, held (unread) until `release-stalled`. */
const stalledSockets = new Set<net.Socket>();
const stall = net.createServer({ pauseOnConnect: true }, (socket) => {
  socket.on('error', () => {});
  stalledSockets.add(socket);
  socket.once('close', () => stalledSockets.delete(socket));
});
for (const srv of [http, echo, stall]) {
  srv.maxConnections = 1_000_000;
  srv.listen({ port: 0, host: '127.0.0.1', backlog: 4096 });
  await once(srv, 'listening');
}
const port = (s: net.Server): number => (s.address() as net.AddressInfo).port;
process.stdout.write(`${JSON.stringify({ http: port(http), echo: port(echo), stall: port(stall) })}\n`);
let commands = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (text: string) => {
  commands += text;
  for (let nl = commands.indexOf('\n'); nl >= 0; nl = commands.indexOf('\n')) {
    const command = commands.slice(0, nl).trim();
    commands = commands.slice(nl + 1);
    if (command === 'release-stalled') {
      const n = stalledSockets.size;
      for (const socket of stalledSockets) socket.destroy();
      stalledSockets.clear();
      process.stdout.write(`released ${n}\n`);
    }
  }
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
