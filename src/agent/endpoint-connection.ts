/**
 * One established endpoint socket behind a connectID. It reports bytes read
 * and the end of the socket to its relay, takes bytes to write, and knows how
 * to close without losing what was already queued for the destination.
 */
import type { Socket } from 'node:net';
import type { ConnectionCredit } from '../protocol/flow-control.ts';
import { writePayloadToSocket, type Data } from '../protocol/packet.ts';

export interface EndpointConnectionHooks {
  /** One socket read; becomes one DATA packet. */
  data(conn: EndpointConnection, chunk: Buffer): void;
  /** The destination closed (EOF), failed or vanished. Called at most once, never after `release`. */
  ended(conn: EndpointConnection, err: Error | null): void;
  /** The destination took everything queued for it. */
  drained?(conn: EndpointConnection): void;
}

/**
 * After we close, bytes from the destination are read and dropped until it
 * closes too; past this many (once our own bytes are flushed) we cut it.
 */
const MAX_DISCARD_AFTER_CLOSE_BYTES = 1024 * 1024;

/** Why reading is paused; reading resumes only when no reason is left. */
export const PauseReason = { PIPE_FULL: 1, NO_CREDIT: 2 } as const;

export class EndpointConnection {
  readonly connectID: bigint;
  readonly address: string;
  private readonly socket: Socket;
  private readonly hooks: EndpointConnectionHooks;
  /** Set once the relay has forgotten this connection; socket events are then only cleanup. */
  private released = false;
  /** Bit set of PauseReason values. */
  private pausedFor = 0;
  /** Flow-control credit state when the server negotiated it; null otherwise. */
  credit: ConnectionCredit | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  /** Payload bytes accepted by `write`. */
  private bytesAccepted = 0;

  constructor(connectID: bigint, address: string, socket: Socket, hooks: EndpointConnectionHooks) {
    this.connectID = connectID;
    this.address = address;
    this.socket = socket;
    this.hooks = hooks;
  }

  /**
   * Starts reading. Call only after DIAL_RSP went out so no DATA can overtake
   * it; `paused` starts the socket paused while the server pipe is full.
   */
  start(paused: boolean): void {
    const socket = this.socket;
    this.pausedFor = paused ? PauseReason.PIPE_FULL : 0;
    socket.on('data', this.onData);
    if (paused) socket.pause();
    socket.on('drain', () => {
      if (!this.released) this.hooks.drained?.(this);
    });
    socket.on('end', () => this.end(null));
    socket.on('error', (err: Error) => this.end(err));
    socket.on('close', () => {
      this.clearLinger();
      this.end(null);
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.released) this.hooks.data(this, chunk);
  };

  private end(err: Error | null): void {
    if (this.released) return;
    this.released = true;
    this.hooks.ended(this, err);
  }

  /** Bytes accepted by `write` that the destination has not taken yet. */
  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  /**
   * Bytes the destination has taken (accepted by `write` and no longer
   * queued). Node counts a write as done only when the whole write is, so
   * this moves in steps of whole writes.
   */
  get takenBytes(): number {
    return this.bytesAccepted - this.socket.writableLength;
  }

  /** Queues a DATA payload of `length` bytes for the destination (pieces as one writev). Never blocks; the relay enforces the bound. */
  write(payload: Data, length: number): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.bytesAccepted += length;
    writePayloadToSocket(this.socket, payload);
  }

  pauseReading(reason: number = PauseReason.PIPE_FULL): void {
    if (this.released) return;
    const wasPaused = this.pausedFor !== 0;
    this.pausedFor |= reason;
    if (!wasPaused) this.socket.pause();
  }

  resumeReading(reason: number = PauseReason.PIPE_FULL): void {
    if (this.released || (this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if (this.pausedFor === 0) this.socket.resume();
  }

  /**
   * Closes after everything queued for the destination is flushed. Further
   * bytes from the destination are read and dropped: closing a socket with
   * unread input makes Linux answer with RST and discard our unsent output,
   * which is exactly the data loss this close must avoid. `lingerMs` bounds
   * how long a destination that neither reads nor closes can hold the socket.
   */
  closeGracefully(lingerMs: number, onLingerExpired: () => void): void {
    this.released = true;
    const socket = this.socket;
    socket.off('data', this.onData);
    // Drain-and-drop, but only so much: a destination that ignores our FIN and
    // keeps writing must not keep us reading forever.
    let discarded = 0;
    socket.on('data', (chunk: Buffer) => {
      discarded += chunk.length;
      if (discarded > MAX_DISCARD_AFTER_CLOSE_BYTES && socket.writableFinished) socket.destroy();
      else if (discarded > 8 * MAX_DISCARD_AFTER_CLOSE_BYTES) socket.destroy();
    });
    socket.resume();
    if (socket.destroyed) return;
    socket.end();
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      if (!socket.destroyed) {
        onLingerExpired();
        socket.destroy();
      }
    }, lingerMs);
    this.lingerTimer.unref();
  }

  /** Abortive close: queued bytes are dropped. */
  destroy(): void {
    this.released = true;
    this.clearLinger();
    this.socket.destroy();
  }

  private clearLinger(): void {
    if (this.lingerTimer) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
  }
}
