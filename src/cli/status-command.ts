/**
 * `konnectivity status --admin-url http://127.0.0.1:8095`: reads a server's
 * or an agent's admin-port status (/api/v1/status; the `kind` field tells
 * which) and prints tables, or the raw JSON with --json. Unreachable or
 * unexpected answers exit 1 with the reason on stderr.
 */
import { FlagSet } from '../flags/flag-set.ts';
import { OptionsError } from '../flags/options-error.ts';
import { STATUS_PATH, type AgentStatus, type AnyStatus, type ServerStatus } from '../status/status-types.ts';
import type { CliIO } from './konnectivity-main.ts';

const DESCRIPTION = "Show a konnectivity server's or agent's status from its admin port (agents, servers, open connections).";
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

function defineFlags() {
  const fs = new FlagSet('konnectivity status');
  return {
    fs,
    adminUrl: fs.string('admin-url', 'http://127.0.0.1:8095', 'Admin endpoint of a konnectivity-server (default port 8095) or konnectivity-agent (default port 8094).'),
    json: fs.bool('json', false, 'Print the raw status JSON instead of tables.'),
    timeout: fs.duration('timeout', '10s', 'How long to wait for the admin endpoint.'),
  };
}

/** Fixed-width text table; the last column is not padded. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd() + '\n';
  return line(headers) + rows.map(line).join('');
}

export function formatAge(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${Math.floor(seconds % 60)}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d${Math.floor((seconds % 86400) / 3600)}h`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)}${units[u]}`;
}

function identifiersText(id: ServerStatus['agents'][number]['identifiers']): string {
  const parts: string[] = [];
  if (id.host.length) parts.push(`host=${id.host.join(',')}`);
  if (id.ipv4.length) parts.push(`ipv4=${id.ipv4.join(',')}`);
  if (id.ipv6.length) parts.push(`ipv6=${id.ipv6.join(',')}`);
  if (id.cidr.length) parts.push(`cidr=${id.cidr.join(',')}`);
  if (id.defaultRoute) parts.push('default-route');
  return parts.join(' ') || '-';
}

function listedNote(c: { total: number; items: unknown[] }): string {
  return c.total > c.items.length ? ` (showing ${c.items.length} of ${c.total})` : '';
}

export function formatServerStatus(s: ServerStatus): string {
  let out = `Server ${s.serverID}\n`;
  out += `  mode ${s.mode}, server count ${s.serverCount}, strategies ${s.strategies.join(',')}, up ${formatAge(s.uptimeSeconds)}, ${s.ready ? 'ready' : 'NOT READY'}\n`;
  out += `  ${s.agents.length} agent stream(s), ${s.connections.total} open connection(s), ${s.pendingDials} pending dial(s)\n\n`;
  out += `AGENTS (${s.agents.length})\n`;
  out += s.agents.length
    ? formatTable(
        ['AGENT ID', 'STATE', 'FLOW CONTROL', 'AGE', 'CONNS', 'PENDING', 'IDENTIFIERS'],
        s.agents.map((a) => [
          a.agentID,
          a.draining ? 'draining' : 'active',
          a.flowControl ? `yes (${formatBytes(a.flowControl.agentWindow)}/${formatBytes(a.flowControl.ourWindow)})` : 'no',
          formatAge(a.ageSeconds),
          String(a.connections),
          String(a.pendingDials),
          identifiersText(a.identifiers),
        ]),
      )
    : '  (none)\n';
  out += `\nCONNECTIONS (${s.connections.total})${listedNote(s.connections)}\n`;
  out += s.connections.items.length
    ? formatTable(
        ['AGENT ID', 'CONNECT ID', 'FROM AGENT', 'TO AGENT', 'AGE', 'FRONTEND'],
        s.connections.items.map((c) => [c.agentID, c.connectID, formatBytes(c.bytesFromAgent), formatBytes(c.bytesToAgent), formatAge(c.ageSeconds), c.frontendAttached ? 'attached' : 'closing']),
      )
    : '  (none)\n';
  return out;
}

export function formatAgentStatus(s: AgentStatus): string {
  let out = `Agent ${s.agentID}\n`;
  out += `  up ${formatAge(s.uptimeSeconds)}, ${s.ready ? 'ready' : 'NOT READY'}${s.draining ? ', draining' : ''}, connected to ${s.servers.length} of ${s.targetServerCount} server(s)`;
  out += s.identifiers ? `, identifiers ${s.identifiers}\n\n` : '\n\n';
  out += `SERVERS (${s.servers.length})\n`;
  out += s.servers.length
    ? formatTable(
        ['SERVER ID', 'ADDRESS', 'STATE', 'AGE', 'CONNS'],
        s.servers.map((v) => [v.serverID, v.address, v.healthy ? 'healthy' : 'unhealthy', formatAge(v.ageSeconds), String(v.endpointConnections)]),
      )
    : '  (none)\n';
  out += `\nCONNECTIONS (${s.endpointConnections.total})${listedNote(s.endpointConnections)}\n`;
  out += s.endpointConnections.items.length
    ? formatTable(
        ['SERVER ID', 'CONNECT ID', 'ADDRESS', 'SEEN FOR'],
        s.endpointConnections.items.map((c) => [c.serverID, c.connectID, c.address, formatAge(c.ageSeconds)]),
      )
    : '  (none)\n';
  return out;
}

function statusUrl(adminUrl: string): URL {
  let base: URL;
  try {
    base = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(adminUrl) ? adminUrl : `http://${adminUrl}`);
  } catch {
    throw new OptionsError('validation', `--admin-url ${JSON.stringify(adminUrl)} is not a valid URL`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new OptionsError('validation', `--admin-url must be http:// or https://, got ${JSON.stringify(base.protocol)}`);
  const prefix = base.pathname.replace(/\/+$/, '');
  return new URL(`${prefix}${STATUS_PATH}`, base);
}

function isStatus(v: unknown): v is AnyStatus {
  return typeof v === 'object' && v !== null && ((v as { kind?: unknown }).kind === 'server' || (v as { kind?: unknown }).kind === 'agent');
}

export async function runStatusCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const f = defineFlags();
  let url: URL;
  try {
    const parsed = f.fs.parse(argv);
    if (parsed.helpRequested) {
      io.stdout.write(f.fs.usage(DESCRIPTION));
      return 0;
    }
    if (parsed.args.length > 0) throw new OptionsError('parse', `unexpected argument ${JSON.stringify(parsed.args[0])}`);
    url = statusUrl(f.adminUrl.value);
    if (!(f.timeout.milliseconds > 0)) throw new OptionsError('validation', '--timeout must be positive');
  } catch (err) {
    if (!(err instanceof OptionsError)) throw err;
    io.stderr.write(`Error: ${err.message}\nRun "konnectivity status --help" for usage.\n`);
    return EXIT_USAGE;
  }

  let response: Response;
  let body: string;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(f.timeout.milliseconds), headers: { accept: 'application/json' } });
    body = await response.text();
  } catch (err) {
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : err instanceof Error ? err.message : String(err);
    io.stderr.write(`Error: cannot reach the admin endpoint ${url.origin}: ${cause}\n(is the server/agent running, and is --admin-url its admin port? The admin port binds to 127.0.0.1 by default.)\n`);
    return EXIT_FAILURE;
  }
  if (response.status === 404) {
    io.stderr.write(`Error: ${url.href} answered 404: not a konnectivity-ts admin port, or a version without status endpoints (upstream serves only /metrics there)\n`);
    return EXIT_FAILURE;
  }
  if (!response.ok) {
    io.stderr.write(`Error: ${url.href} answered ${response.status} ${response.statusText}: ${body.trim().slice(0, 500)}\n`);
    return EXIT_FAILURE;
  }
  let status: unknown;
  try {
    status = JSON.parse(body);
  } catch {
    status = undefined;
  }
  if (!isStatus(status)) {
    io.stderr.write(`Error: ${url.href} did not answer with a konnectivity status document\n`);
    return EXIT_FAILURE;
  }
  if (f.json.value) {
    io.stdout.write(JSON.stringify(status, null, 2) + '\n');
    return 0;
  }
  io.stdout.write(status.kind === 'server' ? formatServerStatus(status) : formatAgentStatus(status));
  return 0;
}
