/**
 * `npm run bench:instructions` counts the instructions a daemon spends per
 * dial under valgrind; the performance notes cite it. It must measure real
 * dials and report a count for both thread groups. Nothing here asserts a
 * count: only that one was taken.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runBenchScript } from './helpers/bench-run.ts';

const script = fileURLToPath(new URL('../bench/diagnostics/instructions-per-dial.ts', import.meta.url));

test('instructions per dial --quick: the server under callgrind, a main-thread and an other-threads count per dial', { timeout: 240_000 }, async () => {
  // The diagnostic compiles src/ into a temp dir and runs that build, whose bin/ shims must not be sent to src/.
  const r = await runBenchScript(script, ['--quick', '--mode', 'grpc'], 230_000, { KONNECTIVITY_TS_FROM_SOURCE: '0' });
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^instructions per dial, server, grpc mode \(50 dials per run after 50 warm-up/m);
  const line = /^this checkout: main thread ([\d.]+)k .*other threads ([\d.]+)k/m.exec(r.stdout);
  assert.ok(line, r.stdout);
  // Even a bare relay executes far more than 10k instructions per dial; fewer means nothing was counted.
  assert.ok(Number(line[1]) > 10, `main thread ${line[1]}k`);
  assert.ok(Number(line[2]) >= 0);
});

test('instructions per MiB --quick --work download --keep: the agent under callgrind while it relays a download; its callgrind files kept, readable one by one', { timeout: 240_000 }, async () => {
  const keep = mkdtempSync(path.join(os.tmpdir(), 'konnectivity-instructions-keep-'));
  try {
    const r = await runBenchScript(script, ['--quick', '--work', 'download', '--who', 'agent', '--keep', keep], 230_000, { KONNECTIVITY_TS_FROM_SOURCE: '0' });
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    checkDownloadCount(r.stdout);
    assert.match(r.stdout, /callgrind files kept in /);
    // A measured dump of the main thread (thread 01): cg.<pid>.<dump>-01.
    const mainDumps = readdirSync(path.join(keep, 'arm-0')).filter((f) => /^cg\.\d+\.\d+-01$/.test(f));
    assert.ok(mainDumps.length >= 2, `kept: ${readdirSync(path.join(keep, 'arm-0')).join(' ')}`);
    // Names written out in full in every dump (not "(id)" references to an earlier file), so one dump annotates alone.
    const text = readFileSync(path.join(keep, 'arm-0', mainDumps.at(-1)!), 'utf8');
    assert.match(text, /^fn=[^(\n]/m);
    assert.doesNotMatch(text, /^fn=\(\d+\)/m);
  } finally {
    rmSync(keep, { recursive: true, force: true });
  }
});

/** The download run's report: a count per MiB large enough that the download went through. */
function checkDownloadCount(stdout: string): void {
  assert.match(stdout, /^instructions per MiB, agent, http-connect mode \(a 4 MiB download per run/m);
  const line = /^this checkout: main thread ([\d.]+)k /m.exec(stdout);
  assert.ok(line, stdout);
  // Relaying a MiB (TLS, HTTP/2, packets) takes millions of instructions; fewer means the download did not go through.
  assert.ok(Number(line[1]) > 1000, `main thread ${line[1]}k per MiB`);
}

test('instructions per dial: a bad option is refused with the reason, before anything starts', async () => {
  const r = await runBenchScript(script, ['--who', 'destination'], 30_000);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--who destination: server or agent/);
  const d = await runBenchScript(script, ['--dials', '0'], 30_000);
  assert.equal(d.code, 2);
  assert.match(d.stderr, /--dials 0: a positive integer/);
  const w = await runBenchScript(script, ['--work', 'upload'], 30_000);
  assert.equal(w.code, 2);
  assert.match(w.stderr, /--work upload: dial or download/);
});
