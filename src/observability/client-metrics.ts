/** konnectivity-client metrics with upstream's names (konnectivity-client/pkg/client/metrics). */
import { Counter, Gauge, Registry } from 'prom-client';

const NS = 'konnectivity_network_proxy_client_';

export type ClientDialFailureReason = 'unknown' | 'timeout' | 'context' | 'endpoint' | 'dialclosed' | 'tunnelclosed' | 'tunnelstarted' | 'streamsetup';

export function createClientMetrics(registry: Registry = new Registry()) {
  const registers = [registry];
  return {
    registry,
    dialFailures: new Counter({ name: NS + 'dial_failure_total', help: 'Number of dial failures observed, by reason (example: remote endpoint error)', labelNames: ['reason'] as const, registers }),
    clientConnections: new Gauge({ name: NS + 'client_connections', help: 'Number of open client connections, by status (Example: dialing)', labelNames: ['status'] as const, registers }),
    streamPackets: new Counter({ name: NS + 'stream_packets_total', help: 'Count of packets processed, by segment and packet type (example: from_client, DIAL_REQ)', labelNames: ['segment', 'packet_type'] as const, registers }),
    streamErrors: new Counter({ name: NS + 'stream_errors_total', help: 'Count of gRPC stream errors, by segment, grpc Code, packet type. (example: from_agent, Code.Unavailable, DIAL_RSP)', labelNames: ['segment', 'code', 'packet_type'] as const, registers }),
  };
}

export type ClientMetrics = ReturnType<typeof createClientMetrics>;
