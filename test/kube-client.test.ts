/**
 * The Kubernetes client against the fake apiserver: configuration sources,
 * TokenReview and Lease calls with their real paths and JSON, error
 * mapping, deadlines, watches, and the client-side rate limiter.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { createDevPki, type DevPki } from '../src/dev/pki.ts';
import { closedPort } from '../src/dev/loopback-ports.ts';
import { KubeClient, type LeaseWatchEvent } from '../src/kube/kube-client.ts';
import { NOT_IN_CLUSTER_MESSAGE, SERVICE_ACCOUNT_DIR, loadKubeConfig } from '../src/kube/kube-config.ts';
import { KubeApiError, isConflict, isNotFound } from '../src/kube/kube-errors.ts';
import { formatLabels, isLeaseValid } from '../src/kube/lease.ts';
import { TokenBucket, createKubeRateLimiter, kubeRateLimits, unlimited } from '../src/kube/rate-limiter.ts';
import { FakeApiServer, formatMicroTime } from './helpers/fake-apiserver.ts';

let dir: string;
let pki: DevPki;
let api: FakeApiServer;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-client-'));
  pki = await createDevPki(path.join(dir, 'pki'));
  api = await FakeApiServer.start({ pki, dir });
});

after(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

function client(options: { requestTimeoutMs?: number } = {}): KubeClient {
  return KubeClient.fromFlags({ kubeconfigPath: api.kubeconfigPath, ...options });
}

test('kubeconfig: a missing file, a file without a current cluster', () => {
  assert.throws(() => loadKubeConfig({ kubeconfigPath: path.join(dir, 'nope.kubeconfig') }), /invalid kubeconfig .*nope\.kubeconfig/);
  const empty = path.join(dir, 'empty.kubeconfig');
  writeFileSync(empty, 'apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n');
  assert.throws(() => loadKubeConfig({ kubeconfigPath: empty }), /no current context/);
});

test('in-cluster: needs KUBERNETES_SERVICE_HOST/PORT and the token file; authenticates with the re-read token', async () => {
  assert.throws(() => loadKubeConfig({ kubeconfigPath: '', env: {} }), { message: NOT_IN_CLUSTER_MESSAGE });
  const root = path.join(dir, 'pod-root');
  assert.throws(() => loadKubeConfig({ kubeconfigPath: '', env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: '1' }, inClusterRoot: root }), /unable to load in-cluster configuration: .*token/);
  const sa = path.join(root, SERVICE_ACCOUNT_DIR);
  mkdirSync(sa, { recursive: true });
  writeFileSync(path.join(sa, 'token'), 'in-cluster-token');
  copyFileSync(pki.ca.certPath, path.join(sa, 'ca.crt'));
  api.clientTokens.add('in-cluster-token');
  const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(api.port) };
  const kc = KubeClient.fromFlags({ kubeconfigPath: '', env, inClusterRoot: root });
  assert.equal(kc.server, `https://127.0.0.1:${api.port}`);
  const before = api.requests.length;
  await assert.rejects(kc.getLease('kube-system', 'absent'), (err: unknown) => isNotFound(err));
  assert.equal(api.requests[before]?.headers.authorization, 'Bearer in-cluster-token');
  const v6 = loadKubeConfig({ kubeconfigPath: '', env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, inClusterRoot: root });
  assert.equal(v6.server, 'https://[fd00::1]:443');
});

test('TokenReview: POSTs spec.token and spec.audiences; the fake decides by audience', async () => {
  api.addToken('good-token', 'system:serviceaccount:kube-system:konnectivity-agent', ['system:konnectivity-server']);
  const kc = client();
  const ok = await kc.createTokenReview('good-token', ['system:konnectivity-server']);
  assert.deepEqual(ok, { authenticated: true, username: 'system:serviceaccount:kube-system:konnectivity-agent', error: '', audiences: ['system:konnectivity-server'] });
  const last = api.requestsTo({ method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews' }).at(-1)!;
  assert.equal(last.headers['content-type'], 'application/json');
  assert.deepEqual(last.body, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { audiences: ['system:konnectivity-server'], token: 'good-token' } });
  const wrongAudience = await kc.createTokenReview('good-token', ['other']);
  assert.equal(wrongAudience.authenticated, false);
  assert.match(wrongAudience.error, /token audiences \["system:konnectivity-server"\] is invalid for the target audiences \["other"\]/);
  const unknown = await kc.createTokenReview('bad-token', ['system:konnectivity-server']);
  assert.equal(unknown.authenticated, false);
  assert.match(unknown.error, /invalid bearer token/);
});

test('errors: Status reason and code; connection refused and deadline have code 0', async () => {
  api.failNext({ method: 'POST' }, { code: 403, reason: 'Forbidden', message: 'tokenreviews.authentication.k8s.io is forbidden: User "x" cannot create resource' });
  await assert.rejects(client().createTokenReview('t', ['a']), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.code, 403);
    assert.equal(err.reason, 'Forbidden');
    assert.match(err.message, /^create TokenReview: tokenreviews\.authentication\.k8s\.io is forbidden/);
    return true;
  });

  const down = path.join(dir, 'down.kubeconfig');
  api.writeKubeconfig(down, { server: `https://127.0.0.1:${await closedPort()}` });
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: down }).createTokenReview('t', ['a']), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.code, 0);
    assert.equal(err.timedOut, false);
    assert.match(err.message, /cannot reach the Kubernetes API: .*ECONNREFUSED/);
    return true;
  });

  api.delay({ method: 'GET', path: /\/leases\/slow$/ }, 5_000);
  try {
    await assert.rejects(client().getLease('kube-system', 'slow', { timeoutMs: 200 }), (err: unknown) => {
      assert.ok(err instanceof KubeApiError);
      assert.equal(err.timedOut, true);
      assert.match(err.message, /no response from the Kubernetes API within 200 ms/);
      return true;
    });
  } finally {
    api.clearFaults();
  }

  const noAuth = path.join(dir, 'noauth.kubeconfig');
  api.writeKubeconfig(noAuth, { token: 'not-accepted' });
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: noAuth }).listLeases('kube-system', ''), (err: unknown) => err instanceof KubeApiError && err.code === 401 && err.reason === 'Unauthorized');
});

test('leases: create, get, update with MicroTimes the apiserver accepts, conflicts, list by selector, delete with precondition', async () => {
  const kc = client();
  const ns = 'leases-crud';
  const t0 = Date.parse('2030-01-02T03:04:05.678Z');
  const created = await kc.createLease(ns, { name: 'a', labels: { app: 'x', tier: 'y' }, holderIdentity: 'srv-a', leaseDurationSeconds: 30, renewTimeMs: t0 });
  assert.equal(created.namespace, ns);
  assert.equal(created.renewTime?.getTime(), t0);
  assert.equal((api.lease(ns, 'a')?.['spec'] as Record<string, unknown>)['renewTime'], '2030-01-02T03:04:05.678000Z');
  await assert.rejects(kc.createLease(ns, { name: 'a', labels: {}, holderIdentity: 'srv-a', leaseDurationSeconds: 30, renewTimeMs: t0 }), (err: unknown) => isConflict(err) && (err as KubeApiError).reason === 'AlreadyExists');

  const got = await kc.getLease(ns, 'a');
  assert.equal(got.holderIdentity, 'srv-a');
  assert.equal(got.leaseDurationSeconds, 30);
  assert.deepEqual(got.labels, { app: 'x', tier: 'y' });
  const renewed = await kc.updateLease(got, { renewTimeMs: t0 + 15_000 });
  assert.notEqual(renewed.resourceVersion, got.resourceVersion);
  assert.equal(renewed.renewTime?.getTime(), t0 + 15_000);
  assert.deepEqual(renewed.labels, { app: 'x', tier: 'y' });
  await assert.rejects(kc.updateLease(got, { renewTimeMs: t0 + 30_000 }), (err: unknown) => isConflict(err) && /the object has been modified/.test((err as Error).message));

  api.putLease(ns, { name: 'b', labels: { app: 'x' }, leaseDurationSeconds: 30, acquireTime: new Date(t0) });
  api.putLease(ns, { name: 'c', labels: { app: 'z' } });
  api.putLease('elsewhere', { name: 'd', labels: { app: 'x' } });
  const list = await kc.listLeases(ns, 'app=x');
  assert.deepEqual(list.items.map((l) => l.name).sort(), ['a', 'b']);
  assert.ok(Number(list.resourceVersion) > 0);
  assert.equal(list.items.find((l) => l.name === 'b')?.acquireTime?.getTime(), t0);
  assert.equal(api.requests.at(-1)?.query['labelSelector'], 'app=x');
  assert.deepEqual((await kc.listLeases(ns, '')).items.length, 3);
  assert.deepEqual((await kc.listLeases(ns, 'app in (x,z),tier!=y')).items.map((l) => l.name).sort(), ['b', 'c']);

  await assert.rejects(kc.deleteLease(ns, 'a', { resourceVersion: got.resourceVersion }), (err: unknown) => isConflict(err) && /Precondition failed/.test((err as Error).message));
  assert.deepEqual((api.requests.at(-1)?.body as Record<string, unknown>)['preconditions'], { resourceVersion: got.resourceVersion });
  await kc.deleteLease(ns, 'a', { resourceVersion: renewed.resourceVersion });
  assert.equal(api.lease(ns, 'a'), undefined);
  await assert.rejects(kc.deleteLease(ns, 'a'), (err: unknown) => isNotFound(err) && (err as KubeApiError).reason === 'NotFound');
  await kc.deleteLease(ns, 'b');
});

test('lease validity: renewTime, else acquireTime, plus the duration, strictly after now', () => {
  const at = new Date(1_000_000);
  assert.equal(isLeaseValid({ renewTime: at, leaseDurationSeconds: 30 }, 1_000_000 + 29_999), true);
  assert.equal(isLeaseValid({ renewTime: at, leaseDurationSeconds: 30 }, 1_000_000 + 30_000), false);
  assert.equal(isLeaseValid({ acquireTime: at, leaseDurationSeconds: 30 }, 1_000_000 + 10_000), true);
  assert.equal(isLeaseValid({ renewTime: new Date(0), acquireTime: at, leaseDurationSeconds: 30 }, 1_000_000), false);
  assert.equal(isLeaseValid({ leaseDurationSeconds: 30 }, 0), false);
  assert.equal(formatLabels({ b: '2', a: '1' }), 'a=1,b=2');
  assert.equal(formatMicroTime(new Date(0)), '1970-01-01T00:00:00.000000Z');
});

test('watch: initial state, changes, selector transitions, resume from a resourceVersion, 410 when too old', async () => {
  const kc = client();
  const ns = 'watch-ns';
  api.putLease(ns, { name: 'w1', labels: { app: 'k' } });
  const list = await kc.listLeases(ns, 'app=k');
  const events: LeaseWatchEvent[] = [];
  const abort = new AbortController();
  const watching = kc.watchLeases(ns, { labelSelector: 'app=k', resourceVersion: list.resourceVersion, signal: abort.signal }, (e) => events.push(e));
  const watchReq = await api.waitForRequest({ watch: true, path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases` });
  assert.equal(watchReq.query['resourceVersion'], list.resourceVersion);
  assert.equal(watchReq.query['labelSelector'], 'app=k');
  assert.equal(watchReq.query['allowWatchBookmarks'], 'true');
  while (api.openWatches === 0) await new Promise((r) => setTimeout(r, 10));
  api.putLease(ns, { name: 'w2', labels: { app: 'k' } });
  api.putLease(ns, { name: 'w1', labels: { app: 'other' } });
  api.putLease(ns, { name: 'w3', labels: { app: 'other' } });
  api.removeLease(ns, 'w2');
  const deadline = Date.now() + 5_000;
  while (events.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  abort.abort();
  await assert.rejects(watching, /aborted/);
  assert.deepEqual(
    events.map((e) => (e.type === 'BOOKMARK' ? e.type : `${e.type} ${e.lease.name}`)),
    ['ADDED w2', 'DELETED w1', 'DELETED w2'],
  );

  api.compact();
  await assert.rejects(
    kc.watchLeases(ns, { resourceVersion: list.resourceVersion }, () => {}),
    (err: unknown) => err instanceof KubeApiError && err.code === 410 && err.reason === 'Expired',
  );
  // The apiserver ending the watch after timeoutSeconds is a clean end.
  await kc.watchLeases(ns, { timeoutSeconds: 1 }, () => {});
});

test('rate limiter: client-go defaults, a full bucket at start, reservations in order, aborted waits give the token back', async () => {
  assert.deepEqual(kubeRateLimits(0, 0), { qps: 5, burst: 10 });
  assert.deepEqual(kubeRateLimits(50, 100), { qps: 50, burst: 100 });
  assert.equal(kubeRateLimits(-1, 0).qps, Number.POSITIVE_INFINITY);
  assert.equal(createKubeRateLimiter(-1, 0), unlimited);
  let now = 0;
  const bucket = new TokenBucket(2, 3, () => now);
  await bucket.take();
  await bucket.take();
  await bucket.take();
  assert.equal(bucket.pendingDelayMs, 500);
  const abort = new AbortController();
  const waiting = bucket.take(abort.signal);
  assert.equal(bucket.pendingDelayMs, 1000);
  abort.abort(new Error('gave up'));
  await assert.rejects(waiting, /gave up/);
  assert.equal(bucket.pendingDelayMs, 500);
  now += 500;
  assert.equal(bucket.pendingDelayMs, 0);
  await bucket.take();
  now += 10_000;
  await bucket.take();
  await bucket.take();
  await bucket.take();
  assert.ok(bucket.pendingDelayMs > 0, 'refill stops at burst');
});

test('bad answers: not JSON, not an object, wrong field types, oversized bodies and watch lines; each a precise error, and the client goes on working', async () => {
  const kc = client();
  const ns = 'bad-answers';
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;
  const expectError = (pattern: RegExp) => (err: unknown) => {
    assert.ok(err instanceof KubeApiError, String(err));
    assert.match(err.message, pattern);
    return true;
  };
  api.answerNext({ method: 'GET', path: `${leasePath}/x` }, { code: 200, chunks: ['<html>not json'] });
  await assert.rejects(kc.getLease(ns, 'x'), expectError(/^get lease bad-answers\/x: the Kubernetes API answered with something that is not JSON$/));
  api.answerNext({ method: 'GET', path: leasePath }, { code: 200, chunks: ['[1,2]'] });
  await assert.rejects(kc.listLeases(ns, ''), expectError(/answered with JSON that is not an object/));
  api.answerNext({ method: 'GET', path: `${leasePath}/x` }, { code: 500, chunks: ['oops'] });
  await assert.rejects(kc.getLease(ns, 'x'), (err: unknown) => err instanceof KubeApiError && err.code === 500 && err.reason === 'InternalError' && /responded with HTTP 500/.test(err.message));

  api.answerNext({ method: 'GET', path: `${leasePath}/x` }, { code: 200, chunks: [JSON.stringify({ metadata: { name: 5, labels: { a: 1, b: 'x' } }, spec: { renewTime: 'garbage', leaseDurationSeconds: '30', holderIdentity: ['h'] } })] });
  const odd = await kc.getLease(ns, 'x');
  assert.equal(odd.name, '');
  assert.deepEqual(odd.labels, { b: 'x' });
  assert.equal(odd.renewTime, undefined);
  assert.equal(odd.leaseDurationSeconds, undefined);
  assert.equal(odd.holderIdentity, undefined);

  const mib = Buffer.alloc(1024 * 1024, 0x20);
  api.answerNext({ method: 'GET', path: leasePath }, { code: 200, chunks: Array.from({ length: 33 }, () => mib) });
  await assert.rejects(kc.listLeases(ns, ''), expectError(/the answer is larger than 33554432 bytes$/));

  // A watch: a line that is not JSON is skipped, an event split across writes is joined, a line over 4 MiB ends the watch.
  const event = JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'w', namespace: ns, resourceVersion: '7' } } });
  api.answerNext({ method: 'GET', path: leasePath, watch: true }, { code: 200, chunks: ['garbage\n', event.slice(0, 20), `${event.slice(20)}\n`, Buffer.alloc(5 * 1024 * 1024, 0x61)], keepOpen: true });
  const seen: LeaseWatchEvent[] = [];
  await assert.rejects(kc.watchLeases(ns, {}, (e) => seen.push(e)), expectError(/^watch leases in bad-answers: a watch event is longer than 4194304 bytes$/));
  assert.deepEqual(seen.map((e) => (e.type === 'BOOKMARK' ? e.type : `${e.type} ${e.lease.name} ${e.lease.resourceVersion}`)), ['ADDED w 7']);
  api.answerNext({ method: 'GET', path: leasePath, watch: true }, { code: 200, chunks: [`${event}\n`] });
  await kc.watchLeases(ns, {}, () => {});

  await assert.rejects(kc.getLease(ns, 'absent'), (err: unknown) => isNotFound(err));
});

test('a kept-alive connection dropped under a request is retried once on a new connection; a new connection that drops is an error', async () => {
  const kc = client();
  const ns = 'stale-connections';
  const filter = { method: 'GET', path: `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/x` } as const;
  await assert.rejects(kc.getLease(ns, 'x'), (err: unknown) => isNotFound(err)); // leaves a kept-alive connection
  api.failNext(filter, 'destroy');
  await assert.rejects(kc.getLease(ns, 'x'), (err: unknown) => isNotFound(err), 'answered on the retry');
  assert.deepEqual(api.requestsTo(filter).map((r) => r.injected ?? 'answered'), ['answered', 'destroy', 'answered']);

  const fresh = client();
  api.failNext(filter, 'destroy');
  await assert.rejects(fresh.getLease(ns, 'x'), (err: unknown) => err instanceof KubeApiError && err.code === 0 && /cannot reach the Kubernetes API: .*(socket hang up|ECONNRESET)/.test(err.message));
  assert.deepEqual(api.requestsTo(filter).map((r) => r.injected ?? 'answered').slice(3), ['destroy']);
  kc.close();
  fresh.close();
});
