/**
 * Loopback ports with nothing listening: one to dial for ECONNREFUSED, and
 * ports for daemons whose port flags refuse 0. Shared by the tests, the
 * wire-fuzz rig, the HA harness and the benchmarks.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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
