/**
 * The server's relay core: pending dials keyed by `random`, established
 * connections keyed by (agent stream, connectID), and every packet rule of
 * upstream's proxy-server (spec §4). It knows nothing about sockets or gRPC:
 * frontends and agent streams plug in through small peer interfaces, so the
 * whole state machine runs in memory in tests.
 */
import { PacketType, packets, payloadLength, type Data, type Packet } from '../protocol/packet.ts';
import type { Logger } from '../observability/logger.ts';
import { bindPacketCounter, type PacketCounter } from '../observability/packet-counters.ts';
import { bindHistogramRecorder, type HistogramRecorder } from '../observability/histogram-recorder.ts';
import type { DialFailureReason, FrontendStallCloseReason, ServerMetrics } from '../observability/server-metrics.ts';
import type { AgentIdentifiers } from './agent-identifiers.ts';
import { BackendRegistry, type ProxyStrategyName, type RoutableBackend } from './backend-registry.ts';
import { ConnectionCredit } from '../protocol/flow-control.ts';
import { stallLimit, watchProgress, type StallPolicy } from '../protocol/stall-policy.ts';
import {
  IdleSweeper,
  connectionsPerAgentError,
  createServerLimitMetrics,
  idleConnectionError,
  pendingDialsPerAgentError,
  pendingDialsPerFrontendError,
  resolveServerLimits,
  type ServerLimitMetrics,
  type ServerLimitName,
  type ServerLimits,
} from './limits.ts';

/** What the router needs from a frontend transport (gRPC Proxy stream or HTTP-CONNECT socket). */
export interface FrontendPeer {
  dialResponse(random: bigint, connectID: bigint, error: string): void;
  /** DATA for the client; its payload may be in pieces (`payload.pieces`), best written as one writev. */
  data(connectID: bigint, payload: Data): void;
  closeResponse(connectID: bigint, error: string): void;
  dialClosed(random: bigint): void;
  /** Bytes queued toward the frontend and not yet taken by its transport. */
  readonly bufferedBytes: number;
  pauseReading(): void;
  resumeReading(): void;
  /**
   * Called after closeResponse when the router closed the connection because
   * this frontend stopped reading: whatever the transport still holds (up to
   * maxFrontendBufferBytes) would otherwise stay with it for good. It should
   * free it (destroy the socket, reset the stream) if the client has not
   * taken it within `lingerMs`.
   */
  abandon?(lingerMs: number): void;
}

/** What the router needs from an agent stream. */
export interface BackendTransport {
  /** Queues a packet; false means the shared stream is backpressured. */
  send(packet: Packet): boolean;
  /** Stops/resumes reading the agent stream (HTTP/2 flow control then pushes back on the agent). */
  pauseReceive?(): void;
  resumeReceive?(): void;
}

export interface ProxyRouterOptions {
  strategies: readonly ProxyStrategyName[];
  metrics: ServerMetrics;
  logger: Logger;
  /** 0 disables, as upstream's --backend-dial-timeout. */
  backendDialTimeoutMs: number;
  /**
   * Bytes we hold for one frontend that is not reading before closing that
   * connection. Upstream instead blocks the agent's whole stream.
   */
  maxFrontendBufferBytes: number;
  /**
   * For agents without per-connection flow control (upstream agents): how long
   * a frontend over its buffer bound may go without taking a byte before that
   * one connection is closed; 0 closes it as soon as it passes the bound.
   * Default 30 s.
   */
  frontendStallTimeoutMs?: number;
  /** What else happens while such a frontend is over its bound (StallPolicy). Default 'close'. */
  frontendStallPolicy?: StallPolicy;
  random?: () => number;
  /** konnectivity-ts exhaustion bounds (limits.ts); defaults apply to what is left out. */
  limits?: Partial<ServerLimits>;
}

interface EstablishedConnection {
  readonly connectID: bigint;
  readonly backend: Backend;
  /** Null once the frontend went away and we are waiting for the agent's CLOSE_RSP. */
  frontend: FrontendSession | null;
  readonly startedAt: number;
  bytesFromAgent: number;
  bytesToAgent: number;
  /** Per-connection credit when the agent negotiated flow control; null for upstream agents. */
  readonly credit: ConnectionCredit | null;
  /** The frontend is paused because this connection ran out of credit toward the agent. */
  pausedForCredit: boolean;
  /** The frontend's CLOSE_REQ went to the agent: ending the frontend must not send another. */
  closeRequested: boolean;
}

/** Windows negotiated with an agent stream (docs/design/flow-control.md). */
export interface NegotiatedFlowControl {
  /** What the agent accepts per connection before it returns credit. */
  agentWindow: number;
  /** What we accept per connection from the agent. */
  ourWindow: number;
}

interface PendingDial {
  readonly random: bigint;
  readonly frontend: FrontendSession;
  readonly backend: Backend;
  readonly address: string;
  readonly startedAt: number;
  timer: NodeJS.Timeout | null;
}

/** `--frontend-stall-timeout`'s default. */
export const DEFAULT_FRONTEND_STALL_TIMEOUT_MS = 30_000;
/**
 * Floor of ProxyRouter.frontendLingerMs, so that with a stall timeout of 0
 * ("close at once") a closing response still has time to get out.
 */
export const MIN_FRONTEND_LINGER_MS = 1_000;

/** Error texts the router puts in DIAL_RSP; HTTP-CONNECT maps them to upstream's status lines. */
export const NO_AGENT_ERROR = 'No agent available';
export const BACKEND_DIAL_TIMEOUT_ERROR = 'timed out waiting for backend dial';
export const AGENT_GONE_ERROR = 'agent disconnected before answering the dial';

let backendSerial = 0;

export class Backend implements RoutableBackend {
  readonly serial = ++backendSerial;
  readonly agentId: string;
  readonly identifiers: AgentIdentifiers;
  readonly transport: BackendTransport;
  readonly flow: NegotiatedFlowControl | null;
  readonly connectedAt = Date.now();
  draining = false;
  readonly connections = new Map<bigint, EstablishedConnection>();
  /** Dials forwarded to this agent stream and not answered yet. */
  pendingDials = 0;
  /** Frontends paused because this agent stream was backpressured. */
  readonly pausedFrontends = new Set<FrontendSession>();
  /**
   * Connections whose frontend is over its buffer bound while this stream has
   * no per-connection flow control, each with its progress check. Under the
   * 'pause' policy the stream stays paused while there are any.
   */
  readonly overBound = new Map<EstablishedConnection, NodeJS.Timeout>();
  closed = false;

  constructor(agentId: string, identifiers: AgentIdentifiers, transport: BackendTransport, flow: NegotiatedFlowControl | null = null) {
    this.agentId = agentId;
    this.identifiers = identifiers;
    this.transport = transport;
    this.flow = flow;
  }
}

export class FrontendSession {
  readonly peer: FrontendPeer;
  readonly router: ProxyRouter;
  readonly pending = new Set<bigint>();
  readonly connections = new Set<EstablishedConnection>();
  /** Payload bytes handed to `peer.data` so far; minus `peer.bufferedBytes`, what the frontend took. */
  bytesQueued = 0;
  /** Upstream's "backend chosen for this stream": set by the first dial. */
  backend: Backend | null = null;
  firstConnectID = 0n;
  /** Upstream stops processing a frontend stream after CLOSE_REQ or a fatal rule. */
  stopped = false;
  ended = false;

  constructor(router: ProxyRouter, peer: FrontendPeer) {
    this.router = router;
    this.peer = peer;
  }

  handlePacket(p: Packet): void {
    this.router.handleFrontendPacket(this, p);
  }

  /** The frontend transport is gone (stream ended/reset, socket closed). */
  end(): void {
    this.router.endFrontend(this);
  }

  /** The frontend transport drained its write buffer (credit may be returned). */
  writable(): void {
    this.router.frontendWritable(this);
  }
}

export class ProxyRouter {
  readonly registry: BackendRegistry<Backend>;
  private readonly pending = new Map<bigint, PendingDial>();
  private readonly options: ProxyRouterOptions;
  private readonly metrics: ServerMetrics;
  private readonly log: Logger;
  private established = 0;
  private readonly backends = new Set<Backend>();
  /** Connections closed because their frontend stopped reading (a konnectivity-ts addition). */
  stalledFrontendCloses = 0;
  /** Times an agent stream without flow control was paused for a frontend over its bound ('pause' policy). */
  frontendBoundPauses = 0;
  private readonly stallTimeoutMs: number;
  private readonly stallPolicy: StallPolicy;
  private readonly count: Record<'fromAgent' | 'toAgent' | 'fromClient' | 'toClient', PacketCounter>;
  private readonly recordDialSeconds: HistogramRecorder;
  private readonly recordConnectionSeconds: HistogramRecorder;
  readonly limits: ServerLimits;
  readonly limitMetrics: ServerLimitMetrics;
  private readonly idleSweeper: IdleSweeper<EstablishedConnection> | null;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(options: ProxyRouterOptions) {
    this.options = options;
    this.stallTimeoutMs = options.frontendStallTimeoutMs ?? DEFAULT_FRONTEND_STALL_TIMEOUT_MS;
    this.stallPolicy = options.frontendStallPolicy ?? 'close';
    this.limits = resolveServerLimits(options.limits);
    this.limitMetrics = createServerLimitMetrics(options.metrics.registry);
    this.idleSweeper = this.limits.idleConnectionTimeoutMs > 0 ? new IdleSweeper(this.limits.idleConnectionTimeoutMs) : null;
    this.metrics = options.metrics;
    this.log = options.logger;
    this.registry = new BackendRegistry<Backend>(options.strategies, options.random);
    const c = options.metrics.streamPackets;
    this.count = {
      fromAgent: bindPacketCounter(c, 'from_agent'),
      toAgent: bindPacketCounter(c, 'to_agent'),
      fromClient: bindPacketCounter(c, 'from_client'),
      toClient: bindPacketCounter(c, 'to_client'),
    };
    this.recordDialSeconds = bindHistogramRecorder(options.metrics.dialDuration);
    this.recordConnectionSeconds = bindHistogramRecorder(options.metrics.connectionDuration);
  }

  /**
   * How long a frontend whose connection was closed for stalling gets to take
   * what is still queued for it (FrontendPeer.abandon) before its socket is
   * destroyed or its stream reset: the frontend stall timeout, the bound on
   * making no progress it already missed once, at least MIN_FRONTEND_LINGER_MS.
   * A fixed bound, not a progress check: Node reports a socket's or stream's
   * flushing only per completed write batch (and not at all through TLS),
   * which can be all 16 MiB at once.
   */
  get frontendLingerMs(): number {
    return Math.max(this.stallTimeoutMs, MIN_FRONTEND_LINGER_MS);
  }

  /** Frontend transports report what they sent to their client. */
  countToClient(packetType: number): void {
    this.count.toClient(packetType);
  }

  get pendingDialCount(): number {
    return this.pending.size;
  }
  get establishedCount(): number {
    return this.established;
  }
  get backendList(): readonly Backend[] {
    return [...this.backends];
  }

  openFrontend(peer: FrontendPeer): FrontendSession {
    return new FrontendSession(this, peer);
  }

  // --- agents ---------------------------------------------------------------

  addBackend(b: Backend): void {
    this.backends.add(b);
    this.registry.add(b);
    this.updateBackendGauges();
    this.log.v(2, 'agent connected', { agentID: b.agentId, serial: b.serial });
  }

  /** The agent stream ended: its connections and (unlike upstream) its pending dials are failed now. */
  removeBackend(b: Backend): void {
    if (b.closed) return;
    b.closed = true;
    this.backends.delete(b);
    this.registry.remove(b);
    this.updateBackendGauges();
    for (const conn of b.connections.values()) {
      this.finishConnection(conn);
      conn.frontend?.peer.closeResponse(conn.connectID, '');
    }
    b.connections.clear();
    for (const dial of [...this.pending.values()]) {
      if (dial.backend !== b) continue;
      this.takePending(dial.random);
      this.metrics.dialFailures.inc({ reason: 'backend_close' });
      dial.frontend.peer.dialResponse(dial.random, 0n, AGENT_GONE_ERROR);
    }
    for (const f of b.pausedFrontends) f.peer.resumeReading();
    b.pausedFrontends.clear();
    this.log.v(2, 'agent disconnected', { agentID: b.agentId, serial: b.serial });
  }

  /** The agent stream can take more packets again. */
  backendDrained(b: Backend): void {
    if (b.pausedFrontends.size === 0) return;
    const paused = [...b.pausedFrontends];
    b.pausedFrontends.clear();
    for (const f of paused) if (!ProxyRouter.waitsForCredit(f)) f.peer.resumeReading();
  }

  private static waitsForCredit(fe: FrontendSession): boolean {
    for (const c of fe.connections) if (c.pausedForCredit) return true;
    return false;
  }

  /** A frontend drained its buffer: return the credit its connections owe the agent. */
  frontendWritable(fe: FrontendSession): void {
    for (const conn of fe.connections) {
      this.returnCredit(conn, true);
      if (conn.backend.overBound.has(conn) && fe.peer.bufferedBytes <= this.options.maxFrontendBufferBytes / 2) this.releaseBackendFor(conn);
    }
  }

  /**
   * A frontend has more than its bound queued. Without per-connection flow
   * control the agent keeps sending, so memory is bounded either by stopping
   * the shared stream (upstream's way: every connection on the agent waits) or
   * by closing this connection. The default policy never stops the stream but
   * gives a reader that is only slow, or briefly busy, room up to twice the
   * bound while it keeps taking bytes (docs/design/flow-control.md).
   */
  private frontendOverBound(conn: EstablishedConnection, buffered: number): void {
    const bound = this.options.maxFrontendBufferBytes;
    // A peer with credit cannot get here unless it ignores its window.
    if (conn.credit || this.stallTimeoutMs === 0) return this.closeStalledFrontend(conn, 'frontend_buffer_full', bound);
    if (!this.pausesStream(conn.backend) && buffered > stallLimit(bound)) return this.closeStalledFrontend(conn, 'frontend_buffer_full', stallLimit(bound));
    this.watchOverBound(conn);
  }

  /** The 'pause' policy, on an agent stream that can pause. */
  private pausesStream(b: Backend): boolean {
    return this.stallPolicy === 'pause' && b.transport.pauseReceive !== undefined;
  }

  /** Closes the connection if its frontend takes no byte for a whole stall timeout; pauses the stream under 'pause'. */
  private watchOverBound(conn: EstablishedConnection): void {
    const b = conn.backend;
    if (b.overBound.has(conn)) return;
    const fe = conn.frontend!;
    const timer = watchProgress(
      () => fe.bytesQueued - fe.peer.bufferedBytes,
      this.stallTimeoutMs,
      () => conn.frontend === fe && this.closeStalledFrontend(conn, 'frontend_not_reading', this.options.maxFrontendBufferBytes),
    );
    b.overBound.set(conn, timer);
    if (!this.pausesStream(b)) return;
    this.frontendBoundPauses++;
    this.metrics.streamPausesForFrontend.inc();
    if (b.overBound.size === 1) b.transport.pauseReceive?.();
  }

  private releaseBackendFor(conn: EstablishedConnection): void {
    const b = conn.backend;
    const timer = b.overBound.get(conn);
    if (timer === undefined) return;
    clearInterval(timer);
    b.overBound.delete(conn);
    if (this.pausesStream(b) && b.overBound.size === 0 && !b.closed) b.transport.resumeReceive?.();
  }

  private returnCredit(conn: EstablishedConnection, drained: boolean): void {
    if (!conn.credit || !conn.frontend) return;
    const n = conn.credit.takeCreditToReturn(conn.frontend.peer.bufferedBytes, drained);
    if (n > 0) this.sendToBackend(conn.backend, packets.flowCredit(conn.connectID, BigInt(n)));
  }

  handleBackendPacket(b: Backend, p: Packet): void {
    this.count.fromAgent(p.type);
    switch (p.type) {
      case PacketType.DIAL_RSP:
        return this.onDialResponse(b, p.dialResponse.random, p.dialResponse.connectID, p.dialResponse.error);
      case PacketType.DATA: {
        const conn = b.connections.get(p.data.connectID);
        if (!conn) {
          this.sendToBackend(b, packets.closeRequest(p.data.connectID));
          return;
        }
        if (!conn.frontend) return; // closing: the agent's CLOSE_RSP is on its way
        const n = payloadLength(p.data);
        conn.bytesFromAgent += n;
        const fe = conn.frontend;
        fe.bytesQueued += n;
        fe.peer.data(conn.connectID, p.data);
        const buffered = fe.peer.bufferedBytes;
        if (buffered > this.options.maxFrontendBufferBytes) {
          this.frontendOverBound(conn, buffered);
          return;
        }
        if (conn.credit) {
          conn.credit.received(n);
          this.returnCredit(conn, false);
        }
        return;
      }
      case PacketType.FLOW_CREDIT: {
        const conn = b.connections.get(p.flowCredit.connectID);
        if (!conn?.credit || !conn.credit.grant(Number(p.flowCredit.bytes)) || !conn.pausedForCredit) return;
        conn.pausedForCredit = false;
        if (conn.frontend && !b.pausedFrontends.has(conn.frontend)) conn.frontend.peer.resumeReading();
        return;
      }
      case PacketType.CLOSE_RSP: {
        const conn = b.connections.get(p.closeResponse.connectID);
        if (!conn) return;
        b.connections.delete(conn.connectID);
        this.finishConnection(conn);
        conn.frontend?.peer.closeResponse(conn.connectID, p.closeResponse.error);
        return;
      }
      case PacketType.DIAL_CLS: {
        const dial = this.takePending(p.closeDial.random);
        if (!dial) return;
        this.metrics.dialFailures.inc({ reason: 'backend_close' });
        dial.frontend.peer.dialClosed(dial.random);
        return;
      }
      case PacketType.DRAIN:
        if (!b.draining) {
          b.draining = true;
          this.log.info('agent is draining', { agentID: b.agentId });
        }
        return;
      default:
        return; // DIAL_REQ and CLOSE_REQ from an agent are ignored, as upstream
    }
  }

  private onDialResponse(b: Backend, random: bigint, connectID: bigint, error: string): void {
    const dial = this.pending.get(random);
    if (!dial || dial.backend !== b) {
      this.metrics.dialFailures.inc({ reason: 'unrecognized_response' });
      if (connectID !== 0n) this.sendToBackend(b, packets.closeRequest(connectID));
      return;
    }
    this.takePending(random);
    const fe = dial.frontend;
    if (error) {
      this.metrics.dialFailures.inc({ reason: 'error_response' });
      fe.peer.dialResponse(random, connectID, error);
      return;
    }
    if (connectID === 0n || b.connections.has(connectID)) {
      // Upstream would register it and overwrite (or orphan) a live connection's
      // entry, leaking it. The agent's connection, if any, is left alone.
      this.metrics.dialFailures.inc({ reason: 'error_response' });
      this.log.warn('agent answered a dial with an unusable connectID', { agentID: b.agentId, random, connectID });
      fe.peer.dialResponse(random, 0n, `konnectivity-server: agent ${b.agentId} answered with connectID ${connectID}, which is ${connectID === 0n ? 'not valid' : 'already in use'}`);
      return;
    }
    if (fe.ended) {
      this.metrics.dialFailures.inc({ reason: 'send_rsp' });
      this.sendToBackend(b, packets.closeRequest(connectID));
      return;
    }
    const credit = b.flow ? new ConnectionCredit(b.flow.agentWindow, b.flow.ourWindow) : null;
    const conn: EstablishedConnection = { connectID, backend: b, frontend: fe, startedAt: Date.now(), bytesFromAgent: 0, bytesToAgent: 0, credit, pausedForCredit: false, closeRequested: false };
    b.connections.set(connectID, conn);
    fe.connections.add(conn);
    this.established++;
    this.metrics.establishedConnections.set(this.established);
    this.startIdleSweep();
    this.recordDialSeconds((performance.now() - dial.startedAt) / 1000);
    fe.peer.dialResponse(random, connectID, '');
  }

  private closeStalledFrontend(conn: EstablishedConnection, reason: FrontendStallCloseReason, limit: number): void {
    this.releaseBackendFor(conn);
    const fe = conn.frontend!;
    const buffered = fe.peer.bufferedBytes;
    this.stalledFrontendCloses++;
    this.metrics.connectionStallCloses.inc({ reason });
    this.log.warn('closing connection: frontend stopped reading', { connectID: conn.connectID, agentID: conn.backend.agentId, reason, bufferedBytes: buffered, limit });
    fe.connections.delete(conn);
    conn.frontend = null;
    this.sendToBackend(conn.backend, packets.closeRequest(conn.connectID));
    const why =
      reason === 'frontend_not_reading'
        ? `${buffered} bytes queued, more than ${limit}, and none taken for ${this.stallTimeoutMs} ms`
        : `${buffered} bytes queued, limit ${limit}`;
    fe.peer.closeResponse(conn.connectID, `konnectivity-ts: frontend stopped reading (${why})`);
    fe.peer.abandon?.(this.frontendLingerMs);
  }

  // --- frontends -------------------------------------------------------------

  handleFrontendPacket(fe: FrontendSession, p: Packet): void {
    this.count.fromClient(p.type);
    if (fe.stopped || fe.ended) return;
    switch (p.type) {
      case PacketType.DIAL_REQ:
        return this.onDialRequest(fe, p.dialRequest.random, p.dialRequest.address, p.dialRequest.protocol);
      case PacketType.DATA: {
        const id = p.data.connectID;
        if (id === 0n) return;
        if (!fe.backend) {
          fe.peer.closeResponse(id, 'backend not initialized');
          fe.stopped = true;
          return;
        }
        if (fe.firstConnectID === 0n) fe.firstConnectID = id;
        else if (id !== fe.firstConnectID) {
          // One connection per frontend stream: a second ID is a protocol violation; close both.
          const first = fe.firstConnectID;
          for (const cid of [first, id]) {
            const own = this.ownConnection(fe, cid);
            if (own) this.detachFromFrontend(own);
            // As upstream for an ID nobody holds; never for another stream's connection.
            else if (!this.heldByAnother(fe.backend, cid, fe)) this.sendToBackend(fe.backend, packets.closeRequest(cid));
          }
          fe.peer.closeResponse(first, 'mismatched connection IDs');
          fe.peer.closeResponse(id, 'mismatched connection IDs');
          fe.stopped = true;
          return;
        }
        // Isolation (konnectivity-ts): only this stream's own connections. Upstream
        // forwards any ID to the stream's agent, so one frontend could write into
        // another's connection; the agent would drop an unknown ID anyway.
        const conn = this.ownConnection(fe, id);
        if (!conn) return;
        const b = conn.backend;
        const n = payloadLength(p.data);
        conn.bytesToAgent += n;
        if (!this.sendToBackend(b, p)) {
          b.pausedFrontends.add(fe);
          fe.peer.pauseReading();
        }
        if (conn.credit?.consume(n) && !conn.pausedForCredit) {
          conn.pausedForCredit = true;
          fe.peer.pauseReading();
        }
        return;
      }
      case PacketType.CLOSE_REQ: {
        const id = p.closeRequest.connectID;
        if (!fe.backend) {
          fe.peer.closeResponse(id, 'backend uninitialized');
          return;
        }
        const conn = this.ownConnection(fe, id);
        const b = conn?.backend ?? fe.backend;
        if (b.closed) fe.peer.closeResponse(id, 'CLOSE_REQ to backend failed');
        else if (conn) {
          conn.closeRequested = true;
          this.sendToBackend(b, p);
        }
        // Not this stream's connection (isolation): never forwarded; answered as the agent would.
        else fe.peer.closeResponse(id, 'Unknown connectID');
        fe.stopped = true;
        return;
      }
      case PacketType.DIAL_CLS: {
        const dial = this.pending.get(p.closeDial.random);
        if (!dial || dial.frontend !== fe) return;
        this.takePending(dial.random);
        fe.pending.delete(dial.random);
        this.metrics.dialFailures.inc({ reason: 'frontend_close' });
        // Upstream does not forward this; Go agents ignore DIAL_CLS, ours abort the dial early.
        this.sendToBackend(dial.backend, p);
        return;
      }
      default:
        return;
    }
  }

  private onDialRequest(fe: FrontendSession, random: bigint, address: string, protocol: string): void {
    if (this.pending.has(random)) {
      // Upstream overwrites the pending entry: the first dialer never hears back, and
      // whoever ends first cancels the other's dial. Refuse the newcomer instead.
      if (this.log.enabled(2)) this.log.v(2, 'dial refused: dial ID already pending', { random, address });
      fe.peer.dialResponse(random, 0n, `konnectivity-server: dial ID ${random} is already in use by a pending dial`);
      return;
    }
    const lim = this.limits;
    if (lim.maxPendingDialsPerFrontend > 0 && fe.pending.size >= lim.maxPendingDialsPerFrontend) {
      return this.refuseDial(fe, random, address, 'pending_dials_per_frontend', pendingDialsPerFrontendError(lim.maxPendingDialsPerFrontend));
    }
    const b = this.registry.pick(address);
    if (!b) {
      this.metrics.dialFailures.inc({ reason: 'no_agent' });
      fe.peer.dialResponse(random, 0n, NO_AGENT_ERROR);
      fe.stopped = true;
      return;
    }
    if (lim.maxPendingDialsPerAgent > 0 && b.pendingDials >= lim.maxPendingDialsPerAgent) {
      return this.refuseDial(fe, random, address, 'pending_dials_per_agent', pendingDialsPerAgentError(b.agentId, lim.maxPendingDialsPerAgent));
    }
    if (lim.maxConnectionsPerAgent > 0 && b.connections.size + b.pendingDials >= lim.maxConnectionsPerAgent) {
      return this.refuseDial(fe, random, address, 'connections_per_agent', connectionsPerAgentError(b.agentId, lim.maxConnectionsPerAgent));
    }
    fe.backend = b;
    const dial: PendingDial = { random, frontend: fe, backend: b, address, startedAt: performance.now(), timer: null };
    this.pending.set(random, dial);
    fe.pending.add(random);
    b.pendingDials++;
    this.metrics.pendingBackendDials.set(this.pending.size);
    if (this.options.backendDialTimeoutMs > 0) {
      dial.timer = setTimeout(() => {
        if (this.pending.get(random) !== dial) return;
        this.takePending(random);
        this.metrics.dialFailures.inc({ reason: 'backend_dial_timeout' });
        fe.peer.dialResponse(random, 0n, BACKEND_DIAL_TIMEOUT_ERROR);
      }, this.options.backendDialTimeoutMs);
      dial.timer.unref?.();
    }
    if (this.log.enabled(3)) this.log.v(3, 'forwarding dial request', { random, address, agentID: b.agentId });
    this.sendToBackend(b, packets.dialRequest(address, random, protocol));
  }

  endFrontend(fe: FrontendSession): void {
    if (fe.ended) return;
    fe.ended = true;
    for (const random of fe.pending) {
      if (this.pending.get(random)?.frontend !== fe) continue; // never another stream's dial
      const dial = this.takePending(random);
      if (dial) this.sendToBackend(dial.backend, packets.closeDial(random));
    }
    fe.pending.clear();
    for (const conn of fe.connections) {
      this.releaseBackendFor(conn);
      conn.frontend = null;
      // At once, not held for the next packet to this agent: the agent then
      // closes this connection while the client's next dial is still on its
      // way, instead of before that dial (docs/design.md, "Closes go out at once").
      if (!conn.closeRequested) this.sendToBackend(conn.backend, packets.closeRequest(conn.connectID));
    }
    fe.connections.clear();
    // Its connections may have paused it on agents other than fe.backend.
    for (const b of this.backends) b.pausedFrontends.delete(fe);
  }

  /** This stream's attached connection with that ID, if any. */
  private ownConnection(fe: FrontendSession, connectID: bigint): EstablishedConnection | undefined {
    for (const c of fe.connections) if (c.connectID === connectID) return c;
    return undefined;
  }

  /** Whether agent stream `b` has a connection with that ID that is not `fe`'s. */
  private heldByAnother(b: Backend, connectID: bigint, fe: FrontendSession): boolean {
    const c = b.connections.get(connectID);
    return c !== undefined && c.frontend !== fe;
  }

  /** Detaches a connection from its frontend and asks the agent to close it; the agent's CLOSE_RSP then ends it. */
  private detachFromFrontend(conn: EstablishedConnection): void {
    conn.frontend?.connections.delete(conn);
    conn.frontend = null;
    this.sendToBackend(conn.backend, packets.closeRequest(conn.connectID));
  }

  // --- limits (konnectivity-ts) ----------------------------------------------

  /** Answers one dial with a limit error; the frontend stream stays usable. */
  private refuseDial(fe: FrontendSession, random: bigint, address: string, limit: ServerLimitName, error: string): void {
    this.limitMetrics.rejected(limit);
    if (this.log.enabled(2)) this.log.v(2, 'dial refused: limit reached', { random, address, limit });
    fe.peer.dialResponse(random, 0n, error);
  }

  /** Stops the router's timers (server shutdown, tests). */
  dispose(): void {
    if (this.idleTimer) clearInterval(this.idleTimer);
    this.idleTimer = null;
    for (const dial of this.pending.values()) if (dial.timer) clearTimeout(dial.timer);
  }

  private startIdleSweep(): void {
    if (this.idleTimer || !this.idleSweeper) return;
    this.idleTimer = setInterval(() => this.sweepIdle(), this.idleSweeper.intervalMs);
    this.idleTimer.unref();
  }

  /**
   * Closes connections without traffic for --idle-connection-timeout. Runs
   * on a timer while connections exist; `now` is for tests.
   */
  sweepIdle(now = Date.now()): void {
    if (!this.idleSweeper) return;
    if (this.established === 0 && this.idleTimer) {
      clearInterval(this.idleTimer);
      this.idleTimer = null;
      return;
    }
    const all = [...this.backends].flatMap((b) => [...b.connections.values()]);
    this.idleSweeper.sweep(all, now, (conn) => this.closeIdle(conn));
  }

  private closeIdle(conn: EstablishedConnection): void {
    this.limitMetrics.idleClosed();
    const fe = conn.frontend;
    if (fe === null) {
      // Closed on our side long ago and the agent never confirmed: forget it.
      conn.backend.connections.delete(conn.connectID);
      this.finishConnection(conn);
      return;
    }
    this.log.v(2, 'closing idle connection', { connectID: conn.connectID, agentID: conn.backend.agentId });
    fe.connections.delete(conn);
    conn.frontend = null;
    this.sendToBackend(conn.backend, packets.closeRequest(conn.connectID));
    fe.peer.closeResponse(conn.connectID, idleConnectionError(this.limits.idleConnectionTimeoutMs));
  }

  // --- helpers ---------------------------------------------------------------

  private takePending(random: bigint): PendingDial | undefined {
    const dial = this.pending.get(random);
    if (!dial) return undefined;
    this.pending.delete(random);
    dial.frontend.pending.delete(random);
    dial.backend.pendingDials--;
    if (dial.timer) clearTimeout(dial.timer);
    this.metrics.pendingBackendDials.set(this.pending.size);
    return dial;
  }

  private finishConnection(conn: EstablishedConnection): void {
    this.releaseBackendFor(conn);
    conn.frontend?.connections.delete(conn);
    this.established--;
    this.metrics.establishedConnections.set(this.established);
    this.recordConnectionSeconds((Date.now() - conn.startedAt) / 1000);
  }

  private sendToBackend(b: Backend, p: Packet): boolean {
    if (b.closed) return true;
    this.count.toAgent(p.type);
    return b.transport.send(p);
  }

  private updateBackendGauges(): void {
    for (const s of this.registry.strategies) this.metrics.readyBackends.set({ proxy_strategy: s }, this.registry.count(s));
    this.metrics.readyBackendConnections.set(this.registry.count('default') || this.backends.size);
  }

  /** Snapshot for status endpoints. */
  describeBackends(): Array<{ agentId: string; serial: number; draining: boolean; connections: number; connectedAt: number; identifiers: AgentIdentifiers }> {
    return [...this.backends].map((b) => ({ agentId: b.agentId, serial: b.serial, draining: b.draining, connections: b.connections.size, connectedAt: b.connectedAt, identifiers: b.identifiers }));
  }
}
