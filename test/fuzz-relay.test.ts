/**
 * The agent's packet state machine (EndpointRelay) behind the agent limits,
 * under the model-checking fuzzer (fuzz/relay-fuzz.ts): a bounded run with a
 * fresh seed each time (printed; FUZZ_SEED=<seed> replays it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runRelayCase } from '../fuzz/relay-fuzz.ts';
import { Rng } from '../fuzz/prng.ts';

const CASES = Number(process.env['FUZZ_CASES'] ?? 5000);

test(`relay fuzz: ${CASES} random interleavings keep every invariant`, async (t) => {
  const base = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : (Math.random() * 2 ** 32) >>> 0;
  t.diagnostic(`base seed ${base} (FUZZ_SEED=${base} replays this run)`);
  let unhandled: unknown = null;
  const onUnhandled = (err: unknown): void => {
    unhandled ??= err;
  };
  process.on('unhandledRejection', onUnhandled);
  try {
    const rng = new Rng(base);
    for (let i = 0; i < CASES; i++) await runRelayCase(rng.fork());
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  assert.equal(unhandled, null, `a promise rejected unhandled: ${String(unhandled)}`);
});
