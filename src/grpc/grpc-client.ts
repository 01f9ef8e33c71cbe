/**
 * gRPC client side for bidi Packet streams: one HTTP/2 session (a channel)
 * to a server over TLS or a unix socket, carrying any number of streams.
 */
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW_BYTES, http2Settings, startKeepalive } from './http2-settings.ts';
import { PacketStream, type PacketStreamOptions } from './packet-stream.ts';
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

export interface GrpcStatus {
  code: number;
  message: string;
}

export function describeTarget(t: GrpcTarget): string {
  return t.transport === 'unix' ? `unix://${t.path}` : `${net.isIPv6(t.host) ? `[${t.host}]` : t.host}:${t.port}`;
}

export class GrpcClientCall {
  readonly stream: PacketStream;
  /** Response headers (initial metadata). Rejects if the call ended without any. */
  readonly headers: Promise<IncomingHttpHeaders>;
  /** Final status, from trailers or from how the stream ended. Never rejects. */
  readonly status: Promise<GrpcStatus>;
  private readonly h2: ClientHttp2Stream;

  constructor(h2: ClientHttp2Stream, streamOptions: PacketStreamOptions) {
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
        if (!settled) reject(new GrpcStatusError(GrpcCode.UNAVAILABLE, 'stream closed before response headers'));
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
        if (statusFromHeaders) resolve(statusFromHeaders);
        else if (trailerStatus) resolve(trailerStatus);
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

export class GrpcChannel {
  readonly target: GrpcTarget;
  readonly session: ClientHttp2Session;
  private readonly options: GrpcChannelOptions;

  private constructor(target: GrpcTarget, session: ClientHttp2Session, options: GrpcChannelOptions) {
    this.target = target;
    this.session = session;
    this.options = options;
  }

  /** Opens the HTTP/2 session; resolves once the connection (and TLS handshake) is up. */
  static connect(target: GrpcTarget, options: GrpcChannelOptions = {}): Promise<GrpcChannel> {
    const base = { settings: http2Settings, maxSessionMemory: MAX_SESSION_MEMORY_MB };
    const timeoutMs = options.connectTimeoutMs ?? 20_000;
    return new Promise((resolve, reject) => {
      let socket: net.Socket;
      let session: ClientHttp2Session | null = null;
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        cleanup();
        session?.destroy();
        socket.destroy();
        reject(err);
      };
      const onAbort = (): void => fail(options.signal?.reason instanceof Error ? options.signal.reason : new Error('connect aborted'));
      const timer = setTimeout(() => fail(new Error(`timed out connecting to ${describeTarget(target)} after ${timeoutMs}ms`)), timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });

      // We open the socket (and TLS) ourselves: node:http2 would replace the
      // ALPN list with ['h2'] (dropping agent --alpn-proto values), and the
      // session must keep reading while its writes are stuck (see read-restart.ts).
      const startSession = (): void => {
        if (settled) return;
        const authority = target.transport === 'unix' ? 'http://localhost' : `https://${net.isIPv6(target.host) ? `[${target.host}]` : target.host}:${target.port}`;
        const s = http2.connect(authority, { ...base, createConnection: () => socket });
        session = s;
        keepReadingDespitePendingWrites(s, socket);
        s.once('error', (err: Error) => fail(err));
        s.once('connect', () => {
          if (settled) return;
          settled = true;
          cleanup();
          s.on('error', () => {}); // later errors surface through stream and session close
          try {
            s.setLocalWindowSize(SESSION_WINDOW_BYTES);
          } catch {
            // closed during setup
          }
          startKeepalive(s, options.keepaliveTimeMs ?? 0, options.keepaliveTimeoutMs);
          resolve(new GrpcChannel(target, s, options));
        });
      };
      if (target.transport === 'unix') {
        socket = net.connect(target.path);
        socket.once('connect', startSession);
      } else {
        const tlsOptions: ConnectionOptions = { ALPNProtocols: ['h2'], minVersion: 'TLSv1.2', ...target.tls, host: target.host, port: target.port };
        if (tlsOptions.servername === undefined && !net.isIP(target.host)) tlsOptions.servername = target.host;
        const tlsSocket = tls.connect(tlsOptions);
        tlsSocket.setNoDelay(true);
        socket = tlsSocket;
        tlsSocket.once('secureConnect', () => {
          if (tlsSocket.alpnProtocol !== 'h2') {
            fail(new Error(`server did not negotiate ALPN h2 (got ${String(tlsSocket.alpnProtocol)})`));
            return;
          }
          startSession();
        });
      }
      socket.once('error', (err: Error) => fail(err));
      socket.on('error', () => {}); // after setup the session reports errors
    });
  }

  get isClosed(): boolean {
    return this.session.closed || this.session.destroyed;
  }

  onClose(cb: () => void): void {
    if (this.isClosed) queueMicrotask(cb);
    else this.session.once('close', cb);
  }

  /** Starts a bidi call. Packets may be sent immediately; headers arrive later. */
  openStream(method: string, metadata: Record<string, string> = {}): GrpcClientCall {
    const h2 = this.session.request({
      ':method': 'POST',
      ':path': method,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': this.options.userAgent ?? 'konnectivity-ts',
      ...metadata,
    });
    h2.on('error', () => {}); // surfaced through status/onClose
    return new GrpcClientCall(h2, this.options.stream ?? {});
  }

  close(): void {
    if (!this.isClosed) this.session.close();
  }

  destroy(): void {
    if (!this.session.destroyed) this.session.destroy();
  }
}
