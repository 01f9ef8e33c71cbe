/**
 * Hostile and broken peers against a real server: hand-made gRPC frames on
 * the frontend and on the agent port, IDs that do not exist, oversized
 * messages, and a frontend that never reads. Each case checks that only the
 * offending stream or connection suffers, while a concurrent sha256-checked
 * transfer through the same server (and, where it matters, the same agent)
 * completes intact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LocalCluster } from '../src/dev/local-cluster.ts';
import type { Tunnel, TunnelConnection } from '../src/client/tunnel-options.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { encodePacket } from '../src/protocol/codec.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { neverReadingConnection, openTunnel, startCluster } from './helpers/cluster.ts';
import { KiB, MiB, closed, randomPayload, readExactly, sha256, writeAll } from './helpers/payload.ts';
import { connectFakeAgent, openRawFrontend, type FakeAgent, type RawCall } from './helpers/raw-grpc.ts';
import { TcpTarget, echo, flood } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

/** JSON for assertion messages (bigint-safe). */
function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? `<${v.length} bytes>` : v));
}

async function target(t: TestContext, behaviour: Parameters<typeof TcpTarget.start>[0]): Promise<TcpTarget> {
  const tgt = await TcpTarget.start(behaviour);
  t.after(() => tgt.close());
  return tgt;
}

async function rawFrontend(t: TestContext, cluster: LocalCluster): Promise<RawCall> {
  const fe = await openRawFrontend(cluster);
  t.after(() => fe.close());
  return fe;
}

async function fakeAgent(t: TestContext, cluster: LocalCluster, agentId = 'fake-agent'): Promise<FakeAgent> {
  const agent = await connectFakeAgent(cluster, { agentId });
  t.after(() => agent.close());
  await waitFor(() => cluster.server.router.backendList.some((b) => b.agentId === agentId), 'the fake agent to be registered');
  return agent;
}

/**
 * An echo transfer that is half done when `start` returns: the test breaks
 * something, then `finish` sends the rest and checks every byte came back.
 */
async function startEchoTransfer(tunnel: Tunnel, address: string, size = 8 * MiB): Promise<{ socket: TunnelConnection; finish(): Promise<void> }> {
  const socket = await tunnel.dial('tcp', address);
  const data = randomPayload(size);
  const back = readExactly(socket, data.length);
  await writeAll(socket, data.subarray(0, size / 2), 64 * KiB);
  return {
    socket,
    async finish() {
      await writeAll(socket, data.subarray(size / 2), 64 * KiB);
      assert.equal(sha256(await back), sha256(data), 'the concurrent transfer came back different');
      socket.end();
      await closed(socket);
    },
  };
}

/** Bytes that are not a valid Packet, each for a different reason. */
const malformed: ReadonlyArray<[string, Uint8Array]> = [
  ['truncated payload', Uint8Array.of(0x08, 0x04, 0x22, 0x05, 0x08)],
  ['varint longer than 10 bytes', Uint8Array.of(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)],
  ['wrong wire type for Packet.type', Uint8Array.of(0x0d, 0x04, 0x00, 0x00, 0x00)],
  ['DATA type carrying a DialRequest', Uint8Array.of(0x08, 0x04, 0x12, 0x00)],
  ['DIAL_REQ without a payload', Uint8Array.of(0x08, 0x00)],
  ['CLOSE_RSP type carrying Data', Uint8Array.of(0x08, 0x03, 0x22, 0x02, 0x08, 0x01)],
];

test('frontend: each malformed message ends only its own stream with Internal; a concurrent transfer is intact', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const dest = await target(t, echo);
  const transfer = await startEchoTransfer(openTunnel(t, cluster), dest.address);
  for (const [what, bytes] of malformed) {
    const fe = await rawFrontend(t, cluster);
    fe.sendMessage(bytes);
    const status = await fe.status;
    assert.equal(status.code, GrpcCode.INTERNAL, `${what}: ${show(status)}`);
    assert.match(status.message, /unmarshal/, what);
    fe.close();
  }
  await transfer.finish();
  assert.equal(cluster.server.router.backendList.length, 1);
  await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
});

test('frontend: a malformed message after an established dial closes that connection at the agent too', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const dest = await target(t, echo);
  const fe = await rawFrontend(t, cluster);
  fe.send(packets.dialRequest(dest.address, 42n));
  const rsp = await fe.packets.next();
  assert.ok(rsp.type === PacketType.DIAL_RSP && rsp.dialResponse.error === '', show(rsp));
  const conn = await dest.connections.next();
  fe.sendMessage(Uint8Array.of(0x08, 0x04, 0x12, 0x00));
  assert.equal((await fe.status).code, GrpcCode.INTERNAL);
  await conn.closed;
  await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
});

test('frontend: an unknown packet type is ignored and the stream keeps working', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const dest = await target(t, echo);
  const fe = await rawFrontend(t, cluster);
  fe.sendMessage(Uint8Array.of(0x08, 0x07)); // type 7: not in the enum
  fe.sendMessage(Uint8Array.of(0x08, 0x63, 0x4a, 0x00)); // type 99 with an unknown field 9
  fe.send(packets.dialRequest(dest.address, 7n));
  const rsp = await fe.packets.next();
  assert.ok(rsp.type === PacketType.DIAL_RSP && rsp.dialResponse.error === '' && rsp.dialResponse.random === 7n, show(rsp));
  const id = rsp.dialResponse.connectID;
  fe.send(packets.data(id, Buffer.from('still here')));
  const echoed = await fe.packets.next();
  assert.deepEqual(echoed, packets.data(id, Buffer.from('still here')));
});

test('agent port: each malformed message ends only that agent stream with Internal; the real agent\'s transfer is intact', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const dest = await target(t, echo);
  const transfer = await startEchoTransfer(openTunnel(t, cluster), dest.address);
  for (const [i, [what, bytes]] of malformed.entries()) {
    const agentId = `bad-agent-${i}`;
    const agent = await fakeAgent(t, cluster, agentId);
    agent.sendMessage(bytes);
    const status = await agent.status;
    assert.equal(status.code, GrpcCode.INTERNAL, `${what}: ${show(status)}`);
    await waitFor(() => !cluster.server.router.backendList.some((b) => b.agentId === agentId), `${what}: the bad agent to be removed`);
    agent.close();
  }
  await transfer.finish();
  assert.equal(cluster.server.router.backendList.length, 1);
});

test('agent port: DATA, CLOSE_RSP and DIAL_RSP for IDs the server never saw are answered or ignored, and the stream keeps working', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  agent.send(packets.data(999n, Buffer.from('who is this for?')));
  assert.deepEqual(await agent.packets.next(), packets.closeRequest(999n));
  agent.send(packets.closeResponse(998n));
  agent.send(packets.dialResponse(123456789n, 0n, 'dial tcp 1.2.3.4:5: connect: connection refused'));
  agent.send(packets.dialResponse(987654321n, 7n));
  // An unrecognised successful DIAL_RSP leaves an orphan at the agent: the server closes it.
  assert.deepEqual(await agent.packets.next(), packets.closeRequest(7n));
  agent.send(packets.closeDial(555n));
  agent.send({ type: PacketType.DIAL_REQ, dialRequest: { protocol: 'tcp', address: '127.0.0.1:1', random: 1n } });
  agent.send({ type: PacketType.CLOSE_REQ, closeRequest: { connectID: 1n } });
  // Still a working backend: a real dial goes through it and echoes.
  agent.serveEcho();
  const tunnel = openTunnel(t, cluster);
  const socket = await tunnel.dial('tcp', '10.0.0.1:80'); // the fake agent does not dial anything
  socket.write('hello');
  assert.equal((await readExactly(socket, 5)).toString(), 'hello');
  assert.equal(cluster.server.router.establishedCount, 1);
  socket.end();
  await closed(socket);
  await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  assert.equal(cluster.server.router.pendingDialCount, 0);
});

test('frontend: DATA for a second connectID on one stream closes both with "mismatched connection IDs"', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  agent.serveEcho();
  const fe = await rawFrontend(t, cluster);
  fe.send(packets.dialRequest('10.0.0.1:80', 1n));
  const rsp = await fe.packets.next();
  assert.ok(rsp.type === PacketType.DIAL_RSP && rsp.dialResponse.error === '');
  const first = rsp.dialResponse.connectID;
  const second = first + 100n;
  fe.send(packets.data(first, Buffer.from('a')));
  assert.deepEqual(await fe.packets.next(), packets.data(first, Buffer.from('a')));
  fe.send(packets.data(second, Buffer.from('b')));
  const got = [await fe.packets.next(), await fe.packets.next()];
  assert.deepEqual(
    new Set(got.map(show)),
    new Set([packets.closeResponse(first, 'mismatched connection IDs'), packets.closeResponse(second, 'mismatched connection IDs')].map(show)),
  );
  // The agent was told to close both, and the 'b' was not forwarded.
  await agent.packets.nextMatching((p) => p.type === PacketType.CLOSE_REQ && p.closeRequest.connectID === first);
  await agent.packets.nextMatching((p) => p.type === PacketType.CLOSE_REQ && p.closeRequest.connectID === second);
  assert.ok(!agent.packets.all.some((p) => p.type === PacketType.DATA && p.data.connectID === second));
  await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
});

test('frontend and agent port: a message over 4 MiB fails only that stream, with ResourceExhausted', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const dest = await target(t, echo);
  const transfer = await startEchoTransfer(openTunnel(t, cluster), dest.address);
  const big = encodePacket(packets.data(1n, randomPayload(4 * MiB + 1)));

  const fe = await rawFrontend(t, cluster);
  fe.sendMessage(big);
  const feStatus = await fe.status;
  assert.equal(feStatus.code, GrpcCode.RESOURCE_EXHAUSTED, show(feStatus));
  assert.equal(feStatus.message, `grpc: received message larger than max (${big.length} vs. 4194304)`);

  const agent = await fakeAgent(t, cluster, 'big-agent');
  agent.sendMessage(big);
  const agentStatus = await agent.status;
  assert.equal(agentStatus.code, GrpcCode.RESOURCE_EXHAUSTED, show(agentStatus));
  await waitFor(() => cluster.server.router.backendList.length === 1, 'the oversized agent to be removed');

  // Exactly 4 MiB is still fine.
  const fe2 = await rawFrontend(t, cluster);
  fe2.send(packets.dialRequest(dest.address, 9n));
  const rsp = await fe2.packets.next();
  assert.ok(rsp.type === PacketType.DIAL_RSP && rsp.dialResponse.error === '');
  const payload = randomPayload(4 * MiB - 32);
  fe2.send(packets.data(rsp.dialResponse.connectID, payload));
  let echoed = 0;
  const h: Buffer[] = [];
  while (echoed < payload.length) {
    const p: Packet = await fe2.packets.next();
    assert.equal(p.type, PacketType.DATA);
    if (p.type !== PacketType.DATA) break;
    h.push(Buffer.from(p.data.data));
    echoed += p.data.data.length;
  }
  assert.equal(sha256(Buffer.concat(h)), sha256(payload));
  await transfer.finish();
});

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: with an upstream-style agent (no credit), default policy: a frontend that never reads is closed once twice its bound is queued (counted), the agent stream is never paused, and a transfer beside it completes`, async (t) => {
    const bound = 8 * MiB;
    const cluster = await startCluster(t, { mode, agents: 0, server: { maxFrontendBufferBytes: bound } });
    const agent = await fakeAgent(t, cluster);
    const flooding = agent.serveEchoFloodingFirst();
    await neverReadingConnection(t, cluster, mode, '10.0.0.1:80');
    // Started while the agent floods the stalled connection on the same stream.
    const transfer = await startEchoTransfer(openTunnel(t, cluster), '10.0.0.2:80', 4 * MiB);
    await waitFor(flooding.closeRequested, 'the server to close the stalled connection (CLOSE_REQ to the agent)');
    await transfer.finish();
    assert.equal(cluster.server.router.stalledFrontendCloses, 1);
    assert.equal(cluster.server.router.frontendBoundPauses, 0, 'the agent stream was never paused');
    const closes = (await cluster.server.metrics.connectionStallCloses.get()).values;
    assert.deepEqual(closes.map((v) => [v.labels.reason, v.value]), [['frontend_buffer_full', 1]]);
    assert.equal((await cluster.server.metrics.streamPausesForFrontend.get()).values[0]?.value ?? 0, 0);
    // Twice the bound plus what the transports in between hold, nowhere near unbounded.
    const pushed = flooding.pushedBytes();
    assert.ok(pushed < 64 * MiB, `the agent pushed ${pushed} bytes before the server gave up`);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'both connections to be forgotten');
  });

  test(`${mode}: with an upstream-style agent (no credit), --frontend-stall-policy=pause: a frontend that never reads is closed after the stall timeout (its agent stream paused meanwhile), then another connection on that agent completes`, async (t) => {
    // Small enough to reach quickly, large enough that the healthy echo below never gets near it.
    const bound = 8 * MiB;
    const cluster = await startCluster(t, { mode, agents: 0, server: { maxFrontendBufferBytes: bound, frontendStallTimeoutMs: 300, frontendStallPolicy: 'pause' } });
    const agent = await fakeAgent(t, cluster);
    const flooding = agent.serveEchoFloodingFirst();
    await neverReadingConnection(t, cluster, mode, '10.0.0.1:80');
    await waitFor(flooding.closeRequested, 'the server to close the stalled connection (CLOSE_REQ to the agent)');
    assert.equal(cluster.server.router.stalledFrontendCloses, 1);
    assert.equal(cluster.server.router.frontendBoundPauses, 1, 'the agent stream was paused for it');
    const closes = (await cluster.server.metrics.connectionStallCloses.get()).values;
    assert.deepEqual(closes.map((v) => [v.labels.reason, v.value]), [['frontend_not_reading', 1]]);
    assert.equal((await cluster.server.metrics.streamPausesForFrontend.get()).values[0]?.value, 1);
    // Bounded: the bound plus what the transports in between hold, nowhere near unbounded.
    const pushed = flooding.pushedBytes();
    assert.ok(pushed < 64 * MiB, `the agent pushed ${pushed} bytes before the server gave up`);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'the stalled connection to be forgotten');

    const tunnel = openTunnel(t, cluster);
    const transfer = await startEchoTransfer(tunnel, '10.0.0.2:80', 4 * MiB);
    await transfer.finish();
    assert.equal(cluster.server.router.stalledFrontendCloses, 1);
  });

  test(`${mode}: with our agent (credit flow control), a frontend that never reads pauses only its own destination; another connection's transfer completes`, async (t) => {
    const cluster = await startCluster(t, { mode });
    const stuck = await target(t, flood());
    const dest = await target(t, echo);
    await neverReadingConnection(t, cluster, mode, stuck.address);
    const stuckConn = await stuck.connections.next();
    const transfer = await startEchoTransfer(openTunnel(t, cluster), dest.address, 16 * MiB);
    await transfer.finish();
    await waitFor(() => cluster.server.router.establishedCount === 1, 'the finished transfer to be forgotten');
    // The flooding destination was paused by credit, not drained into memory somewhere.
    assert.ok(stuckConn.bytesWritten() < 48 * MiB, `the stalled destination wrote ${stuckConn.bytesWritten()} bytes`);
    assert.equal(cluster.server.router.stalledFrontendCloses, 0);
    assert.equal(cluster.server.router.establishedCount, 1, 'the stalled connection is paused, not closed');
    assert.equal(stuck.openConnections, 1);
  });
}
