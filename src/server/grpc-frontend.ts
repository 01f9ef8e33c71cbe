/** `/ProxyService/Proxy`: one gRPC stream per frontend, relayed through the router. */
import http2 from 'node:http2';
import type { GrpcHandler } from '../grpc/grpc-server.ts';
import { GrpcCode } from '../grpc/status.ts';
import { PacketType, packets, type Packet } from '../protocol/packet.ts';
import type { Logger } from '../observability/logger.ts';
import type { ServerMetrics } from '../observability/server-metrics.ts';
import { bindHistogramRecorder } from '../observability/histogram-recorder.ts';
import type { FrontendPeer, ProxyRouter } from './proxy-router.ts';

export function createProxyServiceHandler(router: ProxyRouter, metrics: ServerMetrics, logger: Logger): GrpcHandler {
  const recordWriteSeconds = bindHistogramRecorder(metrics.frontendWriteDuration);
  return (call) => {
    metrics.grpcConnections.inc({ service_method: 'Proxy' });
    if (logger.enabled(4)) logger.v(4, 'frontend stream opened', { userAgent: call.single('user-agent') ?? '' });
    const stream = call.stream;
    const send = (p: Packet): void => {
      // Upstream observes frontend_write_duration_seconds around every send to the frontend.
      const start = performance.now();
      // Initial metadata goes out with the first packet, as grpc-go sends it:
      // one write and one wake-up of the client instead of two per dial.
      call.sendHeaders();
      router.countToClient(p.type);
      stream.send(p);
      recordWriteSeconds((performance.now() - start) / 1000);
    };
    let lingerTimer: NodeJS.Timeout | null = null;
    const peer: FrontendPeer = {
      dialResponse: (random, connectID, error) => send(packets.dialResponse(random, connectID, error)),
      // The agent's payload for this connection ID, passed on as it is (pieces included); an error field is not relayed.
      data: (connectID, payload) => send(payload.error === '' ? { type: PacketType.DATA, data: payload } : packets.data(connectID, payload.data)),
      closeResponse: (connectID, error) => send(packets.closeResponse(connectID, error)),
      dialClosed: (random) => send(packets.closeDial(random)),
      get bufferedBytes() {
        return stream.bufferedBytes;
      },
      pauseReading: () => stream.pauseReceive(),
      resumeReading: () => stream.resumeReceive(),
      // Closed for stalling: the CLOSE_RSP sits behind what the client never
      // read, and the stream stays open until the client ends it (as
      // upstream). If it still holds bytes after the linger, reset it
      // (RST_STREAM CANCEL) so Node frees them and grpc_connections drops.
      abandon: (lingerMs) => {
        if (lingerTimer || stream.isClosed) return;
        lingerTimer = setTimeout(() => {
          if (stream.isClosed || stream.bufferedBytes === 0) return;
          logger.v(2, 'resetting frontend stream closed for stalling: its client did not read the rest', { bufferedBytes: stream.bufferedBytes });
          stream.reset(http2.constants.NGHTTP2_CANCEL);
        }, lingerMs);
        lingerTimer.unref();
      },
    };
    const session = router.openFrontend(peer);
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
      if (lingerTimer) clearTimeout(lingerTimer);
      session.end();
      metrics.grpcConnections.dec({ service_method: 'Proxy' });
    };
  };
}
