/**
 * What the Kubernetes client parses, under the fuzzer (fuzz/kube-answer-fuzz.ts):
 * a bounded run with a fresh seed each time (printed; FUZZ_SEED=<seed>
 * replays it). Kubeconfigs fail only with `invalid kubeconfig …`, ExecCredential
 * output only with an Error, any JSON gives a well-typed Lease, and the watch
 * line splitter does not depend on chunking.
 */
import { test } from 'node:test';
import { runKubeAnswerCase } from '../fuzz/kube-answer-fuzz.ts';
import { Rng } from '../fuzz/prng.ts';

const CASES = Number(process.env['FUZZ_CASES'] ?? 5000);

test(`kube fuzz: ${CASES} cases of kubeconfigs, ExecCredentials, Lease objects and watch streams`, (t) => {
  const base = process.env['FUZZ_SEED'] ? Number(process.env['FUZZ_SEED']) : (Math.random() * 2 ** 32) >>> 0;
  t.diagnostic(`base seed ${base} (FUZZ_SEED=${base} replays this run)`);
  const rng = new Rng(base);
  for (let i = 0; i < CASES; i++) runKubeAnswerCase(rng.fork());
});
