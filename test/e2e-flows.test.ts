/**
 * Every packet flow end to end on real sockets: client library → server
 * (gRPC or HTTP-CONNECT frontend, unix socket or mTLS TCP) → agent → TCP
 * destination, and back. Each test asserts what both ends observed and that
 * the server's pending/established bookkeeping returns to zero.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rejectsDial } from './helpers/dial-rejection.ts';
import { PacketType, packets } from '../src/protocol/packet.ts';
import { connectHead, openTunnel, rawFrontendSocket, sharedPki, startCluster, variantName, variants } from './helpers/cluster.ts';
import { closed, readExactly, readToEnd, randomPayload, sha256, writeAll, KiB } from './helpers/payload.ts';
import { spawnBin } from './helpers/processes.ts';
import { openRawFrontend } from './helpers/raw-grpc.ts';
import { TcpTarget, blackholePort, closedPort, echo, flood, freePort, sink } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

async function target(t: import('node:test').TestContext, behaviour: Parameters<typeof TcpTarget.start>[0]): Promise<TcpTarget> {
  const tgt = await TcpTarget.start(behaviour);
  t.after(() => tgt.close());
  return tgt;
}

for (const v of variants) {
  const name = variantName(v);

  test(`${name}: dial succeeds and bytes flow both ways`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport });
    const dest = await target(t, echo);
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    assert.equal(cluster.server.router.establishedCount, 1);
    const data = randomPayload(256 * KiB);
    const back = readExactly(socket, data.length);
    await writeAll(socket, data, 16 * KiB);
    assert.equal(sha256(await back), sha256(data));
    socket.end();
    await closed(socket);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });

  test(`${name}: a refused dial fails with the agent's Go error text`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport });
    const port = await closedPort();
    const tunnel = openTunnel(t, cluster);
    const err = await rejectsDial(tunnel.dial('tcp', `127.0.0.1:${port}`));
    assert.equal(err.code, 'endpoint');
    const goText = `dial tcp 127.0.0.1:${port}: connect: connection refused`;
    if (v.mode === 'grpc') assert.equal(err.message, goText);
    else {
      assert.equal(err.httpStatus, 502);
      assert.ok(err.message.includes(goText), err.message);
    }
    assert.equal(cluster.server.router.pendingDialCount, 0);
    assert.equal(cluster.server.router.establishedCount, 0);
  });

  test(`${name}: with no agent the dial fails with "No agent available"`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport, agents: 0 });
    const tunnel = openTunnel(t, cluster);
    const err = await rejectsDial(tunnel.dial('tcp', '127.0.0.1:9'));
    assert.equal(err.code, 'endpoint');
    assert.ok(err.message.includes('No agent available'), err.message);
    if (v.mode === 'http-connect') assert.equal(err.httpStatus, 500);
    assert.equal(cluster.server.router.pendingDialCount, 0);
  });

  test(`${name}: closing from the client side reaches the destination as EOF`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport });
    const dest = await target(t, sink);
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    const data = randomPayload(64 * KiB);
    await writeAll(socket, data);
    socket.end();
    const conn = await dest.connections.next();
    const got = await conn.received;
    // Everything written before end() arrives before the destination's EOF.
    assert.deepEqual(got, { bytes: data.length, sha256: sha256(data) });
    assert.ok(conn.peerEnded());
    await conn.closed;
    await closed(socket);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });

  test(`${name}: closing from the destination side flushes its last bytes, then EOF reaches the client`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport });
    const last = randomPayload(200 * KiB);
    const dest = await target(t, (c) => {
      c.socket.once('data', () => c.socket.end(last));
    });
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    const body = readToEnd(socket);
    socket.write('go');
    const got = await body;
    assert.equal(got.length, last.length);
    assert.equal(sha256(got), sha256(last));
    await closed(socket);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });

  test(`${name}: the frontend going away closes the agent's socket to the destination`, async (t) => {
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport });
    const dest = await target(t, flood());
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    await readExactly(socket, 64 * KiB);
    const conn = await dest.connections.next();
    socket.destroy(); // abrupt: gRPC RST_STREAM / raw socket close, no CLOSE_REQ from the client
    // The agent closes its side (after flushing what it holds); the destination sees EOF.
    await conn.closed;
    assert.ok(conn.peerEnded());
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
    assert.equal(dest.openConnections, 0);
  });

  test(`${name}: an endpoint dial timeout comes back as the agent's i/o timeout error`, async (t) => {
    const hole = await blackholePort();
    t.after(() => hole.close());
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport, agent: { endpointDialTimeoutMs: 300 } });
    const tunnel = openTunnel(t, cluster);
    const err = await rejectsDial(tunnel.dial('tcp', hole.address));
    assert.equal(err.code, 'endpoint');
    const goText = `dial tcp ${hole.address}: i/o timeout`;
    if (v.mode === 'grpc') assert.equal(err.message, goText);
    else {
      assert.equal(err.httpStatus, 504);
      assert.ok(err.message.includes(goText), err.message);
    }
    assert.equal(cluster.server.router.pendingDialCount, 0);
  });

  test(`${name}: aborting a pending dial clears the server's pending dial`, async (t) => {
    const hole = await blackholePort();
    t.after(() => hole.close());
    const cluster = await startCluster(t, { mode: v.mode, frontendTransport: v.transport, agent: { endpointDialTimeoutMs: 60_000 } });
    const tunnel = openTunnel(t, cluster);
    const ac = new AbortController();
    const dial = tunnel.dial('tcp', hole.address, { signal: ac.signal });
    await waitFor(() => cluster.server.router.pendingDialCount === 1, 'the dial to be pending on the server');
    ac.abort();
    const err = await rejectsDial(dial);
    assert.equal(err.code, 'context');
    await waitFor(() => cluster.server.router.pendingDialCount === 0, 'pending dial count back to 0');
    assert.equal(cluster.server.router.establishedCount, 0);
    // The tunnel (and the server) still serve the next dial.
    const dest = await target(t, echo);
    const socket = await tunnel.dial('tcp', dest.address);
    socket.write('ping');
    assert.equal((await readExactly(socket, 4)).toString(), 'ping');
    socket.destroy();
  });
}

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: an agent process killed mid-transfer ends the client's connection and the server forgets it`, async (t) => {
    const pki = await sharedPki();
    const cluster = await startCluster(t, { mode, agents: 0 });
    const agent = spawnBin(t, 'konnectivity-agent', [
      '--ca-cert', pki.ca.certPath,
      '--proxy-server-host', '127.0.0.1',
      '--proxy-server-port', String(cluster.server.addresses.agentPort),
      '--health-server-host', '127.0.0.1',
      '--health-server-port', String(await freePort()),
      '--admin-server-port', String(await freePort()),
      '--sync-interval', '100ms',
      '--probe-interval', '100ms',
    ]);
    await cluster.waitForAgents(1, 20_000);
    const dest = await target(t, flood());
    const tunnel = openTunnel(t, cluster);
    const socket = await tunnel.dial('tcp', dest.address);
    let received = 0;
    socket.on('data', (c: Buffer) => (received += c.length));
    socket.on('error', () => {});
    await waitFor(() => received >= 1024 * KiB, 'the transfer to be under way');
    assert.equal(cluster.server.router.establishedCount, 1);
    agent.child.kill('SIGKILL');
    await closed(socket);
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
    await waitFor(() => cluster.server.router.backendList.length === 0, 'the agent to be removed');
    assert.equal((await agent.exited).signal, 'SIGKILL');
    // Its destination socket died with the agent process.
    await waitFor(() => dest.openConnections === 0, 'destination connection closed');
  });
}

test('grpc: the exact DIAL_RSP error packet for a refused dial', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const port = await closedPort();
  const fe = await openRawFrontend(cluster);
  t.after(() => fe.close());
  fe.send(packets.dialRequest(`127.0.0.1:${port}`, 12345n));
  const rsp = await fe.packets.next();
  assert.deepEqual(rsp, packets.dialResponse(12345n, 0n, `dial tcp 127.0.0.1:${port}: connect: connection refused`));
  assert.equal(cluster.server.router.pendingDialCount, 0);
});

test('grpc: "No agent available" DIAL_RSP, exactly', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const fe = await openRawFrontend(cluster);
  t.after(() => fe.close());
  fe.send(packets.dialRequest('127.0.0.1:9', 777n));
  assert.deepEqual(await fe.packets.next(), packets.dialResponse(777n, 0n, 'No agent available'));
});

test('grpc: a half-closed frontend stream (no CLOSE_REQ) closes the destination socket', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const dest = await target(t, sink);
  const fe = await openRawFrontend(cluster);
  t.after(() => fe.close());
  fe.send(packets.dialRequest(dest.address, 1n));
  const rsp = await fe.packets.next();
  assert.equal(rsp.type, PacketType.DIAL_RSP);
  assert.ok(rsp.type === PacketType.DIAL_RSP && rsp.dialResponse.connectID > 0n && rsp.dialResponse.error === '');
  const conn = await dest.connections.next();
  fe.call.closeSend();
  await conn.closed;
  assert.deepEqual(await fe.status, { code: 0, message: '' });
  await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
});

test('http-connect: closing the raw socket while the dial is pending clears the pending dial', async (t) => {
  const hole = await blackholePort();
  t.after(() => hole.close());
  const cluster = await startCluster(t, { mode: 'http-connect', agent: { endpointDialTimeoutMs: 60_000 } });
  const socket = await rawFrontendSocket(t, cluster);
  socket.write(connectHead(hole.address));
  await waitFor(() => cluster.server.router.pendingDialCount === 1, 'the dial to be pending');
  socket.destroy();
  await waitFor(() => cluster.server.router.pendingDialCount === 0, 'pending dial count back to 0');
});

test('http-connect: the 500 for "no agent" is byte-exact and closes the connection', async (t) => {
  const cluster = await startCluster(t, { mode: 'http-connect', agents: 0 });
  const socket = await rawFrontendSocket(t, cluster);
  const all = readToEnd(socket);
  socket.write(connectHead('127.0.0.1:9'));
  assert.equal((await all).toString('latin1'), 'HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\ncurrently no tunnels available: No agent available');
});
