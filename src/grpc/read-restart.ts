/**
 * Keeps a client HTTP/2 session reading while its own write is stuck.
 *
 * Node's Http2Session stops reading its socket whenever a read arrives while
 * one of its own writes is still in progress (node_http2.cc,
 * MaybeStopReading), and starts again only when that write completes. When
 * both ends of a connection are Node and both pump bulk data, each one's write
 * waits for the other's read and the connection deadlocks (reproduced: 200
 * parallel echo tunnels through one gRPC session stall for good). Go peers
 * always read, so only Node-to-Node links are affected — exactly our
 * client→server and agent→server links. One side that keeps reading is enough.
 *
 * Session 1 solved this by handing http2 a JavaScript Duplex that always read
 * (node's JSStreamSocket). That costs a copy of every byte in each direction
 * (js_stream.cc copies into fresh buffers) and two JS↔C++ crossings per
 * chunk: measured with a bare HTTP/2-over-TLS sender, 244 MB/s instead of
 * 395 MB/s and 40 % more CPU. Instead, the session keeps Node's native socket
 * and we restart reading on the native handle on a short timer. While the
 * session's "reading stopped" flag is set, MaybeStopReading returns early,
 * so once restarted the socket keeps reading until the write completes and
 * Node clears the flag itself. A stall therefore lasts at most one interval,
 * and when nothing is stuck the restart is a no-op on a reading socket.
 * HTTP/2 flow-control windows still bound what the peer can send us.
 *
 * This touches `socket._handle.readStart()`, which net.Socket itself uses; it
 * is covered by the echo and parallel-dial tests (test/e2e-throughput.test.ts),
 * which hang without it.
 */
import type { ClientHttp2Session } from 'node:http2';
import type net from 'node:net';

export const READ_RESTART_INTERVAL_MS = 10;

interface NativeHandle {
  readStart(): number;
}

export function keepReadingDespitePendingWrites(session: ClientHttp2Session, socket: net.Socket, intervalMs = READ_RESTART_INTERVAL_MS): void {
  const timer = setInterval(() => {
    if (session.closed || session.destroyed || socket.destroyed) return;
    const handle = (socket as unknown as { _handle?: NativeHandle | null })._handle;
    handle?.readStart();
  }, intervalMs);
  timer.unref();
  session.once('close', () => clearInterval(timer));
}
