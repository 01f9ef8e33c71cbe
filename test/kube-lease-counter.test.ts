/**
 * The agent's lease-based server count against the fake apiserver: list
 * then watch, convergence as Leases are added, renewed, expire and are
 * deleted, label-selector filtering, recovery from broken watches, expired
 * resourceVersions and failing lists, metrics, and the agent using it.
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { ServerLeaseCounter, type LeaseCounterOptions } from '../src/agent/lease-counter.ts';
import { effectiveServerCount } from '../src/agent/server-count.ts';
import { startLocalCluster } from '../src/dev/local-cluster.ts';
import type { DevPki } from '../src/dev/pki.ts';
import { LabelSelector } from '../src/flags/label-selector.ts';
import { KubeClient } from '../src/kube/kube-client.ts';
import { createAgentMetrics, type AgentMetrics } from '../src/observability/agent-metrics.ts';
import { startFakeApiServerInTempDir, type FakeApiServer } from './helpers/fake-apiserver.ts';
import { waitFor } from './helpers/wait.ts';

const LABELS = { 'k8s-app': 'konnectivity-server' };

let pki: DevPki;
let api: FakeApiServer;
let nsCounter = 0;

let fixture: Awaited<ReturnType<typeof startFakeApiServerInTempDir>>;

before(async () => {
  fixture = await startFakeApiServerInTempDir('kube-lease-counter-');
  ({ pki, api } = fixture);
});

after(() => fixture.close());

function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  return waitFor(predicate, what, timeoutMs);
}

interface Harness {
  counter: ServerLeaseCounter;
  metrics: AgentMetrics;
  namespace: string;
  clock: { now: number };
  /** A lease renewed at the current fake time. */
  put(name: string, labels?: Record<string, string>, renewedAgoSeconds?: number): void;
}

function harness(t: TestContext, overrides: Partial<LeaseCounterOptions> = {}): Harness {
  const namespace = `count-ns-${++nsCounter}`;
  const metrics = createAgentMetrics({ processMetrics: false });
  const clock = { now: Date.parse('2032-01-01T00:00:00.000Z') };
  const counter = new ServerLeaseCounter({
    client: KubeClient.fromFlags({ kubeconfigPath: api.kubeconfigPath, requestTimeoutMs: 5_000 }),
    namespace,
    selector: LabelSelector.parse('k8s-app=konnectivity-server'),
    metrics,
    now: () => clock.now,
    retryInitialMs: 10,
    retryCapMs: 50,
    ...overrides,
  });
  t.after(() => counter.stop());
  return {
    counter,
    metrics,
    namespace,
    clock,
    put(name, labels = LABELS, renewedAgoSeconds = 0) {
      api.putLease(namespace, { name, labels, holderIdentity: name, leaseDurationSeconds: 30, renewTime: new Date(clock.now - renewedAgoSeconds * 1000) });
    },
  };
}

async function metricValue(metrics: AgentMetrics, name: 'leaseLists' | 'leaseWatches', code: string, reason = ''): Promise<number> {
  return (await metrics[name].get()).values.find((v) => v.labels['http_response_code'] === code && v.labels['reason'] === reason)?.value ?? 0;
}

test('converges as leases are added, renewed, expire and are deleted; 1 when none are valid', async (t) => {
  const h = harness(t);
  assert.equal(h.counter.count(), 1, 'fallback before the first list');
  h.put('server-a');
  h.counter.start();
  await until('the first list', () => h.counter.synced);
  assert.equal(h.counter.count(), 1);
  const list = api.requestsTo({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases`, watch: false })[0]!;
  assert.equal(list.query['labelSelector'], 'k8s-app=konnectivity-server');
  await until('the watch', () => h.counter.watches >= 1);

  // Added (through the watch).
  h.put('server-b');
  h.put('server-c');
  h.put('not-a-server', { app: 'other' });
  api.putLease('another-namespace', { name: 'server-x', labels: LABELS, leaseDurationSeconds: 30, renewTime: new Date(h.clock.now) });
  await until('count 3', () => h.counter.count() === 3);

  // Time passes without renewals: every lease expires, no event needed.
  h.clock.now += 31_000;
  assert.equal(h.counter.count(), 1);

  // Two servers renew.
  h.put('server-a');
  h.put('server-c');
  await until('count 2 after renewals', () => h.counter.count() === 2);

  // One is deleted (server stopped).
  api.removeLease(h.namespace, 'server-c');
  await until('count 1 after a delete', () => h.counter.count() === 1 && !h.counter.knownLeases.has('server-c'));

  // A lease that stops matching the selector no longer counts.
  h.put('server-b');
  await until('count 2', () => h.counter.count() === 2);
  h.put('server-b', { 'k8s-app': 'retired' });
  await until('count 1 after relabel', () => h.counter.count() === 1);

  assert.ok((await metricValue(h.metrics, 'leaseLists', '200')) >= 1);
  assert.ok((await metricValue(h.metrics, 'leaseWatches', '200')) >= 1);
  const latency = (await h.metrics.leaseListLatency.get()).values.find((v) => v.metricName?.endsWith('_count') && v.labels['http_response_code'] === '200');
  assert.ok((latency?.value ?? 0) >= 1);
});

test('acquireTime counts when there is no renewTime; full selector syntax, sent to the apiserver as written', async (t) => {
  const h = harness(t, { selector: LabelSelector.parse('k8s-app=konnectivity-server,tier in (a,b),!legacy') });
  api.putLease(h.namespace, { name: 'acq', labels: { ...LABELS, tier: 'a' }, leaseDurationSeconds: 30, acquireTime: new Date(h.clock.now) });
  api.putLease(h.namespace, { name: 'tier-b', labels: { ...LABELS, tier: 'b' }, leaseDurationSeconds: 30, renewTime: new Date(h.clock.now) });
  api.putLease(h.namespace, { name: 'tier-c', labels: { ...LABELS, tier: 'c' }, leaseDurationSeconds: 30, renewTime: new Date(h.clock.now) });
  api.putLease(h.namespace, { name: 'legacy', labels: { ...LABELS, tier: 'a', legacy: 'true' }, leaseDurationSeconds: 30, renewTime: new Date(h.clock.now) });
  api.putLease(h.namespace, { name: 'no-times', labels: { ...LABELS, tier: 'a' }, leaseDurationSeconds: 30 });
  h.counter.start();
  await until('synced', () => h.counter.synced);
  assert.equal(h.counter.count(), 2);
  const list = api.requestsTo({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases`, watch: false })[0]!;
  assert.equal(list.query['labelSelector'], LabelSelector.parse('k8s-app=konnectivity-server,tier in (a,b),!legacy').toString());
});

test('a broken watch resumes from the last resourceVersion; an expired one (410) lists again', async (t) => {
  const h = harness(t);
  h.put('server-a');
  h.counter.start();
  await until('the watch', () => h.counter.watches >= 1 && api.openWatches >= 1);
  const watchPath = `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases`;

  // The apiserver drops the watch; a change made meanwhile is replayed from the resourceVersion.
  api.closeWatches();
  h.put('server-b');
  await until('count 2', () => h.counter.count() === 2);
  const rewatch = api.requestsTo({ method: 'GET', path: watchPath, watch: true }).at(-1)!;
  assert.match(rewatch.query['resourceVersion'] ?? '', /^\d+$/);
  assert.equal(h.counter.lists, 1, 'no relist needed');

  // History compacted while disconnected: the watch gets 410 Expired and the counter lists again.
  await until('re-watching', () => api.openWatches >= 1);
  api.closeWatches();
  h.put('server-c');
  api.compact();
  await until('relisted with 3', () => h.counter.lists >= 2 && h.counter.count() === 3);
  assert.equal(await metricValue(h.metrics, 'leaseLists', '200'), 2);
});

test('failing lists are retried with backoff and counted by status; the last known leases keep counting meanwhile', async (t) => {
  const h = harness(t);
  const listFilter = { method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases`, watch: false } as const;
  api.failNext(listFilter, { code: 403, reason: 'Forbidden', message: 'leases.coordination.k8s.io is forbidden: User "system:serviceaccount:kube-system:konnectivity-agent" cannot list resource "leases"' });
  api.failNext(listFilter, { code: 500, reason: 'InternalError', message: 'etcdserver: request timed out' });
  h.put('server-a');
  h.put('server-b');
  h.counter.start();
  await until('synced after two failures', () => h.counter.synced);
  assert.equal(h.counter.count(), 2);
  assert.equal(await metricValue(h.metrics, 'leaseLists', '403', 'Forbidden'), 1);
  assert.equal(await metricValue(h.metrics, 'leaseLists', '500', 'InternalError'), 1);
  assert.equal(await metricValue(h.metrics, 'leaseLists', '200'), 1);

  // The watch fails to start (apiserver overloaded) and then the list too: the cache stays.
  await until('the watch', () => api.openWatches >= 1);
  api.failNext({ method: 'GET', path: listFilter.path, watch: true }, { code: 429, reason: 'TooManyRequests', message: 'too many requests' });
  api.failNext(listFilter, 'destroy');
  api.closeWatches();
  await until('the failed watch counted', async () => (await metricValue(h.metrics, 'leaseWatches', '429', 'TooManyRequests')) === 1);
  assert.equal(h.counter.count(), 2);
  await until('listed again', () => h.counter.lists >= 2);
  assert.equal(h.counter.count(), 2);
});

test('the agent aims for the lease count (default source) or the max of leases and server responses (max)', async (t) => {
  const h = harness(t);
  for (const name of ['s1', 's2', 's3']) h.put(name);
  h.counter.start();
  await until('count 3', () => h.counter.count() === 3);
  assert.equal(effectiveServerCount(5, h.counter, 'default'), 3);
  assert.equal(effectiveServerCount(5, h.counter, 'max'), 5);
  assert.equal(effectiveServerCount(1, h.counter, 'max'), 3);

  const cluster = await startLocalCluster({ mode: 'grpc', agents: 0, pki });
  t.after(() => cluster.close());
  const { KonnectivityAgent } = await import('../src/agent/konnectivity-agent.ts');
  const agentMetrics = createAgentMetrics({ processMetrics: false });
  const agent = new KonnectivityAgent(
    { proxyServerHost: '127.0.0.1', proxyServerPort: cluster.server.addresses.agentPort, caCertPath: pki.ca.certPath, agentID: 'lease-counting-agent', syncIntervalMs: 50, syncIntervalCapMs: 100 },
    { leaseCounter: h.counter, metrics: agentMetrics },
  );
  t.after(() => agent.stop());
  await agent.start();
  await cluster.waitForAgents(1);
  await until('target 3', () => agent.targetServerCount === 3);
  await until('known_server_count 3', async () => (await agentMetrics.knownServerCount.get()).values[0]?.value === 3);
  h.clock.now += 60_000;
  await until('target 1 once the leases expire', () => agent.targetServerCount === 1);
});
