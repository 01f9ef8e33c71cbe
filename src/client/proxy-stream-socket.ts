/**
 * One established tunnelled connection in gRPC mode: a net.Socket-compatible
 * Duplex over the `/ProxyService/Proxy` stream that carried its dial.
 *
 * Differences from upstream's conn, on purpose:
 * - Writes larger than 1 MiB are split into several DATA packets. Upstream
 *   sends one DATA per Write, so a single Write near 4 MiB exceeds grpc-go's
 *   receive limit and kills the stream on a Go server.
 * - Flow control replaces upstream's 10 s slow-reader kill switch. When the
 *   consumer stops reading, the HTTP/2 stream is paused, so the server (and
 *   through it the agent) is pushed back on this stream only; other dials on
 *   the same connection keep flowing. Upstream instead kills the whole tunnel
 *   after 10 s of a full read queue.
 *
 * Same as upstream: the protocol has no half-close. `end()` sends CLOSE_REQ;
 * bytes already in flight are still delivered until the server's CLOSE_RSP,
 * which ends the readable side. A remote CLOSE_RSP ends the readable side and
 * (allowHalfOpen is false, like net.Socket) then the writable side.
 */
import { Duplex } from 'node:stream';
import type { GrpcStatus } from '../grpc/grpc-client.ts';
import { GrpcCode } from '../grpc/status.ts';
import type { ClientMetrics } from '../observability/client-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { PacketType, packets, writePayload, type Packet } from '../protocol/packet.ts';
import type { ProtocolError } from '../protocol/protocol-error.ts';
import { countReceived, countStreamError, type ConnectionStatusGauge } from './client-instrumentation.ts';
import { KonnectivityDialError } from './dial-error.ts';
import { endProxyStream, sendPacket, type ProxyCall } from './proxy-stream.ts';
import { CLOSE_TIMEOUT_MS, type SocketLike } from './tunnel-options.ts';

/** Largest DATA payload we send; far below the 4 MiB gRPC message limit of Go peers. */
export const MAX_DATA_PAYLOAD_BYTES = 1024 * 1024;

export interface ProxyStreamSocketInit {
  call: ProxyCall;
  dialID: bigint;
  connectID: bigint;
  address: string;
  logger: Logger;
  metrics: ClientMetrics;
  status: ConnectionStatusGauge;
}

type Phase = 'open' | 'closing' | 'closed';

export class ProxyStreamSocket extends Duplex implements SocketLike {
  /** The `random` this connection was dialed with. */
  readonly dialID: bigint;
  /** The agent-assigned connection ID from DIAL_RSP. */
  readonly connectID: bigint;
  /** Dial target (`host:port`). */
  readonly dialAddress: string;
  // Like upstream's conn (nil LocalAddr/RemoteAddr): the real endpoints are on the agent's side.
  readonly remoteAddress: string | undefined = undefined;
  readonly remotePort: number | undefined = undefined;
  readonly remoteFamily: string | undefined = undefined;
  readonly localAddress: string | undefined = undefined;
  readonly localPort: number | undefined = undefined;
  readonly connecting = false;
  readonly pending = false;
  bytesRead = 0;
  bytesWritten = 0;
  /** Idle timeout set with `setTimeout`, in ms (undefined when none). */
  timeout: number | undefined = undefined;

  private readonly call: ProxyCall;
  private readonly logger: Logger;
  private readonly metrics: ClientMetrics;
  private readonly status: ConnectionStatusGauge;
  private phase: Phase = 'open';
  private eofPushed = false;
  private closeTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private drainWaiter: ((err?: Error | null) => void) | null = null;

  constructor(init: ProxyStreamSocketInit) {
    super({ allowHalfOpen: false });
    this.call = init.call;
    this.dialID = init.dialID;
    this.connectID = init.connectID;
    this.dialAddress = init.address;
    this.logger = init.logger;
    this.metrics = init.metrics;
    this.status = init.status;
    const stream = init.call.stream;
    stream.onPacket = (p) => this.onPacket(p);
    stream.onDrain = () => this.releaseDrainWaiter(null);
    stream.onProtocolError = (err) => this.onProtocolError(err);
    // The server finished the call (trailers). Node only reports the stream
    // closed once our side ends too, so end it; the status then decides EOF or error.
    stream.onRemoteEnd = () => endProxyStream(this.call);
    void init.call.status.then((st) => this.onStreamClosed(st));
  }

  // --- socket compatibility -------------------------------------------------

  /** No-op: the TCP connection is the agent's; there is nothing to tune here. */
  setNoDelay(_noDelay?: boolean): this {
    return this;
  }

  /** No-op, see `setNoDelay`. */
  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this;
  }

  /** Idle timeout with net.Socket semantics: emits 'timeout' after `ms` without reads or writes; 0 disables. */
  setTimeout(ms: number, callback?: () => void): this {
    if (callback) {
      if (ms === 0) this.off('timeout', callback);
      else this.once('timeout', callback);
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.timeout = ms > 0 ? ms : undefined;
    if (ms > 0 && !this.destroyed) {
      this.idleTimer = setTimeout(() => this.emit('timeout'), ms);
      this.idleTimer.unref();
    }
    return this;
  }

  /** No-op: the shared HTTP/2 connection decides whether the process stays alive. */
  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  /** Like net.Socket.address() on an unbound socket: the local endpoint is the agent's. */
  address(): Record<string, never> {
    return {};
  }

  get readyState(): 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.readable && this.writable) return 'open';
    if (this.readable) return 'readOnly';
    if (this.writable) return 'writeOnly';
    return 'closed';
  }

  // --- Duplex ---------------------------------------------------------------

  override _read(): void {
    if (!this.eofPushed) this.call.stream.resumeReceive();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.sendData([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer; encoding: BufferEncoding }>, callback: (err?: Error | null) => void): void {
    this.sendData(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.phase === 'open') this.requestClose();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    clearTimeout(this.idleTimer);
    if (this.phase === 'open') this.requestClose();
    // Keep the stream flowing (and its data discarded) while CLOSE_RSP is awaited.
    this.call.stream.resumeReceive();
    this.releaseDrainWaiter(null);
    callback(err);
  }

  // --- protocol -------------------------------------------------------------

  private sendData(chunks: readonly Buffer[], callback: (err?: Error | null) => void): void {
    if (this.phase !== 'open') {
      callback(this.closedError());
      return;
    }
    let flowing = true;
    for (const payload of dataPayloads(chunks)) {
      flowing = sendPacket(this.call, this.metrics, packets.data(this.connectID, payload));
      this.bytesWritten += payload.length;
    }
    this.touch();
    if (this.call.stream.isClosed) callback(this.closedError());
    else if (flowing) callback();
    else this.drainWaiter = callback;
  }

  private onPacket(packet: Packet): void {
    countReceived(this.metrics, packet);
    switch (packet.type) {
      case PacketType.DATA: {
        const id = packet.data.connectID;
        if (id === this.connectID) writePayload(this.deliverySink, packet.data);
        else if (id === 0n) this.logger.v(2, 'DATA without connection ID ignored', { dialID: this.dialID });
        // Upstream client behaviour: data for a connection we do not know gets closed.
        else sendPacket(this.call, this.metrics, packets.closeRequest(id));
        return;
      }
      case PacketType.CLOSE_RSP:
        if (packet.closeResponse.connectID === this.connectID) this.onRemoteClosed(packet.closeResponse.error);
        else this.logger.v(2, 'CLOSE_RSP for another connection ignored', { connectID: packet.closeResponse.connectID });
        return;
      case PacketType.DIAL_CLS:
        // Upstream stops serving the tunnel on any DIAL_CLS, even after the dial finished.
        this.onRemoteClosed('dial closed');
        return;
      default:
        this.logger.v(2, 'unexpected packet on established connection ignored', { type: packet.type, connectID: this.connectID });
    }
  }

  /** `deliver` as a write sink for `writePayload` (bound once, not per packet). */
  private readonly deliverySink = { write: (chunk: Uint8Array): void => this.deliver(chunk) };

  private deliver(data: Uint8Array): void {
    if (this.destroyed || this.eofPushed) return;
    this.bytesRead += data.length;
    this.touch();
    if (!this.push(data)) this.call.stream.pauseReceive();
  }

  private requestClose(): void {
    this.phase = 'closing';
    this.status.set('closing');
    sendPacket(this.call, this.metrics, packets.closeRequest(this.connectID));
    this.closeTimer = setTimeout(() => {
      this.logger.v(1, 'no CLOSE_RSP within the close timeout; ending the stream', { connectID: this.connectID, address: this.dialAddress });
      this.phase = 'closed';
      this.pushEof();
      this.call.cancel();
    }, CLOSE_TIMEOUT_MS);
    this.closeTimer.unref();
  }

  private onRemoteClosed(error: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearTimeout(this.closeTimer);
    this.status.set('closing');
    if (error) this.logger.v(2, 'connection closed with error', { connectID: this.connectID, error });
    this.pushEof();
    // Only when a writer waits: building an Error (its stack) cost ~5 % of the load generator's CPU in a dial loop.
    if (this.drainWaiter !== null) this.releaseDrainWaiter(this.closedError());
    endProxyStream(this.call);
  }

  private onProtocolError(err: ProtocolError): void {
    // Upstream skips packet types it does not know; anything else means the stream cannot be trusted.
    if (err.code === 'unknown_packet_type') {
      this.logger.v(2, 'unknown packet type ignored', { error: err.message });
      return;
    }
    countStreamError(this.metrics, 'to_client', GrpcCode.INTERNAL, null);
    this.phase = 'closed';
    clearTimeout(this.closeTimer);
    this.call.cancel();
    this.releaseDrainWaiter(err);
    if (!this.destroyed) this.destroy(new KonnectivityDialError('tunnelclosed', `malformed packet from proxy server: ${err.message}`, { address: this.dialAddress, cause: err }));
  }

  private onStreamClosed(status: GrpcStatus): void {
    clearTimeout(this.closeTimer);
    this.status.clear();
    if (this.phase === 'closed') return;
    const wasClosing = this.phase === 'closing';
    this.phase = 'closed';
    // Built only when someone will see it: an Error's stack capture is a measurable share of every dial.
    const err = (): KonnectivityDialError => new KonnectivityDialError('tunnelclosed', `tunnel closed: ${status.message || `gRPC status ${status.code}`}`, { address: this.dialAddress });
    if (this.drainWaiter !== null) this.releaseDrainWaiter(err());
    if (this.destroyed) return;
    if (wasClosing || status.code === GrpcCode.OK) {
      // As upstream: the end of the tunnel reads as EOF.
      this.pushEof();
      return;
    }
    countStreamError(this.metrics, 'to_client', status.code, null);
    // Without CLOSE_RSP the remote end may not have sent everything: report it like a reset.
    this.destroy(err());
  }

  private pushEof(): void {
    if (this.eofPushed || this.destroyed) return;
    this.eofPushed = true;
    this.push(null);
  }

  private releaseDrainWaiter(err: Error | null): void {
    const waiter = this.drainWaiter;
    this.drainWaiter = null;
    waiter?.(err);
  }

  private touch(): void {
    this.idleTimer?.refresh();
  }

  private closedError(): KonnectivityDialError {
    return new KonnectivityDialError('tunnelclosed', 'write after the tunnelled connection closed', { address: this.dialAddress });
  }
}

/**
 * Groups buffered writes into DATA payloads of at most MAX_DATA_PAYLOAD_BYTES:
 * small writes are coalesced (fewer packets), large ones split.
 */
function* dataPayloads(chunks: readonly Buffer[]): Generator<Uint8Array> {
  let group: Buffer[] = [];
  let groupBytes = 0;
  const flush = (): Uint8Array => {
    const payload = group.length === 1 ? group[0]! : Buffer.concat(group, groupBytes);
    group = [];
    groupBytes = 0;
    return payload;
  };
  for (const chunk of chunks) {
    if (chunk.length === 0) continue;
    if (groupBytes + chunk.length > MAX_DATA_PAYLOAD_BYTES && group.length > 0) yield flush();
    if (chunk.length > MAX_DATA_PAYLOAD_BYTES) {
      for (let offset = 0; offset < chunk.length; offset += MAX_DATA_PAYLOAD_BYTES) {
        yield chunk.subarray(offset, offset + MAX_DATA_PAYLOAD_BYTES);
      }
      continue;
    }
    group.push(chunk);
    groupBytes += chunk.length;
  }
  if (group.length > 0) yield flush();
}
