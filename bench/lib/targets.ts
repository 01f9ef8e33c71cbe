/**
 * What a scenario runs against: `direct` (a plain loopback TCP connection to
 * the destination, the baseline) or a tunnel through a separate-process
 * server and agent in one of the two frontend modes.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { createTunnel } from '../../src/client/create-tunnel.ts';
import type { Tunnel, TunnelMode } from '../../src/client/tunnel-options.ts';
import type { Cluster } from './cluster.ts';

export type TargetName = 'direct' | TunnelMode;

export interface Target {
  name: TargetName;
  /** Opens one connection to `host:port`. */
  dial(address: string): Promise<Duplex>;
  /** Server and agent pids (tunnel targets only). */
  serverPid?: number;
  agentPid?: number;
  cluster?: Cluster;
  close(): Promise<void>;
}

export function directTarget(): Target {
  return {
    name: 'direct',
    dial(address) {
      const i = address.lastIndexOf(':');
      return new Promise((resolve, reject) => {
        const socket = net.connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)), noDelay: true });
        socket.once('connect', () => {
          socket.off('error', reject);
          resolve(socket);
        });
        socket.once('error', reject);
      });
    },
    async close() {},
  };
}

/**
 * One tunnel per target, kept for the whole run, as kube-apiserver keeps its
 * egress dialer: in gRPC mode that is one HTTP/2 connection with a stream per
 * dial; in HTTP-CONNECT mode every dial is its own unix-socket connection.
 */
export function tunnelTarget(cluster: Cluster): Target {
  const tunnel: Tunnel = createTunnel({ mode: cluster.mode, transport: { unix: cluster.udsPath } });
  return {
    name: cluster.mode,
    dial: (address) => tunnel.dial('tcp', address),
    serverPid: cluster.server.pid,
    agentPid: cluster.agent.pid,
    cluster,
    close: () => tunnel.close(),
  };
}
