/**
 * Head-of-line blocking on the agent side, end to end on real sockets (our
 * server and our agent, both frontend modes): one tunnelled connection A is
 * stuck at the agent — its destination stops reading, or its dial never
 * completes — and another connection B through the same agent (and the same
 * client tunnel) transfers 16 MiB, sha256-checked. Correctness only: B
 * completes, A is neither closed nor lost, and what the agent holds for A
 * stays under the configured bound. No timing thresholds (deadlines only turn
 * a hang into a readable failure).
 *
 * Against an agent that does not offer the flow-control extension (the
 * server then treats it as upstream's), the documented fallback is asserted
 * instead (docs/design/flow-control.md): the agent pauses the server stream
 * for A until --endpoint-stall-timeout, then closes A alone with a counted
 * reason, and B completes after that.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { AgentConfig } from '../src/agent/agent-config.ts';
import type { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { MAX_DATA_PAYLOAD_BYTES } from '../src/client/proxy-stream-socket.ts';
import { KonnectivityDialError } from '../src/client/dial-error.ts';
import type { Tunnel, TunnelMode } from '../src/client/tunnel-options.ts';
import type { LocalCluster } from '../src/dev/local-cluster.ts';
import { openTunnel, startCluster } from './helpers/cluster.ts';
import { KiB, MiB, closed, randomPayload, sha256, writeAll } from './helpers/payload.ts';
import { TcpTarget, blackholePort, notReading, sink, type TargetBehaviour } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

const modes: TunnelMode[] = ['grpc', 'http-connect'];
const B_BYTES = 16 * MiB;
/** Only turns a hang (head-of-line blocking) into a failure; nothing is timed. */
const HANG_MS = 60_000;

async function target(t: TestContext, behaviour: TargetBehaviour): Promise<TcpTarget> {
  const tgt = await TcpTarget.start(behaviour);
  t.after(() => tgt.close());
  return tgt;
}

function within<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${HANG_MS / 1000} s: head-of-line blocked?`)), HANG_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

// The agent's per-connection accounting, read from its relays (private state, looked at, never changed).
interface RelayView {
  connections: Map<bigint, { address: string; bufferedBytes: number }>;
  pendingDials: Map<bigint, AbortController>;
}

function relaysOf(agent: KonnectivityAgent): RelayView[] {
  const set = (agent as unknown as { links: { links: Map<string, { relay: RelayView }> } }).links;
  return [...set.links.values()].map((link) => link.relay);
}

/** Bytes the agent has queued toward `address` (not yet taken by the destination's kernel). */
function heldFor(agent: KonnectivityAgent, address: string): number {
  let n = 0;
  for (const relay of relaysOf(agent)) for (const c of relay.connections.values()) if (c.address === address) n += c.bufferedBytes;
  return n;
}

function connectionsTo(agent: KonnectivityAgent, address: string): number {
  let n = 0;
  for (const relay of relaysOf(agent)) for (const c of relay.connections.values()) if (c.address === address) n++;
  return n;
}

function agentPendingDials(agent: KonnectivityAgent): number {
  return relaysOf(agent).reduce((n, r) => n + r.pendingDials.size, 0);
}

async function counter(agent: KonnectivityAgent, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = agent.metrics.registry.getSingleMetric(name);
  assert.ok(metric, `metric ${name} exists`);
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((n, v) => n + v.value, 0);
}

const STALL_CLOSES = 'konnectivity_network_proxy_agent_ts_connection_stall_closes_total';
const STREAM_PAUSES = 'konnectivity_network_proxy_agent_ts_stream_pauses_for_endpoint_total';

/** The peak of `sample()` until stopped (sampled every few ms; the relay's own bound check is exact, this only reports). */
function peakOf(sample: () => number): { peak: () => number; stop: () => void } {
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, sample())), 2);
  return { peak: () => Math.max(peak, sample()), stop: () => clearInterval(timer) };
}

/**
 * A's writer: an endless upload that honours backpressure (it waits for
 * 'drain' once write() says "full") and hashes what it handed over, so the
 * destination can check every byte arrived in order.
 */
class EndlessUpload {
  accepted = 0;
  waitingForDrain = false;
  closed = false;
  private stopped = false;
  private chunkNo = 0;
  private readonly hash = createHash('sha256');
  private readonly base = randomPayload(MiB + 64 * KiB);

  readonly socket: Duplex;

  constructor(socket: Duplex) {
    this.socket = socket;
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
    socket.resume(); // the destination never answers; an EOF or error still shows
    this.pump();
  }

  private readonly pump = (): void => {
    this.waitingForDrain = false;
    while (!this.stopped && !this.socket.destroyed) {
      // Chunks from shifting offsets of random bytes: a reordering changes the digest.
      const off = (this.chunkNo++ * 4099) % MiB;
      const chunk = this.base.subarray(off, off + 64 * KiB);
      this.hash.update(chunk);
      this.accepted += chunk.length;
      if (!this.socket.write(chunk)) {
        this.waitingForDrain = true;
        this.socket.once('drain', this.pump);
        return;
      }
    }
  };

  /** Stops writing; everything accepted so far still gets delivered. */
  stop(): { bytes: number; sha256: string } {
    this.stopped = true;
    return { bytes: this.accepted, sha256: this.hash.copy().digest('hex') };
  }
}

/**
 * The setup both stalled-destination tests share: A, an endless upload
 * through `agent` to a destination that never reads, and a sink for B, on
 * one tunnel; `held` tracks the peak the agent queues for A.
 */
async function stuckUploadBesideSink(t: TestContext, cluster: LocalCluster, agent: KonnectivityAgent) {
  const stuck = await target(t, notReading);
  const bDest = await target(t, sink);
  const tunnel = openTunnel(t, cluster);

  const a = new EndlessUpload(await tunnel.dial('tcp', stuck.address));
  const aConn = await stuck.connections.next();
  // Read once: the sampler runs until teardown, and `stuck.address` throws once its server is closed.
  const stuckAddress = stuck.address;
  const held = peakOf(() => heldFor(agent, stuckAddress));
  t.after(held.stop);
  return { stuck, stuckAddress, bDest, tunnel, a, aConn, held };
}

/** B: dial, upload B_BYTES of random data to a sink, close; resolves with what the sink received. */
async function transferB(tunnel: Tunnel, dest: TcpTarget, onDialed: () => void = () => {}): Promise<{ bytes: number; sha256: string }> {
  const socket = await tunnel.dial('tcp', dest.address);
  onDialed();
  const conn = await dest.connections.next();
  const data = randomPayload(B_BYTES);
  await writeAll(socket, data, 64 * KiB);
  socket.end();
  const got = await conn.received;
  await closed(socket);
  return got;
}

const configs: { name: string; agent: Partial<AgentConfig> }[] = [
  { name: 'default window and bound', agent: {} },
  // The smallest window there is; the bound leaves room for the window plus one DATA payload, the documented worst case.
  { name: 'a 64 KiB window and a small --endpoint-buffer-bytes', agent: { flowWindowBytes: 64 * KiB, maxEndpointBufferedBytes: 64 * KiB + MAX_DATA_PAYLOAD_BYTES } },
];

for (const mode of modes) {
  for (const cfg of configs) {
    test(`${mode}, ${cfg.name}: a destination that stops reading holds only its own connection; a 16 MiB transfer beside it completes; A's bytes all arrive once it reads again`, async (t) => {
      const cluster = await startCluster(t, { mode, agent: cfg.agent });
      const agent = cluster.agents[0]!;
      const window = agent.config.flowWindowBytes ?? 1024 * 1024;
      const bound = agent.config.maxEndpointBufferedBytes ?? 8 * MiB;
      assert.ok(cluster.server.router.backendList[0]!.flow, 'our agent and server negotiated flow control');
      const { stuck, bDest, tunnel, a, aConn, held } = await stuckUploadBesideSink(t, cluster, agent);
      // Stalled: A's writer waits for a drain, and the agent has bytes it cannot hand to the destination.
      await waitFor(() => a.waitingForDrain && heldFor(agent, stuck.address) > 0, "A's writes to back-pressure with bytes queued at the agent");

      const b = await within('B (16 MiB beside the stalled destination)', transferB(tunnel, bDest));
      assert.equal(b.bytes, B_BYTES);
      assert.equal(b.sha256, sha256(randomPayload(B_BYTES)));

      // A: still stalled, still open, nothing closed for stalling, and bounded.
      assert.equal(a.closed, false, "A's connection is still open");
      assert.equal(aConn.peerEnded(), false);
      assert.equal(stuck.openConnections, 1);
      assert.equal(agent.endpointConnectionCount, 1, 'only A is left at the agent');
      assert.equal(await counter(agent, STALL_CLOSES), 0, 'nothing closed for stalling');
      assert.equal(await counter(agent, STREAM_PAUSES), 0, 'the server stream was never paused for A');
      assert.equal(cluster.server.router.stalledFrontendCloses, 0);
      assert.ok(a.waitingForDrain, 'A is still back-pressured');
      const peak = held.peak();
      assert.ok(peak <= bound, `the agent held ${peak} bytes for A, over the configured bound ${bound}`);
      // Credit is returned once the agent's queue is at most half a window (rule 3), so the queue can reach
      // 1.5 windows plus one DATA payload (docs/design/flow-control.md rule 4 says one window plus one read).
      assert.ok(peak <= 1.5 * window + MAX_DATA_PAYLOAD_BYTES, `the agent held ${peak} bytes for A, more than 1.5 × its window ${window} plus one DATA payload`);
      // The whole path (client, server, agent, kernel buffers) took a bounded amount from A.
      assert.ok(a.accepted < 64 * MiB, `A's socket accepted ${a.accepted} bytes although its destination reads nothing`);

      // The destination reads again: every byte A's socket accepted arrives, in order.
      const sent = a.stop();
      aConn.socket.resume();
      a.socket.end();
      const got = await within("A's bytes after the destination read again", aConn.received);
      assert.equal(got.bytes, sent.bytes);
      assert.equal(got.sha256, sent.sha256);
      await within("A's close", closed(a.socket));
      await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
    });
  }

  test(`${mode}: a dial that hangs at the agent holds nobody up; aborting it clears it on server and agent`, async (t) => {
    const hole = await blackholePort();
    t.after(() => hole.close());
    const cluster = await startCluster(t, { mode, agent: { endpointDialTimeoutMs: 10 * 60_000 } });
    const agent = cluster.agents[0]!;
    const bDest = await target(t, sink);
    const tunnel = openTunnel(t, cluster);

    const abort = new AbortController();
    let aSettled = false;
    const aDial = tunnel.dial('tcp', hole.address, { signal: abort.signal, timeoutMs: 10 * 60_000 }).then(
      (s) => {
        s.destroy();
        throw new Error('the dial to the blackhole completed');
      },
      (err: unknown) => err,
    );
    void aDial.finally(() => (aSettled = true));
    await waitFor(() => cluster.server.router.pendingDialCount === 1 && agentPendingDials(agent) === 1, "A's dial to be pending on server and agent");

    const b = await within('B (16 MiB beside the hanging dial)', transferB(tunnel, bDest));
    assert.equal(b.bytes, B_BYTES);
    assert.equal(b.sha256, sha256(randomPayload(B_BYTES)));

    // A's dial is still pending on both sides: B went past it.
    assert.equal(aSettled, false, "A's dial is still pending");
    assert.equal(cluster.server.router.pendingDialCount, 1);
    assert.equal(agentPendingDials(agent), 1);

    abort.abort();
    const err = await aDial;
    assert.ok(err instanceof KonnectivityDialError, `expected a KonnectivityDialError, got ${String(err)}`);
    assert.equal(err.code, 'context');
    await waitFor(() => cluster.server.router.pendingDialCount === 0, 'the pending dial to be cleared on the server');
    await waitFor(() => agentPendingDials(agent) === 0, 'the pending dial to be abandoned by the agent');
    assert.equal(cluster.server.router.establishedCount, 0);
    assert.equal(agent.endpointConnectionCount, 0);
  });

  test(`${mode}: agent without the flow-control extension (upstream-style), default policy: a destination that stops reading never pauses the stream; only A is closed, at twice its bound (counted), and B completes`, async (t) => {
    // Large enough that B's own destination, which reads, never falls this far behind on a busy CI machine.
    const bound = 4 * MiB;
    const cluster = await startCluster(t, { mode, agent: { flowWindowBytes: 0, maxEndpointBufferedBytes: bound } });
    const agent = cluster.agents[0]!;
    assert.equal(cluster.server.router.backendList[0]!.flow, null, 'no flow control negotiated');
    const { stuck, bDest, tunnel, a, aConn, held } = await stuckUploadBesideSink(t, cluster, agent);
    await waitFor(() => a.closed || heldFor(agent, stuck.address) > bound, 'the agent to queue more than its bound for A');
    const b = await within('B (16 MiB beside the stalled destination)', transferB(tunnel, bDest));
    assert.equal(b.bytes, B_BYTES);
    assert.equal(b.sha256, sha256(randomPayload(B_BYTES)));

    await within("A's close", closed(a.socket));
    aConn.socket.resume(); // a paused socket cannot notice its peer going away
    await within("A's destination socket to close", aConn.closed);
    assert.equal(await counter(agent, STALL_CLOSES, { reason: 'endpoint_buffer_full' }), 1, 'A was closed at twice its bound');
    assert.equal(await counter(agent, STALL_CLOSES, { reason: 'endpoint_not_reading' }), 0);
    assert.equal(await counter(agent, STREAM_PAUSES), 0, 'the server stream was never paused');
    // The agent's queue for A stayed under twice its bound (plus the one DATA packet that crossed it).
    assert.ok(held.peak() <= 2 * bound + MAX_DATA_PAYLOAD_BYTES, `the agent held ${held.peak()} bytes for A (limit ${2 * bound})`);
    await waitFor(() => agent.endpointConnectionCount === 0, 'no endpoint connection left at the agent');
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });

  test(`${mode}: agent without the flow-control extension (upstream-style), --endpoint-stall-policy=pause: a destination that stops reading pauses the stream until --endpoint-stall-timeout, then only A is closed (counted) and B completes`, async (t) => {
    const bound = MiB;
    const cluster = await startCluster(t, { mode, agent: { flowWindowBytes: 0, maxEndpointBufferedBytes: bound, endpointStallTimeoutMs: 300, endpointStallPolicy: 'pause' } });
    const agent = cluster.agents[0]!;
    assert.equal(cluster.server.router.backendList[0]!.flow, null, 'no flow control negotiated');
    const { stuck, stuckAddress, bDest, tunnel, a, aConn, held } = await stuckUploadBesideSink(t, cluster, agent);
    await waitFor(() => a.closed || heldFor(agent, stuck.address) > bound, 'the agent to queue more than its bound for A');
    // Over the bound, the agent stops reading the whole server stream (the only memory bound without per-connection credit).
    await waitFor(() => a.closed || held.peak() > bound, 'the bound to be passed');
    const pausesBeforeB = await counter(agent, STREAM_PAUSES);
    assert.equal(pausesBeforeB, 1, 'the agent paused the server stream for A');

    // B's DIAL_REQ waits on the paused stream: the agent reads it only after closing A.
    let aAtAgentWhenBDialed = -1;
    const b = await within('B (16 MiB beside the stalled destination)', transferB(tunnel, bDest, () => (aAtAgentWhenBDialed = connectionsTo(agent, stuckAddress))));
    assert.equal(b.bytes, B_BYTES);
    assert.equal(b.sha256, sha256(randomPayload(B_BYTES)));
    assert.equal(aAtAgentWhenBDialed, 0, "B's dial was answered only after the agent had closed A");

    // A alone was closed, for the documented, counted reason; its destination socket is gone.
    assert.equal(await counter(agent, STALL_CLOSES, { reason: 'endpoint_not_reading' }), 1);
    await within("A's close", closed(a.socket));
    aConn.socket.resume(); // a paused socket cannot notice its peer going away
    await within("A's destination socket to close", aConn.closed);
    // B's own destination may fall behind B's 16 MiB for a moment (everything shares two cores in CI) and
    // pause the stream for B too: that is upstream-style backpressure on a connection that progresses, and
    // it ends; what must not happen is a second close. A was the only connection closed for stalling.
    assert.ok((await counter(agent, STREAM_PAUSES)) >= 1, 'the stream was paused for A');
    assert.equal(await counter(agent, STALL_CLOSES, { reason: 'endpoint_not_reading' }), 1, 'only A was closed for stalling');
    // The agent's queue for A stayed at its bound (plus the one DATA packet that crossed it).
    assert.ok(held.peak() <= bound + MAX_DATA_PAYLOAD_BYTES, `the agent held ${held.peak()} bytes for A (bound ${bound})`);
    await waitFor(() => agent.endpointConnectionCount === 0, 'no endpoint connection left at the agent');
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });
}
