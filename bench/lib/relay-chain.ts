/**
 * Starts one chain of bench/diagnostics/node-relay-floor.ts (relay 1 on a
 * unix socket in front, relay 2 dialing the destination), each relay a child
 * process of its own. Shared by the relay-floor and dial-hops diagnostics.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const relayFloorScript = fileURLToPath(new URL('../diagnostics/node-relay-floor.ts', import.meta.url));

export interface RelayChainOptions {
  /** The hop shape, one of node-relay-floor.ts's chain hops (e.g. 'h2-mux-connect'). */
  hop: string;
  /** host:port relay 2 forwards to. */
  destination: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  /** Unix socket relay 1 listens on. */
  uds: string;
  /** Both relays are added here, for the caller to stop. */
  children: ChildProcess[];
}

/** Resolves once both relays are listening; pids are relay 1's and relay 2's. */
export async function startRelayChain(options: RelayChainOptions): Promise<{ uds: string; pids: [number, number] }> {
  const { hop, children } = options;
  const relay2 = await startRelay(['--relay2', hop, options.destination, options.certPath, options.keyPath], children);
  const relay1 = await startRelay(['--relay1', hop, relay2.line, options.uds, options.caPath], children);
  return { uds: options.uds, pids: [relay1.pid, relay2.pid] };
}

/** A relay prints one line when it listens: relay 2 its port, relay 1 "ready". */
async function startRelay(args: string[], children: ChildProcess[]): Promise<{ pid: number; line: string }> {
  const child = spawn(process.execPath, [relayFloorScript, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return { pid: child.pid!, line: line.toString().trim() };
}
