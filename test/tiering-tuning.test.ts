/**
 * Tiering: the daemons lower V8's TurboFan budget at startup unless the
 * operator chose one, and say which they use. Whether code then reaches
 * TurboFan sooner is measured by the benchmarks, never timed here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DEFAULT_TURBOFAN_INVOCATIONS, readTieringTuning, turbofanFlagGiven } from '../src/runtime/tiering-tuning.ts';
import { binEnv, binPath } from './helpers/processes.ts';

const run = promisify(execFile);
const NODE_24_V8 = '13.6.233.17-node.53';

test('the budget: 1000 by default, the setting when it is a whole number, V8 default for 0', () => {
  assert.deepEqual(readTieringTuning({}, [], NODE_24_V8), { turbofanInvocations: DEFAULT_TURBOFAN_INVOCATIONS, ignored: [] });
  assert.equal(DEFAULT_TURBOFAN_INVOCATIONS, 1000);
  assert.deepEqual(readTieringTuning({ KONNECTIVITY_TURBOFAN_INVOCATIONS: '250' }, [], NODE_24_V8), { turbofanInvocations: 250, ignored: [] });
  assert.deepEqual(readTieringTuning({ KONNECTIVITY_TURBOFAN_INVOCATIONS: '0' }, [], NODE_24_V8), { turbofanInvocations: 'V8 default', ignored: [] });
  assert.deepEqual(readTieringTuning({ KONNECTIVITY_TURBOFAN_INVOCATIONS: '' }, [], NODE_24_V8), { turbofanInvocations: 1000, ignored: [] });
});

test('a setting that is not a whole number of 0 or more is reported and the default used', () => {
  for (const raw of ['fast', '-1', '2.5', '1e3x']) {
    assert.deepEqual(readTieringTuning({ KONNECTIVITY_TURBOFAN_INVOCATIONS: raw }, [], NODE_24_V8), {
      turbofanInvocations: 1000,
      ignored: [`KONNECTIVITY_TURBOFAN_INVOCATIONS=${raw}`],
    });
  }
});

test("the operator's own --invocation-count-for-turbofan, on the command line or in NODE_OPTIONS, wins", () => {
  assert.equal(turbofanFlagGiven(['--invocation-count-for-turbofan=5000'], ''), true);
  assert.equal(turbofanFlagGiven([], '--inspect --invocation_count_for_turbofan=10'), true);
  assert.equal(turbofanFlagGiven(['--invocation-count-for-turbofan'], ''), true);
  assert.equal(turbofanFlagGiven(['--invocation-count-for-turbofan-osr=5'], '--invocation-count-for-maglev=9'), false);
  assert.equal(turbofanFlagGiven(['--max-semi-space-size=4'], ''), false);
  assert.equal(readTieringTuning({ NODE_OPTIONS: '--invocation-count-for-turbofan=9' }, [], NODE_24_V8).turbofanInvocations, 'command line');
  assert.equal(readTieringTuning({ KONNECTIVITY_TURBOFAN_INVOCATIONS: '300' }, ['--invocation-count-for-turbofan=9'], NODE_24_V8).turbofanInvocations, 'command line');
});

test('V8 before 12 (Node 20), which has no such flag, is left alone', () => {
  assert.equal(readTieringTuning({}, [], '11.3.244.8-node.30').turbofanInvocations, 'unsupported by this V8');
  assert.equal(readTieringTuning({}, [], '12.4.254.21-node.57').turbofanInvocations, 1000);
});

test('this V8 knows the flag: applying it prints nothing (V8 names an unknown flag on stderr)', async () => {
  const moduleUrl = new URL('../src/runtime/tiering-tuning.ts', import.meta.url).href;
  const program = `const { applyTieringTuning } = await import(${JSON.stringify(moduleUrl)}); console.log(JSON.stringify(applyTieringTuning({})));`;
  const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', program]);
  assert.deepEqual(JSON.parse(stdout), { turbofanInvocations: 1000, ignored: [] });
  assert.equal(stderr, '');
});

/** Runs the agent until it exits on a startup error (no --ca-cert) and returns what it logged. */
function agentLog(nodeArgs: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...nodeArgs, binPath('konnectivity-agent'), '--proxy-server-host=127.0.0.1', '--proxy-server-port=1', '-v=1'], { env: { ...binEnv(), ...env }, timeout: 30_000 }, (_err, _stdout, stderr) => resolve(stderr));
  });
}

test('a daemon logs the budget it runs with', async () => {
  assert.match(await agentLog([]), /"msg":"V8 tiering settings".*"turbofanInvocations":1000/);
  assert.match(await agentLog([], { KONNECTIVITY_TURBOFAN_INVOCATIONS: '0' }), /"turbofanInvocations":"V8 default"/);
  assert.match(await agentLog(['--invocation-count-for-turbofan=2000']), /"turbofanInvocations":"command line"/);
  const ignored = await agentLog([], { KONNECTIVITY_TURBOFAN_INVOCATIONS: 'soon' });
  assert.match(ignored, /ignoring KONNECTIVITY_TURBOFAN_INVOCATIONS=soon: not a whole number/);
  assert.match(ignored, /"turbofanInvocations":1000/);
});
