/**
 * How many distinct proxy-servers the agent tries to stay connected to
 * (upstream pkg/agent server_counter.go / lease_counter.go).
 */

/**
 * A source of the server count other than response headers. Lease-based
 * counting (--count-server-leases) plugs in here; it must return ≥ 1.
 */
export interface ServerCounter {
  count(): number;
}

/** `--server-count-source`: which count wins when leases are counted. */
export type ServerCountSource = 'default' | 'max';

/**
 * Combines the `servercount` header of the most recent new server (0 when
 * none was received yet) with an optional lease count, as upstream does.
 */
export function effectiveServerCount(responseCount: number, leaseCounter: ServerCounter | undefined, source: ServerCountSource): number {
  let count: number;
  if (leaseCounter === undefined) count = responseCount > 0 ? responseCount : 1;
  else if (source === 'max') count = Math.max(leaseCounter.count(), responseCount);
  else count = leaseCounter.count();
  return count > 0 ? count : 1;
}
