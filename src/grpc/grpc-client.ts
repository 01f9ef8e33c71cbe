/**
 * gRPC client side for bidi Packet streams: one HTTP/2 session (a channel)
 * to a server over TLS or a unix socket, carrying any number of streams.
 */
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { H2ClientSession, type H2ClientStream } from './h2-client-session.ts';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW_BYTES, STREAM_WINDOW_BYTES, http2Settings, startKeepalive } from './http2-settings.ts';
import { PacketStream, type Http2StreamLike, type PacketStreamOptions } from './packet-stream.ts';
import { keepReadingDespitePendingWrites } from './read-restart.ts';
import { GrpcCode, GrpcStatusError, decodeGrpcMessage } from './status.ts';

export type GrpcTarget =
  | { transport: 'unix'; path: string }
  | { transport: 'tls'; host: string; port: number; tls: ConnectionOptions };

export interface GrpcChannelOptions {
  keepaliveTimeMs?: number;
  /** How long a keepalive ping may go unanswered before the connection is dropped (grpc-go's fixed default: 20 s). */
  keepaliveTimeoutMs?: number;
  connectTimeoutMs?: number;
  signal?: AbortSignal;
  userAgent?: string;
  stream?: PacketStreamOptions;
}

/** What GrpcClientCall needs of a client stream: Node's, or our own client's (h2-client-session.ts). */
export interface ClientStreamLike extends Http2StreamLike {
  readonly rstCode?: number | undefined;
  end(): unknown;
  once(event: 'response' | 'trailers', listener: (headers: IncomingHttpHeaders) => void): unknown;
  once(event: 'close', listener: () => void): unknown;
}

/** What GrpcChannel needs of a client session: Node's ClientHttp2Session, or our H2ClientSession. */
interface ClientSessionLike {
  readonly closed: boolean;
  readonly destroyed: boolean;
  request(headers: Record<string, string>): ClientStreamLike;
  close(): void;
  destroy(err?: Error): void;
  ping(callback: (err: Error | null) => void): boolean;
  once(event: 'close', listener: () => void): unknown;
}

type StreamOf<S> = S extends H2ClientSession ? H2ClientStream : ClientHttp2Stream;

export interface GrpcStatus {
  code: number;
  message: string;
}

/**
 * What the client saw of its connection before any stream could finish:
 * the socket error or EOF, and whether the server's HTTP/2 preface (its
 * SETTINGS frame) ever arrived. Recorded before the session exists, so a
 * stream that dies without headers can say why instead of only that it did.
 */
class ConnectionWitness {
  prefaceReceived = false;
  socketError: Error | null = null;
  ended = false;
  /** Our own client certificate, for the hint on a silent close (TLS only). */
  clientCertificate: { subject: string; issuer: string; validTo: string } | null = null;

  /**
   * grpc-go's wording for a transport that failed under a stream
   * ("connection error: desc = ..."), or null while nothing went wrong.
   * With TLS 1.3 the client's side of the handshake completes before the
   * server has checked the client certificate, so a refused certificate
   * surfaces as the first read: grpc-go then says "error reading server
   * preface", and so do we.
   */
  describe(): string | null {
    if (this.prefaceReceived) return this.socketError ? connectionError(`error reading from server: ${tlsErrorReason(this.socketError)}`) : null;
    if (this.socketError) return connectionError(`error reading server preface: ${tlsErrorReason(this.socketError)}`);
    if (!this.ended) return null;
    // A Node server refuses a client certificate it cannot verify (unknown CA,
    // expired) by closing the connection without a TLS alert: say what is likely.
    const cert = this.clientCertificate;
    if (!cert) return connectionError('error reading server preface: EOF');
    const expired = Date.parse(cert.validTo) < Date.now() ? `; it expired at ${new Date(cert.validTo).toISOString()}` : '';
    return connectionError(
      `error reading server preface: EOF (the server closed the connection right after the TLS handshake, as a server does that rejects the client certificate; ours is ${cert.subject}, issued by ${cert.issuer}${expired})`,
    );
  }
}

/** grpc-go's `connection error: desc = %q`. */
function connectionError(desc: string): string {
  return `connection error: desc = ${JSON.stringify(desc)}`;
}

/**
 * The short reason of a TLS failure: OpenSSL's reason string for alerts and
 * handshake errors ("tlsv13 alert certificate required"), Node's text for its
 * own certificate checks ("self-signed certificate in certificate chain").
 */
export function tlsErrorReason(err: Error): string {
  const reason = (err as Error & { reason?: unknown }).reason;
  if (typeof reason === 'string' && reason !== '') return reason;
  // Node 24 appends advice about the system trust store to verification
  // errors; our peers trust only the CA files they are given (--ca-cert), so
  // the advice would mislead.
  return err.message.replace(/; if the root CA is installed locally, try running Node\.js with --use-system-ca$/, '');
}

/** The error a failed connection attempt rejects with when TLS refused it. */
function handshakeFailure(err: Error): GrpcStatusError {
  const failure = new GrpcStatusError(GrpcCode.UNAVAILABLE, connectionError(`transport: authentication handshake failed: ${tlsErrorReason(err)}`));
  failure.cause = err;
  return failure;
}

export function describeTarget(t: GrpcTarget): string {
  return t.transport === 'unix' ? `unix://${t.path}` : `${net.isIPv6(t.host) ? `[${t.host}]` : t.host}:${t.port}`;
}

export class GrpcClientCall<S extends ClientStreamLike = ClientHttp2Stream> {
  readonly stream: PacketStream<S>;
  /** Response headers (initial metadata). Rejects if the call ended without any. */
  readonly headers: Promise<IncomingHttpHeaders>;
  /** Final status, from trailers or from how the stream ended. Never rejects. */
  readonly status: Promise<GrpcStatus>;
  private readonly h2: S;

  /** `connectionLoss` tells why the connection under the stream failed, if it did (see ConnectionWitness). */
  constructor(h2: S, streamOptions: PacketStreamOptions, connectionLoss: () => string | null = () => null) {
    this.h2 = h2;
    this.stream = new PacketStream(h2, streamOptions);
    let statusFromHeaders: GrpcStatus | null = null;
    let trailerStatus: GrpcStatus | null = null;
    this.headers = new Promise((resolve, reject) => {
      let settled = false;
      h2.once('response', (headers: IncomingHttpHeaders) => {
        settled = true;
        const httpStatus = Number(headers[':status']);
        if (headers['grpc-status'] !== undefined) {
          // Trailers-only response: the call failed (or ended) before any message.
          statusFromHeaders = { code: Number(headers['grpc-status']), message: decodeGrpcMessage(String(headers['grpc-message'] ?? '')) };
          reject(new GrpcStatusError(statusFromHeaders.code, statusFromHeaders.message));
          this.closeSend(); // the call is over; ending our side lets the stream close
          return;
        }
        if (httpStatus !== 200) {
          statusFromHeaders = { code: GrpcCode.UNKNOWN, message: `unexpected HTTP status code ${httpStatus}` };
          reject(new GrpcStatusError(statusFromHeaders.code, statusFromHeaders.message));
          return;
        }
        resolve(headers);
      });
      // Only build the error when it is needed: an Error's stack capture is a measurable share of every dial.
      h2.once('close', () => {
        if (!settled) reject(new GrpcStatusError(GrpcCode.UNAVAILABLE, connectionLoss() ?? 'stream closed before response headers'));
      });
    });
    this.headers.catch(() => {});
    h2.once('trailers', (trailers: IncomingHttpHeaders) => {
      trailerStatus = {
        code: trailers['grpc-status'] === undefined ? GrpcCode.UNKNOWN : Number(trailers['grpc-status']),
        message: decodeGrpcMessage(String(trailers['grpc-message'] ?? '')),
      };
      // The server finished the call: ending our side lets the stream close and
      // the status resolve, even if our owner never half-closes.
      this.closeSend();
    });
    this.status = new Promise((resolve) => {
      h2.once('close', () => {
        if (statusFromHeaders) {
          resolve(statusFromHeaders);
          return;
        }
        if (trailerStatus) {
          resolve(trailerStatus);
          return;
        }
        // A dying session cancels its streams; the failed connection is the real cause then.
        const lost = connectionLoss();
        if (lost !== null) resolve({ code: GrpcCode.UNAVAILABLE, message: lost });
        else if (h2.rstCode === http2.constants.NGHTTP2_CANCEL) resolve({ code: GrpcCode.CANCELLED, message: 'stream cancelled' });
        else resolve({ code: GrpcCode.UNAVAILABLE, message: `stream reset (HTTP/2 code ${h2.rstCode ?? 'none'})` });
      });
    });
  }

  /** Half-close: no more packets from us; the server may keep sending. */
  closeSend(): void {
    if (!this.h2.destroyed && this.h2.writable) this.h2.end();
  }

  /** Cancel the call (RST_STREAM CANCEL). */
  cancel(): void {
    if (!this.h2.destroyed) this.h2.close(http2.constants.NGHTTP2_CANCEL);
  }
}

/** Which HTTP/2 client a channel speaks: Node's (node:http2), or ours (h2-client-session.ts). */
export type Http2ClientKind = 'node' | 'builtin';

export class GrpcChannel<S extends ClientSessionLike = ClientHttp2Session> {
  readonly target: GrpcTarget;
  readonly session: S;
  private readonly options: GrpcChannelOptions;
  private readonly witness: ConnectionWitness;

  private constructor(target: GrpcTarget, session: S, options: GrpcChannelOptions, witness: ConnectionWitness) {
    this.target = target;
    this.session = session;
    this.options = options;
    this.witness = witness;
  }

  /** Why the connection failed (grpc-go's "connection error: desc = ..."), or null if it has not. */
  get connectionError(): string | null {
    return this.witness.describe();
  }

  /**
   * Opens a channel on Node's HTTP/2 client; resolves once the connection
   * (and TLS handshake) is up. Nothing in src/ uses it since session 19; the
   * tests do, as a second client stack (nghttp2) against our server.
   */
  static async connect(target: GrpcTarget, options: GrpcChannelOptions = {}): Promise<GrpcChannel> {
    const { socket, witness } = await connectTransport(target, options);
    return new Promise((resolve, reject) => {
      const authority = target.transport === 'unix' ? 'http://localhost' : `https://${hostPort(target)}`;
      const s = http2.connect(authority, { settings: http2Settings, maxSessionMemory: MAX_SESSION_MEMORY_MB, createConnection: () => socket });
      keepReadingDespitePendingWrites(s, socket);
      s.once('remoteSettings', () => (witness.prefaceReceived = true));
      s.once('error', (err: Error) => {
        s.destroy();
        socket.destroy();
        reject(err);
      });
      s.once('connect', () => {
        s.on('error', () => {}); // later errors surface through stream and session close
        try {
          s.setLocalWindowSize(SESSION_WINDOW_BYTES);
        } catch {
          // closed during setup
        }
        startKeepalive(s, options.keepaliveTimeMs ?? 0, options.keepaliveTimeoutMs);
        resolve(new GrpcChannel(target, s, options, witness));
      });
    });
  }

  /**
   * Opens a channel on our own HTTP/2 client (h2-client-session.ts): the
   * client library's tunnels, where a stream per dial made Node's client the
   * largest cost of a dial, and the agent's links. Same settings and windows
   * as `connect`; no read restarts needed (it reads whenever bytes arrive).
   */
  static async connectBuiltin(target: GrpcTarget, options: GrpcChannelOptions = {}): Promise<GrpcChannel<H2ClientSession>> {
    const { socket, witness } = await connectTransport(target, options);
    const s = new H2ClientSession(socket, {
      authority: target.transport === 'unix' ? 'localhost' : hostPort(target),
      scheme: target.transport === 'unix' ? 'http' : 'https',
      streamWindowBytes: STREAM_WINDOW_BYTES,
      connectionWindowBytes: SESSION_WINDOW_BYTES,
      maxFrameBytes: http2Settings.maxFrameSize ?? 16_384,
    });
    s.once('remoteSettings', () => (witness.prefaceReceived = true));
    startKeepalive(s, options.keepaliveTimeMs ?? 0, options.keepaliveTimeoutMs);
    return new GrpcChannel(target, s, options, witness);
  }

  get isClosed(): boolean {
    return this.session.closed || this.session.destroyed;
  }

  onClose(cb: () => void): void {
    if (this.isClosed) queueMicrotask(cb);
    else this.session.once('close', cb);
  }

  /** Starts a bidi call. Packets may be sent immediately; headers arrive later. */
  openStream(method: string, metadata: Record<string, string> = {}): GrpcClientCall<StreamOf<S>> {
    const h2 = this.session.request({
      ':method': 'POST',
      ':path': method,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': this.options.userAgent ?? 'konnectivity-ts',
      ...metadata,
    }) as StreamOf<S>;
    h2.on('error', () => {}); // surfaced through status/onClose
    return new GrpcClientCall(h2, this.options.stream ?? {}, () => this.witness.describe());
  }

  close(): void {
    if (!this.isClosed) this.session.close();
  }

  destroy(): void {
    if (!this.session.destroyed) this.session.destroy();
  }
}

function hostPort(target: { host: string; port: number }): string {
  return `${net.isIPv6(target.host) ? `[${target.host}]` : target.host}:${target.port}`;
}

/**
 * The connection under a channel: a unix socket, or TCP with TLS (ALPN h2
 * required). We open it ourselves: node:http2 would replace the ALPN list
 * with ['h2'] (dropping agent --alpn-proto values), and the Node session must
 * keep reading while its writes are stuck (see read-restart.ts).
 */
function connectTransport(target: GrpcTarget, options: GrpcChannelOptions): Promise<{ socket: net.Socket; witness: ConnectionWitness }> {
  const timeoutMs = options.connectTimeoutMs ?? 20_000;
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    let settled = false;
    const witness = new ConnectionWitness();
    // TLS only: set once TCP is up and the handshake is what can still fail.
    let handshaking = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      socket.destroy();
      reject(err);
    };
    const ready = (): void => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve({ socket, witness });
    };
    const onAbort = (): void => fail(options.signal?.reason instanceof Error ? options.signal.reason : new Error('connect aborted'));
    const timer = setTimeout(() => fail(new Error(`timed out connecting to ${describeTarget(target)} after ${timeoutMs}ms`)), timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (target.transport === 'unix') {
      socket = net.connect(target.path);
      socket.once('connect', ready);
    } else {
      const tlsOptions: ConnectionOptions = { ALPNProtocols: ['h2'], minVersion: 'TLSv1.2', ...target.tls, host: target.host, port: target.port };
      if (tlsOptions.servername === undefined && !net.isIP(target.host)) tlsOptions.servername = target.host;
      const tlsSocket = tls.connect(tlsOptions);
      tlsSocket.setNoDelay(true);
      socket = tlsSocket;
      tlsSocket.once('connect', () => (handshaking = true));
      tlsSocket.once('secureConnect', () => {
        handshaking = false;
        const own = tlsSocket.getCertificate();
        if (own && 'subject' in own && own.valid_to) witness.clientCertificate = { subject: formatName(own.subject), issuer: formatName(own.issuer), validTo: own.valid_to };
        if (tlsSocket.alpnProtocol !== 'h2') {
          fail(new Error(`server did not negotiate ALPN h2 (got ${String(tlsSocket.alpnProtocol)})`));
          return;
        }
        ready();
      });
    }
    // Registered before the HTTP/2 session's own listeners: the witness knows
    // the cause before the session fails its streams.
    socket.once('error', (err: Error) => fail(handshaking ? handshakeFailure(err) : err));
    socket.on('error', (err: Error) => (witness.socketError ??= err));
    socket.once('end', () => (witness.ended = true));
  });
}

/** `CN=konnectivity-agent` from Node's parsed subject or issuer (repeated attributes joined with `+`). */
function formatName(name: tls.Certificate | undefined): string {
  const parts = Object.entries(name ?? {}).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : String(v)}`);
  return parts.length > 0 ? parts.join(', ') : '(empty name)';
}
