/**
 * Random and mutated gRPC traffic against a real server over real sockets
 * (fuzz/grpc-wire-fuzz.ts): its unix-socket gRPC frontend and its TLS agent
 * port, while a real agent carries a good tunnel. A bounded run with a fresh
 * seed each time (printed; FUZZ_SEED=<seed> replays it, FUZZ_WIRE_CASES
 * sets the size). After every case the server is healthy, the good tunnel's
 * bytes came back intact (sha256) and the router holds nothing the case
 * left behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GrpcWireFuzzRig } from '../fuzz/grpc-wire-fuzz.ts';
import { Rng } from '../fuzz/prng.ts';
import { UnhandledRejections } from '../fuzz/unhandled-rejections.ts';

const CASES = Number(process.env['FUZZ_WIRE_CASES'] ?? 150);

test(`wire fuzz: ${CASES} cases of random gRPC traffic at the frontend and agent ports leave the server healthy, the good tunnel intact and nothing behind`, async (t) => {
  const base = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : (Math.random() * 2 ** 32) >>> 0;
  t.diagnostic(`base seed ${base} (FUZZ_SEED=${base} replays this run)`);
  const unhandled = new UnhandledRejections().start();
  const rig = await GrpcWireFuzzRig.start();
  try {
    const rng = new Rng(base);
    for (let i = 0; i < CASES; i++) {
      const seed = rng.fork();
      try {
        await rig.runCase(seed);
        await unhandled.check();
      } catch (err) {
        throw new Error(`wire case ${i} (seed ${seed}; npm run fuzz -- --target wire --replay ${seed}): ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } finally {
    await rig.close();
    unhandled.stop();
  }
});

test('wire fuzz: the leak check bites (a tunnel left open across a case is reported)', async () => {
  const rig = await GrpcWireFuzzRig.start();
  try {
    await rig.runCase(1);
    const extra = rig.cluster.openTunnel();
    const socket = await extra.dial('tcp', rig.echoAddress);
    try {
      await assert.rejects(rig.runCase(2), /server state leaked after the case: .*2 established connections/);
    } finally {
      socket.destroy();
      await extra.close();
    }
  } finally {
    await rig.close();
  }
});
