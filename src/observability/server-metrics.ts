/**
 * konnectivity-server metrics with upstream's exact names, types, labels and
 * buckets (pkg/server/metrics). Each server instance owns a registry so that
 * several servers in one process (tests, the quickstart) do not collide.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from './process-metrics.ts';

const NS = 'konnectivity_network_proxy_server_';
/** konnectivity-ts-only metrics carry a `_ts_` infix, so they can never collide with a future upstream name. */
const TS_NS = NS + 'ts_';
const latencyBuckets = [0.000001, 0.00001, 0.0001, 0.005, 0.025, 0.1, 0.5, 2.5, 12.5];

export type DialFailureReason = 'no_agent' | 'error_response' | 'unrecognized_response' | 'send_rsp' | 'backend_close' | 'backend_dial_timeout' | 'frontend_close';
export type StreamSegment = 'from_client' | 'to_client' | 'from_agent' | 'to_agent';
/**
 * Why a connection was closed because its frontend stopped reading: it made no
 * progress for --frontend-stall-timeout (or the timeout is 0), or what was
 * queued for it passed twice the per-frontend bound.
 */
export type FrontendStallCloseReason = 'frontend_not_reading' | 'frontend_buffer_full';

export function createServerMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics !== false) collectProcessMetrics(registry);
  const registers = [registry];
  return {
    registry,
    dialDuration: new Histogram({ name: NS + 'dial_duration_seconds', help: 'Latency of dial to the remote endpoint in seconds', buckets: latencyBuckets, registers }),
    frontendWriteDuration: new Histogram({ name: NS + 'frontend_write_duration_seconds', help: 'Latency of write to the frontend in seconds', buckets: latencyBuckets, registers }),
    connectionDuration: new Histogram({
      name: NS + 'connection_duration_seconds',
      help: 'Duration of established connections in seconds',
      buckets: [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 14400, 43200, 86400],
      registers,
    }),
    grpcConnections: new Gauge({ name: NS + 'grpc_connections', help: 'Number of current grpc connections, partitioned by service method.', labelNames: ['service_method'] as const, registers }),
    httpConnections: new Gauge({ name: NS + 'http_connections', help: 'Number of current HTTP CONNECT connections', registers }),
    readyBackendConnections: new Gauge({ name: NS + 'ready_backend_connections', help: 'Number of konnectivity agent connected to the proxy server. DEPRECATED, please use ready_backends', registers }),
    readyBackends: new Gauge({ name: NS + 'ready_backends', help: 'Number of konnectivity agents connected to the proxy server, per proxy strategy', labelNames: ['proxy_strategy'] as const, registers }),
    pendingBackendDials: new Gauge({ name: NS + 'pending_backend_dials', help: 'Current number of pending backend dial requests', registers }),
    establishedConnections: new Gauge({ name: NS + 'established_connections', help: 'Current number of established end-to-end connections', registers }),
    fullReceiveChannels: new Gauge({ name: NS + 'full_receive_channels', help: 'Number of current connections blocked by a full receive channel, partitioned by service method.', labelNames: ['service_method'] as const, registers }),
    dialFailures: new Counter({ name: NS + 'dial_failure_count', help: 'Number of dial failures observed. Multiple failures can occur for a single dial request.', labelNames: ['reason'] as const, registers }),
    streamPackets: new Counter({ name: NS + 'stream_packets_total', help: 'Count of packets processed, by segment and packet type (example: from_client, DIAL_REQ)', labelNames: ['segment', 'packet_type'] as const, registers }),
    streamErrors: new Counter({ name: NS + 'stream_errors_total', help: 'Count of gRPC stream errors, by segment, grpc Code, packet type. (example: from_agent, Code.Unavailable, DIAL_RSP)', labelNames: ['segment', 'code', 'packet_type'] as const, registers }),
    culledLeases: new Counter({ name: NS + 'culled_leases_count', help: 'Count of expired leases that the lease garbage collection controller has culled.', registers }),
    leaseDeleteLatency: new Histogram({ name: NS + 'lease_delete_latency_seconds', help: 'Latency of lease deletion calls by the garbage collection controller in seconds.', labelNames: ['http_status_code'] as const, registers }),
    leaseDeletes: new Counter({ name: NS + 'lease_delete_total', help: 'Count of lease deletion calls by the garbage collection controller. Labeled by HTTP status code and reason.', labelNames: ['http_status_code', 'reason'] as const, registers }),
    leaseListLatency: new Histogram({ name: NS + 'lease_list_latency_seconds', help: 'Latency of lease list calls by the garbage collection controller in seconds.', labelNames: ['http_status_code'] as const, registers }),
    leaseLists: new Counter({ name: NS + 'lease_list_total', help: 'Count of lease list calls made by the garbage collection controller. Labeled by HTTP status code and reason.', labelNames: ['http_status_code', 'reason'] as const, registers }),
    tlsHandshakeFailures: new Counter({
      name: TS_NS + 'tls_handshake_failures_total',
      help: 'TLS handshakes that failed on a listener (refused or missing client certificate, client not trusting the server, not TLS at all), by listener: agent or frontend. Bare TCP connections that send nothing (health checks) are not counted.',
      labelNames: ['listener'] as const,
      registers,
    }),
    connectionStallCloses: new Counter({
      name: TS_NS + 'connection_stall_closes_total',
      help: 'Connections closed because their frontend (kube-apiserver) stopped reading while an agent without per-connection flow control (an upstream agent) kept sending, by reason: frontend_not_reading (no progress for --frontend-stall-timeout) or frontend_buffer_full (twice the per-frontend bound queued).',
      labelNames: ['reason'] as const,
      registers,
    }),
    streamPausesForFrontend: new Counter({
      name: TS_NS + 'stream_pauses_for_frontend_total',
      help: 'Times an agent stream without per-connection flow control was paused because one frontend was over its bound (only with --frontend-stall-policy=pause); it resumes when that frontend drains.',
      registers,
    }),
  };
}

export type ServerMetrics = ReturnType<typeof createServerMetrics>;
