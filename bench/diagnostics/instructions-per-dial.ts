/**
 * Instructions per dial (or per MiB downloaded) of the server or the agent,
 * counted by valgrind (callgrind), for changes too small for the timing
 * benchmarks on a shared two-core machine (they resolve about 5 %; this
 * about 2 %).
 *
 *   npm run bench:instructions -- [--mode http-connect|grpc] [--who server|agent]
 *                                 [--warm 2500] [--dials 500] [--reps 3] [--against PATH] [--quick]
 *                                 [--work download [--mib 64]] [--keep DIR]
 *
 * `--work download` measures GET /bytes/N over one tunnelled connection
 * instead of dials: `--mib` per run, two such downloads as warm-up, and the
 * figure is instructions per MiB.
 * The measured daemon runs under `valgrind --tool=callgrind --separate-threads=yes`;
 * the load generator, the other daemon and the destination run normally.
 * After `--warm` dials (V8 optimises per-dial code after about 3,000 calls
 * of a function, docs/benchmarks.md session 19), counters are zeroed and
 * dumped around each run of `--dials` dials. The main thread's count is the
 * figure: the other threads (TurboFan compiles, GC helpers) are reported
 * apart because they move by an order of magnitude between runs.
 * `--against PATH` measures another checkout (e.g. a `git worktree` of an
 * older commit) in the same invocation, runs alternating, and prints the
 * ratio. `--keep DIR` copies the callgrind files there (one per thread and
 * dump: cg.<pid>.<dump>-<thread>) for `callgrind_annotate`. Valgrind counts
 * user-space instructions only: system calls, cache misses and wake-ups are
 * not in it.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { compiledLayout, startCluster, type Cluster } from '../lib/cluster.ts';
import { startDestination } from '../lib/destination.ts';
import { diagnosticCli } from '../lib/diagnostic-cli.ts';
import { firstByteAfter } from '../lib/first-byte.ts';
import { tunnelTarget, type Target } from '../lib/targets.ts';
import { download } from '../scenarios/throughput.ts';
import { createDevPki } from '../../src/dev/pki.ts';

const run = promisify(execFile);
const { values: opts } = parseArgs({
  options: {
    mode: { type: 'string', default: 'http-connect' },
    who: { type: 'string', default: 'server' },
    warm: { type: 'string' },
    dials: { type: 'string' },
    reps: { type: 'string' },
    against: { type: 'string' },
    quick: { type: 'boolean', default: false },
    work: { type: 'string', default: 'dial' },
    mib: { type: 'string' },
    keep: { type: 'string' },
  },
  strict: true,
});
const { usage, count } = diagnosticCli('instructions-per-dial');
const mode = opts.mode === 'grpc' ? 'grpc' : opts.mode === 'http-connect' ? 'http-connect' : usage(`--mode ${opts.mode}: http-connect or grpc`);
const who = opts.who === 'server' || opts.who === 'agent' ? opts.who : usage(`--who ${opts.who}: server or agent`);
const work = opts.work === 'dial' || opts.work === 'download' ? opts.work : usage(`--work ${opts.work}: dial or download`);
const mib = count('mib', opts.mib, opts.quick ? 4 : 64);
const warm = count('warm', opts.warm, opts.quick ? 50 : 2500);
const dials = count('dials', opts.dials, opts.quick ? 50 : 500);
const reps = count('reps', opts.reps, opts.quick ? 1 : 3);

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

try {
  await run('valgrind', ['--version']);
} catch {
  usage('valgrind is not installed (apt-get install valgrind)');
}

interface Arm {
  label: string;
  cluster: Cluster;
  target: Target;
  outDir: string;
  pid: number;
  dumps: number;
  main: number[];
  other: number[];
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'konnectivity-instructions-'));
const pki = await createDevPki(path.join(dir, 'pki'));
const destination = await startDestination();
const arms: Arm[] = [];
try {
  const roots = [{ label: 'this checkout', root: undefined as string | undefined }, ...(opts.against ? [{ label: path.resolve(opts.against), root: path.resolve(opts.against) }] : [])];
  for (const [i, { label, root }] of roots.entries()) {
    const armDir = path.join(dir, `arm-${i}`);
    const outDir = path.join(armDir, 'callgrind');
    mkdirSync(outDir, { recursive: true });
    const code = compiledLayout(path.join(armDir, 'build'), root);
    // Kept files are read one dump at a time: each must name its functions itself.
    const keepFlags = opts.keep ? ['--compress-strings=no', '--compress-pos=no'] : [];
    const prefix = ['valgrind', '--tool=callgrind', '--separate-threads=yes', '--dump-line=no', ...keepFlags, `--callgrind-out-file=${outDir}/cg.%p`];
    progress(`${label}: starting the ${mode} cluster with the ${who} under valgrind (slow: about 30 s)…`);
    const cluster = await startCluster({ mode, dir: armDir, code, pki: { caCertPath: pki.ca.certPath, serverCertPath: pki.server.certPath, serverKeyPath: pki.server.keyPath }, commandPrefix: { [who]: prefix } });
    const target = tunnelTarget(cluster);
    arms.push({ label, cluster, target, outDir, pid: (who === 'server' ? cluster.server : cluster.agent).pid, dumps: 0, main: [], other: [] });
  }
  const dialOnce = async (target: Target): Promise<void> => {
    const t0 = performance.now();
    await firstByteAfter(t0, await target.dial(destination.httpAddress));
  };
  const MiB = 1024 * 1024;
  // One unit of work, and how many units a run is: a dial, or a MiB of a download.
  const runWork = work === 'dial' ? async (target: Target): Promise<void> => {
    for (let i = 0; i < dials; i++) await dialOnce(target);
  } : async (target: Target): Promise<void> => {
    await download(target, destination.httpAddress, mib * MiB);
  };
  const units = work === 'dial' ? dials : mib;
  const unit = work === 'dial' ? 'dial' : 'MiB';
  for (const arm of arms) {
    if (work === 'dial') {
      progress(`${arm.label}: ${warm} warm-up dials…`);
      for (let i = 0; i < warm; i++) {
        await dialOnce(arm.target);
        if ((i + 1) % 500 === 0) progress(`  ${i + 1}/${warm}`);
      }
    } else {
      progress(`${arm.label}: two warm-up downloads of ${mib} MiB…`);
      for (let i = 0; i < 2; i++) await runWork(arm.target);
    }
  }
  for (let rep = 0; rep < reps; rep++) {
    for (const arm of rep % 2 === 0 ? arms : [...arms].reverse()) {
      await dump(arm); // zeroes the counters
      await runWork(arm.target);
      const counts = await dump(arm);
      arm.main.push(counts.main / units);
      arm.other.push(counts.other / units);
      progress(`${arm.label}: run ${rep + 1}/${reps}: main thread ${(counts.main / units / 1000).toFixed(1)}k instructions per ${unit}, other threads ${(counts.other / units / 1000).toFixed(1)}k`);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const what = work === 'dial' ? `${dials} dials per run after ${warm} warm-up` : `a ${mib} MiB download per run after two warm-up downloads`;
  console.log(`instructions per ${unit}, ${who}, ${mode} mode (${what}; median of ${reps} runs, valgrind callgrind):`);
  for (const arm of arms) {
    console.log(`${arm.label}: main thread ${(median(arm.main) / 1000).toFixed(1)}k (runs ${arm.main.map((x) => (x / 1000).toFixed(1)).join(', ')}), other threads ${(median(arm.other) / 1000).toFixed(1)}k (runs ${arm.other.map((x) => (x / 1000).toFixed(1)).join(', ')})`);
  }
  if (arms.length === 2) console.log(`this checkout ÷ --against, main thread: ${(median(arms[0]!.main) / median(arms[1]!.main)).toFixed(3)}`);
} finally {
  for (const arm of arms) {
    await arm.target.close().catch(() => {});
    await arm.cluster.stop().catch(() => {});
  }
  await destination.stop();
  if (opts.keep) {
    for (const [i, arm] of arms.entries()) cpSync(arm.outDir, path.join(path.resolve(opts.keep), `arm-${i}`), { recursive: true });
    console.log(`callgrind files kept in ${path.resolve(opts.keep)} (arm-0 = this checkout)`);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Dumps (and so zeroes) the daemon's counters; returns what the dump holds, main thread and the rest. */
async function dump(arm: Arm): Promise<{ main: number; other: number }> {
  await run('callgrind_control', ['--dump', String(arm.pid)]);
  arm.dumps++;
  let main = 0;
  let other = 0;
  // One file per thread: cg.<pid>.<dump>-<thread>, thread 01 being the main thread.
  for (const file of readdirSync(arm.outDir).filter((f) => f.startsWith(`cg.${arm.pid}.${arm.dumps}-`))) {
    const summary = /^summary: (\d+)/m.exec(readFileSync(path.join(arm.outDir, file), 'utf8'));
    const n = summary ? Number(summary[1]) : 0;
    if (file.endsWith('-01')) main += n;
    else other += n;
  }
  if (main === 0) throw new Error(`callgrind wrote no main-thread counts for dump ${arm.dumps} of pid ${arm.pid} in ${arm.outDir}`);
  return { main, other };
}
