/**
 * Interop: our client library (createTunnel, gRPC mode) against a python
 * grpcio server implementing /ProxyService/Proxy on a unix socket
 * (test/interop/proxy_server.py). The python side reports what arrived.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createTunnel, KonnectivityDialError, type TunnelConnection } from '../src/client/index.ts';
import type { Tunnel } from '../src/client/tunnel-options.ts';
import { expectedBytes, metadataValues, prepareInterop, PythonPeer, str, type InteropEnv, type PeerEvent } from './interop/python-peer.ts';
import { until } from './interop/net-fixtures.ts';

const ECHO_CONNECT_ID = (1n << 60n) + 7n; // proxy_server.py answers echo dials with this (> 2^53)

let env: InteropEnv;
let dir: string;
let server: PythonPeer;
let tunnel: Tunnel;

before(async () => {
  env = prepareInterop();
  dir = mkdtempSync(path.join(tmpdir(), 'konn-interop-client-'));
  const socketPath = path.join(dir, 'proxy.sock');
  server = new PythonPeer(env, 'proxy_server.py', [`unix://${socketPath}`], { traceHeaders: true });
  await server.next('listening');
  tunnel = createTunnel({ mode: 'grpc', transport: { unix: socketPath }, userAgent: 'konnectivity-ts-interop' });
});

after(async () => {
  await tunnel?.close();
  await server?.stop();
  env?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The DIAL_REQ python saw for `address`, with its call (method + metadata). */
async function dialRequestFor(address: string): Promise<{ req: PeerEvent; call: PeerEvent }> {
  const req = await server.next('packet', (e) => e.type === 'DIAL_REQ' && e.address === address);
  const call = server.events.find((e) => e.event === 'call' && e.stream === req.stream);
  assert.ok(call, `python saw a call for stream ${String(req.stream)}`);
  return { req, call };
}

function assertWellFormedDialRequest(req: PeerEvent, address: string): bigint {
  assert.equal(req.protocol, 'tcp');
  assert.equal(req.address, address);
  assert.equal(req.payload, 'dialRequest');
  const random = BigInt(str(req, 'random'));
  assert.ok(random >= 0n && random < 1n << 63n, `random ${random} is in [0, 2^63)`);
  assert.equal(req.hasTypeField, false, 'DIAL_REQ (type 0) carries no type field on the wire');
  assert.equal(req.raw, expectedBytes.dialRequest('tcp', address, random), 'exact DIAL_REQ bytes');
  return random;
}

function readN(socket: TunnelConnection, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        socket.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('close', () => got < n && reject(new Error(`socket closed after ${got} of ${n} bytes`)));
  });
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<KonnectivityDialError> {
  const err = await p.then(
    () => assert.fail('expected the dial to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof KonnectivityDialError, `KonnectivityDialError, got ${String(err)}`);
  assert.equal(err.code, code, `code (message: ${err.message})`);
  return err;
}

test('protoc derives the upstream method paths from proto/konnectivity.proto (no package)', () => {
  assert.match(env.grpcModuleSource, /'\/ProxyService\/Proxy'/);
  assert.match(env.grpcModuleSource, /'\/AgentService\/Connect'/);
  assert.doesNotMatch(env.grpcModuleSource, /'\/[A-Za-z0-9_]+\.(ProxyService|AgentService)\//);
});

test('client → python server: method path, content-type, DIAL_REQ bytes, DATA echo (2 MiB sha256), CLOSE_REQ/CLOSE_RSP with a connectID > 2^53', async () => {
  const address = 'echo.interop:443';
  const socket = await tunnel.dial('tcp', address);
  const { req, call } = await dialRequestFor(address);
  assert.equal(call.method, '/ProxyService/Proxy');
  assert.deepEqual(metadataValues(call, 'user-agent').length, 1);
  assert.match(metadataValues(call, 'user-agent')[0]!, /^konnectivity-ts-interop/);
  assertWellFormedDialRequest(req, address);
  // grpcio never shows content-type or te to handlers; C-core's header trace does
  // (on stderr, while the events come on stdout: separate pipes, read in either order).
  await until(() => server.headerBlocks('SVR', 'HDR').some((h) => h.has(':path')), 'python to trace our request headers');
  const requests = server.headerBlocks('SVR', 'HDR').filter((h) => h.has(':path'));
  assert.ok(requests.length >= 1, 'python traced our request headers');
  for (const h of requests) {
    assert.deepEqual(h.get(':method'), ['POST']);
    assert.deepEqual(h.get(':path'), ['/ProxyService/Proxy']);
    assert.deepEqual(h.get(':scheme'), ['http'], 'plaintext HTTP/2 on the unix socket');
    assert.deepEqual(h.get('content-type'), ['application/grpc']);
    assert.deepEqual(h.get('te'), ['trailers']);
  }

  const data = randomBytes(2 * 1024 * 1024 + 17);
  const echoed = readN(socket, data.length);
  for (let off = 0; off < data.length; off += 100_000) socket.write(data.subarray(off, off + 100_000));
  const back = await echoed;
  assert.equal(back.length, data.length);
  assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(data).digest('hex'));

  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.end();
  const closeReq = await server.next('packet', (e) => e.type === 'CLOSE_REQ' && e.stream === req.stream);
  assert.equal(closeReq.connectID, String(ECHO_CONNECT_ID), 'CLOSE_REQ carries the > 2^53 connectID exactly');
  const summary = await server.next('echo_summary', (e) => e.stream === req.stream);
  assert.equal(summary.bytes, data.length);
  assert.equal(summary.sha256, createHash('sha256').update(data).digest('hex'));
  await closed;
  await server.next('stream_end', (e) => e.stream === req.stream);
});

test('client → python server: a DIAL_RSP error fails the dial with code endpoint and the agent text', async () => {
  const err = await rejectsWith(tunnel.dial('tcp', 'refused.interop:80'), 'endpoint');
  assert.match(err.message, /dial tcp 127\.0\.0\.1:9: connect: connection refused/);
  const { req } = await dialRequestFor('refused.interop:80');
  assertWellFormedDialRequest(req, 'refused.interop:80');
});

test('client → python server: dial timeout sends DIAL_CLS with the dial random, then ends the stream', async () => {
  const address = 'silent.interop:1';
  await rejectsWith(tunnel.dial('tcp', address, { timeoutMs: 1_000 }), 'timeout');
  const { req } = await dialRequestFor(address);
  const random = assertWellFormedDialRequest(req, address);
  const cls = await server.next('packet', (e) => e.type === 'DIAL_CLS' && e.stream === req.stream);
  assert.equal(cls.random, String(random));
  assert.equal(cls.payload, 'closeDial');
  assert.equal(cls.hasTypeField, true);
  await server.next('stream_end', (e) => e.stream === req.stream);
});

test('client → python server: aborting a pending dial sends DIAL_CLS with the dial random', async () => {
  const address = 'silent.interop:2';
  const controller = new AbortController();
  const dialing = tunnel.dial('tcp', address, { signal: controller.signal });
  const { req } = await dialRequestFor(address);
  const random = assertWellFormedDialRequest(req, address);
  controller.abort();
  await rejectsWith(dialing, 'context');
  const cls = await server.next('packet', (e) => e.type === 'DIAL_CLS' && e.stream === req.stream);
  assert.equal(cls.random, String(random));
  await server.next('stream_end', (e) => e.stream === req.stream);
});

test('client → python server: a DIAL_CLS from the server fails the dial with code dialclosed', async () => {
  await rejectsWith(tunnel.dial('tcp', 'dialcls.interop:3'), 'dialclosed');
  const { req } = await dialRequestFor('dialcls.interop:3');
  assertWellFormedDialRequest(req, 'dialcls.interop:3');
});

test('python decoded every header we sent without complaint', () => {
  assert.deepEqual(server.coreErrors, [], 'grpc C-core logged no errors (e.g. "Error parsing metadata")');
});
