import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { AgentHttpServers, pingCheck, serverConnectedCheck } from '../src/agent/agent-http-server.ts';
import { createAgentTsMetrics } from '../src/agent/agent-ts-metrics.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';

function get(port: number, path: string, host = `127.0.0.1:${port}`): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('health port: /healthz, /readyz and /ready with upstream bodies and codes, /metrics', async () => {
  const metrics = createAgentMetrics({ processMetrics: false });
  createAgentTsMetrics(metrics.registry);
  let connected = false;
  const servers = new AgentHttpServers({
    healthHost: '127.0.0.1',
    healthPort: 0,
    adminBindAddress: '127.0.0.1',
    adminPort: 0,
    registry: metrics.registry,
    checks: [pingCheck, serverConnectedCheck(() => connected)],
  });
  await servers.start();
  const port = servers.healthPort;
  try {
    assert.notEqual(port, 0);
    assert.deepEqual(await get(port, '/healthz').then((r) => [r.status, r.body]), [200, 'ok']);

    for (const path of ['/readyz', '/ready', '/readyz?verbose']) {
      const r = await get(port, path);
      assert.equal(r.status, 503, path);
      assert.equal(r.body, '[+]ping ok\n[-]server-connected failed: no servers connected\n', path);
    }
    connected = true;
    const ready = await get(port, '/readyz');
    assert.deepEqual([ready.status, ready.body], [200, 'ok']);
    assert.equal(ready.headers['content-type'], 'text/plain; charset=utf-8');
    assert.deepEqual(await get(port, '/ready').then((r) => [r.status, r.body]), [200, 'ok']);
    const verbose = await get(port, '/readyz?verbose');
    assert.deepEqual([verbose.status, verbose.body], [200, '[+]ping ok\n[+]server-connected ok\ncheck passed\n']);

    const m = await get(port, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(m.body, /# TYPE konnectivity_network_proxy_agent_open_server_connections gauge/);
    assert.match(m.body, /# TYPE konnectivity_network_proxy_agent_dial_duration_seconds histogram/);
    assert.match(m.body, /# TYPE konnectivity_network_proxy_agent_ts_connection_stall_closes_total counter/);

    const missing = await get(port, '/nope');
    assert.deepEqual([missing.status, missing.body], [404, '404 page not found\n']);
  } finally {
    await servers.close();
  }
});

test('admin port: /metrics is a 301 to the same host and path on the health port', async () => {
  const metrics = createAgentMetrics({ processMetrics: false });
  const servers = new AgentHttpServers({
    healthHost: '',
    healthPort: 0,
    adminBindAddress: '127.0.0.1',
    adminPort: 0,
    registry: metrics.registry,
    checks: [pingCheck],
  });
  await servers.start();
  try {
    const admin = servers.adminPort;
    const r = await get(admin, '/metrics?name=x', `127.0.0.1:${admin}`);
    assert.equal(r.status, 301);
    // Go's http.Redirect keeps the scheme-less URL the handler built.
    assert.equal(r.headers.location, `//127.0.0.1:${servers.healthPort}/metrics?name=x`);
    const named = await get(admin, '/metrics', `agent.local:${admin}`);
    assert.equal(named.headers.location, `//agent.local:${servers.healthPort}/metrics`);
    const v6 = await get(admin, '/metrics', `[::1]:${admin}`);
    assert.equal(v6.headers.location, `//[::1]:${servers.healthPort}/metrics`);
    const noPort = await get(admin, '/metrics', 'agent.local');
    assert.equal(noPort.headers.location, `//agent.local:${servers.healthPort}/metrics`);
    assert.equal((await get(admin, '/healthz')).status, 404);
    // Following the redirect lands on real metrics.
    const followed = await get(servers.healthPort, '/metrics');
    assert.equal(followed.status, 200);
  } finally {
    await servers.close();
  }
});
