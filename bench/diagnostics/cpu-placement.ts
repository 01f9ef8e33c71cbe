/**
 * How much of a dial's time is where the kernel runs the four processes:
 *
 *   npm run bench:placement -- [--dials 500] [--rounds 4] [--warm 4000] [--quick]
 *
 * The dial benchmark runs the load generator (this process), the server
 * (or relay 1), the agent (or relay 2) and the destination on one machine,
 * and on a two-core machine they take turns on two CPUs. The same dials run
 * here with the scheduler free to place the processes and with every thread
 * of each process pinned (`taskset -a`) in three layouts, on the first two
 * CPUs this process may use (called 0 and 1 here):
 *
 *   free   every process may run on every CPU (what the dial benchmark measures)
 *   cross  client CPU 0, server 1, agent 0, destination 1: every hand-off
 *          along the chain goes to the other CPU
 *   split  client and server on CPU 0, agent and destination on CPU 1 (the
 *          control-plane / node split of a real cluster)
 *   one    all four on CPU 0
 *
 * for `direct` (client and destination only), `floor` (chain-h2-mux of
 * bench/diagnostics/node-relay-floor.ts: the thinnest Node relay with our
 * agent link's shape) and `ours` (this checkout compiled, HTTP-CONNECT
 * mode). Layouts and targets alternate within each round. Reported per
 * layout and target: the dial p50 (median over rounds), and for each
 * process its main thread's time on a CPU and in the run queue per dial
 * (/proc/PID/schedstat): time a process was ready to run and waited for a
 * CPU. Needs `taskset` (util-linux), two CPUs and permission to pin (exits 2
 * with the reason otherwise). Nothing here asserts a speed.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Duplex } from 'node:stream';
import { compiledLayout, startCluster, type Cluster } from '../lib/cluster.ts';
import { startDestination } from '../lib/destination.ts';
import { diagnosticCli } from '../lib/diagnostic-cli.ts';
import { firstByteAfter } from '../lib/first-byte.ts';
import { startRelayChain } from '../lib/relay-chain.ts';
import { median, percentile, sortNumbers } from '../lib/stats.ts';
import { directTarget } from '../lib/targets.ts';
import { createDevPki } from '../../src/dev/pki.ts';
import { createTunnel, type Tunnel } from '../../src/client/index.ts';

const { values: opts } = parseArgs({
  options: {
    dials: { type: 'string' },
    rounds: { type: 'string' },
    warm: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
  strict: true,
});

const { usage, count, progress } = diagnosticCli('cpu-placement');
const dials = count('dials', opts.dials, opts.quick ? 40 : 500);
const rounds = count('rounds', opts.rounds, opts.quick ? 1 : 4);
const warm = count('warm', opts.warm, opts.quick ? 50 : 4000);

/** The CPU ids of a Linux CPU list such as "0,2-3". */
function cpuIds(list: string): number[] {
  return list.split(',').flatMap((part) => {
    const [from, to] = part.split('-').map(Number);
    return Array.from({ length: (to ?? from!) - from! + 1 }, (_, i) => from! + i);
  });
}

/** CPU ids this process may run on, from `taskset -c -p` ("…affinity list: 0,2-3"). */
function allowedCpus(): number[] {
  const out = execFileSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' });
  return cpuIds(out.slice(out.lastIndexOf(':') + 1).trim());
}

/** The CPU ids to pin to; a machine that cannot be pinned on is a usage error with the reason. */
function pinnableCpus(): { all: string; a: string; b: string } {
  let cpus: number[];
  try {
    cpus = allowedCpus();
  } catch {
    return usage('needs taskset (util-linux)');
  }
  if (cpus.length < 2) return usage(`needs two CPUs to pin to; this process may use ${cpus.join(',')}`);
  const all = cpus.join(',');
  try {
    // Pinning must be allowed, not only reading the affinity.
    execFileSync('taskset', ['-a', '-p', '-c', String(cpus[0]), String(process.pid)], { stdio: 'ignore' });
    execFileSync('taskset', ['-a', '-p', '-c', all, String(process.pid)], { stdio: 'ignore' });
  } catch {
    return usage('needs permission to set CPU affinity (sched_setaffinity)');
  }
  return { all, a: String(cpus[0]), b: String(cpus[1]) };
}

const ROLES = ['client', 'server', 'agent', 'destination'] as const;
type Role = (typeof ROLES)[number];
/** CPU list per role; the client is this process. */
type Layout = Record<Role, string>;

const { all, a, b } = pinnableCpus();
const layouts: Record<string, Layout> = {
  free: { client: all, server: all, agent: all, destination: all },
  cross: { client: a, server: b, agent: a, destination: b },
  split: { client: a, server: a, agent: b, destination: b },
  one: { client: a, server: a, agent: a, destination: a },
};

interface PlacementTarget {
  name: 'direct' | 'floor' | 'ours';
  dial(address: string): Promise<Duplex>;
  /** Server / relay 1 and agent / relay 2; none for direct. */
  pids: Partial<Record<Role, number>>;
}

/** Main thread: nanoseconds on a CPU, nanoseconds waiting in the run queue. */
function schedstat(pid: number): [number, number] {
  const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  return [run!, wait!];
}

/** Pins every thread of `pid` and checks that the kernel took it (a layout that did not apply would measure `free` again). */
function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const allowed = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1];
  if (allowed === undefined || cpuIds(allowed).join(',') !== cpuIds(cpus).join(',')) throw new Error(`pid ${pid} may run on CPUs ${allowed ?? '?'} after pinning it to ${cpus}`);
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'cpu-placement-'));
const children: ChildProcess[] = [];
const tunnels: Tunnel[] = [];
let cluster: Cluster | undefined;
const destination = await startDestination();
try {
  const pki = await createDevPki(path.join(dir, 'pki'));
  const floor = await startRelayChain({
    hop: 'h2-mux-connect',
    destination: destination.httpAddress,
    certPath: pki.server.certPath,
    keyPath: pki.server.keyPath,
    caPath: pki.ca.certPath,
    uds: path.join(dir, 'floor.sock'),
    children,
  });
  const code = compiledLayout(path.join(dir, 'build'));
  cluster = await startCluster({ mode: 'http-connect', dir, code, pki: { caCertPath: pki.ca.certPath, serverCertPath: pki.server.certPath, serverKeyPath: pki.server.keyPath } });
  progress(`ours: ${code.description}`);
  const floorTunnel = createTunnel({ mode: 'http-connect', transport: { unix: floor.uds } });
  const oursTunnel = createTunnel({ mode: 'http-connect', transport: { unix: cluster.udsPath } });
  tunnels.push(floorTunnel, oursTunnel);
  const direct = directTarget();
  const targets: PlacementTarget[] = [
    { name: 'direct', dial: (address) => direct.dial(address), pids: {} },
    { name: 'floor', dial: (address) => floorTunnel.dial('tcp', address), pids: { server: floor.pids[0], agent: floor.pids[1] } },
    { name: 'ours', dial: (address) => oursTunnel.dial('tcp', address), pids: { server: cluster.server.pid, agent: cluster.agent.pid } },
  ];
  const pidsOf = (t: PlacementTarget): Partial<Record<Role, number>> => ({ client: process.pid, ...t.pids, destination: destination.process.pid });
  const place = (t: PlacementTarget, layout: Layout): void => {
    for (const [role, pid] of Object.entries(pidsOf(t)) as [Role, number][]) pin(pid, layout[role]);
  };
  const dialMany = async (t: PlacementTarget, n: number): Promise<number[]> => {
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      samples.push(await firstByteAfter(t0, await t.dial(destination.httpAddress)));
    }
    return samples;
  };

  for (const t of targets) {
    progress(`${t.name}: ${warm} warm-up dials, unpinned…`);
    place(t, layouts.free!);
    await dialMany(t, warm);
  }
  const p50 = new Map<string, number[]>();
  /** Per key, per round: µs per dial on CPU and in the run queue, per role. */
  const sched = new Map<string, Partial<Record<Role, [number, number]>>[]>();
  const names = Object.keys(layouts);
  for (let round = 0; round < rounds; round++) {
    for (const layoutName of round % 2 === 0 ? names : [...names].reverse()) {
      for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
        const key = `${layoutName} ${t.name}`;
        place(t, layouts[layoutName]!);
        // A moved process first settles on its CPU; those dials are not counted.
        await dialMany(t, Math.max(10, Math.floor(dials / 5)));
        const pids = pidsOf(t);
        const before = Object.fromEntries(Object.entries(pids).map(([role, pid]) => [role, schedstat(pid)])) as Partial<Record<Role, [number, number]>>;
        const samples = sortNumbers(await dialMany(t, dials));
        const perDial: Partial<Record<Role, [number, number]>> = {};
        for (const [role, pid] of Object.entries(pids) as [Role, number][]) {
          const [run, wait] = schedstat(pid);
          perDial[role] = [(run - before[role]![0]) / dials / 1000, (wait - before[role]![1]) / dials / 1000];
        }
        (p50.get(key) ?? p50.set(key, []).get(key)!).push(percentile(samples, 50));
        (sched.get(key) ?? sched.set(key, []).get(key)!).push(perDial);
        progress(`round ${round + 1}/${rounds} ${layoutName.padEnd(5)} ${t.name.padEnd(6)} dial p50 ${percentile(samples, 50).toFixed(3)} ms`);
      }
    }
  }
  for (const t of targets) place(t, layouts.free!);
  report(targets.map((t) => t.name), names, p50, sched);
} finally {
  for (const tunnel of tunnels) await tunnel.close().catch(() => {});
  await cluster?.stop().catch(() => {});
  for (const child of children) child.kill();
  await destination.stop();
  rmSync(dir, { recursive: true, force: true });
}

function report(targetNames: string[], layoutNames: string[], p50: Map<string, number[]>, sched: Map<string, Partial<Record<Role, [number, number]>>[]>): void {
  const cell = (text: string, width = 10): string => text.padStart(width);
  console.log(`\ndial + first byte p50 (ms), median of ${rounds} round(s) of ${dials} dials, per CPU layout:`);
  console.log(`${'layout'.padEnd(8)}${targetNames.map((n) => cell(n)).join('')}${cell('ours÷floor', 12)}`);
  for (const layout of layoutNames) {
    const value = (name: string): number => median(p50.get(`${layout} ${name}`)!);
    console.log(`${layout.padEnd(8)}${targetNames.map((n) => cell(value(n).toFixed(3))).join('')}${cell(`${(value('ours') / value('floor')).toFixed(2)}×`, 12)}`);
  }
  console.log('\nmain thread per dial, µs on a CPU / µs waiting in the run queue (medians over rounds):');
  const roleHeader = ROLES.map((r) => cell(r, 14)).join('');
  console.log(`${'layout'.padEnd(8)}${'target'.padEnd(8)}${roleHeader}`);
  for (const layout of layoutNames) {
    for (const name of targetNames) {
      const perRound = sched.get(`${layout} ${name}`)!;
      const cells = ROLES.map((role) => {
        if (perRound[0]![role] === undefined) return cell('–', 14);
        const run = median(perRound.map((r) => r[role]![0]));
        const wait = median(perRound.map((r) => r[role]![1]));
        return cell(`${run.toFixed(0)} / ${wait.toFixed(0)}`, 14);
      });
      console.log(`${layout.padEnd(8)}${name.padEnd(8)}${cells.join('')}`);
    }
  }
}
