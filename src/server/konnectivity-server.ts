/**
 * konnectivity-server: wires the router to its listeners (frontend over a
 * unix socket or mTLS TCP, agent listener, health and admin ports) and owns
 * their lifecycle.
 */
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import type http from 'node:http';
import type net from 'node:net';
import type tls from 'node:tls';
import { once } from 'node:events';
import { GrpcServer } from '../grpc/grpc-server.ts';
import { createServerMetrics, type ServerMetrics } from '../observability/server-metrics.ts';
import { silentLogger, type Logger } from '../observability/logger.ts';
import { createAgentServiceHandler, type AgentAuthenticator } from './agent-backend.ts';
import type { ProxyStrategyName } from './backend-registry.ts';
import { createProxyServiceHandler } from './grpc-frontend.ts';
import { createServerAdminServer, createServerHealthServer } from './health-endpoints.ts';
import { ProxyRouter } from './proxy-router.ts';
import { serverFlowWindowFor } from '../protocol/flow-control.ts';
import { serverStatusRoutes } from '../status/server-status.ts';
import { profilingRoutes } from '../status/profiling.ts';
import type { TlsFiles } from './tls-context.ts';
import { ServerTlsReloading, type ServerTlsListener } from '../tls/server-tls.ts';
import type { ReloadOutcome } from '../tls/tls-reloader.ts';
import { HttpConnectFrontend } from './http-connect/http-connect-frontend.ts';
import type { ServerLimits } from './limits.ts';
import type { StallPolicy } from '../protocol/stall-policy.ts';
import { DrainNoticeSet } from './server-drain-notice.ts';
import { rememberPeerAddresses, tlsHandshakeFailureReporter } from './tls-handshake-failures.ts';

export type FrontendListen =
  | { transport: 'unix'; path: string; deleteExisting: boolean }
  | { transport: 'tcp'; host: string; port: number; tls: TlsFiles };

export interface ServerConfig {
  mode: 'grpc' | 'http-connect';
  frontend: FrontendListen;
  agent: { host: string; port: number; tls: TlsFiles };
  health: { host: string; port: number };
  admin: { host: string; port: number };
  serverId: string;
  serverCount: number;
  strategies: readonly ProxyStrategyName[];
  keepaliveTimeMs: number;
  /**
   * Unanswered-ping bound on the agent listener (default 20 s, grpc-go's
   * fixed value; no flag, as upstream): a half-open agent connection is
   * dropped within keepaliveTimeMs + keepaliveTimeoutMs.
   */
  keepaliveTimeoutMs?: number;
  frontendKeepaliveTimeMs: number;
  backendDialTimeoutMs: number;
  gracefulShutdownTimeoutMs: number;
  maxFrontendBufferBytes?: number;
  /** Agents without flow control: how long a frontend over its bound may take nothing before its connection is closed (default 30 s). */
  frontendStallTimeoutMs?: number;
  /** Agents without flow control: close (default) or pause the agent stream while a frontend is over its bound. */
  frontendStallPolicy?: StallPolicy;
  /** HTTP/2 server of the gRPC listeners (`--http2-implementation`); default 'builtin'. */
  http2Implementation?: 'builtin' | 'node';
  /** konnectivity-ts exhaustion bounds (limits.ts); defaults for what is left out. */
  limits?: Partial<ServerLimits>;
  authenticator?: AgentAuthenticator;
  logger?: Logger;
  metrics?: ServerMetrics;
  /**
   * How often the TLS files are checked for changes and hot-reloaded into
   * both listeners (konnectivity-ts `--tls-reload-interval`); 0 loads them
   * once, as upstream. Default 2 s.
   */
  tlsReloadIntervalMs?: number;
  /** `--enable-profiling`: serve /debug/pprof (CPU profile, heap snapshot) on the admin port. */
  enableProfiling?: boolean;
}

export interface BoundAddresses {
  frontend: string;
  agentPort: number;
  healthPort: number;
  adminPort: number;
}

function listen(server: net.Server | http.Server, port: number, host: string): Promise<number> {
  server.listen(port, host || undefined);
  return once(server, 'listening').then(() => (server.address() as net.AddressInfo).port);
}

export const DEFAULT_MAX_FRONTEND_BUFFER_BYTES = 16 * 1024 * 1024;

export class KonnectivityServer {
  readonly config: ServerConfig;
  readonly router: ProxyRouter;
  readonly metrics: ServerMetrics;
  readonly logger: Logger;
  private readonly agentServer: GrpcServer;
  private readonly grpcFrontend: GrpcServer | null = null;
  private readonly httpFrontend: HttpConnectFrontend | null = null;
  private readonly healthServer: http.Server;
  private readonly adminServer: http.Server;
  private readonly tlsReloading: ServerTlsReloading;
  /** Our agents that asked to hear about a graceful shutdown (drain-notice extension). */
  readonly drainNotices = new DrainNoticeSet();
  private accepting = true;
  private bound: BoundAddresses | null = null;

  constructor(config: ServerConfig) {
    this.config = config;
    this.logger = config.logger ?? silentLogger;
    this.metrics = config.metrics ?? createServerMetrics();
    this.tlsReloading = new ServerTlsReloading({ intervalMs: config.tlsReloadIntervalMs, logger: this.logger, registry: this.metrics.registry });
    const maxFrontendBufferBytes = config.maxFrontendBufferBytes ?? DEFAULT_MAX_FRONTEND_BUFFER_BYTES;
    this.router = new ProxyRouter({
      strategies: config.strategies,
      metrics: this.metrics,
      logger: this.logger,
      backendDialTimeoutMs: config.backendDialTimeoutMs,
      maxFrontendBufferBytes,
      ...(config.frontendStallTimeoutMs !== undefined ? { frontendStallTimeoutMs: config.frontendStallTimeoutMs } : {}),
      ...(config.frontendStallPolicy !== undefined ? { frontendStallPolicy: config.frontendStallPolicy } : {}),
      ...(config.limits ? { limits: config.limits } : {}),
    });
    const limits = this.router.limits;
    const stream = { maxReceiveMessageBytes: limits.maxGrpcReceiveMessageBytes };
    const http2Implementation = config.http2Implementation ?? 'builtin';
    this.agentServer = new GrpcServer({
      http2: http2Implementation,
      tls: this.tlsReloading.options('agent', config.agent.tls),
      onTlsClientError: tlsHandshakeFailureReporter('agent', this.logger, this.metrics),
      keepaliveTimeMs: config.keepaliveTimeMs,
      ...(config.keepaliveTimeoutMs !== undefined ? { keepaliveTimeoutMs: config.keepaliveTimeoutMs } : {}),
      stream,
      handlers: {
        '/AgentService/Connect': createAgentServiceHandler(this.router, this.metrics, this.logger, {
          serverId: config.serverId,
          serverCount: config.serverCount,
          ...(config.authenticator ? { authenticator: config.authenticator } : {}),
          accepting: () => this.accepting,
          drainNotices: this.drainNotices,
          flowWindowBytes: serverFlowWindowFor(maxFrontendBufferBytes),
        }),
      },
    });
    // The TCP frontend is always mTLS (ANP#853): options() refuses files without a client CA.
    const frontendTls = config.frontend.transport === 'tcp' ? this.tlsReloading.options('frontend', config.frontend.tls, { requireClientCert: true }) : undefined;
    if (config.mode === 'grpc') {
      this.grpcFrontend = new GrpcServer({
        http2: http2Implementation,
        // Node's http2 only: kube-apiserver builds before grpc-go 1.57 send the socket path as :authority.
        repairAuthority: true,
        ...(frontendTls ? { tls: frontendTls, onTlsClientError: tlsHandshakeFailureReporter('frontend', this.logger, this.metrics) } : {}),
        keepaliveTimeMs: config.frontendKeepaliveTimeMs,
        stream,
        handlers: { '/ProxyService/Proxy': createProxyServiceHandler(this.router, this.metrics, this.logger) },
      });
    } else {
      this.httpFrontend = new HttpConnectFrontend({
        router: this.router,
        metrics: this.metrics,
        logger: this.logger,
        ...(frontendTls ? { tls: frontendTls, onTlsClientError: tlsHandshakeFailureReporter('frontend', this.logger, this.metrics) } : {}),
        accepting: () => this.accepting,
        maxHeaderBytes: limits.httpConnectMaxHeaderBytes,
        // 0 turns the header timeout off (the longest timer Node allows).
        headerTimeoutMs: limits.httpConnectHeaderTimeoutMs > 0 ? limits.httpConnectHeaderTimeoutMs : 2 ** 31 - 1,
      });
    }
    this.tlsReloading.attach('agent', this.agentServer.listener as tls.Server);
    if (frontendTls) this.tlsReloading.attach('frontend', (this.grpcFrontend?.listener ?? this.httpFrontend!.server) as tls.Server);
    rememberPeerAddresses(this.agentServer.listener as tls.Server);
    if (frontendTls) rememberPeerAddresses((this.grpcFrontend?.listener ?? this.httpFrontend!.server) as tls.Server);
    // Both series exist from the start, so an alert on their rate sees 0, not nothing.
    this.metrics.tlsHandshakeFailures.inc({ listener: 'agent' }, 0);
    if (frontendTls) this.metrics.tlsHandshakeFailures.inc({ listener: 'frontend' }, 0);
    this.healthServer = createServerHealthServer({ ready: () => this.router.registry.ready }, this.metrics.registry);
    // Admin port: /metrics, the /api/v1 status endpoints and, with --enable-profiling, /debug/pprof.
    this.adminServer = createServerAdminServer(this.metrics.registry, {
      ...serverStatusRoutes(this),
      ...(config.enableProfiling ? profilingRoutes() : {}),
    });
  }

  get addresses(): BoundAddresses {
    if (!this.bound) throw new Error('server not started');
    return this.bound;
  }

  /**
   * Checks the listeners' TLS files now and reloads those that changed and
   * validate (the same as a poll tick; works with reloading disabled too).
   */
  reloadTls(): Promise<Partial<Record<ServerTlsListener, ReloadOutcome>>> {
    return this.tlsReloading.reload();
  }

  async start(): Promise<BoundAddresses> {
    const fe = this.config.frontend;
    const frontendNet = (this.grpcFrontend?.listener ?? this.httpFrontend!.server) as net.Server;
    let frontend: string;
    if (fe.transport === 'unix') {
      if (existsSync(fe.path)) {
        if (!fe.deleteExisting) throw new Error(`unix socket ${fe.path} already exists and --delete-existing-uds-file=false`);
        unlinkSync(fe.path);
      }
      // umask 0007 as upstream: only owner and group may connect.
      const oldMask = process.umask(0o007);
      try {
        frontendNet.listen(fe.path);
        await once(frontendNet, 'listening');
      } finally {
        process.umask(oldMask);
      }
      chmodSync(fe.path, 0o770);
      frontend = fe.path;
    } else {
      const port = await listen(frontendNet, fe.port, fe.host);
      frontend = `${fe.host || '0.0.0.0'}:${port}`;
    }
    const agentPort = await listen(this.agentServer.listener, this.config.agent.port, this.config.agent.host);
    const healthPort = await listen(this.healthServer, this.config.health.port, this.config.health.host);
    const adminPort = await listen(this.adminServer, this.config.admin.port, this.config.admin.host);
    this.bound = { frontend, agentPort, healthPort, adminPort };
    this.tlsReloading.start();
    this.logger.info('konnectivity-server started', { mode: this.config.mode, serverID: this.config.serverId, ...this.bound });
    return this.bound;
  }

  /**
   * Stops accepting frontends and agents. With a grace period, established
   * tunnels may finish within it; whatever is left is then cut.
   */
  async stop(gracePeriodMs = this.config.gracefulShutdownTimeoutMs): Promise<void> {
    this.accepting = false;
    this.tlsReloading.stop();
    const closeHttp = (s: http.Server): Promise<void> => new Promise((resolve) => s.close(() => resolve()));
    if (gracePeriodMs > 0) {
      // Beyond upstream: agents that negotiated it hear that this server is
      // going, so they connect elsewhere while their tunnels here finish.
      const told = this.drainNotices.notifyAll();
      if (told > 0) this.logger.info('told agents this server is shutting down', { agents: told, gracePeriodMs });
      // No new agent connections (grpc-go's GracefulStop closes its listeners
      // too): a balancer's health check then takes this server out, and
      // reconnecting agents land elsewhere instead of being refused here.
      // Established agent streams carry on for their tunnels.
      this.agentServer.listener.close();
      const graceful = Promise.all([
        this.grpcFrontend?.closeGracefully(),
        this.httpFrontend?.closeGracefully(),
        this.waitForTunnelsToEnd(),
      ]);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([graceful, new Promise<void>((resolve) => (timer = setTimeout(resolve, gracePeriodMs)))]);
      clearTimeout(timer);
    }
    this.grpcFrontend?.destroy();
    this.httpFrontend?.destroy();
    this.agentServer.destroy();
    this.router.dispose();
    this.healthServer.closeAllConnections();
    this.adminServer.closeAllConnections();
    await Promise.all([closeHttp(this.healthServer), closeHttp(this.adminServer)]);
    if (this.config.frontend.transport === 'unix' && existsSync(this.config.frontend.path)) {
      try {
        unlinkSync(this.config.frontend.path);
      } catch {
        // already gone
      }
    }
    this.logger.info('konnectivity-server stopped');
  }

  private async waitForTunnelsToEnd(): Promise<void> {
    while (this.router.establishedCount > 0 || this.router.pendingDialCount > 0) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
