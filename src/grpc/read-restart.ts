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
 * The timer runs only while the session is busy: every packet sent or
 * received on one of its streams (PacketStream) arms it, and it stops after
 * `QUIET_TICKS` ticks with no packet and nothing waiting in the socket's
 * write queue. A deadlock needs a write of ours stuck in that queue, so the
 * timer is running whenever one can happen; an idle agent, on the other
 * hand, is not woken a hundred times a second (measured in an idle agent,
 * its metrics' event-loop sampler already at 100 ms: 1.35 % of a core and
 * 117 wake-ups a second with an always-on timer, 0.15 % and 17 without).
 *
 * This touches `socket._handle.readStart()` and `writeQueueSize`, which
 * net.Socket itself uses; it is covered by the echo and parallel-dial tests
 * (test/e2e-throughput.test.ts), which hang without it, and by
 * test/read-restart.test.ts.
 */
import type { Http2Session } from 'node:http2';
import type net from 'node:net';

export const READ_RESTART_INTERVAL_MS = 10;
/** Ticks without a packet and with an empty write queue before the timer stops. */
export const QUIET_TICKS = 10;

interface NativeHandle {
  readStart(): number;
  /** Bytes handed to the socket and not yet written (libuv's write queue). */
  readonly writeQueueSize?: number;
}

const restarters = new WeakMap<Http2Session, ReadRestarter>();

/** The restarter of the session a stream belongs to, if it has one (client sessions do). */
export function readRestarterOf(session: Http2Session | undefined): ReadRestarter | undefined {
  return session === undefined ? undefined : restarters.get(session);
}

export class ReadRestarter {
  private readonly session: Http2Session;
  private readonly socket: net.Socket;
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | null = null;
  private touched = false;
  private quietTicks = 0;

  constructor(session: Http2Session, socket: net.Socket, intervalMs = READ_RESTART_INTERVAL_MS) {
    this.session = session;
    this.socket = socket;
    this.intervalMs = intervalMs;
  }

  /** Whether the timer is running (for tests and diagnostics). */
  get armed(): boolean {
    return this.timer !== null;
  }

  /** A packet went out or came in: keep restarting reads until the session is quiet again. */
  touch(): void {
    this.touched = true;
    if (this.timer !== null || this.gone()) return;
    this.quietTicks = 0;
    this.timer = setInterval(this.tick, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private gone(): boolean {
    return this.session.closed || this.session.destroyed || this.socket.destroyed;
  }

  private readonly tick = (): void => {
    if (this.gone()) {
      this.stop();
      return;
    }
    const handle = (this.socket as unknown as { _handle?: NativeHandle | null })._handle;
    handle?.readStart();
    // A Node without writeQueueSize on the handle keeps the timer running, as before.
    const writesPending = handle?.writeQueueSize ?? 1;
    if (this.touched || writesPending > 0) this.quietTicks = 0;
    else if (++this.quietTicks >= QUIET_TICKS) this.stop();
    this.touched = false;
  };
}

export function keepReadingDespitePendingWrites(session: Http2Session, socket: net.Socket, intervalMs = READ_RESTART_INTERVAL_MS): ReadRestarter {
  const restarter = new ReadRestarter(session, socket, intervalMs);
  restarters.set(session, restarter);
  restarter.touch();
  session.once('close', () => restarter.stop());
  return restarter;
}
