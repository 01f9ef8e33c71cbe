/**
 * An HA konnectivity on one machine (spec §7.3): N proxy-servers with
 * distinct serverIDs and `serverCount: N` sharing one throwaway PKI, an
 * optional haproxy (TCP, roundrobin) in front of their agent ports, M agents
 * pointed at haproxy or - without it - at every server directly
 * (`additionalProxyServers`, the agent's `--proxy-server-addresses`), and
 * destinations (the demo HTTP target and a TCP echo server). Servers can be
 * stopped and restarted on the same ports, agents killed; close() undoes all.
 * The HA tests and `npm run cluster` (scripts/cluster-in-a-box.ts) share it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import { createDevPki, type DevPki } from './pki.ts';
import { startDemoTarget } from './local-cluster.ts';
import { closedPort } from './loopback-ports.ts';
import { KonnectivityServer, type ServerConfig } from '../server/konnectivity-server.ts';
import { KonnectivityAgent, type AgentDependencies } from '../agent/konnectivity-agent.ts';
import type { AgentConfig } from '../agent/agent-config.ts';
import { createTunnel } from '../client/create-tunnel.ts';
import type { Tunnel, TunnelMode } from '../client/tunnel-options.ts';
import { silentLogger, type Logger } from '../observability/logger.ts';

export const HAPROXY_INSTALL_HINT = 'haproxy is required for the load-balanced HA cluster: install it with `apt-get install -y haproxy` (Debian/Ubuntu) or set HAPROXY=/path/to/haproxy';

export interface HaClusterOptions {
  servers: number;
  agents: number;
  /** Put haproxy in front of the servers' agent ports (default true). */
  loadBalancer?: boolean;
  mode?: TunnelMode;
  logger?: Logger;
  /** Overrides merged into every server config. */
  server?: Partial<ServerConfig>;
  /** Overrides merged into every agent config. */
  agent?: Partial<AgentConfig>;
  /**
   * haproxy's `balance` algorithm (default `roundrobin`). With roundrobin,
   * agents whose sync loops tick in step can keep landing on the servers they
   * already have (2 agents, 2 servers: stuck for 8 s and more in about one
   * start in six); `random` cannot lock in step.
   */
  balance?: 'roundrobin' | 'random' | 'leastconn';
  /** The haproxy binary (default $HAPROXY, /usr/sbin/haproxy, then haproxy on PATH). */
  haproxyPath?: string;
  /** Reuse an existing PKI (its dir is not removed on close). */
  pki?: DevPki;
}

export interface HaServer {
  readonly index: number;
  readonly serverId: string;
  /** Fixed at first start, reused by restarts. */
  readonly agentPort: number;
  /** The frontend's unix socket (same path across restarts). */
  readonly frontendPath: string;
  /** The running instance, or null while stopped. */
  instance: KonnectivityServer | null;
  /** agentIDs connected to this server now (empty while stopped). */
  readonly agentIds: string[];
  /** True during a graceful stop (the server refuses new frontends and agents). */
  stopping: boolean;
}

export interface HaCluster {
  readonly dir: string;
  readonly pki: DevPki;
  readonly mode: TunnelMode;
  readonly servers: HaServer[];
  readonly agents: KonnectivityAgent[];
  /** haproxy's listening port, or null without a load balancer. */
  readonly loadBalancerPort: number | null;
  readonly demo: { server: http.Server; port: number; url: string };
  /** A TCP echo server (`127.0.0.1:port`): whatever is written comes back. */
  readonly echo: { server: net.Server; address: string };
  /** A tunnel through server `index`'s frontend (closed with the cluster). */
  openTunnel(index: number): Tunnel;
  /** Starts an agent; `deps` e.g. a lease counter (`--count-server-leases`). */
  startAgent(overrides?: Partial<AgentConfig>, deps?: Pick<AgentDependencies, 'leaseCounter'>): Promise<KonnectivityAgent>;
  /** Stops agent `index` abruptly (no DRAIN) and removes it from `agents`. */
  killAgent(index: number): Promise<void>;
  /**
   * Stops agent `index` the way a rollout does: DRAIN (first SIGTERM), wait
   * until its endpoint connections have ended or `gracePeriodMs` passed, then
   * stop it (second SIGTERM) and remove it from `agents`. Resolves with the
   * number of endpoint connections the stop cut (0 when the drain finished).
   */
  drainAgent(index: number, gracePeriodMs: number): Promise<number>;
  /** drainAgent, then a new agent with the same agentID (pushed at the end of `agents`). */
  restartAgent(index: number, gracePeriodMs: number): Promise<{ agent: KonnectivityAgent; cut: number }>;
  /**
   * Stops server `index`. Grace 0: tunnels through it are cut at once. With a
   * grace period (`--graceful-shutdown-timeout`) `instance` stays set while
   * established tunnels finish, and `stopping` is true meanwhile.
   */
  stopServer(index: number, gracePeriodMs?: number): Promise<void>;
  /** Starts a stopped server again with the same serverId, agent port and frontend socket. */
  startServer(index: number): Promise<void>;
  restartServer(index: number, gracePeriodMs?: number): Promise<void>;
  /**
   * Waits until every agent holds a stream to every running server and
   * every running server has every agent (bounded; throws with the state).
   */
  waitForFullMesh(timeoutMs?: number): Promise<void>;
  /** One line per agent and server: who is connected to whom. */
  describe(): string;
  close(): Promise<void>;
}

/** The haproxy binary to use, or null when none is installed. */
export function findHaproxy(explicit?: string): string | null {
  const candidates = [explicit, process.env.HAPROXY, '/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/bin/haproxy', '/usr/local/bin/haproxy'];
  for (const c of candidates) if (c && existsSync(c)) return c;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'haproxy'))) return path.join(dir, 'haproxy');
  }
  return null;
}

function haproxyConfig(port: number, backends: readonly number[], balance: string): string {
  return [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    // gRPC streams live for hours; haproxy must not cut idle ones.
    '  timeout client 1h',
    '  timeout server 1h',
    '  retries 2',
    '  option redispatch',
    'frontend konnectivity_agents',
    `  bind 127.0.0.1:${port}`,
    '  default_backend konnectivity_servers',
    'backend konnectivity_servers',
    `  balance ${balance}`,
    ...backends.map((p, i) => `  server s${i} 127.0.0.1:${p} check inter 500ms fall 1 rise 1`),
    '',
  ].join('\n');
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`haproxy exited (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`haproxy did not listen on 127.0.0.1:${port} within ${timeoutMs} ms: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startEcho(): Promise<{ server: net.Server; address: string }> {
  const server = net.createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, address: `127.0.0.1:${(server.address() as net.AddressInfo).port}` };
}

export async function startHaCluster(options: HaClusterOptions): Promise<HaCluster> {
  if (!Number.isInteger(options.servers) || options.servers < 1) throw new Error('servers must be a positive integer');
  if (!Number.isInteger(options.agents) || options.agents < 0) throw new Error('agents must be 0 or more');
  const useLb = options.loadBalancer ?? true;
  const haproxyBin = useLb ? findHaproxy(options.haproxyPath) : null;
  if (useLb && !haproxyBin) throw new Error(HAPROXY_INSTALL_HINT);
  const mode = options.mode ?? 'grpc';
  const logger = options.logger ?? silentLogger;
  const dir = mkdtempSync(path.join(tmpdir(), 'konnectivity-ha-'));
  const pki = options.pki ?? (await createDevPki(path.join(dir, 'pki')));
  const servers: HaServer[] = [];
  const agents: KonnectivityAgent[] = [];
  const tunnels: Tunnel[] = [];
  let haproxy: ChildProcess | null = null;
  let loadBalancerPort: number | null = null;
  let demo: Awaited<ReturnType<typeof startDemoTarget>> | null = null;
  let echo: Awaited<ReturnType<typeof startEcho>> | null = null;
  let closed = false;

  const makeServer = (index: number, serverId: string, agentPort: number, frontendPath: string): KonnectivityServer =>
    new KonnectivityServer({
      mode,
      frontend: { transport: 'unix', path: frontendPath, deleteExisting: true },
      agent: { host: '127.0.0.1', port: agentPort, tls: { certPath: pki.server.certPath, keyPath: pki.server.keyPath } },
      health: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      serverId,
      serverCount: options.servers,
      strategies: ['default'],
      keepaliveTimeMs: 3_600_000,
      frontendKeepaliveTimeMs: 3_600_000,
      backendDialTimeoutMs: 0,
      gracefulShutdownTimeoutMs: 0,
      tlsReloadIntervalMs: 0,
      logger: logger.child({ component: 'server', server: index }),
      ...options.server,
    });

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await Promise.allSettled(tunnels.map((t) => t.close()));
    await Promise.allSettled(agents.map((a) => a.stop()));
    await Promise.allSettled(servers.map((s) => s.instance?.stop(0)));
    for (const s of servers) s.instance = null;
    if (haproxy && haproxy.exitCode === null && haproxy.signalCode === null) {
      const exited = once(haproxy, 'exit');
      haproxy.kill('SIGTERM');
      const timer = setTimeout(() => haproxy?.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    if (demo) {
      demo.server.closeAllConnections();
      await new Promise<void>((r) => demo!.server.close(() => r()));
    }
    if (echo) await new Promise<void>((r) => echo!.server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    for (let i = 0; i < options.servers; i++) {
      const serverId = `ha-server-${i}-${randomUUID().slice(0, 8)}`;
      const frontendPath = path.join(dir, `server-${i}.socket`);
      const instance = makeServer(i, serverId, 0, frontendPath);
      const bound = await instance.start();
      const entry: HaServer = {
        index: i,
        serverId,
        agentPort: bound.agentPort,
        frontendPath,
        instance,
        stopping: false,
        get agentIds() {
          return this.instance ? [...new Set(this.instance.router.backendList.map((b) => b.agentId))] : [];
        },
      };
      servers.push(entry);
    }

    if (haproxyBin) {
      // A loopback port nothing listens on yet: haproxy binds it.
      loadBalancerPort = await closedPort();
      const cfg = path.join(dir, 'haproxy.cfg');
      writeFileSync(cfg, haproxyConfig(loadBalancerPort, servers.map((s) => s.agentPort), options.balance ?? 'roundrobin'));
      let stderr = '';
      const child = spawn(haproxyBin, ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
      haproxy = child;
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => {
        stderr = (stderr + d).slice(-4096);
      });
      child.on('error', (err) => {
        stderr += `\n${err.message}`;
      });
      await waitForPort(loadBalancerPort, child, () => stderr.trim());
    }

    demo = await startDemoTarget();
    echo = await startEcho();
  } catch (err) {
    await close();
    throw err;
  }

  const startAgent = async (overrides: Partial<AgentConfig> = {}, deps: Pick<AgentDependencies, 'leaseCounter'> = {}): Promise<KonnectivityAgent> => {
    const target =
      loadBalancerPort !== null
        ? { proxyServerHost: '127.0.0.1', proxyServerPort: loadBalancerPort }
        : {
            proxyServerHost: '127.0.0.1',
            proxyServerPort: servers[0]!.agentPort,
            additionalProxyServers: servers.slice(1).map((s) => ({ host: '127.0.0.1', port: s.agentPort })),
          };
    const agent = new KonnectivityAgent(
      {
        ...target,
        caCertPath: pki.ca.certPath,
        agentID: randomUUID(),
        agentIdentifiers: '',
        syncIntervalMs: 100,
        syncIntervalCapMs: 1_000,
        probeIntervalMs: 200,
        ...options.agent,
        ...overrides,
      },
      { logger: logger.child({ component: 'agent', agent: agents.length }), ...deps },
    );
    await agent.start();
    agents.push(agent);
    return agent;
  };

  const describe = (): string => {
    const name = new Map(servers.map((s) => [s.serverId, `s${s.index}`]));
    const lines = agents.map((a, i) => `agent ${i} (${a.config.agentID.slice(0, 8)}): [${a.connectedServerIDs.map((id) => name.get(id) ?? id).sort().join(' ')}]`);
    for (const s of servers) lines.push(`server s${s.index}${s.instance ? (s.stopping ? ' (stopping)' : '') : ' (stopped)'}: ${s.agentIds.length} agent(s)`);
    return lines.join('\n');
  };

  const cluster: HaCluster = {
    dir,
    pki,
    mode,
    servers,
    agents,
    loadBalancerPort,
    demo: demo!,
    echo: echo!,
    openTunnel(index) {
      const s = servers[index];
      if (!s) throw new Error(`no server ${index}`);
      const tunnel = createTunnel({ mode, transport: { unix: s.frontendPath } });
      tunnels.push(tunnel);
      return tunnel;
    },
    startAgent,
    async killAgent(index) {
      const [agent] = agents.splice(index, 1);
      if (!agent) throw new Error(`no agent ${index}`);
      await agent.stop();
    },
    async drainAgent(index, gracePeriodMs) {
      const agent = agents[index];
      if (!agent) throw new Error(`no agent ${index}`);
      agent.drain();
      const deadline = Date.now() + gracePeriodMs;
      while (agent.endpointConnectionCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const cut = agent.endpointConnectionCount;
      agents.splice(agents.indexOf(agent), 1);
      await agent.stop();
      return cut;
    },
    async restartAgent(index, gracePeriodMs) {
      const agentID = agents[index]?.config.agentID;
      if (agentID === undefined) throw new Error(`no agent ${index}`);
      const cut = await cluster.drainAgent(index, gracePeriodMs);
      return { agent: await startAgent({ agentID }), cut };
    },
    async stopServer(index, gracePeriodMs = 0) {
      const s = servers[index];
      if (!s) throw new Error(`no server ${index}`);
      const instance = s.instance;
      if (!instance) return;
      if (gracePeriodMs > 0) {
        s.stopping = true;
        try {
          await instance.stop(gracePeriodMs);
        } finally {
          s.stopping = false;
          s.instance = null;
        }
        return;
      }
      s.instance = null;
      await instance.stop(0);
    },
    async startServer(index) {
      const s = servers[index];
      if (!s) throw new Error(`no server ${index}`);
      if (s.instance) return;
      const instance = makeServer(index, s.serverId, s.agentPort, s.frontendPath);
      // The port was ours a moment ago; retry briefly in case the old listener is still letting go.
      for (let attempt = 0; ; attempt++) {
        try {
          await instance.start();
          break;
        } catch (err) {
          if (attempt >= 20 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      s.instance = instance;
    },
    async restartServer(index, gracePeriodMs = 0) {
      await cluster.stopServer(index, gracePeriodMs);
      await cluster.startServer(index);
    },
    async waitForFullMesh(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const running = servers.filter((s) => s.instance && !s.stopping);
        const ids = new Set(running.map((s) => s.serverId));
        const agentIds = agents.map((a) => a.config.agentID);
        const agentsOk = agents.every((a) => {
          const have = new Set(a.connectedServerIDs);
          return [...ids].every((id) => have.has(id));
        });
        const serversOk = running.every((s) => {
          const have = new Set(s.agentIds);
          return agentIds.every((id) => have.has(id));
        });
        if (agentsOk && serversOk) return;
        if (Date.now() > deadline) throw new Error(`no full mesh within ${timeoutMs} ms:\n${describe()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    describe,
    close,
  };

  try {
    for (let i = 0; i < options.agents; i++) await startAgent();
  } catch (err) {
    await close();
    throw err;
  }
  return cluster;
}

/**
 * Sends `payload` to the cluster's echo server through `tunnel`, reads the
 * same number of bytes back, closes, and returns what came back. (Tunnels
 * have no half-close, so the close comes only after the echo is complete.)
 */
export async function echoThroughTunnel(tunnel: Tunnel, echoAddress: string, payload: Buffer, timeoutMs = 30_000): Promise<Buffer> {
  const socket = await tunnel.dial('tcp', echoAddress, { timeoutMs });
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let got = 0;
      const timer = setTimeout(() => reject(new Error(`echo of ${payload.length} bytes: only ${got} back within ${timeoutMs} ms`)), timeoutMs);
      const finish = (err: Error | null): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        if (err) reject(err);
        else resolve(Buffer.concat(chunks, got));
      };
      const onData = (d: Buffer): void => {
        chunks.push(d);
        got += d.length;
        if (got >= payload.length) finish(null);
      };
      socket.on('data', onData);
      socket.once('error', (err) => finish(err));
      socket.once('close', () => {
        if (got < payload.length) finish(new Error(`echo of ${payload.length} bytes: connection closed after ${got}`));
      });
      socket.write(payload);
    });
  } finally {
    socket.end();
  }
}
