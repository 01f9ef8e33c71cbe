import { randomBytes } from 'node:crypto';

const INT63_MASK = (1n << 63n) - 1n;

/**
 * A dial ID (`random` on the wire): non-negative 63-bit like Go's
 * rand.Int63(), but from the CSPRNG because the server keys one global
 * pending-dial map by it, across all clients.
 */
export function newDialID(): bigint {
  return randomBytes(8).readBigUInt64BE() & INT63_MASK;
}
