/**
 * Client-side rate limiting of Kubernetes API requests, as client-go does
 * with `rest.Config.QPS`/`Burst` (flowcontrol.NewTokenBucketRateLimiter):
 * a bucket of `burst` tokens, refilled at `qps` per second, full at start.
 */

/** client-go's defaults, used when --kubeconfig-qps / --kubeconfig-burst are 0. */
export const DEFAULT_KUBE_QPS = 5;
export const DEFAULT_KUBE_BURST = 10;

export interface RateLimiter {
  /** Resolves when the request may be sent; rejects with the signal's reason if it aborts first. */
  take(signal?: AbortSignal): Promise<void>;
}

/**
 * client-go's rule for the two flags: 0 means the default; a negative QPS
 * turns limiting off (rest.Config with QPS < 0 gets no rate limiter).
 */
export function kubeRateLimits(qps: number, burst: number): { qps: number; burst: number } {
  return {
    qps: qps === 0 ? DEFAULT_KUBE_QPS : qps < 0 ? Number.POSITIVE_INFINITY : qps,
    burst: burst <= 0 ? DEFAULT_KUBE_BURST : burst,
  };
}

/**
 * Token bucket with reservations (golang.org/x/time/rate semantics): a
 * caller that finds the bucket empty reserves the next token and sleeps
 * until it is due; callers are served in arrival order. An aborted wait
 * gives its token back.
 */
export class TokenBucket implements RateLimiter {
  readonly qps: number;
  readonly burst: number;
  private tokens: number;
  private last: number;
  private readonly now: () => number;

  constructor(qps: number, burst: number, now: () => number = () => performance.now()) {
    if (!(qps > 0)) throw new RangeError(`qps must be > 0, got ${qps}`);
    if (!(burst >= 1)) throw new RangeError(`burst must be >= 1, got ${burst}`);
    this.qps = qps;
    this.burst = burst;
    this.now = now;
    this.tokens = burst;
    this.last = now();
  }

  /** Milliseconds the next caller would wait (0 when a token is available). */
  get pendingDelayMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : ((1 - this.tokens) / this.qps) * 1000;
  }

  take(signal?: AbortSignal): Promise<void> {
    if (!Number.isFinite(this.qps)) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.refill();
    this.tokens -= 1;
    if (this.tokens >= 0) return Promise.resolve();
    const waitMs = (-this.tokens / this.qps) * 1000;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        clearTimeout(timer);
        this.tokens += 1;
        reject(signal?.reason);
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.ceil(waitMs));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
  }
}

/** No limiting (QPS < 0). */
export const unlimited: RateLimiter = { take: (signal) => (signal?.aborted ? Promise.reject(signal.reason) : Promise.resolve()) };

export function createKubeRateLimiter(qps: number, burst: number): RateLimiter {
  const limits = kubeRateLimits(qps, burst);
  return Number.isFinite(limits.qps) ? new TokenBucket(limits.qps, limits.burst) : unlimited;
}
