/**
 * The bench's idle-memory scenario splits each daemon's RSS into its own
 * anonymous memory and the file-backed pages of the executable, read from
 * /proc/<pid>/status of the real server and agent processes, and reports what
 * each idle daemon costs in CPU and wake-ups.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runBench } from './helpers/bench-run.ts';

interface IdleJson {
  results: { id: string; metrics: { id: string; values: Record<string, number> }[] }[];
}

test('bench idle: RSS after start is reported with its RssAnon and RssFile parts, which add up to it, and idle CPU and wake-ups', { timeout: 90_000 }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-bench-idle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'out.json');
  const { code, stdout, stderr } = await runBench(['--quick', '--only', 'idle', '--json', json], 80_000);
  assert.equal(code, 0, `bench failed:\n${stdout}\n${stderr}`);
  const idle = (JSON.parse(readFileSync(json, 'utf8')) as IdleJson).results.find((r) => r.id === 'idle')!;
  const metric = (id: string): Record<string, number> => {
    const m = idle.metrics.find((x) => x.id === id);
    assert.ok(m, `no ${id} among ${idle.metrics.map((x) => x.id).join(', ')}`);
    return m.values;
  };
  for (const who of ['server', 'agent']) {
    const rss = metric(`idle-start-${who}`);
    const anon = metric(`idle-start-${who}-anon`);
    const file = metric(`idle-start-${who}-file`);
    for (const mode of ['grpc', 'http-connect']) {
      const [r, a, f] = [rss[mode]!, anon[mode]!, file[mode]!];
      assert.ok(a > 1 && f > 1, `${who} ${mode}: anon ${a} MB, file ${f} MB`);
      // VmRSS = RssAnon + RssFile + RssShmem, all read in one go; the daemons map no shared memory of note.
      assert.ok(a + f <= r + 0.01 && r - (a + f) < 2, `${who} ${mode}: RSS ${r} MB, anon ${a} + file ${f} MB`);
    }
  }
  assert.match(stdout, /Server private memory \(RssAnon\), idle after start/);
  // Idle cost, read from /proc of the same processes: a live daemon has timers, so it wakes at least once in the window.
  for (const who of ['server', 'agent']) {
    const cpu = metric(`idle-cpu-${who}`);
    const wakes = metric(`idle-wakeups-${who}`);
    for (const mode of ['grpc', 'http-connect']) {
      assert.ok(Number.isFinite(cpu[mode]) && cpu[mode]! >= 0, `${who} ${mode}: idle CPU ${cpu[mode]}`);
      assert.ok(Number.isFinite(wakes[mode]) && wakes[mode]! > 0, `${who} ${mode}: idle wake-ups ${wakes[mode]}`);
    }
  }
  assert.match(stdout, /Agent wake-ups per second, idle after start/);
});
