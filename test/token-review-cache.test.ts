/**
 * The agent token cache on its own, with a controlled clock: entries end at
 * the TTL or the token's `exp`, refusals are not kept, concurrent
 * validations of one token share one review, and the number of tokens held
 * is bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenReviewCache, jwtExpiryMs } from '../src/server/token-review-cache.ts';

function jwt(claims: Record<string, unknown>): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part(claims)}.signature`;
}

test('accepted within the TTL without a review; reviewed again after it', async () => {
  let now = 1_000_000;
  const cache = new TokenReviewCache({ ttlMs: 60_000, now: () => now });
  let reviews = 0;
  const validate = async (): Promise<string> => {
    reviews++;
    return 'system:serviceaccount:kube-system:konnectivity-agent';
  };
  assert.deepEqual(await cache.resolve('t', validate), { username: 'system:serviceaccount:kube-system:konnectivity-agent', source: 'review' });
  now += 59_999;
  assert.equal((await cache.resolve('t', validate)).source, 'cache');
  now += 1;
  assert.equal((await cache.resolve('t', validate)).source, 'review');
  assert.equal(reviews, 2);
  assert.equal((await cache.resolve('other', validate)).source, 'review', 'another token is its own entry');
});

test("a token's exp claim ends its entry sooner; an expired token is not kept at all; garbage claims are ignored", async () => {
  let now = Date.parse('2030-01-01T00:00:00Z');
  const cache = new TokenReviewCache({ ttlMs: 60_000, now: () => now });
  const ok = async (): Promise<string> => 'u';
  const soon = jwt({ exp: now / 1000 + 10 });
  await cache.resolve(soon, ok);
  now += 9_000;
  assert.equal((await cache.resolve(soon, ok)).source, 'cache');
  now += 1_000;
  assert.equal((await cache.resolve(soon, ok)).source, 'review', 'past exp: reviewed, and the apiserver decides');
  const expired = jwt({ exp: now / 1000 - 1 });
  await cache.resolve(expired, ok);
  assert.equal((await cache.resolve(expired, ok)).source, 'review');
  assert.equal(jwtExpiryMs(jwt({ exp: 'tomorrow' })), undefined);
  assert.equal(jwtExpiryMs('not.a-jwt'), undefined);
  assert.equal(jwtExpiryMs('a.%%%.c'), undefined);
  assert.equal(jwtExpiryMs(jwt({ exp: 1 })), 1000);
});

test('refusals are not kept; concurrent validations share one review, accepted or refused', async () => {
  const cache = new TokenReviewCache({ ttlMs: 60_000 });
  let reviews = 0;
  const refuse = async (): Promise<string> => {
    reviews++;
    throw new Error('lookup failed: service account jwt not valid');
  };
  const r1 = await cache.resolve('bad', refuse);
  assert.ok('error' in r1 && r1.source === 'review');
  const r2 = await cache.resolve('bad', refuse);
  assert.ok('error' in r2 && r2.source === 'review');
  assert.equal(reviews, 2);
  assert.equal(cache.size, 0);

  let release: (username: string) => void = () => {};
  let slowReviews = 0;
  const slow = (): Promise<string> => {
    slowReviews++;
    return new Promise((resolve) => (release = resolve));
  };
  const waiting = [cache.resolve('busy', slow), cache.resolve('busy', slow), cache.resolve('busy', slow)];
  release('u');
  assert.deepEqual((await Promise.all(waiting)).map((r) => r.source), ['review', 'shared', 'shared']);
  assert.equal(slowReviews, 1);

  let fail: (err: Error) => void = () => {};
  const failing = (): Promise<string> => new Promise((_, reject) => (fail = reject));
  const both = [cache.resolve('flaky', failing), cache.resolve('flaky', failing)];
  fail(new Error('apiserver unavailable'));
  const outcomes = await Promise.all(both);
  assert.deepEqual(outcomes.map((o) => ('error' in o ? `error/${o.source}` : o.source)), ['error/review', 'error/shared']);
});

test('at most maxEntries tokens are held, the oldest dropped first', async () => {
  const cache = new TokenReviewCache({ ttlMs: 60_000, maxEntries: 3 });
  const ok = async (): Promise<string> => 'u';
  for (const token of ['a', 'b', 'c', 'd']) await cache.resolve(token, ok);
  assert.equal(cache.size, 3);
  assert.equal((await cache.resolve('a', ok)).source, 'review', 'the oldest entry was dropped');
  assert.equal((await cache.resolve('d', ok)).source, 'cache');
});
