/**
 * HTTP/2 tuning shared by our gRPC server and client. Node's defaults (64 KiB
 * stream windows, 10 MB session memory) cap a long-lived tunnel stream far
 * below what loopback can carry; grpc-go grows its windows dynamically (BDP),
 * so fixed larger windows keep us at least on par with Go peers.
 */
import type { Settings } from 'node:http2';

export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const SESSION_WINDOW_BYTES = 32 * 1024 * 1024;
/** Node counts buffered frames against this (in MB); overflow refuses new streams. */
export const MAX_SESSION_MEMORY_MB = 256;

export const http2Settings: Settings = {
  initialWindowSize: STREAM_WINDOW_BYTES,
  // Large frames let a whole DATA packet (up to 64 KiB payload + framing)
  // arrive in one chunk, which the deframer then passes on without copying.
  maxFrameSize: 1024 * 1024,
  enablePush: false,
};

/** grpc-go's keepalive Timeout default; upstream has no flag for it. */
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 20_000;

/**
 * Ping a session every `intervalMs`; destroy it when an ack takes longer than
 * `timeoutMs`. This is what detects a half-open TCP connection (peer gone
 * without FIN/RST): within intervalMs + timeoutMs.
 */
export function startKeepalive(
  session: { ping(cb: (err: Error | null) => void): boolean; destroy(err?: Error): void; once(event: 'close', cb: () => void): unknown },
  intervalMs: number,
  timeoutMs = DEFAULT_KEEPALIVE_TIMEOUT_MS,
): void {
  if (!(intervalMs > 0) || intervalMs > 2 ** 31 - 1) return;
  const interval = setInterval(() => {
    const timer = setTimeout(() => session.destroy(new Error('keepalive ping not acknowledged')), timeoutMs);
    timer.unref();
    try {
      session.ping(() => clearTimeout(timer));
    } catch {
      clearTimeout(timer);
    }
  }, intervalMs);
  interval.unref();
  session.once('close', () => clearInterval(interval));
}
