/**
 * The Kubernetes features through the two commands: konnectivity-server with
 * token auth and the lease controller against the fake apiserver (lease
 * published, agents authenticated, lease deleted on shutdown), and
 * konnectivity-agent with --count-server-leases.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { main as agentMain, type AgentProcess } from '../src/cli/agent-main.ts';
import { main as serverMain, type ServerProcess } from '../src/cli/server-main.ts';
import { startLocalCluster } from '../src/dev/local-cluster.ts';
import type { DevPki } from '../src/dev/pki.ts';
import { createLogger } from '../src/observability/logger.ts';
import { deferred, unusedPort } from './agent-fixtures.ts';
import { startFakeApiServerInTempDir, type FakeApiServer } from './helpers/fake-apiserver.ts';
import { waitFor } from './helpers/wait.ts';

let dir: string;
let pki: DevPki;
let api: FakeApiServer;

let fixture: Awaited<ReturnType<typeof startFakeApiServerInTempDir>>;

before(async () => {
  fixture = await startFakeApiServerInTempDir('kube-cli-');
  ({ dir, pki, api } = fixture);
  api.addToken('cli-agent-token', 'system:serviceaccount:kube-system:konnectivity-agent', ['system:konnectivity-server']);
});

after(() => fixture.close());

function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  return waitFor(predicate, what, timeoutMs);
}

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

function captureLogs(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ verbosity: 2, format: 'json', write: (l) => lines.push(l) }) };
}

test('konnectivity-server: token auth and the lease controller from the flags; the lease goes away on shutdown', async (t) => {
  const namespace = 'cli-server-leases';
  const [agentPort, healthPort, adminPort] = [await unusedPort(), await unusedPort(), await unusedPort()];
  const shutdown: { handler?: (signal: string) => void } = {};
  const { lines, logger } = captureLogs();
  const io: ServerProcess = { stdout: new PassThrough(), stderr: new PassThrough(), env: {}, onShutdownSignal: (h) => (shutdown.handler = h), logger };
  const exit = serverMain(
    [
      '--uds-name', path.join(dir, 'cli-server.sock'),
      '--server-port', '0',
      '--cluster-cert', pki.server.certPath,
      '--cluster-key', pki.server.keyPath,
      '--agent-port', String(agentPort),
      '--agent-bind-address', '127.0.0.1',
      '--health-port', String(healthPort),
      '--health-bind-address', '127.0.0.1',
      '--admin-port', String(adminPort),
      '--server-id', 'cli-server',
      '--agent-namespace', 'kube-system',
      '--agent-service-account', 'konnectivity-agent',
      '--authentication-audience', 'system:konnectivity-server',
      '--kubeconfig', api.kubeconfigPath,
      '--kubeconfig-qps', '50',
      '--kubeconfig-burst', '100',
      '--enable-lease-controller',
      '--lease-namespace', namespace,
      '--lease-label', 'k8s-app=konnectivity-server,tier=test',
    ],
    io,
  );
  let stopped = false;
  // A failed assertion must not leave the server running (the test file would never end).
  t.after(() => {
    if (!stopped) shutdown.handler?.('SIGTERM');
  });
  const leaseName = 'konnectivity-proxy-server-cli-server';
  await until('the server lease', () => api.lease(namespace, leaseName) !== undefined);
  const lease = api.lease(namespace, leaseName)!;
  assert.deepEqual((lease['metadata'] as Record<string, unknown>)['labels'], { 'k8s-app': 'konnectivity-server', tier: 'test' });
  assert.equal((lease['spec'] as Record<string, unknown>)['holderIdentity'], 'cli-server');

  const client = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'kubernetes client configured');
  assert.ok(client, 'the client configuration is logged at -v2');
  assert.equal(client['qps'], 50);
  assert.equal(client['burst'], 100);
  assert.equal(client['contentType'], 'application/json');
  assert.match(String(client['note']), /--kube-api-content-type=application\/vnd\.kubernetes\.protobuf is not supported by this client/);

  const agentFor = (token: string): KonnectivityAgent => {
    const tokenPath = path.join(dir, `cli-token-${token}`);
    writeFileSync(tokenPath, token);
    return new KonnectivityAgent({ proxyServerHost: '127.0.0.1', proxyServerPort: agentPort, caCertPath: pki.ca.certPath, agentID: `agent-${token}`, serviceAccountTokenPath: tokenPath, syncIntervalMs: 100, syncIntervalCapMs: 200 });
  };
  const rejected = agentFor('not-a-token');
  const failure = deferred<Error>();
  rejected.onSync = (_o, err) => err && failure.resolve(err);
  await rejected.start();
  assert.match((await failure.promise).message, /Unauthenticated desc = Failed to validate authentication token, err:lookup failed/);
  await rejected.stop();
  assert.equal((await get(healthPort, '/readyz')).status, 500, 'the rejected agent did not make the server ready');

  const accepted = agentFor('cli-agent-token');
  await accepted.start();
  await until('ready', async () => (await get(healthPort, '/readyz')).status === 200);
  await accepted.stop();
  assert.ok(lines.some((l) => l.includes('agent authentication failed')));

  stopped = true;
  shutdown.handler!('SIGTERM');
  assert.equal(await exit, 0);
  assert.equal(api.lease(namespace, leaseName), undefined, 'own lease deleted on stop');
});

test('konnectivity-server: no kubeconfig and not in a cluster is a startup error', async () => {
  const { lines, logger } = captureLogs();
  const code = await serverMain(
    [
      '--uds-name', path.join(dir, 'never.sock'),
      '--server-port', '0',
      '--cluster-cert', pki.server.certPath,
      '--cluster-key', pki.server.keyPath,
      '--enable-lease-controller',
    ],
    { stdout: new PassThrough(), stderr: new PassThrough(), env: {}, onShutdownSignal: () => {}, logger },
  );
  assert.equal(code, 1);
  assert.ok(lines.some((l) => l.includes('failed to create the Kubernetes client') && l.includes('KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined')));
});

test('konnectivity-agent --count-server-leases: the target server count follows the leases', async (t) => {
  const namespace = 'cli-agent-leases';
  const now = new Date();
  for (const name of ['a', 'b', 'c']) api.putLease(namespace, { name: `konnectivity-proxy-server-${name}`, labels: { 'k8s-app': 'konnectivity-server' }, leaseDurationSeconds: 3600, renewTime: now });
  api.putLease(namespace, { name: 'unrelated', labels: { 'k8s-app': 'something-else' }, leaseDurationSeconds: 3600, renewTime: now });
  const cluster = await startLocalCluster({ mode: 'grpc', agents: 0, pki });
  t.after(() => cluster.close());
  const shutdown: { handler?: (signal: string) => void } = {};
  const ready = deferred<{ health: number; admin: number }>();
  const io: AgentProcess = {
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    env: {},
    onShutdownSignal: (h) => (shutdown.handler = h),
    onReady: (ports) => ready.resolve(ports),
    logger: createLogger({ verbosity: -1, write: () => {} }),
  };
  const exit = agentMain(
    [
      '--ca-cert', pki.ca.certPath,
      '--proxy-server-host', '127.0.0.1',
      '--proxy-server-port', String(cluster.server.addresses.agentPort),
      '--health-server-port', String(await unusedPort()),
      '--admin-server-port', String(await unusedPort()),
      '--sync-interval', '50ms',
      '--sync-interval-cap', '100ms',
      '--count-server-leases',
      '--kubeconfig', api.kubeconfigPath,
      '--lease-namespace', namespace,
      '--lease-label-selector', 'k8s-app=konnectivity-server',
    ],
    io,
  );
  const ports = await ready.promise;
  await until('known_server_count 3', async () => /\nkonnectivity_network_proxy_agent_known_server_count 3\n/.test((await get(ports.health, '/metrics')).body));
  const metrics = (await get(ports.health, '/metrics')).body;
  assert.match(metrics, /konnectivity_network_proxy_agent_lease_lists_total\{http_response_code="200",reason=""\} 1/);
  const list = api.requestsTo({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`, watch: false })[0]!;
  assert.equal(list.query['labelSelector'], 'k8s-app=konnectivity-server');
  shutdown.handler!('SIGTERM');
  shutdown.handler!('SIGTERM');
  assert.equal(await exit, 0);
});
