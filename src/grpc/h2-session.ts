/**
 * What our HTTP/2 client and server connections (h2-client-session.ts,
 * h2-server-session.ts) share: frame parsing straight from the socket's
 * reads, writing with one corked writev per event-loop turn, SETTINGS, PING,
 * WINDOW_UPDATE, connection and stream flow control on the send side, GOAWAY
 * out, RST_STREAM in, and failing the connection on a protocol error.
 *
 * Two bounds protect the process from a peer, whichever side it is on:
 * - Replies we owe (PING and SETTINGS ACKs, RST_STREAM) pile up in the socket
 *   when the peer sends requests for them and does not read: more than
 *   MAX_PENDING_REPLIES since the socket last drained fails the connection
 *   with ENHANCE_YOUR_CALM (what nghttp2 does, with its limit of 1,000).
 * - Bytes held for paused readers: connection-level credit is returned as
 *   frames arrive (so one paused stream cannot block the others), except
 *   while more than MAX_HELD_BYTES wait for paused readers; then the
 *   connection window pushes back on the peer until readers catch up.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { HpackDecoder, HpackError } from './hpack-decoder.ts';
import { encodeHeaderBlock } from './hpack-encoder.ts';
import {
  CONTINUATION,
  DATA,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  FRAME_HEADER_BYTES,
  GOAWAY,
  H2_COMPRESSION_ERROR,
  H2_ENHANCE_YOUR_CALM,
  H2_FLOW_CONTROL_ERROR,
  H2_FRAME_SIZE_ERROR,
  H2_INTERNAL_ERROR,
  H2_CANCEL,
  H2_NO_ERROR,
  H2_PROTOCOL_ERROR,
  HEADERS,
  H2ProtocolError,
  MAX_WINDOW,
  PING,
  PUSH_PROMISE,
  RST_STREAM,
  SETTINGS,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_FRAME_SIZE,
  WINDOW_UPDATE,
  decodeHeaders,
  frameHeader,
  u32Payload,
  type H2Headers,
} from './h2-frames.ts';
import type { H2Stream, H2StreamOwner } from './h2-stream.ts';

/** Bound on one header block (HEADERS + CONTINUATION) from the peer. */
export const MAX_HEADER_BLOCK_BYTES = 256 * 1024;
/**
 * Bound on the frames of one header block: without it, a flood of empty
 * CONTINUATION frames (CVE-2024-27316 and kin) would grow the block's list
 * without adding a byte. A legitimate block needs 16 frames of 16 KiB for
 * MAX_HEADER_BLOCK_BYTES.
 */
export const MAX_HEADER_BLOCK_FRAMES = 512;
/** Replies owed to the peer while it does not read; see the module comment. */
export const MAX_PENDING_REPLIES = 10_000;
/** Bytes held for paused readers before connection credit stops; the same bound as Node's maxSessionMemory we used to set. */
export const MAX_HELD_BYTES = 256 * 1024 * 1024;

export interface H2SessionOptions {
  /** Our SETTINGS_INITIAL_WINDOW_SIZE: what the peer may send on one stream before we read it. */
  streamWindowBytes: number;
  /** Our connection-level receive window. */
  connectionWindowBytes: number;
  /** Our SETTINGS_MAX_FRAME_SIZE. */
  maxFrameBytes: number;
  /** Bytes held for paused readers before connection credit stops (default MAX_HELD_BYTES). */
  maxHeldBytes?: number;
}

export interface DecodedHeaderBlock {
  headers: H2Headers;
  raw: string[];
  listBytes: number;
}

interface PendingPing {
  payload: Buffer;
  callback: (err: Error | null, durationMs: number) => void;
  sentAt: number;
}

export abstract class H2Session<S extends H2Stream> extends EventEmitter implements H2StreamOwner {
  /** No new streams: we closed, or the peer sent GOAWAY. */
  closed = false;
  destroyed = false;
  readonly socket: net.Socket;
  readonly streamWindowBytes: number;

  protected readonly options: H2SessionOptions;
  protected readonly streams = new Map<number, S>();
  protected peerInitialWindow = DEFAULT_WINDOW;
  protected peerMaxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  protected peerMaxConcurrentStreams = Number.POSITIVE_INFINITY;
  /** Who the peer is, for error messages: 'server' or 'client'. */
  protected abstract readonly peerRole: string;
  private readonly blocked = new Set<H2Stream>();
  private sendWindow = DEFAULT_WINDOW;
  private receiveWindow = DEFAULT_WINDOW;
  private readonly connectionWindow: number;
  private creditOwed = 0;
  private heldBytes = 0;
  private readonly maxHeldBytes: number;
  private repliesPending = 0;
  private settingsReceived = false;
  /** The peer acknowledged our SETTINGS; before that it may assume the default stream window. */
  private settingsAcked = false;
  private readonly decoder = new HpackDecoder();
  private headerBlock: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number; frames: number } | null = null;
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
  /** Payload bytes still to come of a DATA frame that spans reads, its stream, and whether it ends that stream. */
  private dataLeft = 0;
  private dataStreamId = 0;
  private dataEndStream = false;
  private goawaySent = false;

  /** `preface`: bytes before our SETTINGS (the client's connection preface); `settings`: [id, value] pairs besides the window and frame size. */
  constructor(socket: net.Socket, options: H2SessionOptions, preface: Buffer | null, settings: ReadonlyArray<readonly [number, number]>) {
    super();
    this.socket = socket;
    this.options = options;
    this.streamWindowBytes = Math.min(options.streamWindowBytes, MAX_WINDOW);
    this.connectionWindow = Math.min(options.connectionWindowBytes, MAX_WINDOW);
    this.maxHeldBytes = options.maxHeldBytes ?? MAX_HELD_BYTES;
    const all: ReadonlyArray<readonly [number, number]> = [
      [SETTINGS_ENABLE_PUSH, 0],
      [SETTINGS_INITIAL_WINDOW_SIZE, this.streamWindowBytes],
      [SETTINGS_MAX_FRAME_SIZE, options.maxFrameBytes],
      ...settings,
    ];
    const payload = Buffer.allocUnsafe(6 * all.length);
    all.forEach(([id, value], i) => {
      payload.writeUInt16BE(id, 6 * i);
      payload.writeUInt32BE(value, 6 * i + 2);
    });
    if (preface !== null) this.write(preface);
    this.writeFrame(SETTINGS, 0, 0, payload);
    if (this.connectionWindow > DEFAULT_WINDOW) {
      this.writeFrame(WINDOW_UPDATE, 0, 0, u32Payload(this.connectionWindow - DEFAULT_WINDOW));
      this.receiveWindow = this.connectionWindow;
    }
    socket.on('data', (chunk: Buffer) => this.onSocketData(chunk));
    socket.on('error', () => {}); // the socket's owner records it; 'close' follows
    socket.once('close', () => this.onSocketClose());
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

  /**
   * What a new stream lets the peer send before it returns credit: our
   * SETTINGS_INITIAL_WINDOW_SIZE, but not below the default until the peer
   * has acknowledged it (until then it may send by the default).
   */
  protected get initialReceiveWindow(): number {
    return this.settingsAcked ? this.streamWindowBytes : Math.max(this.streamWindowBytes, DEFAULT_WINDOW);
  }

  // --- hooks for the two sides ------------------------------------------------------

  /** A complete, decoded header block for `streamId`. */
  protected abstract onHeaderBlock(streamId: number, endStream: boolean, block: DecodedHeaderBlock): void;
  /** A stream ID that has not been opened yet (frames for it other than HEADERS are a protocol error). */
  protected abstract isIdle(streamId: number): boolean;
  /** The highest peer-initiated stream we processed, for the GOAWAY we send. */
  protected abstract get lastPeerStreamId(): number;
  /** GOAWAY from the peer, after `closed` is set. */
  protected abstract onGoawayReceived(lastStreamId: number, code: number, debug: Buffer): void;

  // --- used by streams -----------------------------------------------------------

  /** @internal Sends what flow control allows of `stream`'s queue (and END_STREAM when due). */
  flush(stream: H2Stream): void {
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
      const trailers = stream.takeTrailers();
      if (trailers !== null) this.writeHeaderBlock(stream.id, encodeHeaderBlock(trailers), true);
      else this.writeFrame(DATA, FLAG_END_STREAM, stream.id);
      stream.sentEnd();
    }
  }

  /** @internal */
  sendReset(streamId: number, code: number): void {
    if (this.destroyed) return;
    this.repliesPending++;
    this.writeFrame(RST_STREAM, 0, streamId, u32Payload(code));
  }

  /** @internal */
  sendWindowUpdate(streamId: number, increment: number): void {
    if (!this.destroyed) this.writeFrame(WINDOW_UPDATE, 0, streamId, u32Payload(increment));
  }

  /** Bytes received for paused readers and not yet delivered. */
  get heldByPausedReaders(): number {
    return this.heldBytes;
  }

  /** @internal */
  held(bytes: number): void {
    this.heldBytes += bytes;
    if (bytes < 0) this.returnConnectionCredit();
  }

  /** @internal The stream is gone. */
  forget(stream: H2Stream): void {
    this.streams.delete(stream.id);
    this.blocked.delete(stream);
    if (this.closed && this.streams.size === 0 && !this.destroyed) this.endSocket();
  }

  /**
   * Both sides are done (GOAWAY and no streams): send what is queued, then
   * close. Not only end(): a peer that keeps its side half-open (Node's
   * server does) would otherwise hold the connection forever.
   */
  protected endSocket(): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.end(() => this.socket.destroy());
    // A peer that stops reading would keep even our FIN from leaving.
    setTimeout(() => this.socket.destroy(), 2_000).unref();
  }

  // --- writing ---------------------------------------------------------------------

  protected write(bytes: Buffer): void {
    if (!this.corked) {
      // Every frame written in this turn of the event loop leaves in one writev.
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncorkSocket);
    }
    this.socket.write(bytes);
  }

  protected writeFrame(type: number, flags: number, streamId: number, payload?: Buffer): void {
    this.write(frameHeader(payload?.length ?? 0, type, flags, streamId));
    if (payload !== undefined && payload.length > 0) this.write(payload);
  }

  protected writeHeaderBlock(streamId: number, block: Buffer, endStream: boolean): void {
    let offset = 0;
    let type = HEADERS;
    const endFlag = endStream ? FLAG_END_STREAM : 0;
    do {
      const piece = block.subarray(offset, offset + this.peerMaxFrameSize);
      offset += piece.length;
      this.writeFrame(type, (offset >= block.length ? FLAG_END_HEADERS : 0) | (type === HEADERS ? endFlag : 0), streamId, piece);
      type = CONTINUATION;
    } while (offset < block.length);
  }

  protected sendGoaway(code: number, debug: string): void {
    if (this.goawaySent || this.socket.destroyed) return;
    this.goawaySent = true;
    this.writeFrame(GOAWAY, 0, 0, Buffer.concat([u32Payload(this.lastPeerStreamId, code), Buffer.from(debug, 'utf8')]));
  }

  // --- reading -----------------------------------------------------------------------

  protected onSocketData(chunk: Buffer): void {
    if (this.destroyed) return;
    // Replies the peer has read are no longer owed.
    if (this.socket.writableLength === 0) this.repliesPending = 0;
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
      while (off < buf.length) {
        if (this.dataLeft > 0) {
          // The rest of a DATA frame that spans reads goes to its stream as it arrives.
          const n = Math.min(this.dataLeft, buf.length - off);
          this.dataLeft -= n;
          this.onDataPiece(this.dataStreamId, buf.subarray(off, off + n), n, this.dataLeft === 0 && this.dataEndStream);
          off += n;
          if (this.destroyed) return;
          continue;
        }
        if (buf.length - off < FRAME_HEADER_BYTES) break;
        const length = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
        if (length > this.options.maxFrameBytes) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds our SETTINGS_MAX_FRAME_SIZE ${this.options.maxFrameBytes}`);
        const type = buf[off + 3]!;
        const flags = buf[off + 4]!;
        const streamId = buf.readUInt32BE(off + 5) & 0x7fffffff;
        if (buf.length - off - FRAME_HEADER_BYTES < length) {
          if (type !== DATA || flags & FLAG_PADDED) {
            this.partialNeed = FRAME_HEADER_BYTES + length;
            break;
          }
          // A DATA frame larger than this read (a 64 KiB packet over 16 KiB TLS
          // records): passing its pieces on spares joining them, a copy of every
          // byte, as nghttp2 does.
          this.checkDataFrame(streamId);
          off += FRAME_HEADER_BYTES;
          this.dataLeft = length;
          this.dataStreamId = streamId;
          this.dataEndStream = (flags & FLAG_END_STREAM) !== 0;
          continue;
        }
        const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + length);
        off += FRAME_HEADER_BYTES + length;
        this.onFrame(type, flags, streamId, payload);
        if (this.destroyed) return;
        if (this.repliesPending > MAX_PENDING_REPLIES) throw new H2ProtocolError(H2_ENHANCE_YOUR_CALM, `more than ${MAX_PENDING_REPLIES} replies (PING/SETTINGS acknowledgements, stream resets) owed to a ${this.peerRole} that does not read them`);
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
        if (this.isIdle(streamId)) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `RST_STREAM on idle stream ${streamId}`);
        this.onResetReceived(streamId, payload.readUInt32BE(0));
        return;
      case SETTINGS:
        this.onSettings(flags, streamId, payload);
        return;
      case PING:
        if (streamId !== 0 || payload.length !== 8) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, 'malformed PING');
        if (flags & FLAG_ACK) {
          this.onPingAck(payload);
        } else {
          this.repliesPending++;
          this.writeFrame(PING, FLAG_ACK, 0, Buffer.from(payload));
        }
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

  /** RST_STREAM from the peer for a stream that is not idle. */
  protected onResetReceived(streamId: number, code: number): void {
    this.streams.get(streamId)?.reset(code);
  }

  private checkDataFrame(streamId: number): void {
    if (this.headerBlock !== null) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'header block interrupted by another frame');
    if (streamId === 0) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'DATA on stream 0');
    if (!this.streams.has(streamId) && this.isIdle(streamId)) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `DATA on idle stream ${streamId}`);
  }

  private onData(flags: number, streamId: number, payload: Buffer): void {
    this.checkDataFrame(streamId);
    let data = payload;
    if (flags & FLAG_PADDED) {
      const pad = payload.length > 0 ? payload[0]! : 256;
      if (pad >= payload.length) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'DATA padding exceeds the frame');
      data = payload.subarray(1, payload.length - pad);
    }
    this.onDataPiece(streamId, data, payload.length, (flags & FLAG_END_STREAM) !== 0);
  }

  /** DATA for `streamId`: a whole frame, or the piece of one that arrived in this read; `frameBytes` as flow control counts it. */
  private onDataPiece(streamId: number, data: Buffer, frameBytes: number, endStream: boolean): void {
    this.receiveWindow -= frameBytes;
    if (this.receiveWindow < 0) throw new H2ProtocolError(H2_FLOW_CONTROL_ERROR, `${this.peerRole} sent more than the connection window`);
    this.creditOwed += frameBytes;
    // A stream we already closed or reset gets none: frames in flight are expected.
    this.streams.get(streamId)?.receiveData(data, frameBytes, endStream);
    this.returnConnectionCredit();
  }

  /**
   * Connection-level credit goes back as frames arrive: each stream's own
   * window bounds what a paused reader holds, so one stalled stream cannot use
   * up the connection's window for the others. Only when paused readers hold
   * more than MAX_HELD_BYTES in all does the connection push back.
   */
  private returnConnectionCredit(): void {
    if (this.creditOwed < this.connectionWindow / 4 || this.heldBytes > this.maxHeldBytes || this.destroyed) return;
    this.receiveWindow += this.creditOwed;
    this.writeFrame(WINDOW_UPDATE, 0, 0, u32Payload(this.creditOwed));
    this.creditOwed = 0;
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
    if (flags & FLAG_END_HEADERS) this.decodeHeaderBlock(streamId, endStream, fragment);
    else this.headerBlock = { streamId, endStream, parts: [Buffer.from(fragment)], bytes: fragment.length, frames: 1 };
  }

  private onContinuation(flags: number, streamId: number, payload: Buffer): void {
    const block = this.headerBlock;
    if (block === null || block.streamId !== streamId) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'CONTINUATION without a header block');
    if (++block.frames > MAX_HEADER_BLOCK_FRAMES) throw new H2ProtocolError(H2_ENHANCE_YOUR_CALM, `header block in more than ${MAX_HEADER_BLOCK_FRAMES} frames`);
    block.parts.push(Buffer.from(payload));
    block.bytes += payload.length;
    if (block.bytes > MAX_HEADER_BLOCK_BYTES) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `header block over ${MAX_HEADER_BLOCK_BYTES} bytes`);
    if (flags & FLAG_END_HEADERS) {
      this.headerBlock = null;
      this.decodeHeaderBlock(streamId, block.endStream, Buffer.concat(block.parts, block.bytes));
    }
  }

  private decodeHeaderBlock(streamId: number, endStream: boolean, block: Buffer): void {
    let decoded: DecodedHeaderBlock;
    try {
      // Decoded even for a stream nobody tracks any more: the HPACK table must follow every block.
      decoded = decodeHeaders(this.decoder.decode(block));
    } catch (err) {
      if (err instanceof HpackError) throw new H2ProtocolError(H2_COMPRESSION_ERROR, `header block: ${err.message}`);
      throw err;
    }
    this.onHeaderBlock(streamId, endStream, decoded);
  }

  private onSettings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new H2ProtocolError(H2_PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & FLAG_ACK) {
      if (payload.length !== 0) throw new H2ProtocolError(H2_FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      this.settingsAcked = true;
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
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) throw new H2ProtocolError(H2_PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value} is neither 0 nor 1`);
          break;
        case SETTINGS_HEADER_TABLE_SIZE: // our encoder never uses the dynamic table
        default:
          break;
      }
    }
    this.repliesPending++;
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
    this.onGoawayReceived(lastStreamId, code, payload.subarray(8));
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
    // Runs on every connection WINDOW_UPDATE (often, during a download): nothing to copy when nothing waits.
    if (this.blocked.size === 0) return;
    for (const s of [...this.blocked]) {
      if (this.sendWindow <= 0) return;
      this.flush(s);
    }
  }

  protected protocolFailure(err: H2ProtocolError): void {
    this.sendGoaway(err.code, err.message);
    this.closed = true;
    this.destroyed = true;
    this.failAll(new Error(`HTTP/2 protocol error from the ${this.peerRole}: ${err.message}`));
    this.emit('protocolError', err);
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
