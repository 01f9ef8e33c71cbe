/**
 * HTTP-CONNECT frontend on raw sockets (plain on a unix socket, mTLS on
 * TCP). Working below node:http keeps the bytes exact: the 200 goes out
 * only after the agent's DIAL_RSP, alone in its write, and bytes the client
 * pipelined after the CONNECT head are relayed, not lost.
 */
import net from 'node:net';
import tls from 'node:tls';
import { packets, writePayloadToSocket } from '../../protocol/packet.ts';
import { randomInt63 } from '../../protocol/random-int63.ts';
import type { Logger } from '../../observability/logger.ts';
import type { ServerMetrics } from '../../observability/server-metrics.ts';
import { AGENT_GONE_ERROR, BACKEND_DIAL_TIMEOUT_ERROR, NO_AGENT_ERROR, type FrontendPeer, type FrontendSession, type ProxyRouter } from '../proxy-router.ts';
import { ConnectRequestParser } from './connect-request-parser.ts';
import * as responses from './connect-responses.ts';
import { isServerLimitError, limitReachedResponse } from '../limits.ts';
import { bindHistogramRecorder, type HistogramRecorder } from '../../observability/histogram-recorder.ts';

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
  private readonly recordWriteSeconds: HistogramRecorder;

  constructor(options: HttpConnectFrontendOptions) {
    this.options = options;
    this.recordWriteSeconds = bindHistogramRecorder(options.metrics.frontendWriteDuration);
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
    const { router, metrics, logger } = this.options;
    this.sockets.add(socket);
    metrics.httpConnections.inc();
    if (this.options.tls) socket.setNoDelay(true);
    socket.on('error', (err) => logger.v(3, 'frontend socket error', { error: err.message }));
    const parser = new ConnectRequestParser({ maxHeaderBytes: this.options.maxHeaderBytes ?? 1024 * 1024 });
    let session: FrontendSession | null = null;
    let connectID = 0n;
    let established = false;
    let pipelined: Uint8Array = new Uint8Array(0);
    let lingerTimer: NodeJS.Timeout | null = null;
    // Go's ReadHeaderTimeout closes the connection without a response.
    const headerTimer = setTimeout(() => {
      router.limitMetrics.rejected('http_connect_header_timeout');
      socket.destroy();
    }, this.options.headerTimeoutMs ?? 60_000);
    headerTimer.unref();

    const closeSocket = (): void => {
      if (!socket.destroyed) socket.end();
      // Destroy after flushing; end() alone would wait for the peer's FIN forever.
      socket.once('finish', () => socket.destroy());
    };
    const failDial = (bytes: Uint8Array): void => {
      socket.end(bytes);
      socket.once('finish', () => socket.destroy());
    };

    const peer: FrontendPeer = {
      dialResponse: (_random, id, error) => {
        if (error) {
          if (error === NO_AGENT_ERROR) failDial(responses.noTunnelsAvailable(error));
          else if (error === BACKEND_DIAL_TIMEOUT_ERROR) failDial(responses.backendDialTimeout(error));
          // Upstream prints the canceled backend context's error here: Go's ctx.Err() text.
          else if (error === AGENT_GONE_ERROR) failDial(responses.backendContextError('context canceled'));
          else if (isServerLimitError(error)) failDial(limitReachedResponse(error));
          else failDial(responses.dialFailed(error));
          return;
        }
        connectID = id;
        established = true;
        router.countToClient(1);
        socket.write(responses.connectionEstablished());
        if (pipelined.length > 0) session!.handlePacket(packets.data(connectID, pipelined));
        pipelined = new Uint8Array(0);
        socket.resume();
      },
      data: (_id, payload) => {
        const start = performance.now();
        writePayloadToSocket(socket, payload);
        this.recordWriteSeconds((performance.now() - start) / 1000);
      },
      closeResponse: () => closeSocket(),
      // Closed for stalling: end() flushes only if the client reads, and until
      // 'finish' the socket would hold up to the frontend bound and count in
      // http_connections. After the linger it goes, flushed or not.
      abandon: (lingerMs) => {
        if (lingerTimer || socket.destroyed) return;
        lingerTimer = setTimeout(() => {
          logger.v(2, 'destroying frontend socket closed for stalling: its client did not read the rest', { connectID, bufferedBytes: socket.writableLength });
          socket.destroy();
        }, lingerMs);
        lingerTimer.unref();
      },
      dialClosed: () => socket.destroy(),
      get bufferedBytes() {
        return socket.writableLength;
      },
      pauseReading: () => socket.pause(),
      resumeReading: () => {
        if (established) socket.resume();
      },
    };

    socket.on('data', (chunk: Buffer) => {
      if (established) {
        session!.handlePacket(packets.data(connectID, chunk));
        return;
      }
      if (session) return; // dial in flight; the parser already holds the pipelined bytes
      const result = parser.push(chunk);
      if (result.kind === 'need-more') return;
      clearTimeout(headerTimer);
      if (result.kind === 'error') {
        if (result.status === 431) router.limitMetrics.rejected('http_connect_header_bytes');
        failDial(responses.parseError(result));
        return;
      }
      const req = result.request;
      if (req.method !== 'CONNECT') {
        // Upstream answers 405 and may keep an HTTP/1.1 connection open for another
        // request; we always close, which every client handles (documented difference).
        failDial(responses.methodNotAllowed({ ...req, closeRequested: true }));
        return;
      }
      if (this.options.accepting && !this.options.accepting()) {
        failDial(responses.noTunnelsAvailable('server is shutting down'));
        return;
      }
      // Hold further bytes in the kernel until the tunnel exists.
      socket.pause();
      pipelined = req.rest;
      session = router.openFrontend(peer);
      if (logger.enabled(4)) logger.v(4, 'CONNECT request', { host: req.host });
      // Upstream dials Go's r.Host: the CONNECT authority, not the Host header.
      session.handlePacket(packets.dialRequest(req.host, randomDialId()));
    });
    socket.on('drain', () => session?.writable());
    socket.on('close', () => {
      clearTimeout(headerTimer);
      if (lingerTimer) clearTimeout(lingerTimer);
      this.sockets.delete(socket);
      metrics.httpConnections.dec();
      session?.end();
    });
  }
}
