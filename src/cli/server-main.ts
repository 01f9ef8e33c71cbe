/**
 * `konnectivity-server`: upstream's flags in, a running server out. The
 * first SIGTERM/SIGINT shuts down (gracefully within
 * --graceful-shutdown-timeout); a second one exits at once with code 1.
 */
import { realDaemonProcess, startDaemon, type DaemonProcess } from './parse-daemon-options.ts';
// Loaded only when needed: most servers never call the Kubernetes API.
import type { KubeClient } from '../kube/kube-client.ts';
import type { Logger } from '../observability/logger.ts';
import { createServerMetrics } from '../observability/server-metrics.ts';
import { KonnectivityServer, type ServerConfig } from '../server/konnectivity-server.ts';
import type { ServerLeaseController } from '../server/lease-controller.ts';
import { parseServerOptions, serverUsage, type ServerOptions } from '../server/server-options.ts';
import { nodeMinTlsVersion, opensslCipherList } from '../server/tls-names.ts';
import { TokenReviewAuthenticator } from '../server/token-authenticator.ts';

export function serverConfigFromOptions(o: ServerOptions, logger: Logger): ServerConfig {
  const minVersion = o.tlsMinVersion ? nodeMinTlsVersion(o.tlsMinVersion) : 'TLSv1.2';
  const ciphers = opensslCipherList(o.cipherSuites);
  const tlsKnobs = { minVersion, ...(ciphers ? { ciphers } : {}) };
  return {
    mode: o.mode,
    frontend: o.udsName
      ? { transport: 'unix', path: o.udsName, deleteExisting: o.deleteExistingUdsFile }
      : { transport: 'tcp', host: o.serverBindAddress, port: o.serverPort, tls: { certPath: o.serverCert, keyPath: o.serverKey, clientCaPath: o.serverCaCert, ...tlsKnobs } },
    agent: {
      host: o.agentBindAddress,
      port: o.agentPort,
      tls: { certPath: o.clusterCert, keyPath: o.clusterKey, ...(o.clusterCaCert ? { clientCaPath: o.clusterCaCert } : {}), ...tlsKnobs },
    },
    health: { host: o.healthBindAddress, port: o.healthPort },
    admin: { host: o.adminBindAddress, port: o.adminPort },
    serverId: o.serverId,
    serverCount: o.serverCount,
    strategies: o.proxyStrategies,
    keepaliveTimeMs: o.keepaliveTimeMs,
    frontendKeepaliveTimeMs: o.frontendKeepaliveTimeMs,
    backendDialTimeoutMs: o.backendDialTimeoutMs,
    gracefulShutdownTimeoutMs: o.gracefulShutdownTimeoutMs,
    limits: o.limits,
    frontendStallTimeoutMs: o.frontendStallTimeoutMs,
    frontendStallPolicy: o.frontendStallPolicy,
    http2Implementation: o.http2Implementation,
    tlsReloadIntervalMs: o.tlsReloadIntervalMs,
    enableProfiling: o.enableProfiling,
    logger,
  };
}

export type ServerProcess = DaemonProcess;

function notImplementedWarnings(o: ServerOptions, logger: Logger): void {
  if (o.enableContentionProfiling) logger.info('--enable-contention-profiling has no Node equivalent; /debug/pprof serves CPU profiles and heap snapshots only');
}

export async function main(argv: readonly string[] = process.argv.slice(2), io: ServerProcess = realDaemonProcess): Promise<number> {
  const started = startDaemon(() => parseServerOptions(argv, io.env), () => serverUsage(io.env), io, 'konnectivity-server');
  if ('exitCode' in started) return started.exitCode;
  const options: ServerOptions = started.options;
  const logger = started.logger;
  notImplementedWarnings(options, logger);
  // The Kubernetes client exists only for token auth and the lease controller, as upstream.
  let kube: KubeClient | undefined;
  if (options.needsKubernetesClient) {
    try {
      const { KubeClient } = await import('../kube/kube-client.ts');
      kube = KubeClient.fromFlags({
        kubeconfigPath: options.kubeconfig,
        qps: options.kubeconfigQps,
        burst: options.kubeconfigBurst,
        contentType: options.kubeApiContentType,
        env: io.env,
        logger: logger.child({ component: 'kube-client' }),
      });
    } catch (err) {
      logger.error('failed to create the Kubernetes client', { error: err instanceof Error ? err.message : String(err) });
      return 1;
    }
  }
  const metrics = createServerMetrics();
  const authenticator =
    kube && options.tokenAuthEnabled
      ? new TokenReviewAuthenticator({
          reviewer: kube,
          namespace: options.agentNamespace,
          serviceAccount: options.agentServiceAccount,
          audience: options.authenticationAudience,
          cacheTtlMs: options.authenticationCacheTtlMs,
          registry: metrics.registry,
          logger,
        })
      : undefined;
  let server: KonnectivityServer;
  try {
    server = new KonnectivityServer({ ...serverConfigFromOptions(options, logger), metrics, ...(authenticator ? { authenticator } : {}) });
    await server.start();
  } catch (err) {
    logger.error('server failed to start', { error: err instanceof Error ? err.message : String(err) });
    return 1;
  }
  let leases: ServerLeaseController | undefined;
  if (kube && options.enableLeaseController) {
    const { ServerLeaseController } = await import('../server/lease-controller.ts');
    leases = new ServerLeaseController({
      client: kube,
      serverId: options.serverId,
      namespace: options.leaseNamespace,
      labels: options.leaseLabels,
      metrics: server.metrics,
      logger: logger.child({ component: 'lease-controller' }),
    });
    leases.start();
  }
  return new Promise<number>((resolve) => {
    let signals = 0;
    io.onShutdownSignal((signal) => {
      signals++;
      if (signals === 1) {
        logger.info('received shutdown signal', { signal, gracePeriodMs: options.gracefulShutdownTimeoutMs });
        // As upstream: the servers stop first, then this server's Lease is deleted.
        server
          .stop()
          .then(() => leases?.stop())
          .finally(() => kube?.close())
          .then(() => resolve(0), () => resolve(1));
      } else {
        logger.info('received second shutdown signal; exiting now', { signal });
        resolve(1);
      }
    });
  });
}

if (import.meta.main) process.exitCode = await main();
