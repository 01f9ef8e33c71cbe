/**
 * Loopback endpoints for dialing through a local tunnel: a bare echo server,
 * a port with nothing listening, and ports for daemons whose flags refuse 0.
 * Shared by the tests, the wire-fuzz rig and the benchmarks.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
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
export function closedPort(): Promise<number> {
  return unusedLoopbackPort();
}

const handedOut = new Set<number>();

/** Lowest port the kernel picks for port-0 listeners and outgoing connections. */
function ephemeralRangeStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(first) && first > 2048) return first;
  } catch {
    // Not Linux, or no procfs: use Linux's default.
  }
  return 32768;
}

/**
 * A port on 127.0.0.1 that nothing listens on now, for flags that refuse 0.
 * Drawn below the kernel's ephemeral range: a port the kernel handed out and
 * we released can be taken by any process's next outgoing connection before
 * the daemon under test binds it (seen in CI as EADDRINUSE). Outside that
 * range only another picker could take it, and this process never hands the
 * same port out twice.
 */
export async function unusedLoopbackPort(): Promise<number> {
  const top = ephemeralRangeStart() - 1;
  const bottom = Math.max(1024, top - 16_383);
  for (;;) {
    const port = bottom + Math.floor(Math.random() * (top - bottom + 1));
    if (handedOut.has(port)) continue;
    if (await canListen(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}
