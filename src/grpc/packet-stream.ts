/**
 * One gRPC bidi stream of Packets over a Node HTTP/2 stream, used the same
 * way on both sides. The owner assigns the `on*` callbacks; there is exactly
 * one owner per stream, so callbacks are cheaper than EventEmitter fan-out on
 * the per-packet path.
 */
import type { Http2Session, Http2Stream } from 'node:http2';
import { decodePacket, encodeDataPacketHeader, encodePacketWithHeadroom, peekDataPacketHeader } from '../protocol/codec.ts';
import { PacketType, packets, payloadLength, writePayload } from '../protocol/packet.ts';
import { GRPC_FRAME_HEADER, GrpcDeframer, writeFrameHeader, type MessageSink } from '../protocol/grpc-frame.ts';
import type { Packet } from '../protocol/packet.ts';
import { ProtocolError } from '../protocol/protocol-error.ts';
import { type ReadRestarter, readRestarterOf } from './read-restart.ts';

/** grpc-go's default receive limit; upstream never changes it. */
export const DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Bytes we let Node buffer on one stream before `send` reports backpressure. */
export const DEFAULT_SEND_HIGH_WATER_BYTES = 1024 * 1024;

/** Below this, copying the payload into one buffer is cheaper than a second write. */
const ZERO_COPY_MIN_PAYLOAD = 2048;

/** One packet as a gRPC message: encoded with headroom, frame header filled in. */
function framedPacket(packet: Packet): Buffer {
  const frame = encodePacketWithHeadroom(packet, GRPC_FRAME_HEADER);
  writeFrameHeader(frame, frame.length - GRPC_FRAME_HEADER);
  return frame;
}

/**
 * What a PacketStream needs of its HTTP/2 stream: a Node stream (server
 * side, the agent's link) or one of our own client's (h2-client-session.ts).
 */
export interface Http2StreamLike {
  readonly session?: Http2Session | undefined;
  readonly destroyed: boolean;
  readonly writable: boolean;
  readonly writableLength: number;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'drain' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  cork(): void;
  uncork(): void;
  write(chunk: Uint8Array): boolean;
  pause(): unknown;
  resume(): unknown;
  close(code?: number): void;
}

export interface PacketStreamOptions {
  maxReceiveMessageBytes?: number;
  sendHighWaterBytes?: number;
}

const ignore = (): void => {};

const packetStreamOwner = Symbol('konnectivity.packetStream');

type StreamWithOwner = Http2StreamLike & { [packetStreamOwner]: PacketStream<Http2StreamLike> };

function ownerOf(h2: Http2StreamLike): PacketStream<Http2StreamLike> {
  return (h2 as StreamWithOwner)[packetStreamOwner];
}

export class PacketStream<S extends Http2StreamLike = Http2Stream> implements MessageSink {
  // EventEmitter calls a listener with the emitter as `this`.
  private static readonly onStreamData = function (this: Http2StreamLike, chunk: Buffer): void {
    ownerOf(this).received(chunk);
  };
  private static readonly onStreamEnd = function (this: Http2StreamLike): void {
    ownerOf(this).onRemoteEnd();
  };
  private static readonly onStreamDrain = function (this: Http2StreamLike): void {
    ownerOf(this).onDrain();
  };
  private static readonly onStreamError = function (this: Http2StreamLike, err: Error): void {
    ownerOf(this).firstError ??= err;
  };
  private static readonly onStreamClose = function (this: Http2StreamLike): void {
    ownerOf(this).streamClosed();
  };

  /** A decoded packet arrived. */
  onPacket: (packet: Packet) => void = ignore;
  /**
   * A received message could not be decoded. The stream is still open; the
   * owner decides (upstream ignores unknown packet types, and fails the call
   * for bytes that do not parse).
   */
  onProtocolError: (err: ProtocolError) => void = ignore;
  /** Buffered sends fell to zero after `send` returned false. */
  onDrain: () => void = ignore;
  /** The peer finished sending (half-close). */
  onRemoteEnd: () => void = ignore;
  /** The underlying HTTP/2 stream is gone (after end, reset or error). */
  onClose: (err: Error | null) => void = ignore;

  readonly h2: S;
  private readonly deframer: GrpcDeframer;
  private readonly highWater: number;
  private closed = false;
  private paused = false;
  /** The deframer failed (oversized or bad frame): later bytes are discarded, never parsed. */
  private framingBroken = false;
  private firstError: Error | null = null;
  /** Keeps the session reading while packets flow (client sessions; see read-restart.ts). */
  private readonly readRestarter: ReadRestarter | undefined;

  constructor(h2: S, options: PacketStreamOptions = {}) {
    this.h2 = h2;
    this.deframer = new GrpcDeframer(options.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES);
    this.highWater = options.sendHighWaterBytes ?? DEFAULT_SEND_HIGH_WATER_BYTES;
    this.readRestarter = readRestarterOf(h2.session);
    // Listeners shared by every stream, finding theirs through the HTTP/2
    // stream: a server holds one PacketStream per tunnelled connection, and
    // eight closures and their context were about 500 bytes of each.
    (h2 as unknown as StreamWithOwner)[packetStreamOwner] = this as PacketStream<Http2StreamLike>;
    h2.on('data', PacketStream.onStreamData);
    h2.on('end', PacketStream.onStreamEnd);
    h2.on('drain', PacketStream.onStreamDrain);
    h2.on('error', PacketStream.onStreamError);
    h2.on('close', PacketStream.onStreamClose);
  }

  /** A chunk from the peer: complete messages go to `onPacket`. */
  private received(chunk: Buffer): void {
    if (this.closed || this.framingBroken) return;
    this.readRestarter?.touch();
    try {
      this.deframer.push(chunk, this);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      // Framing is broken: nothing after this point can be trusted. Parsing on
      // would read the body of an oversized message as frames of its own.
      this.framingBroken = true;
      this.onProtocolError(err);
    }
  }

  /** MessageSink: one whole message. */
  message(msg: Uint8Array): void {
    let packet: Packet;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.onProtocolError(err);
        return;
      }
      throw err;
    }
    this.onPacket(packet);
  }

  /**
   * MessageSink: a DATA packet that spanned reads stays in the pieces it
   * arrived in (the common case in a download: 64 KiB packets over 16 KiB
   * TLS records); anything else is joined and decoded as usual.
   */
  pieces(pieces: readonly Uint8Array[], byteLength: number): boolean {
    const first = pieces[0]!;
    const header = peekDataPacketHeader(first, byteLength);
    if (header === null) return false;
    const payload = header.payloadOffset === first.length ? pieces.slice(1) : [first.subarray(header.payloadOffset), ...pieces.slice(1)];
    this.onPacket(packets.dataInPieces(header.connectID, payload, byteLength - header.payloadOffset));
    return true;
  }

  private streamClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this.firstError);
  }

  get isClosed(): boolean {
    return this.closed || this.h2.destroyed;
  }

  /** Bytes queued in Node for this stream, not yet handed to the socket. */
  get bufferedBytes(): number {
    return this.h2.writableLength;
  }

  /**
   * Queues one packet. Returns false when the caller should stop sending and
   * wait for `onDrain`; the packet itself is always queued.
   */
  send(packet: Packet): boolean {
    if (this.closed || !this.h2.writable) return false;
    this.readRestarter?.touch();
    return this.write(packet);
  }

  private write(packet: Packet): boolean {
    if (packet.type === PacketType.DATA && packet.data.error === '') {
      const length = payloadLength(packet.data);
      if (length >= ZERO_COPY_MIN_PAYLOAD) {
        // Header and payload (or its pieces) as one writev: the payload is not copied.
        const header = encodeDataPacketHeader(packet.data.connectID, length, GRPC_FRAME_HEADER);
        writeFrameHeader(header, header.length - GRPC_FRAME_HEADER + length);
        this.h2.cork();
        this.h2.write(header);
        writePayload(this.h2, packet.data);
        this.h2.uncork();
        return this.h2.writableLength < this.highWater;
      }
    }
    this.h2.write(framedPacket(packet));
    return this.h2.writableLength < this.highWater;
  }

  /** Stops reading from the peer; HTTP/2 flow control then pushes back on it. */
  pauseReceive(): void {
    if (!this.paused) {
      this.paused = true;
      this.h2.pause();
    }
  }

  resumeReceive(): void {
    if (this.paused) {
      this.paused = false;
      this.h2.resume();
    }
  }

  /** Abortive close (RST_STREAM). */
  reset(code?: number): void {
    if (!this.h2.destroyed) this.h2.close(code);
  }
}
