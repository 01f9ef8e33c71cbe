/**
 * Data integrity under load: 64 MiB each way through every frontend mode,
 * checked with sha256 at the far end, and 200 concurrent dials each
 * exchanging data. Sizes, not speeds, are asserted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { TunnelConnection } from '../src/client/tunnel-options.ts';
import { openTunnel, startCluster, variantName, variants } from './helpers/cluster.ts';
import { KiB, MiB, closed, hashUntilEnd, randomPayload, readExactly, sha256, writeAll } from './helpers/payload.ts';
import { TcpTarget, echo, sink, source } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

const SIZE = 64 * MiB;

async function target(t: TestContext, behaviour: Parameters<typeof TcpTarget.start>[0]): Promise<TcpTarget> {
  const tgt = await TcpTarget.start(behaviour);
  t.after(() => tgt.close());
  return tgt;
}

/** Reads like a consumer slower than the agent: a short pause after every `every` bytes. */
function slowHash(socket: TunnelConnection, every: number): Promise<{ bytes: number; sha256: string }> {
  const result = hashUntilEnd(socket);
  let sincePause = 0;
  socket.on('data', (c: Buffer) => {
    sincePause += c.length;
    if (sincePause >= every) {
      sincePause = 0;
      socket.pause();
      setTimeout(() => socket.resume(), 2);
    }
  });
  return result.then(({ bytes, sha256 }) => ({ bytes, sha256 }));
}

for (const v of variants) {
  const name = variantName(v);
  test(`${name}: 64 MiB upload arrives intact (sha256 at the destination)`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport });
    const dest = await target(t, sink);
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    const data = randomPayload(SIZE);
    await writeAll(socket, data, 1 * MiB);
    socket.end();
    const conn = await dest.connections.next();
    assert.deepEqual(await conn.received, { bytes: SIZE, sha256: sha256(data) });
    await closed(socket);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });

  test(`${name}: 64 MiB download arrives intact (sha256 at the client)`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport });
    const data = randomPayload(SIZE);
    const dest = await target(t, source(data));
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    const got = await hashUntilEnd(socket);
    assert.equal(got.error, null);
    assert.deepEqual({ bytes: got.bytes, sha256: got.sha256 }, { bytes: SIZE, sha256: sha256(data) });
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });
}

for (const mode of ['grpc', 'http-connect'] as const) {
  // Without per-connection flow control these two would hit the stalled-connection bounds
  // (server 16 MiB, agent 8 MiB) and lose the connection although both ends keep reading.
  test(`${mode}: a 48 MiB download to a client slower than the agent completes with the default server config`, async (t) => {
    const cluster = await startCluster(t, { mode });
    const data = randomPayload(48 * MiB);
    const dest = await target(t, source(data));
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    const got = await slowHash(socket, 256 * KiB);
    assert.equal(cluster.server.router.stalledFrontendCloses, 0, 'the server closed a frontend that was reading');
    assert.deepEqual(got, { bytes: data.length, sha256: sha256(data) });
  });

  test(`${mode}: a 48 MiB upload to a destination slower than the client completes with the default agent config`, async (t) => {
    const cluster = await startCluster(t, { mode });
    const data = randomPayload(48 * MiB);
    const dest = await target(t, (c) => {
      let since = 0;
      c.socket.on('data', (chunk: Buffer) => {
        since += chunk.length;
        if (since >= 256 * KiB) {
          since = 0;
          c.socket.pause();
          setTimeout(() => c.socket.resume(), 2);
        }
      });
      c.socket.once('end', () => c.socket.end());
    });
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    socket.on('error', () => {});
    const written = writeAll(socket, data, 1 * MiB).then(() => socket.end());
    const conn = await dest.connections.next();
    const got = await conn.received;
    await written;
    assert.deepEqual(got, { bytes: data.length, sha256: sha256(data) });
  });

  test(`${mode}: 200 parallel dials each exchange data`, async (t) => {
    const cluster = await startCluster(t, { mode });
    const dest = await target(t, echo);
    const tunnel = openTunnel(t, cluster);
    const N = 200;
    const results = await Promise.allSettled(
      Array.from({ length: N }, async (_, i) => {
        const socket = await tunnel.dial('tcp', dest.address);
        const data = randomPayload(16 * KiB + i);
        const back = readExactly(socket, data.length);
        await writeAll(socket, data, 4 * KiB);
        const echoed = await back;
        socket.end();
        await closed(socket);
        return sha256(echoed) === sha256(data);
      }),
    );
    const failures = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
    assert.deepEqual(failures, []);
    assert.ok(results.every((r) => r.status === 'fulfilled' && r.value), 'some echo came back different');
    assert.equal(dest.connections.all.length, N);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
    assert.equal(cluster.server.router.pendingDialCount, 0);
  });
}
