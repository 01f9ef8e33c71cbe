/**
 * Non-negative 63-bit random values (Go's rand.Int63() range) for dial IDs.
 * They come from the CSPRNG because the server keys one global pending-dial
 * map by them, across all clients. One `getRandomValues` call fills a pool of
 * them: a `randomBytes(8)` per dial cost about 28 µs in the HTTP-CONNECT dial
 * profile, this costs well under one.
 */
import { webcrypto } from 'node:crypto';

const POOL_SIZE = 512;
const INT63_MASK = (1n << 63n) - 1n;
const pool = new BigUint64Array(POOL_SIZE);
let next = POOL_SIZE;

export function randomInt63(): bigint {
  if (next === POOL_SIZE) {
    webcrypto.getRandomValues(pool);
    next = 0;
  }
  const value = pool[next]! & INT63_MASK;
  // Used values do not linger in memory.
  pool[next++] = 0n;
  return value;
}
