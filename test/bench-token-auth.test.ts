/**
 * `npm run bench -- --token-auth`: server and agent run with upstream's
 * token-authentication flags against the fake apiserver, so every agent
 * connection is authenticated by a real TokenReview before the scenario
 * measures anything. Nothing here asserts a speed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runBench } from './helpers/bench-run.ts';

test('bench --token-auth: the agents are authenticated by TokenReviews at the fake apiserver, and the scenario runs through them', { timeout: 120_000 }, async () => {
  const r = await runBench(['--quick', '--only', 'rtt', '--modes', 'grpc', '--token-auth'], 110_000);
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /token authentication: fake apiserver at https:\/\/127\.0\.0\.1:\d+/);
  const reviews = /token authentication: the fake apiserver answered (\d+) TokenReviews/.exec(r.stdout);
  assert.ok(reviews && Number(reviews[1]) >= 1, `no TokenReview was made:\n${r.stdout}`);
  assert.match(r.stdout, /Round trip p50 +ms +[\d.]+ +[\d.]+/);
});
