/**
 * The bench's many-connections scenario opens and closes its N connections
 * twice more after the first set and reports the server's and agent's RSS
 * with the third set open, read from /proc of the real processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runBench } from './helpers/bench-run.ts';

interface ManyJson {
  results: { id: string; errors: Record<string, unknown>; metrics: { id: string; values: Record<string, number> }[] }[];
}

test('bench many: RSS with the third set of connections open is reported for server and agent, after two sets were opened and closed', { timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-bench-many-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'out.json');
  const { code, stdout, stderr } = await runBench(['--quick', '--only', 'many', '--modes', 'http-connect', '--json', json], 80_000);
  assert.equal(code, 0, `bench failed:\n${stdout}\n${stderr}`);
  const many = (JSON.parse(readFileSync(json, 'utf8')) as ManyJson).results.find((r) => r.id === 'many')!;
  assert.deepEqual(many.errors, {});
  for (const id of ['many-churn-server-rss', 'many-churn-agent-rss']) {
    const metric = many.metrics.find((m) => m.id === id);
    assert.ok(metric, `no ${id} among ${many.metrics.map((m) => m.id).join(', ')}`);
    assert.ok(metric.values['http-connect']! > 10, `${id}: ${metric.values['http-connect']} MB`);
    assert.equal(metric.values['direct'], undefined, 'direct has no server or agent');
  }
  assert.match(stdout, /http-connect round 2\/3: 500 connections established again/);
  assert.match(stdout, /http-connect round 3\/3: 500 connections established again/);
  assert.match(stdout, /Server RSS, the third 500 open \(two sets opened and closed before\)/);
});
