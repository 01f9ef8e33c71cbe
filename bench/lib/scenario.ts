/** Shared types of the benchmark scenarios and the CPU bookkeeping around each measured run. */
import { cpuSnapshot, machineBusySeconds } from './proc.ts';
import type { Destination } from './destination.ts';
import type { Target, TargetName } from './targets.ts';

export const scenarioIds = ['throughput', 'rtt', 'dial', 'concurrent', 'idle', 'hol', 'many'] as const;
export type ScenarioId = (typeof scenarioIds)[number];

export interface BenchContext {
  quick: boolean;
  /** Measured repetitions per target; medians are reported (3, or 1 with --quick). */
  reps: number;
  /** `direct` first, then the tunnel modes asked for. */
  targets: Target[];
  destination: Destination;
  /** One progress line for the person waiting. */
  progress(line: string): void;
  /** Every process of the bench (this one, destination, all servers and agents). */
  benchPids: number[];
  /**
   * Shared-machine guard (--wait-quiet): wait for a quiet machine before each
   * measured run, and repeat a run during which processes outside the bench
   * used more than `maxForeignShare` of one core.
   */
  gate?: { waitQuiet(): Promise<void>; maxForeignShare: number; maxAttempts: number };
}

export interface Metric {
  id: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  /** The reported figure per target (median of runs). */
  values: Partial<Record<TargetName, number>>;
  /** Every run's figure, for the record. */
  runs?: Partial<Record<TargetName, number[]>>;
  /** Upstream Go v0.36.0 figures from the performance issue (another 2-core machine). */
  reference?: Partial<Record<TargetName, number>>;
  /** The target for the tunnel modes. */
  goal?: number;
  /** False when a ratio to direct means nothing (e.g. server RSS). */
  ratio?: boolean;
  /** Digits after the decimal point when printed. */
  digits?: number;
}

/** CPU seconds per measured run (mean over runs) and the wall time they were spent in. */
export interface CpuFigures {
  server?: number;
  agent?: number;
  client: number;
  destination: number;
  /** CPU seconds used by processes outside the bench meanwhile (a shared machine). */
  foreign: number;
  wallS: number;
}

/**
 * Server + agent CPU per unit of work (per GiB, per dial, per round trip),
 * from a scenario's CPU figures: an efficiency figure that compares two
 * implementations run side by side with less of the machine's spread than a
 * wall-clock figure. `unitsPerRun` is how many units one measured run did.
 */
export function tunnelCpuPerUnit(cpu: Partial<Record<TargetName, CpuFigures>>, unitsPerRun: number, scale = 1): Partial<Record<TargetName, number>> {
  const out: Partial<Record<TargetName, number>> = {};
  for (const [name, f] of Object.entries(cpu) as [TargetName, CpuFigures][]) {
    if (f.server !== undefined && f.agent !== undefined) out[name] = ((f.server + f.agent) / unitsPerRun) * scale;
  }
  return out;
}

export interface ScenarioResult {
  id: ScenarioId;
  title: string;
  /** What exactly was measured, for the report. */
  method: string;
  metrics: Metric[];
  cpu: Partial<Record<TargetName, CpuFigures>>;
  /** Per-target failures; any makes the run exit non-zero. */
  errors: Partial<Record<TargetName, string>>;
  notes: string[];
}

export interface Scenario {
  id: ScenarioId;
  title: string;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}

interface CpuSums {
  server: number;
  agent: number;
  client: number;
  destination: number;
  foreign: number;
  wallS: number;
  runs: number;
}

const zeroSums = (): CpuSums => ({ server: 0, agent: 0, client: 0, destination: 0, foreign: 0, wallS: 0, runs: 0 });

/**
 * Adds up CPU seconds of the processes involved in a target's measured runs.
 * `measure` stages the figures of the current run; forEachRun commits them,
 * or discards them when the run is repeated.
 */
export class CpuMeter {
  private readonly sums = new Map<TargetName, CpuSums>();
  private readonly pending = new Map<TargetName, CpuSums>();

  private readonly ctx: BenchContext;

  constructor(ctx: BenchContext) {
    this.ctx = ctx;
  }

  /** Runs `fn`, charging the CPU used meanwhile to `target`. */
  async measure<T>(target: Target, fn: () => Promise<T>): Promise<T> {
    const pids = { server: target.serverPid, agent: target.agentPid, client: process.pid, destination: this.ctx.destination.process.pid };
    const all = Object.fromEntries(this.ctx.benchPids.map((pid) => [String(pid), pid]));
    const before = cpuSnapshot(pids);
    const allBefore = cpuSnapshot(all);
    const machineBefore = machineBusySeconds();
    const t0 = performance.now();
    const result = await fn();
    const wallS = (performance.now() - t0) / 1000;
    const after = cpuSnapshot(pids);
    const allAfter = cpuSnapshot(all);
    const machineAfter = machineBusySeconds();
    const benchUsed = Object.keys(allAfter).reduce((sum, k) => sum + allAfter[k]! - (allBefore[k] ?? allAfter[k]!), 0);
    const s = this.pending.get(target.name) ?? zeroSums();
    // Tick granularity (10 ms per process) can make this slightly negative on short runs.
    s.foreign += Math.max(0, machineAfter - machineBefore - benchUsed);
    s.server += (after.server ?? 0) - (before.server ?? 0);
    s.agent += (after.agent ?? 0) - (before.agent ?? 0);
    s.client += after.client! - before.client!;
    s.destination += after.destination! - before.destination!;
    s.wallS += wallS;
    this.pending.set(target.name, s);
    return result;
  }

  /** Share of one core that other processes used during the staged run. */
  pendingForeignShare(target: TargetName): number {
    const p = this.pending.get(target);
    return p && p.wallS > 0 ? p.foreign / p.wallS : 0;
  }

  discard(target: TargetName): void {
    this.pending.delete(target);
  }

  commit(target: TargetName): void {
    const p = this.pending.get(target);
    if (!p) return;
    this.pending.delete(target);
    const s = this.sums.get(target) ?? zeroSums();
    for (const k of ['server', 'agent', 'client', 'destination', 'foreign', 'wallS'] as const) s[k] += p[k];
    s.runs++;
    this.sums.set(target, s);
  }

  figures(): Partial<Record<TargetName, CpuFigures>> {
    const out: Partial<Record<TargetName, CpuFigures>> = {};
    for (const [name, s] of this.sums) {
      const n = s.runs || 1;
      out[name] = {
        ...(name === 'direct' ? {} : { server: s.server / n, agent: s.agent / n }),
        client: s.client / n,
        destination: s.destination / n,
        foreign: s.foreign / n,
        wallS: s.wallS / n,
      };
    }
    return out;
  }
}

/** Rejects when `p` takes longer than `ms`. */
export async function withTimeout<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** What a run body returns: records its figures (called once the run is accepted). */
export type Commit = (() => void) | void;

/**
 * The usual loop: for each repetition, every target once (interleaved, so
 * drift hits all targets alike). A target that fails is recorded and skipped
 * from then on. With a `meter` and the shared-machine gate, a run disturbed
 * by other processes is repeated (its figures and CPU discarded).
 */
export async function forEachRun(
  ctx: BenchContext,
  errors: Partial<Record<TargetName, string>>,
  timeoutMs: number,
  body: (target: Target, rep: number) => Promise<Commit>,
  reps = ctx.reps,
  meter?: CpuMeter,
): Promise<void> {
  for (let rep = 0; rep < reps; rep++) {
    for (const target of ctx.targets) {
      if (errors[target.name]) continue;
      try {
        for (let attempt = 1; ; attempt++) {
          meter?.discard(target.name);
          if (meter && ctx.gate) await ctx.gate.waitQuiet();
          const commit = await withTimeout(`${target.name} run ${rep + 1}`, timeoutMs, body(target, rep));
          const share = meter ? meter.pendingForeignShare(target.name) : 0;
          if (meter && ctx.gate && share > ctx.gate.maxForeignShare && attempt < ctx.gate.maxAttempts) {
            ctx.progress(`    ${target.name.padEnd(12)} run ${rep + 1}: other processes used ${(100 * share).toFixed(0)} % of one core meanwhile; repeating`);
            continue;
          }
          meter?.commit(target.name);
          commit?.();
          break;
        }
      } catch (err) {
        meter?.discard(target.name);
        errors[target.name] = errorText(err);
        ctx.progress(`    ${target.name}: FAILED: ${errorText(err)}`);
      }
    }
  }
}
