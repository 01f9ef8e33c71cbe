/** The relay state machine driven in memory: every rule of spec §4 without any socket. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { Backend, ProxyRouter } from '../src/server/proxy-router.ts';
import { parseAgentIdentifiers } from '../src/server/agent-identifiers.ts';
import { createServerMetrics } from '../src/observability/server-metrics.ts';
import { silentLogger } from '../src/observability/logger.ts';
import type { ProxyStrategyName } from '../src/server/backend-registry.ts';
import { RecordingFrontend } from './helpers/recording-frontend.ts';

function setup(strategies: ProxyStrategyName[] = ['default'], backendDialTimeoutMs = 0) {
  const metrics = createServerMetrics({ processMetrics: false });
  const router = new ProxyRouter({ strategies, metrics, logger: silentLogger, backendDialTimeoutMs, maxFrontendBufferBytes: 1000, random: () => 0 });
  const agent = (agentId: string, identifiers = '', accept = true) => {
    const sent: Packet[] = [];
    const b = new Backend(agentId, parseAgentIdentifiers(identifiers), { send: (p) => (sent.push(p), accept) });
    router.addBackend(b);
    return { b, sent };
  };
  return { router, metrics, agent };
}

const R = (1n << 62n) + 12345n; // above 2^53 on purpose

test('dial, data both ways, agent-initiated close', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  const peer = new RecordingFrontend();
  const fe = router.openFrontend(peer);
  fe.handlePacket(packets.dialRequest('10.0.0.1:10250', R));
  assert.deepEqual(sent[0], packets.dialRequest('10.0.0.1:10250', R));
  assert.equal(router.pendingDialCount, 1);
  router.handleBackendPacket(b, packets.dialResponse(R, 1n));
  assert.deepEqual(peer.events.shift(), ['dialResponse', R, 1n, '']);
  assert.equal(router.establishedCount, 1);
  fe.handlePacket(packets.data(1n, Buffer.from('ping')));
  assert.equal(sent[1]!.type, PacketType.DATA);
  router.handleBackendPacket(b, packets.data(1n, Buffer.from('pong')));
  assert.deepEqual(peer.events.shift(), ['data', 1n, 'pong']);
  router.handleBackendPacket(b, packets.closeResponse(1n));
  assert.deepEqual(peer.events.shift(), ['closeResponse', 1n, '']);
  assert.equal(router.establishedCount, 0);
});

test('no agent: DIAL_RSP "No agent available" and the stream is no longer processed', () => {
  const { router, metrics } = setup();
  const peer = new RecordingFrontend();
  const fe = router.openFrontend(peer);
  fe.handlePacket(packets.dialRequest('x:1', 5n));
  assert.deepEqual(peer.events, [['dialResponse', 5n, 0n, 'No agent available']]);
  fe.handlePacket(packets.data(1n, Buffer.from('x')));
  assert.equal(peer.events.length, 1);
  return metrics.registry.getSingleMetricAsString('konnectivity_network_proxy_server_dial_failure_count').then((s) => assert.match(s, /reason="no_agent"} 1/));
});

test('agent dial error is forwarded; nothing established', () => {
  const { router, agent } = setup();
  const { b } = agent('a1');
  const peer = new RecordingFrontend();
  router.openFrontend(peer).handlePacket(packets.dialRequest('127.0.0.1:1', 9n));
  router.handleBackendPacket(b, packets.dialResponse(9n, 0n, 'dial tcp 127.0.0.1:1: connect: connection refused'));
  assert.deepEqual(peer.events, [['dialResponse', 9n, 0n, 'dial tcp 127.0.0.1:1: connect: connection refused']]);
  assert.equal(router.establishedCount, 0);
});

test('late DIAL_RSP after frontend DIAL_CLS → CLOSE_REQ to the agent', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  const peer = new RecordingFrontend();
  const fe = router.openFrontend(peer);
  fe.handlePacket(packets.dialRequest('h:1', 7n));
  fe.handlePacket(packets.closeDial(7n));
  assert.equal(router.pendingDialCount, 0);
  router.handleBackendPacket(b, packets.dialResponse(7n, 3n));
  assert.deepEqual(sent.at(-1), packets.closeRequest(3n));
  assert.equal(peer.events.length, 0);
});

test('first-connectID rule: DATA for a second ID closes both', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  const peer = new RecordingFrontend();
  const fe = router.openFrontend(peer);
  fe.handlePacket(packets.dialRequest('h:1', 1n));
  router.handleBackendPacket(b, packets.dialResponse(1n, 1n));
  fe.handlePacket(packets.data(1n, Buffer.from('a')));
  fe.handlePacket(packets.data(2n, Buffer.from('b')));
  assert.deepEqual(sent.slice(-2), [packets.closeRequest(1n), packets.closeRequest(2n)]);
  assert.deepEqual(peer.events.slice(-2), [
    ['closeResponse', 1n, 'mismatched connection IDs'],
    ['closeResponse', 2n, 'mismatched connection IDs'],
  ]);
});

test('DATA before any dial → CLOSE_RSP "backend not initialized"; CLOSE_REQ before dial → "backend uninitialized"', () => {
  const { router } = setup();
  const p1 = new RecordingFrontend();
  router.openFrontend(p1).handlePacket(packets.data(4n, Buffer.from('x')));
  assert.deepEqual(p1.events, [['closeResponse', 4n, 'backend not initialized']]);
  const p2 = new RecordingFrontend();
  router.openFrontend(p2).handlePacket(packets.closeRequest(4n));
  assert.deepEqual(p2.events, [['closeResponse', 4n, 'backend uninitialized']]);
});

test('frontend end: DIAL_CLS for pending dials, CLOSE_REQ for established', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  const fe1 = router.openFrontend(new RecordingFrontend());
  fe1.handlePacket(packets.dialRequest('h:1', 11n));
  const fe2 = router.openFrontend(new RecordingFrontend());
  fe2.handlePacket(packets.dialRequest('h:1', 12n));
  router.handleBackendPacket(b, packets.dialResponse(12n, 1n));
  fe1.end();
  fe2.end();
  assert.deepEqual(sent.slice(-2), [packets.closeDial(11n), packets.closeRequest(1n)]);
  // The agent's CLOSE_RSP then retires the connection.
  router.handleBackendPacket(b, packets.closeResponse(1n));
  assert.equal(router.establishedCount, 0);
});

test('a CLOSE_REQ for a connection whose client is gone goes to the agent at once, not with the next packet', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  const gone = router.openFrontend(new RecordingFrontend());
  gone.handlePacket(packets.dialRequest('h:1', 21n));
  router.handleBackendPacket(b, packets.dialResponse(21n, 1n));
  const before = sent.length;
  gone.end();
  // Sent within end(): the agent closes the connection while the client's next dial is on its way.
  assert.deepEqual(sent.slice(before), [packets.closeRequest(1n)]);
});

test('a frontend that ends right after its own CLOSE_REQ gets one CLOSE_REQ to the agent, not two', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  const peer = new RecordingFrontend();
  const fe = router.openFrontend(peer);
  fe.handlePacket(packets.dialRequest('h:1', 31n));
  router.handleBackendPacket(b, packets.dialResponse(31n, 5n));
  fe.handlePacket(packets.closeRequest(5n));
  fe.end(); // END_STREAM (or a reset) before the agent's CLOSE_RSP came back
  assert.deepEqual(
    sent.filter((p) => p.type === PacketType.CLOSE_REQ),
    [packets.closeRequest(5n)],
  );
  // The agent's answer still retires the connection.
  router.handleBackendPacket(b, packets.closeResponse(5n));
  assert.equal(router.establishedCount, 0);
});

test('agent disconnect: frontends get CLOSE_RSP for connections and a DIAL_RSP error for pending dials', () => {
  const { router, agent } = setup();
  const { b } = agent('a1');
  const peer = new RecordingFrontend();
  router.openFrontend(peer).handlePacket(packets.dialRequest('h:1', 21n));
  router.handleBackendPacket(b, packets.dialResponse(21n, 1n));
  const peer2 = new RecordingFrontend();
  router.openFrontend(peer2).handlePacket(packets.dialRequest('h:1', 22n));
  router.removeBackend(b);
  assert.deepEqual(peer.events.at(-1), ['closeResponse', 1n, '']);
  assert.deepEqual(peer2.events, [['dialResponse', 22n, 0n, 'agent disconnected before answering the dial']]);
  assert.equal(router.registry.ready, false);
});

test('DATA and CLOSE_RSP for unknown connectIDs from the agent', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  router.handleBackendPacket(b, packets.data(99n, Buffer.from('x')));
  assert.deepEqual(sent.at(-1), packets.closeRequest(99n));
  router.handleBackendPacket(b, packets.closeResponse(98n)); // ignored, no throw
  router.handleBackendPacket(b, packets.dialResponse(97n, 0n, 'x')); // unrecognized, connectID 0 → nothing sent
  assert.deepEqual(sent.at(-1), packets.closeRequest(99n));
});

test('agent DIAL_CLS is forwarded to the frontend', () => {
  const { router, agent } = setup();
  const { b } = agent('a1');
  const peer = new RecordingFrontend();
  router.openFrontend(peer).handlePacket(packets.dialRequest('h:1', 31n));
  router.handleBackendPacket(b, packets.closeDial(31n));
  assert.deepEqual(peer.events, [['dialClosed', 31n]]);
});

test('DRAIN: draining agents are used only as a last resort', () => {
  const { router, agent } = setup();
  const a = agent('a');
  const c = agent('c');
  router.handleBackendPacket(a.b, packets.drain());
  for (let i = 0; i < 5; i++) router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('h:1', BigInt(100 + i)));
  assert.equal(a.sent.length, 0);
  assert.equal(c.sent.length, 5);
  router.handleBackendPacket(c.b, packets.drain());
  router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('h:1', 200n));
  assert.equal(a.sent.length + c.sent.length, 6);
});

test('destHost routes by the dial host; fall-through to default', () => {
  const { router, agent } = setup(['destHost', 'default']);
  const n1 = agent('n1', 'host=node1&ipv4=10.0.0.1&ipv6=fd00::1');
  const n2 = agent('n2', 'ipv4=10.0.0.2');
  router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('10.0.0.2:10250', 1n));
  router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('node1:10250', 2n));
  router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('[fd00::1]:10250', 3n));
  assert.equal(n2.sent.length, 1);
  assert.equal(n1.sent.length, 2);
  router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('10.9.9.9:80', 4n));
  assert.equal(n1.sent.length + n2.sent.length, 4);
  assert.equal(router.registry.ready, true);
});

test('readiness follows the first strategy only', () => {
  const { router, agent } = setup(['destHost', 'default']);
  agent('plain'); // no identifiers
  assert.equal(router.registry.ready, false);
  assert.equal(router.registry.count('default'), 1);
});

test('defaultRoute only uses agents that advertise default-route=true', () => {
  const { router, agent } = setup(['defaultRoute']);
  const plain = agent('plain');
  const gw = agent('gw', 'default-route=true');
  router.openFrontend(new RecordingFrontend()).handlePacket(packets.dialRequest('1.2.3.4:5', 1n));
  assert.equal(plain.sent.length, 0);
  assert.equal(gw.sent.length, 1);
});

test('backend dial timeout answers the frontend', async () => {
  const { router, agent } = setup(['default'], 20);
  agent('slow');
  const peer = new RecordingFrontend();
  router.openFrontend(peer).handlePacket(packets.dialRequest('h:1', 41n));
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(peer.events, [['dialResponse', 41n, 0n, 'timed out waiting for backend dial']]);
});

test('backpressured agent stream pauses the sending frontend until it drains', () => {
  const { router, agent } = setup();
  const { b } = agent('a1', '', false);
  const peer = new RecordingFrontend();
  const fe = router.openFrontend(peer);
  fe.handlePacket(packets.dialRequest('h:1', 51n));
  router.handleBackendPacket(b, packets.dialResponse(51n, 1n));
  fe.handlePacket(packets.data(1n, Buffer.from('x')));
  assert.equal(peer.paused, true);
  router.backendDrained(b);
  assert.equal(peer.paused, false);
});

test('a frontend that stops reading is closed once its buffer bound is exceeded; others keep flowing', () => {
  const { router, agent } = setup();
  const { b, sent } = agent('a1');
  const stalled = new RecordingFrontend();
  const healthy = new RecordingFrontend();
  router.openFrontend(stalled).handlePacket(packets.dialRequest('h:1', 61n));
  router.openFrontend(healthy).handlePacket(packets.dialRequest('h:1', 62n));
  router.handleBackendPacket(b, packets.dialResponse(61n, 1n));
  router.handleBackendPacket(b, packets.dialResponse(62n, 2n));
  stalled.bufferedBytes = 5000;
  router.handleBackendPacket(b, packets.data(1n, Buffer.from('x')));
  assert.deepEqual(sent.at(-1), packets.closeRequest(1n));
  assert.match(String(stalled.events.at(-1)?.[2]), /frontend stopped reading/);
  router.handleBackendPacket(b, packets.data(2n, Buffer.from('ok')));
  assert.deepEqual(healthy.events.at(-1), ['data', 2n, 'ok']);
  assert.equal(router.stalledFrontendCloses, 1);
});
