/** Dial IDs: 63-bit, non-negative, not repeating across pool refills. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt63 } from '../src/protocol/random-int63.ts';

test('randomInt63: 5000 values (several pool refills) are distinct, in [0, 2^63), and use the top bits', () => {
  const seen = new Set<bigint>();
  let above53 = 0;
  for (let i = 0; i < 5000; i++) {
    const v = randomInt63();
    assert.ok(v >= 0n && v < 1n << 63n, `out of range: ${v}`);
    if (v >= 1n << 53n) above53++;
    seen.add(v);
  }
  assert.equal(seen.size, 5000);
  // Uniform 63-bit values are above 2^53 with probability 1 - 2^-10.
  assert.ok(above53 > 4900, `only ${above53} values above 2^53`);
});
