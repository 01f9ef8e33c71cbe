/**
 * A minimal HTTP/2 client connection (RFC 9113) for gRPC calls, spoken by
 * us over a socket we already have (a unix socket, or TLS with ALPN h2).
 * The client library's tunnels and the agent's links to servers use it.
 *
 * Why not node:http2: the client library opens one HTTP/2 stream per dial
 * (as kube-apiserver does), and Node's client stream (a Duplex on a native
 * nghttp2 stream, with async hooks, header objects and several JS↔C++
 * crossings per frame) was the largest single cost of a gRPC-mode dial in
 * the client process (docs/benchmarks.md, session 19). Here a stream is a
 * small EventEmitter; frames are parsed in JavaScript straight from the
 * socket's reads and written with one corked writev per event-loop turn
 * (h2-session.ts, shared with our server side).
 *
 * What the client adds: the connection preface, requests (HEADERS, with a
 * stateless HPACK encoder), responses and trailers in, and GOAWAY from the
 * server refusing the streams it never processed. Server push is refused
 * (SETTINGS_ENABLE_PUSH 0). No priorities, no 1xx responses.
 *
 * The surface mirrors the parts of Node's ClientHttp2Session and
 * ClientHttp2Stream that GrpcChannel, GrpcClientCall and PacketStream use,
 * so those work on either.
 */
import type net from 'node:net';
import { encodeHeaderBlock } from './hpack-encoder.ts';
import { CLIENT_PREFACE, H2_PROTOCOL_ERROR, H2_REFUSED_STREAM, H2_STREAM_CLOSED, MAX_STREAM_ID, H2ProtocolError, type H2Headers } from './h2-frames.ts';
import { type DecodedHeaderBlock, H2Session, type H2SessionOptions } from './h2-session.ts';
import { H2Stream } from './h2-stream.ts';

export {
  H2_CANCEL,
  H2_COMPRESSION_ERROR,
  H2_FLOW_CONTROL_ERROR,
  H2_FRAME_SIZE_ERROR,
  H2_INTERNAL_ERROR,
  H2_NO_ERROR,
  H2_PROTOCOL_ERROR,
  H2_REFUSED_STREAM,
  H2_STREAM_CLOSED,
  H2ProtocolError,
  H2StreamResetError,
  type H2Headers,
} from './h2-frames.ts';

export interface H2ClientSessionOptions extends H2SessionOptions {
  /** `:authority` of every request (host, or host:port). */
  authority: string;
  scheme: 'http' | 'https';
}

export class H2ClientStream extends H2Stream {
  private headersSeen = false;

  /** @internal A complete header block: the response headers, then (ending the stream) trailers. */
  receiveHeaders(headers: H2Headers, raw: string[], endStream: boolean): void {
    if (this.remoteEnded) {
      this.close(H2_STREAM_CLOSED);
      return;
    }
    if (!this.headersSeen) {
      this.headersSeen = true;
      this.emit('response', headers, 0, raw);
    } else if (!endStream) {
      // Only trailers may follow the response headers, and they end the stream.
      this.close(H2_PROTOCOL_ERROR);
      return;
    } else {
      this.emit('trailers', headers, 0, raw);
    }
    if (endStream && !this.destroyed) this.remoteEnd();
  }
}

export class H2ClientSession extends H2Session<H2ClientStream> {
  protected readonly peerRole = 'server';
  private readonly authority: string;
  private readonly scheme: string;
  private nextStreamId = 1;

  constructor(socket: net.Socket, options: H2ClientSessionOptions) {
    super(socket, options, CLIENT_PREFACE, []);
    this.authority = options.authority;
    this.scheme = options.scheme;
  }

  /** Opens a stream with these request headers (pseudo-headers may be given; :scheme and :authority are added). */
  request(headers: Record<string, string>): H2ClientStream {
    if (this.destroyed || this.closed) throw new Error('HTTP/2 session is closed');
    if (this.streams.size >= this.peerMaxConcurrentStreams) throw new Error(`HTTP/2 session has ${this.streams.size} streams open, the peer's limit`);
    const id = this.nextStreamId;
    if (id > MAX_STREAM_ID) {
      this.close();
      throw new Error('HTTP/2 session ran out of stream IDs');
    }
    const fields: [string, string][] = [
      [':method', headers[':method'] ?? 'POST'],
      [':scheme', this.scheme],
      [':path', headers[':path'] ?? '/'],
      [':authority', headers[':authority'] ?? this.authority],
    ];
    for (const [name, value] of Object.entries(headers)) if (name[0] !== ':') fields.push([name.toLowerCase(), value]);
    const block = encodeHeaderBlock(fields); // throws on a bad field before any state changes
    this.nextStreamId += 2;
    const stream = new H2ClientStream(this, id, this.peerInitialWindow, this.initialReceiveWindow);
    this.streams.set(id, stream);
    this.writeHeaderBlock(id, block, false);
    return stream;
  }

  protected onHeaderBlock(streamId: number, endStream: boolean, block: DecodedHeaderBlock): void {
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (this.isIdle(streamId)) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `HEADERS on idle stream ${streamId}`);
      return;
    }
    stream.receiveHeaders(block.headers, block.raw, endStream);
  }

  /** A client-initiated ID we have not opened yet (server-initiated IDs are even; push is off). */
  protected isIdle(streamId: number): boolean {
    return streamId % 2 === 0 || streamId >= this.nextStreamId;
  }

  /** We accept no streams from the server. */
  protected get lastPeerStreamId(): number {
    return 0;
  }

  protected onGoawayReceived(lastStreamId: number): void {
    // Streams the server never processed may be retried elsewhere (REFUSED_STREAM); the rest finish.
    for (const s of [...this.streams.values()]) if (s.id > lastStreamId) s.reset(H2_REFUSED_STREAM);
  }
}
