/**
 * What a side does, with a peer that has no per-connection flow control (an
 * upstream server or agent), while one connection's reader has more than its
 * bound queued: `--frontend-stall-policy` on the server, `--endpoint-stall-policy`
 * on the agent. 'close' (the default) never pauses the shared stream: the
 * reader's queue may grow to `stallLimit(bound)` while it keeps taking bytes,
 * and that connection alone is closed past that, or after the stall timeout
 * without progress. 'pause' stops reading the whole shared stream until the
 * reader drains, as upstream does (every connection on it waits), and closes
 * the connection after the stall timeout without progress.
 * docs/design/flow-control.md has the trade-off.
 */
export type StallPolicy = 'close' | 'pause';

export const STALL_POLICIES: readonly StallPolicy[] = ['close', 'pause'];

/** Under 'close': the most a connection over its bound may have queued before it is closed. */
export function stallLimit(bound: number): number {
  return 2 * bound;
}

/**
 * Calls `onStalled` once `takenBytes()` has not grown over a whole interval
 * (progress, not completion, keeps a connection). Stop it with clearInterval.
 */
export function watchProgress(takenBytes: () => number, intervalMs: number, onStalled: () => void): NodeJS.Timeout {
  let taken = takenBytes();
  const timer = setInterval(() => {
    const now = takenBytes();
    if (now > taken) taken = now;
    else onStalled();
  }, intervalMs);
  timer.unref();
  return timer;
}
