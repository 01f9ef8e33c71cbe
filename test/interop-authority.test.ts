/**
 * Interop: Debian's python3-grpcio as a frontend that sends a unix socket path
 * as `:authority` (grpc.default_authority), the way kube-apiserver's
 * konnectivity-client did with grpc-go before ~1.57, over a unix socket, to
 * our gRPC server stack (GrpcServer, the real /ProxyService/Proxy handler and
 * router, an in-memory echo agent). Connections reach GrpcServer's http2
 * through handOffRepairingAuthority, as the frontend listener does once
 * wired (see authority-repair.ts); without it the same client fails every
 * call, because nghttp2 resets streams with such an authority.
 *
 * One channel makes its calls one after the other, then several at once, so
 * the authority's HPACK dynamic table entry is added once and referenced by
 * index afterwards: the repaired stream must keep nghttp2's table in step.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { handOffRepairingAuthority } from '../src/grpc/authority-repair.ts';
import { GrpcServer } from '../src/grpc/grpc-server.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { createServerMetrics } from '../src/observability/server-metrics.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { parseAgentIdentifiers } from '../src/server/agent-identifiers.ts';
import { createProxyServiceHandler } from '../src/server/grpc-frontend.ts';
import { Backend, ProxyRouter } from '../src/server/proxy-router.ts';
import { startLocalCluster } from '../src/dev/local-cluster.ts';
import { startEchoDestination } from './interop/net-fixtures.ts';
import { prepareInterop, PythonPeer, type InteropEnv, type PeerEvent } from './interop/python-peer.ts';

const UDS_AUTHORITY = '/etc/kubernetes/konnectivity-server/konnectivity-server.socket';
const CALLS = 4;
const SIZE = 3 * 1024 * 1024 + 11;

let env: InteropEnv;
before(() => {
  env = prepareInterop();
});
after(() => env?.cleanup());

interface Frontend {
  socketPath: string;
  /** `:authority` of every call the handler saw. */
  authorities: string[];
  handOffs: Array<'native' | 'rewritten'>;
}

/** GrpcServer + router + an agent that answers dials, echoes DATA and answers CLOSE_REQ, all in this process. */
async function startFrontend(t: TestContext, repair: boolean): Promise<Frontend> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-interop-authority-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const metrics = createServerMetrics({ processMetrics: false });
  const router = new ProxyRouter({ strategies: ['default'], metrics, logger: silentLogger, backendDialTimeoutMs: 0, maxFrontendBufferBytes: 16 * 1024 * 1024 });
  let nextConnectID = 1n;
  const agent: Backend = new Backend('echo-agent', parseAgentIdentifiers(''), {
    send: (p: Packet) => {
      const reply = (q: Packet): void => queueMicrotask(() => router.handleBackendPacket(agent, q));
      if (p.type === PacketType.DIAL_REQ) reply(packets.dialResponse(p.dialRequest.random, nextConnectID++));
      else if (p.type === PacketType.DATA) reply(packets.data(p.data.connectID, Uint8Array.from(p.data.data)));
      else if (p.type === PacketType.CLOSE_REQ) reply(packets.closeResponse(p.closeRequest.connectID));
      return true;
    },
  });
  router.addBackend(agent);
  const result: Frontend = { socketPath: path.join(dir, 'konnectivity-server.socket'), authorities: [], handOffs: [] };
  const proxy = createProxyServiceHandler(router, metrics, silentLogger);
  const grpc = new GrpcServer({
    keepaliveTimeMs: 0,
    handlers: {
      '/ProxyService/Proxy': (call) => {
        result.authorities.push(String(call.metadata[':authority']));
        proxy(call);
      },
    },
  });
  // What GrpcServer's listener does for a unix socket, with or without the repair in front.
  const listener = net.createServer((socket) => {
    socket.on('error', () => {});
    if (!repair) {
      result.handOffs.push('native');
      grpc.http2.emit('connection', socket);
      return;
    }
    handOffRepairingAuthority(socket, (s) => {
      result.handOffs.push(s === socket ? 'native' : 'rewritten');
      grpc.http2.emit('connection', s);
    });
  });
  listener.listen(result.socketPath);
  await once(listener, 'listening');
  t.after(() => {
    grpc.destroy();
    listener.close();
    router.dispose();
  });
  return result;
}

async function runClient(fe: Pick<Frontend, 'socketPath'>, authority: string, calls: number, size: number, dialAddress?: string): Promise<PeerEvent[]> {
  const peer = new PythonPeer(env, 'authority_client.py', [`unix://${fe.socketPath}`, authority, String(calls), String(size), ...(dialAddress ? [dialAddress] : [])]);
  await peer.next('ready');
  await peer.next('done', () => true, 60_000);
  await peer.stop();
  return peer.events.filter((e) => e.event === 'result').sort((a, b) => Number(a.index) - Number(b.index));
}

test(`python grpcio with :authority ${UDS_AUTHORITY}: ${CALLS} sequential then ${CALLS} concurrent dials on one channel, 3 MiB echoed each, through the repair`, async (t) => {
  const fe = await startFrontend(t, true);
  const results = await runClient(fe, UDS_AUTHORITY, CALLS, SIZE);
  assert.equal(results.length, 2 * CALLS);
  for (const r of results) assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(fe.handOffs, ['rewritten'], 'one connection, rewritten');
  assert.deepEqual(fe.authorities, Array(2 * CALLS).fill(UDS_AUTHORITY.replaceAll('/', '_')));
});

test('the same python client fails every call without the repair (nghttp2 resets the stream: PROTOCOL_ERROR)', async (t) => {
  const fe = await startFrontend(t, false);
  const results = await runClient(fe, UDS_AUTHORITY, 2, 16);
  assert.equal(results.length, 4);
  for (const r of results) {
    assert.equal(r.ok, false, JSON.stringify(r));
    assert.equal(r.code, 'INTERNAL');
    assert.match(String(r.details), /RST_STREAM with error code 1/);
  }
  assert.deepEqual(fe.authorities, [], 'no call reached the handler');
});

test('python grpcio with a usual authority keeps the native socket (zero-copy path) and works', async (t) => {
  const fe = await startFrontend(t, true);
  const results = await runClient(fe, 'localhost', 2, 64 * 1024);
  for (const r of results) assert.equal(r.ok, true, JSON.stringify(r));
  assert.deepEqual(fe.handOffs, ['native']);
  assert.deepEqual(fe.authorities, Array(4).fill('localhost'));
});

for (const http2Implementation of ['builtin', 'node'] as const) {
  test(`the real konnectivity-server's unix frontend (--http2-implementation=${http2Implementation}) takes :authority ${UDS_AUTHORITY}: dials through a real agent echo intact`, async (t) => {
    const cluster = await startLocalCluster({ mode: 'grpc', frontendTransport: 'unix', agents: 1, server: { http2Implementation } });
    t.after(() => cluster.close());
    const destination = await startEchoDestination();
    t.after(() => destination.close());
    const results = await runClient({ socketPath: cluster.server.addresses.frontend }, UDS_AUTHORITY, 2, 256 * 1024 + 5, destination.address);
    assert.equal(results.length, 4);
    for (const r of results) assert.equal(r.ok, true, JSON.stringify(r));
  });
}
