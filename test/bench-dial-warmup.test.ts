/**
 * The dial scenario warms every target up before it measures any, so the
 * load generator's own per-dial code is as warm for the first target as for
 * the last. Checks the order of the progress lines, never a time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBench } from './helpers/bench-run.ts';

test('bench dial: every target warms up before the first measured run', { timeout: 90_000 }, async () => {
  const { code, stdout, stderr } = await runBench(['--quick', '--only', 'dial', '--no-write'], 80_000);
  assert.equal(code, 0, `bench failed:\n${stdout}\n${stderr}`);
  const lines = `${stdout}\n${stderr}`.split('\n');
  const warmUps = lines.flatMap((l, i) => {
    const m = /^\[ *\d+ s\] +(\S+) +warm-up: \d+ dials/.exec(l);
    return m ? [{ i, target: m[1] }] : [];
  });
  const runs = lines.flatMap((l, i) => (/^\[ *\d+ s\] +\S+ +run 1\/1: p50/.test(l) ? [i] : []));
  assert.deepEqual(warmUps.map((w) => w.target), ['direct', 'grpc', 'http-connect'], lines.join('\n'));
  assert.equal(runs.length, 3, lines.join('\n'));
  assert.ok(Math.max(...warmUps.map((w) => w.i)) < Math.min(...runs), `a target was measured before every target had warmed up:\n${lines.join('\n')}`);
});
