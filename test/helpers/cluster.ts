/**
 * Local clusters for end-to-end tests, torn down by the test's `after` hook,
 * and raw sockets to the server's frontend (unix or mTLS TCP).
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { startLocalCluster, type LocalCluster, type LocalClusterOptions } from '../../src/dev/local-cluster.ts';
import type { Tunnel, TunnelMode } from '../../src/client/tunnel-options.ts';
import { createDevPki, type DevPki } from '../../src/dev/pki.ts';
import { readExactly } from './payload.ts';

export type FrontendTransport = 'unix' | 'tcp';

export interface Variant {
  mode: TunnelMode;
  transport: FrontendTransport;
}

/** Every frontend mode over every frontend transport. */
export const variants: readonly Variant[] = [
  { mode: 'grpc', transport: 'unix' },
  { mode: 'grpc', transport: 'tcp' },
  { mode: 'http-connect', transport: 'unix' },
  { mode: 'http-connect', transport: 'tcp' },
];

export function variantName(v: Variant): string {
  return `${v.mode} over ${v.transport === 'unix' ? 'a unix socket' : 'mTLS TCP'}`;
}

/** A cluster that is closed (with its tunnels) after the test. */
export async function startCluster(t: TestContext, options: LocalClusterOptions): Promise<LocalCluster> {
  const cluster = await startLocalCluster({ pki: await sharedPki(), ...options });
  t.after(() => cluster.close());
  return cluster;
}

/** A client tunnel closed after the test. */
export function openTunnel(t: TestContext, cluster: LocalCluster, mode?: TunnelMode): Tunnel {
  const tunnel = cluster.openTunnel(mode);
  t.after(() => tunnel.close());
  return tunnel;
}

/** A raw (plain or mTLS) socket to the frontend, connected and, for TLS, handshaken. Destroyed after the test. */
export async function rawFrontendSocket(t: TestContext, cluster: LocalCluster, tlsOverride?: tls.ConnectionOptions): Promise<net.Socket> {
  const fe = cluster.server.config.frontend;
  let socket: net.Socket;
  if (fe.transport === 'unix') {
    socket = net.connect(fe.path);
    t.after(() => socket.destroy());
    await once(socket, 'connect');
  } else {
    const port = Number(cluster.server.addresses.frontend.split(':').at(-1));
    socket = tls.connect({ host: '127.0.0.1', port, ca: cluster.pki.ca.cert, cert: cluster.frontendClient.cert, key: cluster.frontendClient.key, ...tlsOverride });
    t.after(() => socket.destroy());
    await once(socket, 'secureConnect');
  }
  socket.on('error', () => {});
  return socket;
}

/** Reads one chunk (one `data` event). */
export async function readChunk(socket: net.Socket): Promise<Buffer> {
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk;
}

/** The bytes kube-apiserver sends to open an HTTP-CONNECT tunnel. */
export function connectHead(address: string): string {
  return `CONNECT ${address} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
}

let pkiPromise: Promise<DevPki> | null = null;

/** One throwaway PKI per test process (creating one is cheap, but there is no need to repeat it). */
export function sharedPki(): Promise<DevPki> {
  pkiPromise ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kts-e2e-pki-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return createDevPki(dir);
  })();
  return pkiPromise;
}

/**
 * A tunnel whose client never reads, and so cannot notice being closed
 * either: a paused stream never gets to its end.
 */
export async function neverReadingConnection(t: TestContext, cluster: LocalCluster, mode: TunnelMode, address: string): Promise<void> {
  if (mode === 'grpc') {
    const socket = await openTunnel(t, cluster).dial('tcp', address);
    socket.pause();
    socket.on('error', () => {});
    return;
  }
  const socket = await rawFrontendSocket(t, cluster);
  const established = 'HTTP/1.1 200 Connection Established\r\n\r\n';
  socket.write(connectHead(address));
  // Tunnelled bytes may follow in the same read, so take exactly the head.
  assert.equal((await readExactly(socket, established.length)).toString('latin1'), established);
  socket.pause();
}
