/**
 * Destination policy on a real agent: server and agent on loopback, the
 * policy given as command-line flags, tunnels opened by the client library
 * in both frontend modes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { parseAgentOptions } from '../src/agent/agent-options.ts';
import { agentConfigFromOptions } from '../src/cli/agent-main.ts';
import { KonnectivityDialError } from '../src/client/dial-error.ts';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { echoEndpoint } from '../src/dev/loopback-endpoints.ts';
import type { TunnelMode } from '../src/client/tunnel-options.ts';

/** The policy and limit fields of the agent config, from command-line flags as an operator writes them. */
function agentFlags(args: string[]) {
  const config = agentConfigFromOptions(parseAgentOptions(['--ca-cert=', ...args], {}));
  return { destinationPolicy: config.destinationPolicy!, maxEndpointConnections: config.maxEndpointConnections!, maxPendingEndpointDials: config.maxPendingEndpointDials! };
}

async function echoThrough(cluster: LocalCluster, mode: TunnelMode, address: string): Promise<string> {
  const tunnel = cluster.openTunnel(mode);
  try {
    const conn = await tunnel.dial('tcp', address);
    conn.write('ping');
    const [chunk] = (await once(conn, 'data')) as [Buffer];
    conn.destroy();
    return chunk.toString();
  } finally {
    await tunnel.close();
  }
}

async function dialError(cluster: LocalCluster, mode: TunnelMode, address: string): Promise<KonnectivityDialError> {
  const tunnel = cluster.openTunnel(mode);
  try {
    const err = await tunnel.dial('tcp', address).then(
      (c) => {
        c.destroy();
        return null;
      },
      (e: unknown) => e,
    );
    assert.ok(err instanceof KonnectivityDialError, `dial of ${address} should fail, got ${String(err)}`);
    return err;
  } finally {
    await tunnel.close();
  }
}

async function metricValue(cluster: LocalCluster, name: string, labels: string): Promise<number> {
  const text = await cluster.agents[0]!.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: --allowed-destinations lets the allowed loopback port through and refuses another`, async (t) => {
    const allowed = await echoEndpoint();
    const other = await echoEndpoint();
    t.after(() => Promise.all([allowed.close(), other.close()]));
    const cluster = await startLocalCluster({ mode, agent: agentFlags([`--allowed-destinations=127.0.0.1:${allowed.port}`]) });
    t.after(() => cluster.close());

    assert.equal(await echoThrough(cluster, mode, `127.0.0.1:${allowed.port}`), 'ping');
    const err = await dialError(cluster, mode, `127.0.0.1:${other.port}`);
    assert.match(err.message, new RegExp(`dial tcp 127\\.0\\.0\\.1:${other.port}: konnectivity-agent: destination denied by policy \\(--allowed-destinations\\)`));
    assert.equal(err.code, 'endpoint');
    if (mode === 'http-connect') assert.equal(err.httpStatus, 502);
    // The refused destination never saw a connection; the allowed one still works afterwards.
    assert.equal(other.accepted, 0);
    assert.equal(await echoThrough(cluster, mode, `127.0.0.1:${allowed.port}`), 'ping');
    assert.equal(await metricValue(cluster, 'konnectivity_network_proxy_agent_ts_policy_denials_total', 'reason="not_allowed"'), 1);
  });
}

test('--denied-destinations: a denied port and a name resolving to it are refused; others pass', async (t) => {
  const good = await echoEndpoint();
  const bad = await echoEndpoint();
  t.after(() => Promise.all([good.close(), bad.close()]));
  const cluster = await startLocalCluster({ mode: 'grpc', agent: agentFlags([`--denied-destinations=127.0.0.0/8:${bad.port},[::1]:${bad.port}`]) });
  t.after(() => cluster.close());

  assert.equal(await echoThrough(cluster, 'grpc', `127.0.0.1:${good.port}`), 'ping');
  for (const target of [`127.0.0.1:${bad.port}`, `localhost:${bad.port}`, `0.0.0.0:${bad.port}`, `[::ffff:127.0.0.1]:${bad.port}`]) {
    const err = await dialError(cluster, 'grpc', target);
    assert.match(err.message, /destination denied by policy \(--denied-destinations\)/, target);
  }
  assert.equal(bad.accepted, 0);
  assert.equal(await metricValue(cluster, 'konnectivity_network_proxy_agent_ts_policy_denials_total', 'reason="denied"'), 4);
});

test('flag validation: bad entries and an empty allow list are refused at startup', () => {
  assert.throws(() => parseAgentOptions(['--allowed-destinations=10.0.0.5/8'], {}), /failed to validate agent options with --allowed-destinations: CIDR "10.0.0.5\/8" has host bits set/);
  assert.throws(() => parseAgentOptions(['--allowed-destinations='], {}), /--allowed-destinations is empty: leave it out to allow every destination/);
  assert.throws(() => parseAgentOptions(['--denied-destinations=*.'], {}), /--denied-destinations: invalid destination/);
  assert.throws(() => parseAgentOptions(['--max-endpoint-connections=-1'], {}), /--max-endpoint-connections -1 must be 0 \(unlimited\) or more/);
  const o = parseAgentOptions(['--allowed-destinations=10.0.0.0/8:10250', '--allowed-destinations=*.svc:443', '--denied-destinations=10.0.0.1'], {});
  assert.deepEqual(o.allowedDestinations, ['10.0.0.0/8:10250', '*.svc:443']);
  assert.deepEqual(o.deniedDestinations, ['10.0.0.1']);
  const defaults = parseAgentOptions([], {});
  assert.equal(defaults.allowedDestinations, null);
  assert.deepEqual(defaults.deniedDestinations, []);
  assert.equal(defaults.maxEndpointConnections, 10_000);
  assert.equal(defaults.maxPendingEndpointDials, 1_000);
});
