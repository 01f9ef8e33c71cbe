/**
 * gRPC length-prefixed message framing (1 byte compressed flag, 4 bytes
 * big-endian length, message). Independent of any transport so it can be
 * driven from memory in tests.
 */
import { ProtocolError } from './protocol-error.ts';

export const GRPC_FRAME_HEADER = 5;
const SLAB_BYTES = 1024 * 1024;
const EMPTY = Buffer.alloc(0);

/** Writes the frame header into the first 5 bytes of a buffer built with headroom. */
export function writeFrameHeader(buf: Uint8Array, messageLength: number): void {
  buf[0] = 0;
  buf[1] = messageLength >>> 24;
  buf[2] = (messageLength >>> 16) & 0xff;
  buf[3] = (messageLength >>> 8) & 0xff;
  buf[4] = messageLength & 0xff;
}

/** `message` with its gRPC frame header in front (one copy; the send path uses headroom instead). */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.alloc(GRPC_FRAME_HEADER + message.length);
  writeFrameHeader(out, message.length);
  out.set(message, GRPC_FRAME_HEADER);
  return out;
}

/** Where a deframer delivers messages. */
export interface MessageSink {
  /** One complete message: a view into the chunk when it did not span chunks, otherwise one copy. */
  message(message: Uint8Array): void;
  /**
   * Optional: a large message that spanned chunks, as views of those chunks
   * in order (`byteLength` bytes in all). Returning false asks for the
   * message as one buffer instead (`message` is then called with the pieces
   * joined).
   */
  pieces?(pieces: readonly Uint8Array[], byteLength: number): boolean;
}

/** Messages at least this long that span chunks go to a pieces handler, when there is one, instead of being joined. */
export const PIECES_MIN_MESSAGE_BYTES = 8 * 1024;

/**
 * Incremental deframer. Feed it transport chunks; it hands its sink each
 * complete message (a view into the chunk when the message did not span
 * chunks, otherwise one copy). A sink with `pieces` is offered a large
 * message that spans chunks as views of the chunks instead, with no copy. A length
 * above `maxMessageBytes` raises before any of the body is buffered, so an
 * oversized frame costs nothing.
 */
export class GrpcDeframer {
  private readonly maxMessageBytes: number;
  /** A header that spans chunks; allocated on first need, since a stream may never see one. */
  private header: Uint8Array | null = null;
  private headerFilled = 0;
  private body: Uint8Array | null = null;
  private bodyFilled = 0;
  /** The message being collected as chunk views (pieces mode), or null. */
  private pieces: Uint8Array[] | null = null;
  private piecesFilled = 0;
  private piecesLength = 0;

  constructor(maxMessageBytes: number) {
    this.maxMessageBytes = maxMessageBytes;
  }

  /** True while a partially received message is buffered. */
  get midMessage(): boolean {
    return this.headerFilled > 0 || this.body !== null || this.pieces !== null;
  }

  push(chunk: Uint8Array, sink: MessageSink): void {
    let pos = 0;
    const len = chunk.length;
    while (pos < len) {
      if (this.pieces !== null) {
        const take = Math.min(this.piecesLength - this.piecesFilled, len - pos);
        this.pieces.push(chunk.subarray(pos, pos + take));
        this.piecesFilled += take;
        pos += take;
        if (this.piecesFilled === this.piecesLength) {
          const pieces = this.pieces;
          this.pieces = null;
          if (!sink.pieces!(pieces, this.piecesLength)) sink.message(Buffer.concat(pieces, this.piecesLength));
        }
        continue;
      }
      if (this.body === null) {
        // Fast path: a whole frame inside this chunk, no copying.
        if (this.headerFilled === 0 && len - pos >= GRPC_FRAME_HEADER) {
          const msgLen = this.checkHeader(chunk, pos);
          if (len - pos - GRPC_FRAME_HEADER >= msgLen) {
            const start = pos + GRPC_FRAME_HEADER;
            pos = start + msgLen;
            sink.message(chunk.subarray(start, pos));
            continue;
          }
        }
        const take = Math.min(GRPC_FRAME_HEADER - this.headerFilled, len - pos);
        const header = (this.header ??= new Uint8Array(GRPC_FRAME_HEADER));
        header.set(chunk.subarray(pos, pos + take), this.headerFilled);
        this.headerFilled += take;
        pos += take;
        if (this.headerFilled < GRPC_FRAME_HEADER) return;
        const msgLen = this.checkHeader(header, 0);
        this.headerFilled = 0;
        if (msgLen === 0) {
          sink.message(new Uint8Array(0));
          continue;
        }
        if (len - pos >= msgLen) {
          // Only the 5-byte header spanned chunks: the body is whole in this one.
          sink.message(chunk.subarray(pos, pos + msgLen));
          pos += msgLen;
          continue;
        }
        if (sink.pieces !== undefined && msgLen >= PIECES_MIN_MESSAGE_BYTES) {
          this.pieces = [];
          this.piecesFilled = 0;
          this.piecesLength = msgLen;
          continue;
        }
        this.body = this.takeBody(msgLen);
        this.bodyFilled = 0;
      }
      const body: Uint8Array = this.body;
      const take = Math.min(body.length - this.bodyFilled, len - pos);
      body.set(chunk.subarray(pos, pos + take), this.bodyFilled);
      this.bodyFilled += take;
      pos += take;
      if (this.bodyFilled === body.length) {
        this.body = null;
        sink.message(body);
      }
    }
  }

  private slab: Buffer = EMPTY;

  private slabUsed = 0;

  /**
   * Room for a message that spans chunks, carved from a slab: one external
   * allocation per slab instead of one per message keeps GC off the hot path.
   * Not zero-filled: every byte is overwritten before the message is handed on.
   */
  private takeBody(msgLen: number): Buffer {
    if (msgLen > SLAB_BYTES / 4) return Buffer.allocUnsafeSlow(msgLen);
    if (this.slab.length - this.slabUsed < msgLen) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.slabUsed = 0;
    }
    const body = this.slab.subarray(this.slabUsed, this.slabUsed + msgLen);
    this.slabUsed += msgLen;
    return body;
  }

  private checkHeader(buf: Uint8Array, at: number): number {
    const flag = buf[at]!;
    if (flag !== 0) {
      // Upstream never negotiates compression, so a compressed frame is a protocol error.
      throw new ProtocolError('bad_frame', flag === 1 ? 'compressed gRPC message received but no compression was negotiated' : `invalid gRPC frame flag ${flag}`);
    }
    const msgLen = ((buf[at + 1]! << 24) >>> 0) + (buf[at + 2]! << 16) + (buf[at + 3]! << 8) + buf[at + 4]!;
    if (msgLen > this.maxMessageBytes) {
      throw new ProtocolError('message_too_large', `grpc: received message larger than max (${msgLen} vs. ${this.maxMessageBytes})`);
    }
    return msgLen;
  }
}
