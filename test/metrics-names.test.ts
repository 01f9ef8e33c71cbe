/**
 * Operations issue item 1: dashboards and alerts written for upstream's
 * images must keep working. After real traffic (a dial, DATA both ways, a
 * close, and a failed dial to a closed port) the server's /metrics (health
 * and admin ports), an agent's /metrics and a client tunnel's registry are
 * parsed as Prometheus text and every upstream metric of spec §6.4, §7.6 and
 * §11.2 is checked: name, TYPE, label names and histogram buckets.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bucketBounds, parsePrometheusText, sampleLabelNames, scrapeAll, type Families } from './helpers/metrics-scrape.ts';

interface Expected {
  type: 'counter' | 'gauge' | 'histogram';
  labels: readonly string[];
  buckets?: readonly number[];
  /** Traffic in scrapeAll() must have produced at least one sample (with these label values, if given). */
  sampled?: Record<string, string> | true;
  /** Histogram: traffic must have produced at least one observation (`_count` > 0). */
  observed?: boolean;
}

const serverLatency = [0.000001, 0.00001, 0.0001, 0.005, 0.025, 0.1, 0.5, 2.5, 12.5];
const agentBuckets = [0.005, 0.025, 0.1, 0.5, 2.5, 10, 30];

/** Spec §6.4. */
const SERVER: Record<string, Expected> = {
  dial_duration_seconds: { type: 'histogram', labels: [], buckets: serverLatency, sampled: true, observed: true },
  frontend_write_duration_seconds: { type: 'histogram', labels: [], buckets: serverLatency, sampled: true, observed: true },
  connection_duration_seconds: { type: 'histogram', labels: [], buckets: [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 14400, 43200, 86400], sampled: true, observed: true },
  grpc_connections: { type: 'gauge', labels: ['service_method'], sampled: { service_method: 'Connect' } },
  http_connections: { type: 'gauge', labels: [], sampled: true },
  ready_backend_connections: { type: 'gauge', labels: [], sampled: true },
  ready_backends: { type: 'gauge', labels: ['proxy_strategy'], sampled: { proxy_strategy: 'default' } },
  pending_backend_dials: { type: 'gauge', labels: [], sampled: true },
  established_connections: { type: 'gauge', labels: [], sampled: true },
  full_receive_channels: { type: 'gauge', labels: ['service_method'] },
  dial_failure_count: { type: 'counter', labels: ['reason'], sampled: { reason: 'error_response' } },
  stream_packets_total: { type: 'counter', labels: ['segment', 'packet_type'], sampled: { segment: 'from_client', packet_type: 'DIAL_REQ' } },
  stream_errors_total: { type: 'counter', labels: ['segment', 'code', 'packet_type'] },
  culled_leases_count: { type: 'counter', labels: [], sampled: true },
  lease_delete_latency_seconds: { type: 'histogram', labels: ['http_status_code'] },
  lease_delete_total: { type: 'counter', labels: ['http_status_code', 'reason'] },
  lease_list_latency_seconds: { type: 'histogram', labels: ['http_status_code'] },
  lease_list_total: { type: 'counter', labels: ['http_status_code', 'reason'] },
};

/** Spec §7.6. */
const AGENT: Record<string, Expected> = {
  dial_duration_seconds: { type: 'histogram', labels: [], buckets: agentBuckets, sampled: true, observed: true },
  server_connection_failure_count: { type: 'counter', labels: ['direction'] },
  endpoint_dial_failure_total: { type: 'counter', labels: ['reason'], sampled: { reason: 'unknown' } },
  open_server_connections: { type: 'gauge', labels: [], sampled: true },
  known_server_count: { type: 'gauge', labels: [], sampled: true },
  open_endpoint_connections: { type: 'gauge', labels: [], sampled: true },
  stream_packets_total: { type: 'counter', labels: ['segment', 'packet_type'], sampled: { segment: 'to_agent', packet_type: 'DIAL_REQ' } },
  stream_errors_total: { type: 'counter', labels: ['segment', 'code', 'packet_type'] },
  lease_lists_total: { type: 'counter', labels: ['http_response_code', 'reason'] },
  lease_watches_total: { type: 'counter', labels: ['http_response_code', 'reason'] },
  // "agent buckets" in the spec.
  lease_list_latency_seconds: { type: 'histogram', labels: ['http_response_code'], buckets: agentBuckets },
};

/** Spec §11.2. */
const CLIENT: Record<string, Expected> = {
  dial_failure_total: { type: 'counter', labels: ['reason'], sampled: { reason: 'endpoint' } },
  client_connections: { type: 'gauge', labels: ['status'], sampled: { status: 'ok' } },
  stream_packets_total: { type: 'counter', labels: ['segment', 'packet_type'], sampled: { segment: 'to_client', packet_type: 'DIAL_RSP' } },
  stream_errors_total: { type: 'counter', labels: ['segment', 'code', 'packet_type'] },
};

/** Node process metrics (upstream has Go's process collector; prom-client's default metrics stand in). */
const PROCESS: Record<string, Expected> = {
  process_cpu_seconds_total: { type: 'counter', labels: [], sampled: true },
  process_resident_memory_bytes: { type: 'gauge', labels: [], sampled: true },
  process_start_time_seconds: { type: 'gauge', labels: [], sampled: true },
  process_open_fds: { type: 'gauge', labels: [], sampled: true },
  nodejs_heap_size_used_bytes: { type: 'gauge', labels: [], sampled: true },
};

/** The `_count` series of a histogram proves a histogram family has a (possibly zero) unlabelled series. */
function checkFamilies(families: Families, prefix: string, expected: Record<string, Expected>, where: string): void {
  for (const [short, want] of Object.entries(expected)) {
    const name = prefix + short;
    const f = families.get(name);
    assert.ok(f, `${where}: ${name} is missing`);
    assert.equal(f.type, want.type, `${where}: ${name} has TYPE ${f.type}, want ${want.type}`);
    assert.ok(f.help !== null && f.help.length > 0, `${where}: ${name} has no HELP`);
    const labels = sampleLabelNames(f);
    if (f.samples.length > 0) {
      assert.deepEqual([...labels].sort(), [...want.labels].sort(), `${where}: ${name} label names`);
    }
    if (want.sampled !== undefined) {
      assert.ok(f.samples.length > 0, `${where}: ${name} has no samples after traffic`);
      if (want.sampled !== true) {
        const match = want.sampled;
        assert.ok(
          f.samples.some((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v)),
          `${where}: ${name} has no sample with ${JSON.stringify(match)}; got ${JSON.stringify(f.samples.map((s) => s.labels))}`,
        );
      }
    }
    if (want.type === 'histogram') {
      for (const s of f.samples) {
        assert.ok([name + '_bucket', name + '_sum', name + '_count'].includes(s.name), `${where}: unexpected histogram series ${s.name}`);
      }
      if (want.buckets && f.samples.length > 0) {
        assert.deepEqual(bucketBounds(f), [...want.buckets], `${where}: ${name} bucket boundaries`);
        assert.ok(f.samples.some((s) => s.name === name + '_bucket' && s.labels['le'] === '+Inf'), `${where}: ${name} has no +Inf bucket`);
      }
    }
    if (want.observed) {
      const count = f.samples.find((s) => s.name === name + '_count');
      assert.ok(count && count.value > 0, `${where}: ${name} was never observed during the traffic`);
    }
    if (want.type === 'counter') {
      for (const s of f.samples) assert.ok(s.value >= 0, `${where}: counter ${s.name} is negative`);
    }
  }
}

/** Histograms with labels have no series before the first observation; check their buckets from a registry where one is observed. */
async function checkLabelledHistogramBuckets(): Promise<void> {
  const { createServerMetrics } = await import('../src/observability/server-metrics.ts');
  const { createAgentMetrics } = await import('../src/observability/agent-metrics.ts');
  const server = createServerMetrics({ processMetrics: false });
  server.leaseListLatency.observe({ http_status_code: '200' }, 0.01);
  server.leaseDeleteLatency.observe({ http_status_code: '200' }, 0.01);
  const agent = createAgentMetrics({ processMetrics: false });
  agent.leaseListLatency.observe({ http_response_code: '200' }, 0.01);
  const s = parsePrometheusText(await server.registry.metrics());
  const a = parsePrometheusText(await agent.registry.metrics());
  for (const short of ['lease_list_latency_seconds', 'lease_delete_latency_seconds']) {
    const f = s.get('konnectivity_network_proxy_server_' + short)!;
    assert.deepEqual([...sampleLabelNames(f)], ['http_status_code']);
    assert.ok(bucketBounds(f).length > 0);
  }
  const f = a.get('konnectivity_network_proxy_agent_lease_list_latency_seconds')!;
  assert.deepEqual([...sampleLabelNames(f)], ['http_response_code']);
  assert.deepEqual(bucketBounds(f), agentBuckets);
}



test('metrics names, types, labels and buckets match upstream after real traffic', async (t) => {
  const all = await scrapeAll(t);

  await t.test('server /metrics on the health port: every §6.4 metric', () => {
    assert.match(all.serverContentType, /^text\/plain/);
    checkFamilies(all.serverHealth, 'konnectivity_network_proxy_server_', SERVER, 'server health port');
    checkFamilies(all.serverHealth, '', PROCESS, 'server health port');
  });

  await t.test('server /metrics on the admin port: the same families', () => {
    checkFamilies(all.serverAdmin, 'konnectivity_network_proxy_server_', SERVER, 'server admin port');
    checkFamilies(all.serverAdmin, '', PROCESS, 'server admin port');
    assert.deepEqual([...all.serverAdmin.keys()].sort(), [...all.serverHealth.keys()].sort());
  });

  await t.test('server stream packets cover all four segments', () => {
    const f = all.serverHealth.get('konnectivity_network_proxy_server_stream_packets_total')!;
    const segments = new Set(f.samples.map((s) => s.labels['segment']));
    assert.deepEqual([...segments].sort(), ['from_agent', 'from_client', 'to_agent', 'to_client']);
    for (const type of ['DIAL_REQ', 'DIAL_RSP', 'DATA', 'CLOSE_REQ', 'CLOSE_RSP']) {
      assert.ok(f.samples.some((s) => s.labels['packet_type'] === type), `no ${type} sample`);
    }
  });

  await t.test('agent /metrics on the health port: every §7.6 metric', () => {
    assert.match(all.agentContentType, /^text\/plain/);
    checkFamilies(all.agent, 'konnectivity_network_proxy_agent_', AGENT, 'agent');
    checkFamilies(all.agent, '', PROCESS, 'agent');
    const f = all.agent.get('konnectivity_network_proxy_agent_stream_packets_total')!;
    assert.deepEqual([...new Set(f.samples.map((s) => s.labels['segment']))].sort(), ['from_agent', 'to_agent']);
  });

  await t.test('client registry: every §11.2 metric', () => {
    checkFamilies(all.client, 'konnectivity_network_proxy_client_', CLIENT, 'client');
    const f = all.client.get('konnectivity_network_proxy_client_client_connections')!;
    assert.deepEqual(f.samples.map((s) => s.labels['status']).sort(), ['closing', 'created', 'dialing', 'ok']);
    const packets = all.client.get('konnectivity_network_proxy_client_stream_packets_total')!;
    assert.deepEqual([...new Set(packets.samples.map((s) => s.labels['segment']))].sort(), ['from_client', 'to_client']);
  });

  await t.test('labelled histograms have the right label and buckets once observed', checkLabelledHistogramBuckets);

  await t.test('konnectivity-ts extras use the _ts_ infix and never an upstream name', () => {
    const upstream = new Set([
      ...Object.keys(SERVER).map((n) => 'konnectivity_network_proxy_server_' + n),
      ...Object.keys(AGENT).map((n) => 'konnectivity_network_proxy_agent_' + n),
    ]);
    for (const fams of [all.serverHealth, all.agent]) {
      for (const name of fams.keys()) {
        if (!name.startsWith('konnectivity_')) continue;
        assert.ok(upstream.has(name) || /^konnectivity_network_proxy_(server|agent)_ts_/.test(name), `${name} is neither upstream nor _ts_`);
      }
    }
  });
});
