/**
 * Frontends closed for stalling are released even when their client never
 * reads what is left (FrontendPeer.abandon): a connection closed because its
 * client stopped reading (upstream-style agent flooding a client that never
 * reads) must not keep its server socket (HTTP-CONNECT) or HTTP/2 stream
 * (gRPC) and up to 16 MiB buffered for good. The connection gauges go back
 * to 0 and another tunnel on the same agent still flows. Connections closed
 * for other reasons keep their data: a client that reads slowly after the
 * agent closed its connection gets every byte, however long it takes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LocalCluster } from '../src/dev/local-cluster.ts';
import type { TunnelMode } from '../src/client/tunnel-options.ts';
import { PacketType, packets } from '../src/protocol/packet.ts';
import { connectHead, neverReadingConnection, openTunnel, rawFrontendSocket, startCluster } from './helpers/cluster.ts';
import { KiB, MiB, closed, randomPayload, readExactly, sha256, writeAll } from './helpers/payload.ts';
import { connectFakeAgent, type FakeAgent } from './helpers/raw-grpc.ts';
import { sleep, waitFor } from './helpers/wait.ts';

async function fakeAgent(t: TestContext, cluster: LocalCluster): Promise<FakeAgent> {
  const agent = await connectFakeAgent(cluster, { agentId: 'upstream-style-agent' });
  t.after(() => agent.close());
  await waitFor(() => cluster.server.router.backendList.length === 1, 'the fake agent to be registered');
  return agent;
}

/** The frontend connection gauge of this mode: http_connections or grpc_connections{service_method="Proxy"}. */
async function frontendGauge(cluster: LocalCluster, mode: TunnelMode): Promise<number> {
  const m = cluster.server.metrics;
  const values = mode === 'grpc' ? (await m.grpcConnections.get()).values.filter((v) => v.labels.service_method === 'Proxy') : (await m.httpConnections.get()).values;
  return values.reduce((sum, v) => sum + v.value, 0);
}

async function waitForGauge(cluster: LocalCluster, mode: TunnelMode, want: number, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  let last = -1;
  while ((last = await frontendGauge(cluster, mode)) !== want) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}: the ${mode} frontend gauge is ${last}, not ${want}`);
    await sleep(20);
  }
}

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: a frontend closed for stalling is released after the linger although its client never reads (gauge back to 0); another tunnel on the agent flows`, async (t) => {
    // Stall timeout 300 ms, so the linger is its 1 s floor.
    const cluster = await startCluster(t, { mode, agents: 0, server: { maxFrontendBufferBytes: 8 * MiB, frontendStallTimeoutMs: 300 } });
    assert.equal(cluster.server.router.frontendLingerMs, 1000);
    const agent = await fakeAgent(t, cluster);
    const flooding = agent.serveEchoFloodingFirst();
    await neverReadingConnection(t, cluster, mode, '10.0.0.1:80');
    await waitForGauge(cluster, mode, 1, 'the stalled tunnel to be counted');
    await waitFor(flooding.closeRequested, 'the server to close the stalled connection (CLOSE_REQ to the agent)');
    assert.equal(cluster.server.router.stalledFrontendCloses, 1);
    // Released: socket destroyed / stream reset, with everything it held.
    await waitForGauge(cluster, mode, 0, 'the stalled frontend to be released');
    await waitFor(() => cluster.server.router.establishedCount === 0, 'the stalled connection to be forgotten');

    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', '10.0.0.2:80');
    const data = randomPayload(4 * MiB);
    const back = readExactly(socket, data.length);
    await writeAll(socket, data, 64 * KiB);
    assert.equal(sha256(await back), sha256(data));
    socket.end();
    await closed(socket);
    await waitForGauge(cluster, mode, 0, 'the healthy tunnel to end');
    assert.equal(cluster.server.router.stalledFrontendCloses, 1);
  });

  test(`${mode}: a client that reads slowly after the agent closed its connection still gets every byte (only connections closed for stalling are cut after the linger)`, async (t) => {
    const cluster = await startCluster(t, { mode, agents: 0, server: { maxFrontendBufferBytes: 16 * MiB, frontendStallTimeoutMs: 300 } });
    const agent = await fakeAgent(t, cluster);
    const size = 6 * MiB;
    const data = randomPayload(size);
    agent.onPacket = (p) => {
      if (p.type !== PacketType.DIAL_REQ) return;
      const id = 77n;
      agent.send(packets.dialResponse(p.dialRequest.random, id));
      void (async () => {
        for (let off = 0; off < size; off += 64 * KiB) if (!agent.send(packets.data(id, data.subarray(off, off + 64 * KiB)))) await agent.waitDrain();
        agent.send(packets.closeResponse(id));
      })();
    };
    const received: Buffer[] = [];
    let bytes = 0;
    const rate = 3000; // bytes per ms: the 6 MiB take at least 2 s, twice the linger
    const started = Date.now();
    const slowReader = (s: NodeJS.ReadableStream & { pause(): unknown; resume(): unknown }): Promise<void> =>
      new Promise((resolve) => {
        s.on('data', (c: Buffer) => {
          received.push(c);
          bytes += c.length;
          s.pause();
          setTimeout(() => s.resume(), Math.max(0, started + bytes / rate - Date.now()));
        });
        s.on('end', () => resolve());
        s.on('close', () => resolve());
        s.resume(); // readExactly left it paused
      });
    if (mode === 'grpc') {
      const socket = await openTunnel(t, cluster).dial('tcp', '10.0.0.1:80');
      socket.on('error', () => {});
      await slowReader(socket);
    } else {
      const socket = await rawFrontendSocket(t, cluster);
      socket.write(connectHead('10.0.0.1:80'));
      const head = 'HTTP/1.1 200 Connection Established\r\n\r\n';
      assert.equal((await readExactly(socket, head.length)).toString('latin1'), head);
      await slowReader(socket);
    }
    assert.ok(Date.now() - started > cluster.server.router.frontendLingerMs, `the slow read took ${Date.now() - started} ms, more than the linger`);
    assert.equal(bytes, size);
    assert.equal(sha256(Buffer.concat(received)), sha256(data));
    await waitForGauge(cluster, mode, 0, 'the finished tunnel to be released');
  });
}
