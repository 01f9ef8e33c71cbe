/**
 * node:http / node:https agents whose connections go through a tunnel, so
 * `http.get(url, { agent })` reaches cluster-network addresses. Plain HTTP
 * uses the tunnelled socket as is; HTTPS runs TLS to the target on top of it.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { DialOptions, Tunnel } from './tunnel-options.ts';

export interface TunnelAgentOptions extends http.AgentOptions {
  tunnel: Tunnel;
  /** Per-connection dial timeout; the tunnel's default when omitted. */
  dialTimeoutMs?: number;
}

type Oncreate = (err: Error | null, socket: Duplex) => void;

/** `host:port` for a dial, bracketing IPv6 literals. */
export function dialAddress(host: string | null | undefined, port: number | string | null | undefined, defaultPort: number): string {
  const h = host || 'localhost';
  const bare = h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
  return `${net.isIPv6(bare) ? `[${bare}]` : bare}:${port || defaultPort}`;
}

function dialOptions(timeoutMs: number | undefined): DialOptions {
  return timeoutMs === undefined ? {} : { timeoutMs };
}

export class TunnelHttpAgent extends http.Agent {
  readonly tunnel: Tunnel;
  private readonly dialTimeoutMs: number | undefined;

  constructor(options: TunnelAgentOptions) {
    const { tunnel, dialTimeoutMs, ...agentOptions } = options;
    super(agentOptions);
    this.tunnel = tunnel;
    this.dialTimeoutMs = dialTimeoutMs;
  }

  override createConnection(options: http.ClientRequestArgs, callback?: Oncreate): Duplex | null | undefined {
    const address = dialAddress(options.hostname ?? options.host, options.port, 80);
    this.tunnel.dial('tcp', address, dialOptions(this.dialTimeoutMs)).then(
      (socket) => callback?.(null, socket),
      (err: Error) => callback?.(err, undefined as never),
    );
    return undefined;
  }
}

export class TunnelHttpsAgent extends https.Agent {
  readonly tunnel: Tunnel;
  private readonly dialTimeoutMs: number | undefined;

  constructor(options: TunnelAgentOptions & https.AgentOptions) {
    const { tunnel, dialTimeoutMs, ...agentOptions } = options;
    super(agentOptions);
    this.tunnel = tunnel;
    this.dialTimeoutMs = dialTimeoutMs;
  }

  override createConnection(options: https.RequestOptions, callback?: Oncreate): Duplex | null | undefined {
    const host = options.hostname ?? options.host ?? 'localhost';
    const address = dialAddress(host, options.port, 443);
    this.tunnel.dial('tcp', address, dialOptions(this.dialTimeoutMs)).then(
      (socket) => {
        const { servername } = options as tls.ConnectionOptions;
        const bare = host.replace(/^\[(.*)\]$/, '$1');
        const tlsSocket = tls.connect({
          ...(options as tls.ConnectionOptions),
          socket,
          host: bare,
          servername: servername || (net.isIP(bare) ? undefined : bare),
        });
        callback?.(null, tlsSocket);
      },
      (err: Error) => callback?.(err, undefined as never),
    );
    return undefined;
  }
}
