/**
 * Destinations for tunnelled connections: small loopback TCP servers that
 * record every connection, plus ports that refuse or never answer. Nothing
 * here ever talks to a non-loopback address.
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { Inbox, deferred } from './wait.ts';
import type { Digest } from './payload.ts';

export interface TargetConnection {
  readonly socket: net.Socket;
  /** sha256 and count of everything received, once the peer ended (or the socket closed). */
  readonly received: Promise<Digest>;
  /** Resolves when the socket is fully closed. */
  readonly closed: Promise<void>;
  /** True once the peer's FIN arrived. */
  readonly peerEnded: () => boolean;
  /** Bytes the target handed to the kernel. */
  readonly bytesWritten: () => number;
}

export type TargetBehaviour = (conn: TargetConnection) => void;

export class TcpTarget {
  readonly server: net.Server;
  readonly connections = new Inbox<TargetConnection>();
  private readonly sockets = new Set<net.Socket>();

  private constructor(server: net.Server) {
    this.server = server;
  }

  static async start(behaviour: TargetBehaviour = () => {}): Promise<TcpTarget> {
    const server = net.createServer({ allowHalfOpen: true });
    const target = new TcpTarget(server);
    server.on('connection', (socket) => {
      target.sockets.add(socket);
      socket.on('error', () => {});
      const h = createHash('sha256');
      let bytes = 0;
      let ended = false;
      let fin = false;
      const received = deferred<Digest>();
      const closedP = deferred<void>();
      socket.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      const settle = (): void => {
        if (ended) return;
        ended = true;
        received.resolve({ bytes, sha256: h.digest('hex') });
      };
      socket.once('end', () => {
        fin = true;
        settle();
      });
      socket.once('close', () => {
        settle();
        target.sockets.delete(socket);
        closedP.resolve();
      });
      const conn: TargetConnection = {
        socket,
        received: received.promise,
        closed: closedP.promise,
        peerEnded: () => fin,
        bytesWritten: () => socket.bytesWritten,
      };
      behaviour(conn);
      target.connections.push(conn);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return target;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Receives and hashes; answers its peer's FIN with its own. */
export const sink: TargetBehaviour = (c) => {
  c.socket.resume();
  c.socket.once('end', () => c.socket.end());
};

/**
 * Accepts and stops reading at once (a destination that stops reading): the
 * bytes pile up in kernel buffers and then in whoever writes to it. Resuming
 * `conn.socket` reads again (and hashes as usual, for `conn.received`).
 */
export const notReading: TargetBehaviour = (c) => {
  c.socket.pause();
  c.socket.once('end', () => c.socket.end());
};

/** Echoes every byte back. */
export const echo: TargetBehaviour = (c) => {
  c.socket.pipe(c.socket);
};

/** Sends `payload` (honouring backpressure) then closes its side. */
export function source(payload: Uint8Array, chunkSize = 256 * 1024): TargetBehaviour {
  return (c) => {
    let off = 0;
    const pump = (): void => {
      while (off < payload.length && !c.socket.destroyed) {
        const piece = payload.subarray(off, off + chunkSize);
        off += piece.length;
        if (!c.socket.write(piece)) {
          c.socket.once('drain', pump);
          return;
        }
      }
      if (!c.socket.destroyed) c.socket.end();
    };
    pump();
  };
}

/**
 * Writes forever (honouring backpressure) until the connection goes away.
 * Like most servers it closes when its peer's EOF arrives.
 */
export function flood(chunk: Uint8Array = Buffer.alloc(64 * 1024, 0x5a)): TargetBehaviour {
  return (c) => {
    c.socket.resume();
    c.socket.once('end', () => c.socket.destroy());
    const pump = (): void => {
      while (!c.socket.destroyed && c.socket.writable) {
        if (!c.socket.write(chunk)) {
          c.socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
  };
}

export { echoEndpoint, type EchoEndpoint } from '../../src/dev/loopback-endpoints.ts';
/** `blackholePort`: a loopback port whose dials hang until their own timeout. */
export { blackholeEndpoint as blackholePort, type BlackholeEndpoint as BlackholePort } from '../../src/dev/loopback-endpoints.ts';
/** `freePort`: a free port in upstream's valid range (1024-49151) for flags that refuse 0. */
export { closedPort, unusedLoopbackPort as freePort } from '../../src/dev/loopback-ports.ts';

