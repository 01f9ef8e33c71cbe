/**
 * Our own HTTP/2 client (src/grpc/h2-client-session.ts) against Node's
 * HTTP/2 server (nghttp2) on a unix socket, and against a raw socket peer
 * that sends what a broken or hostile server might.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { H2_CANCEL, H2_REFUSED_STREAM, H2ClientSession, type H2ClientStream, type H2Headers } from '../src/grpc/h2-client-session.ts';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { GrpcServer } from '../src/grpc/grpc-server.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';

const MiB = 1024 * 1024;

function socketPath(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'kts-h2c-')), 's.sock');
}

async function h2Server(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void, settings: http2.Settings = {}): Promise<{ path: string; server: http2.Http2Server; sessions: Set<http2.ServerHttp2Session> }> {
  const sock = socketPath();
  const server = http2.createServer({ settings });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('stream', onStream);
  server.listen(sock);
  await once(server, 'listening');
  return { path: sock, server, sessions };
}

async function session(sock: string, opts: Partial<{ streamWindowBytes: number; connectionWindowBytes: number }> = {}): Promise<H2ClientSession> {
  const socket = net.connect(sock);
  await once(socket, 'connect');
  return new H2ClientSession(socket, { authority: 'localhost', scheme: 'http', streamWindowBytes: opts.streamWindowBytes ?? 4 * MiB, connectionWindowBytes: opts.connectionWindowBytes ?? 32 * MiB, maxFrameBytes: MiB });
}

function collect(stream: H2ClientStream): Promise<{ headers: H2Headers; body: Buffer; trailers: H2Headers | null }> {
  return new Promise((resolve, reject) => {
    let headers: H2Headers = {};
    let trailers: H2Headers | null = null;
    const chunks: Buffer[] = [];
    stream.once('response', (h: H2Headers) => (headers = h));
    stream.once('trailers', (t: H2Headers) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
    stream.on('error', reject);
    stream.once('close', () => resolve({ headers, body: Buffer.concat(chunks), trailers }));
  });
}

/** Resolves on 'close' (events.once would reject on the 'error' that may come first). */
function closed(emitter: { once(event: 'close', cb: () => void): unknown }): Promise<void> {
  return new Promise((resolve) => emitter.once('close', () => resolve()));
}

async function stop(server: http2.Http2Server | net.Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

test('request headers, a body both ways far beyond the peer windows, trailers', async () => {
  // The server grants 1 KiB per stream and Node's 64 KiB on the connection: the
  // upload must wait for WINDOW_UPDATEs many times over.
  const { path: sock, server, sessions } = await h2Server(
    (stream, headers) => {
      const seen = { method: headers[':method'], path: headers[':path'], scheme: headers[':scheme'], authority: headers[':authority'], te: headers['te'], ua: headers['user-agent'] };
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const body = Buffer.concat(chunks);
        stream.respond({ ':status': 200, 'x-seen': JSON.stringify(seen), 'x-length': String(body.length) }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }));
        stream.end(body); // echo: 3 MiB back through our 4 MiB stream window and its credit
      });
    },
    { initialWindowSize: 1024 },
  );
  const s = await session(sock);
  const stream = s.request({ ':path': '/Svc/Echo', te: 'trailers', 'user-agent': 'kts-test' });
  const result = collect(stream);
  const body = Buffer.alloc(3 * MiB);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
  for (let off = 0; off < body.length; off += 100_000) stream.write(body.subarray(off, off + 100_000));
  stream.end();
  const { headers, body: echoed, trailers } = await result;
  assert.deepEqual(JSON.parse(String(headers['x-seen'])), { method: 'POST', path: '/Svc/Echo', scheme: 'http', authority: 'localhost', te: 'trailers', ua: 'kts-test' });
  assert.equal(headers[':status'], '200');
  assert.equal(headers['x-length'], String(body.length));
  assert.ok(echoed.equals(body), 'echo differs');
  assert.deepEqual({ status: trailers?.['grpc-status'], message: trailers?.['grpc-message'] }, { status: '0', message: 'fine' });
  assert.equal(stream.rstCode, undefined);
  s.close();
  await closed(s);
  // Our GOAWAY and FIN close the server's session too.
  while (sessions.size > 0) await new Promise((r) => setTimeout(r, 5));
  await stop(server);
});

test('a paused stream holds back only its own sender: the others on the connection keep flowing', async () => {
  const { path: sock, server } = await h2Server((stream, headers) => {
    stream.respond({ ':status': 200 });
    const total = Number(headers['x-bytes']);
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const n = Math.min(64 * 1024, total - sent);
        sent += n;
        if (!stream.write(Buffer.alloc(n, 1))) {
          stream.once('drain', pump);
          return;
        }
      }
      stream.end();
    };
    pump();
  });
  // A stream window larger than the connection window: credit held back for the paused stream would block the connection.
  const s = await session(sock, { streamWindowBytes: 256 * 1024, connectionWindowBytes: 100 * 1024 });
  const stalled = s.request({ ':path': '/stalled', 'x-bytes': String(8 * MiB) });
  let stalledBytes = 0;
  stalled.on('data', (c: Buffer) => {
    stalledBytes += c.length;
    stalled.pause();
  });
  const other = s.request({ ':path': '/other', 'x-bytes': String(16 * MiB) });
  const done = collect(other);
  const { body } = await done;
  assert.equal(body.length, 16 * MiB, 'the other stream got everything, past the connection window many times');
  // The stalled stream got at most its window: the sender is held back by it.
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(stalledBytes <= 256 * 1024, `stalled stream delivered ${stalledBytes} bytes`);
  assert.equal(stalled.destroyed, false);
  // Resumed, it completes.
  let rest = 0;
  stalled.removeAllListeners('data');
  stalled.on('data', (c: Buffer) => (rest += c.length));
  const stalledClosed = closed(stalled);
  stalled.resume();
  await stalledClosed;
  assert.equal(stalledBytes + rest, 8 * MiB);
  s.close();
  await stop(server);
});

test('RST_STREAM from the server closes that stream with its code; the session stays usable', async () => {
  const { path: sock, server } = await h2Server((stream, headers) => {
    stream.on('error', () => {}); // Node reports its own reset as an error on the server stream
    if (headers[':path'] === '/reset') stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    else {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    }
  });
  const s = await session(sock);
  const reset = s.request({ ':path': '/reset' });
  const errors: Error[] = [];
  reset.on('error', (e: Error) => errors.push(e));
  await closed(reset);
  assert.equal(reset.rstCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  assert.match(errors[0]?.message ?? '', /HTTP\/2 code 11/);
  const fine = s.request({ ':path': '/fine' });
  fine.end();
  const { body } = await collect(fine);
  assert.equal(body.toString(), 'ok');
  s.close();
  await stop(server);
});

test('our close(code) sends RST_STREAM: the server sees the stream aborted with that code', async () => {
  let serverSaw: Promise<number> | null = null;
  const { path: sock, server } = await h2Server((stream) => {
    serverSaw = new Promise((resolve) => stream.once('close', () => resolve(stream.rstCode)));
    stream.respond({ ':status': 200 });
  });
  const s = await session(sock);
  const stream = s.request({ ':path': '/x' });
  await once(stream, 'response');
  stream.close(H2_CANCEL);
  await closed(stream);
  assert.equal(stream.rstCode, H2_CANCEL);
  while (serverSaw === null) await new Promise((r) => setTimeout(r, 5));
  assert.equal(await serverSaw, http2.constants.NGHTTP2_CANCEL);
  s.close();
  await stop(server);
});

test('GOAWAY: streams the server never processed are refused, processed ones finish, no new streams', async () => {
  const { path: sock, server, sessions } = await h2Server((stream) => {
    stream.respond({ ':status': 200 });
    setTimeout(() => stream.end('late'), 50);
  });
  const s = await session(sock);
  const first = s.request({ ':path': '/1' });
  first.end();
  const firstDone = collect(first);
  await once(first, 'response');
  const goaway = once(s, 'goaway');
  // Node's server: GOAWAY naming stream 1 as the last processed one.
  [...sessions][0]!.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
  const [code, lastStreamId] = (await goaway) as [number, number];
  assert.deepEqual([code, lastStreamId], [0, 1]);
  assert.equal(s.closed, true);
  assert.throws(() => s.request({ ':path': '/3' }), /closed/);
  assert.equal((await firstDone).body.toString(), 'late');
  await closed(s);
  await stop(server);
});

test('a stream opened after the last one the server processed is reset with REFUSED_STREAM', async () => {
  const sock = socketPath();
  // A raw peer: SETTINGS, then GOAWAY(last stream 0) once the client has opened stream 1.
  const server = net.createServer((c) => {
    c.on('error', () => {});
    c.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    c.once('data', () => c.write(Buffer.from([0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
  });
  server.listen(sock);
  await once(server, 'listening');
  const s = await session(sock);
  const stream = s.request({ ':path': '/1' });
  const errors: Error[] = [];
  stream.on('error', (e: Error) => errors.push(e));
  await closed(stream);
  assert.equal(stream.rstCode, H2_REFUSED_STREAM);
  assert.match(errors[0]?.message ?? '', /HTTP\/2 code 7/);
  s.destroy();
  await stop(server);
});

test('PING both ways: the server’s pings are acknowledged, ours come back with their ACK', async () => {
  const { path: sock, server, sessions } = await h2Server(() => {});
  const s = await session(sock);
  await once(s, 'remoteSettings');
  const ms = await new Promise<number>((resolve, reject) => s.ping((err, d) => (err ? reject(err) : resolve(d))));
  assert.ok(ms >= 0);
  const serverSession = [...sessions][0]!;
  const rtt = await new Promise<number>((resolve, reject) => serverSession.ping((err, d) => (err ? reject(err) : resolve(d))));
  assert.ok(rtt >= 0);
  s.close();
  await stop(server);
});

test('a header block split over HEADERS and CONTINUATION frames, with Huffman and a dynamic table, decodes', async () => {
  const sock = socketPath();
  const server = http2.createServer({ settings: { maxFrameSize: 16_384 } });
  const big = 'v'.repeat(40_000); // larger than a 16 KiB frame: nghttp2 continues the block
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200, 'x-big': big, 'x-small': 'same' });
    stream.end();
  });
  server.listen(sock);
  await once(server, 'listening');
  const socket = net.connect(sock);
  await once(socket, 'connect');
  // Our advertised max frame size is the default, so the server must split the block.
  const s = new H2ClientSession(socket, { authority: 'localhost', scheme: 'http', streamWindowBytes: MiB, connectionWindowBytes: MiB, maxFrameBytes: 16_384 });
  for (let i = 0; i < 3; i++) {
    const stream = s.request({ ':path': `/${i}` });
    stream.end();
    const { headers } = await collect(stream);
    assert.equal(headers['x-big'], big);
    assert.equal(headers['x-small'], 'same');
  }
  s.close();
  await stop(server);
});

for (const [what, frame, expect] of [
  ['a frame above our SETTINGS_MAX_FRAME_SIZE', Buffer.from([0x20, 0, 0, 0, 0, 0, 0, 0, 1]), /exceeds our SETTINGS_MAX_FRAME_SIZE/],
  ['a header block HPACK cannot decode', Buffer.from([0, 0, 1, 1, 5, 0, 0, 0, 1, 0xff]), /header block/],
  ['DATA on a stream never opened', Buffer.from([0, 0, 1, 0, 0, 0, 0, 0, 9, 0x41]), /idle stream 9/],
  ['a PUSH_PROMISE although push is off', Buffer.from([0, 0, 4, 5, 4, 0, 0, 0, 1, 0, 0, 0, 2]), /PUSH_PROMISE/],
  ['a SETTINGS frame of 5 bytes', Buffer.from([0, 0, 5, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0]), /multiple of 6/],
] as const) {
  test(`bad input from the server: ${what} fails the connection with GOAWAY and a precise error`, async () => {
    const sock = socketPath();
    let fromClient = Buffer.alloc(0);
    const clientDone = new Promise<void>((resolve) => {
      const server = net.createServer((c) => {
        c.on('data', (d: Buffer) => {
          fromClient = Buffer.concat([fromClient, d]);
          // Once the client's HEADERS for stream 1 is in, misbehave.
          if (fromClient.length > 24 + 9 + 18 && !c.destroyed) c.write(Buffer.concat([Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]), frame]));
        });
        c.on('error', () => {});
        c.on('close', () => {
          server.close();
          resolve();
        });
      });
      server.listen(sock);
    });
    await new Promise((r) => setTimeout(r, 20));
    const s = await session(sock);
    const stream = s.request({ ':path': '/1' });
    const errors: Error[] = [];
    stream.on('error', (e: Error) => errors.push(e));
    await closed(stream);
    assert.match(errors[0]?.message ?? '', expect);
    assert.equal(s.destroyed, true);
    await clientDone;
    // The last frame the client sent is a GOAWAY (type 7) naming the error.
    const goawayAt = fromClient.lastIndexOf(Buffer.from([7, 0, 0, 0, 0, 0]));
    assert.ok(goawayAt > 0, 'no GOAWAY sent');
  });
}

test('GrpcChannel.connectBuiltin: a gRPC call against our GrpcServer, packets both ways and the status', async () => {
  const sock = socketPath();
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    handlers: {
      '/ProxyService/Proxy': (call) => {
        call.sendHeaders();
        call.stream.onPacket = (p) => call.stream.send(p);
        call.stream.onRemoteEnd = () => call.finish(GrpcCode.OK);
      },
    },
  });
  server.listener.listen(sock);
  await once(server.listener, 'listening');
  const ch = await GrpcChannel.connectBuiltin({ transport: 'unix', path: sock });
  const call = ch.openStream('/ProxyService/Proxy');
  const got: Packet[] = [];
  call.stream.onPacket = (p) => got.push(p);
  call.stream.send(packets.dialRequest('10.0.0.1:443', 1n << 62n));
  call.stream.send(packets.data(5n, Buffer.alloc(3 * MiB, 3))); // under the 4 MiB message limit, over the 4 MiB window with the echo
  call.closeSend();
  assert.deepEqual(await call.status, { code: GrpcCode.OK, message: '' });
  assert.equal(got.length, 2);
  assert.equal(got[0]!.type === PacketType.DIAL_REQ && got[0]!.dialRequest.random, 1n << 62n);
  assert.equal(got[1]!.type === PacketType.DATA && got[1]!.data.data.length, 3 * MiB);
  // An unknown method: trailers-only UNIMPLEMENTED.
  const bad = ch.openStream('/Nope/Nope');
  await assert.rejects(bad.headers, /unknown method|UNIMPLEMENTED|not implemented/i);
  assert.equal((await bad.status).code, GrpcCode.UNIMPLEMENTED);
  ch.close();
  await server.closeGracefully();
});
