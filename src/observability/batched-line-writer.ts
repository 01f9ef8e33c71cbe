/**
 * Joins log lines written close together into one write. Standard error is
 * synchronous in Node (files and pipes), so each line used to be a write(2)
 * of its own: at the daemons' default -v=4 a dial logs two lines in the server
 * and three in the agent, and those writes plus the JSON were about a tenth
 * of their CPU in the dial benchmark.
 *
 * A line waits at most `maxDelayMs`. Error lines, a full batch and process
 * exit flush at once, so only SIGKILL can lose lines (klog's buffered log
 * files lose more on the same signal).
 *
 * A line may also be queued unbuilt (a `LazyLine`, see deferred-log-line.ts):
 * its text is built when the batch is written.
 */

/** A line whose text is built on demand; `estimatedChars` counts toward the batch's size bound meanwhile. */
export interface LazyLine {
  readonly estimatedChars: number;
  text(): string;
}

export interface BatchedLineWriterOptions {
  /** Longest time a line waits for company. */
  maxDelayMs?: number;
  /** Flush once this many characters are pending. */
  maxPendingChars?: number;
}

export class BatchedLineWriter {
  private readonly out: (text: string) => void;
  private readonly maxDelayMs: number;
  private readonly maxPendingChars: number;
  private pending: (string | LazyLine)[] = [];
  private pendingChars = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.flush();
  };

  constructor(out: (text: string) => void, options: BatchedLineWriterOptions = {}) {
    this.out = out;
    this.maxDelayMs = options.maxDelayMs ?? 20;
    this.maxPendingChars = options.maxPendingChars ?? 64 * 1024;
  }

  /** Queues one line (no trailing newline); `urgent` writes it and everything before it now. */
  write(line: string | LazyLine, urgent = false): void {
    this.pending.push(line);
    this.pendingChars += (typeof line === 'string' ? line.length : line.estimatedChars) + 1;
    if (urgent || this.pendingChars >= this.maxPendingChars) {
      this.flush();
    } else if (this.timer === undefined) {
      this.timer = setTimeout(this.onTimer, this.maxDelayMs);
      // Pending lines never keep a process alive; 'exit' flushes them.
      this.timer.unref();
    }
  }

  /** Writes every pending line, in order, as one string. */
  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    this.pendingChars = 0;
    let text = '';
    for (let i = 0; i < pending.length; i++) {
      const line = pending[i]!;
      text += typeof line === 'string' ? line : line.text();
      text += '\n';
    }
    this.out(text);
  }
}
