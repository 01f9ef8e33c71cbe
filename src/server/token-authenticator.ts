/**
 * Agent token authentication (`--agent-namespace`, `--agent-service-account`,
 * `--authentication-audience`): upstream's authenticateAgentViaToken and
 * validateAuthToken (pkg/server/server.go). Every Connect carries exactly
 * one `authorization: Bearer <token>` value; the server creates one
 * TokenReview per connect with the configured audience and accepts only
 * `system:serviceaccount:<namespace>:<service account>`.
 *
 * Unlike upstream, the TokenReview has a deadline (10 s by default), so a
 * slow apiserver cannot hold agent streams open forever; the stream stays
 * paused (nothing relayed) until the review decides. And a token accepted
 * once is accepted again for `--authentication-cache-ttl` without another
 * review (token-review-cache.ts); 0 reviews every connect, as upstream.
 */
import type { Counter, Registry } from 'prom-client';
import { registeredCounter } from '../observability/registered-counter.ts';
import type { GrpcServerCall } from '../grpc/grpc-server.ts';
import type { RequestOptions, TokenReviewResult } from '../kube/kube-client.ts';
import { silentLogger, type Logger } from '../observability/logger.ts';
import type { AgentAuthenticator } from './agent-backend.ts';
import { DEFAULT_AUTHENTICATION_CACHE_TTL_MS, TokenReviewCache } from './token-review-cache.ts';

export const BEARER_PREFIX = 'Bearer ';
export const DEFAULT_TOKEN_REVIEW_TIMEOUT_MS = 10_000;

/** The one API call this needs (KubeClient implements it). */
export interface TokenReviewer {
  createTokenReview(token: string, audiences: readonly string[], options?: RequestOptions): Promise<TokenReviewResult>;
}

export interface TokenAuthenticatorOptions {
  reviewer: TokenReviewer;
  /** `--agent-namespace`. */
  namespace: string;
  /** `--agent-service-account`. */
  serviceAccount: string;
  /** `--authentication-audience`. */
  audience: string;
  /** Deadline for the TokenReview, including the wait for the client's rate limiter. */
  timeoutMs?: number;
  /** `--authentication-cache-ttl`: how long an accepted token is accepted again without a review; 0 = review every connect. */
  cacheTtlMs?: number;
  /** Where `konnectivity_network_proxy_server_ts_agent_token_validations_total` is registered. */
  registry?: Registry;
  now?: () => number;
  logger?: Logger;
}

const VALIDATIONS_METRIC = 'konnectivity_network_proxy_server_ts_agent_token_validations_total';

/** A rejected agent: the message goes to the agent (UNAUTHENTICATED) and to the log. */
export class AgentAuthenticationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentAuthenticationError';
  }
}

// A header object keeps only the first value of `authorization` in Node's
// HTTP/2 (a single-value header) and silently drops the rest; upstream
// rejects a Connect that carries more than one. The call's raw header list,
// which both HTTP/2 implementations hand over, still has them all.

/** Every value of a metadata key as the peer sent it. */
export function metadataValuesOf(call: GrpcServerCall, key: string): string[] {
  if (call.rawHeaders.length > 0) return call.values(key);
  const v = call.metadata[key];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

export class TokenReviewAuthenticator implements AgentAuthenticator {
  private readonly options: TokenAuthenticatorOptions;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly cache: TokenReviewCache | undefined;
  private readonly validations: Counter<'result' | 'source'> | undefined;

  constructor(options: TokenAuthenticatorOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TOKEN_REVIEW_TIMEOUT_MS;
    const ttlMs = options.cacheTtlMs ?? DEFAULT_AUTHENTICATION_CACHE_TTL_MS;
    this.cache = ttlMs > 0 ? new TokenReviewCache({ ttlMs, ...(options.now ? { now: options.now } : {}) }) : undefined;
    this.validations = options.registry
      ? registeredCounter(
          options.registry,
          VALIDATIONS_METRIC,
          'Agent token validations by result (accepted, refused) and source: review (a TokenReview), cache (accepted within --authentication-cache-ttl), shared (the review another connection with the same token was waiting for).',
          ['result', 'source'],
        )
      : undefined;
  }

  async authenticate(call: GrpcServerCall): Promise<void> {
    const values = metadataValuesOf(call, 'authorization');
    if (values.length === 0) throw new AgentAuthenticationError('Authentication context was not found in metadata');
    if (values.length > 1) throw new AgentAuthenticationError(`too many (${values.length}) tokens are received`);
    const value = values[0] ?? '';
    if (!value.startsWith(BEARER_PREFIX)) throw new AgentAuthenticationError(`received token does not have ${JSON.stringify(BEARER_PREFIX)} prefix`);
    const token = value.slice(BEARER_PREFIX.length);
    const outcome = this.cache ? await this.cache.resolve(token, (t) => this.validate(t)) : await this.validate(token).then(
      (username) => ({ username, source: 'review' as const }),
      (error: unknown) => ({ error, source: 'review' as const }),
    );
    if ('error' in outcome) {
      this.validations?.inc({ result: 'refused', source: outcome.source });
      const err = outcome.error;
      throw new AgentAuthenticationError(`Failed to validate authentication token, err:${err instanceof Error ? err.message : String(err)}`);
    }
    this.validations?.inc({ result: 'accepted', source: outcome.source });
    if (this.logger.enabled(5)) this.logger.v(5, 'agent successfully authenticated via token', { username: outcome.username, source: outcome.source });
  }

  /** validateAuthToken: returns the service-account username or throws with upstream's wording. */
  async validate(token: string): Promise<string> {
    const { namespace, serviceAccount, audience, reviewer } = this.options;
    let review: TokenReviewResult;
    try {
      review = await reviewer.createTokenReview(token, [audience], { timeoutMs: this.timeoutMs });
    } catch (err) {
      throw new Error(`Failed to authenticate request. err:${err instanceof Error ? err.message : String(err)}`);
    }
    if (review.error !== '') throw new Error(`lookup failed: ${review.error}`);
    if (!review.authenticated) throw new Error('lookup failed: service account jwt not valid');
    // system:serviceaccount:<namespace>:<service account>
    const parts = review.username.split(':');
    if (parts.length !== 4) throw new Error(`lookup failed: unexpected username format ${JSON.stringify(review.username)}`);
    if (parts[0] !== 'system' || parts[1] !== 'serviceaccount') throw new Error(`lookup failed: username returned is not a service account ${JSON.stringify(review.username)}`);
    if (parts[2] !== namespace) throw new Error(`lookup failed: incoming request from ${JSON.stringify(parts[2])} namespace. Expected ${JSON.stringify(namespace)}`);
    if (parts[3] !== serviceAccount) {
      throw new Error(`lookup failed: incoming request from ${JSON.stringify(parts[3])} service account. Expected ${JSON.stringify(serviceAccount)}`);
    }
    return review.username;
  }
}
