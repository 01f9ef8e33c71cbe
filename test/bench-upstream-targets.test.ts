/**
 * `npm run bench -- --upstream-server=PATH --upstream-agent=PATH`: upstream's
 * binaries run side by side with ours as targets upstream-grpc and
 * upstream-http-connect. No Go binaries here, so two shell wrappers that
 * exec our own bin/ stand in for them; the wrappers record their pid (exec
 * keeps it) and their arguments, so the test can tell that the upstream
 * targets ran those processes, with upstream flags only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { expectUsageErrors, runBench } from './helpers/bench-run.ts';

const repoRoot = fileURLToPath(new URL('../', import.meta.url));

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-bench-upstream-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `dir/proxy-<who>`: records its pid and arguments, then becomes our bin/konnectivity-<who>. */
function wrapper(dir: string, who: 'server' | 'agent'): string {
  const file = path.join(dir, `proxy-${who}`);
  writeFileSync(
    file,
    [
      '#!/bin/sh',
      `echo $$ >> '${path.join(dir, `${who}.pids`)}'`,
      `printf '%s\\n' "$*" >> '${path.join(dir, `${who}.args`)}'`,
      'KONNECTIVITY_TS_FROM_SOURCE=1',
      'export KONNECTIVITY_TS_FROM_SOURCE',
      `exec '${process.execPath}' '${path.join(repoRoot, 'bin', `konnectivity-${who}`)}' "$@"`,
      '',
    ].join('\n'),
  );
  chmodSync(file, 0o755);
  return file;
}

interface JsonMetric {
  id: string;
  values: Record<string, number>;
  oursOverUpstream?: Record<string, number>;
}

interface JsonOutput {
  upstream: { serverPath: string; agentPath: string; versions: { server: string; agent: string } } | null;
  machine: string[];
  processes: { target: string; server: { pid: number; executable: string }; agent: { pid: number; executable: string } }[];
  results: { id: string; metrics: JsonMetric[]; cpu: Record<string, { server?: number; agent?: number; wallS: number }>; errors: Record<string, string> }[];
}

test('bench --upstream-server/--upstream-agent: upstream targets run the given executables and get an ours÷upstream column', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const server = wrapper(dir, 'server');
  const agent = wrapper(dir, 'agent');
  const json = path.join(dir, 'out.json');
  const { code, stdout, stderr } = await runBench(
    [
      '--quick',
      '--only',
      'rtt',
      `--upstream-server=${server}`,
      `--upstream-agent=${agent}`,
      '--upstream-server-arg=--keepalive-time=1h',
      // A konnectivity-ts extension flag (its default value): for ours only, never for upstream's agent.
      '--agent-arg=--flow-control-window=1048576',
      '--json',
      json,
      '--no-write',
    ],
    80_000,
  );
  assert.equal(code, 0, `bench failed:\n${stdout}\n${stderr}`);
  assert.ok(existsSync(json), 'no JSON written');
  const out = JSON.parse(readFileSync(json, 'utf8')) as JsonOutput;

  // The header records both paths and what --version said (our CLI has none: the failure is reported).
  assert.equal(out.upstream?.serverPath, server);
  assert.equal(out.upstream?.agentPath, agent);
  assert.match(out.upstream!.versions.server, /--version/);
  assert.ok(out.machine.some((l) => l.includes(`Upstream proxy-server: \`${server}\``)), out.machine.join('\n'));
  assert.ok(out.machine.some((l) => l.includes(`Upstream proxy-agent: \`${agent}\``)), out.machine.join('\n'));

  // The upstream targets' processes are the wrapper-exec'd ones; ours are not.
  const wrapperPids = (who: string) => new Set(readFileSync(path.join(dir, `${who}.pids`), 'utf8').trim().split('\n').map(Number));
  const serverPids = wrapperPids('server');
  const agentPids = wrapperPids('agent');
  for (const mode of ['grpc', 'http-connect']) {
    const up = out.processes.find((p) => p.target === `upstream-${mode}`);
    const ours = out.processes.find((p) => p.target === mode);
    assert.ok(up && ours, `processes: ${JSON.stringify(out.processes)}`);
    assert.equal(up.server.executable, server);
    assert.equal(up.agent.executable, agent);
    assert.ok(serverPids.has(up.server.pid), `upstream ${mode} server pid ${up.server.pid} not among the wrapper's ${[...serverPids]}`);
    assert.ok(agentPids.has(up.agent.pid), `upstream ${mode} agent pid ${up.agent.pid} not among the wrapper's ${[...agentPids]}`);
    assert.ok(!serverPids.has(ours.server.pid) && !agentPids.has(ours.agent.pid), 'our processes went through the wrapper');
  }

  // Upstream flags only, plus the upstream-only extra; never the extension flag meant for ours.
  const serverArgs = readFileSync(path.join(dir, 'server.args'), 'utf8');
  const agentArgs = readFileSync(path.join(dir, 'agent.args'), 'utf8');
  assert.match(serverArgs, /--mode=grpc .*--server-port=0 .*--keepalive-time=1h/);
  assert.match(serverArgs, /--mode=http-connect .*--uds-name=\S+upstream-http-connect\.socket/);
  assert.match(agentArgs, /--ca-cert=\S+ --proxy-server-host=127\.0\.0\.1 --proxy-server-port=\d+ --health-server-port=\d+ --admin-server-port=\d+ --agent-id=bench-agent-upstream-grpc --sync-interval=100ms/);
  assert.doesNotMatch(agentArgs, /flow-control-window/);

  // Figures for every upstream target, CPU read from their processes, and the ratio from the measured values.
  const rtt = out.results.find((r) => r.id === 'rtt')!;
  assert.deepEqual(rtt.errors, {});
  const p50 = rtt.metrics.find((m) => m.id === 'rtt-p50')!;
  for (const mode of ['grpc', 'http-connect']) {
    const up = p50.values[`upstream-${mode}`];
    const ours = p50.values[mode];
    assert.ok(up !== undefined && up > 0 && ours !== undefined && ours > 0, JSON.stringify(p50.values));
    assert.equal(p50.oursOverUpstream?.[mode], ours / up);
    const cpu = rtt.cpu[`upstream-${mode}`];
    assert.ok(cpu && cpu.server !== undefined && cpu.agent !== undefined && cpu.server + cpu.agent > 0, `cpu: ${JSON.stringify(rtt.cpu)}`);
  }
  // Server + agent CPU per round trip: the CPU figures of each tunnel target over the round trips of one run (200 with --quick).
  const perRoundTrip = rtt.metrics.find((m) => m.id === 'rtt-cpu')!;
  for (const target of ['grpc', 'upstream-grpc', 'http-connect', 'upstream-http-connect']) {
    const cpu = rtt.cpu[target]!;
    assert.ok(Math.abs(perRoundTrip.values[target]! - ((cpu.server! + cpu.agent!) / 200) * 1e6) < 1e-6, `${target}: ${JSON.stringify(perRoundTrip.values)} from ${JSON.stringify(cpu)}`);
  }
  assert.equal(perRoundTrip.values.direct, undefined, 'direct has no server or agent');

  // The console table has the upstream columns and shows the same ratio.
  const header = stdout.split('\n').find((l) => l.startsWith('metric'))!;
  assert.match(header, /grpc\s+×direct\s+upstream-grpc\s+×direct\s+grpc÷upstream\s+http-connect\s+×direct\s+upstream-http-connect\s+×direct\s+http-connect÷upstream/);
  const row = stdout.split('\n').find((l) => l.startsWith('Round trip p50'))!;
  const ratio = p50.oursOverUpstream!.grpc!;
  assert.ok(row.includes(`${ratio < 0.1 ? ratio.toFixed(3) : ratio.toFixed(2)}×`), row);
  assert.match(stdout, /ours ÷ upstream/);
});

test('bench --upstream-server/--upstream-agent: usage errors for a missing, lone or non-executable path', async (t) => {
  const dir = tempDir(t);
  const agent = wrapper(dir, 'agent');
  const plain = path.join(dir, 'not-executable');
  writeFileSync(plain, '#!/bin/sh\n');
  chmodSync(plain, 0o644);
  const cases: { args: string[]; error: RegExp }[] = [
    { args: [`--upstream-server=${path.join(dir, 'missing')}`, `--upstream-agent=${agent}`], error: /--upstream-server: \S+missing does not exist/ },
    { args: [`--upstream-agent=${agent}`], error: /--upstream-server and --upstream-agent go together/ },
    { args: [`--upstream-server=${agent}`, `--upstream-agent=${plain}`], error: /--upstream-agent: \S+not-executable is not executable/ },
    { args: [`--upstream-server=${dir}`, `--upstream-agent=${agent}`], error: /is not a regular file/ },
    { args: ['--upstream-agent-arg=--v=2'], error: /need --upstream-server and --upstream-agent/ },
  ];
  await expectUsageErrors(cases.map((c) => ({ ...c, args: ['--quick', ...c.args] })));
  // Nothing was run through the agent wrapper.
  assert.ok(!existsSync(path.join(dir, 'agent.pids')));
});

test('bench --reps: usage errors for a count that is not 1 to 99, or with --quick', async () => {
  const cases: { args: string[]; error: RegExp }[] = [
    { args: ['--reps=0'], error: /--reps needs a whole number of runs per target, 1 to 99/ },
    { args: ['--reps=2.5'], error: /--reps needs a whole number/ },
    { args: ['--reps=many'], error: /--reps needs a whole number/ },
    { args: ['--quick', '--reps=5'], error: /--reps and --quick do not go together/ },
  ];
  await expectUsageErrors(cases);
});

test('bench options: unknown or incomplete options are usage errors, and a bare --profile does not swallow the next option', async () => {
  const cases: { args: string[]; error: RegExp }[] = [
    { args: ['--bogus'], error: /bench: Unknown option '--bogus'/ },
    { args: ['--only'], error: /bench: Option '--only <value>' argument missing/ },
    // --profile with no directory, followed by another option: profiling is on (a temp dir), and the next option is read as one.
    { args: ['--profile', '--variant-node-arg=--trace-gc'], error: /--profile profiles only the A arm/ },
  ];
  await expectUsageErrors(cases);
});

/** The pids the variant recorded in `marks` are the B arm's (upstream-http-connect) server and agent, and not the A arm's. */
function assertVariantRanOnlyInB(out: JsonOutput, marks: string, aArmMessage: string): void {
  const marked = new Set(readFileSync(marks, 'utf8').trim().split('\n').map(Number));
  const b = out.processes.find((p) => p.target === 'upstream-http-connect');
  const a = out.processes.find((p) => p.target === 'http-connect');
  assert.ok(a && b, JSON.stringify(out.processes));
  assert.ok(marked.has(b.server.pid) && marked.has(b.agent.pid), `variant pids ${b.server.pid}/${b.agent.pid} not among the marked ${[...marked]}`);
  assert.ok(!marked.has(a.server.pid) && !marked.has(a.agent.pid), aArmMessage);
}

test('bench --variant-node-arg/--variant-env: the upstream-* slot runs our own binaries with the extra Node.js flags and environment, and nothing is written to docs', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const marks = path.join(dir, 'variant.pids');
  const json = path.join(dir, 'out.json');
  // The Node.js flag preloads a module that records the pid in the file the environment variable names:
  // both have to reach the process, through the wrapper's shell quoting (spaces, quotes, a comma).
  const preload = `--import=data:text/javascript,import fs from 'node:fs'; fs.appendFileSync(process.env.KTS_VARIANT_MARK, String(process.pid) + '\\n');`;
  const { code, stdout, stderr } = await runBench(['--quick', '--only', 'idle', '--modes', 'http-connect', `--variant-node-arg=${preload}`, `--variant-env=KTS_VARIANT_MARK=${marks}`, '--json', json], 80_000);
  assert.equal(code, 0, `bench failed:\n${stdout}\n${stderr}`);
  const out = JSON.parse(readFileSync(json, 'utf8')) as JsonOutput & { variant: string | null };
  assert.equal(out.upstream, null, 'a variant run must not present itself as upstream');
  assert.match(out.variant ?? '', /^--import=data:text\/javascript,.* KTS_VARIANT_MARK=/);
  assertVariantRanOnlyInB(out, marks, 'the A arm got the variant');
  assert.match(stdout, /A\/B run: the upstream-\* columns are NOT upstream's binaries/);
  assert.doesNotMatch(stdout, /upstream-\*: upstream's binaries, measured in this run/);
  assert.match(stdout, /docs not written/);
});

test('bench --variant-node: the variant server and agent run under the given Node.js executable, which the report names with its version', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const marks = path.join(dir, 'node.pids');
  const json = path.join(dir, 'out.json');
  // Stands in for another Node.js build: records its pid (exec keeps it), then becomes this Node.js.
  const otherNode = path.join(dir, 'other-node');
  writeFileSync(otherNode, ['#!/bin/sh', `echo $$ >> '${marks}'`, `exec '${process.execPath}' "$@"`, ''].join('\n'));
  chmodSync(otherNode, 0o755);
  const { code, stdout, stderr } = await runBench(['--quick', '--only', 'idle', '--modes', 'http-connect', `--variant-node=${otherNode}`, '--json', json], 80_000);
  assert.equal(code, 0, `bench failed:\n${stdout}\n${stderr}`);
  const out = JSON.parse(readFileSync(json, 'utf8')) as JsonOutput & { variant: string | null };
  assert.equal(out.variant, `Node.js ${process.version} (${otherNode})`);
  assertVariantRanOnlyInB(out, marks, 'the A arm ran under the variant Node.js');
  assert.match(stdout, /A\/B run: the upstream-\* columns are NOT upstream's binaries but ours with Node\.js v/);
});

test('bench --variant-*: usage errors', async () => {
  const cases: { args: string[]; error: RegExp }[] = [
    { args: ['--variant-env=1BAD=x'], error: /--variant-env "1BAD=x": give NAME=VALUE/ },
    { args: ['--variant-env=NOVALUE'], error: /give NAME=VALUE/ },
    { args: ['--variant-node-arg=--jitless', '--write'], error: /never written to docs\/: drop --write/ },
    { args: ['--variant-node-arg=--jitless', '--upstream-server=/bin/true', '--upstream-agent=/bin/true'], error: /not together with --upstream-\*/ },
    { args: ['--variant-node-arg=--jitless', '--profile=/tmp/kts-variant-profile'], error: /--profile profiles only the A arm/ },
    { args: ['--variant-node-arg=--jitless', '--frontend-buffer-limit=65536'], error: /--frontend-buffer-limit swaps the A arm's server entry only/ },
    { args: ['--variant-node=/nonexistent/node'], error: /--variant-node: \/nonexistent\/node / },
    { args: ['--variant-node=/bin/false'], error: /--variant-node: \/bin\/false --version failed/ },
  ];
  await expectUsageErrors(cases.map((c) => ({ ...c, args: ['--quick', ...c.args] })));
});
