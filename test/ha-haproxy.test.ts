/**
 * HA (spec §7.3): several proxy-servers with distinct serverIDs and
 * serverCount N; every agent keeps one stream per server. With haproxy in
 * front (TCP, roundrobin) the agent reaches all of them through one address
 * by reconnecting; without a load balancer, through --proxy-server-addresses.
 * haproxy is required (CI installs it): without it the LB tests fail with
 * an install hint rather than skip.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { echoThroughTunnel, findHaproxy, HAPROXY_INSTALL_HINT, startHaCluster, type HaCluster } from '../src/dev/ha-cluster.ts';
import { parseAgentOptions } from '../src/agent/agent-options.ts';
import { agentConfigFromOptions } from '../src/cli/agent-main.ts';
import { createDevPki, type DevPki } from '../src/dev/pki.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const MESH_TIMEOUT_MS = 30_000;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const pkiDir = mkdtempSync(path.join(tmpdir(), 'konnectivity-ha-pki-'));
let pkiPromise: Promise<DevPki> | null = null;
const sharedPki = (): Promise<DevPki> => (pkiPromise ??= createDevPki(pkiDir));
test.after(() => rmSync(pkiDir, { recursive: true, force: true }));

function requireHaproxy(): void {
  assert.ok(findHaproxy(), HAPROXY_INSTALL_HINT);
}

function assertFullMesh(cluster: HaCluster): void {
  const ids = cluster.servers.map((s) => s.serverId).sort();
  for (const agent of cluster.agents) assert.deepEqual([...agent.connectedServerIDs].sort(), ids, cluster.describe());
  const agentIds = cluster.agents.map((a) => a.config.agentID).sort();
  for (const s of cluster.servers) assert.deepEqual([...s.agentIds].sort(), agentIds, cluster.describe());
}

async function assertDialThroughEveryServer(cluster: HaCluster): Promise<void> {
  for (const s of cluster.servers) {
    const payload = randomBytes(256 * 1024);
    const back = await echoThroughTunnel(cluster.openTunnel(s.index), cluster.echo.address, payload);
    assert.equal(sha(back), sha(payload), `echo through server ${s.index}`);
  }
}

test('haproxy is installed (CI installs it; see .ci/run)', () => {
  requireHaproxy();
});

test('3 servers behind haproxy, 2 agents: every agent holds 3 streams, every server has both agents, dials work through each frontend', async (t) => {
  requireHaproxy();
  const cluster = await startHaCluster({ servers: 3, agents: 2, loadBalancer: true, pki: await sharedPki() });
  t.after(() => cluster.close());
  assert.ok(cluster.loadBalancerPort);
  for (const a of cluster.agents) assert.equal(a.config.proxyServerPort, cluster.loadBalancerPort);
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);
  assertFullMesh(cluster);
  for (const a of cluster.agents) assert.equal(a.targetServerCount, 3);
  await assertDialThroughEveryServer(cluster);
});

test('behind haproxy: a restarted server gets both agents back and agents recover to 3 streams', async (t) => {
  requireHaproxy();
  const cluster = await startHaCluster({ servers: 3, agents: 2, loadBalancer: true, pki: await sharedPki() });
  t.after(() => cluster.close());
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);

  await cluster.stopServer(1);
  // The agents notice the lost stream (bounded wait, no timing assertion).
  const deadline = Date.now() + MESH_TIMEOUT_MS;
  while (cluster.agents.some((a) => a.connectedServerIDs.includes(cluster.servers[1]!.serverId))) {
    assert.ok(Date.now() < deadline, `agents still report the stopped server:\n${cluster.describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // The other two keep working meanwhile.
  for (const i of [0, 2]) {
    const payload = randomBytes(64 * 1024);
    assert.equal(sha(await echoThroughTunnel(cluster.openTunnel(i), cluster.echo.address, payload)), sha(payload));
  }

  await cluster.startServer(1);
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);
  assertFullMesh(cluster);
  await assertDialThroughEveryServer(cluster);
});

test('behind haproxy: an agent that is killed leaves every server; a new one joins all 3', async (t) => {
  requireHaproxy();
  const cluster = await startHaCluster({ servers: 3, agents: 2, loadBalancer: true, pki: await sharedPki() });
  t.after(() => cluster.close());
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);
  const gone = cluster.agents[0]!.config.agentID;
  await cluster.killAgent(0);
  const deadline = Date.now() + MESH_TIMEOUT_MS;
  while (cluster.servers.some((s) => s.agentIds.includes(gone))) {
    assert.ok(Date.now() < deadline, `servers still list the killed agent:\n${cluster.describe()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await cluster.startAgent();
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);
  assertFullMesh(cluster);
  await assertDialThroughEveryServer(cluster);
});

test('without a load balancer: agents configured by --proxy-server-addresses reach all 3 servers and recover from a restart', async (t) => {
  const cluster = await startHaCluster({ servers: 3, agents: 0, loadBalancer: false, pki: await sharedPki() });
  t.after(() => cluster.close());
  assert.equal(cluster.loadBalancerPort, null);
  const [first, ...rest] = cluster.servers;
  for (let i = 0; i < 2; i++) {
    // The CLI path: flags -> options -> config.
    const config = agentConfigFromOptions(
      parseAgentOptions([
        '--proxy-server-host=127.0.0.1',
        `--proxy-server-port=${first!.agentPort}`,
        `--proxy-server-addresses=${rest.map((s) => `127.0.0.1:${s.agentPort}`).join(',')}`,
        `--ca-cert=${cluster.pki.ca.certPath}`,
      ]),
    );
    assert.deepEqual(config.additionalProxyServers, rest.map((s) => ({ host: '127.0.0.1', port: s.agentPort })));
    await cluster.startAgent({
      proxyServerHost: config.proxyServerHost,
      proxyServerPort: config.proxyServerPort,
      additionalProxyServers: config.additionalProxyServers!,
    });
  }
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);
  assertFullMesh(cluster);
  await assertDialThroughEveryServer(cluster);

  await cluster.restartServer(2);
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);
  assertFullMesh(cluster);
  await assertDialThroughEveryServer(cluster);
});

test('without a load balancer: the config field alone (additionalProxyServers) reaches all 3', async (t) => {
  const cluster = await startHaCluster({ servers: 3, agents: 2, loadBalancer: false, pki: await sharedPki() });
  t.after(() => cluster.close());
  for (const a of cluster.agents) assert.equal(a.config.additionalProxyServers?.length, 2);
  await cluster.waitForFullMesh(MESH_TIMEOUT_MS);
  assertFullMesh(cluster);
});

test('--proxy-server-addresses: host:port syntax is validated', () => {
  const parse = (v: string) => agentConfigFromOptions(parseAgentOptions([`--proxy-server-addresses=${v}`, '--ca-cert=/dev/null'])).additionalProxyServers;
  assert.deepEqual(parse('a.example:8091,[::1]:8092,10.0.0.1:443'), [
    { host: 'a.example', port: 8091 },
    { host: '::1', port: 8092 },
    { host: '10.0.0.1', port: 443 },
  ]);
  assert.deepEqual(agentConfigFromOptions(parseAgentOptions(['--ca-cert=/dev/null'])).additionalProxyServers, []);
  for (const bad of ['a.example', 'a.example:', 'a.example:0', 'a.example:65536', '::1:8091', 'a b:1', ':8091', 'a:80x']) {
    assert.throws(() => parse(bad), /--proxy-server-addresses entry/, bad);
  }
});
