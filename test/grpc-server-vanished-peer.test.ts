/**
 * GrpcServer and peers that vanish.
 *
 * A gRPC server connection whose peer vanished is freed. Node's Http2Session
 * can stop reading its socket for good when the peer sends a request and
 * more frames and then closes while the server is answering (found by the
 * wire fuzzer): the socket never sees the EOF, and the session, its streams
 * and the file descriptor would stay forever. GrpcServer restarts reading on
 * every connection once a second, so such connections go within a second or
 * two. Over the unix socket (the frontend's usual transport) the leak
 * reproduces without the restart; over TLS (the agent port, the TCP
 * frontend) Node frees the connection by itself, and the test keeps it so.
 *
 * A stream the client resets before the server's 'stream' event is
 * delivered (which happens a tick late when http2 reads a JavaScript stream
 * rather than the native socket, as a proxy layer in front of it does) is
 * dropped: the handler used to be called with a stream that had no session
 * any more, and the TypeError took the whole server down.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import http2 from 'node:http2';
import { Duplex } from 'node:stream';
import { GrpcServer } from '../src/grpc/grpc-server.ts';
import { GrpcChannel, GrpcClientCall, type GrpcTarget } from '../src/grpc/grpc-client.ts';
import { packets } from '../src/protocol/packet.ts';
import { sharedPki } from './helpers/cluster.ts';

const METHOD = '/ProxyService/Proxy';

function connections(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** A stream that answers every packet, a second stream the server refuses (415), then the client disappears. */
async function vanish(target: GrpcTarget): Promise<void> {
  const channel = await GrpcChannel.connect(target);
  const request = (method: string) => {
    const h2 = channel.session.request({ ':method': method, ':path': METHOD, 'content-type': 'application/grpc', te: 'trailers' });
    h2.on('error', () => {});
    return h2;
  };
  const call = new GrpcClientCall(request('POST'), {});
  call.headers.catch(() => {});
  call.stream.send(packets.data(2n, Buffer.from('x')));
  request('GET');
  channel.destroy();
}

for (const transport of ['unix', 'tls'] as const) {
  test(`${transport}: connections whose client vanished mid-answer are freed (sessions, streams, sockets)`, async (t) => {
    const pki = await sharedPki();
    let openStreams = 0;
    const server = new GrpcServer({
      keepaliveTimeMs: 0,
      ...(transport === 'tls' ? { tls: { cert: pki.server.cert, key: pki.server.key } } : {}),
      handlers: {
        [METHOD]: (call) => {
          openStreams++;
          call.sendHeaders();
          call.stream.onPacket = (p) => call.stream.send(p); // answer while the client goes away
          call.stream.onClose = () => openStreams--;
        },
      },
    });
    let target: GrpcTarget;
    if (transport === 'unix') {
      const dir = mkdtempSync(path.join(tmpdir(), 'kts-vanish-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const sock = path.join(dir, 's.sock');
      server.listener.listen(sock);
      await once(server.listener, 'listening');
      target = { transport: 'unix', path: sock };
    } else {
      server.listener.listen(0, '127.0.0.1');
      await once(server.listener, 'listening');
      target = { transport: 'tls', host: '127.0.0.1', port: (server.listener.address() as net.AddressInfo).port, tls: { ca: pki.ca.cert, servername: 'localhost' } };
    }
    t.after(() => server.destroy());

    for (let i = 0; i < 8; i++) await vanish(target);
    const deadline = Date.now() + 5_000;
    while (server.sessionCount > 0 || openStreams > 0 || (await connections(server.listener)) > 0) {
      if (Date.now() > deadline) {
        assert.fail(`after 5 s: ${server.sessionCount} sessions, ${openStreams} streams, ${await connections(server.listener)} sockets still open`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  });
}

test('a stream reset before its stream event is dropped, not handed to the handler: the server survives', async (t) => {
  let handled = 0;
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    handlers: {
      [METHOD]: (call) => {
        handled++;
        call.sendHeaders();
      },
    },
  });
  t.after(() => server.destroy());
  // http2 gets a JavaScript stream over each socket, so it reads a tick late.
  const front = net.createServer((socket) => {
    socket.on('error', () => {});
    const js = new Duplex({
      read: () => socket.resume(),
      write: (chunk: Buffer, _encoding, done) => socket.write(chunk, done),
      final: (done) => {
        socket.end();
        done();
      },
      destroy: (err, done) => {
        socket.destroy();
        done(err);
      },
    });
    socket.on('data', (d: Buffer) => {
      if (!js.push(d)) socket.pause();
    });
    socket.on('end', () => js.push(null));
    socket.on('close', () => js.destroy());
    server.http2.emit('connection', js);
  });
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-js-stream-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 's.sock');
  front.listen(sock);
  await once(front, 'listening');
  t.after(() => new Promise<void>((resolve) => front.close(() => resolve())));

  for (let i = 0; i < 10; i++) {
    const channel = await GrpcChannel.connect({ transport: 'unix', path: sock });
    const call = channel.openStream(METHOD);
    call.stream.send(packets.drain());
    call.stream.h2.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    channel.close();
    await new Promise((r) => setTimeout(r, 20));
    channel.destroy();
  }
  // Still serving: a well-behaved call goes through.
  const channel = await GrpcChannel.connect({ transport: 'unix', path: sock });
  t.after(() => channel.destroy());
  const before = handled;
  await channel.openStream(METHOD).headers;
  assert.equal(handled, before + 1);
});
