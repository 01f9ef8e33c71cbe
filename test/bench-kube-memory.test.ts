/**
 * `npm run bench:kube-memory` backs the memory figures in docs/operations.md:
 * each scenario must really make its Kubernetes API calls, and the table
 * must report every build and scenario. One bound is checked, far above
 * the noise: calling the Kubernetes API must not add tens of MB to a
 * process again (the client library it replaced added about 50 MB).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runBenchScript } from './helpers/bench-run.ts';

const script = fileURLToPath(new URL('../bench/diagnostics/kube-client-memory.ts', import.meta.url));

test('kube memory: plain, token-auth and leases each measured with their API calls made; the Kubernetes client adds under 20 MB', { timeout: 150_000 }, async () => {
  const r = await runBenchScript(script, ['--reps', '1', '--settle-ms', '3000'], 140_000, { KONNECTIVITY_TS_FROM_SOURCE: '0' });
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const rows = new Map<string, number[]>();
  for (const line of r.stdout.split('\n')) {
    const cells = line.trim().split(/\s+/);
    if (cells[0] === 'this' && cells.length === 8) rows.set(cells[1]!, cells.slice(2).map(Number));
  }
  assert.deepEqual([...rows.keys()], ['plain', 'token-auth', 'leases'], r.stdout);
  for (const [scenario, cells] of rows) assert.ok(cells.slice(0, 4).every((v) => v > 10), `${scenario}: ${cells.join(' ')}`);
  const [plain, auth, leases] = [rows.get('plain')!, rows.get('token-auth')!, rows.get('leases')!];
  assert.equal(plain[4], 0, 'no TokenReview without token authentication');
  assert.ok(auth[4]! >= 1 && leases[4]! >= 1, 'the agent was authenticated by TokenReview');
  assert.ok(leases[5]! >= 1, 'leases were published or counted');
  // RssAnon (private memory) of the server with the Kubernetes client against without, and of the counting agent.
  assert.ok(auth[1]! - plain[1]! < 20, `token-auth server: ${auth[1]} MB against ${plain[1]} MB`);
  assert.ok(leases[1]! - plain[1]! < 20, `leases server: ${leases[1]} MB against ${plain[1]} MB`);
  assert.ok(leases[3]! - plain[3]! < 20, `leases agent: ${leases[3]} MB against ${plain[3]} MB`);
});
