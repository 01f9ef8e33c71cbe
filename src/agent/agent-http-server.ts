/**
 * The agent's HTTP endpoints, byte-compatible with upstream's
 * cmd/agent/app/server.go: the health port serves /healthz, /readyz, /ready
 * and /metrics; the admin port (loopback by default) redirects /metrics to
 * the health port.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../observability/logger.ts';
import { silentLogger } from '../observability/logger.ts';
import { joinHostPort } from './go-dial-error.ts';

/** Upstream's ReadHeaderTimeout for both servers. */
const READ_HEADER_TIMEOUT_MS = 60_000;

/** A named readiness check; a returned string is the failure reason. */
export interface HealthCheck {
  name: string;
  check(): string | null;
}

export const pingCheck: HealthCheck = { name: 'ping', check: () => null };

export function serverConnectedCheck(isConnected: () => boolean): HealthCheck {
  return { name: 'server-connected', check: () => (isConnected() ? null : 'no servers connected') };
}

export interface AgentHttpServerOptions {
  /** `--health-server-host`; empty listens on every interface. */
  healthHost: string;
  /** `--health-server-port`; 0 picks a free port (see `healthPort`). */
  healthPort: number;
  /** `--admin-bind-address`. */
  adminBindAddress: string;
  /** `--admin-server-port`; 0 picks a free port. */
  adminPort: number;
  registry: Registry;
  checks: readonly HealthCheck[];
  logger?: Logger;
  /** konnectivity-ts: extra admin-port routes by exact path (status JSON, /debug/pprof), served before the /metrics redirect. */
  adminRoutes?: Record<string, http.RequestListener>;
}

function sendText(res: ServerResponse, status: number, body: string): void {
  // Go's ResponseWriter sniffs plain text bodies to this type.
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function notFound(res: ServerResponse): void {
  res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end('404 page not found\n');
}

function requestPath(req: IncomingMessage): { path: string; query: string } {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

function hasQueryKey(query: string, key: string): boolean {
  return new URLSearchParams(query).has(key);
}

export class AgentHttpServers {
  private readonly options: AgentHttpServerOptions;
  private readonly logger: Logger;
  private readonly health: http.Server;
  private readonly admin: http.Server;
  private boundHealthPort = 0;
  private boundAdminPort = 0;

  constructor(options: AgentHttpServerOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    const serverOptions: http.ServerOptions = { maxHeaderSize: 1 << 20, headersTimeout: READ_HEADER_TIMEOUT_MS };
    this.health = http.createServer(serverOptions, (req, res) => void this.serveHealth(req, res));
    this.admin = http.createServer(serverOptions, (req, res) => this.serveAdmin(req, res));
  }

  /** The health port actually bound (useful with port 0). */
  get healthPort(): number {
    return this.boundHealthPort;
  }

  get adminPort(): number {
    return this.boundAdminPort;
  }

  async start(): Promise<void> {
    this.boundHealthPort = await listen(this.health, this.options.healthHost, this.options.healthPort);
    this.boundAdminPort = await listen(this.admin, this.options.adminBindAddress, this.options.adminPort);
  }

  async close(): Promise<void> {
    await Promise.all([this.health, this.admin].map((s) => closeServer(s)));
  }

  /** The readiness body and status exactly as upstream writes them. */
  readiness(verbose: boolean): { status: number; body: string } {
    let lines = '';
    const failed: string[] = [];
    for (const check of this.options.checks) {
      const reason = check.check();
      if (reason === null) {
        lines += `[+]${check.name} ok\n`;
      } else {
        lines += `[-]${check.name} failed: ${reason}\n`;
        failed.push(check.name);
      }
    }
    if (failed.length > 0) {
      this.logger.info(`${failed.join(',')} check failed`, { checks: lines });
      return { status: 503, body: lines };
    }
    if (!verbose) return { status: 200, body: 'ok' };
    return { status: 200, body: lines + 'check passed\n' };
  }

  private async serveHealth(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { path, query } = requestPath(req);
    switch (path) {
      case '/healthz':
        sendText(res, 200, 'ok');
        return;
      case '/readyz':
      case '/ready': {
        const { status, body } = this.readiness(hasQueryKey(query, 'verbose'));
        sendText(res, status, body);
        return;
      }
      case '/metrics': {
        try {
          const body = await this.options.registry.metrics();
          res.writeHead(200, { 'Content-Type': this.options.registry.contentType });
          res.end(body);
        } catch (err) {
          sendText(res, 500, `error gathering metrics: ${err instanceof Error ? err.message : String(err)}\n`);
        }
        return;
      }
      default:
        notFound(res);
    }
  }

  private serveAdmin(req: IncomingMessage, res: ServerResponse): void {
    const { path, query } = requestPath(req);
    const route = this.options.adminRoutes && Object.hasOwn(this.options.adminRoutes, path) ? this.options.adminRoutes[path] : undefined;
    if (route) {
      route(req, res);
      return;
    }
    if (path !== '/metrics') {
      notFound(res);
      return;
    }
    // Same host the client used, health port; Go prints the URL without a scheme.
    const hostHeader = req.headers.host ?? '';
    const host = splitHost(hostHeader);
    const location = `//${joinHostPort(host, this.boundHealthPort)}${path}${query ? `?${query}` : ''}`;
    const headers: http.OutgoingHttpHeaders = { Location: location };
    let body = '';
    if (req.method === 'GET' || req.method === 'HEAD') {
      headers['Content-Type'] = 'text/html; charset=utf-8';
      body = `<a href="${escapeHtml(location)}">Moved Permanently</a>.\n\n`;
    }
    res.writeHead(301, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/** net.SplitHostPort on a Host header, falling back to the whole value (port 80 omitted). */
function splitHost(hostHeader: string): string {
  if (hostHeader.startsWith('[')) {
    const end = hostHeader.indexOf(']');
    if (end > 0 && hostHeader[end + 1] === ':') return hostHeader.slice(1, end);
    return hostHeader;
  }
  const colon = hostHeader.lastIndexOf(':');
  if (colon < 0 || hostHeader.indexOf(':') !== colon) return hostHeader;
  return hostHeader.slice(0, colon);
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&#34;').replace(/'/g, '&#39;');
}

function listen(server: http.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    const done = (): void => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    };
    if (host === '') server.listen(port, done);
    else server.listen(port, host, done);
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
