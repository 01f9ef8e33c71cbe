/**
 * The server relay core under the model-checking fuzzer (fuzz/router-fuzz.ts),
 * a bounded run per test-suite run with a fresh seed (printed; replay with
 * FUZZ_SEED=<seed> or `npm run fuzz -- --target router --seed <seed>`), plus
 * the bugs it found, pinned as plain scenarios.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runRouterCase } from '../fuzz/router-fuzz.ts';
import { Rng } from '../fuzz/prng.ts';
import { UnhandledRejections } from '../fuzz/unhandled-rejections.ts';
import { createServerMetrics } from '../src/observability/server-metrics.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { parseAgentIdentifiers } from '../src/server/agent-identifiers.ts';
import { Backend, ProxyRouter } from '../src/server/proxy-router.ts';
import { RecordingFrontend } from './helpers/recording-frontend.ts';

const CASES = Number(process.env['FUZZ_CASES'] ?? 6000);

test(`router fuzz: ${CASES} random interleavings keep every invariant`, async (t) => {
  const base = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : (Math.random() * 2 ** 32) >>> 0;
  t.diagnostic(`base seed ${base} (FUZZ_SEED=${base} replays this run)`);
  // The router is synchronous; one check at the end (after a yield, when Node
  // reports them) still catches a promise it might leave rejected.
  const unhandled = new UnhandledRejections().start();
  try {
    const rng = new Rng(base);
    for (let i = 0; i < CASES; i++) runRouterCase(rng.fork());
    await unhandled.check();
  } finally {
    unhandled.stop();
  }
});

// ---------------------------------------------------------------------------


function setup() {
  const metrics = createServerMetrics({ processMetrics: false });
  const router = new ProxyRouter({ strategies: ['default'], metrics, logger: silentLogger, backendDialTimeoutMs: 0, maxFrontendBufferBytes: 1 << 20, random: () => 0 });
  const sent: Packet[] = [];
  const b = new Backend('agent', parseAgentIdentifiers(''), { send: (p) => (sent.push(p), true) });
  router.addBackend(b);
  const connect = (random: bigint, connectID: bigint) => {
    const peer = new RecordingFrontend();
    const fe = router.openFrontend(peer);
    fe.handlePacket(packets.dialRequest('10.0.0.1:1', random));
    router.handleBackendPacket(b, packets.dialResponse(random, connectID));
    return { peer, fe };
  };
  return { router, b, sent, connect };
}

const dataTo = (sent: Packet[], id: bigint): string[] =>
  sent.filter((p) => p.type === PacketType.DATA && p.data.connectID === id).map((p) => (p.type === PacketType.DATA ? Buffer.from(p.data.data).toString() : ''));

describe('bugs the fuzzer found (fixed in proxy-router.ts)', () => {
  test('a dial ID already pending is refused, instead of overwriting the first dial (which then never heard back and could be cancelled by the other stream)', () => {
    const { router, b, sent } = setup();
    const p1 = new RecordingFrontend();
    const p2 = new RecordingFrontend();
    const f1 = router.openFrontend(p1);
    const f2 = router.openFrontend(p2);
    f1.handlePacket(packets.dialRequest('10.0.0.1:1', 42n));
    f2.handlePacket(packets.dialRequest('10.0.0.1:1', 42n));
    assert.deepEqual(p2.events, [['dialResponse', 42n, 0n, 'konnectivity-server: dial ID 42 is already in use by a pending dial']]);
    assert.equal(sent.filter((p) => p.type === PacketType.DIAL_REQ).length, 1);
    f2.end(); // must not cancel f1's dial
    assert.equal(router.pendingDialCount, 1);
    router.handleBackendPacket(b, packets.dialResponse(42n, 1n));
    assert.deepEqual(p1.events, [['dialResponse', 42n, 1n, '']]);
  });

  test('an agent answering with a connectID it already uses fails that dial; the live connection and the counts stay right', () => {
    const { router, b, sent, connect } = setup();
    const first = connect(1n, 7n);
    const p = new RecordingFrontend();
    router.openFrontend(p).handlePacket(packets.dialRequest('10.0.0.1:1', 2n));
    router.handleBackendPacket(b, packets.dialResponse(2n, 7n));
    assert.deepEqual(p.events, [['dialResponse', 2n, 0n, 'konnectivity-server: agent agent answered with connectID 7, which is already in use']]);
    assert.equal(router.establishedCount, 1);
    assert.ok(!sent.some((x) => x.type === PacketType.CLOSE_REQ), 'the live connection 7 is not closed');
    router.handleBackendPacket(b, packets.data(7n, Buffer.from('still first')));
    assert.deepEqual(first.peer.events.at(-1), ['data', 7n, 'still first']);
    router.handleBackendPacket(b, packets.closeResponse(7n));
    assert.equal(router.establishedCount, 0); // before the fix: 1, forever
  });

  test('a successful DIAL_RSP with connectID 0 fails the dial (such a connection could never carry DATA)', () => {
    const { router, b } = setup();
    const p = new RecordingFrontend();
    router.openFrontend(p).handlePacket(packets.dialRequest('10.0.0.1:1', 3n));
    router.handleBackendPacket(b, packets.dialResponse(3n, 0n));
    assert.match(String(p.events[0]![3]), /answered with connectID 0, which is not valid/);
    assert.equal(router.establishedCount, 0);
  });

  test("isolation: a frontend cannot write into or close another stream's connection", () => {
    const { router, sent, connect } = setup();
    const a = connect(1n, 5n);
    const b = connect(2n, 6n);
    b.fe.handlePacket(packets.data(6n, Buffer.from('mine')));
    // Stream b names a's connection (a second ID for b is also b's protocol violation).
    const intruder = connect(3n, 8n);
    intruder.fe.handlePacket(packets.data(5n, Buffer.from('injected')));
    intruder.fe.handlePacket(packets.closeRequest(5n));
    assert.deepEqual(dataTo(sent, 5n), []);
    assert.ok(!sent.some((p) => p.type === PacketType.CLOSE_REQ && p.closeRequest.connectID === 5n));
    assert.deepEqual(intruder.peer.events.at(-1), ['closeResponse', 5n, 'Unknown connectID']);
    a.fe.handlePacket(packets.data(5n, Buffer.from('a still works')));
    assert.deepEqual(dataTo(sent, 5n), ['a still works']);
    // The one-connection-per-stream rule still closes what the offending stream holds, and only that.
    const c = connect(4n, 9n);
    c.fe.handlePacket(packets.data(9n, Buffer.from('x')));
    c.fe.handlePacket(packets.data(6n, Buffer.from('y')));
    const closes = sent.filter((p) => p.type === PacketType.CLOSE_REQ).map((p) => (p.type === PacketType.CLOSE_REQ ? p.closeRequest.connectID : 0n));
    assert.deepEqual(closes, [9n]);
    assert.equal(router.establishedCount, 4);
  });

  test('after "mismatched connection IDs" the stream gets no more DATA and no second CLOSE_RSP for the closed connection', () => {
    const { router, b, connect } = setup();
    const s = connect(1n, 3n);
    s.fe.handlePacket(packets.data(4n, Buffer.from('first ID is not ours')));
    s.fe.handlePacket(packets.data(3n, Buffer.from('second ID')));
    assert.deepEqual(s.peer.events.slice(-2), [
      ['closeResponse', 4n, 'mismatched connection IDs'],
      ['closeResponse', 3n, 'mismatched connection IDs'],
    ]);
    const before = s.peer.events.length;
    router.handleBackendPacket(b, packets.data(3n, Buffer.from('late')));
    router.handleBackendPacket(b, packets.closeResponse(3n));
    assert.equal(s.peer.events.length, before);
    assert.equal(router.establishedCount, 0);
  });
});
