/**
 * A small Prometheus text-format (0.0.4) parser and a "scrape everything"
 * fixture shared by test/metrics-names.test.ts and
 * test/metrics-dashboard.test.ts: a local cluster (server + one agent) with
 * real traffic, scraped over HTTP on the server's health and admin ports and
 * on the agent's health port, plus a client tunnel's registry.
 */
import http from 'node:http';
import type { TestContext } from 'node:test';
import { AgentHttpServers, pingCheck } from '../../src/agent/agent-http-server.ts';
import { createTunnel } from '../../src/client/create-tunnel.ts';
import { createClientMetrics } from '../../src/observability/client-metrics.ts';
import { startCluster } from './cluster.ts';
import { TcpTarget, type TargetConnection } from './targets.ts';
import { freePort } from './targets.ts';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: string;
  help: string | null;
  samples: Sample[];
}

export type Families = Map<string, MetricFamily>;

function unescapeLabel(s: string): string {
  return s.replace(/\\(n|\\|")/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;
  let m: RegExpExecArray | null;
  let pos = 0;
  while (pos < text.length && (re.lastIndex = pos, (m = re.exec(text)) !== null)) {
    labels[m[1]!] = unescapeLabel(m[2]!);
    pos = re.lastIndex;
  }
  if (text.slice(pos).trim() !== '') throw new Error(`bad label set: {${text}}`);
  return labels;
}

function parseValue(s: string): number {
  // Prometheus parses values with Go's ParseFloat, which is case-insensitive for Inf/NaN.
  const lower = s.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Infinity;
  if (lower === '-inf') return -Infinity;
  if (lower === 'nan') return NaN;
  const v = Number(s);
  if (Number.isNaN(v)) throw new Error(`bad sample value: ${s}`);
  return v;
}

/** Which family a sample line belongs to: exact name, or a histogram/summary child series. */
function familyOf(families: Families, sampleName: string): MetricFamily | undefined {
  const exact = families.get(sampleName);
  if (exact) return exact;
  for (const suffix of ['_bucket', '_sum', '_count', '_total', '_created']) {
    if (sampleName.endsWith(suffix)) {
      const f = families.get(sampleName.slice(0, -suffix.length));
      if (f) return f;
    }
  }
  return undefined;
}

/** Parses the Prometheus text exposition format; throws on malformed lines or orphan samples. */
export function parsePrometheusText(text: string): Families {
  const families: Families = new Map();
  const family = (name: string): MetricFamily => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, type: 'untyped', help: null, samples: [] }));
    return f;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\s+(.*))?$/.exec(line);
      if (!m) continue; // plain comment
      const f = family(m[2]!);
      if (m[1] === 'HELP') f.help = m[3] ?? '';
      else f.type = (m[3] ?? '').trim();
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$/.exec(line);
    if (!m) throw new Error(`malformed sample line: ${line}`);
    const sample: Sample = { name: m[1]!, labels: m[2] === undefined ? {} : parseLabels(m[2]), value: parseValue(m[3]!) };
    const f = familyOf(families, sample.name);
    if (!f) throw new Error(`sample without a TYPE/HELP family: ${line}`);
    f.samples.push(sample);
  }
  return families;
}

/** Label names on the samples of a family, minus the histogram `le` label. */
export function sampleLabelNames(f: MetricFamily): Set<string> {
  const names = new Set<string>();
  for (const s of f.samples) for (const k of Object.keys(s.labels)) if (k !== 'le') names.add(k);
  return names;
}

/** Bucket upper bounds (without +Inf) of a histogram family, for the series with the given non-`le` labels (first series if omitted). */
export function bucketBounds(f: MetricFamily): number[] {
  const buckets = f.samples.filter((s) => s.name === f.name + '_bucket');
  if (buckets.length === 0) return [];
  const key = (s: Sample): string => JSON.stringify(Object.entries(s.labels).filter(([k]) => k !== 'le').sort());
  const first = key(buckets[0]!);
  return buckets.filter((s) => key(s) === first).map((s) => parseValue(s.labels['le']!)).filter((v) => v !== Infinity);
}

export function httpGet(port: number, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

export async function scrape(port: number, path = '/metrics'): Promise<{ contentType: string; families: Families; text: string }> {
  const res = await httpGet(port, path);
  if (res.status !== 200) throw new Error(`GET ${path} on ${port}: ${res.status}`);
  return { contentType: String(res.headers['content-type'] ?? ''), families: parsePrometheusText(res.body), text: res.body };
}

export interface ScrapedAll {
  serverHealth: Families;
  serverAdmin: Families;
  serverContentType: string;
  agent: Families;
  agentContentType: string;
  client: Families;
}

async function echoOnce(conn: TargetConnection): Promise<void> {
  conn.socket.on('data', (d: Buffer) => conn.socket.write(d));
  conn.socket.on('end', () => conn.socket.end());
}

/**
 * Starts a cluster (gRPC frontend over a unix socket, one agent), serves the
 * agent's registry on real HTTP ports, opens a client tunnel with its own
 * metrics, then makes traffic: a dial + data round trip + close, and a
 * failed dial to a closed port. Everything is torn down after the test.
 */
export async function scrapeAll(t: TestContext): Promise<ScrapedAll> {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 1 });
  const agent = cluster.agents[0]!;
  const agentHttp = new AgentHttpServers({
    healthHost: '127.0.0.1',
    healthPort: 0,
    adminBindAddress: '127.0.0.1',
    adminPort: 0,
    registry: agent.metrics.registry,
    checks: [pingCheck],
  });
  await agentHttp.start();
  t.after(() => agentHttp.close());

  const target = await TcpTarget.start((conn) => void echoOnce(conn));
  t.after(() => target.close());
  const closedPort = await freePort();

  const clientMetrics = createClientMetrics();
  const fe = cluster.server.config.frontend;
  if (fe.transport !== 'unix') throw new Error('expected a unix frontend');
  const tunnel = createTunnel({ mode: 'grpc', transport: { unix: fe.path }, metrics: clientMetrics });
  t.after(() => tunnel.close());

  // A successful dial, one DATA each way, then a close.
  const address = target.server.address();
  if (address === null || typeof address === 'string') throw new Error('target not listening on TCP');
  const socket = await tunnel.dial('tcp', `127.0.0.1:${address.port}`);
  const echoed = new Promise<Buffer>((resolve) => socket.once('data', (d: Buffer) => resolve(d)));
  socket.write('ping through the tunnel');
  const got = await echoed;
  if (got.toString() !== 'ping through the tunnel') throw new Error(`echo mismatch: ${got.toString()}`);
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    socket.end();
    socket.resume();
  });

  // A dial to a closed port: the agent's dial fails, the server and client count it.
  const failed = await tunnel.dial('tcp', `127.0.0.1:${closedPort}`).then(
    (s) => {
      s.destroy();
      return false;
    },
    () => true,
  );
  if (!failed) throw new Error('dial to a closed port unexpectedly succeeded');

  const health = await scrape(cluster.server.addresses.healthPort);
  const admin = await scrape(cluster.server.addresses.adminPort);
  const agentScrape = await scrape(agentHttp.healthPort);
  const client = parsePrometheusText(await clientMetrics.registry.metrics());
  return {
    serverHealth: health.families,
    serverAdmin: admin.families,
    serverContentType: health.contentType,
    agent: agentScrape.families,
    agentContentType: agentScrape.contentType,
    client,
  };
}
