/**
 * One client connection of the HTTP-CONNECT frontend: reads the CONNECT
 * head, asks the router to dial, answers 200 only after the agent's
 * DIAL_RSP, then relays bytes both ways as DATA packets.
 *
 * A server holds one of these per tunnelled connection, tens of thousands
 * at once, so its state is fields of one object and its socket listeners
 * are shared by every connection (found through the socket), rather than a
 * dozen closures per connection.
 */
import type net from 'node:net';
import { packets, writePayloadToSocket, type Data } from '../../protocol/packet.ts';
import type { Logger } from '../../observability/logger.ts';
import type { ServerMetrics } from '../../observability/server-metrics.ts';
import type { HistogramRecorder } from '../../observability/histogram-recorder.ts';
import { AGENT_GONE_ERROR, BACKEND_DIAL_TIMEOUT_ERROR, NO_AGENT_ERROR, type FrontendPeer, type FrontendSession, type ProxyRouter } from '../proxy-router.ts';
import { isServerLimitError, limitReachedResponse } from '../limits.ts';
import { ConnectRequestParser } from './connect-request-parser.ts';
import * as responses from './connect-responses.ts';

/** What every connection of one frontend shares. */
export interface HttpConnectContext {
  readonly router: ProxyRouter;
  readonly metrics: ServerMetrics;
  readonly logger: Logger;
  readonly recordWriteSeconds: HistogramRecorder;
  /** Go's ReadHeaderTimeout on upstream's listener. */
  readonly headerTimeoutMs: number;
  /** Undefined: the parser's default, Go's http.DefaultMaxHeaderBytes. */
  readonly maxHeaderBytes: number | undefined;
  readonly accepting: (() => boolean) | undefined;
  readonly newDialId: () => bigint;
  /** The connection's socket closed; the frontend stops tracking it. */
  forget(socket: net.Socket): void;
}

const EMPTY = new Uint8Array(0);
const connectionOf = Symbol('konnectivity.httpConnectConnection');

type OwnedSocket = net.Socket & { [connectionOf]: HttpConnectConnection };

function owner(socket: net.Socket): HttpConnectConnection {
  return (socket as OwnedSocket)[connectionOf];
}

/** Destroys a socket once its last bytes are flushed; end() alone would wait for the peer's FIN forever. */
function destroyWhenFinished(this: net.Socket): void {
  this.destroy();
}

export class HttpConnectConnection implements FrontendPeer {
  // Node calls a listener with the emitter as `this`.
  private static readonly onData = function (this: net.Socket, chunk: Buffer): void {
    owner(this).received(chunk);
  };
  private static readonly onDrain = function (this: net.Socket): void {
    owner(this).session?.writable();
  };
  private static readonly onError = function (this: net.Socket, err: Error): void {
    owner(this).context.logger.v(3, 'frontend socket error', { error: err.message });
  };
  private static readonly onClose = function (this: net.Socket): void {
    owner(this).closed();
  };
  private static readonly onHeaderTimeout = (conn: HttpConnectConnection): void => {
    conn.context.router.limitMetrics.rejected('http_connect_header_timeout');
    conn.socket.destroy();
  };
  private static readonly onLingerExpired = (conn: HttpConnectConnection): void => {
    conn.context.logger.v(2, 'destroying frontend socket closed for stalling: its client did not read the rest', {
      connectID: conn.connectID,
      bufferedBytes: conn.socket.writableLength,
    });
    conn.socket.destroy();
  };

  private readonly context: HttpConnectContext;
  private readonly socket: net.Socket;
  /** Reads the request head; dropped once it is parsed. */
  private parser: ConnectRequestParser | null;
  private session: FrontendSession | null = null;
  private connectID = 0n;
  private established = false;
  /** Bytes the client sent after the head, relayed once the tunnel exists. */
  private pipelined: Uint8Array = EMPTY;
  private headerTimer: NodeJS.Timeout | null;
  private lingerTimer: NodeJS.Timeout | null = null;

  constructor(context: HttpConnectContext, socket: net.Socket) {
    this.context = context;
    this.socket = socket;
    this.parser = new ConnectRequestParser(context.maxHeaderBytes === undefined ? {} : { maxHeaderBytes: context.maxHeaderBytes });
    context.metrics.httpConnections.inc();
    (socket as OwnedSocket)[connectionOf] = this;
    socket.on('error', HttpConnectConnection.onError);
    socket.on('data', HttpConnectConnection.onData);
    socket.on('drain', HttpConnectConnection.onDrain);
    socket.on('close', HttpConnectConnection.onClose);
    // Go's ReadHeaderTimeout closes the connection without a response.
    this.headerTimer = setTimeout(HttpConnectConnection.onHeaderTimeout, context.headerTimeoutMs, this);
    this.headerTimer.unref();
  }

  dialResponse(_random: bigint, connectID: bigint, error: string): void {
    if (error) {
      if (error === NO_AGENT_ERROR) this.failDial(responses.noTunnelsAvailable(error));
      else if (error === BACKEND_DIAL_TIMEOUT_ERROR) this.failDial(responses.backendDialTimeout(error));
      // Upstream prints the canceled backend context's error here: Go's ctx.Err() text.
      else if (error === AGENT_GONE_ERROR) this.failDial(responses.backendContextError('context canceled'));
      else if (isServerLimitError(error)) this.failDial(limitReachedResponse(error));
      else this.failDial(responses.dialFailed(error));
      return;
    }
    this.connectID = connectID;
    this.established = true;
    this.context.router.countToClient(1);
    this.socket.write(responses.connectionEstablished());
    const pipelined = this.pipelined;
    this.pipelined = EMPTY;
    if (pipelined.length > 0) this.session!.handlePacket(packets.data(connectID, pipelined));
    this.socket.resume();
  }

  data(_connectID: bigint, payload: Data): void {
    const start = performance.now();
    writePayloadToSocket(this.socket, payload);
    this.context.recordWriteSeconds((performance.now() - start) / 1000);
  }

  closeResponse(): void {
    this.endThenDestroy();
  }

  dialClosed(): void {
    this.socket.destroy();
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    if (this.established) this.socket.resume();
  }

  /**
   * Closed for stalling: end() flushes only if the client reads, and until
   * 'finish' the socket would hold up to the frontend bound and count in
   * http_connections. After the linger it goes, flushed or not.
   */
  abandon(lingerMs: number): void {
    if (this.lingerTimer || this.socket.destroyed) return;
    this.lingerTimer = setTimeout(HttpConnectConnection.onLingerExpired, lingerMs, this);
    this.lingerTimer.unref();
  }

  private received(chunk: Buffer): void {
    if (this.established) {
      this.session!.handlePacket(packets.data(this.connectID, chunk));
      return;
    }
    const parser = this.parser;
    if (parser === null) return; // dial in flight: reading is paused, and the bytes after the head wait in `pipelined`
    const result = parser.push(chunk);
    if (result.kind === 'need-more') return;
    this.parser = null;
    this.clearHeaderTimer();
    const { router, logger } = this.context;
    if (result.kind === 'error') {
      if (result.status === 431) router.limitMetrics.rejected('http_connect_header_bytes');
      this.failDial(responses.parseError(result));
      return;
    }
    const req = result.request;
    if (req.method !== 'CONNECT') {
      // Upstream answers 405 and may keep an HTTP/1.1 connection open for another
      // request; we always close, which every client handles (documented difference).
      this.failDial(responses.methodNotAllowed({ ...req, closeRequested: true }));
      return;
    }
    if (this.context.accepting && !this.context.accepting()) {
      this.failDial(responses.noTunnelsAvailable('server is shutting down'));
      return;
    }
    // Hold further bytes in the kernel until the tunnel exists.
    this.socket.pause();
    this.pipelined = req.rest;
    const session = router.openFrontend(this);
    this.session = session;
    if (logger.enabled(4)) logger.v(4, 'CONNECT request', { host: req.host });
    // Upstream dials Go's r.Host: the CONNECT authority, not the Host header.
    session.handlePacket(packets.dialRequest(req.host, this.context.newDialId()));
  }

  private failDial(bytes: Uint8Array): void {
    this.endThenDestroy(bytes);
  }

  /** Ends the socket (after `last`, if given) and destroys it once flushed. */
  private endThenDestroy(last?: Uint8Array): void {
    const socket = this.socket;
    if (last !== undefined) socket.end(last);
    else if (!socket.destroyed) socket.end();
    socket.once('finish', destroyWhenFinished);
  }

  private clearHeaderTimer(): void {
    if (this.headerTimer === null) return;
    clearTimeout(this.headerTimer);
    this.headerTimer = null;
  }

  private closed(): void {
    this.clearHeaderTimer();
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
    this.context.forget(this.socket);
    this.context.metrics.httpConnections.dec();
    this.session?.end();
  }
}
