/**
 * The konnectivity agent: keeps Connect streams to the proxy-server(s) and
 * serves their DIAL_REQs. HTTP endpoints and signal handling live outside
 * (agent-http-server.ts, cli/agent-main.ts).
 */
import { createAgentMetrics, type AgentMetrics } from '../observability/agent-metrics.ts';
import { silentLogger, type Logger } from '../observability/logger.ts';
import { AGENT_DEFAULTS, proxyServerAddresses, type AgentConfig } from './agent-config.ts';
import { createAgentTsMetrics, type AgentTsMetrics } from './agent-ts-metrics.ts';
import { createPolicyEndpointDialer, DestinationPolicy } from './destination-policy.ts';
import type { EndpointDialer } from './endpoint-dialer.ts';
import { createAgentLimitMetrics, EndpointLimits, type AgentLimitMetrics } from './endpoint-limits.ts';
import { createServerDialer, type AgentTlsMaterial, type ServerDialer } from './server-dialer.ts';
import type { ServerCounter } from './server-count.ts';
import { ServerLink } from './server-link.ts';
import { ServerLinkSet, type SyncOutcome } from './server-link-set.ts';
import { AgentTlsSource, type AgentTlsReloadConfig } from '../tls/agent-tls.ts';

export interface AgentDependencies {
  logger?: Logger;
  /** Defaults to a fresh registry with process metrics. */
  metrics?: AgentMetrics;
  /** Replaces the TCP endpoint dialer (tests, alternative transports). */
  dialEndpoint?: EndpointDialer;
  /** Replaces the TLS gRPC connect (tests over other transports). */
  dialServer?: ServerDialer;
  /** Counts servers from their Leases (`--count-server-leases`; agent-main builds it from the kubeconfig). */
  leaseCounter?: ServerCounter;
  /** Jitter source for the sync loop. */
  random?: () => number;
}

/** Reads and validates the TLS files once; a missing or invalid CA is a startup error, as upstream. */
export async function loadAgentTlsMaterial(config: AgentConfig): Promise<AgentTlsMaterial> {
  return (await AgentTlsSource.load(config, { intervalMs: 0, logger: silentLogger })).current;
}

export class KonnectivityAgent {
  readonly config: AgentConfig & AgentTlsReloadConfig;
  readonly metrics: AgentMetrics;
  readonly tsMetrics: AgentTsMetrics;
  /** Destination-policy denials and limit rejections (konnectivity-ts). */
  readonly limitMetrics: AgentLimitMetrics;
  /** Agent-wide endpoint bounds; set once started. */
  endpointLimits: EndpointLimits | null = null;
  /** Called after every sync attempt; set before `start()`. */
  onSync: (outcome: SyncOutcome, error?: Error) => void = () => {};

  private readonly deps: AgentDependencies;
  private readonly logger: Logger;
  private links: ServerLinkSet | null = null;
  private tlsSource: AgentTlsSource | null = null;
  private stopped = false;

  constructor(config: AgentConfig & AgentTlsReloadConfig, deps: AgentDependencies = {}) {
    this.config = config;
    this.deps = deps;
    this.logger = deps.logger ?? silentLogger;
    this.metrics = deps.metrics ?? createAgentMetrics();
    this.tsMetrics = createAgentTsMetrics(this.metrics.registry);
    this.limitMetrics = createAgentLimitMetrics(this.metrics.registry);
  }

  /** Loads TLS material and starts connecting; rejects on bad configuration only. */
  async start(): Promise<void> {
    if (this.links) throw new Error('agent already started');
    const config = this.config;
    let dialServer = this.deps.dialServer;
    if (!dialServer) {
      // Checked before every connection attempt and polled, so a rotated CA or client certificate is used without a restart (ANP#801).
      const tlsSource = await AgentTlsSource.load(config, { intervalMs: config.tlsReloadIntervalMs, logger: this.logger, registry: this.metrics.registry });
      this.tlsSource = tlsSource;
      dialServer = createServerDialer({
        tls: () => tlsSource.forConnection(),
        agentID: config.agentID,
        agentIdentifiers: config.agentIdentifiers ?? '',
        serviceAccountTokenPath: config.serviceAccountTokenPath || undefined,
        keepaliveTimeMs: config.keepaliveTimeMs ?? AGENT_DEFAULTS.keepaliveTimeMs,
        ...(config.keepaliveTimeoutMs !== undefined ? { keepaliveTimeoutMs: config.keepaliveTimeoutMs } : {}),
        connectTimeoutMs: config.serverConnectTimeoutMs ?? AGENT_DEFAULTS.serverConnectTimeoutMs,
        flowWindowBytes: config.flowWindowBytes ?? AGENT_DEFAULTS.flowWindowBytes,
        serverDrainNotice: config.serverDrainNotice ?? true,
      });
    }
    const dialEndpoint = this.endpointDialer();
    const linkOptions = {
      dialEndpoint,
      maxEndpointBufferedBytes: config.maxEndpointBufferedBytes ?? AGENT_DEFAULTS.maxEndpointBufferedBytes,
      endpointCloseLingerMs: config.endpointCloseLingerMs ?? AGENT_DEFAULTS.endpointCloseLingerMs,
      endpointStallTimeoutMs: config.endpointStallTimeoutMs ?? AGENT_DEFAULTS.endpointStallTimeoutMs,
      endpointStallPolicy: config.endpointStallPolicy ?? AGENT_DEFAULTS.endpointStallPolicy,
      metrics: this.metrics,
      tsMetrics: this.tsMetrics,
      logger: this.logger,
    };
    const links = new ServerLinkSet({
      addresses: proxyServerAddresses(config),
      dialServer,
      createLink: (session) => new ServerLink(session, linkOptions),
      syncIntervalMs: config.syncIntervalMs ?? AGENT_DEFAULTS.syncIntervalMs,
      syncIntervalCapMs: config.syncIntervalCapMs ?? AGENT_DEFAULTS.syncIntervalCapMs,
      probeIntervalMs: config.probeIntervalMs ?? AGENT_DEFAULTS.probeIntervalMs,
      syncForever: config.syncForever ?? false,
      leaseCounter: this.deps.leaseCounter,
      serverCountSource: config.serverCountSource ?? 'default',
      metrics: this.metrics,
      logger: this.logger,
      random: this.deps.random,
    });
    links.onSync = (outcome, error) => this.onSync(outcome, error);
    this.links = links;
    if (this.stopped) return;
    this.logger.info('agent starting', { agentID: config.agentID, proxyServer: `${config.proxyServerHost}:${config.proxyServerPort}` });
    links.start();
    this.tlsSource?.start();
  }

  /** Checks the TLS files now (as a poll tick does). */
  async reloadTls(): Promise<void> {
    await this.tlsSource?.reload();
  }

  /** The endpoint dialer: destination policy in front of TCP, and the agent-wide limits around both. */
  private endpointDialer(): EndpointDialer {
    const config = this.config;
    const policy = config.destinationPolicy ?? new DestinationPolicy(null);
    if (this.deps.dialEndpoint && !policy.allowsEverything) {
      throw new Error('a destination policy is enforced by the built-in TCP dialer; it cannot be combined with a replacement dialEndpoint');
    }
    const dial =
      this.deps.dialEndpoint ??
      createPolicyEndpointDialer({
        policy,
        timeoutMs: config.endpointDialTimeoutMs ?? AGENT_DEFAULTS.endpointDialTimeoutMs,
        onDenied: (address, denial) => {
          this.limitMetrics.policyDenials.inc({ reason: denial.reason });
          this.logger.warn('dial refused by destination policy', { address, reason: denial.reason, rule: denial.rule, resolvedAddress: denial.address });
        },
      });
    this.endpointLimits = new EndpointLimits({
      maxConnections: config.maxEndpointConnections ?? AGENT_DEFAULTS.maxEndpointConnections,
      maxPendingDials: config.maxPendingEndpointDials ?? AGENT_DEFAULTS.maxPendingEndpointDials,
      metrics: this.limitMetrics,
    });
    return this.endpointLimits.wrap(dial);
  }

  /** Ready when at least one proxy-server connection is usable (upstream's `server-connected` check). */
  get isReady(): boolean {
    return (this.links?.healthyCount ?? 0) > 0;
  }

  get isDraining(): boolean {
    return this.links?.isDraining ?? false;
  }

  /** serverIDs of the proxy-servers currently connected. */
  get connectedServerIDs(): string[] {
    return this.links?.serverIDs ?? [];
  }

  /** serverIDs of connected proxy-servers that announced a graceful shutdown (drain-notice extension). */
  get drainingServerIDs(): string[] {
    return this.links?.drainingServerIDs ?? [];
  }

  /** Endpoint (destination) connections open now, over all server links. */
  get endpointConnectionCount(): number {
    return this.links?.endpointConnectionCount ?? 0;
  }

  /** The number of distinct servers the agent is aiming for. */
  get targetServerCount(): number {
    return this.links?.targetServerCount ?? 1;
  }

  /** First shutdown step: DRAIN on every stream, no new server connections, tunnels keep working. */
  drain(): void {
    this.logger.info('draining: telling proxy-servers this agent is going away');
    this.links?.drain();
  }

  /** Closes every server connection and endpoint connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.tlsSource?.stop();
    await this.links?.stop();
  }
}
