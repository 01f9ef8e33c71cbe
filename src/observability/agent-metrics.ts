/** konnectivity-agent metrics with upstream's exact names, labels and buckets (pkg/agent/metrics). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from './process-metrics.ts';

const NS = 'konnectivity_network_proxy_agent_';
const agentBuckets = [0.005, 0.025, 0.1, 0.5, 2.5, 10, 30];

export function createAgentMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics !== false) collectProcessMetrics(registry);
  const registers = [registry];
  return {
    registry,
    dialDuration: new Histogram({ name: NS + 'dial_duration_seconds', help: 'Latency of dial to the remote endpoint in seconds', buckets: agentBuckets, registers }),
    serverConnectionFailures: new Counter({ name: NS + 'server_connection_failure_count', help: 'Count of failures to send to or receive from the proxy server, labeled by the direction (from_server or to_server). DEPRECATED, please use stream_errors_total', labelNames: ['direction'] as const, registers }),
    endpointDialFailures: new Counter({ name: NS + 'endpoint_dial_failure_total', help: 'Number of failures dialing the remote endpoint, by reason (example: timeout).', labelNames: ['reason'] as const, registers }),
    openServerConnections: new Gauge({ name: NS + 'open_server_connections', help: 'Current number of open server connections.', registers }),
    knownServerCount: new Gauge({ name: NS + 'known_server_count', help: 'Current number of servers agent is trying to connect to.', registers }),
    openEndpointConnections: new Gauge({ name: NS + 'open_endpoint_connections', help: 'Current number of open endpoint connections.', registers }),
    streamPackets: new Counter({ name: NS + 'stream_packets_total', help: 'Count of packets processed, by segment and packet type (example: from_server, DIAL_REQ)', labelNames: ['segment', 'packet_type'] as const, registers }),
    streamErrors: new Counter({ name: NS + 'stream_errors_total', help: 'Count of gRPC stream errors, by segment, grpc Code, packet type. (example: from_agent, Code.Unavailable, DIAL_RSP)', labelNames: ['segment', 'code', 'packet_type'] as const, registers }),
    leaseLists: new Counter({ name: NS + 'lease_lists_total', help: 'Count of server lease list calls made by the agent. Labeled by HTTP response code and reason', labelNames: ['http_response_code', 'reason'] as const, registers }),
    leaseWatches: new Counter({ name: NS + 'lease_watches_total', help: 'Count of server lease watch calls made by the agent. Labeled by HTTP response code and reason', labelNames: ['http_response_code', 'reason'] as const, registers }),
    leaseListLatency: new Histogram({ name: NS + 'lease_list_latency_seconds', help: 'Latency of server lease list calls made by the agent. Labeled by HTTP response code', labelNames: ['http_response_code'] as const, buckets: agentBuckets, registers }),
  };
}

export type AgentMetrics = ReturnType<typeof createAgentMetrics>;
