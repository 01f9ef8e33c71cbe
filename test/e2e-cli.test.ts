/**
 * The three binaries as an operator runs them, with upstream's flag
 * spelling: konnectivity-server and konnectivity-agent as processes, then
 * `konnectivity client` fetching a page through them, then SIGTERM.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { startDemoTarget } from '../src/dev/local-cluster.ts';
import { sharedPki } from './helpers/cluster.ts';
import { startDaemonPair, httpStatus, type DaemonPair } from './helpers/daemon-pair.ts';
import { runBin } from './helpers/processes.ts';
import { freePort } from './helpers/targets.ts';

async function demoTarget(t: TestContext): Promise<{ port: number; url: string }> {
  const demo = await startDemoTarget();
  t.after(() => {
    demo.server.closeAllConnections();
    demo.server.close();
  });
  return demo;
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type RunningPair = Pick<DaemonPair, 'server' | 'agent' | 'agentHealthPort'>;

function startServerAndAgent(t: TestContext, frontendFlags: string[]): Promise<RunningPair> {
  return startDaemonPair(t, {
    serverFlags: [...frontendFlags, '--v=2'],
    agentFlags: ['--sync-interval', '200ms', '--probe-interval', '200ms'],
    // Not ready before an agent is connected.
    beforeAgent: async ({ serverHealthPort }) => assert.equal(await httpStatus(serverHealthPort, '/readyz'), 500),
  });
}

async function stopBoth(pair: RunningPair): Promise<void> {
  // The agent drains on the first SIGTERM and stops on the second.
  pair.agent.child.kill('SIGTERM');
  await pair.agent.waitForOutput(/drain/i, 'the agent to start draining');
  pair.agent.child.kill('SIGTERM');
  assert.deepEqual(await pair.agent.exited, { code: 0, signal: null }, pair.agent.stderr());
  pair.server.child.kill('SIGTERM');
  assert.deepEqual(await pair.server.exited, { code: 0, signal: null }, pair.server.stderr());
}

test('grpc over a unix socket: server, agent and `konnectivity client` as processes; SIGTERM stops both', async (t) => {
  const dir = tempDir(t);
  const uds = path.join(dir, 'konnectivity-server.socket');
  const demo = await demoTarget(t);
  const pair = await startServerAndAgent(t, [`--uds-name=${uds}`, '--server-port=0', '--mode=grpc']);
  const out = await runBin(t, 'konnectivity', ['client', '--proxy-uds', uds, '--url', `${demo.url}cli-grpc`]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, 'hello from the demo target behind konnectivity: GET /cli-grpc\n');

  // A dial the agent cannot make is reported with the agent's Go error and exit code 1.
  const closed = await freePort();
  const failed = await runBin(t, 'konnectivity', ['client', '--proxy-uds', uds, '--url', `http://127.0.0.1:${closed}/`]);
  assert.equal(failed.code, 1);
  assert.ok(failed.stderr.includes(`dial tcp 127.0.0.1:${closed}: connect: connection refused`), failed.stderr);

  await stopBoth(pair);
  assert.equal(existsSync(uds), false, 'the server left its unix socket behind');
});

test('http-connect over mTLS TCP: server, agent and `konnectivity client` as processes; SIGTERM stops both', async (t) => {
  const pki = await sharedPki();
  const client = await pki.client('system:kube-apiserver');
  const serverPort = await freePort();
  const demo = await demoTarget(t);
  const pair = await startServerAndAgent(t, [
    '--mode=http-connect',
    `--server-port=${serverPort}`,
    '--server-bind-address=127.0.0.1',
    `--server-cert=${pki.server.certPath}`,
    `--server-key=${pki.server.keyPath}`,
    `--server-ca-cert=${pki.ca.certPath}`,
  ]);
  const out = await runBin(t, 'konnectivity', [
    'client',
    '--mode', 'http-connect',
    '--proxy-host', '127.0.0.1',
    '--proxy-port', String(serverPort),
    '--ca-cert', pki.ca.certPath,
    '--client-cert', client.certPath,
    '--client-key', client.keyPath,
    '--url', `${demo.url}cli-http-connect`,
  ]);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(out.stdout, 'hello from the demo target behind konnectivity: GET /cli-http-connect\n');
  await stopBoth(pair);
});
