/**
 * bindHistogramRecorder: observations kept in a typed array and moved into
 * the prom-client histogram when it is collected must read exactly as if
 * every value had gone through `observe()`: same buckets, sum and count in
 * the exposition text, across scrapes, resets and mixed use.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Histogram, Registry } from 'prom-client';
import { bindHistogramRecorder } from '../src/observability/histogram-recorder.ts';

const buckets = [0.000001, 0.00001, 0.0001, 0.005, 0.025, 0.1, 0.5, 2.5, 12.5];

function histogram(collect?: () => void): { registry: Registry; h: Histogram } {
  const registry = new Registry();
  const h = new Histogram({ name: 'write_duration_seconds', help: 'Latency of write', buckets, registers: [registry], ...(collect ? { collect } : {}) });
  return { registry, h };
}

/** Every bucket, the exact bounds, zero and values past the last bound. */
const values = [0, 0.0000005, 0.000001, 0.000002, 0.00001, 0.00005, 0.0001, 0.003, 0.005, 0.02, 0.1, 0.3, 2.5, 7, 12.5, 13, 1000];

test('recorded values read as observed ones: the same exposition text, scrape after scrape', async () => {
  const recorded = histogram();
  const observed = histogram();
  const record = bindHistogramRecorder(recorded.h);
  assert.equal(await recorded.registry.metrics(), await observed.registry.metrics(), 'before any value');
  for (const v of values) {
    record(v);
    observed.h.observe(v);
  }
  assert.equal(await recorded.registry.metrics(), await observed.registry.metrics());
  // A second scrape must not add the same observations again.
  assert.equal(await recorded.registry.metrics(), await observed.registry.metrics());
  for (const v of values.slice(3, 9)) {
    record(v);
    observed.h.observe(v);
  }
  const text = await recorded.registry.metrics();
  assert.equal(text, await observed.registry.metrics());
  assert.match(text, /write_duration_seconds_count 23\n/);
  assert.match(text, /write_duration_seconds_bucket\{le="0\.00001"\} 7\n/);
});

test('recorded and direct observations on one histogram add up; get() sees recorded ones', async () => {
  const { h } = histogram();
  const record = bindHistogramRecorder(h);
  record(0.003);
  h.observe(0.02);
  record(30);
  const got = await h.get();
  const count = got.values.find((v) => v.metricName === 'write_duration_seconds_count');
  const sum = got.values.find((v) => v.metricName === 'write_duration_seconds_sum');
  const le5ms = got.values.find((v) => v.metricName === 'write_duration_seconds_bucket' && v.labels.le === 0.005);
  assert.equal(count?.value, 3);
  assert.equal(sum?.value, 30.023);
  assert.equal(le5ms?.value, 1);
});

test('after reset() only later values count; a collect given to the histogram still runs', async () => {
  let collects = 0;
  const { registry, h } = histogram(() => {
    collects++;
  });
  const record = bindHistogramRecorder(h);
  record(0.1);
  await registry.metrics();
  assert.equal(collects, 1);
  h.reset();
  record(0.5);
  record(0.5);
  const text = await registry.metrics();
  assert.equal(collects, 2);
  assert.match(text, /write_duration_seconds_count 2\n/);
  assert.match(text, /write_duration_seconds_sum 1\n/);
  assert.match(text, /write_duration_seconds_bucket\{le="0\.1"\} 0\n/);
  assert.match(text, /write_duration_seconds_bucket\{le="0\.5"\} 2\n/);
});

test('binding twice gives the same recorder and counts each value once', async () => {
  const { registry, h } = histogram();
  const a = bindHistogramRecorder(h);
  const b = bindHistogramRecorder(h);
  assert.equal(a, b);
  a(1);
  b(1);
  assert.match(await registry.metrics(), /write_duration_seconds_count 2\n/);
});

test('refused: labelled histograms at bind time, non-finite values at record time', () => {
  const labelled = new Histogram({ name: 'labelled_seconds', help: 'h', labelNames: ['code'], registers: [] });
  assert.throws(() => bindHistogramRecorder(labelled), /only for histograms without labels/);
  const { h } = histogram();
  const record = bindHistogramRecorder(h);
  assert.throws(() => record(Number.NaN), /Value is not a valid number: NaN/);
  assert.throws(() => record(Number.POSITIVE_INFINITY), TypeError);
});

test('a histogram whose internals are not the expected shape gets plain observe() calls', async () => {
  const { h } = histogram();
  // As if another prom-client version stored buckets differently.
  const internals = h as unknown as { hashMap: Record<string, { bucketValues: Record<string, number>; count: number }> };
  internals.hashMap['']!.bucketValues = {};
  const record = bindHistogramRecorder(h);
  record(0.2);
  // observe() moved the count at once, without waiting for a collect.
  assert.equal(internals.hashMap['']!.count, 1);
});
