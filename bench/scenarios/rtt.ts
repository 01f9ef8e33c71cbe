/**
 * (2) Small request/response round trips on one kept-alive connection:
 * 2000 sequential `GET /` (quick: 200), each answered with a ~70-byte body.
 */
import { MiniHttpConnection } from '../lib/mini-http.ts';
import { CpuMeter, forEachRun, tunnelCpuPerUnit, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
import { median, percentile, sortNumbers } from '../lib/stats.ts';
import type { TargetName } from '../lib/targets.ts';

export const rtt: Scenario = {
  id: 'rtt',
  title: 'Small request/response round trips, one connection',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const count = ctx.quick ? 200 : 2000;
    const warmup = ctx.quick ? 50 : 200;
    const cpu = new CpuMeter(ctx);
    const errors: ScenarioResult['errors'] = {};
    const p50: Partial<Record<TargetName, number[]>> = {};
    const p99: Partial<Record<TargetName, number[]>> = {};
    await forEachRun(ctx, errors, 120_000, async (target, rep) => {
      const conn = new MiniHttpConnection(await target.dial(ctx.destination.httpAddress));
      try {
        for (let i = 0; i < warmup; i++) await conn.get('/');
        const samples = await cpu.measure(target, async () => {
          const out: number[] = [];
          for (let i = 0; i < count; i++) {
            const t0 = performance.now();
            const res = await conn.get('/');
            out.push(performance.now() - t0);
            if (res.status !== 200) throw new Error(`status ${res.status}`);
          }
          return sortNumbers(out);
        });
        return () => {
          (p50[target.name] ??= []).push(percentile(samples, 50));
          (p99[target.name] ??= []).push(percentile(samples, 99));
          ctx.progress(`    ${target.name.padEnd(12)} run ${rep + 1}/${ctx.reps}: p50 ${percentile(samples, 50).toFixed(3)} ms, p99 ${percentile(samples, 99).toFixed(3)} ms`);
        };
      } finally {
        conn.close();
      }
    }, ctx.reps, cpu);
    const med = (r: Partial<Record<TargetName, number[]>>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]));
    const cpuFigures = cpu.figures();
    return {
      id: 'rtt',
      title: this.title,
      method: `${count} sequential GET / (≈70-byte answer) on one kept-alive connection after ${warmup} warm-up requests; per-request time from write to the last response byte. Percentiles are nearest-rank; the median over ${ctx.reps} run(s) is reported.`,
      metrics: [
        { id: 'rtt-p50', label: 'Round trip p50', unit: 'ms', better: 'lower', values: med(p50), runs: p50, reference: { direct: 0.16, grpc: 0.53, 'http-connect': 0.42 }, goal: 0.4, digits: 3 },
        { id: 'rtt-p99', label: 'Round trip p99', unit: 'ms', better: 'lower', values: med(p99), runs: p99, reference: { direct: 2.3, grpc: 2.6, 'http-connect': 2.9 }, digits: 3 },
        { id: 'rtt-cpu', label: 'Server + agent CPU per round trip', unit: 'CPU µs', better: 'lower', values: tunnelCpuPerUnit(cpuFigures, count, 1e6), ratio: false, digits: 0 },
      ],
      cpu: cpuFigures,
      errors,
      notes: [],
    };
  },
};
