/**
 * `--enable-profiling`: the admin port's /debug/pprof endpoints, the Node
 * equivalents of upstream's Go pprof handlers.
 *
 *   /debug/pprof/                 index (text)
 *   /debug/pprof/profile?seconds=N  V8 CPU profile over N seconds (default 30,
 *                                 max 600), a `.cpuprofile` JSON download that
 *                                 Chrome DevTools / VS Code / speedscope open
 *   /debug/pprof/heap             V8 heap snapshot (`.heapsnapshot`), streamed
 *
 * One CPU profile at a time (409 while one runs). Taking a heap snapshot
 * blocks the event loop for its duration, as Go's heap dump would stop the
 * world; it is served only when the operator asked for profiling.
 */
import type http from 'node:http';
import { Session } from 'node:inspector/promises';
import { pipeline } from 'node:stream/promises';
import v8 from 'node:v8';

export const DEFAULT_PROFILE_SECONDS = 30;
export const MAX_PROFILE_SECONDS = 600;

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

/** Records a CPU profile of this process for `ms` (stops early when `signal` aborts). */
export async function recordCpuProfile(ms: number, signal?: AbortSignal): Promise<object> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    });
    const { profile } = await session.post('Profiler.stop');
    await session.post('Profiler.disable');
    return profile;
  } finally {
    session.disconnect();
  }
}

export function profilingRoutes(): Record<string, http.RequestListener> {
  let profiling = false;

  const index: http.RequestListener = (_req, res) => {
    text(
      res,
      200,
      'konnectivity-ts profiling (--enable-profiling)\n\n' +
        '/debug/pprof/profile?seconds=N  V8 CPU profile (.cpuprofile JSON; open in Chrome DevTools, VS Code or speedscope)\n' +
        '/debug/pprof/heap               V8 heap snapshot (.heapsnapshot; open in Chrome DevTools > Memory)\n',
    );
  };

  const profile: http.RequestListener = (req, res) => {
    const raw = new URL(req.url ?? '/', 'http://admin').searchParams.get('seconds');
    const seconds = raw === null || raw === '' ? DEFAULT_PROFILE_SECONDS : Number(raw);
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_PROFILE_SECONDS) {
      text(res, 400, `bad seconds ${JSON.stringify(raw)}: want a number in (0, ${MAX_PROFILE_SECONDS}]\n`);
      return;
    }
    if (profiling) {
      text(res, 409, 'a CPU profile is already being recorded\n');
      return;
    }
    profiling = true;
    const abort = new AbortController();
    res.once('close', () => abort.abort());
    void recordCpuProfile(seconds * 1000, abort.signal)
      .then((p) => {
        if (res.destroyed) return;
        const body = JSON.stringify(p);
        res.writeHead(200, {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(body),
          'Content-Disposition': `attachment; filename="konnectivity-${stamp()}.cpuprofile"`,
          'X-Content-Type-Options': 'nosniff',
        });
        res.end(body);
      })
      .catch((err: unknown) => {
        if (!res.headersSent && !res.destroyed) text(res, 500, `could not record the CPU profile: ${err instanceof Error ? err.message : String(err)}\n`);
      })
      .finally(() => {
        profiling = false;
      });
  };

  const heap: http.RequestListener = (_req, res) => {
    let snapshot: NodeJS.ReadableStream;
    try {
      snapshot = v8.getHeapSnapshot();
    } catch (err) {
      text(res, 500, `could not take a heap snapshot: ${err instanceof Error ? err.message : String(err)}\n`);
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Disposition': `attachment; filename="konnectivity-${stamp()}.heapsnapshot"`,
      'X-Content-Type-Options': 'nosniff',
    });
    pipeline(snapshot, res).catch(() => res.destroy());
  };

  return { '/debug/pprof': index, '/debug/pprof/': index, '/debug/pprof/profile': profile, '/debug/pprof/heap': heap };
}
