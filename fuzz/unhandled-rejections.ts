/**
 * Catches promise rejections that nobody handled during fuzz cases.
 *
 * Node reports an unhandled rejection ('unhandledRejection') only after the
 * microtask queue has drained at the end of a macrotask. A fuzz loop whose
 * cases only ever await promises never gets there: the whole loop runs as
 * one chain of microtasks, and every report arrives after the loop, when no
 * check looks any more. `check()` therefore first yields to the event loop
 * (one setImmediate, about 3 µs) so the rejections of the cases so far are
 * reported, and only then looks.
 */

export class UnhandledRejectionError extends Error {
  readonly rejection: unknown;
  constructor(rejection: unknown) {
    super(`unhandled promise rejection: ${rejection instanceof Error ? (rejection.stack ?? rejection.message) : String(rejection)}`);
    this.name = 'UnhandledRejectionError';
    this.rejection = rejection;
  }
}

export class UnhandledRejections {
  private first: { reason: unknown } | null = null;
  private readonly listener = (reason: unknown): void => {
    this.first ??= { reason };
  };

  /** Starts listening (process-wide, until stop()). */
  start(): this {
    process.on('unhandledRejection', this.listener);
    return this;
  }

  stop(): void {
    process.off('unhandledRejection', this.listener);
  }

  /** Yields to the event loop, then throws UnhandledRejectionError if anything rejected unhandled since the last check. */
  async check(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const seen = this.first;
    this.first = null;
    if (seen) throw new UnhandledRejectionError(seen.reason);
  }
}
