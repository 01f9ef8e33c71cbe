/**
 * Loopback endpoints for dialing through a local tunnel: a bare echo server
 * and a port with nothing listening. Shared by the tests and the wire-fuzz
 * rig, which only need somewhere to dial.
 */
import { once } from 'node:events';
import net from 'node:net';

export interface EchoEndpoint {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Destroys the open sockets first, so it never waits for a tunnel to let go of one. */
  close(): Promise<void>;
}

/** An echo server on 127.0.0.1 that records nothing and does not allow half-open connections. */
export async function echoEndpoint(): Promise<EchoEndpoint> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port with nothing listening: dials get ECONNREFUSED. */
export async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
