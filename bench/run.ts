/**
 * konnectivity-ts benchmark suite: `npm run bench [-- options]`.
 *
 * Every scenario runs against `direct` (plain loopback TCP to the
 * destination: the baseline, measured in the same run) and through the
 * tunnel in each mode (grpc, http-connect; frontend on a unix socket as
 * kube-apiserver uses it). Server and agent are separate processes started
 * from bin/ with upstream flags; the destination is a third child process;
 * this process is the load generator (the tunnel client). With
 * --upstream-server/--upstream-agent, upstream's Go binaries run side by side
 * as targets `upstream-grpc` and `upstream-http-connect`, started with the same
 * upstream flags and measured the same way, so one run gives ours ÷ upstream.
 *
 * Options:
 *   --quick                 small sizes, one run each: a CI smoke run (< 2 min); asserts no speed,
 *                           but exits 1 when any scenario fails (for ours or direct; upstream targets'
 *                           failures are reported only)
 *   --only a,b              run only these scenarios: throughput, rtt, dial, concurrent, idle, hol, many
 *   --modes grpc,http-connect   tunnel modes to run (default both)
 *   --skip-many             leave out the many-connections scenario
 *   --reps N                runs per target and scenario, interleaved, median reported (default 5;
 *                           the head-of-line scenario runs 2N - 1);
 *                           this machine's run-to-run spread is ±15–30 %, so small differences
 *                           need more runs, or an A/B inside one invocation
 *   --profile[=DIR]         run server and agent under node --cpu-prof and print the top self-time
 *                           costs (profiles kept in DIR, default a temp dir)
 *   --v N                   pass -v=N to server and agent (default: the binaries' default)
 *   --compiled              run server and agent from a fresh tsc build of src/ in a temp dir (what
 *                           an installed package runs); by default the checkout's bin/ shims run,
 *                           which use dist/ if someone built it and the sources otherwise
 *   --code DIR              run server and agent from another konnectivity-ts checkout instead (a fresh
 *                           tsc build of DIR's src/, e.g. a git worktree of an older commit), for
 *                           before/after comparisons such as `--profile`; never written to docs/
 *   --frontend-buffer-limit BYTES   diagnostic: run the server through bench/server-entry.ts with its
 *                           maxFrontendBufferBytes (no CLI flag; default 16 MiB) set to BYTES
 *   --write / --no-write    write docs/benchmarks.md and docs/bench/*.svg (default: only for a full
 *                           run of every scenario and mode without --profile)
 *   --server-arg FLAG / --agent-arg FLAG   extra flag for every server / agent (repeatable), for
 *                           tuning experiments, e.g. --agent-arg=--flow-control-window=4194304
 *   --node-arg FLAG         extra Node.js flag for server and agent (repeatable), e.g. --node-arg=--trace-gc
 *   --keep-logs             keep the temp dir with the server and agent logs (its path is printed)
 *   --json FILE             also write the results as JSON
 *   --upstream-server PATH --upstream-agent PATH   also run upstream's Go proxy-server and proxy-agent
 *                           (both required together; executables, run directly) as targets
 *                           upstream-grpc / upstream-http-connect for the selected modes, interleaved
 *                           with the others; the report adds an "ours÷upstream" column per mode and
 *                           records both paths and their `--version` output. Relative paths are taken
 *                           from the directory npm was started in. --server-arg / --agent-arg / --node-arg
 *                           / --profile apply to ours only (they may be konnectivity-ts extensions)
 *   --upstream-server-arg FLAG / --upstream-agent-arg FLAG   extra flag for upstream's server / agent (repeatable)
 *   --variant-node-arg FLAG / --variant-env NAME=VALUE   A/B run (repeatable): our server and agent run a
 *                           second time with these extra Node.js flags / environment variables, in the
 *                           slot upstream's binaries would take (columns upstream-<mode>, "÷upstream" =
 *                           ours ÷ variant), interleaved with the others. Never written to docs/.
 *   --variant-node PATH     A/B run: the variant runs our server and agent under this Node.js executable
 *                           (another Node version); combines with --variant-node-arg / --variant-env
 *   --token-auth            agents authenticate by service-account token (upstream's --authentication-audience,
 *                           --agent-namespace, --agent-service-account, --kubeconfig; agent
 *                           --service-account-token-path), reviewed by the test suite's fake apiserver
 *                           (test/helpers/fake-apiserver.ts) over HTTPS on loopback; ours and upstream's alike
 *   --wait-quiet            for a shared machine: before each measured run, wait (up to 15 min)
 *                           until processes outside the bench use under 15 % of one core, and
 *                           repeat (up to 5 times) a run during which they used over 25 %
 */
import v8 from 'node:v8';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { applyHeapTuning, type HeapTuning } from '../src/runtime/heap-tuning.ts';
import { applyTieringTuning } from '../src/runtime/tiering-tuning.ts';
import { shebangNodeArgs } from './lib/shebang-node-args.ts';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createDevPki } from '../src/dev/pki.ts';
import { FakeApiServer } from '../test/helpers/fake-apiserver.ts';
import type { TunnelMode } from '../src/client/tunnel-options.ts';
import { checkoutLayout, checkoutProblem, compiledLayout, executableProblem, probeVersion, startCluster, type Cluster, type ClusterOptions, type CodeLayout, type UpstreamBinaries } from './lib/cluster.ts';
import { startDestination, type Destination } from './lib/destination.ts';
import { foreignCpuSeconds } from './lib/proc.ts';
import { consoleTable, markdown, oursOverUpstream, preservedNotes, svgChart, hasChartData } from './lib/report.ts';
import { formatSummary, summariseProfile } from './lib/profile-summary.ts';
import { errorText, scenarioIds, type BenchContext, type Scenario, type ScenarioId, type ScenarioResult } from './lib/scenario.ts';
import { clusterTargetName, directTarget, isUpstream, tunnelTarget, type Target, type TargetName } from './lib/targets.ts';
import { throughput } from './scenarios/throughput.ts';
import { rtt } from './scenarios/rtt.ts';
import { dial } from './scenarios/dial.ts';
import { concurrent } from './scenarios/concurrent.ts';
import { idle, addAfterLoad } from './scenarios/idle.ts';
import { hol, holRunCount } from './scenarios/hol.ts';
import { many } from './scenarios/many.ts';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));
// The load generator stands in for kube-apiserver (a Go program): it gets the
// same GC setting as the daemons, so its own garbage collection of read
// buffers does not take CPU from the processes being measured.
const loadGeneratorHeapTuning = applyHeapTuning();
// And the same TurboFan budget: its per-dial code (the client library, the
// probe) then reaches the top tier within the dial scenario's warm-up, as
// the daemons' does, instead of after about 10,000 dials.
const loadGeneratorTiering = applyTieringTuning();

function describeHeapTuning(tuning: HeapTuning): string {
  if (tuning.growingPercent === 0) return "V8's own heap growing factor";
  if (tuning.headroomMb === 0) return `\`--heap-growing-percent=${tuning.growingPercent}\``;
  return `a heap growing percent of ${tuning.growingPercent} while that keeps the next full collection under 96 MB, beyond that at most ${tuning.headroomMb} MB past what survived, recomputed after each full collection`;
}
// Load generator only, not the daemons: V8 otherwise starts a full GC for
// every 64 MB of read buffers, however little JavaScript is live. Counting
// them in the global heap limit instead halved the load generator's CPU per
// 512 MiB download (gRPC 0.85-0.93 -> 0.43-0.45 s, HTTP-CONNECT 0.47-0.58 ->
// 0.30-0.31 s). The daemons keep V8's default: there it saved about 5 % CPU in
// interleaved A/B runs and raised the agent's peak RSS during a bulk transfer
// from about 150 to 215 MB.
v8.setFlagsFromString('--external-memory-accounted-in-global-limit');
const allModes: TunnelMode[] = ['grpc', 'http-connect'];
/** Run order: idle memory first (fresh processes), many-connections last (it inflates memory). */
const scenarios: Scenario[] = [idle, throughput, rtt, dial, concurrent, hol, many];

function usageError(msg: string): never {
  process.stderr.write(`bench: ${msg}\nsee the header of bench/run.ts for the options\n`);
  process.exit(2);
}

/** `--profile` takes an optional directory: a bare one (last, or followed by another option) means "a temp dir". */
const argv = process.argv.slice(2).map((arg, i, all) => (arg === '--profile' && (i === all.length - 1 || all[i + 1]!.startsWith('-')) ? '--profile=' : arg));

let parsed: ReturnType<typeof parseBenchArgs>;
try {
  parsed = parseBenchArgs(argv);
} catch (err) {
  // parseArgs' own errors (unknown option, missing value) as a usage error, not a stack trace.
  usageError(err instanceof Error ? err.message : String(err));
}
const { values: opts } = parsed;

function parseBenchArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      modes: { type: 'string' },
      'skip-many': { type: 'boolean', default: false },
      profile: { type: 'string' },
      v: { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      json: { type: 'string' },
      compiled: { type: 'boolean', default: false },
      code: { type: 'string' },
      'frontend-buffer-limit': { type: 'string' },
      'wait-quiet': { type: 'boolean', default: false },
      'token-auth': { type: 'boolean', default: false },
      'server-arg': { type: 'string', multiple: true },
      'node-arg': { type: 'string', multiple: true },
      'keep-logs': { type: 'boolean', default: false },
      'agent-arg': { type: 'string', multiple: true },
      'upstream-server': { type: 'string' },
      'upstream-agent': { type: 'string' },
      'upstream-server-arg': { type: 'string', multiple: true },
      'upstream-agent-arg': { type: 'string', multiple: true },
      reps: { type: 'string' },
      'variant-node-arg': { type: 'string', multiple: true },
      'variant-env': { type: 'string', multiple: true },
      'variant-node': { type: 'string' },
    },
    allowPositionals: false,
    strict: true,
  });
}

const quick = opts.quick!;
const reps = opts.reps === undefined ? 5 : Number(opts.reps);
if (!Number.isInteger(reps) || reps < 1 || reps > 99) usageError('--reps needs a whole number of runs per target, 1 to 99');
if (quick && opts.reps !== undefined) usageError('--reps and --quick do not go together (quick mode runs each target once)');
const only = opts.only ? (opts.only.split(',').map((s) => s.trim()).filter(Boolean) as ScenarioId[]) : null;
for (const id of only ?? []) if (!scenarioIds.includes(id)) usageError(`unknown scenario ${JSON.stringify(id)} (known: ${scenarioIds.join(', ')})`);
const modes = opts.modes ? (opts.modes.split(',').map((s) => s.trim()).filter(Boolean) as TunnelMode[]) : allModes;
for (const m of modes) if (!allModes.includes(m)) usageError(`unknown mode ${JSON.stringify(m)} (known: ${allModes.join(', ')})`);
const verbosity = opts.v === undefined ? undefined : Number(opts.v);
if (verbosity !== undefined && !Number.isInteger(verbosity)) usageError('--v needs an integer');
const selected = scenarios.filter((s) => (only ? only.includes(s.id) : !(opts['skip-many'] && s.id === 'many')));
const profileDir = opts.profile === undefined ? undefined : opts.profile || mkdtempSync(path.join(os.tmpdir(), 'konnectivity-bench-prof-'));
const frontendBufferLimit = opts['frontend-buffer-limit'] === undefined ? undefined : Number(opts['frontend-buffer-limit']);
if (frontendBufferLimit !== undefined && !(Number.isInteger(frontendBufferLimit) && frontendBufferLimit > 0)) usageError('--frontend-buffer-limit needs a positive integer (bytes)');
const serverArgs = opts['server-arg'] ?? [];
const agentArgs = opts['agent-arg'] ?? [];
const nodeArgs = opts['node-arg'] ?? [];
/**
 * --token-auth: upstream's flags for agent token authentication, plus --kubeconfig at run time.
 * JSON, because the fake apiserver speaks no protobuf and upstream's client-go asks for protobuf by default.
 */
const TOKEN_AUTH_AUDIENCE = 'system:konnectivity-server';
const TOKEN_AUTH_SERVER_FLAGS = [`--authentication-audience=${TOKEN_AUTH_AUDIENCE}`, '--agent-namespace=kube-system', '--agent-service-account=konnectivity-agent', '--kube-api-content-type=application/json'];
const BENCH_AGENT_TOKEN = 'bench-agent-service-account-token';

/**
 * Upstream's binaries, when both paths are given. npm runs scripts from the
 * package root, so relative paths are taken from where npm was started.
 */
function upstreamBinaries(): UpstreamBinaries | undefined {
  const server = opts['upstream-server'];
  const agent = opts['upstream-agent'];
  const extras = [...(opts['upstream-server-arg'] ?? []), ...(opts['upstream-agent-arg'] ?? [])];
  if (server === undefined && agent === undefined) {
    if (extras.length) usageError('--upstream-server-arg / --upstream-agent-arg need --upstream-server and --upstream-agent');
    return undefined;
  }
  if (!server || !agent) usageError('--upstream-server and --upstream-agent go together: give both paths (upstream\'s proxy-server and proxy-agent executables)');
  const base = invocationDir();
  const resolved = { serverPath: path.resolve(base, server), agentPath: path.resolve(base, agent) };
  for (const [flag, file] of [['--upstream-server', resolved.serverPath], ['--upstream-agent', resolved.agentPath]] as const) {
    const problem = executableProblem(file);
    if (problem) usageError(`${flag}: ${file} ${problem}`);
  }
  return { ...resolved, serverArgs: opts['upstream-server-arg'] ?? [], agentArgs: opts['upstream-agent-arg'] ?? [] };
}
/** Where relative paths on the command line start: the directory npm was started in, under `npm run bench`. */
function invocationDir(): string {
  return process.env.npm_lifecycle_event === 'bench' && process.env.INIT_CWD ? process.env.INIT_CWD : process.cwd();
}
/** `--version` of a Node.js executable given with --variant-node; a usage error when it does not run. */
function nodeVersionOf(executable: string): string {
  const problem = executableProblem(executable);
  if (problem) usageError(`--variant-node: ${executable} ${problem}`);
  try {
    return execFileSync(executable, ['--version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch (err) {
    usageError(`--variant-node: ${executable} --version failed: ${(err as Error).message}`);
  }
}
/** Shell single-quoting, for the wrapper scripts. */
const shellQuote = (arg: string): string => `'${arg.replaceAll("'", "'\\''")}'`;

/**
 * The B arm of an A/B run: two wrapper scripts that start our own server and
 * agent with the variant's Node.js flags and environment. They take the slot
 * of upstream's binaries, so the bench runs and reports them the same way.
 * Which bin/ they start is known only once the code layout is chosen, so the
 * scripts read it from KTS_BENCH_VARIANT_BIN_DIR, and the Node options of its
 * shebang lines from KTS_BENCH_VARIANT_NODE_ARGS_SERVER / _AGENT (set before
 * any cluster starts).
 */
function variantWrappers(): UpstreamBinaries {
  const wrapperDir = mkdtempSync(path.join(os.tmpdir(), 'konnectivity-bench-variant-'));
  process.once('exit', () => rmSync(wrapperDir, { recursive: true, force: true }));
  const write = (who: 'server' | 'agent'): string => {
    const file = path.join(wrapperDir, `variant-${who}`);
    const script = [
      '#!/bin/sh',
      ...variantEnv.map(([name, value]) => `export ${name}=${shellQuote(value)}`),
      // The daemon's own shebang options (the young generation's size) come first, as spawnNode puts them; unquoted, to split into words.
      `exec ${shellQuote(variantNode ?? process.execPath)} $KTS_BENCH_VARIANT_NODE_ARGS_${who.toUpperCase()} ${[...nodeArgs, ...variantNodeArgs].map(shellQuote).join(' ')} "$KTS_BENCH_VARIANT_BIN_DIR/konnectivity-${who}" "$@"`,
      '',
    ].join('\n');
    writeFileSync(file, script, { mode: 0o755 });
    return file;
  };
  // Both arms get the same konnectivity-ts flags; only the variant differs.
  return { serverPath: write('server'), agentPath: write('agent'), serverArgs, agentArgs };
}

const variantNodeArgs = opts['variant-node-arg'] ?? [];
const variantEnv = (opts['variant-env'] ?? []).map((pair) => {
  const eq = pair.indexOf('=');
  if (eq < 1 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(pair.slice(0, eq))) usageError(`--variant-env ${JSON.stringify(pair)}: give NAME=VALUE`);
  return [pair.slice(0, eq), pair.slice(eq + 1)] as const;
});
const variantNode = opts['variant-node'] === undefined ? undefined : path.resolve(invocationDir(), opts['variant-node']);
/** What the B arm of an A/B run changes, or null for a normal run. */
const variantChanges = [
  ...(variantNode === undefined ? [] : [`Node.js ${nodeVersionOf(variantNode)} (${variantNode})`]),
  ...variantNodeArgs,
  ...variantEnv.map(([k, v]) => `${k}=${v}`),
];
const variant = variantChanges.length ? variantChanges.join(' ') : null;
if (variant !== null) {
  if (opts['upstream-server'] || opts['upstream-agent'] || opts['upstream-server-arg'] || opts['upstream-agent-arg']) usageError('--variant-* takes the slot of upstream\'s binaries: not together with --upstream-*');
  if (opts.write) usageError('--variant-* runs are A/B experiments and are never written to docs/: drop --write');
  if (opts.profile !== undefined) usageError('--profile profiles only the A arm: not together with --variant-*');
  if (opts['frontend-buffer-limit'] !== undefined) usageError('--frontend-buffer-limit swaps the A arm\'s server entry only: not together with --variant-*');
}
/** Another checkout whose server and agent run instead of this one's (`--code`), or null. */
const otherCheckout = opts.code === undefined ? null : path.resolve(invocationDir(), opts.code);
if (otherCheckout !== null) {
  const problem = checkoutProblem(otherCheckout);
  if (problem) usageError(`--code: ${problem}`);
  if (opts.write) usageError('--code measures another checkout, and docs/ describes this one: drop --write');
}
const upstream = variant === null ? upstreamBinaries() : variantWrappers();
const upstreamExtras = [...(upstream?.serverArgs ?? []), ...(upstream?.agentArgs ?? [])];
/** `--version` output of upstream's binaries (probed once at start). */
let upstreamVersions: { server: string; agent: string } | undefined;
const fullRun = !quick && !only && !opts['skip-many'] && modes.length === allModes.length && profileDir === undefined && frontendBufferLimit === undefined && serverArgs.length === 0 && agentArgs.length === 0 && nodeArgs.length === 0 && upstreamExtras.length === 0 && !opts['token-auth'];
const write = variant !== null || otherCheckout !== null || opts['no-write'] ? false : (opts.write ?? fullRun);
const command = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');

const started = performance.now();
const elapsed = (): string => `${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s`;
const progress = (line: string): void => {
  process.stdout.write(`[${elapsed()}] ${line}\n`);
};

let gitAtStart: string | undefined;

/** The commit (and whether src/ or bin/ had local changes) when the run started. */
function gitDescribe(): string {
  gitAtStart ??= readGit();
  return gitAtStart;
}

function readGit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src', 'bin'], { cwd: repoRoot, encoding: 'utf8' }).trim();
    return dirty ? `${head} (with uncommitted changes in src/ or bin/)` : head;
  } catch {
    return 'unknown';
  }
}

const loadAverages: string[] = [];
const contention: string[] = [];

function loadAverage(when: string): void {
  loadAverages.push(`${when} ${os.loadavg().map((l) => l.toFixed(2)).join(' / ')}`);
}

function machineFacts(): string[] {
  const cpus = os.cpus();
  const models = [...new Set(cpus.map((c) => c.model.trim()))].join(', ');
  return [
    `CPU: ${cpus.length} × ${models}${cpus[0]?.speed ? ` @ ${cpus[0].speed} MHz` : ''} (os.cpus())`,
    `Memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB (os.totalmem())`,
    `OS: ${os.type()} ${os.release()} ${os.arch()}`,
    `Node.js: ${process.version} (V8 ${process.versions.v8}, OpenSSL ${process.versions.openssl})`,
    `konnectivity-ts commit: ${gitDescribe()}`,
    ...(upstream
      ? [
          `Upstream proxy-server: \`${upstream.serverPath}\` (${upstreamVersions?.server ?? 'version not probed'})`,
          `Upstream proxy-agent: \`${upstream.agentPath}\` (${upstreamVersions?.agent ?? 'version not probed'})`,
        ]
      : []),
    ...(loadAverages.length ? [`Load average (1 / 5 / 15 min): ${loadAverages.join('; ')}`] : []),
    ...contention,
  ];
}

/**
 * Share of one core used by processes outside the bench over 2 s; with
 * `wait`, keeps sampling (up to 15 min) until that is under 15 % for 5 s.
 */
async function waitQuiet(benchPids: number[], wait: boolean, sampleMs = 2_000): Promise<number> {
  let foreign = (await foreignCpuSeconds(benchPids, sampleMs)) / (sampleMs / 1000);
  if (!wait || foreign <= 0.15) return foreign;
  const giveUp = Date.now() + 15 * 60_000;
  while (Date.now() < giveUp) {
    progress(`waiting for a quiet machine: other processes use ${(100 * foreign).toFixed(0)} % of one core…`);
    foreign = (await foreignCpuSeconds(benchPids, 5_000)) / 5;
    if (foreign <= 0.15) break;
  }
  return foreign;
}

/** Share of one core that processes outside the bench used during the measured runs. */
function summariseContention(results: ScenarioResult[]): void {
  let foreign = 0;
  let wall = 0;
  let worst = { pct: 0, what: '' };
  for (const r of results) {
    for (const [t, c] of Object.entries(r.cpu)) {
      foreign += c.foreign;
      wall += c.wallS;
      const pct = (100 * c.foreign) / c.wallS;
      if (pct > worst.pct) worst = { pct, what: `${r.id} / ${t}` };
    }
  }
  if (wall > 0) {
    contention.push(`Other processes on the machine during the measured runs: ${((100 * foreign) / wall).toFixed(0)} % of one core on average, at most ${worst.pct.toFixed(0)} % (${worst.what})`);
  }
}

/** The Node options server and agent start with, from their bin/ scripts' first lines. */
function describeShebang(code: CodeLayout): string {
  const options = (['server', 'agent'] as const).map((who) => shebangNodeArgs(path.join(code.binDir, `konnectivity-${who}`)).join(' '));
  const shown = (o: string): string => (o === '' ? 'no options' : `\`${o}\``);
  return options[0] === options[1] ? `${shown(options[0]!)} (their shebang lines)` : `server ${shown(options[0]!)}, agent ${shown(options[1]!)} (their shebang lines)`;
}

function setupFacts(code: CodeLayout): string[] {
  return [
    `Server and agent code: ${code.description}.${frontendBufferLimit !== undefined ? ` **Diagnostic run:** the server was started through \`bench/server-entry.ts\` with maxFrontendBufferBytes = ${frontendBufferLimit} bytes instead of the built-in 16 MiB.` : ''}`,
    'Four processes: this load generator (the tunnel client, as kube-apiserver would be), `konnectivity-server` and `konnectivity-agent` started from `bin/` with upstream flags (`--mode`, `--uds-name`, `--agent-port`, …; one agent, `--server-count=1`), and a destination process (`bench/destination.ts`: the endpoints of the demo target, `/bytes/N`, a ≈70-byte answer otherwise, served by a minimal HTTP/1.1 responder on raw sockets so that the destination is never what limits `direct`, plus a TCP echo server). `direct` connects the load generator straight to the destination over loopback TCP.',
    ...(upstream
      ? [
          `Upstream side by side: upstream's Go \`proxy-server\` and \`proxy-agent\` (paths and versions under Machine) run as targets \`upstream-grpc\` / \`upstream-http-connect\`: a second server and agent per mode, executed directly with exactly the same upstream flags as ours (no Node flags, no konnectivity-ts extension flags${upstreamExtras.length ? `; extra upstream flags: server ${upstream.serverArgs?.join(' ') || '(none)'}, agent ${upstream.agentArgs?.join(' ') || '(none)'}` : ''}), their frontend on its own unix socket, reached by the same load generator with our client library (as kube-apiserver would reach it); their CPU and RSS are read from /proc like ours. Idle processes of the other targets stay up during each run.`,
        ]
      : []),
    ...(opts['token-auth']
      ? [
          `Token authentication (\`--token-auth\`): every server runs with \`${TOKEN_AUTH_SERVER_FLAGS.join(' ')}\` and \`--kubeconfig\` pointing at the test suite's fake apiserver (\`test/helpers/fake-apiserver.ts\`, HTTPS on loopback), and every agent presents a service-account token (\`--service-account-token-path\`), so each agent connection is authenticated by a TokenReview.`,
        ]
      : []),
    ...(serverArgs.length || agentArgs.length ? [`**Extra flags${upstream ? ' (konnectivity-ts only)' : ''}:** server ${serverArgs.join(' ') || '(none)'}; agent ${agentArgs.join(' ') || '(none)'}.`] : []),
    `Frontend: unix socket (kube-apiserver's usual setup); agent → server: gRPC over TLS on loopback with a throwaway PKI (\`createDevPki\`). Log verbosity: ${verbosity === undefined ? "the binaries' default, logs written to files" : `-v=${verbosity}`}.`,
    'The client keeps one tunnel per mode for the whole run: in gRPC mode one HTTP/2 connection with one stream per dial (as current kube-apiserver\'s CreateGRPCTunnel); in HTTP-CONNECT mode one unix-socket connection per dial.',
    'The load generator speaks minimal HTTP/1.1 (`bench/lib/mini-http.ts`: fixed GET, Content-Length framing) so its own cost is small and the same for every target.',
    `V8 heap: server and agent apply src/runtime/heap-tuning.ts at startup, as does the load generator: ${describeHeapTuning(loadGeneratorHeapTuning)} (KONNECTIVITY_HEAP_GROWING_PERCENT, KONNECTIVITY_HEAP_HEADROOM_MB; 0 turns one off). Server and agent start Node with ${describeShebang(code)}. The load generator also applies \`--external-memory-accounted-in-global-limit\` (the daemons do not), so that collecting its read buffers does not take CPU from the processes being measured.`,
    `V8 tiering: server, agent and the load generator apply src/runtime/tiering-tuning.ts at startup (TurboFan budget: ${loadGeneratorTiering.turbofanInvocations}; KONNECTIVITY_TURBOFAN_INVOCATIONS, 0 for V8's own).`,
    'Fairness on 2 cores: the destination runs in its own process so it never shares an event loop with the load generator. No CPU pinning: a direct run has 2 busy processes on 2 cores, a tunnelled run has 4 (client, server, agent, destination), which is the real deployment shape — the tunnel\'s extra processes compete for the same cores, as they did in the upstream reference. Each scenario\'s CPU table shows every process\'s CPU seconds and share of one core, so a saturated process (~100 %) or a saturated machine (sum ~200 %) is visible.',
    opts['wait-quiet']
      ? 'Shared-machine guard (`--wait-quiet`): before each measured run the bench waited until processes outside it used under 15 % of one core, and repeated (up to 5 times) any run during which they used over 25 %; the "not bench" column shows what remained.'
      : 'No shared-machine guard: other processes may have competed for the CPU; the "not bench" column of each CPU table shows how much.',
    `Repetitions: ${quick ? '1 run per target (quick mode)' : `medians of ${reps} runs per target (${holRunCount(reps)} in the head-of-line scenario)`}, targets interleaved within each repetition (${targetOrderText}, then again) so drift hits all alike; warm-up before measuring. Benchmarks assert no speed; the numbers are only reported.`,
  ];
}

/** Run order of the targets: direct, then per mode ours and (when given) upstream's. */
const targetOrderText = ['direct', ...modes.flatMap((m) => (upstream ? [m, `upstream-${m}`] : [m]))].join(', ');

/** Every server and agent started, for the JSON output (the many-connections scenario restarts them). */
const processes: { target: string; server: { pid: number; executable: string }; agent: { pid: number; executable: string } }[] = [];

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'konnectivity-bench-'));
  const clusters: Cluster[] = [];
  // Ctrl-C reaches the children too, and an agent only drains on its first signal: make sure nothing outlives us.
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stdout.write(`\n${signal}: stopping the bench processes\n`);
    for (const c of clusters) for (const p of [c.server, c.agent]) p.child.kill('SIGKILL');
    destination?.process.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  gitDescribe();
  const targets: Target[] = [];
  let destination: Destination | null = null;
  let apiserver: FakeApiServer | undefined;
  let tokenAuth: ClusterOptions['tokenAuth'];
  let code: CodeLayout = checkoutLayout();
  const results: ScenarioResult[] = [];
  let failed = false;
  try {
    if (upstream && variant === null) {
      const [server, agent] = await Promise.all([probeVersion(upstream.serverPath), probeVersion(upstream.agentPath)]);
      upstreamVersions = { server, agent };
    }
    progress(`konnectivity-ts bench${quick ? ' (quick)' : ''}: scenarios ${selected.map((s) => s.id).join(', ')}; modes ${modes.join(', ')}${variant !== null ? `; A/B run: the upstream-* targets are OUR binaries with ${variant}` : upstream ? '; with upstream\'s binaries side by side' : ''}`);
    for (const line of machineFacts()) progress(`  ${line}`);
    code = checkoutLayout();
    if (otherCheckout === null && !opts.compiled && code.description.includes('WARNING')) progress("dist/ is older than src/ (the bin/ shims would run stale code): using a fresh build instead, as with --compiled");
    if (otherCheckout !== null) code = compiledLayout(path.join(dir, 'build'), otherCheckout);
    else if (opts.compiled || code.description.includes('WARNING')) code = compiledLayout(path.join(dir, 'build'));
    process.env.KTS_BENCH_VARIANT_BIN_DIR = code.binDir;
    for (const who of ['server', 'agent'] as const) {
      process.env[`KTS_BENCH_VARIANT_NODE_ARGS_${who.toUpperCase()}`] = shebangNodeArgs(path.join(code.binDir, `konnectivity-${who}`)).join(' ');
    }
    progress(`server and agent run ${code.description}${frontendBufferLimit !== undefined ? `; DIAGNOSTIC server entry with maxFrontendBufferBytes=${frontendBufferLimit}` : ''}`);
    const pki = await createDevPki(path.join(dir, 'pki'));
    if (opts['token-auth']) {
      apiserver = await FakeApiServer.start({ pki, dir });
      apiserver.addToken(BENCH_AGENT_TOKEN, 'system:serviceaccount:kube-system:konnectivity-agent', [TOKEN_AUTH_AUDIENCE]);
      const tokenPath = path.join(dir, 'agent-token');
      writeFileSync(tokenPath, BENCH_AGENT_TOKEN);
      tokenAuth = { serverFlags: [...TOKEN_AUTH_SERVER_FLAGS, `--kubeconfig=${apiserver.kubeconfigPath}`], agentFlags: [`--service-account-token-path=${tokenPath}`] };
      progress(`token authentication: fake apiserver at ${apiserver.url}`);
    }
    destination = await startDestination();
    progress(`destination process ${destination.process.pid}: HTTP ${destination.httpAddress}, echo ${destination.echoAddress}`);
    targets.push(directTarget());
    const launch = async (mode: TunnelMode, asUpstream: boolean): Promise<Cluster> => {
      const cluster = await startCluster({
        mode,
        dir,
        pki: { caCertPath: pki.ca.certPath, serverCertPath: pki.server.certPath, serverKeyPath: pki.server.keyPath },
        verbosity,
        cpuProfileDir: profileDir,
        code,
        frontendBufferLimit,
        serverArgs,
        agentArgs,
        nodeArgs,
        ...(tokenAuth ? { tokenAuth } : {}),
        ...(asUpstream ? { upstream } : {}),
      });
      processes.push({
        target: clusterTargetName(cluster),
        server: { pid: cluster.server.pid, executable: asUpstream ? upstream!.serverPath : 'konnectivity-server' },
        agent: { pid: cluster.agent.pid, executable: asUpstream ? upstream!.agentPath : 'konnectivity-agent' },
      });
      return cluster;
    };
    for (const mode of modes) {
      for (const asUpstream of upstream ? [false, true] : [false]) {
        const cluster = await launch(mode, asUpstream);
        clusters.push(cluster);
        targets.push(tunnelTarget(cluster));
        progress(`${clusterTargetName(cluster)}: server pid ${cluster.server.pid}, agent pid ${cluster.agent.pid}, frontend ${cluster.udsPath}`);
      }
    }
    const benchPids = [process.pid, destination.process.pid, ...clusters.flatMap((c) => [c.server.pid, c.agent.pid])];
    const ctx: BenchContext = {
      quick,
      reps: quick ? 1 : reps,
      targets,
      destination,
      progress,
      benchPids,
      ...(opts['wait-quiet'] ? { gate: { waitQuiet: async () => void (await waitQuiet(benchPids, true, 1_000)), maxForeignShare: 0.25, maxAttempts: 6 } } : {}),
    };
    const foreign = await waitQuiet(benchPids, opts['wait-quiet']!);
    const quietNote = `other processes use ${(100 * foreign).toFixed(0)} % of one core`;
    progress(foreign > 0.25 ? `WARNING: ${quietNote}; figures will be skewed (try --wait-quiet)` : `machine check: ${quietNote}`);
    contention.push(`Before measuring: ${quietNote} (2 s sample)`);
    loadAverage('at start');
    let idleResult: ScenarioResult | null = null;
    for (const [i, scenario] of selected.entries()) {
      if (scenario.id === 'many' && idleResult) {
        progress('memory after the load scenarios…');
        await addAfterLoad(ctx, idleResult);
      }
      if (scenario.id === 'many' && i > 0) {
        // The 10,000-connection memory target is about connections, not about
        // what earlier throughput peaks left in the malloc heap (reported above
        // as "idle after the load scenarios"), so it starts from fresh processes.
        progress('restarting server and agent so the many-connections scenario starts from fresh processes…');
        for (const [ci, old] of clusters.entries()) {
          const ti = targets.findIndex((t) => t.cluster === old);
          await targets[ti]!.close();
          await old.stop();
          const fresh = await launch(old.mode, old.upstream);
          clusters[ci] = fresh;
          targets[ti] = tunnelTarget(fresh);
          for (const p of [old.server.pid, old.agent.pid]) benchPids.splice(benchPids.indexOf(p), 1);
          benchPids.push(fresh.server.pid, fresh.agent.pid);
          progress(`${clusterTargetName(fresh)}: server pid ${fresh.server.pid}, agent pid ${fresh.agent.pid}`);
        }
      }
      progress(`[${i + 1}/${selected.length}] ${scenario.title}…`);
      let result: ScenarioResult;
      try {
        result = await scenario.run(ctx);
      } catch (err) {
        progress(`    FAILED: ${errorText(err)}`);
        result = { id: scenario.id, title: scenario.title, method: '', metrics: [], cpu: {}, errors: Object.fromEntries(targets.map((t) => [t.name, errorText(err)])), notes: [] };
      }
      if (scenario.id === 'idle') idleResult = result;
      results.push(result);
      for (const c of clusters) {
        for (const p of [c.server, c.agent]) {
          if (p.child.exitCode !== null || p.child.signalCode !== null) {
            const msg = `${p.name} exited (${p.child.exitCode ?? p.child.signalCode}) during this scenario; see ${p.logPath}`;
            result.errors[clusterTargetName(c)] ??= msg;
            progress(`    ${msg}`);
          }
        }
      }
    }
    if (idleResult && !selected.some((s) => s.id === 'many')) {
      progress('memory after the load scenarios…');
      await addAfterLoad(ctx, idleResult);
    }
  } catch (err) {
    progress(`bench setup failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    failed = true;
  } finally {
    progress('stopping…');
    await Promise.allSettled(targets.map((t) => t.close()));
    await Promise.allSettled(clusters.map((c) => c.stop()));
    await destination?.stop();
    if (apiserver) {
      progress(`token authentication: the fake apiserver answered ${apiserver.tokenReviews().length} TokenReviews`);
      await apiserver.close();
    }
  }

  loadAverage('at end');
  summariseContention(results);
  const variantLegend = variant === null ? undefined : `A/B run: the upstream-* columns are NOT upstream's binaries but ours with ${variant}; "÷upstream" reads ours ÷ variant.`;
  process.stdout.write(`\n${consoleTable(results, modes, upstream !== undefined, variantLegend)}\n`);
  for (const line of contention) process.stdout.write(`${line}\n`);
  // Upstream's binaries are the yardstick, not what is tested: their failures are reported, not fatal.
  if (results.some((r) => Object.keys(r.errors).some((t) => !isUpstream(t as TargetName)))) failed = true;
  else if (results.some((r) => Object.keys(r.errors).length > 0)) process.stdout.write('(only upstream targets failed: reported above, the exit status does not count them)\n');

  if (profileDir) {
    process.stdout.write(`\nCPU profiles (node --cpu-prof) in ${profileDir}:\n`);
    for (const c of clusters) {
      if (c.upstream) continue; // not Node: no --cpu-prof
      for (const who of ['server', 'agent']) {
        const file = path.join(profileDir, `${who}-${c.mode}.cpuprofile`);
        if (existsSync(file)) process.stdout.write(`\n${formatSummary(summariseProfile(file, repoRoot, 20))}\n`);
        else process.stdout.write(`\n${file}: not written (did the process exit cleanly?)\n`);
      }
    }
  }

  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  if (opts.json) {
    // With upstream measured, every metric also carries ours ÷ upstream per mode (the report's column).
    const withRatios = upstream
      ? results.map((r) => ({ ...r, metrics: r.metrics.map((m) => ({ ...m, oursOverUpstream: Object.fromEntries(modes.map((mode) => [mode, oursOverUpstream(m, mode)]).filter(([, v]) => v !== undefined)) })) }))
      : results;
    const upstreamFacts = upstream && variant === null ? { ...upstream, versions: upstreamVersions } : null;
    writeFileSync(opts.json, `${JSON.stringify({ command, date, quick, machine: machineFacts(), upstream: upstreamFacts, variant, processes, results: withRatios }, null, 2)}\n`);
    process.stdout.write(`\nwrote ${opts.json}\n`);
  }
  if (write) {
    const docs = path.join(repoRoot, 'docs');
    const charts = path.join(docs, 'bench');
    mkdirSync(charts, { recursive: true });
    const mdPath = path.join(docs, 'benchmarks.md');
    const previous = existsSync(mdPath) ? readFileSync(mdPath, 'utf8') : null;
    const subtitle = `${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'cpu'}, Node ${process.version}, ${date}${quick ? ', quick mode' : ''}`;
    for (const r of results) if (hasChartData(r)) writeFileSync(path.join(charts, `${r.id}.svg`), svgChart(r, subtitle));
    writeFileSync(mdPath, markdown(results, { command, date, machine: machineFacts(), setup: setupFacts(code), preservedNotes: preservedNotes(previous), modes, quick, upstream: upstream !== undefined }));
    process.stdout.write(`\nwrote ${path.relative(repoRoot, mdPath)} and ${path.relative(repoRoot, charts)}/*.svg\n`);
  } else {
    process.stdout.write('\n(docs not written: pass --write to record these figures in docs/benchmarks.md)\n');
  }
  if (opts['keep-logs']) process.stdout.write(`\nserver and agent logs kept in ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`\n${failed ? 'bench FAILED' : 'bench done'} in ${elapsed().trim()}\n`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
