/**
 * `npm run bench:relay-floor` is the measured floor the performance notes
 * cite: its chains must actually carry round trips, dials and downloads, and
 * every target must report a figure. Nothing here asserts a speed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runBenchScript } from './helpers/bench-run.ts';

const script = fileURLToPath(new URL('../bench/diagnostics/node-relay-floor.ts', import.meta.url));

/** The rows of one result table: the lines after its heading, up to the next blank line. */
function tableRows(stdout: string, heading: string): Map<string, string[]> {
  const lines = stdout.split('\n');
  const start = lines.findIndex((l) => l.startsWith(heading));
  assert.ok(start >= 0, `no table "${heading}" in:\n${stdout}`);
  const rows = new Map<string, string[]>();
  for (const line of lines.slice(start + 2)) {
    if (line.trim() === '') break;
    const [name, ...cells] = line.trim().split(/\s+/);
    rows.set(name!, cells);
  }
  return rows;
}

test('relay floor --quick: every chain and tunnel (ours and the Go relay, both frontends) report round trips, dials and downloads, and the gRPC ones dials on new connections', { timeout: 180_000 }, async () => {
  // The diagnostic compiles src/ into a temp dir and runs that build, whose bin/ shims must not be sent to src/.
  const r = await runBenchScript(script, ['--quick'], 170_000, { KONNECTIVITY_TS_FROM_SOURCE: '0' });
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  // The Go relay runs where Go and grpc-go are installed (CI installs them); elsewhere it must say why it did not.
  const goSkipped = /go-grpc: skipped, (no Go toolchain|go build failed)/.test(r.stderr);
  if (!goSkipped) assert.match(r.stderr, /go-grpc: bench\/diagnostics\/go-relay-floor\/, go version go/);
  const tunnels = goSkipped ? ['ours', 'grpc:ours'] : ['ours', 'go-grpc', 'grpc:ours', 'grpc:go-grpc'];
  const expectations: Array<[string, string[], number]> = [
    // heading, targets, index of a cell that must be a positive number (p50 or MB/s)
    ['round trip', ['direct', 'chain-tls', 'chain-h2', ...tunnels], 0],
    ['dial + first byte', ['direct', 'chain-tcp', 'chain-tls-mux', 'chain-h2-mux', 'chain-h2', ...tunnels], 0],
    ['bulk download', ['direct', 'chain-tls', 'chain-h2', ...tunnels], 0],
    ['new gRPC connection per dial', ['direct', ...tunnels.filter((t) => t.startsWith('grpc:'))], 0],
  ];
  for (const [heading, targets, cell] of expectations) {
    const rows = tableRows(r.stdout, heading);
    assert.deepEqual([...rows.keys()], targets, heading);
    for (const [name, cells] of rows) {
      const value = Number(cells[cell]);
      assert.ok(value > 0 && Number.isFinite(value), `${heading} / ${name}: ${cells.join(' ')}`);
    }
  }
  // The relay processes' CPU is read for every target that has them: "900 / 900", never "—".
  for (const name of ['chain-tcp', 'chain-tls-mux', 'chain-h2-mux', 'chain-h2', ...tunnels]) assert.match(tableRows(r.stdout, 'dial + first byte').get(name)!.join(' '), /\d+ \/ \d+$/, name);
  for (const name of tunnels.filter((t) => t.startsWith('grpc:'))) assert.match(tableRows(r.stdout, 'new gRPC connection per dial').get(name)!.join(' '), /\d+ \/ \d+$/, name);
});

test('relay floor: an unknown --only measure is a usage error before anything starts', async () => {
  const r = await runBenchScript(script, ['--only', 'dial,nope'], 30_000);
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /--only takes a comma-separated list of round-trip, dial, new-connection-dial, bulk; not "nope"/);
  assert.doesNotMatch(r.stdout, /compiling/);
});

test('relay floor: a --go-read-bytes that is not a byte count is a usage error before anything starts', async () => {
  const r = await runBenchScript(script, ['--go-read-bytes', '4k'], 30_000);
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /--go-read-bytes takes a whole number of bytes from 1 to 4194304; not "4k"/);
  assert.doesNotMatch(r.stdout, /compiling/);
});
