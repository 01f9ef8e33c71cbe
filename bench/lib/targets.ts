/**
 * What a scenario runs against: `direct` (a plain loopback TCP connection to
 * the destination, the baseline) or a tunnel through a separate-process
 * server and agent in one of the two frontend modes: ours (`grpc`,
 * `http-connect`) or, with --upstream-server/--upstream-agent, upstream's Go
 * binaries (`upstream-grpc`, `upstream-http-connect`), reached with the same
 * client library.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { createTunnel } from '../../src/client/create-tunnel.ts';
import type { Tunnel, TunnelMode } from '../../src/client/tunnel-options.ts';
import type { Cluster } from './cluster.ts';

export type UpstreamTargetName = `upstream-${TunnelMode}`;
export type TargetName = 'direct' | TunnelMode | UpstreamTargetName;

export const tunnelModes: readonly TunnelMode[] = ['grpc', 'http-connect'];

/** The upstream target of a mode. */
export function upstreamName(mode: TunnelMode): UpstreamTargetName {
  return `upstream-${mode}`;
}

export function isUpstream(name: TargetName): name is UpstreamTargetName {
  return name.startsWith('upstream-');
}

/** The target name of a cluster: its mode for ours, `upstream-<mode>` for upstream's binaries. */
export function clusterTargetName(cluster: Pick<Cluster, 'mode' | 'upstream'>): TargetName {
  return cluster.upstream ? upstreamName(cluster.mode) : cluster.mode;
}

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
 * The same for upstream's server: only the process behind the socket differs.
 */
export function tunnelTarget(cluster: Cluster): Target {
  const tunnel: Tunnel = createTunnel({ mode: cluster.mode, transport: { unix: cluster.udsPath } });
  return {
    name: clusterTargetName(cluster),
    dial: (address) => tunnel.dial('tcp', address),
    serverPid: cluster.server.pid,
    agentPid: cluster.agent.pid,
    cluster,
    close: () => tunnel.close(),
  };
}
