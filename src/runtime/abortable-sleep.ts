/**
 * Waits that a shutdown cuts short: the agent's reconnect loop and both lease
 * loops sleep between attempts and must stop at once when they are stopped.
 */

/** Resolves after `ms`, or as soon as `signal` aborts (at once if it already has). Never rejects. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
