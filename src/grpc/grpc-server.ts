/**
 * A small gRPC server for bidi Packet streams on Node's HTTP/2. It handles
 * exactly what konnectivity needs: routing by method path, initial metadata,
 * trailers (and trailers-only errors), keepalive pings and orderly shutdown.
 */
import http2 from 'node:http2';
import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream, ServerStreamResponseOptions } from 'node:http2';
import net, { type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { handOffRepairingAuthority } from './authority-repair.ts';
import { H2ServerSession, type H2ServerStream } from './h2-server-session.ts';
import type { H2Headers } from './h2-frames.ts';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW_BYTES, STREAM_WINDOW_BYTES, http2Settings, startKeepalive } from './http2-settings.ts';
import { PacketStream, type PacketStreamOptions } from './packet-stream.ts';
import { GrpcCode, encodeGrpcMessage } from './status.ts';

/**
 * How often every connection's socket is told to read again. Node's
 * Http2Session stops reading when a read arrives while one of its writes is
 * in progress (see read-restart.ts), and in one case it never starts again:
 * the peer sent a request and more frames, then closed the connection, while
 * the server was answering (found by fuzz/grpc-wire-fuzz.ts; reproduced with
 * a bare node:http2 server). The socket then never sees the EOF, and the
 * session, its streams and the file descriptor stay forever: any client that
 * can reach a port could exhaust the server that way. Restarting reading is a
 * no-op on a socket that reads, and HTTP/2 flow control still bounds what a
 * peer may send, so one server-wide tick is enough to free such connections
 * within a second.
 */
export const SERVER_READ_RESTART_INTERVAL_MS = 1_000;

/**
 * Response options that leave out the `date` header: grpc-go sends none, and
 * Node keeps the headers it sent with each stream. `sendDate` is what Node's
 * own compatibility layer passes to respond() for `response.sendDate`; the
 * type definitions do not list it.
 */
const NO_DATE_HEADER = { sendDate: false } as ServerStreamResponseOptions;

/** An error listener for a stream nobody reads; without one, its error would crash the process. */
function ignoreError(): void {}

interface NativeHandle {
  readStart(): number;
}

/** A server stream of either HTTP/2 implementation: Node's, or ours (h2-server-session.ts). */
export type ServerStream = ServerHttp2Stream | H2ServerStream;

export class GrpcServerCall {
  readonly method: string;
  /** The request headers; empty after `releaseMetadata`. */
  metadata: IncomingHttpHeaders;
  readonly stream: PacketStream<ServerStream>;
  readonly socket: Socket | TLSSocket;
  private readonly h2: ServerStream;
  private headersSent = false;
  private finished = false;

  /** Header name/value pairs as received; Node's header object drops or joins repeated keys. Empty after `releaseMetadata`. */
  rawHeaders: readonly string[];

  /** `method`: the handler's own name for the path, so calls share one string rather than one per stream. */
  constructor(h2: ServerStream, headers: IncomingHttpHeaders | H2Headers, streamOptions: PacketStreamOptions, rawHeaders: readonly string[] = [], method = String(headers[':path'])) {
    this.h2 = h2;
    this.rawHeaders = rawHeaders;
    this.method = method;
    this.metadata = headers as IncomingHttpHeaders;
    this.socket = ('socket' in h2 ? h2.socket : h2.session!.socket) as Socket | TLSSocket;
    this.stream = new PacketStream<ServerStream>(h2, streamOptions);
  }

  /**
   * Drops the request headers. A handler that has read what it needs calls
   * this so a long-lived call does not hold them (about 1 KB per stream).
   */
  releaseMetadata(): void {
    this.metadata = {};
    this.rawHeaders = [];
  }

  /** Every value sent for a metadata key, in order (gRPC allows repeated keys). */
  values(key: string): string[] {
    const out: string[] = [];
    for (let i = 0; i + 1 < this.rawHeaders.length; i += 2) if (this.rawHeaders[i]!.toLowerCase() === key) out.push(this.rawHeaders[i + 1]!);
    return out;
  }

  /** Metadata value when exactly one was sent, as upstream requires; otherwise undefined. */
  single(key: string): string | undefined {
    const v = this.metadata[key];
    if (Array.isArray(v)) return v.length === 1 ? v[0] : undefined;
    return v;
  }

  /** Number of values a metadata key carries (Node joins repeated keys with ', ' for some headers, arrays for others). */
  count(key: string): number {
    const v = this.metadata[key];
    if (v === undefined) return 0;
    return Array.isArray(v) ? v.length : 1;
  }

  /** Sends response headers (initial metadata). Idempotent. */
  sendHeaders(metadata: Record<string, string> = {}): void {
    // A stream the client reset is closed before it is destroyed; respond() would throw.
    if (this.headersSent || this.h2.destroyed || this.h2.closed || this.h2.headersSent) return;
    this.headersSent = true;
    try {
      this.h2.respond({ ':status': 200, 'content-type': 'application/grpc', ...metadata }, { waitForTrailers: true, ...NO_DATE_HEADER });
    } catch {
      // The stream went away between the check and the call (its session was
      // torn down while the 'stream' event was queued): nobody to answer.
    }
  }

  /** Ends the call with a status; trailers-only when no headers went out yet. */
  finish(code: number = GrpcCode.OK, message = ''): void {
    if (this.finished) return;
    this.finished = true;
    if (this.h2.destroyed || this.h2.closed) return;
    const status: Record<string, string> = { 'grpc-status': String(code) };
    if (message) status['grpc-message'] = encodeGrpcMessage(message);
    if (!this.headersSent && !this.h2.headersSent) {
      this.headersSent = true;
      try {
        this.h2.respond({ ':status': 200, 'content-type': 'application/grpc', ...status }, { endStream: true, ...NO_DATE_HEADER });
      } catch {
        // stream already gone; see sendHeaders
      }
      return;
    }
    this.h2.once('wantTrailers', () => {
      try {
        this.h2.sendTrailers(status);
      } catch {
        // stream was reset meanwhile; nothing left to tell the peer
      }
    });
    this.h2.end();
  }

  get isFinished(): boolean {
    return this.finished;
  }
}

export type GrpcHandler = (call: GrpcServerCall) => void;

export interface GrpcServerOptions {
  /** TLS options; omit for plaintext HTTP/2 with prior knowledge (unix sockets). */
  tls?: tls.TlsOptions;
  handlers: Record<string, GrpcHandler>;
  keepaliveTimeMs: number;
  /** Unanswered-ping bound (grpc-go's fixed default: 20 s). */
  keepaliveTimeoutMs?: number;
  stream?: PacketStreamOptions;
  /**
   * Which HTTP/2 server speaks to clients: 'builtin' (h2-server-session.ts,
   * the default) or Node's ('node', nghttp2; kept as a second implementation
   * the tests run our clients against).
   */
  http2?: 'builtin' | 'node';
  /**
   * Node's HTTP/2 only: let clients whose `:authority` nghttp2 refuses (a
   * unix socket path, as grpc-go < 1.57 sends) through; see
   * authority-repair.ts. The builtin server accepts any authority.
   */
  repairAuthority?: boolean;
  /**
   * A TLS handshake failed (`tlsClientError`): a refused client certificate,
   * a client that does not trust us, a scanner. It concerns that client only;
   * the owner logs and counts it. Without this the failure is ignored.
   */
  onTlsClientError?: (err: Error, socket: TLSSocket) => void;
  /** Called for every accepted HTTP/2 connection (tests use it to reach the sessions). */
  onSession?: (session: ServerHttp2Session | H2ServerSession) => void;
}

interface Route {
  method: string;
  handler: GrpcHandler;
}

export class GrpcServer {
  /**
   * What listens: a TLS server (ALPN h2 only) or a plain server for unix
   * sockets. It hands each connection to the HTTP/2 implementation.
   */
  readonly listener: net.Server | tls.Server;
  /** Node's HTTP/2 session factory ('session' and 'stream' events); it never listens itself, and with the builtin implementation it sees no connection. */
  readonly http2: http2.Http2Server;
  private readonly sessions = new Set<ServerHttp2Session | H2ServerSession>();
  /** The sockets under Node's sessions (a session only exposes a proxy of its socket). */
  private readonly sockets = new Set<net.Socket>();
  private readRestartTimer: NodeJS.Timeout | null = null;
  private readonly options: GrpcServerOptions;
  /** Keyed by path; the method name handed to each call is the handler's key, one string for every call. */
  private readonly routes: Map<string, Route>;

  constructor(options: GrpcServerOptions) {
    this.options = options;
    this.routes = new Map(Object.entries(options.handlers).map(([method, handler]) => [method, { method, handler }]));
    const base = { settings: http2Settings, maxSessionMemory: MAX_SESSION_MEMORY_MB };
    this.http2 = http2.createServer(base);
    const builtin = (options.http2 ?? 'builtin') === 'builtin';
    const accept = (socket: net.Socket): void => {
      socket.on('error', () => {}); // the session reports it
      // Small packets (dial, close, request/response) must not wait for Nagle.
      if (options.tls) socket.setNoDelay(true);
      if (builtin) this.startBuiltinSession(socket);
      else this.toNodeHttp2(socket);
    };
    if (options.tls) {
      const server = tls.createServer({ ...options.tls, ALPNProtocols: ['h2'] }, (socket) => {
        // gRPC requires h2; a client that negotiated nothing else gets closed, as grpc-go does.
        if (socket.alpnProtocol !== 'h2') {
          socket.destroy();
          return;
        }
        accept(socket);
      });
      const onTlsClientError = options.onTlsClientError;
      if (onTlsClientError) server.on('tlsClientError', (err: Error, socket: TLSSocket) => onTlsClientError(err, socket));
      this.listener = server;
    } else {
      this.listener = net.createServer(accept);
    }
    this.http2.on('session', (session: ServerHttp2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      session.on('error', () => {}); // surfaced per stream; a session error must not crash the process
      session.once('connect', () => {
        try {
          session.setLocalWindowSize(SESSION_WINDOW_BYTES);
        } catch {
          // session closed during setup
        }
      });
      startKeepalive(session, options.keepaliveTimeMs, options.keepaliveTimeoutMs);
      options.onSession?.(session);
    });
    this.http2.on('stream', (h2: ServerHttp2Stream, headers: IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
      // The client may reset the stream, or the connection may go, before
      // this event is delivered (a tick late for sockets read by JavaScript):
      // there is nobody to answer, and a handler must not see a stream
      // without a session (found by the wire fuzzer: it threw, and an
      // exception here takes the whole server down).
      if (h2.destroyed || h2.closed || h2.session === undefined) {
        h2.on('error', ignoreError);
        return;
      }
      this.dispatch(h2, headers, rawHeaders);
    });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  private startBuiltinSession(socket: net.Socket): void {
    const session = new H2ServerSession(socket, {
      streamWindowBytes: STREAM_WINDOW_BYTES,
      connectionWindowBytes: SESSION_WINDOW_BYTES,
      maxFrameBytes: http2Settings.maxFrameSize ?? 16_384,
      onStream: (h2, headers, raw) => this.dispatch(h2, headers, raw),
    });
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    startKeepalive(session, this.options.keepaliveTimeMs, this.options.keepaliveTimeoutMs);
    this.options.onSession?.(session);
  }

  private toNodeHttp2(socket: net.Socket): void {
    // Sockets go to HTTP/2 natively. Our clients and agents restart reading
    // while their writes are stuck (read-restart.ts), and one such side is
    // enough to rule out the Node-to-Node write/write deadlock.
    if (this.options.repairAuthority) {
      handOffRepairingAuthority(socket, (stream) => {
        // Only a socket that http2 reads natively needs its reads restarted;
        // a rewritten one is read by JavaScript, which keeps its own pace.
        if (stream === socket) this.trackSocket(socket);
        this.http2.emit('connection', stream);
      });
      return;
    }
    this.trackSocket(socket);
    this.http2.emit('connection', socket);
  }

  private dispatch(h2: ServerStream, headers: IncomingHttpHeaders | H2Headers, rawHeaders: string[]): void {
    const contentType = String(headers['content-type'] ?? '');
    if (headers[':method'] !== 'POST' || !contentType.startsWith('application/grpc')) {
      h2.on('error', ignoreError);
      h2.respond({ ':status': 415, 'content-type': 'text/plain' }, { endStream: false });
      h2.end(`invalid gRPC request content-type ${JSON.stringify(contentType)}`);
      return;
    }
    const path = String(headers[':path']);
    const route = this.routes.get(path);
    if (route === undefined) {
      h2.on('error', ignoreError);
      const service = path.split('/')[1] ?? '';
      const known = Object.keys(this.options.handlers).some((m) => m.split('/')[1] === service);
      const msg = known ? `unknown method ${path.split('/')[2] ?? ''} for service ${service}` : `unknown service ${service}`;
      h2.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(GrpcCode.UNIMPLEMENTED), 'grpc-message': encodeGrpcMessage(msg) }, { endStream: true });
      return;
    }
    // The call's PacketStream takes the stream's errors and reports them through onClose.
    route.handler(new GrpcServerCall(h2, headers, this.options.stream ?? {}, rawHeaders, route.method));
  }
  private trackSocket(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      if (this.sockets.size === 0 && this.readRestartTimer) {
        clearInterval(this.readRestartTimer);
        this.readRestartTimer = null;
      }
    });
    if (this.readRestartTimer) return;
    this.readRestartTimer = setInterval(() => {
      for (const s of this.sockets) {
        if (s.destroyed) continue;
        (s as unknown as { _handle?: NativeHandle | null })._handle?.readStart();
      }
    }, SERVER_READ_RESTART_INTERVAL_MS);
    this.readRestartTimer.unref();
  }

  /** Stops accepting connections; existing sessions get GOAWAY and finish their streams. */
  closeGracefully(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.listener.close(() => resolve()));
    for (const s of this.sessions) {
      try {
        s.close();
      } catch {
        // already closing
      }
    }
    return closed;
  }

  /** Tears every session down now. */
  destroy(): void {
    this.listener.close();
    for (const s of this.sessions) s.destroy();
    if (this.readRestartTimer) clearInterval(this.readRestartTimer);
    this.readRestartTimer = null;
  }
}
