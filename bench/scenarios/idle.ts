/**
 * (5) Memory of the server and agent processes: resident set size when idle
 * right after start (agent connected, no traffic yet), and again after the
 * load scenarios, with the peak (VmHWM) seen so far. Right after start also
 * the CPU and wake-ups of each idle process (an agent runs on every node, often
 * with a 10–15m CPU request). The CPU seconds of each process per load
 * scenario are reported by every other scenario.
 */
import { cpuSeconds, memory, wakeUps } from '../lib/proc.ts';
import type { BenchContext, Metric, Scenario, ScenarioResult } from '../lib/scenario.ts';
import { sleep } from '../lib/stats.ts';
import type { TargetName } from '../lib/targets.ts';

function rssMetrics(ctx: BenchContext, phase: string, idPrefix: string, withPeak: boolean, reference?: { server: number; agent: number }, withSplit = false): Metric[] {
  const server: Partial<Record<TargetName, number>> = {};
  const agent: Partial<Record<TargetName, number>> = {};
  const serverPeak: Partial<Record<TargetName, number>> = {};
  const agentPeak: Partial<Record<TargetName, number>> = {};
  const serverAnon: Partial<Record<TargetName, number>> = {};
  const agentAnon: Partial<Record<TargetName, number>> = {};
  const serverFile: Partial<Record<TargetName, number>> = {};
  const agentFile: Partial<Record<TargetName, number>> = {};
  for (const t of ctx.targets) {
    if (t.serverPid === undefined || t.agentPid === undefined) continue;
    const s = memory(t.serverPid);
    const a = memory(t.agentPid);
    server[t.name] = s.rssMB;
    agent[t.name] = a.rssMB;
    serverPeak[t.name] = s.hwmMB;
    agentPeak[t.name] = a.hwmMB;
    serverAnon[t.name] = s.anonMB;
    agentAnon[t.name] = a.anonMB;
    serverFile[t.name] = s.fileMB;
    agentFile[t.name] = a.fileMB;
  }
  const ref = (v: number | undefined) => (v === undefined ? undefined : { grpc: v, 'http-connect': v });
  const metrics: Metric[] = [
    { id: `${idPrefix}-server`, label: `Server RSS, ${phase}`, unit: 'MB', better: 'lower', values: server, ratio: false, digits: 1, reference: ref(reference?.server) },
    { id: `${idPrefix}-agent`, label: `Agent RSS, ${phase}`, unit: 'MB', better: 'lower', values: agent, ratio: false, digits: 1, reference: ref(reference?.agent) },
  ];
  if (withSplit) {
    // RSS counts the pages of the executable a process has touched. Node's
    // executable is 127 MB (OpenSSL, ICU and V8 linked in), so the totals
    // compare binaries as much as the memory each process holds for itself.
    metrics.push(
      { id: `${idPrefix}-server-anon`, label: `Server private memory (RssAnon), ${phase}`, unit: 'MB', better: 'lower', values: serverAnon, ratio: false, digits: 1 },
      { id: `${idPrefix}-agent-anon`, label: `Agent private memory (RssAnon), ${phase}`, unit: 'MB', better: 'lower', values: agentAnon, ratio: false, digits: 1 },
      { id: `${idPrefix}-server-file`, label: `Server file-backed pages (RssFile: executable, libraries), ${phase}`, unit: 'MB', better: 'lower', values: serverFile, ratio: false, digits: 1 },
      { id: `${idPrefix}-agent-file`, label: `Agent file-backed pages (RssFile: executable, libraries), ${phase}`, unit: 'MB', better: 'lower', values: agentFile, ratio: false, digits: 1 },
    );
  }
  if (withPeak) {
    metrics.push(
      { id: `${idPrefix}-server-peak`, label: 'Server peak RSS so far', unit: 'MB', better: 'lower', values: serverPeak, ratio: false, digits: 1 },
      { id: `${idPrefix}-agent-peak`, label: 'Agent peak RSS so far', unit: 'MB', better: 'lower', values: agentPeak, ratio: false, digits: 1 },
    );
  }
  return metrics;
}

/** CPU (% of one core) and wake-ups per second of every idle server and agent, all measured over the same `ms`. */
async function idleCostMetrics(ctx: BenchContext, ms: number): Promise<Metric[]> {
  const procs = ctx.targets.flatMap((t) =>
    t.serverPid === undefined || t.agentPid === undefined
      ? []
      : [
          { target: t.name, role: 'server' as const, pid: t.serverPid },
          { target: t.name, role: 'agent' as const, pid: t.agentPid },
        ],
  );
  const before = procs.map((p) => ({ cpu: cpuSeconds(p.pid), wakes: wakeUps(p.pid) }));
  await sleep(ms);
  type PerRole = Record<'server' | 'agent', Partial<Record<TargetName, number>>>;
  const cpu: PerRole = { server: {}, agent: {} };
  const wakes: PerRole = { server: {}, agent: {} };
  procs.forEach((p, i) => {
    cpu[p.role][p.target] = ((cpuSeconds(p.pid) - before[i]!.cpu) / (ms / 1000)) * 100;
    wakes[p.role][p.target] = (wakeUps(p.pid) - before[i]!.wakes) / (ms / 1000);
  });
  return (['server', 'agent'] as const).flatMap((role): Metric[] => {
    const who = role === 'server' ? 'Server' : 'Agent';
    return [
      { id: `idle-cpu-${role}`, label: `${who} CPU, idle after start`, unit: '% of one core', better: 'lower', values: cpu[role], ratio: false, digits: 2 },
      { id: `idle-wakeups-${role}`, label: `${who} wake-ups per second, idle after start`, unit: '/s', better: 'lower', values: wakes[role], ratio: false, digits: 0 },
    ];
  });
}

export const idle: Scenario = {
  id: 'idle',
  title: 'Idle memory of server and agent',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    await sleep(ctx.quick ? 500 : 2_000);
    const metrics = rssMetrics(ctx, 'idle after start', 'idle-start', false, { server: 35, agent: 37 }, true);
    for (const m of metrics) ctx.progress(`    ${m.label}: ${Object.entries(m.values).map(([k, v]) => `${k} ${v!.toFixed(1)} MB`).join(', ')}`);
    const idleMs = ctx.quick ? 1_000 : 10_000;
    ctx.progress(`    idle CPU and wake-ups over ${idleMs / 1000} s…`);
    const costs = await idleCostMetrics(ctx, idleMs);
    for (const m of costs) ctx.progress(`    ${m.label}: ${Object.entries(m.values).map(([k, v]) => `${k} ${v!.toFixed(m.digits)} ${m.unit}`).join(', ')}`);
    metrics.push(...costs);
    return {
      id: 'idle',
      title: this.title,
      method: `VmRSS from /proc/<pid>/status of the server and agent processes (MB = 10^6 bytes), idle: once right after start with the agent connected and no traffic yet (after a short settle), once after the load scenarios (before the many-connections one), with VmHWM (peak RSS) so far. No GC is forced. Right after start, RSS is also split into RssAnon (the process's own heap, stacks and buffers) and RssFile (touched pages of the executable and shared libraries: shared by every process running the same binary; clean pages the kernel can drop under memory pressure before it resorts to an out-of-memory kill). Then, with every server and agent idle at once for ${ctx.quick ? 1 : 10} s: CPU seconds (utime + stime from /proc/<pid>/stat, 10 ms ticks) as a share of one core, and wake-ups per second (voluntary context switches of all threads, /proc/<pid>/task/*/status). Agents run with --sync-interval=100ms here (upstream's default is 1s), which adds its own wake-ups.`,
      metrics,
      cpu: {},
      errors: {},
      notes: [],
    };
  },
};

/** Appends the after-load figures to the idle result. */
export async function addAfterLoad(ctx: BenchContext, result: ScenarioResult): Promise<void> {
  await sleep(ctx.quick ? 500 : 3_000);
  const metrics = rssMetrics(ctx, 'idle after the load scenarios', 'idle-after', true);
  for (const m of metrics) ctx.progress(`    ${m.label}: ${Object.entries(m.values).map(([k, v]) => `${k} ${v!.toFixed(1)} MB`).join(', ')}`);
  result.metrics.push(...metrics);
}
