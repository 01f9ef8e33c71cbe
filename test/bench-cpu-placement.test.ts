/**
 * `npm run bench:placement` times the same dials with the processes pinned to
 * CPUs in several layouts; the performance notes cite it. It must measure
 * every target in every layout and report where each process spent its time
 * (the diagnostic itself reads every pinning back from /proc and fails if
 * the kernel did not take it).
 * Nothing here asserts a time: only that each was measured.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runBenchScript } from './helpers/bench-run.ts';

const script = fileURLToPath(new URL('../bench/diagnostics/cpu-placement.ts', import.meta.url));

const layouts = ['free', 'cross', 'split', 'one'];
const targets = ['direct', 'floor', 'ours'];

test('cpu placement --quick: every target dialled in every CPU layout, with each process\'s CPU and run-queue time', { timeout: 240_000 }, async (t) => {
  const r = await runBenchScript(script, ['--quick'], 230_000, { KONNECTIVITY_TS_FROM_SOURCE: '0' });
  // A machine that cannot pin (one CPU, no taskset, no permission) is told apart from a failure.
  const cannot = /^cpu-placement: (needs .*)$/m.exec(r.stderr);
  if (r.code === 2 && cannot) {
    t.skip(cannot[1]);
    return;
  }
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^layout\s+direct\s+floor\s+ours\s+ours÷floor$/m);
  for (const layout of layouts) {
    const row = new RegExp(`^${layout}\\s+(\\d+\\.\\d+)\\s+(\\d+\\.\\d+)\\s+(\\d+\\.\\d+)\\s+\\d+\\.\\d+×$`, 'm').exec(r.stdout);
    assert.ok(row, `no p50 row for ${layout}:\n${r.stdout}`);
    // A dial and its answer cross at least two processes; under 20 µs nothing real was timed.
    for (const p50 of row.slice(1)) assert.ok(Number(p50) > 0.02, row[0]);
    for (const target of targets) {
      const sched = new RegExp(`^${layout}\\s+${target}\\s+(.*)$`, 'm').exec(r.stdout);
      assert.ok(sched, `no scheduler row for ${layout} ${target}:\n${r.stdout}`);
      const cells = [...sched[1]!.matchAll(/(\d+) \/ (\d+)|–/g)].map((m) => m[0]);
      assert.equal(cells.length, 4, sched[0]);
      // direct has no server or agent; the tunnels have all four processes.
      assert.deepEqual(cells.map((c) => c === '–'), target === 'direct' ? [false, true, true, false] : [false, false, false, false], sched[0]);
      for (const c of cells.filter((x) => x !== '–')) assert.ok(Number(c.split(' / ')[0]) > 0, `${sched[0]}: a process on the dial path used no CPU`);
    }
  }
});
