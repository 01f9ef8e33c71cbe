/**
 * The agent streams that negotiated the server drain notice
 * (src/protocol/server-drain-notice.ts). On a graceful shutdown the server
 * tells each of them once; upstream agents are never in this set.
 */
export class DrainNoticeSet {
  private readonly senders = new Map<object, () => void>();
  private notified = false;

  /** Registers a negotiated agent stream; `send` writes one DRAIN on it. A stream added after notifyAll() is told at once. */
  add(key: object, send: () => void): void {
    this.senders.set(key, send);
    if (this.notified) send();
  }

  delete(key: object): void {
    this.senders.delete(key);
  }

  get size(): number {
    return this.senders.size;
  }

  /** Sends the notice on every registered stream (once per shutdown); returns how many were told. */
  notifyAll(): number {
    if (this.notified) return 0;
    this.notified = true;
    let n = 0;
    for (const send of this.senders.values()) {
      try {
        send();
        n++;
      } catch {
        // that stream is already gone; nothing to tell
      }
    }
    return n;
  }
}
