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
 * socket's reads and written with one corked writev per event-loop turn.
 *
 * What it does: the client preface and SETTINGS; HEADERS (+ CONTINUATION)
 * out, with a stateless HPACK encoder, and in, through HpackDecoder; DATA
 * both ways with connection and stream flow control (receive credit goes back
 * only as a stream's reader takes the bytes, so a paused stream pushes back on
 * its sender alone); RST_STREAM both ways; PING (answered, and sent for
 * keepalive); GOAWAY both ways; peer SETTINGS (initial window, frame size,
 * concurrent streams). Server push is refused (SETTINGS_ENABLE_PUSH 0).
 *
 * It only implements what a gRPC client needs: no priorities, no request
 * bodies beyond DATA, no 1xx responses. A peer that breaks the protocol gets
 * a GOAWAY with the error code and the connection is closed, failing its
 * streams; nothing else in the process is affected.
 *
 * The surface mirrors the parts of Node's ClientHttp2Session and
 * ClientHttp2Stream that GrpcChannel, GrpcClientCall and PacketStream use,
 * so those work on either.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { HpackDecoder, HpackError } from './hpack-decoder.ts';
import { encodeHeaderBlock } from './hpack-encoder.ts';

const FRAME_HEADER_BYTES = 9;
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;

/** HTTP/2 error codes (RFC 9113 §7), the ones we send or read. */
export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_INTERNAL_ERROR = 0x2;
export const H2_FLOW_CONTROL_ERROR = 0x3;
export const H2_STREAM_CLOSED = 0x5;
export const H2_FRAME_SIZE_ERROR = 0x6;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
export const H2_COMPRESSION_ERROR = 0x9;

const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_MAX_FRAME_SIZE = 16_384;
const MAX_STREAM_ID = 2 ** 31 - 1;
/** A stream reports backpressure (write returns false) from this many queued bytes, as Node's streams do. */
const STREAM_HIGH_WATER_BYTES = 16 * 1024;
/** Bound on one header block (HEADERS + CONTINUATION) from the peer. */
const MAX_HEADER_BLOCK_BYTES = 256 * 1024;

export interface H2ClientSessionOptions {
  /** `:authority` of every request (host, or host:port). */
  authority: string;
  scheme: 'http' | 'https';
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: what the peer may send on one stream before we read it. */
  streamWindowBytes: number;
  /** Our connection-level receive window. */
  connectionWindowBytes: number;
  /** Our SETTINGS_MAX_FRAME_SIZE. */
  maxFrameBytes: number;
}

/** Response headers or trailers, shaped like Node's IncomingHttpHeaders. */
export type H2Headers = Record<string, string | string[] | undefined>;

/** A stream the peer reset with an error code (RST_STREAM, or REFUSED_STREAM through GOAWAY). */
export class H2StreamResetError extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`stream reset by peer (HTTP/2 code ${code})`);
    this.name = 'H2StreamResetError';
    this.code = code;
  }
}

/** The peer broke the protocol; the connection is failed with this code. */
export class H2ProtocolError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = 'H2ProtocolError';
    this.code = code;
  }
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h[0] = (length >>> 16) & 0xff;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return h;
}

function u32Payload(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

function decodeHeaders(fields: ReadonlyArray<{ name: Uint8Array; value: Uint8Array }>): { headers: H2Headers; raw: string[] } {
  const headers: H2Headers = {};
  const raw: string[] = [];
  for (const f of fields) {
    const name = Buffer.from(f.name.buffer, f.name.byteOffset, f.name.byteLength).toString('latin1');
    const value = Buffer.from(f.value.buffer, f.value.byteOffset, f.value.byteLength).toString('latin1');
    raw.push(name, value);
    const prev = headers[name];
    if (prev === undefined) headers[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else headers[name] = [prev, value];
  }
  return { headers, raw };
}

export class H2ClientStream extends EventEmitter {
  readonly id: number;
  /** RST_STREAM code when the stream was reset (by either side or with its connection). */
  rstCode: number | undefined = undefined;
  /** Gone: both sides ended, or reset. */
  destroyed = false;
  /** Node's streams expose their session; ours has none (see read-restart.ts, which only Node needs). */
  readonly session = undefined;

  private readonly owner: H2ClientSession;
  /** What we may still send on this stream (the peer's window). */
  sendWindow: number;
  /** What the peer may still send us before we return credit. */
  private receiveWindow: number;
  private creditOwed = 0;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private endQueued = false;
  private localEnded = false;
  private remoteEnded = false;
  private endEmitted = false;
  private needDrain = false;
  private paused = false;
  private readonly inbox: Buffer[] = [];
  private headersSeen = false;

  constructor(owner: H2ClientSession, id: number, sendWindow: number, receiveWindow: number) {
    super();
    this.owner = owner;
    this.id = id;
    this.sendWindow = sendWindow;
    this.receiveWindow = receiveWindow;
  }

  get writable(): boolean {
    return !this.destroyed && !this.endQueued;
  }

  /** Bytes queued here that flow control has not let out yet. */
  get writableLength(): number {
    return this.queuedBytes;
  }

  /** Queues bytes as DATA; false once this many are waiting for window (then 'drain' follows). */
  write(chunk: Uint8Array): boolean {
    if (!this.writable) return false;
    if (chunk.length > 0) {
      this.queue.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.queuedBytes += chunk.length;
      this.owner.flush(this);
    }
    if (this.queuedBytes >= STREAM_HIGH_WATER_BYTES) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** Writes are batched per event-loop turn anyway; kept for Node's stream surface. */
  cork(): void {}
  uncork(): void {}

  /** Half-close: END_STREAM after whatever is queued. */
  end(): void {
    if (!this.writable) return;
    this.endQueued = true;
    this.owner.flush(this);
  }

  /** Stops delivering 'data'; what arrives meanwhile waits here and is not credited back. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    process.nextTick(() => this.deliverInbox());
  }

  /** Abortive close: RST_STREAM with `code` (CANCEL by default). */
  close(code: number = H2_CANCEL): void {
    if (this.destroyed) return;
    this.owner.sendReset(this.id, code);
    this.finish(code);
  }

  // --- called by the session ---------------------------------------------------

  /** @internal Takes up to `max` queued bytes for one DATA frame; `last` when END_STREAM may ride on it. */
  takeChunk(max: number): { chunk: Buffer; last: boolean } | null {
    const first = this.queue[0];
    if (first === undefined) return null;
    let chunk: Buffer;
    if (first.length <= max) {
      chunk = first;
      this.queue.shift();
    } else {
      chunk = first.subarray(0, max);
      this.queue[0] = first.subarray(max);
    }
    this.queuedBytes -= chunk.length;
    this.sendWindow -= chunk.length;
    return { chunk, last: this.queue.length === 0 && this.endQueued };
  }

  /** @internal */
  get hasQueuedData(): boolean {
    return this.queue.length > 0;
  }

  /** @internal END_STREAM is due: the queue is empty and end() was called. */
  get endDue(): boolean {
    return this.endQueued && !this.localEnded && this.queue.length === 0;
  }

  /** @internal The frame carrying END_STREAM went out. */
  sentEnd(): void {
    this.localEnded = true;
    this.maybeFinish();
  }

  /** @internal The queue emptied. */
  drained(): void {
    if (!this.needDrain) return;
    this.needDrain = false;
    process.nextTick(() => {
      if (!this.destroyed) this.emit('drain');
    });
  }

  /** @internal A DATA frame: `data` without padding, `frameBytes` as flow control counts it. */
  receiveData(data: Buffer, frameBytes: number, endStream: boolean): void {
    if (this.remoteEnded) {
      this.close(H2_STREAM_CLOSED);
      return;
    }
    this.receiveWindow -= frameBytes;
    if (this.receiveWindow < 0) {
      this.close(H2_FLOW_CONTROL_ERROR);
      return;
    }
    // Padding is never read by anyone: credit it at once.
    this.credit(frameBytes - data.length);
    if (data.length > 0) {
      if (this.paused || this.inbox.length > 0) this.inbox.push(data);
      else this.deliver(data);
    }
    if (endStream) this.remoteEnd();
  }

  /** @internal A complete header block. */
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

  /** @internal RST_STREAM from the peer, or the connection went away (`code` then says how). */
  reset(code: number, err?: Error): void {
    if (this.destroyed) return;
    if (err !== undefined) this.emit('error', err);
    else if (code !== H2_NO_ERROR && code !== H2_CANCEL) this.emit('error', new H2StreamResetError(code));
    this.finish(code);
  }

  private deliver(data: Buffer): void {
    this.emit('data', data);
    this.credit(data.length);
  }

  private deliverInbox(): void {
    while (!this.paused && !this.destroyed && this.inbox.length > 0) this.deliver(this.inbox.shift()!);
    if (!this.paused && this.inbox.length === 0 && this.remoteEnded) this.emitEnd();
  }

  private credit(bytes: number): void {
    if (bytes <= 0 || this.remoteEnded || this.destroyed) return;
    this.creditOwed += bytes;
    // Credit in batches of a quarter window: one WINDOW_UPDATE per 1 MiB read, not per frame.
    if (this.creditOwed >= this.owner.streamWindowBytes / 4) {
      this.receiveWindow += this.creditOwed;
      this.owner.sendWindowUpdate(this.id, this.creditOwed);
      this.creditOwed = 0;
    }
  }

  private remoteEnd(): void {
    this.remoteEnded = true;
    if (!this.paused && this.inbox.length === 0) this.emitEnd();
  }

  private emitEnd(): void {
    if (this.endEmitted || this.destroyed) return;
    this.endEmitted = true;
    this.emit('end');
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.localEnded && this.endEmitted) this.finish(undefined);
  }

  private finish(code: number | undefined): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.rstCode = code;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.inbox.length = 0;
    this.owner.forget(this);
    process.nextTick(() => this.emit('close'));
  }
}

interface PendingPing {
  payload: Buffer;
  callback: (err: Error | null, durationMs: number) => void;
  sentAt: number;
}

export class H2ClientSession extends EventEmitter {
  /** No new streams: we closed, or the peer sent GOAWAY. */
  closed = false;
  destroyed = false;
  readonly socket: net.Socket;
  readonly streamWindowBytes: number;

  private readonly options: H2ClientSessionOptions;
  private readonly streams = new Map<number, H2ClientStream>();
  private readonly blocked = new Set<H2ClientStream>();
  private nextStreamId = 1;
  private sendWindow = DEFAULT_WINDOW;
  private receiveWindow: number;
  private creditOwed = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  private peerMaxConcurrentStreams = Number.POSITIVE_INFINITY;
  private settingsReceived = false;
  private readonly decoder = new HpackDecoder();
  private headerBlock: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number } | null = null;
  private readonly pings: PendingPing[] = [];
  private pingCounter = 0;
  private corked = false;
  private readonly uncorkSocket = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
  /** Bytes of a frame that spans reads, and how many the next frame needs. */
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private partialNeed = FRAME_HEADER_BYTES;
  private goawaySent = false;

  constructor(socket: net.Socket, options: H2ClientSessionOptions) {
    super();
    this.socket = socket;
    this.options = options;
    this.streamWindowBytes = Math.min(options.streamWindowBytes, MAX_WINDOW);
    this.receiveWindow = DEFAULT_WINDOW;
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(this.streamWindowBytes, 8);
    settings.writeUInt16BE(SETTINGS_MAX_FRAME_SIZE, 12);
    settings.writeUInt32BE(options.maxFrameBytes, 14);
    this.write(CLIENT_PREFACE);
    this.writeFrame(SETTINGS, 0, 0, settings);
    const connectionWindow = Math.min(options.connectionWindowBytes, MAX_WINDOW);
    if (connectionWindow > DEFAULT_WINDOW) {
      this.writeFrame(WINDOW_UPDATE, 0, 0, u32Payload(connectionWindow - DEFAULT_WINDOW));
      this.receiveWindow = connectionWindow;
    }
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', () => {}); // the socket's owner records it; 'close' follows
    socket.once('close', () => this.onSocketClose());
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
      [':scheme', this.options.scheme],
      [':path', headers[':path'] ?? '/'],
      [':authority', headers[':authority'] ?? this.options.authority],
    ];
    for (const [name, value] of Object.entries(headers)) if (name[0] !== ':') fields.push([name.toLowerCase(), value]);
    const block = encodeHeaderBlock(fields); // throws on a bad field before any state changes
    this.nextStreamId += 2;
    const stream = new H2ClientStream(this, id, this.peerInitialWindow, this.streamWindowBytes);
    this.streams.set(id, stream);
    this.writeHeaderBlock(id, block);
    return stream;
  }

  /** Sends a PING; `callback` runs on its ACK (or with an error when the session goes first). */
  ping(callback: (err: Error | null, durationMs: number) => void): boolean {
    if (this.destroyed) return false;
    const payload = Buffer.allocUnsafe(8);
    payload.writeUInt32BE(0x6b747332, 0); // 'kts2'
    payload.writeUInt32BE(++this.pingCounter >>> 0, 4);
    this.pings.push({ payload, callback, sentAt: performance.now() });
    this.writeFrame(PING, 0, 0, payload);
    return true;
  }

  /** Graceful close: GOAWAY, no new streams; the connection ends when the open ones have. */
  close(): void {
    if (this.destroyed) return;
    this.closed = true;
    this.sendGoaway(H2_NO_ERROR, '');
    if (this.streams.size === 0) this.endSocket();
  }

  destroy(err?: Error): void {
    if (this.destroyed) return;
    this.closed = true;
    this.destroyed = true;
    this.failAll(err);
    this.socket.destroy();
  }

  // --- used by streams -----------------------------------------------------------

  /** @internal Sends what flow control allows of `stream`'s queue (and END_STREAM when due). */
  flush(stream: H2ClientStream): void {
    if (this.destroyed || stream.destroyed) return;
    while (stream.hasQueuedData) {
      const room = Math.min(stream.sendWindow, this.sendWindow, this.peerMaxFrameSize);
      if (room <= 0) {
        this.blocked.add(stream);
        return;
      }
      const piece = stream.takeChunk(room)!;
      this.sendWindow -= piece.chunk.length;
      this.writeFrame(DATA, piece.last ? FLAG_END_STREAM : 0, stream.id, piece.chunk);
      if (piece.last) {
        this.blocked.delete(stream);
        stream.drained();
        stream.sentEnd();
        return;
      }
    }
    this.blocked.delete(stream);
    stream.drained();
    if (stream.endDue) {
      this.writeFrame(DATA, FLAG_END_STREAM, stream.id);
      stream.sentEnd();
    }
  }

  /** @internal */
  sendReset(streamId: number, code: number): void {
    if (!this.destroyed) this.writeFrame(RST_STREAM, 0, streamId, u32Payload(code));
  }

  /** @internal */
  sendWindowUpdate(streamId: number, increment: number): void {
    if (!this.destroyed) this.writeFrame(WINDOW_UPDATE, 0, streamId, u32Payload(increment));
  }

  /** @internal The stream is gone. */
  forget(stream: H2ClientStream): void {
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (this.closed && this.streams.size === 0 && !this.destroyed) this.endSocket();
  }

  /**
   * Both sides are done (GOAWAY and no streams): send what is queued, then
   * close. Not only end(): a peer that keeps its side half-open (Node's
   * server does) would otherwise hold the connection forever.
   */
  private endSocket(): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.end(() => this.socket.destroy());
    // A peer that stops reading would keep even our FIN from leaving.
    setTimeout(() => this.socket.destroy(), 2_000).unref();
  }

  // --- writing ---------------------------------------------------------------------

  private write(bytes: Buffer): void {
    if (!this.corked) {
      // Every frame written in this turn of the event loop leaves in one writev.
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncorkSocket);
    }
    this.socket.write(bytes);
  }

  private writeFrame(type: number, flags: number, streamId: number, payload?: Buffer): void {
    this.write(frameHeader(payload?.length ?? 0, type, flags, streamId));
    if (payload !== undefined && payload.length > 0) this.write(payload);
  }

  private writeHeaderBlock(streamId: number, block: Buffer): void {
    let offset = 0;
    let type = HEADERS;
    do {
      const piece = block.subarray(offset, offset + this.peerMaxFrameSize);
      offset += piece.length;
      this.writeFrame(type, offset >= block.length ? FLAG_END_HEADERS : 0, streamId, piece);
      type = CONTINUATION;
    } while (offset < block.length);
  }

  private sendGoaway(code: number, debug: string): void {
    if (this.goawaySent || this.socket.destroyed) return;
    this.goawaySent = true;
    // We accept no streams from the server, so the last stream ID we processed is 0.
    this.writeFrame(GOAWAY, 0, 0, Buffer.concat([u32Payload(0, code), Buffer.from(debug, 'utf8')]));
  }

  // --- reading -----------------------------------------------------------------------

  private onSocketData(chunk: Buffer): void {
    if (this.destroyed) return;
    if (this.partialBytes === 0) {
      this.parse(chunk);
      return;
    }
    this.partial.push(chunk);
    this.partialBytes += chunk.length;
    if (this.partialBytes < this.partialNeed) return;
    const joined = Buffer.concat(this.partial, this.partialBytes);
    this.partial = [];
    this.partialBytes = 0;
    this.parse(joined);
  }

  private parse(buf: Buffer): void {
    let off = 0;
    try {
      while (buf.length - off >= FRAME_HEADER_BYTES) {
        const length = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
        if (length > this.options.maxFrameBytes) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds our SETTINGS_MAX_FRAME_SIZE ${this.options.maxFrameBytes}`);
        if (buf.length - off - FRAME_HEADER_BYTES < length) {
          this.partialNeed = FRAME_HEADER_BYTES + length;
          break;
        }
        const type = buf[off + 3]!;
        const flags = buf[off + 4]!;
        const streamId = buf.readUInt32BE(off + 5) & 0x7fffffff;
        const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + length);
        off += FRAME_HEADER_BYTES + length;
        this.onFrame(type, flags, streamId, payload);
        if (this.destroyed) return;
      }
    } catch (err) {
      if (err instanceof H2ProtocolError) {
        this.protocolFailure(err);
        return;
      }
      throw err;
    }
    if (off < buf.length) {
      this.partial = [buf.subarray(off)];
      this.partialBytes = buf.length - off;
      if (this.partialBytes < FRAME_HEADER_BYTES) this.partialNeed = FRAME_HEADER_BYTES;
    } else {
      this.partialNeed = FRAME_HEADER_BYTES;
    }
  }

  private onFrame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.headerBlock !== null && (type !== CONTINUATION || streamId !== this.headerBlock.streamId)) {
      throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'header block interrupted by another frame');
    }
    switch (type) {
      case DATA:
        this.onData(flags, streamId, payload);
        return;
      case HEADERS:
        this.onHeaders(flags, streamId, payload);
        return;
      case CONTINUATION:
        this.onContinuation(flags, streamId, payload);
        return;
      case RST_STREAM:
        if (streamId === 0 || payload.length !== 4) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'malformed RST_STREAM');
        this.streams.get(streamId)?.reset(payload.readUInt32BE(0));
        return;
      case SETTINGS:
        this.onSettings(flags, streamId, payload);
        return;
      case PING:
        if (streamId !== 0 || payload.length !== 8) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, 'malformed PING');
        if (flags & FLAG_ACK) this.onPingAck(payload);
        else this.writeFrame(PING, FLAG_ACK, 0, Buffer.from(payload));
        return;
      case GOAWAY:
        this.onGoaway(streamId, payload);
        return;
      case WINDOW_UPDATE:
        this.onWindowUpdate(streamId, payload);
        return;
      case PUSH_PROMISE:
        throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'PUSH_PROMISE although we disabled push');
      default:
        return; // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5)
    }
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'DATA on stream 0');
    let data = payload;
    if (flags & FLAG_PADDED) {
      const pad = payload.length > 0 ? payload[0]! : 256;
      if (pad >= payload.length) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'DATA padding exceeds the frame');
      data = payload.subarray(1, payload.length - pad);
    }
    this.receiveWindow -= payload.length;
    if (this.receiveWindow < 0) throw new H2ProtocolError(H2_FLOW_CONTROL_ERROR, 'peer sent more than the connection window');
    // Connection-level credit is returned as frames arrive: each stream's own
    // window bounds what a paused reader holds, so one stalled stream cannot
    // use up the connection's window for the others.
    this.creditOwed += payload.length;
    if (this.creditOwed >= Math.min(this.options.connectionWindowBytes, MAX_WINDOW) / 4) {
      this.receiveWindow += this.creditOwed;
      this.writeFrame(WINDOW_UPDATE, 0, 0, u32Payload(this.creditOwed));
      this.creditOwed = 0;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (this.isIdle(streamId)) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
      return; // a stream we already closed or reset: frames in flight are expected
    }
    stream.receiveData(data, payload.length, (flags & FLAG_END_STREAM) !== 0);
  }

  private onHeaders(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'HEADERS on stream 0');
    let start = 0;
    let end = payload.length;
    if (flags & FLAG_PADDED) {
      if (payload.length < 1) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'HEADERS too short for its padding');
      start = 1;
      end -= payload[0]!;
    }
    if (flags & FLAG_PRIORITY) start += 5;
    if (start > end) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'HEADERS padding or priority exceeds the frame');
    const fragment = payload.subarray(start, end);
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (flags & FLAG_END_HEADERS) this.onHeaderBlock(streamId, endStream, fragment);
    else this.headerBlock = { streamId, endStream, parts: [Buffer.from(fragment)], bytes: fragment.length };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.headerBlock;
    if (block === null || block.streamId !== streamId) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'CONTINUATION without a header block');
    block.parts.push(Buffer.from(payload));
    block.bytes += payload.length;
    if (block.bytes > MAX_HEADER_BLOCK_BYTES) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `header block over ${MAX_HEADER_BLOCK_BYTES} bytes`);
    if (flags & FLAG_END_HEADERS) {
      this.headerBlock = null;
      this.onHeaderBlock(streamId, block.endStream, Buffer.concat(block.parts, block.bytes));
    }
  }

  private onHeaderBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let decoded: { headers: H2Headers; raw: string[] };
    try {
      // Decoded even for a stream we no longer track: the HPACK table must follow every block.
      decoded = decodeHeaders(this.decoder.decode(block));
    } catch (err) {
      if (err instanceof HpackError) throw new H2ProtocolError(H2_COMPRESSION_ERROR, `header block: ${err.message}`);
      throw err;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) {
      if (this.isIdle(streamId)) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `HEADERS on idle stream ${streamId}`);
      return;
    }
    stream.receiveHeaders(decoded.headers, decoded.raw, endStream);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & FLAG_ACK) {
      if (payload.length !== 0) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, 'SETTINGS length not a multiple of 6');
    for (let off = 0; off < payload.length; off += 6) {
      const id = payload.readUInt16BE(off);
      const value = payload.readUInt32BE(off + 2);
      switch (id) {
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new H2ProtocolError(H2_FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value} above 2^31-1`);
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) s.sendWindow += delta;
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > 16_777_215) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value} out of range`);
          this.peerMaxFrameSize = value;
          break;
        case SETTINGS_MAX_CONCURRENT_STREAMS:
          this.peerMaxConcurrentStreams = value;
          break;
        case SETTINGS_HEADER_TABLE_SIZE: // our encoder never uses the dynamic table
        case SETTINGS_ENABLE_PUSH: // a server's value means nothing to a client
        default:
          break;
      }
    }
    this.writeFrame(SETTINGS, FLAG_ACK, 0);
    if (!this.settingsReceived) {
      this.settingsReceived = true;
      this.emit('remoteSettings');
    }
    this.flushBlocked();
  }

  private onPingAck(payload: Buffer): void {
    const i = this.pings.findIndex((p) => p.payload.equals(payload));
    if (i < 0) return;
    const [ping] = this.pings.splice(i, 1);
    ping!.callback(null, performance.now() - ping!.sentAt);
  }

  private onGoaway(streamId: number, payload: Buffer): void {
    if (streamId !== 0 || payload.length < 8) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'malformed GOAWAY');
    const lastStreamId = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    this.closed = true;
    // Streams the server never processed may be retried elsewhere (REFUSED_STREAM); the rest finish.
    for (const s of [...this.streams.values()]) if (s.id > lastStreamId) s.reset(H2_REFUSED_STREAM);
    this.emit('goaway', code, lastStreamId, payload.subarray(8));
    if (this.streams.size === 0) this.endSocket();
  }

  private onWindowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, 'malformed WINDOW_UPDATE');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (streamId === 0) {
      if (increment === 0) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new H2ProtocolError(H2_FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      this.flushBlocked();
      return;
    }
    const stream = this.streams.get(streamId);
    if (stream === undefined) return;
    if (increment === 0) {
      stream.close(H2_PROTOCOL_ERROR);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      stream.close(H2_FLOW_CONTROL_ERROR);
      return;
    }
    this.flush(stream);
  }

  private flushBlocked(): void {
    // Runs on every connection WINDOW_UPDATE (often, while the agent sends a download): nothing to copy when nothing waits.
    if (this.blocked.size === 0) return;
    for (const s of [...this.blocked]) {
      if (this.sendWindow <= 0) return;
      this.flush(s);
    }
  }

  /** A client-initiated ID we have not opened yet (server-initiated IDs are even; push is off). */
  private isIdle(streamId: number): boolean {
    return streamId % 2 === 0 || streamId >= this.nextStreamId;
  }

  private protocolFailure(err: H2ProtocolError): void {
    this.sendGoaway(err.code, err.message);
    this.closed = true;
    this.destroyed = true;
    this.failAll(new Error(`HTTP/2 protocol error from the server: ${err.message}`));
    this.endSocket(); // lets the GOAWAY out first
  }

  private onSocketClose(): void {
    this.closed = true;
    this.destroyed = true;
    this.failAll(undefined);
    this.emit('close');
  }

  private failAll(err: Error | undefined): void {
    for (const s of [...this.streams.values()]) s.reset(err ? H2_INTERNAL_ERROR : H2_CANCEL, err);
    this.streams.clear();
    this.blocked.clear();
    const pings = this.pings.splice(0);
    for (const p of pings) p.callback(err ?? new Error('HTTP/2 session closed'), 0);
  }
}
