/** Public option and result types of the client library. */
import type { Duplex } from 'node:stream';
import type { ClientMetrics } from '../observability/client-metrics.ts';
import type { Logger } from '../observability/logger.ts';

export type TunnelMode = 'grpc' | 'http-connect';

/** PEM text or bytes, as node:tls accepts them. */
export type PemInput = string | Buffer;

export interface ProxyTlsOptions {
  /** CA bundle that signed the proxy server's certificate; system roots when omitted. */
  ca?: PemInput;
  /** Client certificate chain for mTLS (the proxy server requires one). */
  cert: PemInput;
  key: PemInput;
  /** Name to verify the server certificate against (and send as SNI) instead of `host`. */
  servername?: string;
}

export type ProxyTransport =
  | { unix: string }
  | { host: string; port: number; tls: ProxyTlsOptions };

export interface TunnelOptions {
  mode: TunnelMode;
  transport: ProxyTransport;
  logger?: Logger;
  /** Upstream-named client metrics; a private registry is used when omitted. */
  metrics?: ClientMetrics;
  /** Default dial timeout; upstream's hard backstop is 30 s. */
  dialTimeoutMs?: number;
  /** gRPC `user-agent` (the server only logs it). */
  userAgent?: string;
  /** HTTP/2 keepalive ping interval for gRPC mode; 0 (the default) disables pings. */
  keepaliveTimeMs?: number;
}

export interface DialOptions {
  /** Aborting fails a pending dial with code `context` (after telling the server with DIAL_CLS). */
  signal?: AbortSignal;
  /** Fails the dial with code `timeout` when no answer came in time. Defaults to the tunnel's `dialTimeoutMs`. */
  timeoutMs?: number;
}

/**
 * The socket-ish surface that node:http, node:tls and most HTTP clients use
 * on top of a Duplex. net.Socket satisfies it; so does the gRPC tunnel socket.
 */
export interface SocketLike {
  setNoDelay(noDelay?: boolean): this;
  setKeepAlive(enable?: boolean, initialDelay?: number): this;
  setTimeout(timeout: number, callback?: () => void): this;
  ref(): this;
  unref(): this;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
}

/** One tunnelled TCP connection. */
export type TunnelConnection = Duplex & SocketLike;

export interface Tunnel {
  readonly mode: TunnelMode;
  /** True once `close()` was called; later dials fail with code `tunnelclosed`. */
  readonly closed: boolean;
  /** Opens one TCP connection to `address` (`host:port`) through the proxy. Only `tcp` is supported, as upstream. */
  dial(network: string, address: string, options?: DialOptions): Promise<TunnelConnection>;
  /**
   * Stops new dials, fails pending ones (`tunnelclosed`), closes open
   * connections the way `end()` does (waiting up to 10 s each for the
   * server's acknowledgement) and then the transport.
   */
  close(): Promise<void>;
}

export const DEFAULT_DIAL_TIMEOUT_MS = 30_000;
/** Upstream's CloseTimeout: how long a close waits for CLOSE_RSP. */
export const CLOSE_TIMEOUT_MS = 10_000;
