/**
 * (3) New connection: dial + first byte. Each sample dials the destination,
 * writes `GET /` and stops the clock at the first response byte; then reads
 * the rest and closes the connection before the next sample.
 */
import { CpuMeter, forEachRun, tunnelCpuPerUnit, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
import { median, percentile, sortNumbers } from '../lib/stats.ts';
import type { Target, TargetName } from '../lib/targets.ts';
import { firstByteAfter, newGrpcConnectionFirstByte } from '../lib/first-byte.ts';

/** Milliseconds from starting the dial to the first response byte. */
async function dialFirstByte(target: Target, address: string): Promise<number> {
  const t0 = performance.now();
  return firstByteAfter(t0, await target.dial(address));
}

export const dial: Scenario = {
  id: 'dial',
  title: 'New connection: dial + first byte',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const count = ctx.quick ? 50 : 500;
    const warmup = ctx.quick ? 10 : 50;
    // Code that runs once per dial reaches V8's top tier (TurboFan) only
    // after V8's --invocation-count-for-turbofan (3000 calls in Node 24), so a
    // server that has just started dials with half-optimised code for its
    // first few thousand dials (docs/benchmarks.md, sessions 7 and 19). A
    // long-running server is past that; the first run of each target
    // therefore dials this many times first. Two rows keep the warm-up
    // visible: the first `coldCount` of those dials, and dials 1,001 to
    // 1,500, the window this scenario measured until session 19.
    const firstRunWarmup = ctx.quick ? 10 : 4000;
    const coldCount = ctx.quick ? 10 : 250;
    const halfWarm = ctx.quick ? undefined : { from: 1000, to: 1500 };
    const cpu = new CpuMeter(ctx);
    const errors: ScenarioResult['errors'] = {};
    const p50: Partial<Record<TargetName, number[]>> = {};
    const p99: Partial<Record<TargetName, number[]>> = {};
    const coldP50: Partial<Record<TargetName, number[]>> = {};
    const halfWarmP50: Partial<Record<TargetName, number[]>> = {};
    const singleUseP50: Partial<Record<TargetName, number[]>> = {};
    const singleUseCount = ctx.quick ? 20 : 200;
    const address = ctx.destination.httpAddress;
    await forEachRun(ctx, errors, 120_000, async (target, rep) => {
      const warmupDials = rep === 0 ? firstRunWarmup : warmup;
      const firstDials: number[] = [];
      const halfWarmDials: number[] = [];
      for (let i = 0; i < warmupDials; i++) {
        const ms = await dialFirstByte(target, address);
        if (rep === 0 && i < coldCount) firstDials.push(ms);
        if (rep === 0 && halfWarm && i >= halfWarm.from && i < halfWarm.to) halfWarmDials.push(ms);
      }
      const cold = rep === 0 ? sortNumbers(firstDials) : undefined;
      const halfWarmSorted = rep === 0 && halfWarmDials.length > 0 ? sortNumbers(halfWarmDials) : undefined;
      const samples = await cpu.measure(target, async () => {
        const out: number[] = [];
        for (let i = 0; i < count; i++) out.push(await dialFirstByte(target, address));
        return sortNumbers(out);
      });
      // gRPC targets only (HTTP-CONNECT dials are new connections already); direct is the same TCP dial.
      const udsPath = target.cluster?.mode === 'grpc' ? target.cluster.udsPath : undefined;
      let singleUse: number[] | undefined;
      if (udsPath !== undefined || target.name === 'direct') {
        const one = (): Promise<number> => (udsPath !== undefined ? newGrpcConnectionFirstByte(udsPath, address) : dialFirstByte(target, address));
        for (let i = 0; i < warmupDials / 5; i++) await one();
        const out: number[] = [];
        for (let i = 0; i < singleUseCount; i++) out.push(await one());
        singleUse = sortNumbers(out);
      }
      return () => {
        if (singleUse) (singleUseP50[target.name] ??= []).push(percentile(singleUse, 50));
        if (cold) (coldP50[target.name] ??= []).push(percentile(cold, 50));
        if (halfWarmSorted) (halfWarmP50[target.name] ??= []).push(percentile(halfWarmSorted, 50));
        (p50[target.name] ??= []).push(percentile(samples, 50));
        (p99[target.name] ??= []).push(percentile(samples, 99));
        ctx.progress(`    ${target.name.padEnd(12)} run ${rep + 1}/${ctx.reps}: p50 ${percentile(samples, 50).toFixed(3)} ms, p99 ${percentile(samples, 99).toFixed(3)} ms`);
      };
    }, ctx.reps, cpu);
    const med = (r: Partial<Record<TargetName, number[]>>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]));
    const cpuFigures = cpu.figures();
    return {
      id: 'dial',
      title: this.title,
      method: `${count} sequential new connections after ${warmup} warm-up ones (${firstRunWarmup} before each target's first run, so that per-dial code is optimised, as in a server that has been up for a while); each is timed from the dial call to the first byte of the answer to GET /, then closed. The tunnel itself (the gRPC HTTP/2 connection) is reused across dials, as kube-apiserver's CreateGRPCTunnel does; in HTTP-CONNECT mode every dial is a new unix-socket connection plus CONNECT. Median of the ${ctx.reps} runs' percentiles. The "new gRPC connection per dial" row (${singleUseCount} dials per run, gRPC targets; direct is a plain TCP dial) opens a new HTTP/2 connection for each dial, as releases using CreateSingleUseGrpcTunnel do, connection setup included; it is timed outside the CPU figures. The "first ${coldCount} dials" row is the p50 of the first ${coldCount} warm-up dials of each target's first run: per-dial code not yet optimised, as in a server that has just started (earlier scenarios dialled only a few connections).${halfWarm ? ` The "dials ${halfWarm.from + 1}–${halfWarm.to}" row is the p50 of those warm-up dials of each target's first run, the window this scenario measured before session 19 (1,000 warm-up dials): V8 optimises a function with TurboFan after 3,000 calls, so code that runs once per dial was still half-optimised there.` : ''}`,
      metrics: [
        { id: 'dial-p50', label: 'Dial + first byte p50', unit: 'ms', better: 'lower', values: med(p50), runs: p50, reference: { direct: 0.37, grpc: 2.3, 'http-connect': 1.25 }, goal: 1.0, digits: 3 },
        { id: 'dial-p99', label: 'Dial + first byte p99', unit: 'ms', better: 'lower', values: med(p99), runs: p99, digits: 3 },
        { id: 'dial-cpu', label: 'Server + agent CPU per dial', unit: 'CPU µs', better: 'lower', values: tunnelCpuPerUnit(cpuFigures, count, 1e6), ratio: false, digits: 0 },
        { id: 'dial-cold-p50', label: `Dial + first byte p50, first ${coldCount} dials (code not yet optimised)`, unit: 'ms', better: 'lower', values: med(coldP50), runs: coldP50, digits: 3 },
        ...(halfWarm ? [{ id: 'dial-half-warm-p50', label: `Dial + first byte p50, dials ${halfWarm.from + 1}–${halfWarm.to} of the first run (before TurboFan)`, unit: 'ms', better: 'lower' as const, values: med(halfWarmP50), runs: halfWarmP50, digits: 3 }] : []),
        { id: 'dial-single-use-p50', label: 'Dial + first byte p50, new gRPC connection per dial', unit: 'ms', better: 'lower', values: med(singleUseP50), runs: singleUseP50, digits: 3 },
      ],
      cpu: cpuFigures,
      errors,
      notes: [],
    };
  },
};
