/**
 * (4) 100 concurrent kept-alive connections, each doing sequential small
 * requests (GET /) for a fixed time; completed requests per second over all.
 */
import { MiniHttpConnection } from '../lib/mini-http.ts';
import { CpuMeter, forEachRun, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
import { mapLimit, median, percentile, sortNumbers } from '../lib/stats.ts';
import type { Target, TargetName } from '../lib/targets.ts';

export const CONCURRENT_CONNECTIONS = 100;

async function hammer(conns: MiniHttpConnection[], durationMs: number): Promise<{ requests: number; seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  let requests = 0;
  const t0 = performance.now();
  const stopAt = t0 + durationMs;
  await Promise.all(
    conns.map(async (conn) => {
      while (performance.now() < stopAt) {
        const s = performance.now();
        const res = await conn.get('/');
        latencies.push(performance.now() - s);
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        requests++;
      }
    }),
  );
  return { requests, seconds: (performance.now() - t0) / 1000, latencies };
}

async function openAll(target: Target, address: string): Promise<MiniHttpConnection[]> {
  return mapLimit(Array.from({ length: CONCURRENT_CONNECTIONS }), 20, async () => new MiniHttpConnection(await target.dial(address)));
}

export const concurrent: Scenario = {
  id: 'concurrent',
  title: `${CONCURRENT_CONNECTIONS} concurrent connections, small requests`,
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const durationMs = ctx.quick ? 1_000 : 5_000;
    const warmupMs = ctx.quick ? 300 : 1_000;
    const cpu = new CpuMeter(ctx);
    const errors: ScenarioResult['errors'] = {};
    const rps: Partial<Record<TargetName, number[]>> = {};
    const p99: Partial<Record<TargetName, number[]>> = {};
    await forEachRun(ctx, errors, durationMs + 120_000, async (target, rep) => {
      const conns = await openAll(target, ctx.destination.httpAddress);
      try {
        await hammer(conns, warmupMs);
        const r = await cpu.measure(target, () => hammer(conns, durationMs));
        const rate = r.requests / r.seconds;
        const lat = sortNumbers(r.latencies);
        return () => {
          (rps[target.name] ??= []).push(rate);
          (p99[target.name] ??= []).push(percentile(lat, 99));
          ctx.progress(`    ${target.name.padEnd(12)} run ${rep + 1}/${ctx.reps}: ${Math.round(rate)} req/s (latency p50 ${percentile(lat, 50).toFixed(2)} ms, p99 ${percentile(lat, 99).toFixed(2)} ms)`);
        };
      } finally {
        for (const c of conns) c.close();
      }
    }, ctx.reps, cpu);
    const med = (r: Partial<Record<TargetName, number[]>>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]));
    return {
      id: 'concurrent',
      title: this.title,
      method: `${CONCURRENT_CONNECTIONS} connections opened up front; each loops GET / (≈70-byte answer) with one request in flight per connection for ${durationMs / 1000} s after a ${warmupMs / 1000} s warm-up. Completed requests / elapsed seconds; median of ${ctx.reps} run(s).`,
      metrics: [
        { id: 'concurrent-rps', label: `${CONCURRENT_CONNECTIONS} connections, requests/s`, unit: 'req/s', better: 'higher', values: med(rps), runs: rps, reference: { direct: 11_700, grpc: 4_600, 'http-connect': 6_400 }, goal: 7_000, digits: 0 },
        { id: 'concurrent-p99', label: `${CONCURRENT_CONNECTIONS} connections, latency p99`, unit: 'ms', better: 'lower', values: med(p99), runs: p99, digits: 2 },
      ],
      cpu: cpu.figures(),
      errors,
      notes: [],
    };
  },
};
