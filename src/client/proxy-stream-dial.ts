/**
 * The dial handshake on a fresh `/ProxyService/Proxy` stream (§4.2, §4.6):
 * DIAL_REQ out, then exactly one of DIAL_RSP (success or agent error),
 * DIAL_CLS from the server, the stream ending, or our deadline. Giving up on
 * a pending dial tells the server with DIAL_CLS before ending the stream, so
 * it drops the pending entry instead of waiting for the agent.
 */
import { GrpcCode } from '../grpc/status.ts';
import type { ClientMetrics } from '../observability/client-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { PacketType, packets, type Packet } from '../protocol/packet.ts';
import { countReceived, countStreamError, type ConnectionStatusGauge } from './client-instrumentation.ts';
import type { DialDeadline } from './dial-deadline.ts';
import { KonnectivityDialError } from './dial-error.ts';
import { ProxyStreamSocket } from './proxy-stream-socket.ts';
import { endProxyStream, sendPacket, type ProxyCall } from './proxy-stream.ts';

export interface ProxyStreamDialRequest {
  call: ProxyCall;
  address: string;
  dialID: bigint;
  deadline: DialDeadline;
  logger: Logger;
  metrics: ClientMetrics;
  status: ConnectionStatusGauge;
}

export function dialOverProxyStream(req: ProxyStreamDialRequest): Promise<ProxyStreamSocket> {
  const { call, address, dialID, deadline, logger, metrics, status } = req;
  const stream = call.stream;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: KonnectivityDialError): void => {
      if (settled) return;
      settled = true;
      deadline.signal.removeEventListener('abort', onDeadline);
      endProxyStream(call);
      reject(err);
    };
    const onDeadline = (): void => {
      if (settled) return;
      sendPacket(call, metrics, packets.closeDial(dialID));
      fail(deadline.failure(address));
    };
    const onPacket = (packet: Packet): void => {
      if (settled) return;
      countReceived(metrics, packet);
      if (packet.type === PacketType.DIAL_RSP) {
        const rsp = packet.dialResponse;
        if (rsp.random !== dialID) {
          logger.v(2, 'DIAL_RSP for another dial ignored', { dialID, random: rsp.random });
          return;
        }
        if (rsp.error !== '') {
          // The agent's (or server's) own words, e.g. "dial tcp 10.0.0.5:10250: connect: connection refused".
          fail(new KonnectivityDialError('endpoint', rsp.error, { address }));
          return;
        }
        settled = true;
        deadline.signal.removeEventListener('abort', onDeadline);
        status.set('ok');
        logger.v(3, 'dial succeeded', { address, dialID, connectID: rsp.connectID });
        // The socket takes the stream over synchronously, so packets that follow
        // DIAL_RSP in the same read already reach it.
        resolve(new ProxyStreamSocket({ call, dialID, connectID: rsp.connectID, address, logger, metrics, status }));
        return;
      }
      if (packet.type === PacketType.DIAL_CLS) {
        fail(new KonnectivityDialError('dialclosed', 'dial closed', { address }));
        return;
      }
      logger.v(2, 'unexpected packet while dialing ignored', { type: packet.type, dialID });
    };
    stream.onPacket = onPacket;
    stream.onProtocolError = (err) => {
      if (err.code === 'unknown_packet_type') return;
      countStreamError(metrics, 'to_client', GrpcCode.INTERNAL, null);
      call.cancel();
      fail(new KonnectivityDialError('tunnelclosed', `malformed packet from proxy server: ${err.message}`, { address, cause: err }));
    };
    // The server finished the call before answering; end our side so the status arrives.
    stream.onRemoteEnd = () => endProxyStream(call);
    void call.status.then((st) => {
      if (settled) return;
      if (st.code !== GrpcCode.OK) countStreamError(metrics, 'to_client', st.code, null);
      fail(new KonnectivityDialError('tunnelclosed', `tunnel closed: ${st.message || `gRPC status ${st.code}`}`, { address }));
    });
    if (deadline.fired) {
      fail(deadline.failure(address)); // nothing was asked of the server yet
      return;
    }
    deadline.signal.addEventListener('abort', onDeadline, { once: true });
    sendPacket(call, metrics, packets.dialRequest(address, dialID));
    status.set('dialing');
  });
}
