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
const { applyHeapTuning } = await import(${JSON.stringify(moduleUrl)});
const applied = applyHeapTuning();
${source}`;
  const { stdout } = await run(process.execPath, [...nodeArgs, '--input-type=module', '-e', program], {
    env: { ...process.env, ...env },
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, number>;
}

test('settings: defaults, overrides, and 0 or nonsense turn one off', () => {
  assert.deepEqual(readHeapTuning({}), { growingPercent: 500, headroomMb: 64 });
  assert.deepEqual(readHeapTuning({ KONNECTIVITY_HEAP_GROWING_PERCENT: '300', KONNECTIVITY_HEAP_HEADROOM_MB: '32' }), { growingPercent: 300, headroomMb: 32 });
  assert.deepEqual(readHeapTuning({ KONNECTIVITY_HEAP_GROWING_PERCENT: '0', KONNECTIVITY_HEAP_HEADROOM_MB: 'lots' }), { growingPercent: 0, headroomMb: 0 });
  assert.deepEqual(readHeapTuning({ KONNECTIVITY_HEAP_GROWING_PERCENT: '-1', KONNECTIVITY_HEAP_HEADROOM_MB: '' }), { growingPercent: 0, headroomMb: 64 });
});

test('growing percent: the largest while little is live, then headroom over live, never under 25', () => {
  const tuning = readHeapTuning({});
  assert.equal(growingPercentFor(10 * MB, tuning), DEFAULT_HEAP_GROWING_PERCENT, '64 MB over 10 MB would be 640 %');
  assert.equal(growingPercentFor(60 * MB, tuning), 105, '64 / 60 = 106.7 %, down to a step of 5');
  assert.equal(growingPercentFor(128 * MB, tuning), 50);
  assert.equal(growingPercentFor(1024 * MB, tuning), 25);
  assert.equal(growingPercentFor(0, tuning), DEFAULT_HEAP_GROWING_PERCENT);
  assert.equal(growingPercentFor(1024 * MB, { ...tuning, headroomMb: 0 }), DEFAULT_HEAP_GROWING_PERCENT, 'no headroom: the percent stays fixed');
});

/**
 * Keeps about 40 MB live, then promotes a stream of short-lived objects to
 * the old generation; prints the live size and the largest old generation.
 */
const oldGenerationWorkload = `
const oldBytes = () => v8.getHeapSpaceStatistics().filter((s) => !s.space_name.startsWith('new')).reduce((sum, s) => sum + s.space_used_size, 0);
const live = [];
for (let i = 0; i < 40000; i++) live.push(Array.from({ length: 100 }, (_, j) => j + i));
// The percent is set after a full collection is observed and used at the next one.
globalThis.gc(); await new Promise((r) => setTimeout(r, 50));
globalThis.gc(); await new Promise((r) => setTimeout(r, 50));
const liveBytes = oldBytes();
let peak = 0;
let recent = [];
for (let chunk = 0; chunk < 3000; chunk++) {
  for (let i = 0; i < 2000; i++) recent.push({ i, values: new Array(16).fill(i) });
  if (recent.length > 100000) recent = [];
  peak = Math.max(peak, oldBytes());
  await turn();
}
console.log(JSON.stringify({ liveMb: liveBytes / 1048576, peakMb: peak / 1048576, kept: live.length }));
`;

test('the old generation stays near live + headroom; with the percent fixed at 500 it grows to about six times live', async () => {
  const fixed = await runWorkload(oldGenerationWorkload, { KONNECTIVITY_HEAP_HEADROOM_MB: '0' }, ['--expose-gc']);
  const bounded = await runWorkload(oldGenerationWorkload, { KONNECTIVITY_HEAP_HEADROOM_MB: '16' }, ['--expose-gc']);
  assert.ok(fixed.peakMb! > 3 * fixed.liveMb!, `fixed percent: peak ${fixed.peakMb} MB over ${fixed.liveMb} MB live, so the workload cannot show the bound`);
  assert.ok(bounded.peakMb! < 0.6 * fixed.peakMb!, `headroom 16 MB: peak ${bounded.peakMb} MB, fixed percent ${fixed.peakMb} MB`);
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
function daemonLog(command: string, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, args, { env: binEnv(), timeout: 30_000 }, (_err, _stdout, stderr) => resolve(stderr));
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
