/**
 * konnectivity-agent as a command: flags to a serving agent, drain on the
 * first signal, stop on the second; usage and exit codes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { main, type AgentProcess } from '../src/cli/agent-main.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { PacketType } from '../src/protocol/packet.ts';
import { FakeProxyServer, deferred, testPki, unusedPort } from './agent-fixtures.ts';
import { binEnv } from './helpers/processes.ts';
import { shebangNodeArgs } from '../bench/lib/shebang-node-args.ts';

const bin = fileURLToPath(new URL('../bin/konnectivity-agent', import.meta.url));

function getStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...shebangNodeArgs(bin), bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: binEnv() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function agentArgs(server: FakeProxyServer): Promise<string[]> {
  const pki = await testPki();
  return [
    '--ca-cert', pki.caPath,
    '--proxy-server-host', '127.0.0.1',
    '--proxy-server-port', String(server.port),
    '--health-server-port', String(await unusedPort()),
    '--admin-server-port', String(await unusedPort()),
    '--agent-id', 'cli-agent',
    '--agent-identifiers', 'host=node1',
    '--sync-interval', '10ms',
    '--sync-interval-cap', '50ms',
    '--probe-interval', '10ms',
  ];
}

test('main(): serves, becomes ready, drains on the first signal and exits 0 on the second', async () => {
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const shutdown: { handler?: (name: string) => void } = {};
  const ready = deferred<{ health: number; admin: number }>();
  const io: AgentProcess = {
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    env: {},
    onShutdownSignal: (handler) => (shutdown.handler = handler),
    onReady: (ports) => ready.resolve(ports),
    logger: silentLogger,
  };
  try {
    const exit = main(await agentArgs(server), io);
    const ports = await ready.promise;
    const stream = await server.stream(0);
    assert.equal(stream.metadata('agentid'), 'cli-agent');
    assert.equal(stream.metadata('agentidentifiers'), 'host=node1');
    let status = 0;
    while (status !== 200) {
      status = await getStatus(ports.health, '/readyz');
      if (status !== 200) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await getStatus(ports.admin, '/metrics'), 301);

    shutdown.handler!('SIGTERM');
    await stream.waitFor((p) => p.type === PacketType.DRAIN);
    assert.equal(await getStatus(ports.health, '/readyz'), 200, 'still serving while draining');
    shutdown.handler!('SIGINT');
    assert.equal(await exit, 0);
    await stream.waitClosed();
  } finally {
    await server.close();
  }
});

test('bin/konnectivity-agent: --help prints usage and exits 0; bad flags exit 1 with the reason', async () => {
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage:\n\s+konnectivity-agent \[flags\]/);
  assert.match(help.stdout, /--proxy-server-host/);

  const unknown = await run(['--no-such-flag']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /^Error: unknown flag: --no-such-flag\n/);
  assert.match(unknown.stderr, /Usage:/);

  const invalid = await run(['--proxy-server-port', '0']);
  assert.equal(invalid.code, 1);
  assert.match(invalid.stderr, /^Error: failed to validate agent options with proxy server port 0 must be greater than 0\n/);
});

test('bin/konnectivity-agent: a missing CA fails startup with exit 1', async () => {
  const r = await run(['--health-server-port', String(await unusedPort()), '--admin-server-port', String(await unusedPort())]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--ca-cert is required/);
});

test('bin/konnectivity-agent: real process, SIGTERM drains, second SIGTERM exits 0', async () => {
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  try {
    const child = spawn(process.execPath, [...shebangNodeArgs(bin), bin, ...(await agentArgs(server))], { stdio: ['ignore', 'ignore', 'pipe'], env: binEnv() });
    child.stderr.resume();
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const stream = await server.stream(0);
    child.kill('SIGTERM');
    await stream.waitFor((p) => p.type === PacketType.DRAIN);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    await server.close();
  }
});
