/**
 * Long-running fuzzer: `npm run fuzz -- --minutes 5` (or `--cases 1000000`).
 * `npm run fuzz -- --help` prints the options (USAGE below).
 *
 * Prints progress every 10 s and, at the end, the case count and the master
 * seed. A violation (including a promise rejected unhandled during a case)
 * prints the target, the case seed and a replay command, and exits 1.
 */
import { parseArgs } from 'node:util';
import { runCodecCase } from './codec-fuzz.ts';
import { GrpcWireFuzzRig } from './grpc-wire-fuzz.ts';
import { runHttpConnectCase } from './http-connect-fuzz.ts';
import { runKubeAnswerCase } from './kube-answer-fuzz.ts';
import { Rng } from './prng.ts';
import { runRelayCase } from './relay-fuzz.ts';
import { runRouterCase } from './router-fuzz.ts';
import { UnhandledRejections } from './unhandled-rejections.ts';

type Target = 'router' | 'relay' | 'codec' | 'http' | 'kube' | 'wire';
const TARGETS: readonly Target[] = ['router', 'relay', 'codec', 'http', 'kube', 'wire'];
/** What `all` means: the in-memory targets. `wire` runs real sockets at about 100 cases/s and is asked for by name. */
const ALL: readonly Target[] = ['router', 'relay', 'codec', 'http', 'kube'];

const USAGE = `usage: npm run fuzz -- [options]

  --minutes N        run for N minutes (default 2)
  --cases N          stop after N cases instead
  --seed S           master seed (default: random); the same seed replays the same cases
  --target T         router | relay | codec | http | kube | wire | all, or a comma-separated list
                     (default all: router, relay, codec, http and kube, round-robin; kube
                     is what the Kubernetes client parses: kubeconfigs, ExecCredentials,
                     Lease objects, watch streams; wire throws
                     random and mutated gRPC traffic at a real server over real sockets,
                     about 100 cases/s, so it runs only when named)
  --replay SEED      run one case of --target with that case seed, print its trace
  -h, --help         print this and exit

Progress every 10 s; at the end the case count and the master seed. A violation,
including a promise rejected unhandled during a case, prints the case seed and a
replay command and exits 1.`;

function parseCommandLine(): ReturnType<typeof parse> {
  try {
    return parse();
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    process.exit(2);
  }
}

function parse() {
  return parseArgs({
    options: {
      minutes: { type: 'string' },
      cases: { type: 'string' },
      seed: { type: 'string' },
      target: { type: 'string', default: 'all' },
      replay: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}

const { values } = parseCommandLine();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const requested = values.target.split(',').map((t) => t.trim());
const unknown = requested.filter((t) => t !== 'all' && !TARGETS.includes(t as Target));
if (unknown.length > 0) {
  console.error(`unknown --target ${unknown.join(', ')}; want ${TARGETS.join(', ')} or all\n\n${USAGE}`);
  process.exit(2);
}
const targets: readonly Target[] = TARGETS.filter((t) => requested.includes(t) || (requested.includes('all') && ALL.includes(t)));

const unhandled = new UnhandledRejections().start();
let wireRig: GrpcWireFuzzRig | null = null;

async function runCase(target: Target, seed: number): Promise<void> {
  if (target === 'router') runRouterCase(seed);
  else if (target === 'relay') await runRelayCase(seed);
  else if (target === 'codec') runCodecCase(seed);
  else if (target === 'http') runHttpConnectCase(seed);
  else if (target === 'kube') runKubeAnswerCase(seed);
  else {
    wireRig ??= await GrpcWireFuzzRig.start();
    await wireRig.runCase(seed);
  }
  // Every case gets its own check (a yield costs ~3 µs against ~300 µs per
  // in-memory case), so a rejection is blamed on the case that caused it.
  await unhandled.check();
}

async function finish(code: number): Promise<never> {
  await wireRig?.close();
  process.exit(code);
}

if (values.replay !== undefined) {
  const target = targets.length === 1 ? targets[0]! : 'router';
  const seed = Number(values.replay) >>> 0;
  try {
    await runCase(target, seed);
    console.log(`${target} case ${seed}: ok`);
  } catch (err) {
    console.log(`${target} case ${seed}: ${err instanceof Error ? err.message : String(err)}`);
    await finish(1);
  }
  await finish(0);
}

const master = values.seed !== undefined ? Number(values.seed) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
const maxCases = values.cases !== undefined ? Number(values.cases) : Infinity;
const deadline = values.cases !== undefined && values.minutes === undefined ? Infinity : Date.now() + Number(values.minutes ?? 2) * 60_000;
const rng = new Rng(master);
const counts: Record<Target, number> = { router: 0, relay: 0, codec: 0, http: 0, kube: 0, wire: 0 };
let total = 0;
const started = Date.now();
let lastReport = started;
console.log(`fuzzing ${targets.join(', ')} with master seed ${master} (replay the run with --seed ${master}${values.target === 'all' ? '' : ` --target ${values.target}`})`);

const report = (final: boolean): void => {
  const secs = (Date.now() - started) / 1000;
  const per = targets.map((t) => `${t} ${counts[t]}`).join(', ');
  console.log(`${final ? 'done' : 'progress'}: ${total} cases in ${secs.toFixed(0)} s (${Math.round(total / Math.max(secs, 0.001))}/s; ${per}); master seed ${master}`);
};

const violation = async (target: Target, caseSeed: number, err: unknown): Promise<never> => {
  console.log(`\nVIOLATION in ${target} case ${total} (case seed ${caseSeed}, master seed ${master}):\n${err instanceof Error ? err.message : String(err)}`);
  if (err instanceof Error && err.name !== 'FuzzViolation' && err.name !== 'UnhandledRejectionError') console.log(err.stack);
  console.log(`\nreplay: npm run fuzz -- --target ${target} --replay ${caseSeed}`);
  report(true);
  return finish(1);
};

while (total < maxCases && Date.now() < deadline) {
  // Check the clock every 256 cases; it is not free.
  for (let i = 0; i < 256 && total < maxCases; i++) {
    const target = targets[total % targets.length]!;
    const caseSeed = rng.fork();
    try {
      await runCase(target, caseSeed);
    } catch (err) {
      await violation(target, caseSeed, err);
    }
    counts[target]++;
    total++;
  }
  if (Date.now() - lastReport >= 10_000) {
    lastReport = Date.now();
    report(false);
  }
}
// Rejections from timers or I/O the last cases started.
try {
  await unhandled.check();
} catch (err) {
  console.log(`\nVIOLATION after the last case (master seed ${master}):\n${err instanceof Error ? err.message : String(err)}`);
  report(true);
  await finish(1);
}
report(true);
await finish(0);
