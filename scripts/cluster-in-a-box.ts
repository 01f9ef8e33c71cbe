/**
 * `npm run cluster -- --servers 3 --agents 2 [--no-lb] [--seconds N]`
 *
 * Starts an HA konnectivity on loopback (src/dev/ha-cluster.ts): N servers
 * with serverCount N, haproxy in front of their agent ports (or, with
 * --no-lb, agents given every server directly, as --proxy-server-addresses
 * does), M agents, and an echo destination. Then runs a bounded traffic
 * generator: concurrent transfers of random bytes through random servers'
 * frontends, each verified by sha256 on the way back. Prints the mesh and
 * progress every few seconds and a summary at the end; exits by itself after
 * --seconds (default 30) or on Ctrl-C. Exit status 1 if any transfer failed
 * or was corrupted.
 */
import { parseArgs } from 'node:util';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { echoThroughTunnel, startHaCluster, type HaCluster } from '../src/dev/ha-cluster.ts';
import type { Tunnel } from '../src/client/tunnel-options.ts';

const USAGE = `usage: npm run cluster -- [--servers N] [--agents M] [--no-lb] [--seconds S] [--concurrency C] [--max-bytes B] [--mode grpc|http-connect]
  --servers      proxy-servers (serverCount), default 3
  --agents       agents, default 2
  --no-lb        no haproxy: agents connect to every server directly (--proxy-server-addresses)
  --seconds      run time of the traffic generator, default 30 (0 = start, show the mesh, stop)
  --concurrency  transfers in flight, default 8
  --max-bytes    largest transfer, default 1048576
  --mode         frontend mode, default grpc`;

function intOption(value: string | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer >= ${min}\n${USAGE}`);
    process.exit(2);
  }
  return n;
}

const { values } = parseArgs({
  options: {
    servers: { type: 'string' },
    agents: { type: 'string' },
    'no-lb': { type: 'boolean', default: false },
    seconds: { type: 'string' },
    concurrency: { type: 'string' },
    'max-bytes': { type: 'string' },
    mode: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const servers = intOption(values.servers, 'servers', 3, 1);
const agents = intOption(values.agents, 'agents', 2, 1);
const seconds = intOption(values.seconds, 'seconds', 30, 0);
const concurrency = intOption(values.concurrency, 'concurrency', 8, 1);
const maxBytes = intOption(values['max-bytes'], 'max-bytes', 1024 * 1024, 1);
const mode = values.mode ?? 'grpc';
if (mode !== 'grpc' && mode !== 'http-connect') {
  console.error(`--mode must be grpc or http-connect\n${USAGE}`);
  process.exit(2);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const log = (msg: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

let cluster: HaCluster;
try {
  cluster = await startHaCluster({ servers, agents, loadBalancer: !values['no-lb'], mode });
} catch (err) {
  console.error(`could not start the cluster: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
log(
  `${servers} server(s), ${agents} agent(s), ${cluster.loadBalancerPort !== null ? `haproxy on 127.0.0.1:${cluster.loadBalancerPort}` : 'no load balancer (agents dial every server)'}, mode ${mode}`,
);
for (const s of cluster.servers) {
  const a = s.instance!.addresses;
  log(`server s${s.index} ${s.serverId}: agent port ${s.agentPort}, frontend ${s.frontendPath}, health :${a.healthPort}, admin :${a.adminPort}`);
}

let stopping = false;
void new Promise<void>((resolve) => {
  const onSignal = (): void => {
    if (stopping) process.exit(130); // second Ctrl-C: do not wait
    stopping = true;
    log('interrupted: finishing transfers in flight');
    resolve();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
});

try {
  await cluster.waitForFullMesh(30_000);
  log(`full mesh:\n${cluster.describe()}`);
} catch (err) {
  log(err instanceof Error ? err.message : String(err));
  await cluster.close();
  process.exit(1);
}

const tunnels: Tunnel[] = cluster.servers.map((s) => cluster.openTunnel(s.index));
const stats = { ok: 0, failed: 0, corrupted: 0, bytes: 0, perServer: cluster.servers.map(() => 0) };
const errors = new Map<string, number>();
const started = Date.now();
const deadline = started + seconds * 1000;

async function worker(): Promise<void> {
  while (!stopping && Date.now() < deadline) {
    const i = randomInt(cluster.servers.length);
    const payload = randomBytes(randomInt(1, maxBytes + 1));
    try {
      const back = await echoThroughTunnel(tunnels[i]!, cluster.echo.address, payload, 30_000);
      if (sha(back) === sha(payload)) {
        stats.ok++;
        stats.bytes += payload.length;
        stats.perServer[i]!++;
      } else {
        stats.corrupted++;
      }
    } catch (err) {
      stats.failed++;
      const key = err instanceof Error ? err.message.slice(0, 120) : String(err);
      errors.set(key, (errors.get(key) ?? 0) + 1);
    }
  }
}

const progress = setInterval(() => {
  const s = (Date.now() - started) / 1000;
  log(`${stats.ok} ok, ${stats.failed} failed, ${stats.corrupted} corrupted, ${(stats.bytes / 1048576).toFixed(1)} MiB echoed (${(stats.bytes / 1048576 / s).toFixed(1)} MiB/s); streams per agent: ${cluster.agents.map((a) => a.connectedServerIDs.length).join(' ')}`);
}, 5_000);

if (seconds > 0) {
  log(`traffic: ${concurrency} concurrent sha256-verified echo transfers of up to ${maxBytes} bytes through random servers for ${seconds} s (Ctrl-C to stop early)`);
  // Workers stop starting transfers at the deadline or on Ctrl-C and finish the one in flight (bounded by its timeout).
  await Promise.all(Array.from({ length: concurrency }, worker));
}
clearInterval(progress);

const elapsed = (Date.now() - started) / 1000;
console.log('\n--- summary');
console.log(`duration        ${elapsed.toFixed(1)} s`);
console.log(`transfers ok    ${stats.ok} (${cluster.servers.map((s, i) => `s${s.index}: ${stats.perServer[i]}`).join(', ')})`);
console.log(`failed          ${stats.failed}`);
console.log(`corrupted       ${stats.corrupted}`);
console.log(`bytes echoed    ${stats.bytes} (${elapsed > 0 ? (stats.bytes / 1048576 / elapsed).toFixed(1) : '0'} MiB/s)`);
for (const [msg, n] of errors) console.log(`  ${n} x ${msg}`);
console.log(`mesh at the end:\n${cluster.describe()}`);

await cluster.close();
process.exit(stats.failed > 0 || stats.corrupted > 0 ? 1 : 0);
