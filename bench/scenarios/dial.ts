/**
 * (3) New connection: dial + first byte. Each sample dials the destination,
 * writes `GET /` and stops the clock at the first response byte; then reads
 * the rest and closes the connection before the next sample.
 */
import { CpuMeter, errorText, forEachRun, tunnelCpuPerUnit, withTimeout, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
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
    // after thousands of dials (about 10,000 with V8's default budget, 2,000
    // with the budget our daemons set: src/runtime/tiering-tuning.ts), so a
    // server that has just started dials with half-optimised code. A
    // long-running server is past that; each target therefore dials this
    // many times before it is first measured. Two rows keep the warm-up
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
    /** A dial on a new gRPC connection (gRPC targets) or a plain TCP dial (direct); undefined for HTTP-CONNECT, whose dials are new connections already. */
    const singleUseDial = (target: Target): (() => Promise<number>) | undefined => {
      const udsPath = target.cluster?.mode === 'grpc' ? target.cluster.udsPath : undefined;
      if (udsPath !== undefined) return () => newGrpcConnectionFirstByte(udsPath, address);
      return target.name === 'direct' ? () => dialFirstByte(target, address) : undefined;
    };
    // Every target's long warm-up comes before any target is measured. This
    // process's own per-dial code (the client library, the probe) warms up
    // with the dials too; warmed along with the first target only, it put
    // that target's first run at or above the median of its runs in every
    // run on record (docs/benchmarks.md, session 23), and the first target
    // is ours.
    for (const target of ctx.targets) {
      try {
        await withTimeout(`${target.name} warm-up`, 300_000, (async () => {
          const firstDials: number[] = [];
          const halfWarmDials: number[] = [];
          for (let i = 0; i < firstRunWarmup; i++) {
            const ms = await dialFirstByte(target, address);
            if (i < coldCount) firstDials.push(ms);
            if (halfWarm && i >= halfWarm.from && i < halfWarm.to) halfWarmDials.push(ms);
          }
          const singleUse = singleUseDial(target);
          if (singleUse) for (let i = 0; i < firstRunWarmup / 5; i++) await singleUse();
          const cold = percentile(sortNumbers(firstDials), 50);
          coldP50[target.name] = [cold];
          if (halfWarmDials.length > 0) halfWarmP50[target.name] = [percentile(sortNumbers(halfWarmDials), 50)];
          ctx.progress(`    ${target.name.padEnd(12)} warm-up: ${firstRunWarmup} dials (first ${coldCount}: p50 ${cold.toFixed(3)} ms)`);
        })());
      } catch (err) {
        errors[target.name] = errorText(err);
        ctx.progress(`    ${target.name}: FAILED: ${errorText(err)}`);
      }
    }
    await forEachRun(ctx, errors, 120_000, async (target, rep) => {
      for (let i = 0; i < warmup; i++) await dialFirstByte(target, address);
      const samples = await cpu.measure(target, async () => {
        const out: number[] = [];
        for (let i = 0; i < count; i++) out.push(await dialFirstByte(target, address));
        return sortNumbers(out);
      });
      let singleUse: number[] | undefined;
      const one = singleUseDial(target);
      if (one) {
        for (let i = 0; i < warmup / 5; i++) await one();
        const out: number[] = [];
        for (let i = 0; i < singleUseCount; i++) out.push(await one());
        singleUse = sortNumbers(out);
      }
      return () => {
        if (singleUse) (singleUseP50[target.name] ??= []).push(percentile(singleUse, 50));
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
      method: `${count} sequential new connections after ${warmup} warm-up ones; before the first run every target dials ${firstRunWarmup} times, all targets before any is measured (so that per-dial code is optimised, as in a server that has been up for a while, and this load generator is as warm for the first target as for the last); each is timed from the dial call to the first byte of the answer to GET /, then closed. The tunnel itself (the gRPC HTTP/2 connection) is reused across dials, as kube-apiserver's CreateGRPCTunnel does; in HTTP-CONNECT mode every dial is a new unix-socket connection plus CONNECT. Median of the ${ctx.reps} runs' percentiles. The "new gRPC connection per dial" row (${singleUseCount} dials per run, gRPC targets; direct is a plain TCP dial) opens a new HTTP/2 connection for each dial, as releases using CreateSingleUseGrpcTunnel do, connection setup included; it is timed outside the CPU figures. The "first ${coldCount} dials" row is the p50 of each target's first ${coldCount} warm-up dials: per-dial code not yet optimised, as in a server that has just started (earlier scenarios dialled only a few connections).${halfWarm ? ` The "dials ${halfWarm.from + 1}–${halfWarm.to}" row is the p50 of those warm-up dials, the window this scenario measured before session 19 (1,000 warm-up dials), when code that runs once per dial was still half-optimised: with V8's default budget it reaches TurboFan only after about 10,000 dials, with the budget our daemons set (src/runtime/tiering-tuning.ts) within about 2,000.` : ''}`,
      metrics: [
        { id: 'dial-p50', label: 'Dial + first byte p50', unit: 'ms', better: 'lower', values: med(p50), runs: p50, reference: { direct: 0.37, grpc: 2.3, 'http-connect': 1.25 }, goal: 1.0, digits: 3 },
        { id: 'dial-p99', label: 'Dial + first byte p99', unit: 'ms', better: 'lower', values: med(p99), runs: p99, digits: 3 },
        { id: 'dial-cpu', label: 'Server + agent CPU per dial', unit: 'CPU µs', better: 'lower', values: tunnelCpuPerUnit(cpuFigures, count, 1e6), ratio: false, digits: 0 },
        { id: 'dial-cold-p50', label: `Dial + first byte p50, first ${coldCount} dials (code not yet optimised)`, unit: 'ms', better: 'lower', values: med(coldP50), runs: coldP50, digits: 3 },
        ...(halfWarm ? [{ id: 'dial-half-warm-p50', label: `Dial + first byte p50, dials ${halfWarm.from + 1}–${halfWarm.to} of the warm-up`, unit: 'ms', better: 'lower' as const, values: med(halfWarmP50), runs: halfWarmP50, digits: 3 }] : []),
        { id: 'dial-single-use-p50', label: 'Dial + first byte p50, new gRPC connection per dial', unit: 'ms', better: 'lower', values: med(singleUseP50), runs: singleUseP50, digits: 3 },
      ],
      cpu: cpuFigures,
      errors,
      notes: [],
    };
  },
};
