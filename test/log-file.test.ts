/**
 * klog's output flags (--logtostderr, --log-file, --log-dir, --alsologtostderr,
 * --stderrthreshold, --log-file-max-size, --skip-log-headers, --one-output):
 * the sinks in-process, then both daemons as processes writing --log-file.
 */
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FlagSet } from '../src/flags/flag-set.ts';
import { registerKlogFlags, type KlogOptions } from '../src/flags/klog-flags.ts';
import { klogOutput } from '../src/observability/klog-output.ts';
import { createLogger, type Logger } from '../src/observability/logger.ts';
import { sharedPki } from './helpers/cluster.ts';
import { waitForStatus } from './helpers/daemon-pair.ts';
import { runBin, spawnBin } from './helpers/processes.ts';
import { freePort } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-logfile-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function klog(argv: string[]): KlogOptions {
  const flags = new FlagSet('test');
  const read = registerKlogFlags(flags);
  flags.parse(argv);
  return read();
}

interface Rig {
  logger: Logger;
  stderr: string[];
  close(): void;
}

function rig(argv: string[], program = 'kts-test'): Rig {
  const stderr: string[] = [];
  const out = klogOutput(klog(argv), program, { stderr: (line) => stderr.push(line), stderrIsTTY: false, hostname: 'host1', userName: 'user1', pid: 4242 });
  return { logger: createLogger({ verbosity: 2, component: program, sinks: out.sinks }), stderr, close: () => out.close() };
}

function logAll(logger: Logger): void {
  logger.info('an info line', { n: 1 });
  logger.v(2, 'a verbose line');
  logger.v(3, 'too verbose, dropped');
  logger.warn('a warning');
  logger.error('an error', { error: 'boom' });
}

type Line = Record<string, unknown>;

function jsonLines(file: string): Line[] {
  const text = readFileSync(file, 'utf8');
  assert.ok(text.endsWith('\n'), `${file} does not end with a newline`);
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as Line);
}

const msgs = (lines: readonly Line[]): unknown[] => lines.map((l) => l['msg']);

test('default --logtostderr=true: --log-file is ignored (klog), everything goes to standard error', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'ignored.log');
  const r = rig([`--log-file=${file}`, '--alsologtostderr']);
  logAll(r.logger);
  r.close();
  assert.equal(existsSync(file), false);
  assert.deepEqual(r.stderr.map((l) => (JSON.parse(l) as Line)['msg']), ['an info line', 'a verbose line', 'a warning', 'an error']);
});

test('--logtostderr=true --legacy-stderr-threshold-behavior=false honours --stderrthreshold', () => {
  const r = rig(['--legacy-stderr-threshold-behavior=false', '--stderrthreshold=WARNING']);
  logAll(r.logger);
  assert.deepEqual(r.stderr.map((l) => (JSON.parse(l) as Line)['msg']), ['a warning', 'an error']);
});

test('--logtostderr=false --log-file: every severity as JSON lines in the file, a JSON header first, errors also on stderr', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'server.log');
  const r = rig(['--logtostderr=false', `--log-file=${file}`]);
  logAll(r.logger);
  r.close();
  const lines = jsonLines(file);
  assert.equal(lines[0]!['msg'], 'log file created');
  assert.equal(lines[0]!['host'], 'host1');
  assert.equal(lines[0]!['pid'], 4242);
  assert.deepEqual(msgs(lines.slice(1)), ['an info line', 'a verbose line', 'a warning', 'an error']);
  assert.deepEqual(lines.slice(1).map((l) => l['level']), ['info', 'info', 'warn', 'error']);
  assert.equal(lines[1]!['component'], 'kts-test');
  assert.equal(lines[1]!['n'], 1);
  assert.equal(lines[2]!['v'], 2);
  // --stderrthreshold defaults to ERROR.
  assert.deepEqual(r.stderr.map((l) => (JSON.parse(l) as Line)['msg']), ['an error']);
});

test('--log-file is appended to at startup; --skip-log-headers drops the header; --alsologtostderr copies to stderr', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'agent.log');
  writeFileSync(file, '{"msg":"from an earlier run"}\n');
  const r = rig(['--logtostderr=false', `--log-file=${file}`, '--skip-log-headers', '--alsologtostderr']);
  logAll(r.logger);
  r.close();
  assert.deepEqual(msgs(jsonLines(file)), ['from an earlier run', 'an info line', 'a verbose line', 'a warning', 'an error']);
  assert.equal(r.stderr.length, 4);
});

test('--log-file-max-size: past the limit the file is started again (klog truncates its --log-file)', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'big.log');
  const r = rig(['--logtostderr=false', `--log-file=${file}`, '--log-file-max-size=1']);
  const pad = 'x'.repeat(1000);
  for (let i = 0; i < 1500; i++) r.logger.info('line', { i, pad });
  r.close();
  assert.ok(statSync(file).size < 1024 * 1024, `size ${statSync(file).size}`);
  const lines = jsonLines(file);
  assert.equal(lines[0]!['msg'], 'log file created', 'the restarted file has a header');
  assert.ok((lines[1]!['i'] as number) > 0, 'the first lines were dropped with the old file');
  assert.equal(lines.at(-1)!['i'], 1499);
  // 0 = unlimited.
  const file2 = path.join(dir, 'unlimited.log');
  const r2 = rig(['--logtostderr=false', `--log-file=${file2}`, '--log-file-max-size=0']);
  for (let i = 0; i < 1500; i++) r2.logger.info('line', { i, pad });
  r2.close();
  assert.equal(jsonLines(file2).length, 1501);
});

test('--logtostderr=false --log-dir: klog file names and symlinks, INFO ⊇ WARNING ⊇ ERROR; --one-output', (t) => {
  const dir = tempDir(t);
  const r = rig(['--logtostderr=false', `--log-dir=${dir}`, '--skip-log-headers']);
  logAll(r.logger);
  r.close();
  const files = readdirSync(dir).sort();
  for (const sev of ['INFO', 'WARNING', 'ERROR']) {
    assert.ok(files.includes(`kts-test.${sev}`), `symlink kts-test.${sev} in ${files.join(' ')}`);
    assert.match(readlinkSync(path.join(dir, `kts-test.${sev}`)), new RegExp(`^kts-test\\.host1\\.user1\\.log\\.${sev}\\.\\d{8}-\\d{6}\\.4242$`));
  }
  assert.deepEqual(msgs(jsonLines(path.join(dir, 'kts-test.INFO'))), ['an info line', 'a verbose line', 'a warning', 'an error']);
  assert.deepEqual(msgs(jsonLines(path.join(dir, 'kts-test.WARNING'))), ['a warning', 'an error']);
  assert.deepEqual(msgs(jsonLines(path.join(dir, 'kts-test.ERROR'))), ['an error']);

  const one = path.join(dir, 'one');
  mkdirSync(one);
  const r1 = rig(['--logtostderr=false', `--log-dir=${one}`, '--skip-log-headers', '--one-output'], 'one');
  logAll(r1.logger);
  r1.close();
  assert.deepEqual(msgs(jsonLines(path.join(one, 'one.INFO'))), ['an info line', 'a verbose line']);
  assert.deepEqual(msgs(jsonLines(path.join(one, 'one.WARNING'))), ['a warning']);
  assert.deepEqual(msgs(jsonLines(path.join(one, 'one.ERROR'))), ['an error']);
});

test('a --log-file that cannot be created fails at once with klog\'s message', (t) => {
  const dir = tempDir(t);
  assert.throws(() => rig(['--logtostderr=false', `--log-file=${path.join(dir, 'no/such/dir/x.log')}`]), /^Error: log: unable to create log: ENOENT/);
});

// ---------------------------------------------------------------------------
// The daemons

function fileHas(file: string, re: RegExp): boolean {
  return existsSync(file) && re.test(readFileSync(file, 'utf8'));
}

test('konnectivity-server and konnectivity-agent with --logtostderr=false --log-file write JSON lines there, not to stderr', async (t) => {
  const dir = tempDir(t);
  const pki = await sharedPki();
  const serverLog = path.join(dir, 'server.log');
  const agentLog = path.join(dir, 'agent.log');
  const [agentPort, adminPort, healthPort, agentHealthPort, agentAdminPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const server = spawnBin(t, 'konnectivity-server', [
    `--uds-name=${path.join(dir, 's.sock')}`, '--server-port=0',
    `--cluster-cert=${pki.server.certPath}`, `--cluster-key=${pki.server.keyPath}`,
    `--agent-port=${agentPort}`, '--agent-bind-address=127.0.0.1',
    `--admin-port=${adminPort}`, `--health-port=${healthPort}`, '--health-bind-address=127.0.0.1',
    '--v=2', '--logtostderr=false', `--log-file=${serverLog}`,
  ]);
  await waitForStatus(healthPort, '/healthz', 200, server, 'konnectivity-server');
  const agent = spawnBin(t, 'konnectivity-agent', [
    '--ca-cert', pki.ca.certPath, '--proxy-server-host', '127.0.0.1', '--proxy-server-port', String(agentPort),
    '--health-server-host', '127.0.0.1', '--health-server-port', String(agentHealthPort), '--admin-server-port', String(agentAdminPort),
    '--sync-interval', '200ms', '--probe-interval', '200ms',
    '--logtostderr=false', '--log-file', agentLog,
  ]);
  t.after(() => {
    // On failure, the files say more than the (quiet) stderr.
    if (existsSync(agentLog) && agent.running() === false) t.diagnostic(`agent log:\n${readFileSync(agentLog, 'utf8')}\nagent stderr:\n${agent.stderr()}`);
  });
  await waitForStatus(agentHealthPort, '/healthz', 200, agent, 'konnectivity-agent');
  await waitForStatus(healthPort, '/readyz', 200, server, 'konnectivity-server (waiting for the agent)');
  await waitForStatus(agentHealthPort, '/readyz', 200, agent, 'konnectivity-agent');
  await waitFor(() => fileHas(serverLog, /"msg":"agent connected"/), 'agent connected in the server log file');

  // The agent drains on the first SIGTERM (logged to its file) and stops on the second.
  agent.child.kill('SIGTERM');
  await waitFor(() => fileHas(agentLog, /drain/i) || !agent.running(), 'the agent to log its drain');
  agent.child.kill('SIGTERM');
  assert.deepEqual(await agent.exited, { code: 0, signal: null }, agent.stderr());
  server.child.kill('SIGTERM');
  assert.deepEqual(await server.exited, { code: 0, signal: null }, server.stderr());

  const s = jsonLines(serverLog);
  assert.equal(s[0]!['msg'], 'log file created');
  assert.ok(s.every((l) => typeof l['time'] === 'string' && typeof l['level'] === 'string'));
  assert.ok(s.some((l) => l['msg'] === 'konnectivity-server started' && l['component'] === 'konnectivity-server'), JSON.stringify(msgs(s)));
  assert.ok(s.some((l) => l['msg'] === 'agent connected' && l['v'] === 2));
  assert.ok(s.some((l) => l['msg'] === 'konnectivity-server stopped'));
  const a = jsonLines(agentLog);
  assert.equal(a[0]!['msg'], 'log file created');
  assert.ok(a.some((l) => l['msg'] === 'agent starting' && l['component'] === 'konnectivity-agent'), JSON.stringify(msgs(a)));
  assert.ok(a.some((l) => l['msg'] === 'connected to proxy-server'));
  // Below --stderrthreshold (ERROR) nothing reaches stderr.
  assert.doesNotMatch(server.stderr(), /"level":"(info|warn)"/);
  assert.doesNotMatch(agent.stderr(), /"level":"(info|warn)"/);
  assert.doesNotMatch(server.stderr(), /konnectivity-server started/);
  assert.doesNotMatch(agent.stderr(), /agent starting/);
});

test('a daemon whose --log-file cannot be created exits with status 2 (klog)', async (t) => {
  const dir = tempDir(t);
  const pki = await sharedPki();
  const out = await runBin(t, 'konnectivity-agent', ['--ca-cert', pki.ca.certPath, '--logtostderr=false', `--log-file=${path.join(dir, 'missing', 'agent.log')}`]);
  assert.equal(out.code, 2, out.stderr);
  assert.match(out.stderr, /^log: exiting because of error: log: unable to create log: ENOENT/);
  const srv = await runBin(t, 'konnectivity-server', [`--uds-name=${path.join(dir, 's.sock')}`, '--server-port=0', `--cluster-cert=${pki.server.certPath}`, `--cluster-key=${pki.server.keyPath}`, '--logtostderr=false', `--log-dir=${path.join(dir, 'missing')}`]);
  assert.equal(srv.code, 2, srv.stderr);
  assert.match(srv.stderr, /^log: exiting because of error: log: unable to create log: ENOENT/);
});
