/**
 * Agent metrics that only konnectivity-ts has. They use a `_ts_` infix so
 * they can never collide with a name upstream adds later, and they live on
 * the same registry as the upstream-named ones.
 */
import { Counter, type Registry } from 'prom-client';

const NS = 'konnectivity_network_proxy_agent_ts_';

/**
 * Why an endpoint connection was closed because its destination stopped
 * reading: it took no byte for --endpoint-stall-timeout while over its bound,
 * or what was queued for it passed the limit (twice --endpoint-buffer-bytes,
 * or the bound itself with a stall timeout of 0).
 */
export type StallCloseReason = 'endpoint_not_reading' | 'endpoint_buffer_full';

export function createAgentTsMetrics(registry: Registry) {
  const registers = [registry];
  return {
    connectionStallCloses: new Counter({
      name: NS + 'connection_stall_closes_total',
      help: 'Endpoint connections closed because their destination stopped reading while a proxy-server without per-connection flow control (an upstream server) kept sending, by reason: endpoint_not_reading (no progress for --endpoint-stall-timeout) or endpoint_buffer_full (twice --endpoint-buffer-bytes queued).',
      labelNames: ['reason'] as const,
      registers,
    }),
    streamPausesForEndpoint: new Counter({
      name: NS + 'stream_pauses_for_endpoint_total',
      help: 'Times a proxy-server stream without flow control (an upstream server) was paused because one destination had more than --endpoint-buffer-bytes queued (only with --endpoint-stall-policy=pause); it resumes when that destination drains.',
      registers,
    }),
    undecodablePackets: new Counter({
      name: NS + 'undecodable_packets_total',
      help: 'Messages from a proxy-server that could not be decoded as a Packet, by protocol error code.',
      labelNames: ['code'] as const,
      registers,
    }),
    endpointCloseLingerExpired: new Counter({
      name: NS + 'endpoint_close_linger_expired_total',
      help: 'Endpoint connections destroyed because queued bytes could not be flushed to the destination within the close linger time.',
      registers,
    }),
  };
}

export type AgentTsMetrics = ReturnType<typeof createAgentTsMetrics>;
