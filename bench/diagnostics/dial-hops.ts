/**
 * Where an HTTP-CONNECT dial's time goes, hop by hop:
 *
 *   npm run bench:dial-hops -- [--dials 400] [--rounds 2] [--warm 4000] [--against PATH] [--keep DIR] [--quick]
 *
 * The dial scenario's p50 says how long a dial takes; this says which
 * process spends it on what. The client (this process), the server, the
 * agent and the destination are recorded with `perf record` on scheduler
 * and system-call tracepoints while they dial back to back, and each dial
 * is rebuilt from its system calls (bench/lib/hop-timeline.ts): the time
 * from one step to the next, e.g. from the agent's connect() to the
 * destination until it writes the DIAL_RSP, or from the server writing
 * DIAL_REQ until the agent reads it (in that row, "waits" is how long the
 * reader stood in the run queue after being woken).
 *
 * Targets, in alternating rounds after `--warm` dials each: `floor`, the
 * thinnest Node relay with our agent link's shape (chain-h2-mux of
 * bench/diagnostics/node-relay-floor.ts: one HTTP/2 stream over TLS
 * carrying every dial, no protocol, no logs, metrics or graceful closes),
 * and `ours` (this checkout, compiled, in HTTP-CONNECT mode), and with
 * `--against PATH` another checkout (e.g. a `git worktree` of an older
 * commit). `--keep DIR` keeps each round's perf.data there (`perf script -i`
 * shows every call in order). Needs `perf` with tracepoint access (Debian's linux-perf, as
 * root or with kernel.perf_event_paranoid ≤ 1); tracing slows every
 * system call a little, the same for every target. Nothing here asserts
 * a speed.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { compiledLayout, startCluster, type Cluster } from '../lib/cluster.ts';
import { startDestination } from '../lib/destination.ts';
import { diagnosticCli } from '../lib/diagnostic-cli.ts';
import { firstByteAfter } from '../lib/first-byte.ts';
import { analyseHopTrace, DIAL_SEQUENCE, HOP_TRACE_EVENTS, HOP_TRACE_FIELDS, type HopRole, type HopTimeline } from '../lib/hop-timeline.ts';
import { perfTracepointProblem } from '../lib/perf-probe.ts';
import { startRelayChain } from '../lib/relay-chain.ts';
import { median, percentile, sortNumbers } from '../lib/stats.ts';
import { createDevPki } from '../../src/dev/pki.ts';
import { createTunnel, type Tunnel } from '../../src/client/index.ts';

const run = promisify(execFile);
const { values: opts } = parseArgs({
  options: {
    dials: { type: 'string' },
    rounds: { type: 'string' },
    warm: { type: 'string' },
    against: { type: 'string' },
    keep: { type: 'string' },
    quick: { type: 'boolean', default: false },
  },
  strict: true,
});

const { usage, count, progress } = diagnosticCli('dial-hops');
const dials = count('dials', opts.dials, opts.quick ? 60 : 400);
const rounds = count('rounds', opts.rounds, opts.quick ? 1 : 2);
const warm = count('warm', opts.warm, opts.quick ? 100 : 4000);

interface HopTarget {
  name: string;
  tunnel: Tunnel;
  server: number;
  agent: number;
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'dial-hops-'));
const children: ChildProcess[] = [];
const clusters: Cluster[] = [];
const targets: HopTarget[] = [];
const destination = await startDestination();
try {
  const problem = perfTracepointProblem(HOP_TRACE_EVENTS);
  if (problem) usage(problem);
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
  targets.push({ name: 'floor', tunnel: createTunnel({ mode: 'http-connect', transport: { unix: floor.uds } }), server: floor.pids[0], agent: floor.pids[1] });
  const checkouts = [{ name: 'ours', root: undefined as string | undefined }, ...(opts.against ? [{ name: 'against', root: path.resolve(opts.against) }] : [])];
  for (const { name, root } of checkouts) {
    const armDir = path.join(dir, name);
    const code = compiledLayout(path.join(armDir, 'build'), root);
    const cluster = await startCluster({ mode: 'http-connect', dir: armDir, code, pki: { caCertPath: pki.ca.certPath, serverCertPath: pki.server.certPath, serverKeyPath: pki.server.keyPath } });
    clusters.push(cluster);
    targets.push({ name, tunnel: createTunnel({ mode: 'http-connect', transport: { unix: cluster.udsPath } }), server: cluster.server.pid, agent: cluster.agent.pid });
    progress(`${name}: ${code.description}`);
  }
  const dialOnce = async (target: HopTarget): Promise<number> => {
    const t0 = performance.now();
    return firstByteAfter(t0, await target.tunnel.dial('tcp', destination.httpAddress));
  };
  for (const target of targets) {
    progress(`${target.name}: ${warm} warm-up dials…`);
    for (let i = 0; i < warm; i++) await dialOnce(target);
  }
  const merged = new Map<string, HopTimeline[]>();
  const p50s = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    for (const target of round % 2 === 0 ? targets : [...targets].reverse()) {
      const file = path.join(dir, `${target.name}-${round}.data`);
      const pids: Record<HopRole, number> = { client: process.pid, server: target.server, agent: target.agent, destination: destination.process.pid };
      const perf = spawn('perf', ['record', '-q', '-o', file, ...HOP_TRACE_EVENTS.flatMap((e) => ['-e', e]), '-p', Object.values(pids).join(',')], { stdio: ['ignore', 'ignore', 'pipe'] });
      let perfErr = '';
      perf.stderr!.on('data', (chunk: Buffer) => (perfErr += chunk.toString()));
      // perf attaches asynchronously and says nothing when it has; dials before that are simply not in the trace.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const samples: number[] = [];
      for (let i = 0; i < dials; i++) samples.push(await dialOnce(target));
      await new Promise((resolve) => setTimeout(resolve, 200));
      perf.kill('SIGINT');
      const [code, signal] = (await once(perf, 'exit')) as [number | null, NodeJS.Signals | null];
      // Debian's perf is a wrapper script: SIGINT may end it by the signal while perf itself writes its file.
      if (code !== 0 && signal !== 'SIGINT') throw new Error(`perf record exited with ${code ?? signal}: ${perfErr.trim()}`);
      const { stdout } = await run('perf', ['script', '-i', file, '-F', HOP_TRACE_FIELDS], { maxBuffer: 1 << 30 });
      const timeline = analyseHopTrace(stdout, pids);
      if (opts.keep) {
        mkdirSync(opts.keep, { recursive: true });
        copyFileSync(file, path.join(opts.keep, `${target.name}-${round + 1}.data`));
      }
      rmSync(file, { force: true });
      if (timeline.dials < dials / 2) throw new Error(`${target.name}: only ${timeline.dials} of ${dials} dials found whole in the trace (${timeline.anchors} client connects)`);
      sortNumbers(samples);
      (p50s.get(target.name) ?? p50s.set(target.name, []).get(target.name)!).push(percentile(samples, 50));
      (merged.get(target.name) ?? merged.set(target.name, []).get(target.name)!).push(timeline);
      progress(`${target.name} round ${round + 1}/${rounds}: dial p50 ${percentile(samples, 50).toFixed(3)} ms while traced; ${timeline.dials} of ${dials} dials rebuilt, median ${median(timeline.totalUs).toFixed(0)} µs from connect() to the first byte`);
    }
  }
  report(merged, p50s);
} finally {
  for (const target of targets) await target.tunnel.close().catch(() => {});
  for (const cluster of clusters) await cluster.stop().catch(() => {});
  for (const child of children) child.kill();
  await destination.stop();
  rmSync(dir, { recursive: true, force: true });
}

function report(merged: Map<string, HopTimeline[]>, p50s: Map<string, number[]>): void {
  const names = [...merged.keys()];
  const all = (name: string, pick: (t: HopTimeline) => number[]): number[] => merged.get(name)!.flatMap(pick);
  const width = Math.max(...DIAL_SEQUENCE.map((s) => s.label.length)) + 4;
  const cell = (text: string): string => text.padStart(18);
  console.log(`\nHTTP-CONNECT dial, hop by hop (medians over ${rounds} round(s) of ${dials} traced dials; µs since the previous step, and for reads the median wait in the run queue when the reader had slept):`);
  console.log(`${'step'.padEnd(width)}${names.map(cell).join('')}`);
  for (let k = 1; k < DIAL_SEQUENCE.length; k++) {
    const cells = names.map((name) => {
      const step = median(all(name, (t) => t.stepUs[k]!));
      const waits = all(name, (t) => t.runQueueUs[k]!);
      return cell(waits.length > 0 ? `${step.toFixed(0)} (waits ${median(waits).toFixed(0)})` : step.toFixed(0));
    });
    console.log(`${`→ ${DIAL_SEQUENCE[k]!.label}`.padEnd(width)}${cells.join('')}`);
  }
  console.log(`${'connect() to first byte, median'.padEnd(width)}${names.map((n) => cell(median(all(n, (t) => t.totalUs)).toFixed(0))).join('')}`);
  console.log(`${'dial p50 while traced (ms)'.padEnd(width)}${names.map((n) => cell(median(p50s.get(n)!).toFixed(3))).join('')}`);
  for (const role of ['client', 'server', 'agent', 'destination'] as const) {
    const label = `${role === 'server' ? 'server / relay 1' : role === 'agent' ? 'agent / relay 2' : role} main thread on CPU per dial`;
    const cells = names.map((n) => {
      const timelines = merged.get(n)!;
      const busy = timelines.reduce((s, t) => s + t.mainThreadBusyUs[role], 0) / timelines.reduce((s, t) => s + t.anchors, 0);
      return cell(busy.toFixed(0));
    });
    console.log(`${label.padEnd(width)}${cells.join('')}`);
  }
}
