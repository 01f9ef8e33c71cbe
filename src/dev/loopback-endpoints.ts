/**
 * Loopback endpoints for dialing through a local tunnel: a bare echo server,
 * a port with nothing listening, a port whose dials hang, and ports for
 * daemons whose flags refuse 0.
 * Shared by the tests, the wire-fuzz rig and the benchmarks.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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

/** Claims on ports handed out, shared by every process on the machine (test files run in parallel). */
const CLAIMS_DIR = path.join(os.tmpdir(), 'konnectivity-ts-port-claims');
/** A claim older than this is stale: its daemon has long bound the port or is gone. */
const CLAIM_LIFETIME_MS = 10 * 60_000;

/**
 * Claims `port` for this process unless another process claimed it recently.
 * `wx` makes the claim atomic across processes.
 */
function claim(port: number): boolean {
  const file = path.join(CLAIMS_DIR, String(port));
  try {
    closeSync(openSync(file, 'wx'));
    return true;
  } catch (err) {
    // A claims folder we cannot write (another user's): go on without coordination.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return true;
  }
  try {
    if (Date.now() - statSync(file).mtimeMs < CLAIM_LIFETIME_MS) return false;
    rmSync(file, { force: true });
    closeSync(openSync(file, 'wx'));
    return true;
  } catch {
    return false; // another process renewed it first
  }
}

/**
 * A port on 127.0.0.1 that nothing listens on now, for flags that refuse 0.
 * Drawn below the kernel's ephemeral range: a port the kernel handed out and
 * we released can be taken by any process's next outgoing connection before
 * the daemon under test binds it (seen in CI as EADDRINUSE). Below that range
 * only another picker could take it, so each port is claimed with a file for
 * ten minutes: parallel test processes never get the same one.
 */
export async function unusedLoopbackPort(): Promise<number> {
  const top = ephemeralRangeStart() - 1;
  const bottom = Math.max(1024, top - 16_383);
  try {
    mkdirSync(CLAIMS_DIR, { recursive: true });
  } catch {
    // claim() then finds no folder and goes on without coordination
  }
  for (;;) {
    const port = bottom + Math.floor(Math.random() * (top - bottom + 1));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    if (claim(port) && (await canListen(port))) return port;
  }
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

export interface BlackholeEndpoint {
  readonly port: number;
  /** `127.0.0.1:port`: connects to it stay in SYN-SENT until their own timeout. */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * A loopback port whose listener never accepts: a child process listens with
 * backlog 1 and is stopped (SIGSTOP), and we fill its accept queue. From then
 * on the kernel drops SYNs to it, so a TCP dial hangs until its own timeout.
 * The stopped child is SIGKILLed by `close`, and also when this process exits
 * any other way (an error, or a Ctrl-C handler calling process.exit), so it
 * never outlives its user.
 */
export async function blackholeEndpoint(): Promise<BlackholeEndpoint> {
  const child = spawn(
    process.execPath,
    ['-e', "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>process.stdout.write(s.address().port+'\\n'))"],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const fillers: net.Socket[] = [];
  const closeAll = async (): Promise<void> => {
    process.off('exit', kill);
    for (const s of fillers) s.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(line.toString().trim());
    process.kill(child.pid!, 'SIGSTOP');
    // Connect until one does not complete: the queue is full. Two more make sure.
    for (let i = 0; i < 16; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      fillers.push(s);
      const connected = await Promise.race([once(s, 'connect').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 250))]);
      if (!connected) break;
    }
    for (let i = 0; i < 2; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      fillers.push(s);
    }
    return { port, address: `127.0.0.1:${port}`, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
