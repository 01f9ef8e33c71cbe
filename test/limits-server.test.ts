/**
 * konnectivity-server exhaustion bounds: every limit is hit once, the
 * offending dial/stream gets a clear answer, a counter moves, and other
 * traffic keeps flowing. Router rules in memory; transports on real sockets,
 * including the pending-dial limits against a real agent whose dials hang on
 * a black-holed port.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { EventEmitter } from 'node:events';
import type { Http2Stream } from 'node:http2';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { PacketStream } from '../src/grpc/packet-stream.ts';
import { encodePacketWithHeadroom } from '../src/protocol/codec.ts';
import { GRPC_FRAME_HEADER, writeFrameHeader } from '../src/protocol/grpc-frame.ts';
import type { ProtocolError } from '../src/protocol/protocol-error.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { createServerMetrics, type ServerMetrics } from '../src/observability/server-metrics.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { parseAgentIdentifiers } from '../src/server/agent-identifiers.ts';
import { Backend, ProxyRouter } from '../src/server/proxy-router.ts';
import { RecordingFrontend } from './helpers/recording-frontend.ts';
import { isServerLimitError, pendingDialsPerAgentError, pendingDialsPerFrontendError, type ServerLimits } from '../src/server/limits.ts';
import { createHash } from 'node:crypto';
import { openRawFrontend, type RawCall } from './helpers/raw-grpc.ts';
import { blackholePort, echoEndpoint, type BlackholePort } from './helpers/targets.ts';
import { randomPayload, readExactly, sha256, MiB } from './helpers/payload.ts';
import type { Duplex } from 'node:stream';
import { parseServerOptions } from '../src/server/server-options.ts';
import { mapDialErrorToHTTPStatus } from '../src/server/http-connect/dial-error-status.ts';

// ---------------------------------------------------------------------------
// In memory


function routerWith(limits: Partial<ServerLimits>) {
  const metrics = createServerMetrics({ processMetrics: false });
  const router = new ProxyRouter({ strategies: ['default'], metrics, logger: silentLogger, backendDialTimeoutMs: 0, maxFrontendBufferBytes: 1 << 20, random: () => 0, limits });
  const sent: Packet[] = [];
  const backend = new Backend('agent-1', parseAgentIdentifiers(''), { send: (p) => (sent.push(p), true) });
  router.addBackend(backend);
  return { router, metrics, backend, sent };
}

async function rejections(metrics: ServerMetrics, limit: string): Promise<number> {
  const text = await metrics.registry.getSingleMetricAsString('konnectivity_network_proxy_server_ts_limit_rejections_total');
  const m = new RegExp(`limit="${limit}"} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

const dialReqs = (sent: Packet[]): bigint[] => sent.filter((p) => p.type === PacketType.DIAL_REQ).map((p) => (p.type === PacketType.DIAL_REQ ? p.dialRequest.random : 0n));

describe('router limits (in memory)', () => {
  test('--max-pending-dials-per-frontend: the extra dial gets a DIAL_RSP error, the stream stays usable', async () => {
    const { router, metrics, backend, sent } = routerWith({ maxPendingDialsPerFrontend: 2 });
    const peer = new RecordingFrontend();
    const fe = router.openFrontend(peer);
    fe.handlePacket(packets.dialRequest('10.0.0.1:1', 1n));
    fe.handlePacket(packets.dialRequest('10.0.0.1:1', 2n));
    fe.handlePacket(packets.dialRequest('10.0.0.1:1', 3n));
    assert.deepEqual(dialReqs(sent), [1n, 2n]);
    assert.equal(peer.events.length, 1);
    const [kind, random, connectID, error] = peer.events[0] as ['dialResponse', bigint, bigint, string];
    assert.deepEqual([kind, random, connectID], ['dialResponse', 3n, 0n]);
    assert.equal(error, 'konnectivity-server: limit reached: 2 dials already pending on this stream (--max-pending-dials-per-frontend)');
    assert.ok(isServerLimitError(error));
    assert.equal(await rejections(metrics, 'pending_dials_per_frontend'), 1);
    // One answer frees a slot on the same stream.
    router.handleBackendPacket(backend, packets.dialResponse(1n, 0n, 'dial tcp 10.0.0.1:1: connect: connection refused'));
    fe.handlePacket(packets.dialRequest('10.0.0.1:1', 4n));
    assert.deepEqual(dialReqs(sent), [1n, 2n, 4n]);
    assert.equal(router.pendingDialCount, 2);
  });

  test('--max-pending-dials-per-agent: refused beyond the bound while established traffic keeps flowing', async () => {
    const { router, metrics, backend, sent } = routerWith({ maxPendingDialsPerAgent: 2, maxPendingDialsPerFrontend: 0 });
    const witness = new RecordingFrontend();
    const w = router.openFrontend(witness);
    w.handlePacket(packets.dialRequest('10.0.0.9:9', 100n));
    router.handleBackendPacket(backend, packets.dialResponse(100n, 7n));
    const peers = [new RecordingFrontend(), new RecordingFrontend(), new RecordingFrontend()];
    peers.forEach((p, i) => router.openFrontend(p).handlePacket(packets.dialRequest('10.0.0.1:1', BigInt(i + 1))));
    assert.equal(backend.pendingDials, 2);
    assert.deepEqual(peers[2]!.events, [['dialResponse', 3n, 0n, 'konnectivity-server: limit reached: 2 dials already pending on agent agent-1 (--max-pending-dials-per-agent)']]);
    assert.equal(await rejections(metrics, 'pending_dials_per_agent'), 1);
    w.handlePacket(packets.data(7n, Buffer.from('up')));
    router.handleBackendPacket(backend, packets.data(7n, Buffer.from('down')));
    assert.equal(sent.at(-1)!.type, PacketType.DATA);
    assert.deepEqual(witness.events.at(-1), ['data', 7n, 'down']);
    // An answer gives the slot back.
    router.handleBackendPacket(backend, packets.dialResponse(2n, 0n, 'dial tcp 10.0.0.1:1: connect: connection refused'));
    assert.equal(backend.pendingDials, 1);
    const p4 = new RecordingFrontend();
    router.openFrontend(p4).handlePacket(packets.dialRequest('10.0.0.1:1', 4n));
    assert.equal(p4.events.length, 0);
    assert.equal(backend.pendingDials, 2);
  });

  test('--max-connections-per-agent: established plus pending are bounded; a close frees a slot', async () => {
    const { router, metrics, backend } = routerWith({ maxConnectionsPerAgent: 2 });
    const a = new RecordingFrontend();
    const fa = router.openFrontend(a);
    fa.handlePacket(packets.dialRequest('h:1', 1n));
    router.handleBackendPacket(backend, packets.dialResponse(1n, 1n));
    router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('h:1', 2n)); // pending
    const c = new RecordingFrontend();
    router.openFrontend(c).handlePacket(packets.dialRequest('h:1', 3n));
    assert.deepEqual(c.events, [['dialResponse', 3n, 0n, 'konnectivity-server: limit reached: 2 connections already open or pending through agent agent-1 (--max-connections-per-agent)']]);
    assert.equal(await rejections(metrics, 'connections_per_agent'), 1);
    router.handleBackendPacket(backend, packets.closeResponse(1n));
    const d = new RecordingFrontend();
    router.openFrontend(d).handlePacket(packets.dialRequest('h:1', 4n));
    assert.equal(d.events.length, 0);
    assert.equal(backend.pendingDials, 2);
  });

  test('--idle-connection-timeout: only the silent connection is closed, both sides told; an unconfirmed close is reclaimed', async () => {
    const { router, metrics, backend, sent } = routerWith({ idleConnectionTimeoutMs: 1000 });
    const quiet = new RecordingFrontend();
    const busy = new RecordingFrontend();
    const fq = router.openFrontend(quiet);
    const fb = router.openFrontend(busy);
    fq.handlePacket(packets.dialRequest('h:1', 1n));
    fb.handlePacket(packets.dialRequest('h:1', 2n));
    router.handleBackendPacket(backend, packets.dialResponse(1n, 11n));
    router.handleBackendPacket(backend, packets.dialResponse(2n, 12n));
    const t0 = 1_000_000;
    const busyTraffic = (): void => {
      fb.handlePacket(packets.data(12n, Buffer.from('x')));
      router.handleBackendPacket(backend, packets.data(12n, Buffer.from('y')));
    };
    const busyCloses = (): number => busy.events.filter((e) => e[0] === 'closeResponse').length;
    router.sweepIdle(t0);
    router.sweepIdle(t0 + 600);
    busyTraffic();
    router.sweepIdle(t0 + 900);
    busyTraffic();
    router.sweepIdle(t0 + 1000);
    // quiet: no byte since t0 → closed at t0+1000; busy had traffic.
    assert.deepEqual(quiet.events.at(-1), ['closeResponse', 11n, 'konnectivity-server: connection closed after 1s without traffic (--idle-connection-timeout)']);
    assert.deepEqual(sent.at(-1), packets.closeRequest(11n));
    assert.equal(busyCloses(), 0);
    assert.equal(router.establishedCount, 2); // quiet waits for the agent's CLOSE_RSP
    busyTraffic();
    router.sweepIdle(t0 + 1900);
    assert.equal(router.establishedCount, 2);
    // The agent never confirms quiet's close: a full timeout after the close it is forgotten.
    busyTraffic();
    router.sweepIdle(t0 + 2000);
    assert.equal(router.establishedCount, 1);
    assert.equal(backend.connections.has(11n), false);
    assert.equal(busyCloses(), 0);
    assert.deepEqual(busy.events.at(-1), ['data', 12n, 'y']);
    const idle = await metrics.registry.getSingleMetricAsString('konnectivity_network_proxy_server_ts_idle_connection_closes_total');
    assert.match(idle, / 2$/m);
  });
});

// ---------------------------------------------------------------------------
// On real sockets

async function cluster(t: { after(fn: () => unknown): void }, mode: 'grpc' | 'http-connect', limits: Partial<ServerLimits>): Promise<LocalCluster> {
  const c = await startLocalCluster({ mode, server: { limits } });
  t.after(() => c.close());
  return c;
}

/** A raw socket to the unix frontend, connected. */
async function frontendSocket(c: LocalCluster): Promise<net.Socket> {
  const fe = c.server.config.frontend;
  assert.equal(fe.transport, 'unix');
  const s = net.connect(fe.transport === 'unix' ? fe.path : '');
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

/** Everything the server writes until it closes the socket (or `until` matches). */
function readAll(s: net.Socket, until?: (text: string) => boolean): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (until?.(text)) resolve(text);
    });
    s.on('close', () => resolve(text));
  });
}

async function metric(c: LocalCluster, name: string, labels = ''): Promise<number> {
  const text = await c.server.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}}` : `${name} `));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

async function echoes(c: LocalCluster, port: number): Promise<boolean> {
  const tunnel = c.openTunnel();
  try {
    const conn = await tunnel.dial('tcp', `127.0.0.1:${port}`);
    conn.write('ping');
    const [chunk] = (await once(conn, 'data')) as [Buffer];
    conn.destroy();
    return chunk.toString() === 'ping';
  } finally {
    await tunnel.close();
  }
}

describe('gRPC receive limit in the packet stream', () => {
  const frame = (p: Packet): Buffer => {
    const f = encodePacketWithHeadroom(p, GRPC_FRAME_HEADER);
    writeFrameHeader(f, f.length - GRPC_FRAME_HEADER);
    return f;
  };

  test('the body of an oversized message is never parsed: packets hidden inside it are not delivered', () => {
    const h2 = new EventEmitter() as unknown as Http2Stream;
    const stream = new PacketStream(h2, { maxReceiveMessageBytes: 1024 });
    const delivered: Packet[] = [];
    const errors: ProtocolError[] = [];
    stream.onPacket = (p) => delivered.push(p);
    stream.onProtocolError = (e) => errors.push(e);
    // A legal packet, then a 4 KiB message whose body is itself a run of valid frames.
    const smuggled = Buffer.concat(Array.from({ length: 40 }, (_, i) => frame(packets.dialRequest('169.254.169.254:80', BigInt(i + 1)))));
    const header = Buffer.alloc(GRPC_FRAME_HEADER);
    writeFrameHeader(header, smuggled.length);
    const h2e = h2 as unknown as EventEmitter;
    h2e.emit('data', frame(packets.dialRequest('10.0.0.1:443', 7n)));
    h2e.emit('data', Buffer.concat([header, smuggled.subarray(0, 100)]));
    h2e.emit('data', smuggled.subarray(100));
    h2e.emit('data', frame(packets.dialRequest('10.0.0.1:443', 8n)));
    assert.deepEqual(delivered, [packets.dialRequest('10.0.0.1:443', 7n)]);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'message_too_large');
  });
});

describe('limits on real sockets', () => {
  test('HTTP-CONNECT: a dial refused at --max-connections-per-agent is a 503 with the reason; the open tunnel keeps working', async (t) => {
    const echo = await echoEndpoint();
    t.after(() => echo.close());
    const c = await cluster(t, 'http-connect', { maxConnectionsPerAgent: 1 });
    const first = await frontendSocket(c);
    first.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    const [established] = (await once(first, 'data')) as [Buffer];
    assert.equal(established.toString(), 'HTTP/1.1 200 Connection Established\r\n\r\n');

    const second = await frontendSocket(c);
    const answer = readAll(second);
    second.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    const text = await answer;
    const agentId = c.agents[0]!.config.agentID;
    assert.equal(
      text,
      `HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nkonnectivity-server: limit reached: 1 connections already open or pending through agent ${agentId} (--max-connections-per-agent)\r\n`,
    );
    assert.equal(await metric(c, 'konnectivity_network_proxy_server_ts_limit_rejections_total', 'limit="connections_per_agent"'), 1);

    first.write('still here');
    const [echoed] = (await once(first, 'data')) as [Buffer];
    assert.equal(echoed.toString(), 'still here');
    first.destroy();
    while (c.server.router.establishedCount > 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(await echoes(c, echo.port), true);
  });

  test('HTTP-CONNECT: --http-connect-max-header-bytes answers 431, --http-connect-header-timeout closes silently; both counted', async (t) => {
    const echo = await echoEndpoint();
    t.after(() => echo.close());
    const c = await cluster(t, 'http-connect', { httpConnectMaxHeaderBytes: 256, httpConnectHeaderTimeoutMs: 150 });
    const big = await frontendSocket(c);
    const bigAnswer = readAll(big);
    big.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'a'.repeat(8192)}\r\n\r\n`);
    assert.match(await bigAnswer, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.equal(await metric(c, 'konnectivity_network_proxy_server_ts_limit_rejections_total', 'limit="http_connect_header_bytes"'), 1);

    const slow = await frontendSocket(c);
    const slowAnswer = readAll(slow);
    slow.write('CONNECT 127.0.0.1:1 HTTP/1.1\r\n'); // and never the rest
    assert.equal(await slowAnswer, '');
    assert.equal(await metric(c, 'konnectivity_network_proxy_server_ts_limit_rejections_total', 'limit="http_connect_header_timeout"'), 1);

    assert.equal(await echoes(c, echo.port), true);
  });

  test('gRPC: a message over --max-grpc-receive-message-bytes fails that frontend stream and that agent stream with RESOURCE_EXHAUSTED only', async (t) => {
    const echo = await echoEndpoint();
    t.after(() => echo.close());
    const c = await cluster(t, 'grpc', { maxGrpcReceiveMessageBytes: 64 * 1024 });
    const fe = c.server.config.frontend;
    const frontend = await GrpcChannel.connect({ transport: 'unix', path: fe.transport === 'unix' ? fe.path : '' });
    t.after(() => frontend.destroy());
    const call = frontend.openStream('/ProxyService/Proxy');
    call.stream.send(packets.data(1n, new Uint8Array(100 * 1024)));
    const status = await call.status;
    assert.equal(status.code, GrpcCode.RESOURCE_EXHAUSTED);
    assert.match(status.message, /^grpc: received message larger than max \(\d+ vs\. 65536\)$/);

    // An agent stream (any TLS client may open one: no client CA in this cluster) sending too much.
    const agentConn = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: c.server.addresses.agentPort, tls: { ca: c.pki.ca.cert, servername: 'localhost' } });
    t.after(() => agentConn.destroy());
    const agentCall = agentConn.openStream('/AgentService/Connect', { agentid: 'greedy-agent', agentidentifiers: '' });
    await agentCall.headers;
    agentCall.stream.resumeReceive();
    while (c.server.router.backendList.length < 2) await new Promise((r) => setTimeout(r, 5));
    agentCall.stream.send(packets.data(1n, new Uint8Array(100 * 1024)));
    assert.equal((await agentCall.status).code, GrpcCode.RESOURCE_EXHAUSTED);
    assert.deepEqual(c.server.router.backendList.map((b) => b.agentId), [c.agents[0]!.config.agentID]);
    assert.equal(await metric(c, 'konnectivity_network_proxy_server_ts_limit_rejections_total', 'limit="grpc_message_size"'), 2);

    assert.equal(await echoes(c, echo.port), true);
  });

  test('gRPC: --idle-connection-timeout closes a silent tunnel; the server keeps serving', async (t) => {
    const echo = await echoEndpoint();
    t.after(() => echo.close());
    const c = await cluster(t, 'grpc', { idleConnectionTimeoutMs: 100 });
    const tunnel = c.openTunnel();
    t.after(() => tunnel.close());
    const conn = await tunnel.dial('tcp', `127.0.0.1:${echo.port}`);
    conn.on('error', () => {});
    conn.resume();
    await once(conn, 'close');
    assert.ok((await metric(c, 'konnectivity_network_proxy_server_ts_idle_connection_closes_total')) >= 1);
    while (c.server.router.establishedCount > 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(await echoes(c, echo.port), true);
  });
});

// ---------------------------------------------------------------------------
// Pending-dial limits on real sockets: a real agent whose dials hang because
// the destination is a black-holed port (SYNs dropped), so each dial stays
// pending at the server until the limit is reached.

async function hangingCluster(t: { after(fn: () => unknown): void }, mode: 'grpc' | 'http-connect', limits: Partial<ServerLimits>): Promise<{ c: LocalCluster; hole: BlackholePort }> {
  const hole = await blackholePort();
  t.after(() => hole.close());
  // The agent's own dial timeout must not answer the dials during the test.
  const c = await startLocalCluster({ mode, server: { limits }, agent: { endpointDialTimeoutMs: 120_000 } });
  t.after(() => c.close());
  return { c, hole };
}

async function pendingAtServer(c: LocalCluster, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (c.server.router.pendingDialCount !== n) {
    if (Date.now() > deadline) throw new Error(`${c.server.router.pendingDialCount} dials pending, want ${n}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Sends `bytes` through an echo tunnel and checks they come back intact (sha256). */
async function echoIntact(conn: Duplex, bytes: number): Promise<void> {
  const payload = randomPayload(bytes);
  const back = readExactly(conn, payload.length);
  conn.write(payload);
  assert.equal(sha256(await back), sha256(payload), 'tunnel bytes corrupted');
}

/** DIAL_REQs the (only) agent received, from its own metrics. */
async function agentDialRequests(c: LocalCluster): Promise<number> {
  const text = await c.agents[0]!.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith('konnectivity_network_proxy_agent_stream_packets_total{') && l.includes('segment="to_agent"') && l.includes('packet_type="DIAL_REQ"'));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

/** The agent has received exactly `n` DIAL_REQs (the server sent them; the agent may still be reading). */
async function agentReceivedDials(c: LocalCluster, n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  let got = await agentDialRequests(c);
  while (got < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
    got = await agentDialRequests(c);
  }
  assert.equal(got, n, `the agent received ${got} DIAL_REQs, want ${n} (the refused dial must never reach it)`);
}

async function rejectionsOf(c: LocalCluster, limit: string): Promise<number> {
  return metric(c, 'konnectivity_network_proxy_server_ts_limit_rejections_total', `limit="${limit}"`);
}

async function dialResponseTo(frontend: RawCall, random: bigint): Promise<{ connectID: bigint; error: string }> {
  const p = await frontend.packets.nextMatching((x) => x.type === PacketType.DIAL_RSP && x.dialResponse.random === random);
  assert.ok(p.type === PacketType.DIAL_RSP);
  return { connectID: p.dialResponse.connectID, error: p.dialResponse.error };
}

describe('pending-dial limits on real sockets (a real agent, dials that hang)', () => {
  test('gRPC: --max-pending-dials-per-frontend refuses the extra DIAL_REQ on that stream with a DIAL_RSP error; the agent never sees it; other tunnels move bytes', async (t) => {
    const echo = await echoEndpoint();
    t.after(() => echo.close());
    const { c, hole } = await hangingCluster(t, 'grpc', { maxPendingDialsPerFrontend: 2 });
    const witnessTunnel = c.openTunnel();
    t.after(() => witnessTunnel.close());
    const witness = await witnessTunnel.dial('tcp', `127.0.0.1:${echo.port}`);
    t.after(() => witness.destroy());

    const fe = await openRawFrontend(c);
    t.after(() => fe.close());
    for (const random of [1n, 2n, 3n]) fe.send(packets.dialRequest(hole.address, random));
    assert.deepEqual(await dialResponseTo(fe, 3n), { connectID: 0n, error: pendingDialsPerFrontendError(2) });
    await pendingAtServer(c, 2);
    assert.equal(await rejectionsOf(c, 'pending_dials_per_frontend'), 1);
    // Only the two admitted dials went to the agent.
    const toAgent = await c.server.metrics.streamPackets.get();
    assert.equal(toAgent.values.find((v) => v.labels['segment'] === 'to_agent' && v.labels['packet_type'] === 'DIAL_REQ')?.value, 3, 'witness + 2 admitted');
    await agentReceivedDials(c, 3);

    // The established tunnel and a new one move bytes intact.
    await echoIntact(witness, 1 * MiB);
    const freshTunnel = c.openTunnel();
    t.after(() => freshTunnel.close());
    const fresh = await freshTunnel.dial('tcp', `127.0.0.1:${echo.port}`);
    await echoIntact(fresh, 256 * 1024);
    fresh.destroy();
    // The refused stream itself stays usable once a slot frees: DIAL_CLS for 1, then a dial to the echo target.
    fe.send(packets.closeDial(1n));
    await pendingAtServer(c, 1);
    fe.send(packets.dialRequest(`127.0.0.1:${echo.port}`, 4n));
    const ok = await dialResponseTo(fe, 4n);
    assert.equal(ok.error, '');
    assert.notEqual(ok.connectID, 0n);
  });

  for (const mode of ['grpc', 'http-connect'] as const) {
    test(`${mode}: --max-pending-dials-per-agent refuses the dial beyond the bound with a clear answer; established and later tunnels move bytes`, async (t) => {
      const echo = await echoEndpoint();
      t.after(() => echo.close());
      const { c, hole } = await hangingCluster(t, mode, { maxPendingDialsPerAgent: 2 });
      const agentId = c.agents[0]!.config.agentID;
      const witnessTunnel = c.openTunnel();
      t.after(() => witnessTunnel.close());
      const witness = await witnessTunnel.dial('tcp', `127.0.0.1:${echo.port}`);
      t.after(() => witness.destroy());

      // Two frontends whose dials hang at the agent, then a third that is refused.
      const hanging: Array<{ close(): void }> = [];
      let refusal: string;
      if (mode === 'grpc') {
        for (const random of [11n, 12n]) {
          const fe = await openRawFrontend(c);
          t.after(() => fe.close());
          fe.send(packets.dialRequest(hole.address, random));
          hanging.push(fe);
        }
        await pendingAtServer(c, 2);
        const third = await openRawFrontend(c);
        t.after(() => third.close());
        third.send(packets.dialRequest(hole.address, 13n));
        const rsp = await dialResponseTo(third, 13n);
        assert.equal(rsp.connectID, 0n);
        refusal = rsp.error;
      } else {
        for (let i = 0; i < 2; i++) {
          const s = await frontendSocket(c);
          t.after(() => s.destroy());
          s.write(`CONNECT ${hole.address} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
          hanging.push({ close: () => s.destroy() });
        }
        await pendingAtServer(c, 2);
        const third = await frontendSocket(c);
        const answer = readAll(third);
        third.write(`CONNECT ${hole.address} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        const text = await answer;
        assert.equal(text, `HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${pendingDialsPerAgentError(agentId, 2)}\r\n`);
        refusal = pendingDialsPerAgentError(agentId, 2);
      }
      assert.equal(refusal, `konnectivity-server: limit reached: 2 dials already pending on agent ${agentId} (--max-pending-dials-per-agent)`);
      assert.equal(await rejectionsOf(c, 'pending_dials_per_agent'), 1);
      assert.equal(c.server.router.pendingDialCount, 2);
      await agentReceivedDials(c, 3);

      // The tunnel established before keeps moving bytes while the agent is at its bound.
      await echoIntact(witness, 1 * MiB);
      // A hanging frontend goes away: its dial is withdrawn (DIAL_CLS), and a new tunnel gets through.
      hanging[0]!.close();
      await pendingAtServer(c, 1);
      const laterTunnel = c.openTunnel();
      t.after(() => laterTunnel.close());
      const later = await laterTunnel.dial('tcp', `127.0.0.1:${echo.port}`);
      await echoIntact(later, 256 * 1024);
      later.destroy();
      assert.equal(await rejectionsOf(c, 'pending_dials_per_agent'), 1);
    });
  }
});

describe('flags', () => {
  test('defaults, parsing and validation', () => {
    const d = parseServerOptions(['--uds-name=/tmp/x.sock', '--server-port=0'], {}).limits;
    assert.deepEqual(d, {
      maxPendingDialsPerFrontend: 16,
      maxPendingDialsPerAgent: 1000,
      maxConnectionsPerAgent: 10000,
      idleConnectionTimeoutMs: 0,
      httpConnectMaxHeaderBytes: 32768,
      httpConnectHeaderTimeoutMs: 60000,
      maxGrpcReceiveMessageBytes: 4194304,
      maxPendingAgentAuthentications: 100,
    });
    const o = parseServerOptions(
      [
        '--uds-name=/tmp/x.sock',
        '--server-port=0',
        '--max-pending-dials-per-frontend=0',
        '--max-pending-dials-per-agent=5',
        '--max-connections-per-agent=6',
        '--idle-connection-timeout=2h',
        '--http-connect-max-header-bytes=1024',
        '--http-connect-header-timeout=5s',
        '--max-grpc-receive-message-bytes=1048576',
        '--max-pending-agent-authentications=0',
      ],
      {},
    ).limits;
    assert.deepEqual(o, {
      maxPendingDialsPerFrontend: 0,
      maxPendingDialsPerAgent: 5,
      maxConnectionsPerAgent: 6,
      idleConnectionTimeoutMs: 7_200_000,
      httpConnectMaxHeaderBytes: 1024,
      httpConnectHeaderTimeoutMs: 5000,
      maxGrpcReceiveMessageBytes: 1048576,
      maxPendingAgentAuthentications: 0,
    });
    const base = ['--uds-name=/tmp/x.sock', '--server-port=0'];
    assert.throws(() => parseServerOptions([...base, '--max-connections-per-agent=-1'], {}), /--max-connections-per-agent -1 must be 0 \(no limit\) or more/);
    assert.throws(() => parseServerOptions([...base, '--http-connect-max-header-bytes=0'], {}), /must be greater than 0/);
    assert.throws(() => parseServerOptions([...base, '--max-grpc-receive-message-bytes=0'], {}), /between 1 and 2147483647/);
    assert.throws(() => parseServerOptions([...base, '--idle-connection-timeout=-1s'], {}), /--idle-connection-timeout -1000 must be 0/);
    assert.throws(() => parseServerOptions([...base, '--max-pending-agent-authentications=-1'], {}), /--max-pending-agent-authentications -1 must be 0 \(no limit\) or more/);
  });

  test('limit texts are not mistaken for agent dial errors by an upstream-style mapper', () => {
    // Our own HTTP-CONNECT frontend answers them 503 before any mapping; the mapper alone would say 502.
    assert.equal(mapDialErrorToHTTPStatus('konnectivity-server: limit reached: 2 dials already pending on this stream (--max-pending-dials-per-frontend)'), 502);
  });
});
