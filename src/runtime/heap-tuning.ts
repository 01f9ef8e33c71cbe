/**
 * V8 heap tuning for a byte relay, applied by the daemons at startup.
 *
 * Node allocates a fresh ArrayBuffer for every socket read (16 KiB per TLS
 * record, up to 64 KiB per TCP or unix-socket read, plus one per HTTP/2
 * frame batch). A relay keeps very little JavaScript alive (about 10 MB),
 * so V8's limits, which grow with the live heap, stay small, and the stream
 * of short-lived buffers starts a full mark-compact every few tens of MB
 * relayed. Measured on a 512 MiB download through server and agent (three
 * runs per mode, `npm run bench -- --only throughput --node-arg=--trace-gc`):
 * 105–110 mark-compacts in the server and 62–70 in the agent with V8's
 * defaults; 1–18 and 6–26 with a growing factor of 6, with server CPU down
 * from 2.4 to 1.5–1.7 s per run and throughput up from 153 / 173 to 185 /
 * 245 MB/s (gRPC / HTTP-CONNECT). Measured again on 2026-11-23 (one
 * HTTP-CONNECT throughput scenario, 32 MiB + 3 × 512 MiB): 89 mark-compacts
 * in the server and 64 in the agent with V8's defaults, 50–52 and 26–27 with
 * the factor. What still triggers them is V8's external-memory limit (a full
 * GC per 64 MB of ArrayBuffers), which the growing factor does not move;
 * docs/benchmarks.md (session 5) has the flags tried against it.
 *
 * The growing factor only decides how far the heap may grow past what was
 * live at the last full collection before the next one; it does not keep
 * memory that is not allocated. `KONNECTIVITY_HEAP_GROWING_PERCENT` overrides
 * it (0 = V8's default).
 */
import v8 from 'node:v8';

export const DEFAULT_HEAP_GROWING_PERCENT = 500;

/** Returns the percent applied, or 0 when V8's default is kept. */
export function applyHeapTuning(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.KONNECTIVITY_HEAP_GROWING_PERCENT;
  const percent = raw === undefined || raw === '' ? DEFAULT_HEAP_GROWING_PERCENT : Number(raw);
  if (!Number.isInteger(percent) || percent <= 0) return 0;
  v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}
