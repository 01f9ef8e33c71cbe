/**
 * Agent-wide bounds on endpoint work (konnectivity-ts extensions; upstream
 * dials without limit). They are shared by every proxy-server connection of
 * one agent, because what they protect (file descriptors, memory, the DNS
 * thread pool) is the process's.
 *
 * - `--max-endpoint-connections` (default 10000): endpoint sockets open or
 *   being dialed. Beyond it a DIAL_REQ is answered at once with an error.
 * - `--max-pending-endpoint-dials` (default 1000): dials in progress (name
 *   resolution plus connect, up to the 5 s dial timeout each).
 *
 * 0 disables a limit. A refused dial costs one DIAL_RSP; nothing else on
 * the stream is affected. Implemented as a wrapper around the endpoint
 * dialer, so the relay's state machine is untouched.
 */
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { registeredCounter } from '../observability/registered-counter.ts';
import type { EndpointDialer } from './endpoint-dialer.ts';
import { EndpointDialError } from './go-dial-error.ts';

export const AGENT_LIMIT_DEFAULTS = {
  maxEndpointConnections: 10_000,
  maxPendingEndpointDials: 1_000,
} as const;

/** Label of `konnectivity_network_proxy_agent_ts_limit_rejections_total{limit}`. */
export type AgentLimitName = 'endpoint_connections' | 'pending_endpoint_dials';

export function createAgentLimitMetrics(registry: Registry) {
  return {
    limitRejections: registeredCounter(
      registry,
      'konnectivity_network_proxy_agent_ts_limit_rejections_total',
      'Dial requests refused because an agent limit was reached, by limit (endpoint_connections, pending_endpoint_dials).',
      ['limit'],
    ),
    policyDenials: registeredCounter(
      registry,
      'konnectivity_network_proxy_agent_ts_policy_denials_total',
      'Dial requests refused by the destination policy, by reason (denied: matched --denied-destinations; not_allowed: outside --allowed-destinations).',
      ['reason'],
    ),
  };
}

export type AgentLimitMetrics = ReturnType<typeof createAgentLimitMetrics>;

export interface EndpointLimitOptions {
  /** 0: unlimited. */
  maxConnections?: number;
  /** 0: unlimited. */
  maxPendingDials?: number;
  metrics?: AgentLimitMetrics;
}

/**
 * Counts endpoint sockets from the start of their dial until they are
 * closed (a socket lingering to flush its last bytes still holds a file
 * descriptor, so it still counts), and refuses dials beyond the limits.
 */
export class EndpointLimits {
  readonly maxConnections: number;
  readonly maxPendingDials: number;
  private readonly metrics: AgentLimitMetrics | null;
  private open = 0;
  private dialing = 0;

  constructor(options: EndpointLimitOptions = {}) {
    this.maxConnections = options.maxConnections ?? AGENT_LIMIT_DEFAULTS.maxEndpointConnections;
    this.maxPendingDials = options.maxPendingDials ?? AGENT_LIMIT_DEFAULTS.maxPendingEndpointDials;
    this.metrics = options.metrics ?? null;
  }

  /** Endpoint sockets open or being dialed. */
  get connections(): number {
    return this.open + this.dialing;
  }

  /** Dials in progress. */
  get pendingDials(): number {
    return this.dialing;
  }

  /** Wraps a dialer so that every dial goes through the limits. */
  wrap(dial: EndpointDialer): EndpointDialer {
    if (this.maxConnections <= 0 && this.maxPendingDials <= 0) return dial;
    return async (address, signal) => {
      const refused = this.admit(address);
      if (refused) throw refused;
      this.dialing++;
      let socket: Socket;
      try {
        socket = await dial(address, signal);
      } finally {
        this.dialing--;
      }
      if (socket.destroyed) return socket;
      this.open++;
      socket.once('close', () => this.open--);
      return socket;
    };
  }

  /** The error to answer with (counted) when one more dial would exceed a limit; null if it may start. */
  admit(address: string): EndpointDialError | null {
    if (this.maxPendingDials > 0 && this.dialing >= this.maxPendingDials) {
      this.metrics?.limitRejections.inc({ limit: 'pending_endpoint_dials' });
      return endpointLimitError(address, 'pending_endpoint_dials', this.maxPendingDials);
    }
    if (this.maxConnections > 0 && this.connections >= this.maxConnections) {
      this.metrics?.limitRejections.inc({ limit: 'endpoint_connections' });
      return endpointLimitError(address, 'endpoint_connections', this.maxConnections);
    }
    return null;
  }
}

/**
 * Go dial-error shaped, and containing "too many open files" (what the limit
 * stands in for), so an upstream HTTP-CONNECT server answers 503, as it does
 * for a real EMFILE.
 */
export function endpointLimitError(address: string, limit: AgentLimitName, max: number): EndpointDialError {
  const what =
    limit === 'endpoint_connections'
      ? `limit of ${max} endpoint connections reached (--max-endpoint-connections)`
      : `limit of ${max} dials in progress reached (--max-pending-endpoint-dials)`;
  return new EndpointDialError(`dial tcp ${address}: konnectivity-agent: too many open files: ${what}`, 'unknown');
}
