/**
 * The agent's packet state machine (EndpointRelay) behind the agent limits,
 * under the model-checking fuzzer (fuzz/relay-fuzz.ts): a bounded run with a
 * fresh seed each time (printed; FUZZ_SEED=<seed> replays it). A promise
 * that rejects unhandled during a case fails that case: the check yields to
 * the event loop first, since Node reports such rejections only then.
 */
import { test } from 'node:test';
import { runRelayCase } from '../fuzz/relay-fuzz.ts';
import { Rng } from '../fuzz/prng.ts';
import { UnhandledRejections } from '../fuzz/unhandled-rejections.ts';

const CASES = Number(process.env['FUZZ_CASES'] ?? 5000);

test(`relay fuzz: ${CASES} random interleavings keep every invariant`, async (t) => {
  const base = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : (Math.random() * 2 ** 32) >>> 0;
  t.diagnostic(`base seed ${base} (FUZZ_SEED=${base} replays this run)`);
  const unhandled = new UnhandledRejections().start();
  try {
    const rng = new Rng(base);
    for (let i = 0; i < CASES; i++) {
      const seed = rng.fork();
      await runRelayCase(seed);
      try {
        await unhandled.check();
      } catch (err) {
        throw new Error(`relay case ${i} (seed ${seed}; npm run fuzz -- --target relay --replay ${seed}): ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    await unhandled.check();
  } finally {
    unhandled.stop();
  }
});
