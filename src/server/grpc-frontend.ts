/** `/ProxyService/Proxy`: one gRPC stream per frontend, relayed through the router. */
import http2 from 'node:http2';
import type { GrpcHandler, GrpcServerCall, ServerStream } from '../grpc/grpc-server.ts';
import type { PacketStream } from '../grpc/packet-stream.ts';
import { GrpcCode } from '../grpc/status.ts';
import { PacketType, packets, type Data, type Packet } from '../protocol/packet.ts';
import type { Logger } from '../observability/logger.ts';
import type { ServerMetrics } from '../observability/server-metrics.ts';
import { bindHistogramRecorder, type HistogramRecorder } from '../observability/histogram-recorder.ts';
import type { FrontendPeer, FrontendSession, ProxyRouter } from './proxy-router.ts';

/** What every Proxy stream of one server shares. */
interface ProxyServiceContext {
  router: ProxyRouter;
  metrics: ServerMetrics;
  logger: Logger;
  recordWriteSeconds: HistogramRecorder;
}

/**
 * One Proxy stream as the router sees it. A class rather than an object of
 * closures: a server holds one per tunnelled connection, tens of thousands
 * at once, and an object literal with a getter and a dozen closures cost
 * about 1.5 KB of heap each where this costs about 100 bytes.
 */
class GrpcFrontendPeer implements FrontendPeer {
  private readonly context: ProxyServiceContext;
  private readonly call: GrpcServerCall;
  private readonly stream: PacketStream<ServerStream>;
  private lingerTimer: NodeJS.Timeout | null = null;

  constructor(context: ProxyServiceContext, call: GrpcServerCall) {
    this.context = context;
    this.call = call;
    this.stream = call.stream;
  }

  dialResponse(random: bigint, connectID: bigint, error: string): void {
    this.send(packets.dialResponse(random, connectID, error));
  }

  /** The agent's payload for this connection ID, passed on as it is (pieces included); an error field is not relayed. */
  data(connectID: bigint, payload: Data): void {
    this.send(payload.error === '' ? { type: PacketType.DATA, data: payload } : packets.data(connectID, payload.data));
  }

  closeResponse(connectID: bigint, error: string): void {
    this.send(packets.closeResponse(connectID, error));
  }

  dialClosed(random: bigint): void {
    this.send(packets.closeDial(random));
  }

  get bufferedBytes(): number {
    return this.stream.bufferedBytes;
  }

  pauseReading(): void {
    this.stream.pauseReceive();
  }

  resumeReading(): void {
    this.stream.resumeReceive();
  }

  /**
   * Closed for stalling: the CLOSE_RSP sits behind what the client never
   * read, and the stream stays open until the client ends it (as upstream).
   * If it still holds bytes after the linger, reset it (RST_STREAM CANCEL)
   * so Node frees them and grpc_connections drops.
   */
  abandon(lingerMs: number): void {
    if (this.lingerTimer || this.stream.isClosed) return;
    this.lingerTimer = setTimeout(() => {
      const stream = this.stream;
      if (stream.isClosed || stream.bufferedBytes === 0) return;
      this.context.logger.v(2, 'resetting frontend stream closed for stalling: its client did not read the rest', { bufferedBytes: stream.bufferedBytes });
      stream.reset(http2.constants.NGHTTP2_CANCEL);
    }, lingerMs);
    this.lingerTimer.unref();
  }

  /** The stream is gone: nothing is left to reset. */
  closed(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
  }

  private send(p: Packet): void {
    // Upstream observes frontend_write_duration_seconds around every send to the frontend.
    const start = performance.now();
    // Initial metadata goes out with the first packet, as grpc-go sends it:
    // one write and one wake-up of the client instead of two per dial.
    this.call.sendHeaders();
    this.context.router.countToClient(p.type);
    this.stream.send(p);
    this.context.recordWriteSeconds((performance.now() - start) / 1000);
  }
}

/** Connects a Proxy stream's events to its router session. */
function attachProxyStream(context: ProxyServiceContext, call: GrpcServerCall, peer: GrpcFrontendPeer, session: FrontendSession): void {
  const { router, metrics, logger } = context;
  const stream = call.stream;
  stream.onPacket = (p) => session.handlePacket(p);
  stream.onDrain = () => session.writable();
  stream.onProtocolError = (err) => {
    // grpc-go: an oversized message is ResourceExhausted, bytes that do not parse are Internal.
    const tooLarge = err.code === 'message_too_large';
    metrics.streamErrors.inc({ segment: 'from_client', code: tooLarge ? 'ResourceExhausted' : 'Internal', packet_type: 'Unknown' });
    if (tooLarge) router.limitMetrics.rejected('grpc_message_size');
    if (err.code === 'unknown_packet_type') {
      logger.v(2, 'ignoring packet of unknown type from frontend', { error: err.message });
      return;
    }
    logger.warn('malformed packet from frontend; ending its stream', { error: err.message });
    session.end();
    if (tooLarge) call.finish(GrpcCode.RESOURCE_EXHAUSTED, err.message);
    else call.finish(GrpcCode.INTERNAL, `grpc: error unmarshalling request: ${err.message}`);
  };
  stream.onRemoteEnd = () => {
    session.end();
    call.finish(GrpcCode.OK);
  };
  stream.onClose = () => {
    peer.closed();
    session.end();
    metrics.grpcConnections.dec({ service_method: 'Proxy' });
  };
}

export function createProxyServiceHandler(router: ProxyRouter, metrics: ServerMetrics, logger: Logger): GrpcHandler {
  const context: ProxyServiceContext = { router, metrics, logger, recordWriteSeconds: bindHistogramRecorder(metrics.frontendWriteDuration) };
  return (call) => {
    metrics.grpcConnections.inc({ service_method: 'Proxy' });
    if (logger.enabled(4)) logger.v(4, 'frontend stream opened', { userAgent: call.single('user-agent') ?? '' });
    // The request's headers are not read again; a server holding thousands
    // of streams should not keep them.
    call.releaseMetadata();
    const peer = new GrpcFrontendPeer(context, call);
    attachProxyStream(context, call, peer, router.openFrontend(peer));
  };
}
