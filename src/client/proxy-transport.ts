/** How to reach the proxy server: a unix socket, or TCP with mTLS. */
import net from 'node:net';
import tls from 'node:tls';
import type { GrpcTarget } from '../grpc/grpc-client.ts';
import type { ProxyTransport } from './tunnel-options.ts';

export function isUnixTransport(t: ProxyTransport): t is { unix: string } {
  return 'unix' in t;
}

export function describeTransport(t: ProxyTransport): string {
  if (isUnixTransport(t)) return `unix://${t.unix}`;
  return `${net.isIPv6(t.host) ? `[${t.host}]` : t.host}:${t.port}`;
}

function tlsConnectionOptions(t: Exclude<ProxyTransport, { unix: string }>): tls.ConnectionOptions {
  const options: tls.ConnectionOptions = { cert: t.tls.cert, key: t.tls.key, minVersion: 'TLSv1.2' };
  if (t.tls.ca !== undefined) options.ca = t.tls.ca;
  // SNI must not be an IP address; certificate checks still use `host` then.
  const servername = t.tls.servername ?? (net.isIP(t.host) ? undefined : t.host);
  if (servername !== undefined) options.servername = servername;
  return options;
}

export function grpcTarget(t: ProxyTransport): GrpcTarget {
  if (isUnixTransport(t)) return { transport: 'unix', path: t.unix };
  return { transport: 'tls', host: t.host, port: t.port, tls: tlsConnectionOptions(t) };
}

/** Starts an HTTP/1.1 connection to the proxy; resolves nothing, the caller waits for `readyEvent`. */
export function openProxySocket(t: ProxyTransport): { socket: net.Socket; readyEvent: 'connect' | 'secureConnect' } {
  if (isUnixTransport(t)) return { socket: net.connect(t.unix), readyEvent: 'connect' };
  // The upstream HTTP-CONNECT listener is HTTP/1.1 only.
  const socket = tls.connect({ host: t.host, port: t.port, ALPNProtocols: ['http/1.1'], ...tlsConnectionOptions(t) });
  return { socket, readyEvent: 'secureConnect' };
}
