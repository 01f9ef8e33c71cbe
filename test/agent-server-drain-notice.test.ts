/**
 * The agent side of the server drain notice (konnectivity-ts extension,
 * src/protocol/server-drain-notice.ts) against stand-in servers: it is
 * offered in metadata, honoured only when the server echoed it, a draining
 * server stops counting toward the server count, and a successor with the
 * same serverID replaces the draining link while the old one keeps serving
 * its tunnels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GrpcServerCall } from '../src/grpc/grpc-server.ts';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';
import { PacketType, packets } from '../src/protocol/packet.ts';
import { SERVER_DRAIN_NOTICE_HEADER } from '../src/protocol/server-drain-notice.ts';
import { FakeProxyServer, startEndpoint, testAgentConfig, testPki, until } from './agent-fixtures.ts';

/** Response headers of a konnectivity-ts server: the extension is echoed only when offered. */
const ourServerHeaders = (serverID: string) => (call: GrpcServerCall): Record<string, string> => ({
  serverid: serverID,
  servercount: '1',
  ...(call.metadata[SERVER_DRAIN_NOTICE_HEADER] === 'v1' ? { [SERVER_DRAIN_NOTICE_HEADER]: 'v1' } : {}),
});

test('a draining server stops counting; its successor (same serverID) replaces the link, and the old link still serves its tunnels', async (t) => {
  const pki = await testPki();
  const old = await FakeProxyServer.start({ serverID: 'cp-1', headers: ourServerHeaders('cp-1') });
  const successor = await FakeProxyServer.start({ serverID: 'cp-1', headers: ourServerHeaders('cp-1') });
  const endpoint = await startEndpoint((s) => s.pipe(s));
  const agent = new KonnectivityAgent(testAgentConfig(pki, [old, successor]), { metrics: createAgentMetrics({ processMetrics: false }) });
  t.after(async () => {
    await agent.stop();
    await old.close();
    await successor.close();
    await endpoint.close();
  });
  await agent.start();
  const oldStream = await old.stream(0);
  assert.equal(oldStream.metadata(SERVER_DRAIN_NOTICE_HEADER), 'v1', 'the agent offers the extension');
  await until(() => agent.connectedServerIDs.length === 1);
  // Holding 1 of 1, the agent does not look further.
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(successor.attempts, 0);

  oldStream.send(packets.drain());
  const next = await successor.stream(0);
  await until(() => agent.drainingServerIDs.length === 0 && agent.connectedServerIDs.length === 1);
  assert.deepEqual(agent.connectedServerIDs, ['cp-1']);
  assert.equal(next.metadata(SERVER_DRAIN_NOTICE_HEADER), 'v1');
  // The replaced link is still open and still dials for the old server.
  oldStream.send(packets.dialRequest(endpoint.address, 7n));
  const rsp = await oldStream.waitFor((p) => p.type === PacketType.DIAL_RSP);
  assert.equal(rsp.type === PacketType.DIAL_RSP && rsp.dialResponse.error, '');
  assert.equal(oldStream.closed, false);
});

test('without the echoed header a DRAIN from a server is ignored (upstream behaviour); with serverDrainNotice=false nothing is offered', async (t) => {
  const pki = await testPki();
  // An upstream server: never echoes the extension.
  const a = await FakeProxyServer.start({ serverID: 'up-1' });
  const b = await FakeProxyServer.start({ serverID: 'up-2' });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [a, b]), { metrics: createAgentMetrics({ processMetrics: false }) });
  const optedOut = new KonnectivityAgent(testAgentConfig(pki, [b], { agentID: 'agent-2', serverDrainNotice: false }), { metrics: createAgentMetrics({ processMetrics: false }) });
  t.after(async () => {
    await agent.stop();
    await optedOut.stop();
    await a.close();
    await b.close();
  });
  await agent.start();
  const stream = await a.stream(0);
  await until(() => agent.connectedServerIDs.length === 1);
  stream.send(packets.drain());
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(agent.drainingServerIDs, []);
  assert.equal(b.attempts, 0, 'no reason to look for another server');
  assert.deepEqual(agent.connectedServerIDs, ['up-1']);

  await optedOut.start();
  const s = await b.stream(0);
  assert.equal(s.metadata(SERVER_DRAIN_NOTICE_HEADER), undefined);
});
