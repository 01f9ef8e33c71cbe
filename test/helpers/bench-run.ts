/**
 * `bench/run.ts` as a child process, for tests of the benchmark suite itself:
 * ours run from the sources (no stale dist/), output collected, a deadline.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const benchScript = fileURLToPath(new URL('../../bench/run.ts', import.meta.url));

export function runBench(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runBenchScript(benchScript, args, timeoutMs);
}

/** Any script under bench/ (e.g. a diagnostic) run the same way as {@link runBench}; `env` is added last. */
export function runBenchScript(script: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Ours from the sources too (no compile of a stale dist/); no npm, so relative paths would be from cwd.
    const child = spawn(process.execPath, [script, ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KONNECTIVITY_TS_FROM_SOURCE: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGINT'); // the bench stops its children on SIGINT
      reject(new Error(`bench did not finish within ${timeoutMs / 1000} s; output so far:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs the bench once per case, all at once: each must exit 2 with its message before measuring anything. */
export async function expectUsageErrors(cases: readonly { args: string[]; error: RegExp }[]): Promise<void> {
  const results = await Promise.all(cases.map((c) => runBench(c.args, 30_000)));
  for (const [i, c] of cases.entries()) {
    const r = results[i]!;
    assert.equal(r.code, 2, `${c.args.join(' ')}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, c.error);
    assert.doesNotMatch(r.stdout, /destination process/, 'started measuring despite the usage error');
  }
}
