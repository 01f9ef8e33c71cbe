/**
 * The fuzz runner itself: `npm run fuzz -- --help` prints the usage (it used
 * to crash with ERR_PARSE_ARGS_UNKNOWN_OPTION), a bad option or target
 * prints it with exit code 2, and the unhandled-rejection check catches a
 * rejection left by a case that only ever awaits promises (the runner's
 * check used to run before Node could report it, so it never fired).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(import.meta.dirname, '..');
const RUN = path.join(ROOT, 'fuzz/run.ts');

function run(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [RUN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--help and -h print the usage and exit 0', () => {
  for (const flag of ['--help', '-h']) {
    const r = run([flag]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^usage: npm run fuzz -- \[options\]/);
    for (const option of ['--minutes', '--cases', '--seed', '--target', '--replay', '--help']) assert.match(r.stdout, new RegExp(option));
    assert.match(r.stdout, /wire/);
  }
});

test('an unknown option or target prints the usage and exits 2', () => {
  const bad = run(['--bogus']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /Unknown option '--bogus'/);
  assert.match(bad.stderr, /usage: npm run fuzz/);
  const target = run(['--target', 'nope', '--cases', '1']);
  assert.equal(target.status, 2);
  assert.match(target.stderr, /unknown --target nope/);
});

test('a short run of every in-memory target passes and reports its counts', () => {
  const r = run(['--cases', '500', '--seed', '7']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /done: 500 cases .*router 100, relay 100, codec 100, http 100, kube 100\); master seed 7/);
});

/** Runs a microtask-only case loop in a child process (a deliberate unhandled rejection would fail this test process). */
function caseLoop(body: string): { caught: number } {
  const helper = pathToFileURL(path.join(ROOT, 'fuzz/unhandled-rejections.ts')).href;
  const script = `
import { UnhandledRejections } from ${JSON.stringify(helper)};
const unhandled = new UnhandledRejections().start();
let caught = -1;
${body}
process.stdout.write(JSON.stringify({ caught }));
process.exit(0);
`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as { caught: number };
}

test('the unhandled-rejection check blames the case that left a promise rejected, in a loop that never leaves the microtask queue', () => {
  const { caught } = caseLoop(`
for (let i = 0; i < 50; i++) {
  await Promise.resolve();
  if (i === 17) void Promise.reject(new Error('left behind by case 17'));
  try {
    await unhandled.check();
  } catch (err) {
    if (!/left behind by case 17/.test(err.message)) throw err;
    caught = i;
    break;
  }
}`);
  assert.equal(caught, 17);
});

test('without a yield the same loop never sees it (why the check yields)', () => {
  const { caught } = caseLoop(`
let seen = false;
process.on('unhandledRejection', () => (seen = true));
for (let i = 0; i < 50; i++) {
  await Promise.resolve();
  if (i === 17) void Promise.reject(new Error('left behind by case 17'));
  if (seen) { caught = i; break; }
}
unhandled.stop();`);
  assert.equal(caught, -1);
});
