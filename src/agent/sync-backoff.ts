/**
 * The sync loop's timing, matching k8s.io/apimachinery wait.Backoff as
 * upstream configures it: start at sync-interval, grow ×1.5 per failure up to
 * sync-interval-cap, and add up to 10 % jitter (Go's jitter only ever adds).
 */

export const SYNC_BACKOFF_FACTOR = 1.5;
export const SYNC_JITTER = 0.1;

/** wait.Jitter: `ms` plus a random share of up to `maxFactor × ms`. */
export function jitter(ms: number, maxFactor: number, random: () => number = Math.random): number {
  return ms + random() * maxFactor * ms;
}

export class SyncBackoff {
  private readonly initialMs: number;
  private readonly capMs: number;
  private readonly random: () => number;
  private nextMs: number;

  constructor(initialMs: number, capMs: number, random: () => number = Math.random) {
    this.initialMs = initialMs;
    this.capMs = capMs;
    this.random = random;
    this.nextMs = initialMs;
  }

  /** The wait after a failed attempt (wait.Backoff.Step). */
  step(): number {
    const current = this.nextMs;
    this.nextMs = Math.min(current * SYNC_BACKOFF_FACTOR, this.capMs > 0 ? this.capMs : Infinity);
    return jitter(current, SYNC_JITTER, this.random);
  }

  /** The wait after a successful or duplicate attempt; also restarts the backoff. */
  steady(): number {
    this.nextMs = this.initialMs;
    return jitter(this.initialMs, SYNC_JITTER, this.random);
  }
}
