import { randomInt63 } from '../protocol/random-int63.ts';

/**
 * A dial ID (`random` on the wire): non-negative 63-bit like Go's
 * rand.Int63(), but from the CSPRNG because the server keys one global
 * pending-dial map by it, across all clients.
 */
export function newDialID(): bigint {
  return randomInt63();
}
