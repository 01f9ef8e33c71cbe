/**
 * `npm run bench:dial-hops` rebuilds dials hop by hop from a perf recording
 * of four processes; the performance notes cite it. It must find the dials
 * in the trace and report every step for both targets. Nothing here asserts
 * a time: only that each was measured.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DIAL_SEQUENCE, HOP_TRACE_EVENTS } from '../bench/lib/hop-timeline.ts';
import { perfTracepointProblem } from '../bench/lib/perf-probe.ts';
import { runBenchScript } from './helpers/bench-run.ts';

const script = fileURLToPath(new URL('../bench/diagnostics/dial-hops.ts', import.meta.url));

test('dial hops --quick --keep: every step of the HTTP-CONNECT dial timed for the Node floor and for ours, recordings kept', { skip: perfTracepointProblem(HOP_TRACE_EVENTS) ?? false, timeout: 240_000 }, async () => {
  const keep = mkdtempSync(path.join(os.tmpdir(), 'konnectivity-dial-hops-keep-'));
  try {
    const r = await runBenchScript(script, ['--quick', '--keep', keep], 230_000, { KONNECTIVITY_TS_FROM_SOURCE: '0' });
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    for (const target of ['floor', 'ours']) {
      const rebuilt = new RegExp(`${target} round 1/1: .*; (\\d+) of 60 dials rebuilt`).exec(r.stderr);
      assert.ok(rebuilt && Number(rebuilt[1]) >= 30, `${target}: ${rebuilt?.[0] ?? r.stderr}`);
    }
    assert.match(r.stdout, /^step\s+floor\s+ours$/m);
    for (const step of DIAL_SEQUENCE.slice(1)) {
      const row = new RegExp(`^→ ${step.label.replace(/[()]/g, '\\$&')}\\s+(\\d+)(?: \\(waits \\d+\\))?\\s+(\\d+)(?: \\(waits \\d+\\))?$`, 'm').exec(r.stdout);
      assert.ok(row, `no row for "${step.label}":\n${r.stdout}`);
    }
    const total = /^connect\(\) to first byte, median\s+(\d+)\s+(\d+)$/m.exec(r.stdout);
    assert.ok(total, r.stdout);
    // A dial crosses four processes and ten hand-offs; under 50 µs nothing real was timed.
    assert.ok(Number(total[1]) > 50 && Number(total[2]) > 50, total[0]);
    assert.deepEqual(readdirSync(keep).sort(), ['floor-1.data', 'ours-1.data']);
  } finally {
    rmSync(keep, { recursive: true, force: true });
  }
});
