/**
 * Issue #5 "Done when": lease counting converges when replicas are added and
 * removed. Servers behind haproxy run the lease controller (as
 * `--enable-lease-controller`) against the fake HTTPS apiserver; agents count
 * Leases (as `--count-server-leases`). Every server announces `servercount: 1`
 * on purpose, so the only way an agent can aim for more is the Lease count.
 *
 *   start   s0, s1 up (s2 configured in haproxy but not running) → agents aim for 2, hold 2
 *   add     s2 starts with its controller → agents aim for 3 and hold all 3
 *   crash   s1 dies without deleting its Lease → it expires, a surviving
 *           server's GC deletes it → agents aim for 2 and hold s0, s2
 *   stop    s2 stops cleanly and deletes its own Lease → agents aim for 1
 *
 * Leases last 2 s here (30 s upstream) and are renewed/collected every
 * 500 ms so that expiry happens within the test; the code paths are the same.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findHaproxy, HAPROXY_INSTALL_HINT, startHaCluster, type HaCluster } from '../src/dev/ha-cluster.ts';
import { createDevPki } from '../src/dev/pki.ts';
import { ServerLeaseCounter } from '../src/agent/lease-counter.ts';
import { ServerLeaseController, serverLeaseName, type LeaseApi } from '../src/server/lease-controller.ts';
import { KubeClient } from '../src/kube/kube-client.ts';
import { LabelSelector } from '../src/flags/label-selector.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';
import { createServerMetrics, type ServerMetrics } from '../src/observability/server-metrics.ts';
import type { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';
import { sleep } from './helpers/wait.ts';

const NAMESPACE = 'kube-system';
const LABELS = { 'k8s-app': 'konnectivity-server' };
const WAIT_MS = 30_000;

/** A LeaseApi that can "lose the process": after crash() every call fails, so stop() cannot delete the Lease. */
function crashableClient(client: KubeClient): { api: LeaseApi; crash(): void } {
  let crashed = false;
  const guard = <T>(call: () => Promise<T>): Promise<T> => (crashed ? Promise.reject(new Error('process killed')) : call());
  return {
    crash: () => {
      crashed = true;
    },
    api: {
      getLease: (ns, name, o) => guard(() => client.getLease(ns, name, o)),
      createLease: (ns, lease, o) => guard(() => client.createLease(ns, lease, o)),
      updateLease: (base, changes, o) => guard(() => client.updateLease(base, changes, o)),
      listLeases: (ns, sel, o) => guard(() => client.listLeases(ns, sel, o)),
      deleteLease: (ns, name, pre, o) => guard(() => client.deleteLease(ns, name, pre, o)),
    },
  };
}

test('lease counting converges as servers are added and removed (crash: expiry + GC; clean stop: own delete)', { timeout: 180_000 }, async (t) => {
  assert.ok(findHaproxy(), HAPROXY_INSTALL_HINT);
  const dir = mkdtempSync(path.join(tmpdir(), 'ha-lease-count-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pki = await createDevPki(path.join(dir, 'pki'));
  const api = await FakeApiServer.start({ pki, dir });
  t.after(() => api.close());
  const kube = (): KubeClient => KubeClient.fromFlags({ kubeconfigPath: api.kubeconfigPath, requestTimeoutMs: 5_000 });

  const cluster: HaCluster = await startHaCluster({ servers: 3, agents: 0, loadBalancer: true, balance: 'random', pki, server: { serverCount: 1 } });
  t.after(() => cluster.close());
  await cluster.stopServer(2); // configured in haproxy, not running yet

  const controllers = new Map<number, { controller: ServerLeaseController; crash(): void; metrics: ServerMetrics }>();
  const startController = (index: number): void => {
    const { api: leaseApi, crash } = crashableClient(kube());
    const metrics = createServerMetrics({ processMetrics: false });
    const controller = new ServerLeaseController({
      client: leaseApi,
      serverId: cluster.servers[index]!.serverId,
      namespace: NAMESPACE,
      labels: LABELS,
      metrics,
      leaseDurationSeconds: 2,
      renewIntervalMs: 500,
      gcIntervalMs: 500,
    });
    controller.start();
    controllers.set(index, { controller, crash, metrics });
  };
  t.after(async () => {
    await Promise.allSettled([...controllers.values()].map((c) => c.controller.stop(1_000)));
  });
  startController(0);
  startController(1);

  const counters: ServerLeaseCounter[] = [];
  t.after(async () => {
    await Promise.allSettled(counters.map((c) => c.stop()));
  });
  const agents: KonnectivityAgent[] = [];
  for (let i = 0; i < 2; i++) {
    const counter = new ServerLeaseCounter({ client: kube(), namespace: NAMESPACE, selector: LabelSelector.parse('k8s-app=konnectivity-server'), metrics: createAgentMetrics({ processMetrics: false }) });
    counter.start();
    counters.push(counter);
    agents.push(await cluster.startAgent({}, { leaseCounter: counter }));
  }

  const idsOf = (indices: number[]): string[] => indices.map((i) => cluster.servers[i]!.serverId).sort();
  const state = (): string => `${cluster.describe()}\nagent targets: ${agents.map((a) => a.targetServerCount).join(', ')}; leases: ${api.leaseNames(NAMESPACE).join(', ')}`;
  const converge = async (what: string, count: number, servers: number[]): Promise<void> => {
    const want = idsOf(servers);
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const ok = agents.every((a) => a.targetServerCount === count && JSON.stringify([...a.connectedServerIDs].sort()) === JSON.stringify(want));
      if (ok) return;
      assert.ok(Date.now() < deadline, `${what}: agents did not converge on ${count} server(s) [${servers.map((i) => `s${i}`).join(' ')}] within ${WAIT_MS} ms\n${state()}`);
      await sleep(50);
    }
  };

  await converge('start', 2, [0, 1]);

  // Add a replica.
  await cluster.startServer(2);
  startController(2);
  await converge('s2 added', 3, [0, 1, 2]);

  // Crash s1: the process and its lease controller die; nothing deletes the Lease.
  const s1Lease = serverLeaseName(cluster.servers[1]!.serverId);
  controllers.get(1)!.crash();
  await controllers.get(1)!.controller.stop(1_000);
  controllers.delete(1);
  // Checked before the server stops: its last renewal was at most 0.5 s ago and the Lease
  // lasts 2 s, after which another server's GC may remove it (a slow stop must not race that).
  assert.ok(api.lease(NAMESPACE, s1Lease), 'the crashed server left its Lease behind');
  await cluster.stopServer(1);
  await converge('s1 crashed', 2, [0, 2]);
  // The Lease stopped counting when it expired; a surviving server's GC then removed it.
  const deadline = Date.now() + WAIT_MS;
  while (api.lease(NAMESPACE, s1Lease)) {
    assert.ok(Date.now() < deadline, `the expired Lease ${s1Lease} was not garbage-collected\n${state()}`);
    await sleep(50);
  }
  // (polled: the GC counts the delete once the apiserver's answer is back,
  // which can be after the agents saw the watch event.)
  const culledNow = async (): Promise<number> => {
    let n = 0;
    for (const c of controllers.values()) n += (await c.metrics.culledLeases.get()).values[0]?.value ?? 0;
    return n;
  };
  let culled = await culledNow();
  while (culled < 1) {
    assert.ok(Date.now() < deadline, `culled_leases_count on the surviving servers stayed 0; deletes: ${JSON.stringify(api.requestsTo({ method: 'DELETE' }).map((r) => r.path))}`);
    await sleep(50);
    culled = await culledNow();
  }

  // Clean stop of s2: it deletes its own Lease.
  await controllers.get(2)!.controller.stop(1_000);
  controllers.delete(2);
  await cluster.stopServer(2);
  await converge('s2 stopped', 1, [0]);
  t.diagnostic(`converged: 2 → 3 (added) → 2 (crash, Lease expired and GCed, culled ${culled}) → 1 (clean stop)`);
});
