/**
 * (6) Head-of-line blocking: connection A asks for an endless download and
 * its reader stops after the first bytes; while A is stalled, connection B
 * (same tunnel, same agent) downloads N bytes. B's throughput is compared
 * with the same download with nothing stalled, measured in the same run.
 * B next to the stalled reader gets a time limit: upstream's server blocks the
 * agent's whole stream behind a stalled frontend (docs/design.md), so there B
 * may never finish; its partial rate is then the figure.
 */
import type { Duplex } from 'node:stream';
import { MiniHttpConnection } from '../lib/mini-http.ts';
import { CpuMeter, forEachRun, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
import { median, sleep } from '../lib/stats.ts';
import type { Target, TargetName } from '../lib/targets.ts';
import { download } from './throughput.ts';

const MiB = 1024 * 1024;
/** A's request: far more than any proxy buffers, so the stall never resolves by itself. */
const STALLED_REQUEST_BYTES = 64 * 1024 * MiB;

interface StalledConnection {
  socket: Duplex;
  /** performance.now() when the reader stopped. */
  stalledAt: number;
  bytesBeforeStall: number;
  bytes: number;
  endedAt: number | null;
  endReason: string | null;
}

async function startStalled(target: Target, address: string): Promise<StalledConnection> {
  const socket = await target.dial(address);
  const s: StalledConnection = { socket, stalledAt: 0, bytesBeforeStall: 0, bytes: 0, endedAt: null, endReason: null };
  const ended = (reason: string) => () => {
    if (s.endedAt === null) {
      s.endedAt = performance.now();
      s.endReason = reason;
    }
  };
  socket.on('error', (err) => ended(`error: ${err.message}`)());
  socket.on('end', ended('end (EOF)'));
  socket.on('close', ended('close'));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk: Buffer) => {
      s.bytes += chunk.length;
      if (s.stalledAt === 0) {
        // Stop reading: nothing consumes this connection from now on.
        socket.pause();
        s.stalledAt = performance.now();
        s.bytesBeforeStall = s.bytes;
        socket.off('error', reject);
        resolve();
      }
    });
    socket.write(`GET /bytes/${STALLED_REQUEST_BYTES} HTTP/1.1\r\nHost: bench\r\n\r\n`);
  });
  return s;
}

/** B next to the stalled reader: at most `limitMs`, then the rate of what arrived. */
async function downloadWithin(target: Target, address: string, bytes: number, limitMs: number): Promise<{ mbps: number; complete: boolean; receivedBytes: number }> {
  const conn = new MiniHttpConnection(await target.dial(address));
  let timer: NodeJS.Timeout | undefined;
  try {
    const t0 = performance.now();
    const res = await Promise.race([conn.get(`/bytes/${bytes}`), new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), limitMs)))]);
    const seconds = (performance.now() - t0) / 1000;
    if (res === null) return { mbps: conn.receivedBodyBytes / 1e6 / seconds, complete: false, receivedBytes: conn.receivedBodyBytes };
    if (res.status !== 200 || res.bodyBytes !== bytes) throw new Error(`expected ${bytes} bytes with 200, got ${res.bodyBytes} with ${res.status}`);
    return { mbps: bytes / 1e6 / seconds, complete: true, receivedBytes: bytes };
  } finally {
    clearTimeout(timer);
    conn.close();
  }
}

function describeFate(s: StalledConnection, transferStart: number, transferEnd: number): string {
  if (s.endedAt === null) return 'the stalled connection stayed open (and stalled) for the whole transfer';
  const after = (s.endedAt - s.stalledAt).toFixed(0);
  const when = s.endedAt < transferStart ? 'before the measured transfer started' : s.endedAt <= transferEnd ? 'during the measured transfer' : 'after the measured transfer';
  return `the stalled connection was ended (${s.endReason}) ${after} ms after its reader stopped, ${when}`;
}

export const hol: Scenario = {
  id: 'hol',
  title: 'Head-of-line blocking: bulk transfer next to a stalled reader',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const bytes = (ctx.quick ? 32 : 256) * MiB;
    const settleMs = ctx.quick ? 300 : 1_000;
    const address = ctx.destination.httpAddress;
    const cpu = new CpuMeter(ctx);
    const errors: ScenarioResult['errors'] = {};
    const alone: Partial<Record<TargetName, number[]>> = {};
    const stalled: Partial<Record<TargetName, number[]>> = {};
    const kept: Partial<Record<TargetName, number[]>> = {};
    const fates: Partial<Record<TargetName, string[]>> = {};
    await forEachRun(ctx, errors, 300_000, async (target) => {
      await download(target, address, (ctx.quick ? 4 : 32) * MiB);
    }, 1);
    await forEachRun(ctx, errors, 300_000, async (target, rep) => {
      const a0 = performance.now();
      const a = await cpu.measure(target, () => download(target, address, bytes));
      // Ten times B's time alone (kept ≤ 10 % by then), at least 10 s.
      const limitMs = Math.max(10_000, 10 * (performance.now() - a0));
      const s = await startStalled(target, address);
      try {
        await sleep(settleMs);
        const t0 = performance.now();
        const bRun = await cpu.measure(target, () => downloadWithin(target, address, bytes, limitMs));
        const b = bRun.mbps;
        const blocked = bRun.complete ? '' : `B did not finish within ${(limitMs / 1000).toFixed(0)} s (${(bRun.receivedBytes / MiB).toFixed(1)} of ${bytes / MiB} MiB arrived): head-of-line blocked; `;
        const fate = blocked + describeFate(s, t0, performance.now());
        return () => {
          (alone[target.name] ??= []).push(a);
          (stalled[target.name] ??= []).push(b);
          (kept[target.name] ??= []).push((100 * b) / a);
          (fates[target.name] ??= []).push(fate);
          ctx.progress(`    ${target.name.padEnd(12)} run ${rep + 1}/${ctx.reps}: alone ${a.toFixed(0)} MB/s, next to a stalled reader ${b.toFixed(0)} MB/s (${((100 * b) / a).toFixed(0)} %); ${fate}`);
        };
      } finally {
        s.socket.destroy();
        await sleep(200);
      }
    }, ctx.reps, cpu);
    const med = (r: Partial<Record<TargetName, number[]>>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]));
    const notes = Object.entries(fates).map(([name, list]) => `${name}: ${[...new Set(list)].join('; ')}.`);
    return {
      id: 'hol',
      title: this.title,
      method: `Per run: B = GET /bytes/${bytes} (${bytes / MiB} MiB) alone; then A = GET of an endless body whose reader is paused after its first chunk, a ${settleMs} ms settle so every buffer on A's path fills, and B again, for at most 10 × its time alone (at least 10 s; if it does not finish, what arrived by then gives its rate). Both connections go through the same tunnel and agent. Figure: B next to A / B alone, median of ${ctx.reps} run(s); CPU is for both B transfers.`,
      metrics: [
        { id: 'hol-kept', label: 'Throughput kept next to a stalled reader', unit: '%', better: 'higher', values: med(kept), runs: kept, goal: 90, ratio: false, digits: 0 },
        { id: 'hol-alone', label: `Download ${bytes / MiB} MiB alone`, unit: 'MB/s', better: 'higher', values: med(alone), runs: alone, digits: 0 },
        { id: 'hol-stalled', label: `Download ${bytes / MiB} MiB next to a stalled reader`, unit: 'MB/s', better: 'higher', values: med(stalled), runs: stalled, digits: 0 },
      ],
      cpu: cpu.figures(),
      errors,
      notes,
    };
  },
};
