/**
 * `konnectivity quickstart`: a working local konnectivity on built-in
 * defaults. Throwaway PKI in a temp dir, one server + one agent per frontend
 * mode (upstream runs one mode per server), a demo HTTP target, one request
 * through each tunnel, then a one-line live status until Ctrl-C.
 */
import http from 'node:http';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createDevPki } from '../dev/pki.ts';
import { startLocalCluster, type LocalCluster } from '../dev/local-cluster.ts';
import type { TunnelConnection, TunnelMode } from '../client/tunnel-options.ts';
import { createLogger } from '../observability/logger.ts';
import type { CliIO } from './konnectivity-main.ts';

function fetchThrough(socket: TunnelConnection, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ createConnection: () => socket as unknown as import('node:net').Socket, path: urlPath, host: 'demo' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const usageText = `Usage:
  konnectivity quickstart [--verbose] [--once]

Starts a throwaway local konnectivity: a CA and certificates in a temp dir,
one konnectivity-server per frontend mode (gRPC and HTTP-CONNECT, each on a
unix socket like kube-apiserver uses), one agent each, a demo HTTP target,
and sends one request through each tunnel. Then shows a live status line
until Ctrl-C.

Flags:
      --once      exit after the requests instead of staying up
      --verbose   show server and agent logs
`;

export async function runQuickstartCommand(args: readonly string[], io: CliIO): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout.write(usageText);
    return 0;
  }
  const unknown = args.filter((a) => a !== '--once' && a !== '--verbose');
  if (unknown.length > 0) {
    io.stderr.write(`Error: unknown flag: ${unknown[0]}\n${usageText}`);
    return 2;
  }
  const once = args.includes('--once');
  const logger = createLogger({ verbosity: args.includes('--verbose') ? 2 : -1, format: 'text' });
  const say = (line: string): void => void io.stdout.write(line + '\n');

  const dir = mkdtempSync(path.join(tmpdir(), 'konnectivity-quickstart-'));
  say(`[1/4] generating a throwaway CA and certificates in ${dir}`);
  const pki = await createDevPki(path.join(dir, 'pki'));
  const clusters: Array<{ mode: TunnelMode; cluster: LocalCluster }> = [];
  let failed = false;
  try {
    for (const mode of ['grpc', 'http-connect'] as const) {
      say(`[2/4] starting konnectivity-server (--mode=${mode}, unix socket frontend) and one agent`);
      const cluster = await startLocalCluster({ mode, frontendTransport: 'unix', pki, logger });
      clusters.push({ mode, cluster });
    }
    const demo = clusters[0]!.cluster.demo;
    say(`[3/4] demo HTTP target listening on ${demo.url}`);
    for (const { mode, cluster } of clusters) {
      const tunnel = cluster.openTunnel();
      const started = performance.now();
      try {
        const socket = await tunnel.dial('tcp', `127.0.0.1:${demo.port}`, { timeoutMs: 10_000 });
        const res = await fetchThrough(socket, `/via-${mode}`);
        const ms = (performance.now() - started).toFixed(1);
        say(`[4/4] ${mode.padEnd(12)} → HTTP ${res.status} in ${ms} ms: ${res.body.trim()}`);
        if (res.status !== 200) failed = true;
      } catch (err) {
        failed = true;
        say(`[4/4] ${mode.padEnd(12)} → FAILED: ${err instanceof Error ? err.message : String(err)}`);
      } finally {
        await tunnel.close();
      }
    }
    if (failed || once) return failed ? 1 : 0;

    say('');
    for (const { mode, cluster } of clusters) {
      const a = cluster.server.addresses;
      say(`${mode} server: frontend ${a.frontend}, agents :${a.agentPort}, health http://127.0.0.1:${a.healthPort}/readyz, metrics http://127.0.0.1:${a.adminPort}/metrics`);
    }
    const grpcSocket = clusters[0]!.cluster.server.addresses.frontend;
    say(`try: npm run konnectivity -- client --mode grpc --proxy-uds ${grpcSocket} --url ${demo.url}`);
    say('Ctrl-C to stop.');
    await new Promise<void>((resolve) => {
      const tty = (io.stdout as NodeJS.WriteStream).isTTY === true;
      const render = (): void => {
        const parts = clusters.map(({ mode, cluster }) => {
          const r = cluster.server.router;
          return `${mode}: agents ${r.backendList.length}, ready ${r.registry.ready ? 'yes' : 'no'}, open ${r.establishedCount}, pending ${r.pendingDialCount}`;
        });
        const line = `${new Date().toISOString().slice(11, 19)} ${parts.join(' | ')}`;
        io.stdout.write(tty ? `\r${line}\x1b[K` : line + '\n');
      };
      render();
      const timer = setInterval(render, tty ? 1000 : 10_000);
      process.once('SIGINT', () => {
        clearInterval(timer);
        io.stdout.write('\n');
        resolve();
      });
    });
    return 0;
  } finally {
    say('stopping…');
    await Promise.allSettled(clusters.map(({ cluster }) => cluster.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}
