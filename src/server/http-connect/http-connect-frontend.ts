/**
 * HTTP-CONNECT frontend on raw sockets (plain on a unix socket, mTLS on
 * TCP). Working below node:http keeps the bytes exact: the 200 goes out
 * only after the agent's DIAL_RSP, alone in its write, and bytes the client
 * pipelined after the CONNECT head are relayed, not lost.
 */
import net from 'node:net';
import tls from 'node:tls';
import { randomInt63 } from '../../protocol/random-int63.ts';
import type { Logger } from '../../observability/logger.ts';
import type { ServerMetrics } from '../../observability/server-metrics.ts';
import type { ProxyRouter } from '../proxy-router.ts';
import { bindHistogramRecorder } from '../../observability/histogram-recorder.ts';
import { HttpConnectConnection, type HttpConnectContext } from './http-connect-connection.ts';

export interface HttpConnectFrontendOptions {
  router: ProxyRouter;
  metrics: ServerMetrics;
  logger: Logger;
  tls?: tls.TlsOptions;
  /** Go's ReadHeaderTimeout on upstream's listener. */
  headerTimeoutMs?: number;
  maxHeaderBytes?: number;
  accepting?: () => boolean;
  /** A TLS handshake failed (`tlsClientError`): log and count it with the peer and the reason. */
  onTlsClientError?: (err: Error, socket: tls.TLSSocket) => void;
}

/** A 63-bit non-negative dial ID, like Go's rand.Int63(). */
export function randomDialId(): bigint {
  return randomInt63();
}

export class HttpConnectFrontend {
  readonly server: net.Server;
  private readonly options: HttpConnectFrontendOptions;
  private readonly sockets = new Set<net.Socket>();
  private readonly context: HttpConnectContext;

  constructor(options: HttpConnectFrontendOptions) {
    this.options = options;
    this.context = {
      router: options.router,
      metrics: options.metrics,
      logger: options.logger,
      recordWriteSeconds: bindHistogramRecorder(options.metrics.frontendWriteDuration),
      headerTimeoutMs: options.headerTimeoutMs ?? 60_000,
      maxHeaderBytes: options.maxHeaderBytes,
      accepting: options.accepting,
      newDialId: randomDialId,
      forget: (socket) => this.sockets.delete(socket),
    };
    const onSocket = (socket: net.Socket): void => this.handle(socket);
    if (options.tls) {
      // HTTP/1.1 only, as upstream disables HTTP/2 on this listener.
      this.server = tls.createServer({ ...options.tls, ALPNProtocols: ['http/1.1'] }, onSocket);
      const onTlsClientError = options.onTlsClientError ?? ((err: Error) => options.logger.v(2, 'frontend TLS handshake failed', { error: err.message }));
      this.server.on('tlsClientError', onTlsClientError);
    } else {
      this.server = net.createServer(onSocket);
    }
  }

  closeGracefully(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  destroy(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private handle(socket: net.Socket): void {
    this.sockets.add(socket);
    if (this.options.tls) socket.setNoDelay(true);
    // The connection lives as long as its socket, which holds it for its listeners.
    new HttpConnectConnection(this.context, socket);
  }
}
