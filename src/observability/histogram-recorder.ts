/**
 * Observing an unlabelled prom-client histogram on the per-packet path.
 * prom-client's `observe()` allocates a label/value pair, validates and
 * hashes the (empty) label set and walks the buckets on every call: in a
 * profile of the server during a gRPC-mode download, 5 % of its busy time
 * went to `frontend_write_duration_seconds`, observed once per packet
 * (docs/benchmarks.md, session 11). Here an observation adds to a typed
 * array, and the totals move into the histogram when it is collected
 * (scraped or read with `get()`), so readers see the same buckets, sum and
 * count as with `observe()`.
 *
 * Moving the totals writes the histogram's per-label-set entry (`hashMap`,
 * with `bucketValues`, `sum` and `count`), which is not public API. The
 * entry's shape is checked when a recorder is bound; if it is not what this
 * expects (another prom-client version), the recorder calls `observe()`.
 */
import type { Histogram } from 'prom-client';

export type HistogramRecorder = (value: number) => void;

interface HistogramEntry {
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

interface HistogramInternals {
  hashMap: Record<string, HistogramEntry | undefined>;
  upperBounds: readonly number[];
  labelNames: readonly string[];
  collect?: (() => unknown) | undefined;
}

/** The key of the empty label set in prom-client's `hashMap`. */
const NO_LABELS = '';

function entryOf(internals: HistogramInternals, histogram: Histogram): HistogramEntry | null {
  // reset() empties the map; zero() is the public way back to an entry.
  if (internals.hashMap[NO_LABELS] === undefined) histogram.zero({});
  const entry = internals.hashMap[NO_LABELS];
  if (entry === undefined || typeof entry.sum !== 'number' || typeof entry.count !== 'number' || typeof entry.bucketValues !== 'object') return null;
  for (const bound of internals.upperBounds) if (typeof entry.bucketValues[bound] !== 'number') return null;
  return entry;
}

const recorders = new WeakMap<object, HistogramRecorder>();

/** A recording function for `histogram`, which must have no labels. Binding twice gives the same function. */
export function bindHistogramRecorder(histogram: Histogram): HistogramRecorder {
  const existing = recorders.get(histogram);
  if (existing) return existing;
  const internals = histogram as unknown as HistogramInternals;
  if (!Array.isArray(internals.labelNames) || internals.labelNames.length > 0) throw new Error('bindHistogramRecorder: only for histograms without labels');
  const bounds = Array.isArray(internals.upperBounds) ? Float64Array.from(internals.upperBounds) : null;
  if (bounds === null || typeof internals.hashMap !== 'object' || entryOf(internals, histogram) === null) {
    const observe: HistogramRecorder = (value) => histogram.observe(value);
    recorders.set(histogram, observe);
    return observe;
  }
  /** Observations since the last collect, per bucket (not cumulative), as prom-client stores them. */
  const pendingBuckets = new Float64Array(bounds.length);
  let pendingSum = 0;
  let pendingCount = 0;
  const previous = internals.collect;
  internals.collect = function collectPendingObservations(this: unknown): unknown {
    if (pendingCount > 0) {
      const entry = entryOf(internals, histogram);
      if (entry !== null) {
        entry.sum += pendingSum;
        entry.count += pendingCount;
        for (let i = 0; i < bounds.length; i++) entry.bucketValues[bounds[i]!]! += pendingBuckets[i]!;
      }
      pendingBuckets.fill(0);
      pendingSum = 0;
      pendingCount = 0;
    }
    return previous?.call(this);
  };
  const record: HistogramRecorder = (value) => {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    pendingSum += value;
    pendingCount++;
    // Above the last bound only the count and sum move (+Inf is the count), as in prom-client.
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        pendingBuckets[i]!++;
        return;
      }
    }
  };
  recorders.set(histogram, record);
  return record;
}
