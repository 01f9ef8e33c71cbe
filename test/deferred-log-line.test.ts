/**
 * Lines built with their batch: a sink that batches gets the line unbuilt;
 * the written line is the one the call would have built (its time is the
 * call's, not the batch's), and a line with an object among its fields is
 * built at the call, so changing the object afterwards changes nothing.
 * Unbuilt lines count toward the batch's size bound by what they hold.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchedLineWriter, type LazyLine } from '../src/observability/batched-line-writer.ts';
import { DeferredLogLine, deferrableFieldChars } from '../src/observability/deferred-log-line.ts';
import { jsonLogLine, serializeBase } from '../src/observability/json-log-line.ts';
import { klogOutput } from '../src/observability/klog-output.ts';
import { createLogger, type LogSink } from '../src/observability/logger.ts';
import { FlagSet } from '../src/flags/flag-set.ts';
import { registerKlogFlags } from '../src/flags/klog-flags.ts';
import { sleep } from './helpers/wait.ts';

function countingLine(text: string, estimatedChars = text.length): LazyLine & { built: number } {
  return {
    estimatedChars,
    built: 0,
    text() {
      this.built++;
      return text;
    },
  };
}

test('a lazy line is built when its batch is written, once, in its place among plain lines', () => {
  const writes: string[] = [];
  const w = new BatchedLineWriter((text) => writes.push(text), { maxDelayMs: 60_000 });
  const lazy = countingLine('lazy');
  w.write('first');
  w.write(lazy);
  w.write('last');
  assert.equal(lazy.built, 0, 'not built while queued');
  w.flush();
  assert.deepEqual(writes, ['first\nlazy\nlast\n']);
  assert.equal(lazy.built, 1);
});

test('lazy lines count toward the size bound by their estimate', () => {
  const writes: string[] = [];
  const w = new BatchedLineWriter((text) => writes.push(text), { maxDelayMs: 60_000, maxPendingChars: 1000 });
  for (let i = 0; i < 3; i++) w.write(countingLine(`l${i}`, 249));
  assert.deepEqual(writes, [], '3 × (249 + 1) characters: under the bound');
  w.write(countingLine('l3', 249));
  assert.deepEqual(writes, ['l0\nl1\nl2\nl3\n'], 'four unbuilt lines reach the bound of 1,000 characters');
});

test('a deferred line holding a long string counts it in full: the batch leaves at once', () => {
  const writes: string[] = [];
  const w = new BatchedLineWriter((text) => writes.push(text), { maxDelayMs: 60_000 });
  const logger = createLogger({
    verbosity: 4,
    component: 'konnectivity-agent',
    sinks: [{ format: 'json', write: (line) => w.write(line), writeDeferred: (line) => w.write(line) }],
  });
  logger.v(3, 'dialing endpoint', { address: '10.0.0.1:10250', random: 1n });
  assert.equal(writes.length, 0, 'a short line waits for its batch');
  const address = `${'a'.repeat(100_000)}:80`;
  logger.v(3, 'dialing endpoint', { address, random: 2n });
  assert.equal(writes.length, 1, 'past the 64 KiB bound, the batch is written at once');
  const lines = writes[0]!.trimEnd().split('\n').map((l) => JSON.parse(l) as { address: string });
  assert.deepEqual(lines.map((l) => l.address), ['10.0.0.1:10250', address]);
});

test('DeferredLogLine builds the same JSON as jsonLogLine at the call time', async () => {
  const base = serializeBase({ component: 'konnectivity-agent' });
  const fields = { address: '127.0.0.1:1', random: (1n << 62n) + 5n, connectID: 6n };
  const callMs = Date.now();
  const line = new DeferredLogLine(callMs, 'info', 3, 'dialing endpoint', base, fields);
  await sleep(20);
  const text = line.text();
  assert.equal(text, jsonLogLine(new Date(callMs).toISOString(), 'info', 3, 'dialing endpoint', base, fields));
  assert.equal(line.text(), text, 'built once');
});

test('only fields that are all primitives are deferred; strings count at their length', () => {
  assert.equal(deferrableFieldChars(undefined), 0);
  assert.equal(deferrableFieldChars({}), 0);
  assert.ok(deferrableFieldChars({ s: 'x', n: 1, b: 2n, t: true, nil: null, u: undefined }) > 0);
  assert.ok(deferrableFieldChars({ s: 'x'.repeat(5000) }) >= 5000);
  assert.equal(deferrableFieldChars({ s: 'x', error: new Error('e') }), -1);
  assert.equal(deferrableFieldChars({ list: [1] }), -1);
  assert.equal(deferrableFieldChars({ obj: { a: 1 } }), -1);
});

test('the logger hands a batching sink unbuilt lines, with the call time; object fields are built at the call', async () => {
  const deferred: DeferredLogLine[] = [];
  const immediate: string[] = [];
  const sink: LogSink = {
    format: 'json',
    write: (line) => immediate.push(line),
    writeDeferred: (line) => deferred.push(line),
  };
  const logger = createLogger({ verbosity: 4, component: 'konnectivity-server', sinks: [sink] });
  const before = Date.now();
  logger.v(3, 'forwarding dial request', { random: 7n, address: '10.0.0.1:10250' });
  const after = Date.now();
  const labels = { app: 'konnectivity' };
  logger.v(1, 'counting', { labels });
  labels.app = 'changed after the call';
  assert.equal(deferred.length, 1);
  assert.equal(immediate.length, 1);
  assert.deepEqual((JSON.parse(immediate[0]!) as { labels: unknown }).labels, { app: 'konnectivity' });
  await sleep(20);
  const parsed = JSON.parse(deferred[0]!.text()) as Record<string, unknown>;
  const ms = Date.parse(String(parsed.time));
  assert.ok(ms >= before && ms <= after, `time ${String(parsed.time)} is the call's, within [${before}, ${after}]`);
  assert.deepEqual({ ...parsed, time: undefined }, { time: undefined, level: 'info', v: 3, msg: 'forwarding dial request', component: 'konnectivity-server', random: '7', address: '10.0.0.1:10250' });
});

test('klog output: standard error takes unbuilt lines when it can, filtered by the same threshold; files get built lines', () => {
  const fs = new FlagSet('t');
  const read = registerKlogFlags(fs);
  fs.parse(['-v=4']);
  const built: string[] = [];
  const unbuilt: DeferredLogLine[] = [];
  const out = klogOutput(read(), 'deferred-test', {
    stderr: (line) => built.push(line),
    stderrDeferred: (line) => unbuilt.push(line),
    stderrIsTTY: false,
  });
  const logger = createLogger({ verbosity: 4, component: 'deferred-test', sinks: out.sinks });
  logger.v(4, 'CONNECT request', { host: '127.0.0.1:80' });
  logger.error('failed', { error: new Error('boom') });
  assert.equal(unbuilt.length, 1);
  assert.equal((JSON.parse(unbuilt[0]!.text()) as { msg: string }).msg, 'CONNECT request');
  assert.equal(built.length, 1);
  assert.equal((JSON.parse(built[0]!) as { error: string }).error, 'boom');
  out.close();
});
