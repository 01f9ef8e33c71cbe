/**
 * Small helpers shared by the dial handshake and the established socket,
 * both of which own one `/ProxyService/Proxy` stream in turn.
 */
import type { ClientStreamLike, GrpcClientCall } from '../grpc/grpc-client.ts';
import { GrpcCode } from '../grpc/status.ts';
import type { ClientMetrics } from '../observability/client-metrics.ts';
import type { Packet } from '../protocol/packet.ts';
import { countSent, countStreamError } from './client-instrumentation.ts';
import { CLOSE_TIMEOUT_MS } from './tunnel-options.ts';

export const PROXY_METHOD = '/ProxyService/Proxy';

/** One `/ProxyService/Proxy` call, on either HTTP/2 client (see GrpcChannel). */
export type ProxyCall = GrpcClientCall<ClientStreamLike>;

/**
 * Sends one packet and counts it. Returns false when the caller should wait
 * for the stream's drain (or when the stream is gone; check `isClosed`).
 */
export function sendPacket(call: ProxyCall, metrics: ClientMetrics, packet: Packet): boolean {
  if (call.stream.isClosed) {
    countStreamError(metrics, 'from_client', GrpcCode.UNAVAILABLE, packet.type);
    return false;
  }
  countSent(metrics, packet);
  return call.stream.send(packet);
}

const ending = new WeakSet<ProxyCall>();

/**
 * Ends our side of the stream (END_STREAM) so the server finishes the call,
 * as upstream servers do when the frontend stops sending. A server that does
 * not finish within the close timeout gets the stream cancelled.
 */
export function endProxyStream(call: ProxyCall, graceMs: number = CLOSE_TIMEOUT_MS): void {
  if (ending.has(call)) return;
  ending.add(call);
  call.closeSend();
  // Nothing read from here on matters, and a paused stream would hold back the trailers.
  call.stream.resumeReceive();
  const timer = setTimeout(() => call.cancel(), graceMs);
  timer.unref();
  void call.status.then(() => clearTimeout(timer));
}
