/**
 * Model-checking fuzzer for the agent's packet state machine (EndpointRelay)
 * behind the agent-wide limits wrapper, in memory: a fake dialer whose dials
 * the fuzzer completes, fails or leaves hanging; fake endpoint sockets whose
 * reads, EOFs, errors, closes and slow writes the fuzzer decides; a pipe
 * that can fill up or vanish. After every step:
 *
 *  - nothing threw (and no promise rejected unhandled: the runner checks);
 *  - connectionCount / pendingDialCount equal a model built from what the
 *    relay sent (DIAL_RSP, CLOSE_RSP) and what the server sent (DIAL_CLS);
 *  - the limits' counters equal the dials in flight and sockets not closed;
 *  - each DIAL_REQ is answered at most once, connectIDs never repeat, no DATA
 *    before a connection's DIAL_RSP or after its CLOSE_RSP, one CLOSE_RSP
 *    per connection;
 *  - the witness connection's bytes arrive intact and in order both ways.
 *
 * At the end every socket event is let through: a connection still open
 * must have a live socket, and with the pipe drained none may stay paused
 * without a reason; then the relay closes: every socket is destroyed or ended, every
 * pending dial aborted, and the open-connections gauge is back where it was.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { createAgentTsMetrics, type AgentTsMetrics } from '../src/agent/agent-ts-metrics.ts';
import type { EndpointDialer } from '../src/agent/endpoint-dialer.ts';
import { EndpointLimits } from '../src/agent/endpoint-limits.ts';
import { EndpointRelay, type PacketPipe } from '../src/agent/endpoint-relay.ts';
import { EndpointDialError, canceledDialError } from '../src/agent/go-dial-error.ts';
import { createAgentMetrics, type AgentMetrics } from '../src/observability/agent-metrics.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { PacketType, packetTypeName, packets, type Packet } from '../src/protocol/packet.ts';
import { Rng } from './prng.ts';
import { FuzzViolation } from './router-fuzz.ts';

class FakeSocket extends EventEmitter {
  destroyed = false;
  writable = true;
  writableFinished = false;
  paused = false;
  /** Bytes the relay wrote (what the destination received). */
  readonly written: number[] = [];
  /** Bytes the destination sent that were not read yet. */
  readonly inbound: Uint8Array[] = [];
  /** The destination is slow: written bytes stay queued. */
  slow = false;
  writableLength = 0;
  closeEmitted = false;
  private readonly queue: Array<() => void>;

  constructor(queue: Array<() => void>) {
    super();
    this.queue = queue;
  }

  write(data: Uint8Array): boolean {
    if (this.destroyed || !this.writable) return false;
    for (const b of data) this.written.push(b);
    if (this.slow) this.writableLength += data.length;
    return this.writableLength === 0;
  }
  end(): this {
    if (!this.writable) return this;
    this.writable = false;
    // The peer reads the rest and closes its side too.
    this.queue.push(() => {
      this.writableFinished = true;
      this.writableLength = 0;
      this.destroy();
    });
    return this;
  }
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.writable = false;
    this.queue.push(() => {
      if (this.closeEmitted) return;
      this.closeEmitted = true;
      this.emit('close', false);
    });
    return this;
  }
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  /** Delivers the next inbound chunk if reading. */
  deliver(): boolean {
    if (this.paused || this.destroyed || this.inbound.length === 0) return false;
    this.emit('data', Buffer.from(this.inbound.shift()!));
    return true;
  }
}

class FuzzPipe implements PacketPipe {
  readonly sent: Packet[] = [];
  full = false;
  isClosed = false;
  send(p: Packet): boolean {
    if (this.isClosed) return false;
    this.sent.push(p);
    return !this.full;
  }
}

interface PendingFakeDial {
  readonly address: string;
  readonly resolve: (s: Socket) => void;
  readonly reject: (e: unknown) => void;
  readonly signal: AbortSignal;
  settled: boolean;
}

let shared: { metrics: AgentMetrics; ts: AgentTsMetrics } | null = null;
function metrics(): { metrics: AgentMetrics; ts: AgentTsMetrics } {
  if (!shared) {
    const m = createAgentMetrics({ processMetrics: false });
    shared = { metrics: m, ts: createAgentTsMetrics(m.registry) };
  }
  return shared;
}

async function gaugeValue(): Promise<number> {
  const v = await metrics().metrics.openEndpointConnections.get();
  return v.values[0]?.value ?? 0;
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 4; i++) await undefined;
};

export async function runRelayCase(seed: number, maxSteps = 50): Promise<{ steps: number }> {
  const rng = new Rng(seed);
  const trace: string[] = [];
  const fail = (msg: string): never => {
    throw new FuzzViolation(`${msg}\n  seed ${seed}, after ${trace.length} ops:\n    ${trace.slice(-25).join('\n    ')}`);
  };
  const gaugeBefore = await gaugeValue();
  const { metrics: agentMetrics, ts } = metrics();
  const events: Array<() => void> = [];
  const pipe = new FuzzPipe();
  const dials: PendingFakeDial[] = [];
  const sockets: FakeSocket[] = [];
  const socketById = new Map<bigint, FakeSocket>();
  let sendFailures = 0;

  const fakeDial: EndpointDialer = (address, signal) =>
    new Promise<Socket>((resolve, reject) => {
      const d: PendingFakeDial = { address, resolve, reject, signal, settled: false };
      dials.push(d);
      signal.addEventListener(
        'abort',
        () => {
          if (d.settled) return;
          d.settled = true;
          reject(canceledDialError(address));
        },
        { once: true },
      );
    });
  const limits = new EndpointLimits({ maxConnections: rng.pick([0, 2, 5]), maxPendingDials: rng.pick([0, 1, 3]) });
  const flow = rng.bool(0.3) ? { serverWindow: rng.pick([16, 4096]), ourWindow: rng.pick([64, 4096]) } : null;
  const maxBuffered = rng.pick([32, 1 << 20]);
  const relay = new EndpointRelay({
    pipe,
    dial: limits.wrap(fakeDial),
    maxEndpointBufferedBytes: maxBuffered,
    endpointCloseLingerMs: 60_000,
    metrics: agentMetrics,
    tsMetrics: ts,
    logger: silentLogger,
    onSendFailure: () => sendFailures++,
    flowControl: flow,
  });

  // --- model -------------------------------------------------------------------------
  const requested = new Map<bigint, 'pending' | 'answered' | 'cancelled'>();
  const open = new Set<bigint>();
  const closed = new Set<bigint>();
  let lastId = 0n;
  const everUsed = new Set<bigint>();
  let seen = 0;
  // Witness.
  let witnessId = 0n;
  let witnessSocket: FakeSocket | null = null;
  const upSent: number[] = [];
  const downSent: number[] = [];
  const downGot: number[] = [];

  const observe = (): void => {
    for (; seen < pipe.sent.length; seen++) {
      const p = pipe.sent[seen]!;
      switch (p.type) {
        case PacketType.DIAL_RSP: {
          const { random, connectID, error } = p.dialResponse;
          const state = requested.get(random);
          if (state === undefined) fail(`DIAL_RSP for dial ${random} that was never requested`);
          if (state === 'answered') fail(`second DIAL_RSP for dial ${random}`);
          if (state === 'cancelled') fail(`DIAL_RSP for dial ${random} after DIAL_CLS`);
          requested.set(random, 'answered');
          if (error === '') {
            // IDs are taken at DIAL_REQ time (as upstream), so they need not grow in answer order; never reused.
            if (connectID <= 0n || everUsed.has(connectID)) fail(`connectID ${connectID} reused or invalid`);
            everUsed.add(connectID);
            lastId = connectID;
            open.add(connectID);
          }
          break;
        }
        case PacketType.DATA: {
          const id = p.data.connectID;
          if (!open.has(id)) fail(`DATA for connection ${id} ${closed.has(id) ? 'after its CLOSE_RSP' : 'before its DIAL_RSP'}`);
          if (id === witnessId) for (const b of p.data.data) downGot.push(b);
          break;
        }
        case PacketType.CLOSE_RSP: {
          const id = p.closeResponse.connectID;
          if (open.delete(id)) {
            closed.add(id);
            if (id === witnessId) fail('the witness connection was closed');
          } else if (closed.has(id) && p.closeResponse.error === '') fail(`second CLOSE_RSP for connection ${id}`);
          break;
        }
        case PacketType.FLOW_CREDIT:
          if (!open.has(p.flowCredit.connectID)) fail(`FLOW_CREDIT for connection ${p.flowCredit.connectID} that is not open`);
          break;
        default:
          break;
      }
    }
  };

  const check = (): void => {
    observe();
    if (pipe.isClosed) return; // the owner drops the relay: counts no longer matter
    if (relay.connectionCount !== open.size) fail(`connectionCount ${relay.connectionCount}, model ${open.size}`);
    let pending = 0;
    for (const s of requested.values()) if (s === 'pending') pending++;
    if (relay.pendingDialCount !== pending) fail(`pendingDialCount ${relay.pendingDialCount}, model ${pending}`);
    const inFlight = dials.filter((d) => !d.settled).length;
    if (limits.pendingDials !== (limits.maxConnections > 0 || limits.maxPendingDials > 0 ? inFlight : 0)) fail(`limits count ${limits.pendingDials} dials in flight, there are ${inFlight}`);
    const alive = sockets.filter((s) => !s.closeEmitted).length;
    if (limits.maxConnections > 0 || limits.maxPendingDials > 0) {
      if (limits.connections !== inFlight + alive) fail(`limits count ${limits.connections} connections, there are ${inFlight} dialing + ${alive} open`);
    }
    if (witnessSocket) {
      const w = witnessSocket.written;
      for (let i = 0; i < w.length; i++) if (w[i] !== upSent[i]) fail(`witness byte ${i} to the endpoint differs`);
      if (w.length !== upSent.length) fail(`witness endpoint got ${w.length} of ${upSent.length} bytes`);
      for (let i = 0; i < downGot.length; i++) if (downGot[i] !== downSent[i]) fail(`witness byte ${i} to the server differs`);
    }
  };

  const server = (p: Packet, label: string): void => {
    trace.push(`server ${label}`);
    if (p.type === PacketType.DIAL_REQ && !requested.has(p.dialRequest.random)) requested.set(p.dialRequest.random, 'pending');
    if (p.type === PacketType.DIAL_CLS && requested.get(p.closeDial.random) === 'pending') requested.set(p.closeDial.random, 'cancelled');
    relay.handlePacket(p);
  };

  /** The dial's random, from the address the fuzzer gave it (`h<random>.invalid:<port>`). */
  const randomOf = (address: string): bigint => BigInt(/^h(\d+)\./.exec(address)?.[1] ?? '-1');

  const settle = (d: PendingFakeDial, ok: boolean): FakeSocket | null => {
    if (d.settled) return null;
    d.settled = true;
    if (ok) {
      const s = new FakeSocket(events);
      sockets.push(s);
      trace.push(`dial ${d.address} connects`);
      d.resolve(s as unknown as Socket);
      return s;
    }
    trace.push(`dial ${d.address} fails`);
    d.reject(new EndpointDialError(`dial tcp ${d.address}: connect: connection refused`, 'unknown'));
    return null;
  };

  /** Records which connectID a socket got, from the DIAL_RSP the relay sent for its dial. */
  const learnSocket = (d: PendingFakeDial, s: FakeSocket | null): void => {
    if (!s) return;
    const R = randomOf(d.address);
    const rsp = pipe.sent.find((p) => p.type === PacketType.DIAL_RSP && p.dialResponse.random === R && p.dialResponse.error === '');
    if (rsp && rsp.type === PacketType.DIAL_RSP) socketById.set(rsp.dialResponse.connectID, s);
  };

  const settleDial = async (d: PendingFakeDial, ok: boolean): Promise<void> => {
    const s = settle(d, ok);
    await flush();
    learnSocket(d, s);
  };

  const socketOf = (id: bigint): FakeSocket | undefined => socketById.get(id);

  // --- setup: the witness ----------------------------------------------------------------
  {
    const R = rng.int63();
    server(packets.dialRequest(`h${R}.invalid:1`, R), `DIAL_REQ ${R} (witness)`);
    await flush();
    const d = dials.find((x) => !x.settled);
    if (!d) {
      // The limits may refuse even the first dial only if set to 0 slots, which they never are.
      check();
      return fail('witness dial did not reach the dialer');
    }
    await settleDial(d, true);
    observe();
    witnessId = lastId;
    witnessSocket = socketOf(witnessId) ?? null;
    if (!witnessSocket) fail('witness socket not found');
    check();
  }

  let nextRandom = 1n;
  const steps = rng.range(1, maxSteps);
  for (let step = 0; step < steps; step++) {
    const pendingDials = dials.filter((d) => !d.settled);
    const openIds = [...open].filter((id) => id !== witnessId);
    const op = rng.weighted({
      dialReq: 8,
      dialReqOther: 1,
      settleOk: pendingDials.length ? 6 : 0,
      settleFail: pendingDials.length ? 3 : 0,
      settleThenCancel: pendingDials.length ? 1 : 0,
      dialCls: 2,
      serverData: 6,
      closeReq: 3,
      strayToAgent: 1,
      credit: flow ? 3 : 0,
      remoteSend: openIds.length ? 6 : 0,
      deliver: 6,
      remoteEof: openIds.length ? 2 : 0,
      remoteError: openIds.length ? 1 : 0,
      slowToggle: openIds.length ? 2 : 0,
      drainSocket: 2,
      event: events.length ? 6 : 0,
      pipeFull: 2,
      pipeDrain: 2,
      witness: 6,
      pipeGone: 0.2,
    });
    switch (op) {
      case 'dialReq': {
        const R = nextRandom++;
        server(packets.dialRequest(`h${R}.invalid:${rng.range(1, 3)}`, R), `DIAL_REQ ${R}`);
        break;
      }
      case 'dialReqOther': {
        const R = nextRandom++;
        server(packets.dialRequest(`h${R}.invalid:1`, R, rng.pick(['udp', '', 'TCP'])), `DIAL_REQ ${R} non-tcp`);
        break;
      }
      case 'settleOk':
      case 'settleFail':
        await settleDial(rng.pick(pendingDials), op === 'settleOk');
        break;
      case 'settleThenCancel': {
        // The dial completes, and DIAL_CLS arrives before the relay saw the result.
        const d = rng.pick(pendingDials);
        const sock = settle(d, rng.bool(0.7));
        const R = randomOf(d.address);
        server(packets.closeDial(R), `DIAL_CLS ${R} (racing the dial's completion)`);
        await flush();
        learnSocket(d, sock);
        break;
      }
      case 'dialCls': {
        const candidates = [...requested].filter(([, s]) => s === 'pending').map(([r]) => r);
        const R = candidates.length && rng.bool(0.8) ? rng.pick(candidates) : BigInt(rng.int(50));
        server(packets.closeDial(R), `DIAL_CLS ${R}`);
        await flush();
        break;
      }
      case 'serverData': {
        const id = openIds.length && rng.bool(0.8) ? rng.pick(openIds) : BigInt(rng.int(10) + 100);
        server(packets.data(id, rng.bytes(rng.pick([1, 10, 40, 100]))), `DATA ${id}`);
        break;
      }
      case 'closeReq': {
        const id = openIds.length && rng.bool(0.8) ? rng.pick(openIds) : BigInt(rng.int(10) + 100);
        server(packets.closeRequest(id), `CLOSE_REQ ${id}`);
        break;
      }
      case 'strayToAgent': {
        const p = rng.pick<Packet>([packets.dialResponse(1n, 1n), packets.closeResponse(1n), packets.drain()]);
        server(p, `stray ${packetTypeName(p.type)}`);
        break;
      }
      case 'credit': {
        const id = openIds.length ? rng.pick(openIds) : 1n;
        server(packets.flowCredit(id, BigInt(rng.pick([1, 16, 4096]))), `FLOW_CREDIT ${id}`);
        break;
      }
      case 'remoteSend': {
        const s = socketOf(rng.pick(openIds));
        if (s) {
          s.inbound.push(rng.bytes(rng.range(1, 24)));
          trace.push('endpoint sends');
        }
        break;
      }
      case 'deliver': {
        const candidates = sockets.filter((s) => s !== witnessSocket && s.inbound.length > 0 && !s.paused && !s.destroyed && s.listenerCount('data') > 0);
        if (candidates.length) {
          trace.push('endpoint bytes read');
          rng.pick(candidates).deliver();
        }
        break;
      }
      case 'remoteEof':
      case 'remoteError': {
        const s = socketOf(rng.pick(openIds));
        if (s && !s.destroyed) {
          trace.push(op === 'remoteEof' ? 'endpoint EOF' : 'endpoint error');
          if (op === 'remoteEof') s.emit('end');
          else {
            s.emit('error', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
            s.destroy();
          }
        }
        break;
      }
      case 'slowToggle': {
        const s = socketOf(rng.pick(openIds));
        if (s) {
          s.slow = !s.slow;
          trace.push(`endpoint ${s.slow ? 'slow' : 'fast'}`);
        }
        break;
      }
      case 'drainSocket': {
        const candidates = sockets.filter((s) => s.writableLength > 0 && !s.destroyed);
        if (candidates.length) {
          const s = rng.pick(candidates);
          s.writableLength = 0;
          trace.push('endpoint drained');
          s.emit('drain');
        }
        break;
      }
      case 'event': {
        trace.push('socket event');
        events.shift()!();
        break;
      }
      case 'pipeFull':
        pipe.full = true;
        trace.push('pipe full');
        break;
      case 'pipeDrain':
        pipe.full = false;
        trace.push('pipe drained');
        relay.handlePipeDrain();
        break;
      case 'witness': {
        if (rng.bool()) {
          const bytes = rng.bytes(rng.range(1, 16));
          for (const b of bytes) upSent.push(b);
          server(packets.data(witnessId, bytes), `witness DATA ${bytes.length}`);
        } else if (witnessSocket) {
          const bytes = rng.bytes(rng.range(1, 16));
          for (const b of bytes) downSent.push(b);
          witnessSocket.inbound.push(bytes);
          trace.push('witness endpoint sends');
          while (witnessSocket.deliver());
          // The server returns credit as its frontend takes the bytes.
          if (flow) relay.handlePacket(packets.flowCredit(witnessId, BigInt(bytes.length)));
          while (witnessSocket.deliver());
        }
        break;
      }
      case 'pipeGone':
        pipe.isClosed = true;
        trace.push('pipe gone');
        break;
    }
    check();
    if (pipe.isClosed) break;
  }

  // --- epilogue ---------------------------------------------------------------------------
  if (!pipe.isClosed) {
    // Let every socket event happen (EOFs, closes), then the books must match reality.
    while (events.length) events.shift()!();
    check();
    for (const id of open) {
      const sock = socketOf(id);
      if (!sock) fail(`no socket known for open connection ${id}`);
      if (sock!.closeEmitted) fail(`connection ${id} is still open in the relay but its socket closed (no CLOSE_RSP was sent)`);
    }
    pipe.full = false;
    relay.handlePipeDrain();
    // Everything the witness endpoint sent is readable now.
    if (flow) relay.handlePacket(packets.flowCredit(witnessId, 1_000_000n));
    if (witnessSocket) while (witnessSocket.deliver());
    check();
    if (downGot.length !== downSent.length) fail(`witness server side got ${downGot.length} of ${downSent.length} bytes`);
    for (const id of open) {
      const s = socketOf(id);
      if (!s || s.destroyed) continue;
      const c = (relay as unknown as { connections: Map<bigint, { credit: { sendCredit: number } | null }> }).connections.get(id);
      const outOfCredit = c?.credit !== null && c?.credit !== undefined && c.credit.sendCredit <= 0;
      if (s.paused && !outOfCredit) fail(`connection ${id} stays paused with the pipe drained and credit left`);
    }
  }
  trace.push('relay closed');
  relay.close();
  await flush();
  for (const d of dials) if (!d.settled) fail(`dial of ${d.address} neither settled nor aborted after close`);
  // Dials that complete after close must not leak their socket: settle any stragglers now.
  while (events.length) events.shift()!();
  for (const s of sockets) if (!s.destroyed && s.writable) fail('a socket is neither destroyed nor ended after the relay closed');
  if (relay.connectionCount !== 0 || relay.pendingDialCount !== 0) fail('relay not empty after close');
  if ((await gaugeValue()) !== gaugeBefore) fail(`open_endpoint_connections gauge moved by ${(await gaugeValue()) - gaugeBefore} over a closed relay`);
  void sendFailures;
  return { steps };
}
