/** `/ProxyService/Proxy`: one gRPC stream per frontend, relayed through the router. */
import type { GrpcHandler } from '../grpc/grpc-server.ts';
import { GrpcCode } from '../grpc/status.ts';
import { packets, type Packet } from '../protocol/packet.ts';
import type { Logger } from '../observability/logger.ts';
import type { ServerMetrics } from '../observability/server-metrics.ts';
import type { FrontendPeer, ProxyRouter } from './proxy-router.ts';

export function createProxyServiceHandler(router: ProxyRouter, metrics: ServerMetrics, logger: Logger): GrpcHandler {
  return (call) => {
    metrics.grpcConnections.inc({ service_method: 'Proxy' });
    if (logger.enabled(4)) logger.v(4, 'frontend stream opened', { userAgent: call.single('user-agent') ?? '' });
    const stream = call.stream;
    // grpc-go sends initial metadata lazily; sending it now is equivalent for clients.
    call.sendHeaders();
    const writeLatency = metrics.frontendWriteDuration;
    const send = (p: Packet): void => {
      // Upstream observes frontend_write_duration_seconds around every send to the frontend.
      const start = performance.now();
      router.countToClient(p.type);
      stream.send(p);
      writeLatency.observe((performance.now() - start) / 1000);
    };
    const peer: FrontendPeer = {
      dialResponse: (random, connectID, error) => send(packets.dialResponse(random, connectID, error)),
      data: (connectID, data) => send(packets.data(connectID, data)),
      closeResponse: (connectID, error) => send(packets.closeResponse(connectID, error)),
      dialClosed: (random) => send(packets.closeDial(random)),
      get bufferedBytes() {
        return stream.bufferedBytes;
      },
      pauseReading: () => stream.pauseReceive(),
      resumeReading: () => stream.resumeReceive(),
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
      session.end();
      metrics.grpcConnections.dec({ service_method: 'Proxy' });
    };
  };
}
