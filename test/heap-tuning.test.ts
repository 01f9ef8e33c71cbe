/**
 * Heap tuning: the growing percent follows the live heap so that garbage
 * cannot pile up to six times what is live, and the daemons start with the
 * young generation capped, however they are started. The V8 cases run in
 * their own Node process each, because the flags are process-wide; they
 * compare heap sizes V8 reports, never times.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { growingPercentFor, maxSemiSpaceMb, readHeapTuning, DEFAULT_HEAP_GROWING_PERCENT } from '../src/runtime/heap-tuning.ts';
import { shebangNodeArgs } from '../bench/lib/shebang-node-args.ts';
import { binEnv, binPath } from './helpers/processes.ts';
import { sharedPki } from './helpers/cluster.ts';
import { freePort } from './helpers/targets.ts';

const run = promisify(execFile);
const moduleUrl = new URL('../src/runtime/heap-tuning.ts', import.meta.url).href;
const MB = 1024 * 1024;

async function runWorkload(source: string, env: Record<string, string>, nodeArgs: string[] = []): Promise<Record<string, number>> {
  const program = `
import v8 from 'node:v8';
import { setImmediate as turn } from 'node:timers/promises';
// Records every growing percent heap-tuning.ts hands to V8.
const percentsSet = [];
const setFlags = v8.setFlagsFromString.bind(v8);
v8.setFlagsFromString = (flags) => {
  const percent = /^--heap-growing-percent=(\\d+)$/.exec(flags);
  if (percent) percentsSet.push(Number(percent[1]));
  setFlags(flags);
};
const { applyHeapTuning } = await import(${JSON.stringify(moduleUrl)});
const applied = applyHeapTuning();
${source}`;
  const { stdout } = await run(process.execPath, [...nodeArgs, '--input-type=module', '-e', program], {
    env: { ...process.env, ...env },
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, number>;
}

test('settings: defaults, overrides, 0 turns one off, and nonsense keeps the default and is reported', () => {
  assert.deepEqual(readHeapTuning({}), { growingPercent: 500, headroomMb: 32, ignored: [] });
  assert.deepEqual(readHeapTuning({ KONNECTIVITY_HEAP_GROWING_PERCENT: '300', KONNECTIVITY_HEAP_HEADROOM_MB: '' }), { growingPercent: 300, headroomMb: 32, ignored: [] });
  assert.deepEqual(readHeapTuning({ KONNECTIVITY_HEAP_GROWING_PERCENT: '0', KONNECTIVITY_HEAP_HEADROOM_MB: '0' }), { growingPercent: 0, headroomMb: 0, ignored: [] });
  assert.deepEqual(readHeapTuning({ KONNECTIVITY_HEAP_GROWING_PERCENT: '-1', KONNECTIVITY_HEAP_HEADROOM_MB: 'lots' }), {
    growingPercent: 500,
    headroomMb: 32,
    ignored: ['KONNECTIVITY_HEAP_GROWING_PERCENT=-1', 'KONNECTIVITY_HEAP_HEADROOM_MB=lots'],
  });
});

test('growing percent: the largest up to a 96 MB limit, then headroom over live, never under 25', () => {
  const tuning = readHeapTuning({});
  assert.equal(growingPercentFor(10 * MB, tuning), DEFAULT_HEAP_GROWING_PERCENT, '10 MB × 6 = 60 MB, under 96');
  assert.equal(growingPercentFor(16 * MB, tuning), DEFAULT_HEAP_GROWING_PERCENT, '16 MB × 6 = 96 MB');
  assert.equal(growingPercentFor(20 * MB, tuning), 380, 'a limit of 96 MB: 96 / 20 = 4.8');
  assert.equal(growingPercentFor(60 * MB, tuning), 60, 'a limit of 96 MB over the headroom of 92');
  assert.equal(growingPercentFor(128 * MB, tuning), 25, '32 MB headroom over 128 MB');
  assert.equal(growingPercentFor(1024 * MB, tuning), 25, 'never under 25');
  assert.equal(growingPercentFor(0, tuning), DEFAULT_HEAP_GROWING_PERCENT);
  assert.equal(growingPercentFor(60 * MB, { ...tuning, headroomMb: 64 }), 105, '64 MB headroom over 60 MB: 124 MB');
  assert.equal(growingPercentFor(1024 * MB, { ...tuning, headroomMb: 0 }), DEFAULT_HEAP_GROWING_PERCENT, 'no headroom: the percent stays fixed');
});

/**
 * Keeps about 40 MB live, then promotes a stream of short-lived objects to
 * the old generation; prints the live size, the percent set for it and the
 * largest old generation.
 */
const oldGenerationWorkload = `
const oldBytes = () => v8.getHeapSpaceStatistics().filter((s) => !s.space_name.startsWith('new')).reduce((sum, s) => sum + s.space_used_size, 0);
const live = [];
for (let i = 0; i < 40000; i++) live.push(Array.from({ length: 100 }, (_, j) => j + i));
// The percent is set after a full collection is observed and used at the next one.
globalThis.gc(); await new Promise((r) => setTimeout(r, 50));
globalThis.gc(); await new Promise((r) => setTimeout(r, 50));
const liveBytes = oldBytes();
const percentForLive = percentsSet.at(-1);
let peak = 0;
let recent = [];
for (let chunk = 0; chunk < 3000; chunk++) {
  for (let i = 0; i < 2000; i++) recent.push({ i, values: new Array(16).fill(i) });
  if (recent.length > 100000) recent = [];
  peak = Math.max(peak, oldBytes());
  await turn();
}
console.log(JSON.stringify({ liveBytes, percentForLive, peakMb: peak / 1048576, kept: live.length }));
`;

test('after full collections the percent set follows what survived, and the old generation peaks lower than with the percent fixed', async () => {
  const fixed = await runWorkload(oldGenerationWorkload, { KONNECTIVITY_HEAP_HEADROOM_MB: '0' }, ['--expose-gc']);
  const bounded = await runWorkload(oldGenerationWorkload, { KONNECTIVITY_HEAP_HEADROOM_MB: '16' }, ['--expose-gc']);
  assert.equal(fixed.percentForLive, 500, 'headroom 0: only the startup percent is ever set');
  const expected = growingPercentFor(bounded.liveBytes!, readHeapTuning({ KONNECTIVITY_HEAP_HEADROOM_MB: '16' }));
  assert.ok(expected < 500, `${bounded.liveBytes} bytes live should lower the percent`);
  assert.equal(bounded.percentForLive, expected, `${bounded.liveBytes} bytes live`);
  // Peaks depend on when V8's incremental marking finishes, so only their order is checked.
  const liveMb = fixed.liveBytes! / MB;
  assert.ok(fixed.peakMb! > 3 * liveMb, `fixed percent: peak ${fixed.peakMb} MB over ${liveMb} MB live, so the workload cannot show the bound`);
  assert.ok(bounded.peakMb! < fixed.peakMb!, `headroom 16 MB: peak ${bounded.peakMb} MB, fixed percent ${fixed.peakMb} MB`);
});

test('the young generation cap as the process was started: the last --max-semi-space-size counts, 0 is none', () => {
  assert.equal(maxSemiSpaceMb([], ''), undefined);
  assert.equal(maxSemiSpaceMb(['--max-semi-space-size=4'], ''), 4);
  assert.equal(maxSemiSpaceMb(['--max_semi_space_size=8'], '--max-semi-space-size=2'), 8, 'the command line comes after NODE_OPTIONS');
  assert.equal(maxSemiSpaceMb([], '--inspect --max-semi-space-size=2'), 2);
  assert.equal(maxSemiSpaceMb(['--max-semi-space-size=0'], ''), undefined);
});

test('the daemon scripts start Node with the young generation capped at 4 MB per semi-space', () => {
  assert.deepEqual(shebangNodeArgs(binPath('konnectivity-server')), ['--max-semi-space-size=4']);
  assert.deepEqual(shebangNodeArgs(binPath('konnectivity-agent')), ['--max-semi-space-size=4']);
});

/** Runs a daemon until it exits on a startup error and returns what it logged. */
function daemonLog(command: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, args, { env: { ...binEnv(), ...env }, timeout: 30_000 }, (_err, _stdout, stderr) => resolve(stderr));
  });
}

async function failingServerArgs(t: TestContext): Promise<string[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-heap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pki = await sharedPki();
  // A frontend socket in a directory that does not exist: the server logs its settings, then fails to listen.
  return [
    `--uds-name=${path.join(dir, 'missing', 'proxy.sock')}`, '--server-port=0', '--mode=http-connect',
    `--cluster-cert=${pki.server.certPath}`, `--cluster-key=${pki.server.keyPath}`,
    `--agent-port=${await freePort()}`, '--agent-bind-address=127.0.0.1',
    `--admin-port=${await freePort()}`, `--health-port=${await freePort()}`, '--health-bind-address=127.0.0.1', '-v=1',
  ];
}

// The agent without --ca-cert fails the same way, after logging its settings.
const failingAgentArgs = ['--proxy-server-host=127.0.0.1', '--proxy-server-port=1', '-v=1'];

test('executed as the image runs them (the script itself), both daemons report the cap and no warning', async (t) => {
  for (const [name, args] of [['konnectivity-server', await failingServerArgs(t)], ['konnectivity-agent', failingAgentArgs]] as const) {
    const log = await daemonLog(binPath(name), [...args]);
    assert.match(log, /"msg":"V8 heap settings".*"maxSemiSpaceMb":4/, `${name}:\n${log}`);
    assert.doesNotMatch(log, /started without --max-semi-space-size/, `${name}:\n${log}`);
  }
});

test('started as `node <script>`, without the option, a daemon warns that the young generation is not capped', async (t) => {
  for (const [name, args] of [['konnectivity-server', await failingServerArgs(t)], ['konnectivity-agent', failingAgentArgs]] as const) {
    const log = await daemonLog(process.execPath, [binPath(name), ...args]);
    assert.match(log, /"maxSemiSpaceMb":"V8 default"/, `${name}:\n${log}`);
    assert.match(log, /started without --max-semi-space-size/, `${name}:\n${log}`);
  }
});

test('a daemon given a heap setting that is not a number says so and keeps the default', async () => {
  const log = await daemonLog(binPath('konnectivity-agent'), failingAgentArgs, { KONNECTIVITY_HEAP_HEADROOM_MB: '32MB' });
  assert.match(log, /ignoring KONNECTIVITY_HEAP_HEADROOM_MB=32MB: not a whole number/, log);
  assert.match(log, /"msg":"V8 heap settings".*"headroomMb":32/, log);
});
