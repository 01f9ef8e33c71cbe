/**
 * Admin-port status end to end: a real server with two agents and one open
 * tunnelled connection, read back by `konnectivity status` (spawned) from
 * the server's admin port and from an agent's admin port.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { AgentHttpServers } from '../src/agent/agent-http-server.ts';
import { agentStatusRoutes } from '../src/status/agent-status.ts';
import type { AgentStatus, ServerStatus } from '../src/status/status-types.ts';
import type { Tunnel, TunnelConnection } from '../src/client/tunnel-options.ts';
import type { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { binEnv } from './helpers/processes.ts';

const NODE = './node_modules/.bin/node';

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(NODE, ['bin/konnectivity', 'status', ...args], { timeout: 30_000, env: binEnv() }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

let cluster: LocalCluster;
let tunnel: Tunnel;
let conn: TunnelConnection;
let agentHttp: AgentHttpServers | undefined;

before(async () => {
  cluster = await startLocalCluster({ mode: 'grpc', agents: 2 });
  tunnel = cluster.openTunnel();
  conn = await tunnel.dial('tcp', `127.0.0.1:${cluster.demo.port}`);
  // One request/response so both byte counters move; the connection stays open.
  conn.write('GET /hello HTTP/1.1\r\nHost: demo\r\n\r\n');
  let got = '';
  while (!got.includes('hello from the demo target')) {
    const [chunk] = (await once(conn, 'data')) as [Buffer];
    got += chunk.toString();
  }
});

after(async () => {
  conn?.destroy();
  await tunnel?.close();
  await agentHttp?.close();
  await cluster?.close();
});

function serverAdminUrl(): string {
  return `http://127.0.0.1:${cluster.server.addresses.adminPort}`;
}

test('server admin /api/v1/status (JSON via --json) lists both agents and the open connection', async () => {
  const { code, stdout, stderr } = await runCli(['--admin-url', serverAdminUrl(), '--json']);
  assert.equal(code, 0, stderr);
  const s = JSON.parse(stdout) as ServerStatus;
  assert.equal(s.kind, 'server');
  assert.equal(s.serverID, cluster.server.config.serverId);
  assert.equal(s.mode, 'grpc');
  assert.equal(s.ready, true);
  assert.deepEqual(s.agents.map((a) => a.agentID).sort(), cluster.agents.map((a) => a.config.agentID).sort());
  for (const a of s.agents) {
    assert.equal(a.draining, false);
    assert.ok(a.flowControl, 'konnectivity-ts agents negotiate flow control');
    assert.ok(a.ageSeconds >= 0);
  }
  assert.equal(s.connections.total, 1);
  assert.equal(s.connections.truncated, false);
  const [c] = s.connections.items;
  assert.ok(c);
  assert.ok(cluster.agents.some((a) => a.config.agentID === c.agentID));
  assert.ok(c.bytesToAgent > 0, 'request bytes went to the agent');
  assert.ok(c.bytesFromAgent > 0, 'response bytes came from the agent');
  assert.equal(c.frontendAttached, true);
  assert.equal(s.agents.reduce((n, a) => n + a.connections, 0), 1);
  assert.equal(s.pendingDials, 0);
});

test('server admin split endpoints /api/v1/agents and /api/v1/connections', async () => {
  const agents = (await (await fetch(`${serverAdminUrl()}/api/v1/agents`)).json()) as { agents: unknown[] };
  assert.equal(agents.agents.length, 2);
  const conns = (await (await fetch(`${serverAdminUrl()}/api/v1/connections`)).json()) as { connections: { total: number } };
  assert.equal(conns.connections.total, 1);
  const post = await fetch(`${serverAdminUrl()}/api/v1/status`, { method: 'POST' });
  assert.equal(post.status, 405);
  await post.arrayBuffer();
});

test('konnectivity status prints server tables with both agents and the connection', async () => {
  const { code, stdout, stderr } = await runCli(['--admin-url', serverAdminUrl()]);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^Server /);
  assert.match(stdout, /AGENTS \(2\)/);
  for (const a of cluster.agents) assert.ok(stdout.includes(a.config.agentID), `agent ${a.config.agentID} listed`);
  assert.match(stdout, /CONNECTIONS \(1\)/);
  assert.match(stdout, /AGENT ID\s+CONNECT ID\s+FROM AGENT\s+TO AGENT/);
  assert.match(stdout, /attached/);
});

async function agentWithConnection(): Promise<KonnectivityAgent> {
  const s = (await (await fetch(`${serverAdminUrl()}/api/v1/status`)).json()) as ServerStatus;
  const id = s.connections.items[0]!.agentID;
  return cluster.agents.find((a) => a.config.agentID === id)!;
}

test('konnectivity status against an agent admin port shows its server and endpoint connection', async () => {
  const agent = await agentWithConnection();
  agentHttp = new AgentHttpServers({
    healthHost: '127.0.0.1',
    healthPort: 0,
    adminBindAddress: '127.0.0.1',
    adminPort: 0,
    registry: agent.metrics.registry,
    checks: [],
    adminRoutes: agentStatusRoutes(agent),
  });
  await agentHttp.start();
  const url = `http://127.0.0.1:${agentHttp.adminPort}`;

  const json = await runCli(['--admin-url', url, '--json']);
  assert.equal(json.code, 0, json.stderr);
  const s = JSON.parse(json.stdout) as AgentStatus;
  assert.equal(s.kind, 'agent');
  assert.equal(s.agentID, agent.config.agentID);
  assert.equal(s.ready, true);
  assert.equal(s.draining, false);
  assert.equal(s.targetServerCount, 1);
  assert.equal(s.servers.length, 1);
  assert.equal(s.servers[0]!.serverID, cluster.server.config.serverId);
  assert.equal(s.servers[0]!.address, `127.0.0.1:${cluster.server.addresses.agentPort}`);
  assert.equal(s.servers[0]!.endpointConnections, 1);
  assert.equal(s.endpointConnections.total, 1);
  assert.equal(s.endpointConnections.items[0]!.address, `127.0.0.1:${cluster.demo.port}`);

  const table = await runCli(['--admin-url', url]);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^Agent /);
  assert.ok(table.stdout.includes(agent.config.agentID));
  assert.match(table.stdout, /SERVERS \(1\)/);
  assert.ok(table.stdout.includes(cluster.server.config.serverId));
  assert.match(table.stdout, /CONNECTIONS \(1\)/);
  assert.ok(table.stdout.includes(`127.0.0.1:${cluster.demo.port}`));

  // /metrics on the agent admin port still redirects to the health port.
  const metrics = await fetch(`${url}/metrics`, { redirect: 'manual' });
  assert.equal(metrics.status, 301);
  await metrics.arrayBuffer();
});

test('konnectivity status exits non-zero with a clear message when unreachable or not a status port', async () => {
  // A port that was free a moment ago.
  const probe = net.createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const down = await runCli(['--admin-url', `http://127.0.0.1:${port}`]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /cannot reach the admin endpoint http:\/\/127\.0\.0\.1:\d+/);
  assert.equal(down.stdout, '');

  // The health port answers, but has no status endpoint.
  const wrong = await runCli(['--admin-url', `http://127.0.0.1:${cluster.server.addresses.healthPort}`]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /404/);

  const bad = await runCli(['--admin-url', 'ftp://x']);
  assert.equal(bad.code, 2);
});
