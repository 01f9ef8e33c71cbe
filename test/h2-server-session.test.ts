/**
 * Our own HTTP/2 server (src/grpc/h2-server-session.ts) against Node's
 * HTTP/2 client (nghttp2) on a unix socket, and against a raw socket peer
 * that sends what a broken or hostile client might.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { H2ServerSession, MAX_HEADER_LIST_BYTES, RESET_BURST, type H2ServerStream } from '../src/grpc/h2-server-session.ts';
import { H2ClientSession } from '../src/grpc/h2-client-session.ts';
import { encodeHeaderBlock } from '../src/grpc/hpack-encoder.ts';
import { CLIENT_PREFACE, type H2Headers } from '../src/grpc/h2-frames.ts';
import { frame } from './helpers/http2-raw.ts';
import { MAX_PENDING_REPLIES } from '../src/grpc/h2-session.ts';

const MiB = 1024 * 1024;

function socketPath(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'kts-h2s-')), 's.sock');
}

interface Rig {
  path: string;
  server: net.Server;
  sessions: H2ServerSession[];
}

type OnStream = (stream: H2ServerStream, headers: H2Headers, raw: string[]) => void;

async function h2Server(onStream: OnStream, opts: Partial<{ streamWindowBytes: number; connectionWindowBytes: number; maxHeldBytes: number }> = {}): Promise<Rig> {
  const sock = socketPath();
  const sessions: H2ServerSession[] = [];
  const server = net.createServer((socket) => {
    sessions.push(
      new H2ServerSession(socket, {
        streamWindowBytes: opts.streamWindowBytes ?? 4 * MiB,
        connectionWindowBytes: opts.connectionWindowBytes ?? 32 * MiB,
        maxFrameBytes: MiB,
        ...(opts.maxHeldBytes !== undefined ? { maxHeldBytes: opts.maxHeldBytes } : {}),
        onStream,
      }),
    );
  });
  server.listen(sock);
  await once(server, 'listening');
  return { path: sock, server, sessions };
}

async function nodeClient(sock: string, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const c = http2.connect('http://localhost', { createConnection: () => net.connect(sock), settings });
  c.on('error', () => {});
  await once(c, 'connect');
  return c;
}

function collect(req: http2.ClientHttp2Stream): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders | null; rstCode: number }> {
  return new Promise((resolve) => {
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | null = null;
    const chunks: Buffer[] = [];
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('close', () => resolve({ headers, body: Buffer.concat(chunks), trailers, rstCode: req.rstCode ?? 0 }));
  });
}

async function stop(rig: Rig): Promise<void> {
  for (const s of rig.sessions) s.destroy();
  await new Promise<void>((resolve) => rig.server.close(() => resolve()));
}

function pattern(bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7) & 0xff;
  return b;
}

test('Node’s client: request headers in, a body both ways far beyond the windows, response headers and trailers out', async () => {
  const rig = await h2Server(
    (stream, headers) => {
      const seen = { method: headers[':method'], path: headers[':path'], authority: headers[':authority'], md: headers['x-md'] };
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
      stream.on('end', () => {
        const body = Buffer.concat(chunks);
        stream.respond({ ':status': 200, 'x-seen': JSON.stringify(seen), 'x-length': String(body.length) }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }));
        for (let off = 0; off < body.length; off += 100_000) stream.write(body.subarray(off, off + 100_000));
        stream.end();
      });
    },
    { streamWindowBytes: 1024, connectionWindowBytes: 65_535 },
  );
  // The client grants 1 KiB per stream too: the echo must wait for its WINDOW_UPDATEs many times over.
  const c = await nodeClient(rig.path, { initialWindowSize: 1024 });
  const req = c.request({ ':method': 'POST', ':path': '/Svc/Echo', 'x-md': ['a', 'b'] }, { waitForTrailers: false });
  const result = collect(req);
  const body = pattern(3 * MiB);
  req.end(body);
  const { headers, body: echoed, trailers, rstCode } = await result;
  assert.deepEqual(JSON.parse(String(headers['x-seen'])), { method: 'POST', path: '/Svc/Echo', authority: 'localhost:80', md: ['a', 'b'] });
  assert.equal(headers[':status'], 200);
  assert.ok(echoed.equals(body), `echo differs (${echoed.length} bytes)`);
  assert.deepEqual({ status: trailers?.['grpc-status'], message: trailers?.['grpc-message'] }, { status: '0', message: 'fine' });
  assert.equal(rstCode, 0);
  c.close();
  await stop(rig);
});

test('a trailers-only response, and an authority nghttp2 would refuse (a unix socket path, as grpc-go < 1.57 sends)', async () => {
  const authorities: unknown[] = [];
  const rig = await h2Server((stream, headers) => {
    authorities.push(headers[':authority']);
    stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'no such method' }, { endStream: true });
  });
  const socket = net.connect(rig.path);
  await once(socket, 'connect');
  const s = new H2ClientSession(socket, { authority: '/etc/kubernetes/konnectivity-server/konnectivity-server.socket', scheme: 'http', streamWindowBytes: MiB, connectionWindowBytes: MiB, maxFrameBytes: MiB });
  const stream = s.request({ ':path': '/Svc/Missing', 'content-type': 'application/grpc' });
  const response = new Promise<H2Headers>((resolve) => stream.once('response', (h: H2Headers) => resolve(h)));
  stream.end();
  await once(stream, 'close');
  const h = await response;
  assert.deepEqual([h[':status'], h['grpc-status'], h['grpc-message']], ['200', '12', 'no such method']);
  assert.deepEqual(authorities, ['/etc/kubernetes/konnectivity-server/konnectivity-server.socket']);
  s.destroy();
  await stop(rig);
});

test('a paused server stream holds back only its own sender, even with a stream window larger than the connection window', async () => {
  const streams = new Map<string, { stream: H2ServerStream; bytes: number }>();
  const rig = await h2Server(
    (stream, headers) => {
      const entry = { stream, bytes: 0 };
      streams.set(String(headers[':path']), entry);
      stream.respond({ ':status': 200 });
      stream.on('data', (c: Buffer) => (entry.bytes += c.length));
      stream.on('end', () => stream.end());
      if (headers[':path'] === '/paused') stream.pause();
    },
    { streamWindowBytes: 2 * MiB, connectionWindowBytes: MiB },
  );
  const c = await nodeClient(rig.path);
  const paused = c.request({ ':method': 'POST', ':path': '/paused' });
  paused.on('error', () => {});
  paused.write(pattern(2 * MiB));
  // Let the paused stream's 2 MiB (twice the connection window) arrive first.
  while (rig.sessions[0]?.heldByPausedReaders !== 2 * MiB) await new Promise((r) => setTimeout(r, 5));
  const flowing = c.request({ ':method': 'POST', ':path': '/flowing' });
  const done = collect(flowing);
  flowing.end(pattern(8 * MiB));
  await done;
  assert.equal(streams.get('/flowing')?.bytes, 8 * MiB, 'the flowing stream got everything while the other was paused');
  assert.equal(streams.get('/paused')?.bytes, 0);
  streams.get('/paused')!.stream.resume();
  const pausedDone = collect(paused);
  paused.end();
  await pausedDone;
  assert.equal(streams.get('/paused')?.bytes, 2 * MiB);
  assert.equal(rig.sessions[0]!.heldByPausedReaders, 0);
  c.close();
  await stop(rig);
});

test('bytes held for paused readers past maxHeldBytes stop connection credit; resuming lets the rest through', async () => {
  const entries: Array<{ stream: H2ServerStream; bytes: number }> = [];
  const rig = await h2Server(
    (stream) => {
      const entry = { stream, bytes: 0 };
      entries.push(entry);
      stream.respond({ ':status': 200 });
      stream.pause();
      stream.on('data', (c: Buffer) => (entry.bytes += c.length));
      stream.on('end', () => stream.end());
    },
    { streamWindowBytes: MiB, connectionWindowBytes: MiB, maxHeldBytes: MiB },
  );
  const c = await nodeClient(rig.path);
  const requests = [0, 1, 2, 3].map(() => {
    const r = c.request({ ':method': 'POST', ':path': '/held' });
    const done = collect(r);
    r.end(pattern(MiB));
    return done;
  });
  // Four streams of 1 MiB each would hold 4 MiB; the bound plus one connection window is the most.
  let peak = 0;
  for (let i = 0; i < 60; i++) {
    peak = Math.max(peak, rig.sessions[0]?.heldByPausedReaders ?? 0);
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(peak > MiB, `held ${peak}: the bound was reached`);
  assert.ok(peak <= 2 * MiB, `held ${peak} bytes, above maxHeldBytes + the connection window`);
  for (const e of entries) e.stream.resume();
  await Promise.all(requests);
  assert.deepEqual(
    entries.map((e) => e.bytes),
    [MiB, MiB, MiB, MiB],
  );
  c.close();
  await stop(rig);
});

test('RST_STREAM from the client closes that stream with its code; our close(code) reaches the client; the connection stays usable', async () => {
  const closedCodes: Array<number | undefined> = [];
  const rig = await h2Server((stream, headers) => {
    stream.on('error', () => {});
    stream.on('close', () => closedCodes.push(stream.rstCode));
    stream.respond({ ':status': 200 });
    if (headers[':path'] === '/server-resets') stream.close(0x2);
    if (headers[':path'] === '/ok') stream.end();
  });
  const c = await nodeClient(rig.path);
  const cancelled = c.request({ ':method': 'POST', ':path': '/client-resets' });
  cancelled.on('error', () => {});
  await once(cancelled, 'response');
  cancelled.close(http2.constants.NGHTTP2_CANCEL);
  const reset = collect(c.request({ ':method': 'POST', ':path': '/server-resets' }));
  assert.equal((await reset).rstCode, 0x2);
  const okRequest = c.request({ ':method': 'POST', ':path': '/ok' });
  okRequest.end();
  const ok = await collect(okRequest);
  assert.equal(ok.headers[':status'], 200);
  while (closedCodes.length < 3) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(new Set(closedCodes), new Set([http2.constants.NGHTTP2_CANCEL, 0x2, undefined]));
  c.close();
  await stop(rig);
});

test('graceful close: GOAWAY names the last stream, which finishes; then the connection ends', async () => {
  const held: H2ServerStream[] = [];
  const rig = await h2Server((stream) => {
    stream.respond({ ':status': 200 });
    held.push(stream);
    stream.on('end', () => stream.end());
  });
  const c = await nodeClient(rig.path);
  const first = c.request({ ':method': 'POST', ':path': '/first' });
  const firstDone = collect(first);
  while (held.length < 1) await new Promise((r) => setTimeout(r, 5));
  const goaway = once(c, 'goaway');
  rig.sessions[0]!.close();
  const [code, lastStreamId] = (await goaway) as [number, number];
  assert.deepEqual([code, lastStreamId], [0, 1]);
  first.end('bye');
  const r = await firstDone;
  assert.equal(r.headers[':status'], 200);
  assert.equal(r.rstCode, 0);
  // Our GOAWAY and no streams left: the connection ends by itself.
  while (!rig.sessions[0]!.destroyed) await new Promise((r) => setTimeout(r, 5));
  await stop(rig);
});

test('PING both ways: the client’s pings are acknowledged, ours come back with their ACK', async () => {
  const rig = await h2Server(() => {});
  const c = await nodeClient(rig.path);
  const rtt = await new Promise<number>((resolve, reject) => c.ping((err, ms) => (err ? reject(err) : resolve(ms))));
  assert.ok(rtt >= 0);
  const ours = await new Promise<number>((resolve, reject) => rig.sessions[0]!.ping((err, ms) => (err ? reject(err) : resolve(ms))));
  assert.ok(ours >= 0);
  c.close();
  await stop(rig);
});

// --- a raw client -----------------------------------------------------------------

const PREFACE = CLIENT_PREFACE;
const EMPTY_SETTINGS = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

function requestHeaders(streamId: number, fields: Array<[string, string]>, endStream = false): Buffer {
  return frame(1, 0x4 | (endStream ? 1 : 0), streamId, encodeHeaderBlock(fields));
}

const GOOD_REQUEST: Array<[string, string]> = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', '/Svc/M'],
  [':authority', 'localhost'],
];

/** Frames from the server, parsed from everything it sent until it closed (or `untilMs`). */
async function rawExchange(sock: string, send: Buffer | ((s: net.Socket) => void), untilMs = 2_000): Promise<Array<{ type: number; flags: number; streamId: number; payload: Buffer }>> {
  const s = net.connect(sock);
  await once(s, 'connect');
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', () => {});
  if (Buffer.isBuffer(send)) s.write(send);
  else send(s);
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, untilMs))]);
  s.destroy();
  const all = Buffer.concat(chunks);
  const frames = [];
  for (let off = 0; off + 9 <= all.length; ) {
    const len = all.readUIntBE(off, 3);
    frames.push({ type: all[off + 3]!, flags: all[off + 4]!, streamId: all.readUInt32BE(off + 5) & 0x7fffffff, payload: all.subarray(off + 9, off + 9 + len) });
    off += 9 + len;
  }
  return frames;
}

function goawayOf(frames: Array<{ type: number; payload: Buffer }>): { code: number; debug: string } | null {
  const g = frames.find((f) => f.type === 7);
  return g ? { code: g.payload.readUInt32BE(4), debug: g.payload.subarray(8).toString() } : null;
}

for (const [what, bytes, code, debug] of [
  ['an HTTP/1.1 request instead of the preface', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 0x1, /client preface/],
  ['a frame above our SETTINGS_MAX_FRAME_SIZE', Buffer.concat([PREFACE, EMPTY_SETTINGS, Buffer.from([0x20, 0, 0, 0, 0, 0, 0, 0, 1])]), 0x6, /exceeds our SETTINGS_MAX_FRAME_SIZE/],
  ['a header block HPACK cannot decode', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(1, 5, 1, Buffer.from([0xff]))]), 0x9, /header block/],
  ['DATA on a stream never opened', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(0, 0, 9, Buffer.from('x'))]), 0x1, /idle stream 9/],
  ['HEADERS on an even (server-initiated) stream', Buffer.concat([PREFACE, EMPTY_SETTINGS, requestHeaders(2, GOOD_REQUEST)]), 0x1, /server-initiated stream 2/],
  ['a PUSH_PROMISE from a client', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(5, 4, 1, Buffer.from([0, 0, 0, 2]))]), 0x1, /PUSH_PROMISE/],
  ['a header block interrupted by another frame', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(1, 0, 1, encodeHeaderBlock(GOOD_REQUEST)), frame(6, 0, 0, Buffer.alloc(8))]), 0x1, /interrupted/],
  ['a CONTINUATION flood: a header block in empty frames that never ends', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(1, 0, 1, encodeHeaderBlock(GOOD_REQUEST)), ...Array.from({ length: 600 }, () => frame(9, 0, 1))]), 0xb, /more than 512 frames/],
  ['a header block over 256 KiB', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(1, 0, 1, encodeHeaderBlock(GOOD_REQUEST)), ...Array.from({ length: 17 }, () => frame(9, 0, 1, Buffer.alloc(16_384)))]), 0x1, /header block over 262144 bytes/],
  ['RST_STREAM on a stream never opened', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(3, 0, 5, Buffer.from([0, 0, 0, 8]))]), 0x1, /RST_STREAM on idle stream 5/],
  ['SETTINGS_ENABLE_PUSH of 2', Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.from([0, 2, 0, 0, 0, 2]))]), 0x1, /SETTINGS_ENABLE_PUSH 2/],
  ['a WINDOW_UPDATE that overflows the connection window', Buffer.concat([PREFACE, EMPTY_SETTINGS, frame(8, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff]))]), 0x3, /above 2\^31-1/],
] as const) {
  test(`bad input from a client: ${what} fails that connection with GOAWAY ${code} and a precise reason`, async () => {
    let streams = 0;
    const rig = await h2Server(() => streams++);
    const frames = await rawExchange(rig.path, bytes);
    assert.deepEqual(frames[0] && [frames[0].type, frames[0].flags], [4, 0], 'our SETTINGS come first');
    const g = goawayOf(frames);
    assert.ok(g, 'no GOAWAY');
    assert.equal(g.code, code);
    assert.match(g.debug, debug);
    assert.equal(rig.sessions[0]!.destroyed, true);
    assert.equal(streams, 0);
    await stop(rig);
  });
}

test('a malformed request or one over the header list limit resets only its stream; the next request on the connection is served', async () => {
  const paths: string[] = [];
  const rig = await h2Server((stream, headers) => {
    paths.push(String(headers[':path']));
    stream.respond({ ':status': 200 }, { endStream: true });
  });
  const big: Array<[string, string]> = [...GOOD_REQUEST, ['x-big', 'a'.repeat(MAX_HEADER_LIST_BYTES)]];
  const frames = await rawExchange(
    rig.path,
    (s) => {
      s.write(Buffer.concat([PREFACE, EMPTY_SETTINGS]));
      s.write(requestHeaders(1, [[':method', 'POST'], [':scheme', 'http'], [':authority', 'x']])); // no :path
      s.write(requestHeaders(3, [['content-type', 'x'], ...GOOD_REQUEST])); // pseudo-header after a regular one
      s.write(requestHeaders(5, [...GOOD_REQUEST, [':protocol', 'websocket']])); // not a request pseudo-header
      // The big block goes in CONTINUATION frames of 16 KiB (the size a client may use before our SETTINGS are acknowledged).
      const block = encodeHeaderBlock(big);
      for (let off = 0; off < block.length; off += 16_384) s.write(frame(off === 0 ? 1 : 9, off + 16_384 >= block.length ? 4 : 0, 7, block.subarray(off, off + 16_384)));
      s.write(requestHeaders(9, GOOD_REQUEST, true));
    },
    300,
  );
  const resets = frames.filter((f) => f.type === 3).map((f) => [f.streamId, f.payload.readUInt32BE(0)]);
  assert.deepEqual(resets, [
    [1, 1],
    [3, 1],
    [5, 1],
    [7, 1],
  ]);
  assert.deepEqual(paths, ['/Svc/M']);
  assert.ok(frames.some((f) => f.type === 1 && f.streamId === 9), 'stream 9 answered');
  assert.equal(goawayOf(frames), null);
  await stop(rig);
});

test('rapid reset: a client opening and resetting streams past the burst gets GOAWAY ENHANCE_YOUR_CALM', async () => {
  let opened = 0;
  const rig = await h2Server((stream) => {
    opened++;
    stream.on('error', () => {});
  });
  const frames = await rawExchange(rig.path, (s) => {
    const parts: Buffer[] = [PREFACE, EMPTY_SETTINGS];
    for (let i = 0; i < RESET_BURST + 50; i++) {
      const id = 2 * i + 1;
      parts.push(requestHeaders(id, GOOD_REQUEST), frame(3, 0, id, Buffer.from([0, 0, 0, 8])));
    }
    s.write(Buffer.concat(parts));
  });
  const g = goawayOf(frames);
  assert.equal(g?.code, 0xb);
  assert.match(g?.debug ?? '', /reset streams faster than/);
  assert.ok(opened >= RESET_BURST && opened < RESET_BURST + 50, `${opened} streams reached the handler`);
  await stop(rig);
});

// kube-apiserver's reusable gRPC tunnel (konnectivity-client's CreateGRPCTunnel) cancels every Proxy
// stream once its CLOSE_RSP arrives: one RST_STREAM(CANCEL) per dial, on a stream long since answered.
// Those are not rapid resets, whatever the dial rate; grpc-go's server takes them without complaint.
test('streams reset after they were answered do not count as rapid resets, at any rate', async () => {
  let opened = 0;
  const rig = await h2Server((stream) => {
    opened++;
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
    stream.write(Buffer.from([0, 0, 0, 0, 0]));
  });
  const streams = RESET_BURST + 200;
  const frames = await rawExchange(rig.path, (s) => {
    const parts: Buffer[] = [PREFACE, EMPTY_SETTINGS];
    for (let i = 0; i < streams; i++) {
      const id = 2 * i + 1;
      parts.push(requestHeaders(id, GOOD_REQUEST), frame(3, 0, id, Buffer.from([0, 0, 0, 8])));
    }
    s.write(Buffer.concat(parts));
  });
  assert.equal(goawayOf(frames), null);
  assert.equal(opened, streams);
  assert.equal(frames.filter((f) => f.type === 1).length, streams, 'every stream answered');
  await stop(rig);
});

test('a client that sends PINGs and never reads the ACKs is cut off with ENHANCE_YOUR_CALM, not buffered without end', async () => {
  const rig = await h2Server(() => {});
  const s = net.connect(rig.path);
  await once(s, 'connect');
  s.on('error', () => {});
  s.pause(); // never read: the server's ACKs fill the socket buffers, then its memory
  const ping = frame(6, 0, 0, Buffer.alloc(8));
  const batch = Buffer.concat(Array.from({ length: 4096 }, () => ping));
  s.write(Buffer.concat([PREFACE, EMPTY_SETTINGS]));
  const session = await new Promise<H2ServerSession>((resolve) => {
    const wait = (): void => (rig.sessions[0] ? resolve(rig.sessions[0]) : void setTimeout(wait, 5));
    wait();
  });
  const failure = new Promise<Error>((resolve) => session.once('protocolError', resolve));
  // Up to 60 MB of PINGs, far more ACKs than the loopback buffers hold plus the bound.
  let sent = 0;
  while (!session.destroyed && sent < 1_500) {
    if (!s.write(batch)) await Promise.race([once(s, 'drain'), new Promise((r) => setTimeout(r, 200))]);
    sent++;
  }
  const err = await failure;
  assert.match(err.message, new RegExp(`more than ${MAX_PENDING_REPLIES} replies`));
  s.destroy();
  await stop(rig);
});

test('after our GOAWAY, a stream the client opens anyway is refused (REFUSED_STREAM) while the earlier one stays open', async () => {
  const opened: number[] = [];
  const rig = await h2Server((stream) => {
    opened.push(stream.id);
    stream.respond({ ':status': 200 });
  });
  let openAfterRefusal: boolean | undefined;
  const frames = await rawExchange(
    rig.path,
    (s) => {
      s.write(Buffer.concat([PREFACE, EMPTY_SETTINGS, requestHeaders(1, GOOD_REQUEST)]));
      setTimeout(() => rig.sessions[0]!.close(), 50);
      setTimeout(() => s.write(requestHeaders(3, GOOD_REQUEST)), 150);
      setTimeout(() => (openAfterRefusal = !rig.sessions[0]!.destroyed), 300);
    },
    400,
  );
  const g = frames.find((f) => f.type === 7);
  assert.deepEqual(g && [g.payload.readUInt32BE(0), g.payload.readUInt32BE(4)], [1, 0], 'GOAWAY names stream 1, NO_ERROR');
  const resets = frames.filter((f) => f.type === 3).map((f) => [f.streamId, f.payload.readUInt32BE(0)]);
  assert.deepEqual(resets, [[3, 7]]);
  assert.deepEqual(opened, [1]);
  assert.equal(openAfterRefusal, true, 'stream 1 still holds the connection open');
  await stop(rig);
});

test('our client and our server: 1 MiB DATA frames arrive over many socket reads intact, END_STREAM riding on a split frame, both ways', async () => {
  const rig = await h2Server((stream) => {
    const chunks: Buffer[] = [];
    let reads = 0;
    stream.on('data', (c: Buffer) => {
      reads++;
      chunks.push(Buffer.from(c));
    });
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      stream.respond({ ':status': 200, 'x-reads': String(reads) });
      stream.write(body);
      stream.end();
    });
  });
  const socket = net.connect(rig.path);
  await once(socket, 'connect');
  const s = new H2ClientSession(socket, { authority: 'localhost', scheme: 'http', streamWindowBytes: 4 * MiB, connectionWindowBytes: 32 * MiB, maxFrameBytes: MiB });
  await once(s, 'remoteSettings');
  const stream = s.request({ ':path': '/echo' });
  const body = pattern(3 * MiB + 12_345);
  const chunks: Buffer[] = [];
  let headers: H2Headers = {};
  stream.on('response', (h: H2Headers) => (headers = h));
  stream.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
  stream.write(body);
  stream.end();
  await once(stream, 'end');
  const echoed = Buffer.concat(chunks);
  assert.ok(echoed.equals(body), `echo differs (${echoed.length} bytes)`);
  // A unix socket read is at most 64 KiB: 1 MiB frames reached the server's reader in pieces, not joined first.
  assert.ok(Number(headers['x-reads']) >= 48, `${String(headers['x-reads'])} deliveries`);
  assert.ok(chunks.length >= 48, `${chunks.length} deliveries to the client`);
  s.destroy();
  await stop(rig);
});
