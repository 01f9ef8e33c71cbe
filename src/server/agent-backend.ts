/**
 * `/AgentService/Connect`: validates the agent's metadata, optionally
 * authenticates it, answers with serverid/servercount headers, then
 * registers the stream with the router. Nothing the agent sends is relayed
 * before that point: the stream is paused until authentication finishes.
 */
import type { GrpcHandler, GrpcServerCall } from '../grpc/grpc-server.ts';
import { GrpcCode } from '../grpc/status.ts';
import type { Logger } from '../observability/logger.ts';
import type { ServerMetrics } from '../observability/server-metrics.ts';
import { parseAgentIdentifiers } from './agent-identifiers.ts';
import { Backend, type NegotiatedFlowControl, type ProxyRouter } from './proxy-router.ts';
import { DEFAULT_SERVER_FLOW_WINDOW_BYTES, FLOW_CONTROL_HEADER, formatFlowControlHeader, parseFlowControlHeader } from '../protocol/flow-control.ts';
import { packets } from '../protocol/packet.ts';
import { acceptsServerDrainNotice, SERVER_DRAIN_NOTICE_HEADER, SERVER_DRAIN_NOTICE_VERSION } from '../protocol/server-drain-notice.ts';
import type { DrainNoticeSet } from './server-drain-notice.ts';
import { pendingAgentAuthenticationsError } from './limits.ts';

/** At most one log line per interval about refused agent streams: a flood must not flood the log too. */
const REFUSAL_LOG_INTERVAL_MS = 1_000;

export interface AgentAuthenticator {
  /** Resolves when the agent may connect; rejects with a message for the agent otherwise. */
  authenticate(call: GrpcServerCall): Promise<void>;
}

export interface AgentBackendOptions {
  serverId: string;
  serverCount: number;
  authenticator?: AgentAuthenticator;
  /** Lets the server refuse new agents while shutting down. */
  accepting?: () => boolean;
  /** Per-connection window offered to agents that negotiate flow control; 0 disables the extension. */
  flowWindowBytes?: number;
  /** Agent streams to tell when this server starts a graceful shutdown (the drain-notice extension); absent = never offered. */
  drainNotices?: DrainNoticeSet;
}

/** Repeated keys count separately, as upstream's `len(md.Get(key))`. */
function metadataValues(call: GrpcServerCall, key: string): string[] {
  return call.values(key);
}

export function createAgentServiceHandler(router: ProxyRouter, metrics: ServerMetrics, logger: Logger, options: AgentBackendOptions): GrpcHandler {
  // Streams whose authentication is in progress (a TokenReview each). The
  // slot is held until the review decides, even if the stream went away
  // meanwhile: the apiserver request is what the bound protects.
  let authenticating = 0;
  const maxAuthenticating = router.limits.maxPendingAgentAuthentications;
  let refusalsNotLogged = 0;
  let lastRefusalLog = -Infinity;
  const refuseAuthentication = (call: GrpcServerCall, agentId: string): void => {
    router.limitMetrics.rejected('pending_agent_authentications');
    call.finish(GrpcCode.RESOURCE_EXHAUSTED, pendingAgentAuthenticationsError(maxAuthenticating));
    const now = performance.now();
    if (now - lastRefusalLog < REFUSAL_LOG_INTERVAL_MS) {
      refusalsNotLogged++;
      return;
    }
    lastRefusalLog = now;
    logger.warn('agent stream refused: too many agent connections awaiting authentication', {
      agentID: agentId,
      limit: maxAuthenticating,
      remoteAddress: call.socket.remoteAddress,
      refusedSinceLastLine: refusalsNotLogged,
    });
    refusalsNotLogged = 0;
  };
  return (call) => {
    const stream = call.stream;
    stream.pauseReceive();
    const agentIds = metadataValues(call, 'agentid');
    if (agentIds.length !== 1) {
      call.finish(GrpcCode.UNKNOWN, `expected one agent ID in the context, got [${agentIds.join(' ')}]`);
      return;
    }
    const idents = metadataValues(call, 'agentidentifiers');
    if (idents.length > 1) {
      call.finish(GrpcCode.UNKNOWN, `expected at most one set of agent identifiers in the context, got [${idents.join(' ')}]`);
      return;
    }
    if (options.accepting && !options.accepting()) {
      call.finish(GrpcCode.UNAVAILABLE, 'server is shutting down');
      return;
    }
    const agentId = agentIds[0]!;
    const start = (): void => {
      if (stream.isClosed) return;
      metrics.grpcConnections.inc({ service_method: 'Connect' });
      const ourWindow = options.flowWindowBytes ?? DEFAULT_SERVER_FLOW_WINDOW_BYTES;
      const agentWindow = ourWindow > 0 ? parseFlowControlHeader(call.metadata[FLOW_CONTROL_HEADER]) : null;
      const flow: NegotiatedFlowControl | null = agentWindow === null ? null : { agentWindow, ourWindow };
      const headers: Record<string, string> = { serverid: options.serverId, servercount: String(options.serverCount) };
      // Only an agent that advertised the extension hears about it (upstream agents never do).
      if (flow) headers[FLOW_CONTROL_HEADER] = formatFlowControlHeader(ourWindow);
      const drainNotices = options.drainNotices && acceptsServerDrainNotice(call.metadata[SERVER_DRAIN_NOTICE_HEADER]) ? options.drainNotices : null;
      if (drainNotices) headers[SERVER_DRAIN_NOTICE_HEADER] = SERVER_DRAIN_NOTICE_VERSION;
      call.sendHeaders(headers);
      const backend = new Backend(agentId, parseAgentIdentifiers(idents[0] ?? ''), { send: (p) => stream.send(p), pauseReceive: () => stream.pauseReceive(), resumeReceive: () => stream.resumeReceive() }, flow);
      router.addBackend(backend);
      drainNotices?.add(backend, () => {
        if (!stream.isClosed) stream.send(packets.drain());
      });
      stream.onPacket = (p) => router.handleBackendPacket(backend, p);
      stream.onDrain = () => router.backendDrained(backend);
      stream.onProtocolError = (err) => {
        // grpc-go: an oversized message is ResourceExhausted, bytes that do not parse are Internal.
        const tooLarge = err.code === 'message_too_large';
        metrics.streamErrors.inc({ segment: 'from_agent', code: tooLarge ? 'ResourceExhausted' : 'Internal', packet_type: 'Unknown' });
        if (tooLarge) router.limitMetrics.rejected('grpc_message_size');
        if (err.code === 'unknown_packet_type') {
          logger.v(2, 'ignoring packet of unknown type from agent', { agentID: agentId, error: err.message });
          return;
        }
        logger.warn('malformed packet from agent; ending its stream', { agentID: agentId, error: err.message });
        router.removeBackend(backend);
        if (tooLarge) call.finish(GrpcCode.RESOURCE_EXHAUSTED, err.message);
        else call.finish(GrpcCode.INTERNAL, `grpc: error unmarshalling request: ${err.message}`);
      };
      stream.onRemoteEnd = () => {
        router.removeBackend(backend);
        call.finish(GrpcCode.OK);
      };
      stream.onClose = () => {
        drainNotices?.delete(backend);
        router.removeBackend(backend);
        metrics.grpcConnections.dec({ service_method: 'Connect' });
      };
      stream.resumeReceive();
    };
    if (!options.authenticator) {
      start();
      return;
    }
    if (maxAuthenticating > 0 && authenticating >= maxAuthenticating) {
      refuseAuthentication(call, agentId);
      return;
    }
    authenticating++;
    options.authenticator.authenticate(call).then(
      () => {
        authenticating--;
        start();
      },
      (err: unknown) => {
        authenticating--;
        const message = err instanceof Error ? err.message : String(err);
        logger.warn('agent authentication failed', { agentID: agentId, error: message });
        call.finish(GrpcCode.UNAUTHENTICATED, message);
      },
    );
  };
}
