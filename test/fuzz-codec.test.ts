/**
 * Codec and gRPC framing under the fuzzer (fuzz/codec-fuzz.ts): a bounded
 * run with a fresh seed each time (printed; FUZZ_SEED=<seed> replays it).
 * Random packets round-trip; mutated encodings, random bytes and corrupt
 * framing only ever fail with ProtocolError.
 */
import { test } from 'node:test';
import { runCodecCase } from '../fuzz/codec-fuzz.ts';
import { Rng } from '../fuzz/prng.ts';
import { UnhandledRejections } from '../fuzz/unhandled-rejections.ts';

const CASES = Number(process.env['FUZZ_CASES'] ?? 15000);

test(`codec fuzz: ${CASES} cases of round trips, mutations and re-chunked framing`, async (t) => {
  const base = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : (Math.random() * 2 ** 32) >>> 0;
  t.diagnostic(`base seed ${base} (FUZZ_SEED=${base} replays this run)`);
  // The codec is synchronous; one check at the end (after a yield, when Node
  // reports them) still catches a promise it might leave rejected.
  const unhandled = new UnhandledRejections().start();
  try {
    const rng = new Rng(base);
    for (let i = 0; i < CASES; i++) runCodecCase(rng.fork());
    await unhandled.check();
  } finally {
    unhandled.stop();
  }
});
