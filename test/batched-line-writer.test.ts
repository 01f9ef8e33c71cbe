/**
 * The daemons' standard-error batching: lines keep their order, errors and a
 * full batch go out at once, the rest within the delay, and a process that
 * exits right after logging still writes every line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { BatchedLineWriter } from '../src/observability/batched-line-writer.ts';
import { sleep } from './helpers/wait.ts';

test('lines written in one turn leave as one write, in order, after the delay', async () => {
  const writes: string[] = [];
  const w = new BatchedLineWriter((text) => writes.push(text), { maxDelayMs: 5 });
  w.write('a');
  w.write('b');
  w.write('c');
  assert.deepEqual(writes, []);
  await sleep(30);
  assert.deepEqual(writes, ['a\nb\nc\n']);
  w.write('d');
  await sleep(30);
  assert.deepEqual(writes, ['a\nb\nc\n', 'd\n']);
});

test('an urgent line flushes itself and everything queued before it', () => {
  const writes: string[] = [];
  const w = new BatchedLineWriter((text) => writes.push(text), { maxDelayMs: 60_000 });
  w.write('info 1');
  w.write('info 2');
  w.write('error', true);
  assert.deepEqual(writes, ['info 1\ninfo 2\nerror\n']);
  w.flush();
  assert.equal(writes.length, 1, 'nothing left to flush');
});

test('a batch over the size bound is written at once', () => {
  const writes: string[] = [];
  const w = new BatchedLineWriter((text) => writes.push(text), { maxDelayMs: 60_000, maxPendingChars: 100 });
  for (let i = 0; i < 9; i++) w.write('x'.repeat(10));
  assert.deepEqual(writes, [], '99 characters pending: under the bound');
  w.write('y');
  assert.equal(writes.length, 1);
  assert.equal(writes[0], `${Array(9).fill('x'.repeat(10)).join('\n')}\ny\n`);
});

test('a daemon logger that logs and exits at once loses no line', () => {
  const script = [
    `import { createDaemonLogger } from ${JSON.stringify(path.resolve('src/observability/klog-output.ts'))};`,
    `import { FlagSet } from ${JSON.stringify(path.resolve('src/flags/flag-set.ts'))};`,
    `import { registerKlogFlags } from ${JSON.stringify(path.resolve('src/flags/klog-flags.ts'))};`,
    `const fs = new FlagSet('t'); const read = registerKlogFlags(fs); fs.parse(['-v=4']);`,
    `const log = createDaemonLogger(read(), 'batch-test');`,
    `for (let i = 0; i < 1000; i++) log.v(3, 'line', { i, id: 2n ** 60n });`,
    `process.exit(0);`,
  ].join('\n');
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.trimEnd().split('\n').map((l) => JSON.parse(l) as { i: number; id: string; msg: string });
  assert.equal(lines.length, 1000);
  lines.forEach((l, i) => {
    assert.equal(l.i, i);
    assert.equal(l.id, (2n ** 60n).toString(), 'bigint fields are written as decimal strings');
  });
});
