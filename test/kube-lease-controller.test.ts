/**
 * The proxy-server's lease controller against the fake apiserver: its own
 * Lease (name, labels, holder, duration, MicroTime renewTime), renewals,
 * recovery when the Lease is changed or deleted behind its back, garbage
 * collection of expired Leases with resourceVersion preconditions, the
 * lease metrics, and deleting its Lease on stop.
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import type { DevPki } from '../src/dev/pki.ts';
import { KubeClient } from '../src/kube/kube-client.ts';
import { createServerMetrics, type ServerMetrics } from '../src/observability/server-metrics.ts';
import { ServerLeaseController, serverLeaseName, type LeaseControllerOptions } from '../src/server/lease-controller.ts';
import { formatMicroTime, startFakeApiServerInTempDir, type FakeApiServer } from './helpers/fake-apiserver.ts';
import { waitFor } from './helpers/wait.ts';

const LABELS = { 'k8s-app': 'konnectivity-server' };

let dir: string;
let pki: DevPki;
let api: FakeApiServer;
let nsCounter = 0;

let fixture: Awaited<ReturnType<typeof startFakeApiServerInTempDir>>;

before(async () => {
  fixture = await startFakeApiServerInTempDir('kube-lease-controller-');
  ({ dir, pki, api } = fixture);
});

after(() => fixture.close());

function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  return waitFor(predicate, what, timeoutMs);
}

async function untilAsync(what: string, predicate: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Harness {
  controller: ServerLeaseController;
  metrics: ServerMetrics;
  namespace: string;
  clock: { now: number };
}

function controller(t: TestContext, overrides: Partial<LeaseControllerOptions> & { kubeconfig?: string } = {}): Harness {
  const { kubeconfig, ...rest } = overrides;
  const namespace = `lease-ns-${++nsCounter}`;
  const metrics = createServerMetrics({ processMetrics: false });
  const clock = { now: Date.parse('2031-05-06T07:08:09.123Z') };
  const c = new ServerLeaseController({
    client: KubeClient.fromFlags({ kubeconfigPath: kubeconfig ?? api.kubeconfigPath, requestTimeoutMs: 5_000 }),
    serverId: 'server-1',
    namespace,
    labels: LABELS,
    metrics,
    renewIntervalMs: 20,
    gcIntervalMs: 60_000,
    now: () => clock.now,
    ...rest,
  });
  t.after(() => c.stop());
  return { controller: c, metrics, namespace, clock };
}

function spec(obj: Record<string, unknown> | undefined): Record<string, unknown> {
  return (obj?.['spec'] ?? {}) as Record<string, unknown>;
}
function meta(obj: Record<string, unknown> | undefined): Record<string, unknown> {
  return (obj?.['metadata'] ?? {}) as Record<string, unknown>;
}

async function counter(metrics: ServerMetrics, name: 'leaseLists' | 'leaseDeletes', labels: Record<string, string>): Promise<number> {
  const values = (await metrics[name].get()).values;
  return values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k as keyof typeof v.labels] === val))?.value ?? 0;
}

test('creates konnectivity-proxy-server-<serverID> with the labels, holder, 30 s duration and a MicroTime renewTime, then renews it', async (t) => {
  const h = controller(t);
  const name = serverLeaseName('server-1');
  assert.equal(name, 'konnectivity-proxy-server-server-1');
  h.controller.start();
  await until('the lease', () => api.lease(h.namespace, name) !== undefined);
  const created = api.lease(h.namespace, name)!;
  assert.deepEqual(meta(created)['labels'], LABELS);
  assert.deepEqual(spec(created), { holderIdentity: 'server-1', leaseDurationSeconds: 30, renewTime: '2031-05-06T07:08:09.123000Z' });
  const createReq = api.requestsTo({ method: 'POST', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases` });
  assert.equal(createReq.length, 1);

  h.clock.now += 15_000;
  await until('a renewal at the new time', () => spec(api.lease(h.namespace, name))['renewTime'] === formatMicroTime(new Date(h.clock.now)));
  const renewed = api.lease(h.namespace, name)!;
  assert.notEqual(meta(renewed)['resourceVersion'], meta(created)['resourceVersion']);
  assert.equal(meta(renewed)['uid'], meta(created)['uid'], 'updated in place, not re-created');
  assert.ok(api.requestsTo({ method: 'PUT', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases/${name}` }).length >= 1);
});

test('recovers when its lease is modified or deleted by someone else', async (t) => {
  const h = controller(t);
  const name = serverLeaseName('server-1');
  h.controller.start();
  await until('the lease', () => api.lease(h.namespace, name) !== undefined);

  // Another writer changes it: the controller's next update conflicts, it re-reads and takes it back.
  api.putLease(h.namespace, { name, labels: { other: 'x' }, holderIdentity: 'intruder', leaseDurationSeconds: 1, renewTime: new Date(0) });
  await until('the lease taken back', () => spec(api.lease(h.namespace, name))['holderIdentity'] === 'server-1');
  const back = api.lease(h.namespace, name)!;
  assert.deepEqual(meta(back)['labels'], LABELS);
  assert.equal(spec(back)['leaseDurationSeconds'], 30);

  // Deleted (e.g. by another server's GC while this one was paused): created again.
  const uid = meta(back)['uid'];
  api.removeLease(h.namespace, name);
  await until('the lease re-created', () => api.lease(h.namespace, name) !== undefined && meta(api.lease(h.namespace, name))['uid'] !== uid);
});

test('GC lists by the label selector and deletes only expired matching leases, with a resourceVersion precondition', async (t) => {
  const h = controller(t, { renewIntervalMs: 60_000, gcIntervalMs: 60_000 });
  const now = new Date(h.clock.now);
  const ago = (s: number): Date => new Date(h.clock.now - s * 1000);
  api.putLease(h.namespace, { name: 'expired', labels: LABELS, leaseDurationSeconds: 30, renewTime: ago(31) });
  api.putLease(h.namespace, { name: 'expired-acquire-only', labels: LABELS, leaseDurationSeconds: 30, acquireTime: ago(60) });
  api.putLease(h.namespace, { name: 'no-times', labels: LABELS, leaseDurationSeconds: 30 });
  api.putLease(h.namespace, { name: 'valid', labels: LABELS, leaseDurationSeconds: 30, renewTime: ago(29) });
  api.putLease(h.namespace, { name: 'valid-acquire', labels: LABELS, leaseDurationSeconds: 30, acquireTime: now });
  api.putLease(h.namespace, { name: 'renewed-recently-acquired-long-ago', labels: LABELS, leaseDurationSeconds: 30, acquireTime: ago(3600), renewTime: ago(1) });
  api.putLease(h.namespace, { name: 'expired-other-labels', labels: { app: 'something-else' }, leaseDurationSeconds: 30, renewTime: ago(3600) });
  api.putLease('unrelated-namespace', { name: 'expired-elsewhere', labels: LABELS, leaseDurationSeconds: 30, renewTime: ago(3600) });
  const listsBefore = api.requestsTo({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases` }).length;

  h.controller.start();
  await until('one completed GC pass', () => h.controller.gcPasses >= 1);
  await until('deletions', () => api.leaseNames(h.namespace).length === 5);
  const list = api.requestsTo({ method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases` })[listsBefore]!;
  assert.equal(list.query['labelSelector'], 'k8s-app=konnectivity-server');
  assert.deepEqual(api.leaseNames(h.namespace).sort(), ['expired-other-labels', 'konnectivity-proxy-server-server-1', 'renewed-recently-acquired-long-ago', 'valid', 'valid-acquire']);
  assert.deepEqual(api.leaseNames('unrelated-namespace'), ['expired-elsewhere']);
  const deletes = api.requestsTo({ method: 'DELETE' }).filter((r) => r.path.includes(`/namespaces/${h.namespace}/`));
  assert.equal(deletes.length, 3);
  for (const d of deletes) {
    const pre = ((d.body as Record<string, unknown>)['preconditions'] ?? {}) as Record<string, unknown>;
    assert.match(String(pre['resourceVersion']), /^\d+$/);
  }
  assert.equal((await h.metrics.culledLeases.get()).values[0]?.value, 3);
  assert.equal(await counter(h.metrics, 'leaseDeletes', { http_status_code: '200', reason: '' }), 3);
  assert.equal(await counter(h.metrics, 'leaseLists', { http_status_code: '200', reason: '' }), 1);
  assert.equal((await h.metrics.leaseListLatency.get()).values.find((v) => v.metricName?.endsWith('_count') && v.labels['http_status_code'] === '200')?.value, 1);
});

test('GC: a lease renewed between the list and the delete survives (precondition conflict), and API errors are counted', async (t) => {
  const h = controller(t, { renewIntervalMs: 60_000, gcIntervalMs: 50 });
  api.putLease(h.namespace, { name: 'racing', labels: LABELS, leaseDurationSeconds: 30, renewTime: new Date(h.clock.now - 60_000) });
  const deletePath = `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases/racing`;
  api.delay({ method: 'DELETE', path: deletePath }, 2_000);
  t.after(() => api.clearFaults());
  h.controller.start();
  await api.waitForRequest({ method: 'DELETE', path: deletePath });
  // The owner renews while the delete is in flight.
  api.putLease(h.namespace, { name: 'racing', labels: LABELS, leaseDurationSeconds: 30, renewTime: new Date(h.clock.now) });
  await untilAsync('lease_delete_total{409,Conflict}', async () => (await counter(h.metrics, 'leaseDeletes', { http_status_code: '409', reason: 'Conflict' })) === 1);
  assert.ok(api.lease(h.namespace, 'racing'), 'the renewed lease survived');
  api.clearFaults();

  const listPath = `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases`;
  api.failNext({ method: 'GET', path: listPath, watch: false }, { code: 403, reason: 'Forbidden', message: 'leases.coordination.k8s.io is forbidden' });
  api.failNext({ method: 'GET', path: listPath, watch: false }, { code: 500, reason: 'InternalError', message: 'etcd is sad' });
  await untilAsync('list failures counted', async () => (await counter(h.metrics, 'leaseLists', { http_status_code: '500', reason: 'InternalError' })) === 1);
  assert.equal(await counter(h.metrics, 'leaseLists', { http_status_code: '403', reason: 'Forbidden' }), 1);
});

test('stop deletes its own lease; an unreachable apiserver does not stop the server', async (t) => {
  const h = controller(t);
  const name = serverLeaseName('server-1');
  h.controller.start();
  await until('the lease', () => api.lease(h.namespace, name) !== undefined);
  await h.controller.stop();
  assert.equal(api.lease(h.namespace, name), undefined);
  const del = api.requestsTo({ method: 'DELETE', path: `/apis/coordination.k8s.io/v1/namespaces/${h.namespace}/leases/${name}` });
  assert.equal(del.length, 1);

  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const down = controller(t, { kubeconfig: api.writeKubeconfig(path.join(dir, 'down.kubeconfig'), { server: `https://127.0.0.1:${port}` }), gcIntervalMs: 20 });
  down.controller.start();
  await new Promise((r) => setTimeout(r, 200));
  await down.controller.stop();
  assert.equal(down.controller.renewals, 0);
  // Connection errors carry no API status: upstream records no list metric for them.
  assert.equal((await down.metrics.leaseLists.get()).values.length, 0);
});
