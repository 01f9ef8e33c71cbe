/** Small helpers for the admin ports' JSON endpoints. */
import type http from 'node:http';

export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value, null, 2) + '\n';
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end(body);
}

/** A GET/HEAD-only JSON route; other methods get 405. */
export function jsonRoute(produce: () => unknown): http.RequestListener {
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    let value: unknown;
    try {
      value = produce();
    } catch (err) {
      sendJson(res, 500, { error: err instanceof Error ? err.message : String(err) });
      return;
    }
    sendJson(res, 200, value);
  };
}

export function secondsSince(ms: number, now: number): number {
  return Math.max(0, Math.round((now - ms) / 100) / 10);
}
