/**
 * Keeps reading a socket even while HTTP/2 has a write pending.
 *
 * Node's Http2Session stops reading its socket while one of its own writes
 * is in progress (node_http2.cc, MaybeStopReading). When both ends of a
 * connection are Node and both pump bulk data, each one's write waits for
 * the other's read, and the connection deadlocks (reproduced: a 64 MiB echo
 * through one gRPC stream stalls at 0 bytes). Go peers always read, so only
 * Node-to-Node links are affected — which is exactly our client→server and
 * agent→server links. One eager side per link is enough, so only our gRPC
 * clients (client library, agent) use this; the server keeps native sockets.
 * Reading eagerly is safe: HTTP/2 flow-control windows bound how much the
 * peer can send us.
 */
import { Duplex } from 'node:stream';
import type net from 'node:net';

export class EagerReadingSocket extends Duplex {
  /** The real socket (TLS details, peer certificate, addresses). */
  readonly inner: net.Socket;

  constructor(inner: net.Socket) {
    super({ allowHalfOpen: false });
    this.inner = inner;
    inner.on('data', (chunk: Buffer) => {
      this.push(chunk);
    });
    inner.once('end', () => this.push(null));
    inner.once('error', (err: Error) => this.destroy(err));
    inner.once('close', () => this.destroy());
  }

  override _read(): void {
    // Data is pushed as it arrives; see the class comment for why we never pause.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.inner.write(chunk, callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    // Corked writes reach the socket as one native writev: no concatenation copy.
    const inner = this.inner;
    inner.cork();
    for (let i = 0; i < chunks.length - 1; i++) inner.write(chunks[i]!.chunk);
    inner.write(chunks[chunks.length - 1]!.chunk, callback);
    inner.uncork();
  }

  override _final(callback: () => void): void {
    this.inner.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.inner.destroy();
    callback(err);
  }

  // http2 reads these off the socket it is given.
  get remoteAddress(): string | undefined {
    return this.inner.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.inner.remotePort;
  }
  get localAddress(): string | undefined {
    return this.inner.localAddress;
  }
  get localPort(): number | undefined {
    return this.inner.localPort;
  }
  setNoDelay(noDelay?: boolean): this {
    this.inner.setNoDelay(noDelay);
    return this;
  }
  setKeepAlive(enable?: boolean, delay?: number): this {
    this.inner.setKeepAlive(enable, delay);
    return this;
  }
  setTimeout(ms: number, cb?: () => void): this {
    this.inner.setTimeout(ms, cb);
    return this;
  }
}

/** The real socket behind what an HTTP/2 session was given. */
export function innerSocket(socket: unknown): net.Socket {
  // node:http2 wraps a non-native stream in a JSStreamSocket whose `stream` is ours.
  const s = socket as { inner?: net.Socket; stream?: { inner?: net.Socket } };
  return s.inner ?? s.stream?.inner ?? (socket as net.Socket);
}
