/**
 * The agent's packet state machine driven directly: an in-memory pipe in
 * place of the gRPC stream, real TCP endpoints on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { EndpointRelay, type PacketPipe } from '../src/agent/endpoint-relay.ts';
import { createAgentTsMetrics } from '../src/agent/agent-ts-metrics.ts';
import type { StallPolicy } from '../src/protocol/stall-policy.ts';
import { createTcpEndpointDialer, type EndpointDialer } from '../src/agent/endpoint-dialer.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { PacketType, packets, type CloseResponsePacket, type DataPacket, type DialResponsePacket, type Packet } from '../src/protocol/packet.ts';
import { ProtocolError } from '../src/protocol/protocol-error.ts';
import { deferred, patternBytes, sha256, startEndpoint, unusedPort, until } from './agent-fixtures.ts';

class MemoryPipe implements PacketPipe {
  readonly sent: Packet[] = [];
  isClosed = false;
  /** While true, every send reports backpressure (the packet is still taken). */
  full = false;
  private waiters: Array<() => void> = [];

  send(packet: Packet): boolean {
    if (this.isClosed) return false;
    this.sent.push(packet);
    for (const w of this.waiters.splice(0)) w();
    return !this.full;
  }

  async waitFor<T extends Packet>(match: (p: Packet) => p is T, from = 0): Promise<T> {
    for (;;) {
      for (let i = from; i < this.sent.length; i++) {
        const p = this.sent[i]!;
        if (match(p)) return p;
      }
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }
}

const isDialRsp = (random: bigint) => (p: Packet): p is DialResponsePacket => p.type === PacketType.DIAL_RSP && p.dialResponse.random === random;
const isCloseRsp = (id: bigint) => (p: Packet): p is CloseResponsePacket => p.type === PacketType.CLOSE_RSP && p.closeResponse.connectID === id;
const dataFor = (pipe: MemoryPipe, id: bigint): Buffer[] =>
  pipe.sent.filter((p): p is DataPacket => p.type === PacketType.DATA && p.data.connectID === id).map((p) => Buffer.from(p.data.data));

/** A pipe that can be paused, as the real PacketStream (HTTP/2 flow control then stops the sender). */
class PausablePipe extends MemoryPipe {
  paused = false;
  pauses = 0;
  private resumeWaiters: Array<() => void> = [];
  pauseReceive(): void {
    if (!this.paused) this.pauses++;
    this.paused = true;
  }
  resumeReceive(): void {
    this.paused = false;
    for (const w of this.resumeWaiters.splice(0)) w();
  }
  /** Resolves once the relay reads again (immediately when it is not paused). */
  readable(): Promise<void> {
    return this.paused ? new Promise((r) => this.resumeWaiters.push(r)) : Promise.resolve();
  }
}

/**
 * An endpoint whose first connection never reads (the stalled destination)
 * and whose later ones collect what they get; `bulkDone` resolves with the
 * chunks once a later one has `bulkLength` bytes.
 */
async function stalledThenCollecting(bulkLength: number) {
  const bulkDone = deferred<Buffer[]>();
  let accepted = 0;
  const endpoint = await startEndpoint((s) => {
    if (accepted++ === 0) {
      s.pause(); // never reads
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n === bulkLength) bulkDone.resolve(chunks);
    });
  });
  return { endpoint, bulkDone };
}

function makeRelay(pipe: MemoryPipe, overrides: { dial?: EndpointDialer; maxEndpointBufferedBytes?: number; endpointStallTimeoutMs?: number; endpointStallPolicy?: StallPolicy } = {}) {
  const metrics = createAgentMetrics({ processMetrics: false });
  const tsMetrics = createAgentTsMetrics(metrics.registry);
  const sendFailures: Packet[] = [];
  const relay = new EndpointRelay({
    pipe,
    dial: overrides.dial ?? createTcpEndpointDialer(),
    maxEndpointBufferedBytes: overrides.maxEndpointBufferedBytes ?? 8 * 1024 * 1024,
    endpointCloseLingerMs: 30_000,
    endpointStallTimeoutMs: overrides.endpointStallTimeoutMs,
    endpointStallPolicy: overrides.endpointStallPolicy,
    metrics,
    tsMetrics,
    logger: silentLogger,
    onSendFailure: (p) => sendFailures.push(p),
  });
  return { relay, metrics, tsMetrics, sendFailures };
}

async function dial(relay: EndpointRelay, pipe: MemoryPipe, address: string, random: bigint): Promise<DialResponsePacket['dialResponse']> {
  relay.handlePacket(packets.dialRequest(address, random));
  return (await pipe.waitFor(isDialRsp(random))).dialResponse;
}

test('DIAL_REQ: connectIDs count from 1 per stream, failures use an ID up and answer with Go text', async () => {
  const endpoint = await startEndpoint(() => {});
  const pipe = new MemoryPipe();
  const { relay, metrics } = makeRelay(pipe);
  try {
    const first = await dial(relay, pipe, endpoint.address, 1001n);
    assert.deepEqual(first, { random: 1001n, connectID: 1n, error: '' });
    const closedPort = await unusedPort();
    const failed = await dial(relay, pipe, `127.0.0.1:${closedPort}`, 1002n);
    assert.deepEqual(failed, { random: 1002n, connectID: 0n, error: `dial tcp 127.0.0.1:${closedPort}: connect: connection refused` });
    assert.equal((await dial(relay, pipe, endpoint.address, 1003n)).connectID, 3n);
    relay.handlePacket(packets.dialRequest(endpoint.address, 1004n, 'udp'));
    assert.deepEqual((await pipe.waitFor(isDialRsp(1004n))).dialResponse, { random: 1004n, connectID: 0n, error: 'dial udp: unknown network udp' });
    // 1: ok, 2: refused, 3: ok, 4: udp refused, so the next is 5.
    assert.equal((await dial(relay, pipe, endpoint.address, 1005n)).connectID, 5n);
    // A random beyond 2^53 survives the round trip.
    const big = (1n << 62n) + 12345n;
    assert.equal((await dial(relay, pipe, endpoint.address, big)).random, big);
    assert.equal(relay.connectionCount, 4);
    const failures = await metrics.endpointDialFailures.get();
    assert.equal(failures.values.find((v) => v.labels.reason === 'unknown')?.value, 2);
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('DATA both ways keeps every byte (sha256 over a few MiB)', async () => {
  const upload = patternBytes(3 * 1024 * 1024 + 17, 7);
  const download = patternBytes(2 * 1024 * 1024 + 5, 9);
  let received: Buffer[] = [];
  const gotAll = deferred<void>();
  const endpoint = await startEndpoint((s) => {
    let n = 0;
    s.on('data', (c: Buffer) => {
      received.push(c);
      n += c.length;
      if (n === upload.length) gotAll.resolve();
    });
    s.write(download);
  });
  const pipe = new MemoryPipe();
  const { relay } = makeRelay(pipe);
  try {
    const { connectID } = await dial(relay, pipe, endpoint.address, 1n);
    for (let off = 0; off < upload.length; off += 100_000) relay.handlePacket(packets.data(connectID, upload.subarray(off, off + 100_000)));
    await gotAll.promise;
    assert.equal(sha256(received), sha256(upload));
    await until(() => dataFor(pipe, connectID).reduce((n, b) => n + b.length, 0) >= download.length);
    const chunks = dataFor(pipe, connectID);
    assert.equal(sha256(chunks), sha256(download));
    // Each read is one DATA, well under the 4 MiB gRPC message limit.
    assert.ok(chunks.every((c) => c.length <= 1024 * 1024));
    received = [];
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('CLOSE_REQ flushes queued bytes to the endpoint before closing, then CLOSE_RSP', async () => {
  const payload = patternBytes(4 * 1024 * 1024, 3);
  const done = deferred<Buffer[]>();
  const endpoint = await startEndpoint((s) => {
    const chunks: Buffer[] = [];
    // Start reading late so the bytes are still queued in the agent when CLOSE_REQ arrives.
    s.pause();
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => done.resolve(chunks));
    setImmediate(() => s.resume());
  });
  const pipe = new MemoryPipe();
  const { relay } = makeRelay(pipe);
  try {
    const { connectID } = await dial(relay, pipe, endpoint.address, 5n);
    relay.handlePacket(packets.data(connectID, payload));
    relay.handlePacket(packets.closeRequest(connectID));
    const rsp = await pipe.waitFor(isCloseRsp(connectID));
    assert.equal(rsp.closeResponse.error, '');
    assert.equal(relay.connectionCount, 0);
    assert.equal(sha256(await done.promise), sha256(payload));
    // The ID is gone now.
    const from = pipe.sent.length;
    relay.handlePacket(packets.closeRequest(connectID));
    assert.equal((await pipe.waitFor(isCloseRsp(connectID), from)).closeResponse.error, 'Unknown connectID');
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('unknown connectIDs: DATA gets "unrecognized connectID", CLOSE_REQ gets "Unknown connectID"', async () => {
  const pipe = new MemoryPipe();
  const { relay } = makeRelay(pipe);
  relay.handlePacket(packets.data(42n, Buffer.from('x')));
  assert.deepEqual(await pipe.waitFor(isCloseRsp(42n)), packets.closeResponse(42n, 'unrecognized connectID'));
  relay.handlePacket(packets.closeRequest(43n));
  assert.deepEqual(await pipe.waitFor(isCloseRsp(43n)), packets.closeResponse(43n, 'Unknown connectID'));
  // Packets never meant for an agent are ignored without a reply.
  const before = pipe.sent.length;
  relay.handlePacket(packets.dialResponse(1n, 1n));
  relay.handlePacket(packets.closeResponse(1n));
  relay.handlePacket(packets.drain());
  relay.handlePacket(packets.closeDial(99n));
  assert.equal(pipe.sent.length, before);
  relay.close();
});

test('endpoint EOF sends the remaining DATA, then an unsolicited CLOSE_RSP', async () => {
  const endpoint = await startEndpoint((s) => s.end(Buffer.from('goodbye')));
  const pipe = new MemoryPipe();
  const { relay, metrics } = makeRelay(pipe);
  try {
    const { connectID } = await dial(relay, pipe, endpoint.address, 8n);
    const close = await pipe.waitFor(isCloseRsp(connectID));
    assert.equal(close.closeResponse.error, '');
    const closeIndex = pipe.sent.indexOf(close);
    const dataIndexes = pipe.sent.flatMap((p, i) => (p.type === PacketType.DATA ? [i] : []));
    assert.ok(dataIndexes.every((i) => i < closeIndex), 'no DATA after CLOSE_RSP');
    assert.equal(Buffer.concat(dataFor(pipe, connectID)).toString(), 'goodbye');
    assert.equal(relay.connectionCount, 0);
    assert.equal((await metrics.openEndpointConnections.get()).values[0]?.value, 0);
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('a full server pipe pauses reads on all endpoints of the stream; drain resumes them', async () => {
  const sockets: Socket[] = [];
  const endpoint = await startEndpoint((s) => sockets.push(s));
  const pipe = new MemoryPipe();
  const { relay } = makeRelay(pipe);
  try {
    const a = (await dial(relay, pipe, endpoint.address, 1n)).connectID;
    const b = (await dial(relay, pipe, endpoint.address, 2n)).connectID;
    await until(() => sockets.length === 2);
    pipe.full = true;
    sockets[0]!.write('first');
    await until(() => dataFor(pipe, a).length === 1);
    assert.equal(relay.endpointReadsPaused, true);
    // New connections start paused too while the pipe is full.
    const c = (await dial(relay, pipe, endpoint.address, 3n)).connectID;
    await until(() => sockets.length === 3);
    pipe.full = false;
    relay.handlePipeDrain();
    assert.equal(relay.endpointReadsPaused, false);
    sockets[1]!.write('second');
    sockets[2]!.write('third');
    await until(() => dataFor(pipe, b).length === 1 && dataFor(pipe, c).length === 1);
    assert.equal(Buffer.concat(dataFor(pipe, b)).toString(), 'second');
    assert.equal(Buffer.concat(dataFor(pipe, c)).toString(), 'third');
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('DIAL_CLS abandons the pending dial it names, without a DIAL_RSP', async () => {
  const aborted = deferred<string>();
  const dialer: EndpointDialer = (address, signal) =>
    new Promise((_resolve, reject) => {
      signal.addEventListener('abort', () => {
        aborted.resolve(address);
        reject(new Error('aborted'));
      });
    });
  const pipe = new MemoryPipe();
  const { relay } = makeRelay(pipe, { dial: dialer });
  relay.handlePacket(packets.dialRequest('10.0.0.5:10250', 77n));
  assert.equal(relay.pendingDialCount, 1);
  relay.handlePacket(packets.closeDial(77n));
  assert.equal(await aborted.promise, '10.0.0.5:10250');
  await new Promise((r) => setImmediate(r));
  assert.equal(relay.pendingDialCount, 0);
  assert.equal(pipe.sent.filter((p) => p.type === PacketType.DIAL_RSP).length, 0);
  relay.close();
});

test('upstream server, default policy: a destination that stops reading loses only its own connection at twice the bound; the stream never pauses; a concurrent bulk transfer completes', async () => {
  const bound = 256 * 1024;
  const bulk = patternBytes(6 * 1024 * 1024, 11);
  const { endpoint, bulkDone } = await stalledThenCollecting(bulk.length);
  const pipe = new PausablePipe();
  const { relay, tsMetrics } = makeRelay(pipe, { maxEndpointBufferedBytes: bound });
  try {
    const stalled = (await dial(relay, pipe, endpoint.address, 1n)).connectID;
    const flowing = (await dial(relay, pipe, endpoint.address, 2n)).connectID;
    const junk = Buffer.alloc(128 * 1024, 1);
    let closeRsp: CloseResponsePacket | null = null;
    let off = 0;
    // Interleave: the stalled connection gets bytes until the bound trips; the bulk one keeps going.
    while (off < bulk.length || closeRsp === null) {
      if (closeRsp === null) relay.handlePacket(packets.data(stalled, junk));
      if (off < bulk.length) {
        relay.handlePacket(packets.data(flowing, bulk.subarray(off, off + 64 * 1024)));
        off += 64 * 1024;
      }
      closeRsp = (pipe.sent.find(isCloseRsp(stalled)) as CloseResponsePacket | undefined) ?? null;
      await new Promise((r) => setImmediate(r));
    }
    assert.match(closeRsp.closeResponse.error, /destination stopped reading/);
    assert.match(closeRsp.closeResponse.error, new RegExp(`limit ${2 * bound} bytes`));
    assert.equal(sha256(await bulkDone.promise), sha256(bulk));
    const stalls = await tsMetrics.connectionStallCloses.get();
    assert.equal(stalls.values.find((v) => v.labels.reason === 'endpoint_buffer_full')?.value, 1);
    assert.equal(stalls.values.find((v) => v.labels.reason === 'endpoint_not_reading'), undefined);
    assert.equal(pipe.pauses, 0, 'the stream was never paused');
    assert.equal((await tsMetrics.streamPausesForEndpoint.get()).values[0]?.value ?? 0, 0);
    assert.equal(relay.connectionCount, 1);
    assert.equal(relay.overBoundCount, 0);
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test("upstream server, --endpoint-stall-policy=pause: a destination slower than the sender pauses the stream and loses nothing", async () => {
  const bound = 256 * 1024;
  // Larger than what loopback socket buffers absorb, so the agent's own queue passes the bound.
  const payload = patternBytes(16 * 1024 * 1024, 5);
  const received = deferred<Buffer[]>();
  const endpoint = await startEndpoint((s) => {
    // Slower than the sender (about 25 MB/s): a break after every 256 KiB.
    const chunks: Buffer[] = [];
    let n = 0;
    let sinceBreak = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      sinceBreak += c.length;
      if (n === payload.length) received.resolve(chunks);
      if (sinceBreak >= 256 * 1024) {
        sinceBreak = 0;
        s.pause();
        setTimeout(() => s.resume(), 10);
      }
    });
  });
  const pipe = new PausablePipe();
  const { relay, tsMetrics } = makeRelay(pipe, { maxEndpointBufferedBytes: bound, endpointStallTimeoutMs: 5_000, endpointStallPolicy: 'pause' });
  try {
    const id = (await dial(relay, pipe, endpoint.address, 1n)).connectID;
    // The server sends as fast as the agent reads the stream, in upstream's way: no credit, only the stream's own flow control.
    for (let off = 0; off < payload.length; off += 64 * 1024) {
      await pipe.readable();
      relay.handlePacket(packets.data(id, payload.subarray(off, off + 64 * 1024)));
    }
    assert.equal(sha256(await received.promise), sha256(payload));
    assert.ok(pipe.pauses > 0, 'the destination was slow enough to pass the bound (the path under test ran)');
    assert.equal(pipe.paused, false);
    assert.equal(pipe.sent.filter(isCloseRsp(id)).length, 0, 'the slow connection was not closed');
    assert.equal((await tsMetrics.connectionStallCloses.get()).values.length, 0);
    assert.equal((await tsMetrics.streamPausesForEndpoint.get()).values[0]?.value, pipe.pauses);
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('upstream server, --endpoint-stall-policy=pause: a destination that takes nothing for the stall timeout loses its connection and the stream resumes', async () => {
  const bound = 256 * 1024;
  const bulk = patternBytes(2 * 1024 * 1024, 9);
  const { endpoint, bulkDone } = await stalledThenCollecting(bulk.length);
  const pipe = new PausablePipe();
  const { relay, tsMetrics } = makeRelay(pipe, { maxEndpointBufferedBytes: bound, endpointStallTimeoutMs: 300, endpointStallPolicy: 'pause' });
  try {
    const stalled = (await dial(relay, pipe, endpoint.address, 1n)).connectID;
    const flowing = (await dial(relay, pipe, endpoint.address, 2n)).connectID;
    const junk = Buffer.alloc(64 * 1024, 1);
    while (!pipe.paused) {
      relay.handlePacket(packets.data(stalled, junk));
      await new Promise((r) => setImmediate(r));
    }
    const pausedAt = performance.now();
    await pipe.readable();
    const closeRsp = pipe.sent.find(isCloseRsp(stalled)) as CloseResponsePacket | undefined;
    assert.ok(closeRsp, 'the stalled connection got a CLOSE_RSP when the stream resumed');
    assert.match(closeRsp.closeResponse.error, /destination stopped reading/);
    assert.ok(performance.now() - pausedAt >= 250, 'not closed before the stall timeout');
    assert.equal((await tsMetrics.connectionStallCloses.get()).values.find((v) => v.labels.reason === 'endpoint_not_reading')?.value, 1);
    // The stream reads again: the other connection's transfer goes through.
    for (let off = 0; off < bulk.length; off += 64 * 1024) {
      await pipe.readable();
      relay.handlePacket(packets.data(flowing, bulk.subarray(off, off + 64 * 1024)));
    }
    assert.equal(sha256(await bulkDone.promise), sha256(bulk));
    assert.equal(relay.connectionCount, 1);
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('upstream server, default policy: a destination busy for a moment (past the bound, under twice it) loses nothing and the stream never pauses', async () => {
  const bound = 256 * 1024;
  const payload = patternBytes(8 * 1024 * 1024, 3);
  const received = deferred<Buffer[]>();
  let destination: Socket | null = null;
  const endpoint = await startEndpoint((s) => {
    destination = s;
    s.pause(); // busy: reads nothing until the test lets it
    const chunks: Buffer[] = [];
    let n = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n === payload.length) received.resolve(chunks);
    });
  });
  const pipe = new PausablePipe();
  const { relay, tsMetrics } = makeRelay(pipe, { maxEndpointBufferedBytes: bound, endpointStallTimeoutMs: 5_000 });
  try {
    const id = (await dial(relay, pipe, endpoint.address, 1n)).connectID;
    const chunk = 16 * 1024;
    let off = 0;
    // Until the agent's own queue for it is past the bound (the socket buffers below it fill first).
    while (relay.overBoundCount === 0) {
      assert.ok(off < payload.length, 'the queue passed the bound before the payload ran out');
      relay.handlePacket(packets.data(id, payload.subarray(off, off + chunk)));
      off += chunk;
      await new Promise((r) => setImmediate(r));
    }
    destination!.resume();
    for (; off < payload.length; off += chunk) {
      relay.handlePacket(packets.data(id, payload.subarray(off, off + chunk)));
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(sha256(await received.promise), sha256(payload));
    assert.equal(pipe.pauses, 0, 'the stream was never paused');
    assert.equal(pipe.sent.filter(isCloseRsp(id)).length, 0, 'the busy connection was not closed');
    assert.equal((await tsMetrics.connectionStallCloses.get()).values.length, 0);
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('upstream server, default policy: a destination over its bound that takes nothing for the stall timeout loses its connection; the stream never pauses and another connection flows meanwhile', async () => {
  const bound = 256 * 1024;
  const bulk = patternBytes(4 * 1024 * 1024, 13);
  const { endpoint, bulkDone } = await stalledThenCollecting(bulk.length);
  const pipe = new PausablePipe();
  const { relay, tsMetrics } = makeRelay(pipe, { maxEndpointBufferedBytes: bound, endpointStallTimeoutMs: 300 });
  try {
    const stalled = (await dial(relay, pipe, endpoint.address, 1n)).connectID;
    const flowing = (await dial(relay, pipe, endpoint.address, 2n)).connectID;
    const junk = Buffer.alloc(16 * 1024, 1);
    // Past the bound but not twice it, then nothing more: only the stall timeout can close it.
    while (relay.overBoundCount === 0) {
      relay.handlePacket(packets.data(stalled, junk));
      await new Promise((r) => setImmediate(r));
    }
    const overAt = performance.now();
    let off = 0;
    let closeRsp: CloseResponsePacket | undefined;
    while (closeRsp === undefined || off < bulk.length) {
      if (off < bulk.length) {
        relay.handlePacket(packets.data(flowing, bulk.subarray(off, off + 16 * 1024)));
        off += 16 * 1024;
      }
      closeRsp ??= pipe.sent.find(isCloseRsp(stalled)) as CloseResponsePacket | undefined;
      await new Promise((r) => setTimeout(r, closeRsp === undefined && off >= bulk.length ? 10 : 0));
    }
    assert.match(closeRsp.closeResponse.error, /destination stopped reading .*none taken for 300 ms/);
    assert.ok(performance.now() - overAt >= 250, 'not closed before the stall timeout');
    const stalls = await tsMetrics.connectionStallCloses.get();
    assert.equal(stalls.values.find((v) => v.labels.reason === 'endpoint_not_reading')?.value, 1);
    assert.equal(stalls.values.find((v) => v.labels.reason === 'endpoint_buffer_full'), undefined);
    assert.equal(sha256(await bulkDone.promise), sha256(bulk));
    assert.equal(pipe.pauses, 0, 'the stream was never paused');
    assert.equal(relay.connectionCount, 1);
  } finally {
    relay.close();
    await endpoint.close();
  }
});

test('undecodable packets are counted, the relay keeps working; a closed pipe reports a send failure', async () => {
  const pipe = new MemoryPipe();
  const { relay, tsMetrics, sendFailures } = makeRelay(pipe);
  relay.handleUndecodable(new ProtocolError('unknown_packet_type', 'unknown packet type 9'));
  const counted = await tsMetrics.undecodablePackets.get();
  assert.equal(counted.values.find((v) => v.labels.code === 'unknown_packet_type')?.value, 1);
  relay.handlePacket(packets.closeRequest(1n));
  assert.equal(pipe.sent.length, 1);
  pipe.isClosed = true;
  relay.handlePacket(packets.closeRequest(2n));
  assert.equal(sendFailures.length, 1);
  assert.equal(sendFailures[0]!.type, PacketType.CLOSE_RSP);
  relay.close();
});
