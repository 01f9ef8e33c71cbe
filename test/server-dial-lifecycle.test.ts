/**
 * The life of a pending dial, watched from both sides: a scripted agent on
 * the agent port sees exactly what the server forwards, while a real client
 * (gRPC) or a raw socket (HTTP-CONNECT) sees what the server answers. Covers
 * DIAL_CLS in both directions, an agent lost mid-dial and
 * --backend-dial-timeout.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { LocalCluster } from '../src/dev/local-cluster.ts';
import { rejectsDial } from './helpers/dial-rejection.ts';
import { PacketType, packets, type DialRequestPacket, type Packet } from '../src/protocol/packet.ts';
import { connectHead, openTunnel, rawFrontendSocket, startCluster } from './helpers/cluster.ts';
import { readToEnd } from './helpers/payload.ts';
import { connectFakeAgent, openRawFrontend, type FakeAgent } from './helpers/raw-grpc.ts';
import { waitFor } from './helpers/wait.ts';

async function fakeAgent(t: TestContext, cluster: LocalCluster): Promise<FakeAgent> {
  const agent = await connectFakeAgent(cluster, { agentId: 'scripted-agent' });
  t.after(() => agent.close());
  await waitFor(() => cluster.server.router.backendList.length === 1, 'the scripted agent to be registered');
  return agent;
}

function isDialReq(p: Packet): p is DialRequestPacket {
  return p.type === PacketType.DIAL_REQ;
}

test('grpc: aborting a pending dial sends DIAL_CLS for that dial to the agent; a late DIAL_RSP is then closed', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  const ac = new AbortController();
  const dial = openTunnel(t, cluster).dial('tcp', '10.0.0.1:443', { signal: ac.signal });
  const req = await agent.packets.nextMatching(isDialReq);
  assert.equal(req.dialRequest.address, '10.0.0.1:443');
  assert.equal(req.dialRequest.protocol, 'tcp');
  ac.abort();
  assert.equal((await rejectsDial(dial)).code, 'context');
  assert.deepEqual(await agent.packets.next(), packets.closeDial(req.dialRequest.random));
  await waitFor(() => cluster.server.router.pendingDialCount === 0, 'pending dial count back to 0');
  // An agent that answers anyway (upstream agents ignore DIAL_CLS) gets its orphan closed.
  agent.send(packets.dialResponse(req.dialRequest.random, 5n));
  assert.deepEqual(await agent.packets.next(), packets.closeRequest(5n));
  assert.equal(cluster.server.router.establishedCount, 0);
});

test('http-connect: a client that hangs up while the dial is pending makes the server send DIAL_CLS', async (t) => {
  const cluster = await startCluster(t, { mode: 'http-connect', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  const socket = await rawFrontendSocket(t, cluster);
  socket.write(connectHead('10.0.0.1:443'));
  const req = await agent.packets.nextMatching(isDialReq);
  assert.equal(req.dialRequest.address, '10.0.0.1:443');
  assert.ok(req.dialRequest.random >= 0n && req.dialRequest.random < 1n << 63n);
  socket.destroy();
  assert.deepEqual(await agent.packets.next(), packets.closeDial(req.dialRequest.random));
  await waitFor(() => cluster.server.router.pendingDialCount === 0, 'pending dial count back to 0');
});

test('grpc: DIAL_CLS from the agent fails the pending dial with code dialclosed', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  agent.onPacket = (p) => {
    if (isDialReq(p)) agent.send(packets.closeDial(p.dialRequest.random));
  };
  const err = await rejectsDial(openTunnel(t, cluster).dial('tcp', '10.0.0.1:443'));
  assert.equal(err.code, 'dialclosed');
  assert.equal(cluster.server.router.pendingDialCount, 0);
});

test('http-connect: DIAL_CLS from the agent closes the client socket without a response', async (t) => {
  const cluster = await startCluster(t, { mode: 'http-connect', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  agent.onPacket = (p) => {
    if (isDialReq(p)) agent.send(packets.closeDial(p.dialRequest.random));
  };
  const socket = await rawFrontendSocket(t, cluster);
  const all = readToEnd(socket);
  socket.write(connectHead('10.0.0.1:443'));
  assert.equal((await all).length, 0);
  assert.equal(cluster.server.router.pendingDialCount, 0);
});

test('grpc: an agent lost while a dial is pending fails that dial at once (upstream would leave it to the client timeout)', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  agent.onPacket = (p) => {
    if (isDialReq(p)) agent.close();
  };
  const err = await rejectsDial(openTunnel(t, cluster).dial('tcp', '10.0.0.1:443', { timeoutMs: 60_000 }));
  assert.equal(err.code, 'endpoint');
  assert.equal(cluster.server.router.pendingDialCount, 0);
  await waitFor(() => cluster.server.router.backendList.length === 0, 'the agent to be removed');
});

test('http-connect: an agent lost while a dial is pending gets upstream\'s 502 "Backend context error"', async (t) => {
  const cluster = await startCluster(t, { mode: 'http-connect', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  agent.onPacket = (p) => {
    if (isDialReq(p)) agent.close();
  };
  const socket = await rawFrontendSocket(t, cluster);
  const all = readToEnd(socket);
  socket.write(connectHead('10.0.0.1:443'));
  assert.equal(
    (await all).toString('latin1'),
    'HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBackend context error: context canceled\r\n',
  );
  assert.equal(cluster.server.router.pendingDialCount, 0);
});

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: --backend-dial-timeout answers a dial the agent never answers`, async (t) => {
    const cluster = await startCluster(t, { mode, agents: 0, server: { backendDialTimeoutMs: 200 } });
    const agent = await fakeAgent(t, cluster);
    if (mode === 'grpc') {
      const err = await rejectsDial(openTunnel(t, cluster).dial('tcp', '10.0.0.1:443', { timeoutMs: 60_000 }));
      assert.equal(err.code, 'endpoint');
      assert.equal(err.message, 'timed out waiting for backend dial');
    } else {
      const socket = await rawFrontendSocket(t, cluster);
      const all = readToEnd(socket);
      socket.write(connectHead('10.0.0.1:443'));
      assert.equal(
        (await all).toString('latin1'),
        'HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBackend dial timeout: timed out waiting for backend dial\r\n',
      );
    }
    assert.equal(cluster.server.router.pendingDialCount, 0);
    // The agent's late answer is an orphan the server closes.
    const req = await agent.packets.nextMatching(isDialReq);
    agent.send(packets.dialResponse(req.dialRequest.random, 11n));
    assert.deepEqual(await agent.packets.nextMatching((p) => p.type === PacketType.CLOSE_REQ), packets.closeRequest(11n));
  });
}

test('grpc: the frontend stream gets its response headers with the first packet (DIAL_RSP), not when it opens, as grpc-go sends them', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const agent = await fakeAgent(t, cluster);
  const fe = await openRawFrontend(cluster);
  t.after(() => fe.close());
  let headersSeen = false;
  void fe.call.headers.then(() => (headersSeen = true), () => {});
  fe.send(packets.dialRequest('10.0.0.1:443', 7n));
  const req = await agent.packets.nextMatching(isDialReq);
  // Frames arrive in order: once this PING is acknowledged, anything the server
  // wrote on the connection before it (headers sent when the stream opened) has been read.
  await new Promise<void>((resolve, reject) => fe.channel.session.ping((err) => (err ? reject(err) : resolve())));
  assert.equal(headersSeen, false, 'response headers went out before there was anything to answer');
  agent.send(packets.dialResponse(req.dialRequest.random, 9n));
  const rsp = await fe.packets.next();
  assert.equal(rsp.type, PacketType.DIAL_RSP);
  assert.equal((await fe.call.headers)[':status'], 200);
  assert.equal(headersSeen, true);
});
