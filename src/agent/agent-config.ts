/**
 * What a KonnectivityAgent needs, in the units the code uses (milliseconds,
 * bytes, file paths). The CLI maps upstream's flags onto it one-to-one; the
 * fields beyond upstream's flags are konnectivity-ts extensions with
 * defaults that keep upstream behaviour where it is safe.
 */
import type { ProxyServerAddress } from './server-dialer.ts';
import type { ServerCountSource } from './server-count.ts';
import type { DestinationPolicy } from './destination-policy.ts';
import type { StallPolicy } from '../protocol/stall-policy.ts';
import { DEFAULT_FLOW_WINDOW_BYTES } from '../protocol/flow-control.ts';

export interface AgentConfig {
  /** `--proxy-server-host`; also the TLS server name. */
  proxyServerHost: string;
  /** `--proxy-server-port`. */
  proxyServerPort: number;
  /**
   * More proxy-server addresses, tried in turn with the main one, one per
   * sync attempt (konnectivity-ts; upstream takes a single address, ANP#394).
   */
  additionalProxyServers?: readonly ProxyServerAddress[];
  /** `--ca-cert`: required CA bundle for verifying the proxy-server. */
  caCertPath: string;
  /** `--agent-cert` / `--agent-key`: client certificate, used only when both are set. */
  agentCertPath?: string;
  agentKeyPath?: string;
  /** `--alpn-proto`: offered before `h2`. */
  alpnProtocols?: readonly string[];
  /** `--agent-id`. */
  agentID: string;
  /** `--agent-identifiers`, URL-query encoded; sent even when empty. */
  agentIdentifiers?: string;
  /** `--service-account-token-path`: sent as `authorization: Bearer <file>` when set. */
  serviceAccountTokenPath?: string;
  /** `--sync-interval` (default 1 s). */
  syncIntervalMs?: number;
  /** `--sync-interval-cap` (default 10 s). */
  syncIntervalCapMs?: number;
  /** `--probe-interval` (default 1 s). */
  probeIntervalMs?: number;
  /** `--sync-forever`. */
  syncForever?: boolean;
  /** `--keepalive-time` (default 1 h). */
  keepaliveTimeMs?: number;
  /**
   * How long a keepalive ping may stay unanswered before the server
   * connection is dropped and replaced (default 20 s, grpc-go's fixed value;
   * no flag, as upstream). A half-open connection is detected within
   * keepaliveTimeMs + keepaliveTimeoutMs.
   */
  keepaliveTimeoutMs?: number;
  /** `--server-count-source` (default `default`); only matters with a lease counter. */
  serverCountSource?: ServerCountSource;
  /** Bound on connecting to a proxy-server and on waiting for its headers (default 30 s). */
  serverConnectTimeoutMs?: number;
  /**
   * Bytes that may queue toward one destination that is not reading before
   * that connection alone is closed (default 8 MiB). Replaces upstream's
   * blocking `--xfr-channel-size` queue, which stalls the whole stream.
   */
  maxEndpointBufferedBytes?: number;
  /**
   * Servers without flow control (upstream servers): how long one destination
   * over its buffer bound may take no byte before that connection is closed
   * (default 30 s). 0 = close at the bound.
   */
  endpointStallTimeoutMs?: number;
  /** Servers without flow control: close (default) or pause the server stream while a destination is over its bound. */
  endpointStallPolicy?: StallPolicy;
  /** How long a closing endpoint may take to accept its remaining bytes (default 30 s). */
  endpointCloseLingerMs?: number;
  /** Endpoint dial timeout; upstream hard-codes 5 s. */
  endpointDialTimeoutMs?: number;
  /**
   * `--allowed-destinations` / `--denied-destinations` (konnectivity-ts):
   * which endpoints DIAL_REQs may reach. Absent: every destination, as upstream.
   */
  destinationPolicy?: DestinationPolicy;
  /** `--max-endpoint-connections`: endpoint sockets open or being dialed, agent-wide (default 10000, 0 = unlimited). */
  maxEndpointConnections?: number;
  /** `--max-pending-endpoint-dials`: endpoint dials in progress, agent-wide (default 1000, 0 = unlimited). */
  maxPendingEndpointDials?: number;
  /**
   * Per-connection window offered to proxy-servers for the konnectivity-ts
   * flow-control extension (docs/design/flow-control.md); 0 = never offer.
   * Upstream servers ignore the offer.
   */
  flowWindowBytes?: number;
  /**
   * Ask proxy-servers for the konnectivity-ts drain notice (default true): a
   * server starting a graceful shutdown then says so, and the agent connects
   * to another server while its tunnels there finish. Upstream servers
   * ignore the offer.
   */
  serverDrainNotice?: boolean;
}

export const AGENT_DEFAULTS = {
  syncIntervalMs: 1_000,
  syncIntervalCapMs: 10_000,
  probeIntervalMs: 1_000,
  keepaliveTimeMs: 60 * 60 * 1_000,
  serverConnectTimeoutMs: 30_000,
  maxEndpointBufferedBytes: 8 * 1024 * 1024,
  endpointStallTimeoutMs: 30_000,
  endpointStallPolicy: 'close' as StallPolicy,
  endpointCloseLingerMs: 30_000,
  endpointDialTimeoutMs: 5_000,
  maxEndpointConnections: 10_000,
  maxPendingEndpointDials: 1_000,
  flowWindowBytes: DEFAULT_FLOW_WINDOW_BYTES,
} as const;

export function proxyServerAddresses(config: AgentConfig): ProxyServerAddress[] {
  return [{ host: config.proxyServerHost, port: config.proxyServerPort }, ...(config.additionalProxyServers ?? [])];
}
