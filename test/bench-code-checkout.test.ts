/**
 * `npm run bench -- --code=DIR`: server and agent come from another
 * konnectivity-ts checkout (for before/after profiles of an older commit).
 * The other checkout here is a copy of this one whose server and agent
 * entry points record their pid, so the test can tell which code ran.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { expectUsageErrors, runBenchScript } from './helpers/bench-run.ts';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));
const benchScript = path.join(repoRoot, 'bench', 'run.ts');

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-bench-code-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A copy of this checkout's sources whose server and agent append their pid to $KTS_CODE_MARK. */
function markedCheckout(dir: string): string {
  const root = path.join(dir, 'checkout');
  for (const entry of ['src', 'bin', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) cpSync(path.join(repoRoot, entry), path.join(root, entry), { recursive: true });
  symlinkSync(path.join(repoRoot, 'node_modules'), path.join(root, 'node_modules'), 'dir');
  const mark = "\nimport { appendFileSync as markPid } from 'node:fs';\nif (process.env['KTS_CODE_MARK']) markPid(process.env['KTS_CODE_MARK'], `${process.pid}\\n`);\n";
  for (const main of ['server-main.ts', 'agent-main.ts']) appendFileSync(path.join(root, 'src', 'cli', main), mark);
  return root;
}

interface JsonOutput {
  machine: string[];
  processes: { target: string; server: { pid: number }; agent: { pid: number } }[];
}

test('bench --code: server and agent run from the other checkout, and docs/ is not written', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const checkout = markedCheckout(dir);
  const marks = path.join(dir, 'marks');
  const json = path.join(dir, 'out.json');
  const { code, stdout, stderr } = await runBenchScript(benchScript, ['--quick', '--only', 'idle', '--modes', 'http-connect', `--code=${checkout}`, '--json', json], 80_000, { KTS_CODE_MARK: marks });
  assert.equal(code, 0, `bench failed:\n${stdout}\n${stderr}`);
  const out = JSON.parse(readFileSync(json, 'utf8')) as JsonOutput;
  const ran = out.processes.find((p) => p.target === 'http-connect');
  assert.ok(ran, JSON.stringify(out.processes));
  assert.ok(existsSync(marks), 'neither process ran the marked code');
  const marked = new Set(readFileSync(marks, 'utf8').trim().split('\n').map(Number));
  assert.ok(marked.has(ran.server.pid) && marked.has(ran.agent.pid), `pids ${ran.server.pid}/${ran.agent.pid} not among the marked ${[...marked]}`);
  assert.match(stdout, new RegExp(`server and agent run compiled JavaScript of another checkout, ${checkout.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.match(stdout, /docs not written/);
});

test('bench --code: usage errors for a directory that is not a checkout, and with --write', async (t) => {
  const dir = tempDir(t);
  const cases: { args: string[]; error: RegExp }[] = [
    { args: [`--code=${dir}`], error: /--code: \S+ has no tsconfig\.build\.json: not a konnectivity-ts checkout/ },
    { args: [`--code=${repoRoot}`, '--write'], error: /--code measures another checkout, and docs\/ describes this one: drop --write/ },
  ];
  await expectUsageErrors(cases.map((c) => ({ ...c, args: ['--quick', ...c.args] })));
});
