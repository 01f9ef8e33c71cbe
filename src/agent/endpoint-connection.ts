/**
 * One established endpoint socket behind a connectID. It reports bytes read
 * and the end of the socket to its relay, takes bytes to write, and knows how
 * to close without losing what was already queued for the destination.
 */
import type { Socket } from 'node:net';

export interface EndpointConnectionHooks {
  /** One socket read; becomes one DATA packet. */
  data(conn: EndpointConnection, chunk: Buffer): void;
  /** The destination closed (EOF), failed or vanished. Called at most once, never after `release`. */
  ended(conn: EndpointConnection, err: Error | null): void;
}

export class EndpointConnection {
  readonly connectID: bigint;
  readonly address: string;
  private readonly socket: Socket;
  private readonly hooks: EndpointConnectionHooks;
  /** Set once the relay has forgotten this connection; socket events are then only cleanup. */
  private released = false;
  private readingPaused = false;
  private lingerTimer: NodeJS.Timeout | null = null;

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
    this.readingPaused = paused;
    socket.on('data', this.onData);
    if (paused) socket.pause();
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

  /** Queues bytes for the destination. Never blocks; the relay enforces the bound. */
  write(data: Uint8Array): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }

  pauseReading(): void {
    if (this.released || this.readingPaused) return;
    this.readingPaused = true;
    this.socket.pause();
  }

  resumeReading(): void {
    if (this.released || !this.readingPaused) return;
    this.readingPaused = false;
    this.socket.resume();
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
