/** The server's health port (/healthz, /readyz, /ready, /metrics) and admin port (/metrics). */
import http from 'node:http';
import type { Registry } from 'prom-client';

function reply(res: http.ServerResponse, status: number, body: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'Content-Type': contentType, 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}

async function serveMetrics(registry: Registry, res: http.ServerResponse): Promise<void> {
  try {
    reply(res, 200, await registry.metrics(), registry.contentType);
  } catch (err) {
    reply(res, 500, `metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`);
  }
}

export interface HealthSource {
  /** Upstream: ready when the first strategy has at least one agent. */
  ready(): boolean;
}

export function createServerHealthServer(source: HealthSource, registry: Registry): http.Server {
  return http.createServer({ headersTimeout: 60_000, requestTimeout: 0 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/healthz':
        return reply(res, 200, 'ok');
      case '/readyz':
      case '/ready':
        return source.ready() ? reply(res, 200, 'ok') : reply(res, 500, 'no connection to any proxy agent');
      case '/metrics':
        void serveMetrics(registry, res);
        return;
      default:
        return reply(res, 404, '404 page not found\n');
    }
  });
}

export function createServerAdminServer(registry: Registry, extraRoutes: Record<string, http.RequestListener> = {}): http.Server {
  return http.createServer({ headersTimeout: 60_000, maxHeaderSize: 1024 * 1024 }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/metrics') {
      void serveMetrics(registry, res);
      return;
    }
    const route = extraRoutes[path];
    if (route) return route(req, res);
    reply(res, 404, '404 page not found\n');
  });
}
