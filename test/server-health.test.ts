/**
 * The server's health port (/healthz, /readyz, /ready, /metrics) and admin
 * port (/metrics) over real HTTP, before and after an agent connects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { openTunnel, startCluster } from './helpers/cluster.ts';
import { readExactly } from './helpers/payload.ts';
import { TcpTarget, echo } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

interface Reply {
  status: number;
  contentType: string;
  body: string;
}

function get(port: number, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body }));
      })
      .on('error', reject);
  });
}

/** The value of one sample line (`name{labels} value`), or undefined. */
function sample(text: string, nameWithLabels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${nameWithLabels} `));
  return line === undefined ? undefined : Number(line.slice(nameWithLabels.length + 1));
}

const PREFIX = 'konnectivity_network_proxy_server_';

test('/healthz is always ok; /readyz and /ready are 500 until an agent connects, then ok', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const { healthPort } = cluster.server.addresses;

  assert.deepEqual(await get(healthPort, '/healthz'), { status: 200, contentType: 'text/plain; charset=utf-8', body: 'ok' });
  for (const path of ['/readyz', '/ready']) {
    assert.deepEqual(await get(healthPort, path), { status: 500, contentType: 'text/plain; charset=utf-8', body: 'no connection to any proxy agent' });
  }

  const agent = await cluster.startAgent();
  await cluster.waitForAgents(1);
  for (const path of ['/readyz', '/ready']) assert.deepEqual(await get(healthPort, path), { status: 200, contentType: 'text/plain; charset=utf-8', body: 'ok' });
  assert.equal((await get(healthPort, '/healthz')).body, 'ok');

  // Losing the only agent makes the server unready again.
  await agent.stop();
  await waitFor(() => cluster.server.router.backendList.length === 0, 'the agent to be gone');
  assert.equal((await get(healthPort, '/readyz')).status, 500);
  assert.equal((await get(healthPort, '/nope')).status, 404);
});

test('readiness follows the first proxy strategy: destHost needs an agent with a host identifier', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0, strategies: ['destHost', 'default'] });
  const { healthPort } = cluster.server.addresses;
  await cluster.startAgent({ agentIdentifiers: '' });
  await cluster.waitForAgents(1);
  assert.equal((await get(healthPort, '/readyz')).status, 500);
  await cluster.startAgent({ agentIdentifiers: 'host=127.0.0.1' });
  await cluster.waitForAgents(2);
  assert.equal((await get(healthPort, '/readyz')).status, 200);
});

test('/metrics on the health and admin ports carries the upstream-named server metrics', async (t) => {
  const cluster = await startCluster(t, { mode: 'grpc' });
  const { healthPort, adminPort } = cluster.server.addresses;
  const dest = await TcpTarget.start(echo);
  t.after(() => dest.close());
  const socket = await openTunnel(t, cluster).dial('tcp', dest.address);
  socket.write('x');
  await readExactly(socket, 1);

  for (const port of [healthPort, adminPort]) {
    const reply = await get(port, '/metrics');
    assert.equal(reply.status, 200);
    assert.match(reply.contentType, /^text\/plain/);
    for (const name of [
      'dial_duration_seconds',
      'grpc_connections',
      'http_connections',
      'ready_backend_connections',
      'ready_backends',
      'pending_backend_dials',
      'established_connections',
      'dial_failure_count',
      'stream_packets_total',
    ]) {
      assert.ok(reply.body.includes(`# TYPE ${PREFIX}${name} `), `${name} missing on port ${port}`);
    }
    assert.equal(sample(reply.body, `${PREFIX}established_connections`), 1);
    assert.equal(sample(reply.body, `${PREFIX}ready_backends{proxy_strategy="default"}`), 1);
    assert.equal(sample(reply.body, `${PREFIX}grpc_connections{service_method="Connect"}`), 1);
    assert.equal(sample(reply.body, `${PREFIX}grpc_connections{service_method="Proxy"}`), 1);
  }
  socket.destroy();
  await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  assert.equal(sample((await get(healthPort, '/metrics')).body, `${PREFIX}established_connections`), 0);
});
