/**
 * `konnectivity-agent`: upstream's flags in, a running agent with its health
 * and admin endpoints out. The first SIGTERM/SIGINT drains (DRAIN to every
 * server, no new server connections, tunnels keep working); the second stops.
 */
import type { AgentConfig } from '../agent/agent-config.ts';
import { AgentHttpServers, pingCheck, serverConnectedCheck } from '../agent/agent-http-server.ts';
import { agentUsage, destinationPolicyFromOptions, parseAgentOptions, parseProxyServerAddress, type AgentOptions } from '../agent/agent-options.ts';
import { KonnectivityAgent } from '../agent/konnectivity-agent.ts';
// Loaded only with --count-server-leases.
import type { ServerLeaseCounter } from '../agent/lease-counter.ts';
import type { KubeClient } from '../kube/kube-client.ts';
import { realDaemonProcess, startDaemon, type DaemonProcess } from './parse-daemon-options.ts';
import type { AgentTlsReloadConfig } from '../tls/agent-tls.ts';

import { createAgentMetrics } from '../observability/agent-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { agentStatusRoutes } from '../status/agent-status.ts';
import { profilingRoutes } from '../status/profiling.ts';

/** Upstream's flag values as the agent's configuration. */
export function agentConfigFromOptions(o: AgentOptions): AgentConfig & AgentTlsReloadConfig {
  return {
    tlsReloadIntervalMs: o.tlsReloadIntervalMs,
    proxyServerHost: o.proxyServerHost,
    proxyServerPort: o.proxyServerPort,
    additionalProxyServers: o.proxyServerAddresses.map(parseProxyServerAddress),
    caCertPath: o.caCert,
    agentCertPath: o.agentCert || undefined,
    agentKeyPath: o.agentKey || undefined,
    alpnProtocols: o.alpnProtos,
    agentID: o.agentId,
    agentIdentifiers: o.agentIdentifiers,
    serviceAccountTokenPath: o.serviceAccountTokenPath || undefined,
    syncIntervalMs: o.syncIntervalMs,
    syncIntervalCapMs: o.syncIntervalCapMs,
    probeIntervalMs: o.probeIntervalMs,
    syncForever: o.syncForever,
    keepaliveTimeMs: o.keepaliveTimeMs,
    serverCountSource: o.serverCountSource === 'max' ? 'max' : 'default',
    flowWindowBytes: o.flowControlWindowBytes,
    maxEndpointBufferedBytes: o.endpointBufferBytes,
    endpointStallTimeoutMs: o.endpointStallTimeoutMs,
    endpointStallPolicy: o.endpointStallPolicy,
    destinationPolicy: destinationPolicyFromOptions(o),
    maxEndpointConnections: o.maxEndpointConnections,
    maxPendingEndpointDials: o.maxPendingEndpointDials,
  };
}

/** Where the command reads signals from and writes to; tests substitute their own. */
export interface AgentProcess extends DaemonProcess {
  /** Called once the agent is serving, with the bound health and admin ports. */
  onReady?: (ports: { health: number; admin: number }) => void;
}

function notImplementedWarnings(o: AgentOptions, logger: Logger): void {
  if (o.enableContentionProfiling) logger.info('--enable-contention-profiling has no Node equivalent; /debug/pprof serves CPU profiles and heap snapshots only');
  if (o.xfrChannelSize !== 150 || o.warnOnChannelLimit) {
    logger.info('--xfr-channel-size/--warn-on-channel-limit have no effect: connections are buffered by bytes, not packets, and never block the stream');
  }
}

/** Runs the agent until the second shutdown signal; resolves to the exit code. */
export async function main(argv: readonly string[] = process.argv.slice(2), io: AgentProcess = realDaemonProcess): Promise<number> {
  const started = startDaemon(() => parseAgentOptions(argv, io.env), () => agentUsage(io.env), io, 'konnectivity-agent');
  if ('exitCode' in started) return started.exitCode;
  const options: AgentOptions = started.options;
  const logger = started.logger;
  notImplementedWarnings(options, logger);

  const metrics = createAgentMetrics();
  // --count-server-leases: the server count follows the servers' Leases (the only use of --kubeconfig).
  let leaseCounter: ServerLeaseCounter | undefined;
  let kube: KubeClient | undefined;
  if (options.countServerLeases) {
    try {
      const { KubeClient } = await import('../kube/kube-client.ts');
      const { ServerLeaseCounter } = await import('../agent/lease-counter.ts');
      kube = KubeClient.fromFlags({ kubeconfigPath: options.kubeconfig, contentType: options.kubeApiContentType, env: io.env, logger: logger.child({ component: 'kube-client' }) });
      leaseCounter = new ServerLeaseCounter({ client: kube, namespace: options.leaseNamespace, selector: options.leaseLabelSelector, metrics, logger: logger.child({ component: 'lease-counter' }) });
    } catch (err) {
      logger.error('failed to create the Kubernetes client for --count-server-leases', { error: err instanceof Error ? err.message : String(err) });
      return 1;
    }
  }
  const agent = new KonnectivityAgent(agentConfigFromOptions(options), { logger, metrics, ...(leaseCounter ? { leaseCounter } : {}) });
  const http = new AgentHttpServers({
    healthHost: options.healthServerHost,
    healthPort: options.healthServerPort,
    adminBindAddress: options.adminBindAddress,
    adminPort: options.adminServerPort,
    registry: metrics.registry,
    checks: [pingCheck, serverConnectedCheck(() => agent.isReady)],
    logger,
    // Admin port: /api/v1 status and, with --enable-profiling, /debug/pprof.
    adminRoutes: { ...agentStatusRoutes(agent), ...(options.enableProfiling ? profilingRoutes() : {}) },
  });

  let signals = 0;
  const stopped = new Promise<void>((resolve) => {
    io.onShutdownSignal((signal) => {
      signals++;
      if (signals === 1) {
        logger.info('received first shutdown signal; draining', { signal });
        agent.drain();
        return;
      }
      if (signals === 2) {
        logger.info('received second shutdown signal; stopping', { signal });
        resolve();
      }
    });
  });

  try {
    leaseCounter?.start();
    await agent.start();
    await http.start();
  } catch (err) {
    logger.error('agent failed to start', { error: err instanceof Error ? err.message : String(err) });
    await Promise.allSettled([agent.stop(), http.close(), leaseCounter?.stop()]);
    return 1;
  }
  io.onReady?.({ health: http.healthPort, admin: http.adminPort });
  await stopped;
  await Promise.allSettled([http.close(), agent.stop(), leaseCounter?.stop()]);
  kube?.close();
  logger.v(1, 'agent stopped');
  return 0;
}

if (import.meta.main) process.exitCode = await main();
