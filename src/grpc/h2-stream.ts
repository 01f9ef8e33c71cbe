/**
 * One HTTP/2 stream of our own connections (h2-session.ts), either side: a
 * send queue that flow control lets out, a receive side that returns credit
 * only as its reader takes the bytes (so a paused stream pushes back on its
 * sender alone), half-close both ways and reset. Client and server streams
 * add how headers arrive and leave.
 *
 * The surface mirrors what PacketStream uses of Node's Http2Stream ('data',
 * 'end', 'drain', 'error', 'close'; write, end, pause, resume, close), so
 * PacketStream works on either.
 */
import { EventEmitter } from 'node:events';
import { H2_CANCEL, H2_FLOW_CONTROL_ERROR, H2_NO_ERROR, H2_STREAM_CLOSED, H2StreamResetError } from './h2-frames.ts';

/** A stream reports backpressure (write returns false) from this many queued bytes, as Node's streams do. */
export const STREAM_HIGH_WATER_BYTES = 16 * 1024;

/** What a stream needs of its connection. */
export interface H2StreamOwner {
  /** Our receive window per stream, the unit credit is returned in. */
  readonly streamWindowBytes: number;
  flush(stream: H2Stream): void;
  sendReset(streamId: number, code: number): void;
  sendWindowUpdate(streamId: number, increment: number): void;
  /** Bytes now held for a paused reader (negative when released): the connection bounds the total. */
  held(bytes: number): void;
  forget(stream: H2Stream): void;
}

export class H2Stream extends EventEmitter {
  readonly id: number;
  /** RST_STREAM code when the stream was reset (by either side or with its connection). */
  rstCode: number | undefined = undefined;
  /** Gone: both sides ended, or reset. */
  destroyed = false;
  /** Node's streams expose their session; ours has none (read-restart.ts only concerns Node's). */
  readonly session = undefined;

  protected readonly owner: H2StreamOwner;
  /** What we may still send on this stream (the peer's window). */
  sendWindow: number;
  /** What the peer may still send us before we return credit. */
  private receiveWindow: number;
  private creditOwed = 0;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  protected endQueued = false;
  private localEnded = false;
  protected remoteEnded = false;
  private endEmitted = false;
  private needDrain = false;
  private paused = false;
  private readonly inbox: Buffer[] = [];
  private inboxBytes = 0;

  constructor(owner: H2StreamOwner, id: number, sendWindow: number, receiveWindow: number) {
    super();
    this.owner = owner;
    this.id = id;
    this.sendWindow = sendWindow;
    this.receiveWindow = receiveWindow;
  }

  get writable(): boolean {
    return !this.destroyed && !this.endQueued;
  }

  /** Node's name: the stream is closed (reset, or both sides done). */
  get closed(): boolean {
    return this.destroyed;
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

  /** Half-close: END_STREAM after whatever is queued (and `chunk`, as Node's end(chunk) does). */
  end(chunk?: Uint8Array | string): void {
    if (!this.writable) return;
    if (chunk !== undefined) this.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
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

  // --- called by the connection ------------------------------------------------

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
    return { chunk, last: this.queue.length === 0 && this.endQueued && !this.endsWithTrailers };
  }

  /** @internal */
  get hasQueuedData(): boolean {
    return this.queue.length > 0;
  }

  /** @internal END_STREAM is due: the queue is empty and end() was called. */
  get endDue(): boolean {
    return this.endQueued && !this.localEnded && this.queue.length === 0;
  }

  /** True when the stream ends with a header block (trailers) rather than an empty DATA frame. */
  protected get endsWithTrailers(): boolean {
    return false;
  }

  /** @internal The header block END_STREAM goes out on, when `endsWithTrailers`. */
  takeTrailers(): Array<[string, string]> | null {
    return null;
  }

  /** END_STREAM went out on a header block written by the subclass (a trailers-only response). */
  protected endedWithHeaders(): void {
    this.endQueued = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.sentEnd();
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
      if (this.paused || this.inbox.length > 0) {
        this.inbox.push(data);
        this.inboxBytes += data.length;
        this.owner.held(data.length);
      } else {
        this.deliver(data);
      }
    }
    if (endStream) this.remoteEnd();
  }

  /** @internal RST_STREAM from the peer, or the connection went away (`code` then says how). */
  reset(code: number, err?: Error): void {
    if (this.destroyed) return;
    if (err !== undefined) this.emit('error', err);
    else if (code !== H2_NO_ERROR && code !== H2_CANCEL) this.emit('error', new H2StreamResetError(code));
    this.finish(code);
  }

  /** The peer's side ended (END_STREAM on DATA or on a header block). */
  protected remoteEnd(): void {
    this.remoteEnded = true;
    if (!this.paused && this.inbox.length === 0) this.emitEnd();
  }

  private deliver(data: Buffer): void {
    this.emit('data', data);
    this.credit(data.length);
  }

  private deliverInbox(): void {
    while (!this.paused && !this.destroyed && this.inbox.length > 0) {
      const data = this.inbox.shift()!;
      this.inboxBytes -= data.length;
      this.owner.held(-data.length);
      this.deliver(data);
    }
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

  private emitEnd(): void {
    if (this.endEmitted || this.destroyed) return;
    this.endEmitted = true;
    this.emit('end');
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.localEnded && this.endEmitted) this.finish(undefined);
  }

  protected finish(code: number | undefined): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.rstCode = code;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.inbox.length = 0;
    if (this.inboxBytes > 0) this.owner.held(-this.inboxBytes);
    this.inboxBytes = 0;
    this.owner.forget(this);
    process.nextTick(() => this.emit('close'));
  }
}
