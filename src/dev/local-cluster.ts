/**
 * A whole konnectivity on one machine: throwaway PKI, a server, agents and
 * a demo HTTP target, all on loopback or unix sockets in a temp dir. The
 * quickstart, the end-to-end tests and the benchmarks share it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import { randomUUID } from 'node:crypto';
import { createDevPki, type DevPki, type PemPair } from './pki.ts';
import { KonnectivityServer, type ServerConfig } from '../server/konnectivity-server.ts';
import { KonnectivityAgent, type AgentDependencies } from '../agent/konnectivity-agent.ts';
import type { AgentConfig } from '../agent/agent-config.ts';
import { createTunnel } from '../client/create-tunnel.ts';
import type { Tunnel, TunnelMode } from '../client/tunnel-options.ts';
import { silentLogger, type Logger } from '../observability/logger.ts';
import type { ProxyStrategyName } from '../server/backend-registry.ts';

export interface LocalClusterOptions {
  mode: TunnelMode;
  /** Frontend over a unix socket (kube-apiserver's usual setup) or mTLS TCP. */
  frontendTransport?: 'unix' | 'tcp';
  agents?: number;
  strategies?: ProxyStrategyName[];
  logger?: Logger;
  /** Overrides merged into the server config. */
  server?: Partial<ServerConfig>;
  /** Overrides merged into every agent config. */
  agent?: Partial<AgentConfig>;
  /** Reuse an existing PKI (its dir is not removed on close). */
  pki?: DevPki;
}

export interface LocalCluster {
  dir: string;
  pki: DevPki;
  server: KonnectivityServer;
  agents: KonnectivityAgent[];
  /** A client certificate for mTLS frontend connections. */
  frontendClient: PemPair;
  /** A demo HTTP target reachable only through the tunnel in spirit (it is on loopback). */
  demo: { server: http.Server; port: number; url: string };
  openTunnel(mode?: TunnelMode): Tunnel;
  /** Starts one more agent; `deps` replaces its collaborators (e.g. a scripted endpoint dialer). */
  startAgent(overrides?: Partial<AgentConfig>, deps?: AgentDependencies): Promise<KonnectivityAgent>;
  waitForAgents(count?: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startDemoTarget(): Promise<{ server: http.Server; port: number; url: string }> {
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/bytes/')) {
      // /bytes/N streams N bytes (for throughput runs).
      let remaining = Number(req.url.slice('/bytes/'.length)) || 0;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(remaining) });
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = (): void => {
        while (remaining > 0) {
          const n = Math.min(remaining, chunk.length);
          remaining -= n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    const body = `hello from the demo target behind konnectivity: ${req.method} ${req.url}\n`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return { server, port, url: `http://127.0.0.1:${port}/` };
}

export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'konnectivity-'));
  const pki = options.pki ?? (await createDevPki(path.join(dir, 'pki')));
  const frontendClient = await pki.client('system:kube-apiserver');
  const logger = options.logger ?? silentLogger;
  const transport = options.frontendTransport ?? 'unix';
  const udsPath = path.join(dir, 'konnectivity-server.socket');
  const server = new KonnectivityServer({
    mode: options.mode,
    frontend:
      transport === 'unix'
        ? { transport: 'unix', path: udsPath, deleteExisting: true }
        : { transport: 'tcp', host: '127.0.0.1', port: 0, tls: { certPath: pki.server.certPath, keyPath: pki.server.keyPath, clientCaPath: pki.ca.certPath } },
    agent: { host: '127.0.0.1', port: 0, tls: { certPath: pki.server.certPath, keyPath: pki.server.keyPath } },
    health: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    serverId: randomUUID(),
    serverCount: 1,
    strategies: options.strategies ?? ['default'],
    keepaliveTimeMs: 3_600_000,
    frontendKeepaliveTimeMs: 3_600_000,
    backendDialTimeoutMs: 0,
    gracefulShutdownTimeoutMs: 0,
    logger: logger.child({ component: 'server' }),
    ...options.server,
  });
  const bound = await server.start();
  const demo = await startDemoTarget();
  const agents: KonnectivityAgent[] = [];

  const startAgent = async (overrides: Partial<AgentConfig> = {}, deps: AgentDependencies = {}): Promise<KonnectivityAgent> => {
    const agent = new KonnectivityAgent(
      {
        proxyServerHost: '127.0.0.1',
        proxyServerPort: bound.agentPort,
        caCertPath: pki.ca.certPath,
        agentID: randomUUID(),
        agentIdentifiers: '',
        syncIntervalMs: 200,
        syncIntervalCapMs: 1_000,
        probeIntervalMs: 500,
        ...options.agent,
        ...overrides,
      },
      { logger: logger.child({ component: 'agent' }), ...deps },
    );
    await agent.start();
    agents.push(agent);
    return agent;
  };

  const waitForAgents = async (count = agents.length, timeoutMs = 10_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (server.router.backendList.length < count) {
      if (Date.now() > deadline) throw new Error(`only ${server.router.backendList.length} of ${count} agents connected within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  for (let i = 0; i < (options.agents ?? 1); i++) await startAgent();
  await waitForAgents();

  const openTunnel = (mode: TunnelMode = options.mode): Tunnel =>
    createTunnel({
      mode,
      transport:
        transport === 'unix'
          ? { unix: udsPath }
          : { host: '127.0.0.1', port: Number(bound.frontend.split(':').at(-1)), tls: { ca: pki.ca.cert, cert: frontendClient.cert, key: frontendClient.key } },
    });

  return {
    dir,
    pki,
    server,
    agents,
    frontendClient,
    demo,
    openTunnel,
    startAgent,
    waitForAgents,
    async close() {
      await Promise.allSettled(agents.map((a) => a.stop()));
      await server.stop(0);
      demo.server.closeAllConnections();
      await new Promise<void>((r) => demo.server.close(() => r()));
      // A PKI passed in lives outside `dir`, so removing `dir` never touches it.
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
