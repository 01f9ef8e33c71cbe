/**
 * A minimal HTTP/2 server connection (RFC 9113) for our gRPC servers, spoken
 * by us over an accepted socket (a unix socket, or TLS with ALPN h2).
 *
 * Why not node:http2: a gRPC-mode dial opens one HTTP/2 stream on the
 * frontend, and Node's server stream (a Duplex over a native nghttp2 stream,
 * header objects, several JS↔C++ crossings per frame) cost about 105k of the
 * server's ~455k main-thread instructions per gRPC dial, where an
 * HTTP-CONNECT dial costs ~355k in all (docs/benchmarks.md, session 19). It
 * also refused, before any handler ran, the `:authority` old grpc-go clients
 * send over unix sockets (authority-repair.ts was the workaround) and could
 * stop reading a socket for good (read-restart.ts); frames parsed here in
 * JavaScript have neither problem.
 *
 * What the server adds to h2-session.ts: the client preface, requests
 * (HEADERS opening a stream; trailers from the client ignored but allowed),
 * responses (`respond`, trailers after the body or a trailers-only response),
 * and GOAWAY naming the last stream we processed; streams opened after it are
 * refused. Requests are checked as RFC 9113 §8.3 asks (known pseudo-headers,
 * before regular ones, :method and :path present) but, as grpc-go does, not
 * the characters of `:authority`.
 *
 * Bounds against a hostile client, besides the shared ones: header lists
 * over MAX_HEADER_LIST_BYTES (advertised as SETTINGS_MAX_HEADER_LIST_SIZE)
 * and malformed requests reset only their stream; resets of streams not yet
 * answered beyond a burst of RESET_BURST and RESET_RATE_PER_SECOND after it
 * (the "rapid reset" attack, CVE-2023-44487; nghttp2's numbers) fail the
 * connection with ENHANCE_YOUR_CALM. nghttp2 counts every reset; resets of
 * answered streams are what a gRPC client's cancel looks like and cost the
 * server no work it had not done anyway, so they are not counted.
 */
import type net from 'node:net';
import { encodeHeaderBlock } from './hpack-encoder.ts';
import {
  CLIENT_PREFACE,
  H2_ENHANCE_YOUR_CALM,
  H2_PROTOCOL_ERROR,
  H2_REFUSED_STREAM,
  H2_STREAM_CLOSED,
  H2ProtocolError,
  SETTINGS_MAX_HEADER_LIST_SIZE,
  type H2Headers,
} from './h2-frames.ts';
import { type DecodedHeaderBlock, H2Session, type H2SessionOptions } from './h2-session.ts';
import { H2Stream } from './h2-stream.ts';

/** Our SETTINGS_MAX_HEADER_LIST_SIZE: Node's default, which our frontend advertised before. */
export const MAX_HEADER_LIST_BYTES = 65_535;
/** Stream resets a client may send at once, and per second after that. */
export const RESET_BURST = 1_000;
export const RESET_RATE_PER_SECOND = 33;

const REQUEST_PSEUDO_HEADERS = new Set([':method', ':scheme', ':authority', ':path']);

export interface H2ServerSessionOptions extends H2SessionOptions {
  /** A new request; the handler attaches its listeners before this returns. */
  onStream: (stream: H2ServerStream, headers: H2Headers, raw: string[]) => void;
}

export interface H2RespondOptions {
  /** Trailers-only: END_STREAM on the response headers. */
  endStream?: boolean;
  /** End with trailers: after end(), 'wantTrailers' is emitted when the body is out, and sendTrailers() gives them. */
  waitForTrailers?: boolean;
}

export class H2ServerStream extends H2Stream {
  /** The connection's socket (Node's server stream reaches it through its session). */
  readonly socket: net.Socket;
  headersSent = false;
  private readonly connection: H2ServerSession;
  private waitForTrailers = false;
  private trailers: Array<[string, string]> | null = null;

  constructor(connection: H2ServerSession, id: number, sendWindow: number, receiveWindow: number) {
    super(connection, id, sendWindow, receiveWindow);
    this.connection = connection;
    this.socket = connection.socket;
  }

  /** Sends the response headers (`:status` first). Throws when they were sent already or the stream is gone. */
  respond(headers: Record<string, string | number | readonly string[]>, options: H2RespondOptions = {}): void {
    if (this.destroyed) throw new Error('HTTP/2 stream is closed');
    if (this.headersSent) throw new Error('HTTP/2 response headers already sent');
    const fields: Array<[string, string]> = [[':status', String(headers[':status'] ?? 200)]];
    for (const name in headers) {
      if (name === ':status') continue;
      const value = headers[name]!;
      // An array is a repeated field, as in Node's respond().
      if (Array.isArray(value)) for (const v of value as readonly string[]) fields.push([name, v]);
      else fields.push([name, String(value)]);
    }
    const block = encodeHeaderBlock(fields); // throws on a bad field before any state changes
    this.headersSent = true;
    this.waitForTrailers = options.waitForTrailers === true && options.endStream !== true;
    this.connection.sendHeaderBlock(this.id, block, options.endStream === true);
    if (options.endStream === true) this.endedWithHeaders();
  }

  /** The trailers to end with; valid only from a 'wantTrailers' listener (as in Node). */
  sendTrailers(headers: Record<string, string>): void {
    this.trailers = Object.entries(headers);
  }

  override write(chunk: Uint8Array): boolean {
    // As Node does: a body without a response implies 200.
    if (!this.headersSent && !this.destroyed) this.respond({ ':status': 200 });
    return super.write(chunk);
  }

  override end(chunk?: Uint8Array | string): void {
    if (!this.headersSent && !this.destroyed) {
      if (chunk === undefined) {
        this.respond({ ':status': 200 }, { endStream: true });
        return;
      }
      this.respond({ ':status': 200 });
    }
    super.end(chunk);
  }

  protected override get endsWithTrailers(): boolean {
    return this.waitForTrailers;
  }

  /** @internal */
  override takeTrailers(): Array<[string, string]> | null {
    if (!this.waitForTrailers) return null;
    this.emit('wantTrailers');
    return this.trailers ?? [];
  }

  /** @internal A header block after the request's: trailers, which must end the stream. */
  receiveHeaders(endStream: boolean): void {
    if (this.remoteEnded || !endStream) {
      this.close(this.remoteEnded ? H2_STREAM_CLOSED : H2_PROTOCOL_ERROR);
      return;
    }
    this.remoteEnd();
  }

  /** @internal The request's own header block carried END_STREAM. */
  requestEnded(): void {
    if (!this.destroyed) this.remoteEnd();
  }
}

export class H2ServerSession extends H2Session<H2ServerStream> {
  protected readonly peerRole = 'client';
  private readonly onStream: H2ServerSessionOptions['onStream'];
  private prefaceBytes = 0;
  private lastClientStreamId = 0;
  /** Client-initiated IDs above this arrived after our GOAWAY and are refused. */
  private goawayLastStreamId = Number.POSITIVE_INFINITY;
  private resetTokens = RESET_BURST;
  private resetTokensAt = performance.now();

  constructor(socket: net.Socket, options: H2ServerSessionOptions) {
    super(socket, options, null, [[SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_BYTES]]);
    this.onStream = options.onStream;
  }

  override close(): void {
    if (!this.closed) this.goawayLastStreamId = this.lastClientStreamId;
    super.close();
  }

  /** @internal */
  sendHeaderBlock(streamId: number, block: Buffer, endStream: boolean): void {
    if (!this.destroyed) this.writeHeaderBlock(streamId, block, endStream);
  }

  protected override onSocketData(chunk: Buffer): void {
    if (this.prefaceBytes < CLIENT_PREFACE.length) {
      if (this.destroyed) return;
      const need = CLIENT_PREFACE.length - this.prefaceBytes;
      const part = chunk.subarray(0, need);
      if (!part.equals(CLIENT_PREFACE.subarray(this.prefaceBytes, this.prefaceBytes + part.length))) {
        this.protocolFailure(new H2ProtocolError(H2_PROTOCOL_ERROR, 'the connection did not start with the HTTP/2 client preface (is the client speaking HTTP/1.1 or TLS to a plaintext port?)'));
        return;
      }
      this.prefaceBytes += part.length;
      if (chunk.length <= need) return;
      chunk = chunk.subarray(need);
    }
    super.onSocketData(chunk);
  }

  protected onHeaderBlock(streamId: number, endStream: boolean, block: DecodedHeaderBlock): void {
    const existing = this.streams.get(streamId);
    if (existing !== undefined) {
      existing.receiveHeaders(endStream);
      return;
    }
    if (streamId % 2 === 0) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `HEADERS on server-initiated stream ${streamId}`);
    if (streamId <= this.lastClientStreamId) {
      // A stream that already closed (we reset it, or it finished): HEADERS on it are a stream error.
      this.sendReset(streamId, H2_STREAM_CLOSED);
      return;
    }
    this.lastClientStreamId = streamId;
    if (streamId > this.goawayLastStreamId) {
      this.sendReset(streamId, H2_REFUSED_STREAM);
      return;
    }
    if (block.listBytes > MAX_HEADER_LIST_BYTES || !wellFormedRequest(block.raw)) {
      this.sendReset(streamId, H2_PROTOCOL_ERROR);
      return;
    }
    const stream = new H2ServerStream(this, streamId, this.peerInitialWindow, this.initialReceiveWindow);
    this.streams.set(streamId, stream);
    this.onStream(stream, block.headers, block.raw);
    if (endStream) stream.requestEnded();
  }

  protected isIdle(streamId: number): boolean {
    return streamId % 2 === 0 || streamId > this.lastClientStreamId;
  }

  protected get lastPeerStreamId(): number {
    return this.lastClientStreamId;
  }

  /** The client is going away; its open streams finish. */
  protected onGoawayReceived(): void {}

  protected override onResetReceived(streamId: number, code: number): void {
    // Only a reset that throws away work not yet answered is the attack's pattern. A client that
    // cancels an answered stream is done with it: kube-apiserver's reusable tunnel cancels every
    // Proxy stream after its CLOSE_RSP, one RST_STREAM per dial at whatever rate it dials.
    if (this.streams.get(streamId)?.headersSent === false) this.takeResetToken();
    super.onResetReceived(streamId, code);
  }

  private takeResetToken(): void {
    const now = performance.now();
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetTokensAt) / 1000) * RESET_RATE_PER_SECOND);
    this.resetTokensAt = now;
    if (this.resetTokens < 1) throw new H2ProtocolError(H2_ENHANCE_YOUR_CALM, `client reset streams faster than ${RESET_RATE_PER_SECOND} a second after a burst of ${RESET_BURST}`);
    this.resetTokens -= 1;
  }
}

/** RFC 9113 §8.3.1: only request pseudo-headers, all before regular fields, :method and :path present. */
function wellFormedRequest(raw: readonly string[]): boolean {
  let regularSeen = false;
  let method = false;
  let path = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) !== 58 /* ':' */) {
      regularSeen = true;
      continue;
    }
    if (regularSeen || !REQUEST_PSEUDO_HEADERS.has(name)) return false;
    if (name === ':method') method = true;
    else if (name === ':path') path = raw[i + 1] !== '';
  }
  return method && path;
}
