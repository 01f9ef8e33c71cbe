/**
 * konnectivity-server bounds against exhaustion (konnectivity-ts extensions;
 * upstream has none of these except grpc-go's 4 MiB receive limit and Go's
 * HTTP header limits). Each has a flag, a default meant to be invisible in
 * normal operation, and a counter when it is hit. Hitting one refuses or
 * closes only the offending dial or connection; everything else keeps
 * flowing.
 *
 * | Flag                                  | Default | What                                                        |
 * |---------------------------------------|---------|-------------------------------------------------------------|
 * | --max-pending-dials-per-frontend      | 16      | dials awaiting DIAL_RSP on one frontend stream (kube-apiserver sends 1) |
 * | --max-pending-dials-per-agent         | 1000    | dials awaiting DIAL_RSP from one agent stream               |
 * | --max-connections-per-agent           | 10000   | established + pending connections through one agent stream  |
 * | --idle-connection-timeout             | 0 (off) | close a tunnel with no DATA either way for this long        |
 * | --http-connect-max-header-bytes       | 32768   | CONNECT request head size (Go's default is 1 MiB)           |
 * | --http-connect-header-timeout         | 60s     | time to receive the CONNECT head (upstream's ReadHeaderTimeout) |
 * | --max-grpc-receive-message-bytes      | 4 MiB   | one gRPC message from a frontend or agent (grpc-go default) |
 * | --max-pending-agent-authentications   | 100     | agent Connect streams awaiting their TokenReview (token auth only) |
 *
 * 0 disables any of them. The idle timeout is off by default because
 * `kubectl exec`, `attach`, `logs -f` and watches are legitimately silent
 * for hours, and upstream never closes them.
 */
import type { Registry } from 'prom-client';
import { registeredCounter } from '../observability/registered-counter.ts';

export interface ServerLimits {
  maxPendingDialsPerFrontend: number;
  maxPendingDialsPerAgent: number;
  maxConnectionsPerAgent: number;
  idleConnectionTimeoutMs: number;
  httpConnectMaxHeaderBytes: number;
  httpConnectHeaderTimeoutMs: number;
  maxGrpcReceiveMessageBytes: number;
  /**
   * Agent Connect streams waiting for their TokenReview at once. Anyone who
   * reaches the agent port can open Connect streams with junk tokens, and
   * each holds a stream and an apiserver request until the review answers.
   */
  maxPendingAgentAuthentications: number;
}

export const SERVER_LIMIT_DEFAULTS: Readonly<ServerLimits> = {
  maxPendingDialsPerFrontend: 16,
  maxPendingDialsPerAgent: 1_000,
  maxConnectionsPerAgent: 10_000,
  idleConnectionTimeoutMs: 0,
  httpConnectMaxHeaderBytes: 32 * 1024,
  httpConnectHeaderTimeoutMs: 60_000,
  maxGrpcReceiveMessageBytes: 4 * 1024 * 1024,
  // Agents authenticate once per connection (per server, per restart): a
  // rollout of a few thousand agents at the default sync backoff stays well
  // below this, and a refused agent just retries.
  maxPendingAgentAuthentications: 100,
};

export function resolveServerLimits(partial: Partial<ServerLimits> = {}): ServerLimits {
  return { ...SERVER_LIMIT_DEFAULTS, ...partial };
}

/** Label of `konnectivity_network_proxy_server_ts_limit_rejections_total{limit}`. */
export type ServerLimitName =
  | 'pending_dials_per_frontend'
  | 'pending_dials_per_agent'
  | 'connections_per_agent'
  | 'http_connect_header_bytes'
  | 'http_connect_header_timeout'
  | 'grpc_message_size'
  | 'pending_agent_authentications';

export function createServerLimitMetrics(registry: Registry) {
  const rejections = registeredCounter(
    registry,
    'konnectivity_network_proxy_server_ts_limit_rejections_total',
    'Dials, requests or streams refused because a konnectivity-ts limit was reached, by limit.',
    ['limit'],
  );
  const idleCloses = registeredCounter(
    registry,
    'konnectivity_network_proxy_server_ts_idle_connection_closes_total',
    'Established connections closed by --idle-connection-timeout.',
  );
  return {
    rejected(limit: ServerLimitName): void {
      rejections.inc({ limit });
    },
    idleClosed(): void {
      idleCloses.inc();
    },
    rejections,
    idleCloses,
  };
}

export type ServerLimitMetrics = ReturnType<typeof createServerLimitMetrics>;

/** Every DIAL_RSP error text the server itself writes for a limit starts with this. */
export const SERVER_LIMIT_ERROR_PREFIX = 'konnectivity-server: limit reached: ';

export function pendingDialsPerFrontendError(max: number): string {
  return `${SERVER_LIMIT_ERROR_PREFIX}${max} dials already pending on this stream (--max-pending-dials-per-frontend)`;
}

export function pendingDialsPerAgentError(agentId: string, max: number): string {
  return `${SERVER_LIMIT_ERROR_PREFIX}${max} dials already pending on agent ${agentId} (--max-pending-dials-per-agent)`;
}

export function connectionsPerAgentError(agentId: string, max: number): string {
  return `${SERVER_LIMIT_ERROR_PREFIX}${max} connections already open or pending through agent ${agentId} (--max-connections-per-agent)`;
}

export function pendingAgentAuthenticationsError(max: number): string {
  return `${SERVER_LIMIT_ERROR_PREFIX}${max} agent connections already awaiting authentication (--max-pending-agent-authentications); retry later`;
}

export function idleConnectionError(timeoutMs: number): string {
  return `konnectivity-server: connection closed after ${timeoutMs / 1000}s without traffic (--idle-connection-timeout)`;
}

export function isServerLimitError(errorText: string): boolean {
  return errorText.startsWith(SERVER_LIMIT_ERROR_PREFIX);
}

/**
 * HTTP-CONNECT answer for a dial the server refused at a limit: 503, in the
 * raw shape upstream uses for its own errors, then close.
 */
export function limitReachedResponse(errorText: string): Uint8Array {
  return Buffer.from(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${errorText}\r\n`, 'utf8');
}

/**
 * Finds connections without traffic. Each sweep compares a connection's byte
 * counters with the previous sweep's: no per-packet cost, and a connection is
 * closed between `timeoutMs` and `timeoutMs` plus one sweep interval after
 * its last byte.
 */
export class IdleSweeper<C extends { readonly bytesFromAgent: number; readonly bytesToAgent: number }> {
  readonly timeoutMs: number;
  readonly intervalMs: number;
  private readonly seen = new WeakMap<C, { bytes: number; since: number }>();

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs;
    this.intervalMs = Math.max(10, Math.min(30_000, Math.floor(timeoutMs / 4)));
  }

  /** Calls `onIdle` for every connection idle for at least the timeout at `now`. */
  sweep(connections: Iterable<C>, now: number, onIdle: (c: C) => void): void {
    const idle: C[] = [];
    for (const c of connections) {
      const bytes = c.bytesFromAgent + c.bytesToAgent;
      const last = this.seen.get(c);
      if (!last || last.bytes !== bytes) this.seen.set(c, { bytes, since: now });
      else if (now - last.since >= this.timeoutMs) {
        // A closed connection gets a full timeout again to be confirmed.
        last.since = now;
        idle.push(c);
      }
    }
    for (const c of idle) onIdle(c);
  }
}
