/**
 * The "dial + first byte" probe shared by the bench's dial scenario and the
 * relay-floor diagnostic, so both time exactly the same thing.
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { createTunnel } from '../../src/client/create-tunnel.ts';

/** Sends GET / on a fresh connection; milliseconds from `t0` to the first response byte. Destroys the socket. */
export async function firstByteAfter(t0: number, socket: Duplex): Promise<number> {
  try {
    socket.write('GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n');
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    const ms = performance.now() - t0;
    if (!chunk.toString('latin1', 0, 12).startsWith('HTTP/1.1 200')) throw new Error(`unexpected answer ${JSON.stringify(chunk.toString('latin1', 0, 40))}`);
    return ms;
  } finally {
    socket.destroy();
  }
}

/**
 * A kube-apiserver with a single-use tunnel per dial (CreateSingleUseGrpcTunnel,
 * most releases in the field) opens a new gRPC connection for every dial:
 * HTTP/2 handshake, then one Proxy stream. This times that, connection setup
 * included; the tunnel is closed after the first byte.
 */
export async function newGrpcConnectionFirstByte(udsPath: string, address: string): Promise<number> {
  const t0 = performance.now();
  const tunnel = createTunnel({ mode: 'grpc', transport: { unix: udsPath } });
  try {
    return await firstByteAfter(t0, await tunnel.dial('tcp', address));
  } finally {
    await tunnel.close();
  }
}
