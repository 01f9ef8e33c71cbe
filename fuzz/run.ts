/**
 * Long-running fuzzer: `npm run fuzz -- --minutes 5` (or `--cases 1000000`).
 *
 *   --minutes N        run for N minutes (default 2)
 *   --cases N          stop after N cases instead
 *   --seed S           master seed (default: random); the same seed replays the same cases
 *   --target T         router | relay | codec | http | all (default all, round-robin)
 *   --replay SEED      run one case of --target with that case seed, print its trace
 *
 * Prints progress every 10 s and, at the end, the case count and the master
 * seed. A violation prints the target, the case seed and a replay command,
 * and exits 1.
 */
import { parseArgs } from 'node:util';
import { runCodecCase } from './codec-fuzz.ts';
import { runHttpConnectCase } from './http-connect-fuzz.ts';
import { Rng } from './prng.ts';
import { runRelayCase } from './relay-fuzz.ts';
import { runRouterCase } from './router-fuzz.ts';

type Target = 'router' | 'relay' | 'codec' | 'http';
const TARGETS: readonly Target[] = ['router', 'relay', 'codec', 'http'];

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    cases: { type: 'string' },
    seed: { type: 'string' },
    target: { type: 'string', default: 'all' },
    replay: { type: 'string' },
  },
});

const targets: readonly Target[] = values.target === 'all' ? TARGETS : TARGETS.filter((t) => t === values.target);
if (targets.length === 0) {
  console.error(`unknown --target ${values.target}; want router, relay, codec, http or all`);
  process.exit(2);
}

let unhandled: unknown = null;
process.on('unhandledRejection', (err) => {
  unhandled ??= err;
});

async function runCase(target: Target, seed: number): Promise<void> {
  if (target === 'router') runRouterCase(seed);
  else if (target === 'relay') await runRelayCase(seed);
  else if (target === 'codec') runCodecCase(seed);
  else runHttpConnectCase(seed);
  if (unhandled !== null) {
    const err = unhandled;
    unhandled = null;
    throw new Error(`unhandled promise rejection: ${err instanceof Error ? err.stack : String(err)}`);
  }
}

if (values.replay !== undefined) {
  const target = targets.length === 1 ? targets[0]! : 'router';
  const seed = Number(values.replay) >>> 0;
  try {
    await runCase(target, seed);
    console.log(`${target} case ${seed}: ok`);
  } catch (err) {
    console.log(`${target} case ${seed}: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  process.exit(0);
}

const master = values.seed !== undefined ? Number(values.seed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const maxCases = values.cases !== undefined ? Number(values.cases) : Infinity;
const deadline = values.cases !== undefined && values.minutes === undefined ? Infinity : Date.now() + Number(values.minutes ?? 2) * 60_000;
const rng = new Rng(master);
const counts: Record<Target, number> = { router: 0, relay: 0, codec: 0, http: 0 };
let total = 0;
const started = Date.now();
let lastReport = started;
console.log(`fuzzing ${targets.join(', ')} with master seed ${master} (replay the run with --seed ${master})`);

const report = (final: boolean): void => {
  const secs = (Date.now() - started) / 1000;
  const per = targets.map((t) => `${t} ${counts[t]}`).join(', ');
  console.log(`${final ? 'done' : 'progress'}: ${total} cases in ${secs.toFixed(0)} s (${Math.round(total / Math.max(secs, 0.001))}/s; ${per}); master seed ${master}`);
};

while (total < maxCases && Date.now() < deadline) {
  // Check the clock every 256 cases; it is not free.
  for (let i = 0; i < 256 && total < maxCases; i++) {
    const target = targets[total % targets.length]!;
    const caseSeed = rng.fork();
    try {
      await runCase(target, caseSeed);
    } catch (err) {
      console.log(`\nVIOLATION in ${target} case ${total} (case seed ${caseSeed}, master seed ${master}):\n${err instanceof Error ? err.message : String(err)}`);
      if (err instanceof Error && err.name !== 'FuzzViolation') console.log(err.stack);
      console.log(`\nreplay: npm run fuzz -- --target ${target} --replay ${caseSeed}`);
      report(true);
      process.exit(1);
    }
    counts[target]++;
    total++;
  }
  if (Date.now() - lastReport >= 10_000) {
    lastReport = Date.now();
    report(false);
  }
}
report(true);
