/**
 * A deliberately small HTTP/1.1 client over any Duplex (a net.Socket or a
 * tunnelled connection): one request at a time, responses framed by
 * Content-Length only (which is what the destination sends). It keeps the
 * load generator's own cost low and the same for every target, so the
 * figures measure the proxy rather than node:http's client.
 */
import type { Duplex } from 'node:stream';

const HEADER_END = Buffer.from('\r\n\r\n');

export interface ResponseInfo {
  status: number;
  bodyBytes: number;
  /** performance.now() when the first response byte arrived. */
  firstByteAt: number;
}

export class MiniHttpConnection {
  readonly socket: Duplex;
  private head: Buffer | null = null;
  private status = 0;
  private bodyLeft = -1;
  private bodyBytes = 0;
  private firstByteAt = 0;
  private waiter: { resolve: (r: ResponseInfo) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  /** When true, body chunks are spot-checked to be the destination's 'a' bytes. */
  checkBody = true;

  constructor(socket: Duplex) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed before the response completed')));
    socket.on('end', () => this.fail(new Error('connection ended before the response completed')));
  }

  /** Sends `GET path` and resolves when the whole response has arrived. */
  get(path: string): Promise<ResponseInfo> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiter) return Promise.reject(new Error('request already in flight'));
    const done = new Promise<ResponseInfo>((resolve, reject) => (this.waiter = { resolve, reject }));
    this.head = null;
    this.bodyLeft = -1;
    this.bodyBytes = 0;
    this.firstByteAt = 0;
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: bench\r\n\r\n`);
    return done;
  }

  /** Body bytes of the current (or last) response received so far. */
  get receivedBodyBytes(): number {
    return this.bodyBytes;
  }

  close(): void {
    this.waiter = null;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (!this.waiter) return;
    if (this.firstByteAt === 0) this.firstByteAt = performance.now();
    if (this.bodyLeft < 0) {
      const buf: Buffer = this.head ? Buffer.concat([this.head, chunk]) : chunk;
      const end = buf.indexOf(HEADER_END);
      if (end < 0) {
        this.head = buf;
        return;
      }
      const headText = buf.toString('latin1', 0, end);
      this.status = Number(headText.slice(9, 12));
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(headText);
      if (!m) return this.fail(new Error(`response without Content-Length: ${headText.split('\r\n')[0]}`));
      this.bodyLeft = Number(m[1]);
      this.head = null;
      chunk = buf.subarray(end + 4);
    }
    if (chunk.length > this.bodyLeft) return this.fail(new Error(`${chunk.length - this.bodyLeft} bytes more than Content-Length`));
    if (this.checkBody && chunk.length > 0 && this.bodyLeft > 1000 && (chunk[0] !== 0x61 || chunk[chunk.length - 1] !== 0x61)) {
      return this.fail(new Error('corrupted body bytes'));
    }
    this.bodyLeft -= chunk.length;
    this.bodyBytes += chunk.length;
    if (this.bodyLeft === 0) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve({ status: this.status, bodyBytes: this.bodyBytes, firstByteAt: this.firstByteAt });
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }
}
