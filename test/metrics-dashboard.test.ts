/**
 * Operations issue item 6: deploy/grafana/konnectivity-ts.json is an
 * importable Grafana dashboard, and every metric its panels query is one the
 * running server or agent actually exposes (scraped over HTTP after real
 * traffic by the same fixture as metrics-names.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { scrapeAll, type Families } from './helpers/metrics-scrape.ts';

const DASHBOARD = path.join(import.meta.dirname, '..', 'deploy', 'grafana', 'konnectivity-ts.json');

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos?: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Metric names in a PromQL expression (konnectivity_*, process_* and nodejs_* families). */
function metricNamesIn(expr: string): string[] {
  return [...expr.matchAll(/\b((?:konnectivity|process|nodejs)_[a-z_]+)\b/g)].map((m) => m[1]!);
}

/** Maps a series name used in a query (`x_bucket`, `x_total`) to the family the scrape exposes. */
function resolveFamily(families: Families, name: string): string | undefined {
  if (families.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === 'histogram' || f.type === 'summary')) return base;
    }
  }
  return undefined;
}

test('the Grafana dashboard parses and only queries metrics we expose', async (t) => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    schemaVersion: number;
    uid: string;
    title: string;
    __inputs: { name: string; type: string; pluginId: string }[];
    panels: Panel[];
    templating: { list: { name: string; query: unknown }[] };
  };

  await t.test('importable: schemaVersion >= 36, DS_PROMETHEUS input, unique ids, every panel on that datasource', () => {
    assert.ok(dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion}`);
    assert.ok(dashboard.uid && dashboard.title);
    assert.ok(dashboard.__inputs.some((i) => i.name === 'DS_PROMETHEUS' && i.type === 'datasource' && i.pluginId === 'prometheus'));
    const panels = allPanels(dashboard.panels);
    const ids = panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    for (const p of panels) {
      assert.ok(p.gridPos, `${p.title}: gridPos`);
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${DS_PROMETHEUS}', `${p.title}: datasource`);
      assert.ok((p.targets ?? []).length > 0, `${p.title}: no targets`);
      for (const tg of p.targets ?? []) {
        assert.ok(tg.expr && tg.expr.trim() !== '', `${p.title}: empty expr`);
        assert.equal(tg.datasource?.uid, '${DS_PROMETHEUS}', `${p.title} ${tg.refId}: datasource`);
      }
    }
  });

  await t.test('covers the panels operations asked for', () => {
    const exprs = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((tg) => tg.expr ?? '')).join('\n');
    for (const needle of [
      'konnectivity_network_proxy_server_ready_backends',
      'konnectivity_network_proxy_server_established_connections',
      'konnectivity_network_proxy_server_pending_backend_dials',
      'histogram_quantile(0.5, sum by (le) (rate(konnectivity_network_proxy_server_dial_duration_seconds_bucket',
      'histogram_quantile(0.99, sum by (le) (rate(konnectivity_network_proxy_server_dial_duration_seconds_bucket',
      'sum by (reason) (rate(konnectivity_network_proxy_server_dial_failure_count',
      'sum by (segment, packet_type) (rate(konnectivity_network_proxy_server_stream_packets_total',
      'konnectivity_network_proxy_server_stream_errors_total',
      'konnectivity_network_proxy_agent_open_server_connections',
      'konnectivity_network_proxy_agent_known_server_count',
      'konnectivity_network_proxy_agent_endpoint_dial_failure_total',
      'konnectivity_network_proxy_agent_ts_connection_stall_closes_total',
      'konnectivity_network_proxy_agent_ts_policy_denials_total',
      'konnectivity_network_proxy_server_ts_limit_rejections_total',
      'konnectivity_network_proxy_agent_ts_limit_rejections_total',
      'konnectivity_network_proxy_server_ts_tls_reloads_total',
      'konnectivity_network_proxy_server_ts_tls_certificate_expiry_timestamp_seconds',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
    ]) {
      assert.ok(exprs.includes(needle), `no panel queries ${needle}`);
    }
  });

  await t.test('every metric name in every expression and variable query exists in our scraped registries', async () => {
    const all = await scrapeAll(t);
    const server = new Map([...all.serverHealth]);
    const agent = all.agent;
    const queries: { where: string; expr: string }[] = [];
    for (const p of allPanels(dashboard.panels)) for (const tg of p.targets ?? []) queries.push({ where: `${p.title} ${tg.refId}`, expr: tg.expr ?? '' });
    for (const v of dashboard.templating.list) queries.push({ where: `variable ${v.name}`, expr: JSON.stringify(v.query) });
    let checked = 0;
    for (const { where, expr } of queries) {
      for (const name of metricNamesIn(expr)) {
        const families = name.startsWith('konnectivity_network_proxy_agent_') ? agent : server;
        const family = resolveFamily(families, name);
        assert.ok(family, `${where}: ${name} is not exposed by our ${families === agent ? 'agent' : 'server'}`);
        if (name.endsWith('_bucket')) assert.equal(families.get(family)!.type, 'histogram', `${where}: ${name}`);
        // Process metrics must exist on the agent too (the CPU/RSS panels cover both jobs).
        if (/^(process|nodejs)_/.test(name)) assert.ok(resolveFamily(agent, name), `${where}: ${name} missing on the agent`);
        checked++;
      }
    }
    assert.ok(checked > 30, `only ${checked} metric references found`);
  });
});
