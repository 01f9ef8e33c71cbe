/** Small TCP destinations for the interop tests (loopback only). */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';

export interface EchoDestination {
  address: string;
  /** sha256 (hex) and length of everything each connection received, in connection order. */
  received: Array<{ bytes: number; sha256: () => string }>;
  close(): Promise<void>;
}

/** A TCP echo server that also hashes what it received. */
export async function startEchoDestination(): Promise<EchoDestination> {
  const received: EchoDestination['received'] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const hash = createHash('sha256');
    const entry = { bytes: 0, sha256: () => hash.copy().digest('hex') };
    received.push(entry);
    socket.on('data', (c: Buffer) => {
      hash.update(c);
      entry.bytes += c.length;
    });
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    received,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A TCP server that writes `greeting` to each connection and closes it. */
export async function startGreeter(greeting: Buffer): Promise<{ address: string; close(): Promise<void> }> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(greeting);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return { address: `127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

export { closedPort } from '../../src/dev/loopback-ports.ts';

/** Polls `predicate` until it holds (no timing assertion: the deadline only bounds a hang). */
export async function until(predicate: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
