/**
 * Whether `perf record` may record the scheduler and system-call
 * tracepoints here (Debian's linux-perf, as root or with
 * kernel.perf_event_paranoid ≤ 1). Shared by bench/diagnostics/dial-hops.ts
 * and its test, which skips where it cannot.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Why perf cannot record `events` on this machine, or null when it can. */
export function perfTracepointProblem(events: readonly string[]): string | null {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'konnectivity-perf-probe-'));
  try {
    execFileSync('perf', ['record', '-q', '-o', path.join(dir, 'probe.data'), ...events.flatMap((e) => ['-e', e]), '--', 'true'], { stdio: 'pipe' });
    return null;
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    const text = (stderr.trim() || (err as Error).message).split('\n').slice(0, 3).join(' ');
    return `perf cannot record scheduler and system-call tracepoints (${text}); install linux-perf and run as root or with kernel.perf_event_paranoid ≤ 1`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
