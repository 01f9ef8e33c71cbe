/**
 * Waiting without timing assertions: poll a condition until it holds. The
 * deadline only turns a hang into a readable failure; no test asserts that
 * anything happens within a given time.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, deadlineMs = 20_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await sleep(10);
  }
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Items in arrival order, awaited one at a time. */
export class Inbox<T> {
  readonly all: T[] = [];
  private readIndex = 0;
  private waiters: Array<() => void> = [];

  push(item: T): void {
    this.all.push(item);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  async next(): Promise<T> {
    while (this.readIndex >= this.all.length) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return this.all[this.readIndex++]!;
  }

  /** The next item matching `pred`; earlier non-matching items are consumed. */
  nextMatching<S extends T>(pred: (item: T) => item is S): Promise<S>;
  nextMatching(pred: (item: T) => boolean): Promise<T>;
  async nextMatching(pred: (item: T) => boolean): Promise<T> {
    for (;;) {
      const item = await this.next();
      if (pred(item)) return item;
    }
  }
}
