/**
 * Per-process CPU time and memory from /proc (Linux only), so the report can
 * say what the server and the agent cost, not only how fast the tunnel was.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User + system CPU seconds consumed so far by `pid` (its threads included, children excluded). */
export function cpuSeconds(pid: number): number {
  if (pid === process.pid) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  }
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / clockTicks();
}

/**
 * Times any thread of `pid` has gone to sleep and been woken since it started
 * (voluntary context switches, all threads): what an idle process costs a
 * machine beyond its CPU seconds, as each wake-up is a scheduler round trip.
 */
export function wakeUps(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const m = /^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
      if (m) total += Number(m[1]);
    } catch {
      // the thread exited between listing and reading
    }
  }
  return total;
}

export interface MemoryFacts {
  /** Resident set size now, MB (10^6 bytes). */
  rssMB: number;
  /** Peak resident set size since the process started, MB. */
  hwmMB: number;
  /**
   * The part of `rssMB` that is the process's own anonymous memory (heap,
   * stacks, buffers), MB: what a second copy of the process adds.
   */
  anonMB: number;
  /**
   * The part of `rssMB` backed by files (pages of the executable and shared
   * libraries it has touched), MB: shared with every process running the same
   * binary, and clean pages the kernel can drop under memory pressure before
   * it resorts to an out-of-memory kill.
   */
  fileMB: number;
}

/** VmRSS, VmHWM, RssAnon and RssFile of `pid`. */
export function memory(pid: number): MemoryFacts {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) : Number.NaN;
  };
  const mb = (name: string): number => (kb(name) * 1024) / 1e6;
  return { rssMB: mb('VmRSS'), hwmMB: mb('VmHWM'), anonMB: mb('RssAnon'), fileMB: mb('RssFile') };
}

/** CPU seconds of several processes, read at one moment. */
export function cpuSnapshot(pids: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) if (pid !== undefined) out[name] = cpuSeconds(pid);
  return out;
}

/** CPU seconds the whole machine spent busy so far (all cores, from /proc/stat). */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / clockTicks();
}

/**
 * CPU seconds used by everything except `pids` over `ms` milliseconds: how
 * busy other work kept the machine (a shared machine skews every figure).
 */
export async function foreignCpuSeconds(pids: readonly number[], ms: number): Promise<number> {
  const ours = (): number => pids.reduce((sum, pid) => sum + safeCpu(pid), 0);
  const m0 = machineBusySeconds();
  const o0 = ours();
  await new Promise((r) => setTimeout(r, ms));
  return Math.max(0, machineBusySeconds() - m0 - (ours() - o0));
}

function safeCpu(pid: number): number {
  try {
    return cpuSeconds(pid);
  } catch {
    return 0;
  }
}
