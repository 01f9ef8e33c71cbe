/**
 * Successful agent token validations, remembered for `--authentication-cache-ttl`
 * so an agent that reconnects (its sync loop behind a load balancer, a
 * restart, a flapping network) costs the apiserver one TokenReview per TTL
 * instead of one per connection. Upstream reviews every Connect; at 5,000
 * nodes that throttled TokenReviews for minutes (upstream-known-problems
 * item 9). Concurrent validations of one token share one review.
 *
 * What is kept: a SHA-256 of the token (never the token) and the username
 * it was validated as. An entry ends at the TTL, or at the token's own `exp`
 * claim when that is sooner (read without verifying: it can only shorten
 * the entry). Failures are never cached: a token the apiserver could not
 * review now is reviewed again on the next connection. At most
 * `maxEntries` tokens are held; the oldest go first.
 */
import { createHash } from 'node:crypto';

export const DEFAULT_AUTHENTICATION_CACHE_TTL_MS = 60_000;
export const DEFAULT_MAX_CACHED_TOKENS = 10_000;

/** How a validation was answered. */
export type TokenValidationSource = 'review' | 'cache' | 'shared';

export type TokenValidation = { username: string; source: TokenValidationSource } | { error: unknown; source: TokenValidationSource };

interface Entry {
  username: string;
  expiresAtMs: number;
}

/** The `exp` claim (ms since the epoch) of a JWT, or undefined when the token is not a JWT with a numeric exp. */
export function jwtExpiryMs(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === undefined || parts[1].length > 8192) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    const exp = typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>)['exp'] : undefined;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export class TokenReviewCache {
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<string>>();

  constructor(options: { ttlMs: number; maxEntries?: number; now?: () => number }) {
    this.ttlMs = options.ttlMs;
    this.maxEntries = options.maxEntries ?? DEFAULT_MAX_CACHED_TOKENS;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The username `token` validates as: from the cache, from a review already
   * running for it, or from `validate` (which throws when the token is
   * refused). A refusal comes back as `error`, with where it came from.
   */
  async resolve(token: string, validate: (token: string) => Promise<string>): Promise<TokenValidation> {
    const key = createHash('sha256').update(token).digest('base64');
    const now = this.now();
    const cached = this.entries.get(key);
    if (cached) {
      if (cached.expiresAtMs > now) return { username: cached.username, source: 'cache' };
      this.entries.delete(key);
    }
    const running = this.inFlight.get(key);
    if (running) {
      try {
        return { username: await running, source: 'shared' };
      } catch (error) {
        return { error, source: 'shared' };
      }
    }
    const review = validate(token);
    this.inFlight.set(key, review);
    try {
      const username = await review;
      this.remember(key, username, token);
      return { username, source: 'review' };
    } catch (error) {
      return { error, source: 'review' };
    } finally {
      this.inFlight.delete(key);
    }
  }

  private remember(key: string, username: string, token: string): void {
    const now = this.now();
    const exp = jwtExpiryMs(token);
    const expiresAtMs = Math.min(now + this.ttlMs, exp ?? Number.POSITIVE_INFINITY);
    if (expiresAtMs <= now) return;
    this.entries.delete(key);
    this.entries.set(key, { username, expiresAtMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }
}
