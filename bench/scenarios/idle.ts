/**
 * (5) Memory of the server and agent processes: resident set size when idle
 * right after start (agent connected, no traffic yet), and again after the
 * load scenarios, with the peak (VmHWM) seen so far. The CPU seconds of each
 * process per scenario are reported by every other scenario.
 */
import { memory } from '../lib/proc.ts';
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

export const idle: Scenario = {
  id: 'idle',
  title: 'Idle memory of server and agent',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    await sleep(ctx.quick ? 500 : 2_000);
    const metrics = rssMetrics(ctx, 'idle after start', 'idle-start', false, { server: 35, agent: 37 }, true);
    for (const m of metrics) ctx.progress(`    ${m.label}: ${Object.entries(m.values).map(([k, v]) => `${k} ${v!.toFixed(1)} MB`).join(', ')}`);
    return {
      id: 'idle',
      title: this.title,
      method: 'VmRSS from /proc/<pid>/status of the server and agent processes (MB = 10^6 bytes), idle: once right after start with the agent connected and no traffic yet (after a short settle), once after the load scenarios (before the many-connections one), with VmHWM (peak RSS) so far. No GC is forced. Right after start, RSS is also split into RssAnon (the process\'s own heap, stacks and buffers) and RssFile (touched pages of the executable and shared libraries: shared by every process running the same binary; clean pages the kernel can drop under memory pressure before it resorts to an out-of-memory kill).',
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
