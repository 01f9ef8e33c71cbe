/**
 * (1) One-connection download throughput: GET /bytes/N on a fresh
 * connection; the clock runs from the request to the last body byte (the
 * dial is not included). N = 512 MiB (quick: 32 MiB).
 */
import { MiniHttpConnection } from '../lib/mini-http.ts';
import { CpuMeter, forEachRun, tunnelCpuPerUnit, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
import { median } from '../lib/stats.ts';
import type { Target, TargetName } from '../lib/targets.ts';

const MiB = 1024 * 1024;

export async function download(target: Target, address: string, bytes: number): Promise<number> {
  const conn = new MiniHttpConnection(await target.dial(address));
  try {
    const t0 = performance.now();
    const res = await conn.get(`/bytes/${bytes}`);
    const seconds = (performance.now() - t0) / 1000;
    if (res.status !== 200 || res.bodyBytes !== bytes) throw new Error(`expected ${bytes} bytes with 200, got ${res.bodyBytes} with ${res.status}`);
    return bytes / 1e6 / seconds;
  } finally {
    conn.close();
  }
}

export const throughput: Scenario = {
  id: 'throughput',
  title: 'One-connection download throughput',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const bytes = (ctx.quick ? 32 : 512) * MiB;
    const warmup = (ctx.quick ? 4 : 32) * MiB;
    const address = ctx.destination.httpAddress;
    const cpu = new CpuMeter(ctx);
    const errors: ScenarioResult['errors'] = {};
    const runs: Partial<Record<TargetName, number[]>> = {};
    await forEachRun(ctx, errors, 60_000, async (target) => {
      await download(target, address, warmup);
    }, 1);
    await forEachRun(ctx, errors, 300_000, async (target, rep) => {
      const mbps = await cpu.measure(target, () => download(target, address, bytes));
      return () => {
        (runs[target.name] ??= []).push(mbps);
        ctx.progress(`    ${target.name.padEnd(12)} run ${rep + 1}/${ctx.reps}: ${mbps.toFixed(1)} MB/s`);
      };
    }, ctx.reps, cpu);
    const values = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
    const cpuFigures = cpu.figures();
    return {
      id: 'throughput',
      title: this.title,
      method: `GET /bytes/${bytes} (${bytes / MiB} MiB) over one fresh connection per run, timed from the request to the last body byte; ${ctx.reps} run(s) per target after a ${warmup / MiB} MiB warm-up, median reported. MB = 10^6 bytes.`,
      metrics: [
        { id: 'throughput', label: `Download ${bytes / MiB} MiB, one connection`, unit: 'MB/s', better: 'higher', values, runs, reference: { direct: 4236, grpc: 174, 'http-connect': 186 }, goal: 350, digits: 0 },
        { id: 'throughput-cpu', label: 'Server + agent CPU per GiB downloaded', unit: 'CPU s', better: 'lower', values: tunnelCpuPerUnit(cpuFigures, bytes / (1024 * MiB)), ratio: false, digits: 2 },
      ],
      cpu: cpuFigures,
      errors,
      notes: [],
    };
  },
};
