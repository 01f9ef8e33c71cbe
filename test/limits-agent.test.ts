/**
 * Agent-wide endpoint limits: the wrapper alone, then a real agent behind a
 * real server refusing the dial over the limit while the open tunnel keeps
 * working.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Registry } from 'prom-client';
import { parseAgentOptions } from '../src/agent/agent-options.ts';
import { agentConfigFromOptions } from '../src/cli/agent-main.ts';
import { createTcpEndpointDialer, type EndpointDialer } from '../src/agent/endpoint-dialer.ts';
import { EndpointLimits, createAgentLimitMetrics } from '../src/agent/endpoint-limits.ts';
import { EndpointDialError, canceledDialError } from '../src/agent/go-dial-error.ts';
import type { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { KonnectivityDialError } from '../src/client/dial-error.ts';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { mapDialErrorToHTTPStatus } from '../src/server/http-connect/dial-error-status.ts';
import { deferred, until } from './agent-fixtures.ts';
import { echoEndpoint } from './helpers/targets.ts';

async function rejections(registry: Registry, limit: string): Promise<number> {
  const text = await registry.metrics();
  const m = new RegExp(`konnectivity_network_proxy_agent_ts_limit_rejections_total\\{limit="${limit}"\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

describe('EndpointLimits (the dialer wrapper)', () => {
  test('--max-pending-endpoint-dials: dials in progress are bounded; one finishing frees a slot', async () => {
    const registry = new Registry();
    const limits = new EndpointLimits({ maxPendingDials: 2, maxConnections: 0, metrics: createAgentLimitMetrics(registry) });
    const gates = [deferred<void>(), deferred<void>(), deferred<void>()];
    let started = 0;
    const inner: EndpointDialer = async (address) => {
      await gates[started++]!.promise;
      throw new EndpointDialError(`dial tcp ${address}: connect: connection refused`, 'unknown');
    };
    const dial = limits.wrap(inner);
    const signal = new AbortController().signal;
    const a = dial('10.0.0.1:1', signal).catch((e: unknown) => e);
    const b = dial('10.0.0.1:2', signal).catch((e: unknown) => e);
    assert.equal(limits.pendingDials, 2);
    const refused = await dial('10.0.0.1:3', signal).catch((e: unknown) => e);
    assert.ok(refused instanceof EndpointDialError);
    assert.equal(refused.message, 'dial tcp 10.0.0.1:3: konnectivity-agent: too many open files: limit of 2 dials in progress reached (--max-pending-endpoint-dials)');
    assert.equal(mapDialErrorToHTTPStatus(refused.message), 503);
    assert.equal(started, 2);
    assert.equal(await rejections(registry, 'pending_endpoint_dials'), 1);
    gates[0]!.resolve();
    assert.match(String(await a), /connection refused/);
    assert.equal(limits.pendingDials, 1);
    const c = dial('10.0.0.1:4', signal).catch((e: unknown) => e);
    assert.equal(started, 3);
    gates[1]!.resolve();
    gates[2]!.resolve();
    await Promise.all([b, c]);
    assert.equal(limits.pendingDials, 0);
  });

  test('--max-endpoint-connections: open sockets count until they close (not until the relay forgets them)', async (t) => {
    const echo = await echoEndpoint();
    t.after(() => echo.close());
    const registry = new Registry();
    const limits = new EndpointLimits({ maxConnections: 2, maxPendingDials: 0, metrics: createAgentLimitMetrics(registry) });
    const dial = limits.wrap(createTcpEndpointDialer());
    const signal = new AbortController().signal;
    const s1 = await dial(`127.0.0.1:${echo.port}`, signal);
    const s2 = await dial(`127.0.0.1:${echo.port}`, signal);
    assert.equal(limits.connections, 2);
    await assert.rejects(dial(`127.0.0.1:${echo.port}`, signal), {
      message: `dial tcp 127.0.0.1:${echo.port}: konnectivity-agent: too many open files: limit of 2 endpoint connections reached (--max-endpoint-connections)`,
    });
    assert.equal(await rejections(registry, 'endpoint_connections'), 1);
    s1.end(); // half-closed and lingering: still a descriptor
    assert.equal(limits.connections, 2);
    s1.destroy();
    await until(() => limits.connections === 1);
    const s3 = await dial(`127.0.0.1:${echo.port}`, signal);
    s2.destroy();
    s3.destroy();
    await until(() => limits.connections === 0);
  });

  test('0 disables both limits (no wrapper at all)', () => {
    const inner: EndpointDialer = () => Promise.reject(canceledDialError('x:1'));
    assert.equal(new EndpointLimits({ maxConnections: 0, maxPendingDials: 0 }).wrap(inner), inner);
  });
});

// ---------------------------------------------------------------------------

/** The limit fields of the agent config, from flags. */
function limitFlags(args: string[]) {
  const c = agentConfigFromOptions(parseAgentOptions(['--ca-cert=', ...args], {}));
  return { maxEndpointConnections: c.maxEndpointConnections!, maxPendingEndpointDials: c.maxPendingEndpointDials! };
}

async function agentFor(t: { after(fn: () => unknown): void }, cluster: LocalCluster, flags: string[], dialEndpoint?: EndpointDialer): Promise<KonnectivityAgent> {
  const agent = await cluster.startAgent(limitFlags(flags), dialEndpoint ? { dialEndpoint } : {});
  t.after(() => agent.stop());
  await until(() => cluster.server.router.backendList.length === 1);
  return agent;
}

async function failedDial(cluster: LocalCluster, address: string, mode?: 'grpc' | 'http-connect'): Promise<KonnectivityDialError> {
  const tunnel = cluster.openTunnel(mode);
  try {
    const err = await tunnel.dial('tcp', address).then(
      (c) => (c.destroy(), null),
      (e: unknown) => e,
    );
    assert.ok(err instanceof KonnectivityDialError, String(err));
    return err;
  } finally {
    await tunnel.close();
  }
}

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: a real agent at --max-endpoint-connections refuses the next dial; the open tunnel keeps flowing`, async (t) => {
    const echo = await echoEndpoint();
    t.after(() => echo.close());
    const cluster = await startLocalCluster({ mode, agents: 0 });
    t.after(() => cluster.close());
    const agent = await agentFor(t, cluster, ['--max-endpoint-connections=1']);

    const held = cluster.openTunnel();
    t.after(() => held.close());
    const conn = await held.dial('tcp', `127.0.0.1:${echo.port}`);
    const err = await failedDial(cluster, `127.0.0.1:${echo.port}`);
    assert.match(err.message, new RegExp(`dial tcp 127\\.0\\.0\\.1:${echo.port}: konnectivity-agent: too many open files: limit of 1 endpoint connections reached \\(--max-endpoint-connections\\)`));
    if (mode === 'http-connect') assert.equal(err.httpStatus, 503);
    assert.equal(await rejections(agent.metrics.registry, 'endpoint_connections'), 1);

    conn.write('still flowing');
    const [echoed] = (await once(conn, 'data')) as [Buffer];
    assert.equal(echoed.toString(), 'still flowing');
    conn.destroy();
    await until(() => agent.endpointLimits!.connections === 0);
    const again = await cluster.openTunnel().dial('tcp', `127.0.0.1:${echo.port}`);
    again.destroy();
  });
}

test('a real agent at --max-pending-endpoint-dials refuses the next dial until the stuck one is abandoned', async (t) => {
  const echo = await echoEndpoint();
  t.after(() => echo.close());
  const cluster = await startLocalCluster({ mode: 'grpc', agents: 0 });
  t.after(() => cluster.close());
  const tcp = createTcpEndpointDialer();
  // A destination whose dial never completes (a blackhole), until abandoned.
  const dialEndpoint: EndpointDialer = (address, signal) =>
    address.startsWith('blackhole.invalid:')
      ? new Promise((_, reject) => signal.addEventListener('abort', () => reject(canceledDialError(address)), { once: true }))
      : tcp(address, signal);
  const agent = await agentFor(t, cluster, ['--max-pending-endpoint-dials=1'], dialEndpoint);

  const stuckTunnel = cluster.openTunnel();
  t.after(() => stuckTunnel.close());
  const abandon = new AbortController();
  const stuck = stuckTunnel.dial('tcp', 'blackhole.invalid:80', { signal: abandon.signal }).catch((e: unknown) => e);
  await until(() => agent.endpointLimits!.pendingDials === 1);

  const err = await failedDial(cluster, `127.0.0.1:${echo.port}`);
  assert.match(err.message, /konnectivity-agent: too many open files: limit of 1 dials in progress reached \(--max-pending-endpoint-dials\)/);
  assert.equal(await rejections(agent.metrics.registry, 'pending_endpoint_dials'), 1);

  // DIAL_CLS (the client gave up) reaches our agent, which abandons the dial and frees the slot.
  abandon.abort();
  assert.ok((await stuck) instanceof KonnectivityDialError);
  await until(() => agent.endpointLimits!.pendingDials === 0);
  const ok = await cluster.openTunnel().dial('tcp', `127.0.0.1:${echo.port}`);
  ok.destroy();
});
