/**
 * The agent's packet state machine for one proxy-server stream: answers
 * DIAL_REQ by dialing endpoints, moves DATA both ways and closes connections,
 * exactly per the upstream packet matrix. It only sees the stream through
 * `PacketPipe` and endpoints through `EndpointDialer`, so it can be driven
 * without a gRPC connection.
 *
 * Flow control avoids upstream's head-of-line blocking: with a konnectivity-ts
 * server the shared stream is never paused because of one connection. Toward
 * the server, a full pipe pauses reads on every endpoint of this stream (the
 * shared pipe is what is full, so all of them wait equally) until it drains.
 * Toward endpoints, each connection may buffer up to a bound; a
 * konnectivity-ts server never exceeds the window it was given. An upstream
 * server has no per-connection flow control: under the default 'close' policy
 * a destination over its bound may queue up to twice the bound while it keeps
 * taking bytes and is closed past that (the stream never pauses); under
 * 'pause' the stream pauses until it drains, as upstream's agent does. Either
 * way a destination that takes nothing for the stall timeout loses its
 * connection, and nothing else does.
 */
import type { Socket } from 'node:net';
import type { AgentMetrics } from '../observability/agent-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { bindPacketCounter, type PacketCounter } from '../observability/packet-counters.ts';
import { bindHistogramRecorder, type HistogramRecorder } from '../observability/histogram-recorder.ts';
import { PacketType, packetTypeName, packets, payloadLength, type DialRequest, type Packet } from '../protocol/packet.ts';
import type { ProtocolError } from '../protocol/protocol-error.ts';
import type { AgentTsMetrics, StallCloseReason } from './agent-ts-metrics.ts';
import { stallLimit, watchProgress, type StallPolicy } from '../protocol/stall-policy.ts';
import { EndpointConnection, PauseReason } from './endpoint-connection.ts';
import { ConnectionCredit } from '../protocol/flow-control.ts';
import type { EndpointDialer } from './endpoint-dialer.ts';
import { EndpointDialError, unsupportedProtocolDialError } from './go-dial-error.ts';

/** The server stream as the relay needs it; PacketStream satisfies it. */
export interface PacketPipe {
  /** Queues a packet; false means "full, wait for drain" or, when `isClosed`, "gone". */
  send(packet: Packet): boolean;
  readonly isClosed: boolean;
  /** Stop / restart reading packets from the server (HTTP/2 flow control then pushes back). */
  pauseReceive?(): void;
  resumeReceive?(): void;
}

export interface EndpointRelayOptions {
  pipe: PacketPipe;
  dial: EndpointDialer;
  /** Per-connection bound on bytes queued toward a destination that is not reading. */
  maxEndpointBufferedBytes: number;
  /** How long a closing endpoint may take to accept its remaining bytes. */
  endpointCloseLingerMs: number;
  /** Servers without flow control: how long one destination over its bound may take no byte; 0 = close at the bound. */
  endpointStallTimeoutMs?: number;
  /** Servers without flow control: close (default) or pause the stream while a destination is over its bound. */
  endpointStallPolicy?: StallPolicy;
  metrics: AgentMetrics;
  tsMetrics: AgentTsMetrics;
  logger: Logger;
  /** A send found the stream gone: the owner drops this server connection. */
  onSendFailure: (packet: Packet) => void;
  /** Windows when the server negotiated the flow-control extension; null = upstream behaviour. */
  flowControl?: { serverWindow: number; ourWindow: number } | null;
}

/** CLOSE_RSP texts the upstream agent uses; clients and servers may match them. */
export const UNRECOGNIZED_CONNECT_ID = 'unrecognized connectID';
export const UNKNOWN_CONNECT_ID = 'Unknown connectID';


export class EndpointRelay {
  private readonly pipe: PacketPipe;
  private readonly dial: EndpointDialer;
  private readonly maxBuffered: number;
  private readonly lingerMs: number;
  private readonly stallTimeoutMs: number;
  /** The 'pause' policy on a pipe that can pause: the stream stays paused while overBound has entries. */
  private readonly pausesStream: boolean;
  /** Connections over their buffer bound without credit, with their progress checks. */
  private readonly overBound = new Map<EndpointConnection, NodeJS.Timeout>();
  private readonly metrics: AgentMetrics;
  private readonly tsMetrics: AgentTsMetrics;
  private readonly logger: Logger;
  private readonly onSendFailure: (packet: Packet) => void;
  private readonly flowControl: { serverWindow: number; ourWindow: number } | null;

  private readonly connections = new Map<bigint, EndpointConnection>();
  /** Dials in flight, keyed by the dialer's `random` so DIAL_CLS can find them. */
  private readonly pendingDials = new Map<bigint, AbortController>();
  private lastConnectID = 0n;
  /** The server pipe reported backpressure; endpoint reads are paused until it drains. */
  private pipeFull = false;
  private closed = false;
  private sendFailed = false;
  // Pre-bound metric children: label lookups are too costly per packet.
  private readonly countSent: PacketCounter;
  private readonly countReceived: PacketCounter;
  private readonly recordDialSeconds: HistogramRecorder;

  constructor(options: EndpointRelayOptions) {
    this.pipe = options.pipe;
    this.dial = options.dial;
    this.maxBuffered = options.maxEndpointBufferedBytes;
    this.lingerMs = options.endpointCloseLingerMs;
    this.stallTimeoutMs = options.endpointStallTimeoutMs ?? 30_000;
    this.pausesStream = (options.endpointStallPolicy ?? 'close') === 'pause' && this.pipe.pauseReceive !== undefined;
    this.metrics = options.metrics;
    this.tsMetrics = options.tsMetrics;
    this.logger = options.logger;
    this.onSendFailure = options.onSendFailure;
    this.flowControl = options.flowControl ?? null;
    this.countSent = bindPacketCounter(this.metrics.streamPackets, 'from_agent');
    this.countReceived = bindPacketCounter(this.metrics.streamPackets, 'to_agent');
    this.recordDialSeconds = bindHistogramRecorder(this.metrics.dialDuration);
  }

  /** Established endpoint connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  get pendingDialCount(): number {
    return this.pendingDials.size;
  }

  /** Connections with more than their bound queued toward a destination (servers without flow control). */
  get overBoundCount(): number {
    return this.overBound.size;
  }

  /** True while endpoint reads wait for the server pipe to drain. */
  get endpointReadsPaused(): boolean {
    return this.pipeFull;
  }

  /** Sends a packet of our own (DRAIN) on the stream. */
  sendPacket(packet: Packet): boolean {
    return this.send(packet);
  }

  handlePacket(packet: Packet): void {
    if (this.closed) return;
    this.countReceived(packet.type);
    switch (packet.type) {
      case PacketType.DIAL_REQ:
        this.handleDialRequest(packet.dialRequest);
        return;
      case PacketType.DATA: {
        const { connectID } = packet.data;
        const conn = this.connections.get(connectID);
        if (conn === undefined) {
          this.send(packets.closeResponse(connectID, UNRECOGNIZED_CONNECT_ID));
          return;
        }
        const length = payloadLength(packet.data);
        conn.write(packet.data, length);
        const buffered = conn.bufferedBytes;
        if (buffered > this.maxBuffered) {
          this.endpointOverBound(conn, buffered);
          return;
        }
        if (conn.credit) {
          conn.credit.received(length);
          this.returnCredit(conn, false);
        }
        return;
      }
      case PacketType.FLOW_CREDIT: {
        const conn = this.connections.get(packet.flowCredit.connectID);
        if (conn?.credit && conn.credit.grant(Number(packet.flowCredit.bytes))) conn.resumeReading(PauseReason.NO_CREDIT);
        return;
      }
      case PacketType.CLOSE_REQ:
        this.handleCloseRequest(packet.closeRequest.connectID);
        return;
      case PacketType.DIAL_CLS: {
        // Upstream's agent ignores DIAL_CLS. We also abandon the dial it
        // names, so a destination nobody waits for is not connected. No
        // DIAL_RSP follows: whoever sent DIAL_CLS already forgot the dial.
        const pending = this.pendingDials.get(packet.closeDial.random);
        if (pending) {
          this.pendingDials.delete(packet.closeDial.random);
          pending.abort();
        }
        return;
      }
      default:
        // DIAL_RSP, CLOSE_RSP and DRAIN are never meant for an agent.
        if (this.logger.enabled(5)) this.logger.v(5, 'ignoring packet not meant for an agent', { type: packetTypeName(packet.type) });
    }
  }

  /** A message on the stream did not decode; the stream itself is still usable. */
  handleUndecodable(err: ProtocolError): void {
    this.tsMetrics.undecodablePackets.labels(err.code).inc();
    if (this.logger.enabled(2)) this.logger.v(2, 'dropping undecodable packet from proxy-server', { code: err.code, error: err.message });
  }

  /** The server pipe drained: let every endpoint read again. */
  handlePipeDrain(): void {
    if (!this.pipeFull || this.closed) return;
    this.pipeFull = false;
    for (const conn of this.connections.values()) conn.resumeReading();
  }

  /** The stream is gone: abandon dials and drop every endpoint connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const dial of this.pendingDials.values()) dial.abort();
    this.pendingDials.clear();
    for (const timer of this.overBound.values()) clearInterval(timer);
    this.overBound.clear();
    for (const conn of this.connections.values()) conn.destroy();
    this.metrics.openEndpointConnections.dec(this.connections.size);
    this.connections.clear();
  }

  private handleDialRequest(request: DialRequest): void {
    const { random, address, protocol } = request;
    // Upstream takes the next ID before dialing, so failed dials use IDs up too.
    const connectID = ++this.lastConnectID;
    if (protocol !== 'tcp') {
      this.dialFailed(random, address, unsupportedProtocolDialError(protocol));
      return;
    }
    const abort = new AbortController();
    this.pendingDials.set(random, abort);
    const started = performance.now();
    if (this.logger.enabled(3)) this.logger.v(3, 'dialing endpoint', { address, random, connectID });
    this.dial(address, abort.signal).then(
      (socket) => this.dialSucceeded(random, connectID, address, socket, abort, started),
      (err: unknown) => {
        if (this.pendingDials.get(random) === abort) this.pendingDials.delete(random);
        if (this.closed || abort.signal.aborted) return;
        this.dialFailed(random, address, err instanceof EndpointDialError ? err : new EndpointDialError(String(err), 'unknown'));
      },
    );
  }

  private dialSucceeded(random: bigint, connectID: bigint, address: string, socket: Socket, abort: AbortController, started: number): void {
    if (this.pendingDials.get(random) === abort) this.pendingDials.delete(random);
    if (this.closed || abort.signal.aborted) {
      socket.destroy();
      return;
    }
    this.recordDialSeconds((performance.now() - started) / 1000);
    const conn = new EndpointConnection(connectID, address, socket, this.connectionHooks);
    if (this.flowControl) conn.credit = new ConnectionCredit(this.flowControl.serverWindow, this.flowControl.ourWindow);
    this.connections.set(connectID, conn);
    this.metrics.openEndpointConnections.inc();
    if (this.logger.enabled(3)) this.logger.v(3, 'endpoint connected', { address, random, connectID });
    this.send(packets.dialResponse(random, connectID));
    if (this.closed) return; // the send found the stream gone
    conn.start(this.pipeFull);
  }

  private dialFailed(random: bigint, address: string, err: EndpointDialError): void {
    this.metrics.endpointDialFailures.labels(err.reason).inc();
    if (this.logger.enabled(2)) this.logger.v(2, 'endpoint dial failed', { address, random, error: err.message });
    this.send(packets.dialResponse(random, 0n, err.message));
  }

  private handleCloseRequest(connectID: bigint): void {
    const conn = this.connections.get(connectID);
    if (conn === undefined) {
      this.send(packets.closeResponse(connectID, UNKNOWN_CONNECT_ID));
      return;
    }
    this.forget(conn);
    // Everything read from the endpoint was sent as it arrived, so the
    // CLOSE_RSP follows the last DATA. Bytes still queued for the
    // destination are flushed before the socket closes.
    this.send(packets.closeResponse(connectID));
    conn.closeGracefully(this.lingerMs, this.onLingerExpired);
    if (this.logger.enabled(3)) this.logger.v(3, 'endpoint connection closed on request', { connectID });
  }

  private closeStalled(conn: EndpointConnection, reason: StallCloseReason, limit: number): void {
    const buffered = conn.bufferedBytes;
    this.forget(conn);
    conn.destroy();
    this.tsMetrics.connectionStallCloses.labels(reason).inc();
    const why =
      reason === 'endpoint_not_reading'
        ? `${buffered} bytes queued, more than ${limit}, and none taken for ${this.stallTimeoutMs} ms`
        : `${buffered} bytes queued, per-connection limit ${limit} bytes`;
    const error = `konnectivity-agent closed connection ${conn.connectID} to ${conn.address}: the destination stopped reading (${why})`;
    this.logger.warn('closing stalled endpoint connection', { connectID: conn.connectID, address: conn.address, reason, buffered, limit });
    this.send(packets.closeResponse(conn.connectID, error));
  }

  private forget(conn: EndpointConnection): void {
    this.releaseStreamFor(conn);
    if (this.connections.delete(conn.connectID)) this.metrics.openEndpointConnections.dec();
  }

  /**
   * A destination has more than its bound queued. Without per-connection flow
   * control the server keeps sending, so memory is bounded either by stopping
   * the shared stream (upstream's way: every connection on it waits) or by
   * closing this connection. The default policy never stops the stream but
   * gives a destination that is only slow, or briefly busy, room up to twice
   * the bound while it keeps taking bytes (docs/design/flow-control.md).
   */
  private endpointOverBound(conn: EndpointConnection, buffered: number): void {
    // A server with credit cannot get here unless it ignores its window.
    if (conn.credit || this.stallTimeoutMs === 0) return this.closeStalled(conn, 'endpoint_buffer_full', this.maxBuffered);
    if (!this.pausesStream && buffered > stallLimit(this.maxBuffered)) return this.closeStalled(conn, 'endpoint_buffer_full', stallLimit(this.maxBuffered));
    this.watchOverBound(conn);
  }

  /** Closes the connection if its destination takes no byte for a whole stall timeout; pauses the stream under 'pause'. */
  private watchOverBound(conn: EndpointConnection): void {
    if (this.overBound.has(conn)) return;
    const timer = watchProgress(
      () => conn.takenBytes,
      this.stallTimeoutMs,
      () => this.connections.get(conn.connectID) === conn && this.closeStalled(conn, 'endpoint_not_reading', this.maxBuffered),
    );
    this.overBound.set(conn, timer);
    if (!this.pausesStream) return;
    this.tsMetrics.streamPausesForEndpoint.inc();
    if (this.overBound.size === 1) this.pipe.pauseReceive?.();
  }

  private releaseStreamFor(conn: EndpointConnection): void {
    const timer = this.overBound.get(conn);
    if (timer === undefined) return;
    clearInterval(timer);
    this.overBound.delete(conn);
    if (this.pausesStream && this.overBound.size === 0 && !this.closed) this.pipe.resumeReceive?.();
  }

  private readonly onLingerExpired = (): void => {
    this.tsMetrics.endpointCloseLingerExpired.inc();
  };

  private readonly connectionHooks = {
    data: (conn: EndpointConnection, chunk: Buffer): void => {
      if (this.closed) return;
      this.countSent(PacketType.DATA);
      // Out of credit: only this destination waits (flow-control extension).
      if (conn.credit?.consume(chunk.length)) conn.pauseReading(PauseReason.NO_CREDIT);
      if (this.pipe.send(packets.data(conn.connectID, chunk))) return;
      if (this.pipe.isClosed) {
        this.failSend(packets.data(conn.connectID, chunk));
        return;
      }
      if (!this.pipeFull) {
        this.pipeFull = true;
        for (const c of this.connections.values()) c.pauseReading();
      }
    },
    drained: (conn: EndpointConnection): void => {
      this.releaseStreamFor(conn);
      this.returnCredit(conn, true);
    },
    ended: (conn: EndpointConnection, err: Error | null): void => {
      if (this.closed) return;
      this.forget(conn);
      // No half-close in this protocol: EOF or an error ends the whole
      // connection with an unsolicited CLOSE_RSP, as upstream does.
      this.send(packets.closeResponse(conn.connectID));
      conn.closeGracefully(this.lingerMs, this.onLingerExpired);
      if (this.logger.enabled(3)) this.logger.v(3, 'endpoint connection ended', { connectID: conn.connectID, error: err?.message ?? null });
    },
  };

  /** Returns credit to the server once the destination is keeping up. */
  private returnCredit(conn: EndpointConnection, drained: boolean): void {
    if (!conn.credit || this.closed) return;
    const n = conn.credit.takeCreditToReturn(conn.bufferedBytes, drained);
    if (n > 0) this.send(packets.flowCredit(conn.connectID, BigInt(n)));
  }

  /** Sends a control packet; a closed pipe means the server connection is gone. */
  private send(packet: Packet): boolean {
    if (this.closed) return false;
    this.countSent(packet.type);
    if (this.pipe.send(packet)) return true;
    if (this.pipe.isClosed) {
      this.failSend(packet);
      return false;
    }
    // Full, but the packet is queued; control packets are small and rare, so
    // only endpoint reads are throttled by this.
    if (!this.pipeFull) {
      this.pipeFull = true;
      for (const c of this.connections.values()) c.pauseReading();
    }
    return false;
  }

  private failSend(packet: Packet): void {
    if (this.sendFailed) return;
    this.sendFailed = true;
    this.onSendFailure(packet);
  }
}
