/**
 * --enable-profiling: /debug/pprof/profile (V8 CPU profile) and
 * /debug/pprof/heap (heap snapshot) on the server and agent admin ports,
 * and 404 when the flag is off.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Registry } from 'prom-client';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { AgentHttpServers } from '../src/agent/agent-http-server.ts';
import { profilingRoutes } from '../src/status/profiling.ts';

let withProfiling: LocalCluster;
let without: LocalCluster;
let agentAdmin: AgentHttpServers;
let agentAdminOff: AgentHttpServers;

function agentServers(routes: Record<string, import('node:http').RequestListener> | undefined): AgentHttpServers {
  return new AgentHttpServers({
    healthHost: '127.0.0.1',
    healthPort: 0,
    adminBindAddress: '127.0.0.1',
    adminPort: 0,
    registry: new Registry(),
    checks: [],
    ...(routes ? { adminRoutes: routes } : {}),
  });
}

before(async () => {
  withProfiling = await startLocalCluster({ mode: 'grpc', agents: 1, server: { enableProfiling: true } });
  without = await startLocalCluster({ mode: 'grpc', agents: 1 });
  agentAdmin = agentServers(profilingRoutes());
  agentAdminOff = agentServers(undefined);
  await Promise.all([agentAdmin.start(), agentAdminOff.start()]);
});

after(async () => {
  await Promise.all([agentAdmin?.close(), agentAdminOff?.close()]);
  await Promise.all([withProfiling?.close(), without?.close()]);
});

async function assertCpuProfile(base: string): Promise<void> {
  const res = await fetch(`${base}/debug/pprof/profile?seconds=0.3`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-disposition') ?? '', /attachment; filename="konnectivity-.*\.cpuprofile"/);
  const profile = (await res.json()) as { nodes: Array<{ callFrame: { functionName: string } }>; startTime: number; endTime: number; samples?: number[] };
  assert.ok(Array.isArray(profile.nodes) && profile.nodes.length > 0, 'profile has nodes');
  assert.ok(profile.endTime > profile.startTime);
  assert.equal(profile.nodes[0]!.callFrame.functionName, '(root)');
}

async function assertHeapSnapshot(base: string): Promise<void> {
  const res = await fetch(`${base}/debug/pprof/heap`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-disposition') ?? '', /\.heapsnapshot"/);
  const snapshot = (await res.json()) as { snapshot: { meta: { node_fields: string[] }; node_count: number }; nodes: number[]; strings: string[] };
  assert.ok(snapshot.snapshot.meta.node_fields.includes('name'));
  assert.ok(snapshot.snapshot.node_count > 0);
  assert.ok(snapshot.strings.length > 0);
}

test('server --enable-profiling: CPU profile and heap snapshot on the admin port', async () => {
  const base = `http://127.0.0.1:${withProfiling.server.addresses.adminPort}`;
  await assertCpuProfile(base);
  await assertHeapSnapshot(base);
  const index = await fetch(`${base}/debug/pprof/`);
  assert.equal(index.status, 200);
  assert.match(await index.text(), /\/debug\/pprof\/profile/);
});

test('profile: bad seconds is 400, a second concurrent profile is 409', async () => {
  const base = `http://127.0.0.1:${withProfiling.server.addresses.adminPort}`;
  for (const s of ['abc', '0', '-1', '601']) {
    const res = await fetch(`${base}/debug/pprof/profile?seconds=${s}`);
    assert.equal(res.status, 400, `seconds=${s}`);
    await res.arrayBuffer();
  }
  const first = fetch(`${base}/debug/pprof/profile?seconds=1`);
  // Wait until the first one is registered (its request reached the server).
  let second: Response | undefined;
  for (let i = 0; i < 100; i++) {
    second = await fetch(`${base}/debug/pprof/profile?seconds=0.01`);
    if (second.status === 409) break;
    await second.arrayBuffer();
  }
  assert.equal(second?.status, 409);
  await second?.arrayBuffer();
  assert.equal((await first).status, 200);
  await (await first).arrayBuffer();
});

test('server without --enable-profiling: /debug/pprof is 404, status still served', async () => {
  const base = `http://127.0.0.1:${without.server.addresses.adminPort}`;
  for (const path of ['/debug/pprof/profile?seconds=1', '/debug/pprof/heap', '/debug/pprof/']) {
    const res = await fetch(`${base}${path}`);
    assert.equal(res.status, 404, path);
    await res.arrayBuffer();
  }
  const status = await fetch(`${base}/api/v1/status`);
  assert.equal(status.status, 200);
  await status.arrayBuffer();
});

test('agent admin port with profiling routes: CPU profile and heap snapshot; without: 404', async () => {
  const base = `http://127.0.0.1:${agentAdmin.adminPort}`;
  await assertCpuProfile(base);
  await assertHeapSnapshot(base);
  const off = `http://127.0.0.1:${agentAdminOff.adminPort}`;
  for (const path of ['/debug/pprof/profile?seconds=1', '/debug/pprof/heap']) {
    const res = await fetch(`${off}${path}`);
    assert.equal(res.status, 404, path);
    await res.arrayBuffer();
  }
});

test('konnectivity-agent main() --enable-profiling mounts status and /debug/pprof on its admin port', async () => {
  const { main } = await import('../src/cli/agent-main.ts');
  const { PassThrough } = await import('node:stream');
  const { silentLogger } = await import('../src/observability/logger.ts');
  const { unusedPort } = await import('./agent-fixtures.ts');
  let shutdown: ((signal: string) => void) | undefined;
  let onReady!: (p: { health: number; admin: number }) => void;
  const ready = { promise: new Promise<{ health: number; admin: number }>((r) => (onReady = r)), resolve: (p: { health: number; admin: number }) => onReady(p) };
  const exit = main(
    [
      '--ca-cert', withProfiling.pki.ca.certPath,
      '--proxy-server-host', '127.0.0.1',
      '--proxy-server-port', String(withProfiling.server.addresses.agentPort),
      '--health-server-port', String(await unusedPort()),
      '--admin-server-port', String(await unusedPort()),
      '--agent-id', 'profiled-agent',
      '--enable-profiling',
    ],
    { stdout: new PassThrough(), stderr: new PassThrough(), env: {}, onShutdownSignal: (h) => (shutdown = h), onReady: (p) => ready.resolve(p), logger: silentLogger },
  );
  const ports = await ready.promise;
  const base = `http://127.0.0.1:${ports.admin}`;
  try {
    let status: { kind: string; agentID: string; servers: Array<{ serverID: string }> };
    do {
      status = (await (await fetch(`${base}/api/v1/status`)).json()) as typeof status;
    } while (status.servers.length === 0);
    assert.equal(status.kind, 'agent');
    assert.equal(status.agentID, 'profiled-agent');
    assert.equal(status.servers[0]!.serverID, withProfiling.server.config.serverId);
    await assertCpuProfile(base);
    const heap = await fetch(`${base}/debug/pprof/heap`);
    assert.equal(heap.status, 200);
    await heap.arrayBuffer();
  } finally {
    shutdown?.('SIGTERM');
    shutdown?.('SIGINT');
    assert.equal(await exit, 0);
  }
});
