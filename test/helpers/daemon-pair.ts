/**
 * The konnectivity-server and konnectivity-agent binaries as an operator
 * runs them (upstream flag spelling), on loopback ports picked here, with
 * the waits that make them usable: server healthy, agent connected, both
 * ready. Tests add their own flags (frontend, verbosity, profiling).
 */
import http from 'node:http';
import type { TestContext } from 'node:test';
import { sharedPki } from './cluster.ts';
import { spawnBin, type BinProcess } from './processes.ts';
import { freePort } from './targets.ts';

/** HTTP status of a GET on loopback; 0 when nothing answers. */
export function httpStatus(port: number, urlPath: string): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
      .on('error', () => resolve(0));
  });
}

/** Polls until `urlPath` answers `want`; fails early, with the process's stderr, if it exits. */
export async function waitForStatus(port: number, urlPath: string, want: number, proc: BinProcess, what: string): Promise<void> {
  let last = 0;
  const deadline = Date.now() + 20_000;
  while ((last = await httpStatus(port, urlPath)) !== want) {
    if (!proc.running()) throw new Error(`${what} exited; stderr:\n${proc.stderr()}`);
    if (Date.now() > deadline) throw new Error(`${what}: ${urlPath} on port ${port} is ${last}, not ${want}; stderr:\n${proc.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface DaemonPair {
  server: BinProcess;
  agent: BinProcess;
  /** Server admin port (/metrics, status, /debug/pprof with --enable-profiling). */
  serverAdminPort: number;
  serverHealthPort: number;
  /** Agent health port (/healthz, /readyz, /metrics). */
  agentHealthPort: number;
  /** Agent admin port (status, /debug/pprof with --enable-profiling). */
  agentAdminPort: number;
}

export interface DaemonPairOptions {
  /** Frontend flags and anything else for the server (mode, --uds-name, --v, ...). */
  serverFlags: readonly string[];
  agentFlags?: readonly string[];
  /** Runs once the server is healthy, before the agent starts. */
  beforeAgent?: (ports: { serverHealthPort: number }) => Promise<void>;
}

export async function startDaemonPair(t: TestContext, options: DaemonPairOptions): Promise<DaemonPair> {
  const pki = await sharedPki();
  const [agentPort, serverAdminPort, serverHealthPort, agentHealthPort, agentAdminPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const server = spawnBin(t, 'konnectivity-server', [
    ...options.serverFlags,
    `--cluster-cert=${pki.server.certPath}`,
    `--cluster-key=${pki.server.keyPath}`,
    `--agent-port=${agentPort}`,
    '--agent-bind-address=127.0.0.1',
    `--admin-port=${serverAdminPort}`,
    `--health-port=${serverHealthPort}`,
    '--health-bind-address=127.0.0.1',
  ]);
  await waitForStatus(serverHealthPort, '/healthz', 200, server, 'konnectivity-server');
  await options.beforeAgent?.({ serverHealthPort });
  const agent = spawnBin(t, 'konnectivity-agent', [
    '--ca-cert', pki.ca.certPath,
    '--proxy-server-host', '127.0.0.1',
    '--proxy-server-port', String(agentPort),
    '--health-server-host', '127.0.0.1',
    '--health-server-port', String(agentHealthPort),
    '--admin-server-port', String(agentAdminPort),
    ...(options.agentFlags ?? []),
  ]);
  await waitForStatus(serverHealthPort, '/readyz', 200, server, 'konnectivity-server (waiting for the agent)');
  await waitForStatus(agentHealthPort, '/readyz', 200, agent, 'konnectivity-agent');
  return { server, agent, serverAdminPort, serverHealthPort, agentHealthPort, agentAdminPort };
}
