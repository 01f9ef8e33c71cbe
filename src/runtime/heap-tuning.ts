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
 * A fixed factor of 6 is wrong once much is live: with 10,000 connections
 * open (60 MB live) it lets the old generation reach 360 MB of mostly
 * garbage from connections already closed. So the factor is recomputed
 * after every full collection: six times what survived while that stays
 * under 96 MB, a fixed headroom past it beyond. V8 applies a percent at the
 * collection after the one it was computed from, so the percent follows the
 * largest survivor of the last eight: with connections opened and closed in
 * waves, a collection that ran while few were open would otherwise set a
 * large percent for the next, which runs with many open (gRPC server at
 * 361 MB after eight rounds of 10,000 with the last survivor alone,
 * session 14).
 *
 * Settings, each read once at startup (0 turns the one setting off; a
 * value that is not a whole number keeps the default, with a warning):
 * - KONNECTIVITY_HEAP_GROWING_PERCENT: the largest growing percent (500, a
 *   factor of 6), used while little is live;
 * - KONNECTIVITY_HEAP_HEADROOM_MB: once the largest percent would put the
 *   next full collection past 96 MB, how far past the live old generation
 *   it may wait instead (32); 0 keeps the percent fixed.
 *
 * The young generation is the other half of the bound, and V8 reads its
 * size only when the process starts: bin/konnectivity-server and
 * bin/konnectivity-agent (which the image's /proxy-server and /proxy-agent
 * are) start Node with `--max-semi-space-size=4`. Server RSS after eight
 * rounds of 10,000 HTTP-CONNECT connections opened and closed
 * (docs/benchmarks.md, session 14): 490 MB with a fixed percent and V8's
 * young generation (which grows to 64 MB), 491 MB with only an adaptive
 * percent, 310 MB with only the young generation capped; with both as
 * shipped, 179 MB after six rounds.
 * Changing V8's growth factor at runtime instead held the young generation
 * at its cap on Node 24 but not on Node 26, which grows it page by page.
 */
import v8 from 'node:v8';
import { nodeFlagValues } from './node-flags.ts';
import { wholeNumberSetting } from './whole-number-setting.ts';
import { PerformanceObserver, constants as perfConstants, type PerformanceEntry } from 'node:perf_hooks';

export const DEFAULT_HEAP_GROWING_PERCENT = 500;
export const DEFAULT_HEAP_HEADROOM_MB = 32;
/** V8's own floor is a factor of 1.1; below 1.25 full collections would follow each other closely. */
const MIN_GROWING_PERCENT = 25;
/** The old generation's limit up to which the largest percent applies however much is live. */
const LIMIT_ALWAYS_ALLOWED_MB = 96;
/** Full collections whose survivors the percent follows (see above). */
const SURVIVORS_REMEMBERED = 8;
const MB = 1024 * 1024;

export interface HeapTuning {
  /** Largest growing percent, 0 when V8 chooses its own factor. */
  readonly growingPercent: number;
  /** Headroom past the live old generation, 0 when the percent stays fixed. */
  readonly headroomMb: number;
  /** `NAME=value` of settings that were not a whole number of 0 or more and were left at their default. */
  readonly ignored: readonly string[];
}

export function readHeapTuning(env: NodeJS.ProcessEnv): HeapTuning {
  const ignored: string[] = [];
  return {
    growingPercent: wholeNumberSetting(env, 'KONNECTIVITY_HEAP_GROWING_PERCENT', DEFAULT_HEAP_GROWING_PERCENT, ignored),
    headroomMb: wholeNumberSetting(env, 'KONNECTIVITY_HEAP_HEADROOM_MB', DEFAULT_HEAP_HEADROOM_MB, ignored),
    ignored,
  };
}

/**
 * The growing percent for what survived (V8's next limit is
 * live × (1 + percent / 100)): the largest percent while that limit stays
 * under 96 MB, which a relay with little live needs (see above), and beyond
 * that `headroomMb` past live; never under 25, in steps of 5 so small
 * changes in the live size do not reach V8.
 */
export function growingPercentFor(liveBytes: number, tuning: HeapTuning): number {
  if (tuning.headroomMb === 0 || liveBytes <= 0) return tuning.growingPercent;
  const largest = liveBytes * (1 + tuning.growingPercent / 100);
  const limit = Math.max(liveBytes + tuning.headroomMb * MB, Math.min(largest, LIMIT_ALWAYS_ALLOWED_MB * MB));
  const percent = Math.floor(((limit / liveBytes - 1) * 100) / 5) * 5;
  return Math.min(tuning.growingPercent, Math.max(MIN_GROWING_PERCENT, percent));
}

/** Bytes in the old generation (everything but the young spaces), as a full collection leaves them. */
function oldGenerationBytes(): number {
  let bytes = 0;
  for (const space of v8.getHeapSpaceStatistics()) {
    if (space.space_name !== 'new_space' && space.space_name !== 'new_large_object_space') bytes += space.space_used_size;
  }
  return bytes;
}

function isFullCollection(entry: PerformanceEntry): boolean {
  // Node's gc entries carry the collection's kind in `detail`, which the PerformanceEntry type leaves unknown.
  const detail = (entry as PerformanceEntry & { detail?: { kind?: number } }).detail;
  return detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR;
}

/**
 * Applies the settings and keeps the growing percent following the live
 * heap; returns what was applied. V8 reads `--heap-growing-percent` each
 * time it computes the next limit, after a full collection, so a percent
 * set after one is used at the next.
 */
export function applyHeapTuning(env: NodeJS.ProcessEnv = process.env): HeapTuning {
  const tuning = readHeapTuning(env);
  if (tuning.growingPercent === 0) return tuning;
  let appliedPercent = tuning.growingPercent;
  v8.setFlagsFromString(`--heap-growing-percent=${appliedPercent}`);
  if (tuning.headroomMb === 0) return tuning;
  const survivors: number[] = [];
  const observer = new PerformanceObserver((entries) => {
    if (!entries.getEntries().some(isFullCollection)) return;
    survivors.push(oldGenerationBytes());
    if (survivors.length > SURVIVORS_REMEMBERED) survivors.shift();
    const percent = growingPercentFor(Math.max(...survivors), tuning);
    if (percent === appliedPercent) return;
    appliedPercent = percent;
    v8.setFlagsFromString(`--heap-growing-percent=${percent}`);
  });
  observer.observe({ entryTypes: ['gc'] });
  return tuning;
}

/**
 * The young generation's cap per semi-space in MB as the process was
 * started (command line, shebang or NODE_OPTIONS; the last one counts, as
 * in V8), or undefined when V8 sizes it itself.
 */
export function maxSemiSpaceMb(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): number | undefined {
  let found: number | undefined;
  for (const value of nodeFlagValues('max-semi-space-size', execArgv, nodeOptions)) {
    if (/^\d+$/.test(value)) found = Number(value);
  }
  return found === 0 ? undefined : found;
}
