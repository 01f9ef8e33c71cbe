/**
 * Tunnels end to end: fake proxy-server ⇄ (TLS gRPC) ⇄ agent ⇄ TCP endpoint.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';
import { PacketType, packets, type CloseResponsePacket, type DataPacket, type DialResponsePacket, type Packet } from '../src/protocol/packet.ts';
import { FakeProxyServer, deferred, patternBytes, sha256, startEndpoint, testAgentConfig, testPki, unusedPort, until, type FakeAgentStream } from './agent-fixtures.ts';

const isDialRsp = (random: bigint) => (p: Packet): p is DialResponsePacket => p.type === PacketType.DIAL_RSP && p.dialResponse.random === random;
const isCloseRsp = (id: bigint) => (p: Packet): p is CloseResponsePacket => p.type === PacketType.CLOSE_RSP && p.closeResponse.connectID === id;
const dataBytes = (s: FakeAgentStream, id: bigint): number =>
  s.received.reduce((n, p) => n + (p.type === PacketType.DATA && p.data.connectID === id ? p.data.data.length : 0), 0);
const dataChunks = (s: FakeAgentStream, id: bigint): Uint8Array[] =>
  s.received.filter((p): p is DataPacket => p.type === PacketType.DATA && p.data.connectID === id).map((p) => p.data.data);

async function connectedAgent(server: FakeProxyServer, extra: Parameters<typeof testAgentConfig>[2] = {}) {
  const pki = await testPki();
  const metrics = createAgentMetrics({ processMetrics: false });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [server], extra), { metrics });
  await agent.start();
  const stream = await server.stream(0);
  await until(() => agent.isReady);
  return { agent, stream, metrics };
}

async function dial(stream: FakeAgentStream, address: string, random: bigint): Promise<DialResponsePacket['dialResponse']> {
  stream.send(packets.dialRequest(address, random));
  return (await stream.waitFor(isDialRsp(random))).dialResponse;
}

test('dial, DATA both ways (sha256 over several MiB), CLOSE_REQ, remote close, unknown IDs', async () => {
  const upload = patternBytes(5 * 1024 * 1024 + 3, 21);
  const download = patternBytes(4 * 1024 * 1024 + 1, 22);
  const uploaded = deferred<Buffer[]>();
  const endpoint = await startEndpoint((s) => {
    const chunks: Buffer[] = [];
    let n = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n === upload.length) uploaded.resolve(chunks);
    });
    s.write(download);
  });
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const { agent, stream, metrics } = await connectedAgent(server);
  try {
    const ok = await dial(stream, endpoint.address, 7n);
    assert.deepEqual(ok, { random: 7n, connectID: 1n, error: '' });
    for (let off = 0; off < upload.length; off += 32 * 1024) stream.send(packets.data(1n, upload.subarray(off, off + 32 * 1024)));
    assert.equal(sha256(await uploaded.promise), sha256(upload));
    await until(() => dataBytes(stream, 1n) === download.length);
    assert.equal(sha256(dataChunks(stream, 1n)), sha256(download));

    const closedPort = await unusedPort();
    const failed = await dial(stream, `127.0.0.1:${closedPort}`, 8n);
    assert.deepEqual(failed, { random: 8n, connectID: 0n, error: `dial tcp 127.0.0.1:${closedPort}: connect: connection refused` });

    stream.send(packets.closeRequest(1n));
    assert.equal((await stream.waitFor(isCloseRsp(1n))).closeResponse.error, '');
    stream.send(packets.data(1n, Buffer.from('late')));
    const late = await stream.waitFor((p): p is CloseResponsePacket => isCloseRsp(1n)(p) && p.closeResponse.error !== '');
    assert.equal(late.closeResponse.error, 'unrecognized connectID');
    stream.send(packets.closeRequest(99n));
    assert.equal((await stream.waitFor(isCloseRsp(99n))).closeResponse.error, 'Unknown connectID');

    const packetsSeen = await metrics.streamPackets.get();
    const count = (segment: string, type: string): number =>
      packetsSeen.values.find((v) => v.labels.segment === segment && v.labels.packet_type === type)?.value ?? 0;
    assert.equal(count('to_agent', 'DIAL_REQ'), 2);
    assert.equal(count('from_agent', 'DIAL_RSP'), 2);
  } finally {
    await agent.stop();
    await server.close();
    await endpoint.close();
  }
});

test('endpoint closes first: remaining DATA, then an unsolicited CLOSE_RSP', async () => {
  const endpoint = await startEndpoint((s) => s.end('bye'));
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const { agent, stream } = await connectedAgent(server);
  try {
    const { connectID } = await dial(stream, endpoint.address, 1n);
    const close = await stream.waitFor(isCloseRsp(connectID));
    assert.equal(close.closeResponse.error, '');
    assert.equal(Buffer.concat(dataChunks(stream, connectID)).toString(), 'bye');
  } finally {
    await agent.stop();
    await server.close();
    await endpoint.close();
  }
});

test('no head-of-line blocking: a destination that never reads is closed alone while a bulk transfer completes', async () => {
  const bound = 512 * 1024;
  const bulk = patternBytes(8 * 1024 * 1024, 5);
  const bulkDone = deferred<Buffer[]>();
  const stalledSockets: Socket[] = [];
  const endpoint = await startEndpoint((s) => {
    s.once('data', (first: Buffer) => {
      if (first.toString() === 'stall') {
        s.pause(); // never reads again
        stalledSockets.push(s);
        return;
      }
      const chunks: Buffer[] = [first];
      let n = first.length;
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        n += c.length;
        if (n === bulk.length) bulkDone.resolve(chunks);
      });
    });
  });
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const { agent, stream } = await connectedAgent(server, { maxEndpointBufferedBytes: bound });
  try {
    const stalled = (await dial(stream, endpoint.address, 1n)).connectID;
    const flowing = (await dial(stream, endpoint.address, 2n)).connectID;
    stream.send(packets.data(stalled, Buffer.from('stall')));
    await until(() => stalledSockets.length === 1);
    // The server interleaves both connections on the one stream, as a real
    // proxy-server does; a blocking agent would stop reading here.
    const junk = Buffer.alloc(64 * 1024, 0x5a);
    let off = 0;
    let stallClose: CloseResponsePacket | undefined;
    while (off < bulk.length || stallClose === undefined) {
      if (stallClose === undefined) stream.send(packets.data(stalled, junk));
      if (off < bulk.length) {
        stream.send(packets.data(flowing, bulk.subarray(off, off + 64 * 1024)));
        off += 64 * 1024;
      }
      stallClose = stream.received.find(isCloseRsp(stalled)) as CloseResponsePacket | undefined;
      // Let the transport move; respect the stream's own backpressure.
      await new Promise((r) => setImmediate(r));
      if (stream.call.stream.bufferedBytes > 4 * 1024 * 1024) await new Promise((r) => stream.call.stream.h2.once('drain', r));
    }
    assert.match(stallClose.closeResponse.error, /destination stopped reading/);
    assert.equal(sha256(await bulkDone.promise), sha256(bulk));
    const stalls = await agent.tsMetrics.connectionStallCloses.get();
    assert.equal(stalls.values.find((v) => v.labels.reason === 'endpoint_buffer_full')?.value, 1, 'closed at twice the bound');
    // The flowing connection is still usable afterwards.
    stream.send(packets.closeRequest(flowing));
    assert.equal((await stream.waitFor(isCloseRsp(flowing))).closeResponse.error, '');
  } finally {
    await agent.stop();
    await server.close();
    await endpoint.close();
  }
});

test('drain() sends DRAIN (08 06 42 00) on every stream; existing and new tunnels keep working', async () => {
  const endpoint = await startEndpoint((s) => s.pipe(s));
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const { agent, stream } = await connectedAgent(server);
  try {
    const before = (await dial(stream, endpoint.address, 1n)).connectID;
    agent.drain();
    assert.equal(agent.isDraining, true);
    await stream.waitFor((p) => p.type === PacketType.DRAIN);
    // gRPC frame: uncompressed, length 4, then the packet bytes.
    const raw = Buffer.concat(stream.rawBytes);
    assert.ok(raw.includes(Buffer.from([0x00, 0x00, 0x00, 0x00, 0x04, 0x08, 0x06, 0x42, 0x00])), raw.toString('hex'));
    stream.send(packets.data(before, Buffer.from('echo')));
    await until(() => dataBytes(stream, before) === 4);
    // The server may still pick a draining agent as a last resort.
    const after = await dial(stream, endpoint.address, 2n);
    assert.equal(after.error, '');
    assert.equal(agent.isReady, true);
  } finally {
    await agent.stop();
    await server.close();
    await endpoint.close();
  }
});

test('losing the server stream closes its endpoint connections; stop() closes everything', async () => {
  const closed = deferred<void>();
  const endpoint = await startEndpoint((s) => s.on('close', () => closed.resolve()));
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const { agent, stream, metrics } = await connectedAgent(server);
  try {
    await dial(stream, endpoint.address, 1n);
    server.dropConnections();
    await closed.promise;
    await until(() => server.streams.length === 2);
    await until(() => agent.isReady);
    assert.equal((await metrics.openEndpointConnections.get()).values[0]?.value, 0);
    await agent.stop();
    await server.streams[1]!.waitClosed();
    assert.equal(agent.isReady, false);
  } finally {
    await agent.stop();
    await server.close();
    await endpoint.close();
  }
});
