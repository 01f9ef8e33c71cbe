/**
 * (6) Head-of-line blocking: while one connection A is stuck, connection B
 * (same tunnel, same agent) downloads N bytes; B's throughput is compared with
 * the same download with nothing stuck, measured in the same run. Three ways
 * for A to be stuck:
 *
 * - stalled reader (client side): A asks for an endless download and its
 *   reader stops after the first bytes;
 * - destination stops reading (agent side): A uploads an endless stream to a
 *   destination endpoint that accepts and never reads, until A's own socket
 *   stops taking bytes; how many it took is reported (the memory held for A
 *   along the path, which must stay bounded);
 * - a dial hangs: A dials a loopback port whose TCP connect never completes
 *   (a blackhole), and is aborted once B is done.
 *
 * B next to a stuck A gets a time limit (dial included): upstream's server or
 * agent blocks the agent's whole stream behind a stalled connection
 * (docs/design.md), so there B may never finish; its partial rate is then the
 * figure.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { createTunnel } from '../../src/client/create-tunnel.ts';
import { blackholeEndpoint } from '../../src/dev/loopback-endpoints.ts';
import { MiniHttpConnection } from '../lib/mini-http.ts';
import { CpuMeter, errorText, forEachRun, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
import { median, sleep } from '../lib/stats.ts';
import type { Target, TargetName } from '../lib/targets.ts';
import { download } from './throughput.ts';

const MiB = 1024 * 1024;
/** A's request: far more than any proxy buffers, so the stall never resolves by itself. */
const STALLED_REQUEST_BYTES = 64 * 1024 * MiB;
/** A's upload to the non-reading destination is cut here: past this, buffering is unbounded. */
const UPLOAD_GIVE_UP_BYTES = 1024 * MiB;
/** How long A's upload may keep being accepted before we call it unbounded. */
const UPLOAD_STALL_WAIT_MS = 10_000;
const UPLOAD_CHUNK = Buffer.alloc(64 * 1024, 0x75);

/** Dials that can be abandoned: an AbortSignal reaches the tunnel (DIAL_CLS / closed CONNECT socket) or the pending TCP connect. */
interface Dialer {
  dial(address: string, signal?: AbortSignal): Promise<Duplex>;
  close(): Promise<void>;
}

function directDial(address: string, signal?: AbortSignal): Promise<Duplex> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)), noDelay: true });
    const onAbort = (): void => {
      socket.destroy();
      reject(new Error('dial aborted'));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', (err) => {
      signal?.removeEventListener('abort', onAbort);
      reject(err);
    });
  });
}

/**
 * The agent-side variants' own client per target: for a tunnel target a
 * second tunnel with the same settings as the target's (one HTTP/2 connection
 * in gRPC mode; A and B share it), because the target's dial takes no signal.
 */
function abortableDialer(target: Target): Dialer {
  const cluster = target.cluster;
  if (!cluster) return { dial: directDial, close: async () => {} };
  const tunnel = createTunnel({ mode: cluster.mode, transport: { unix: cluster.udsPath } });
  return { dial: (address, signal) => tunnel.dial('tcp', address, signal ? { signal } : {}), close: () => tunnel.close() };
}

interface StalledConnection {
  socket: Duplex;
  /** performance.now() when the reader stopped. */
  stalledAt: number;
  bytesBeforeStall: number;
  bytes: number;
  endedAt: number | null;
  endReason: string | null;
}

function watchEnd(socket: Duplex, s: { endedAt: number | null; endReason: string | null }): void {
  const ended = (reason: string) => () => {
    if (s.endedAt === null) {
      s.endedAt = performance.now();
      s.endReason = reason;
    }
  };
  socket.on('error', (err) => ended(`error: ${err.message}`)());
  socket.on('end', ended('end (EOF)'));
  socket.on('close', ended('close'));
}

async function startStalled(target: Target, address: string): Promise<StalledConnection> {
  const socket = await target.dial(address);
  const s: StalledConnection = { socket, stalledAt: 0, bytesBeforeStall: 0, bytes: 0, endedAt: null, endReason: null };
  watchEnd(socket, s);
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

/** A's endless upload to the destination that never reads. */
interface StalledUpload {
  socket: Duplex;
  /** Bytes A's socket accepted (write() took them, whatever it answered). */
  accepted: number;
  /** performance.now() of the last accepted write. */
  lastAcceptAt: number;
  /** Set when A stopped taking bytes for the settle time; null if it never did (unbounded). */
  stalledAt: number | null;
  acceptedAtStall: number;
  stop(): void;
  endedAt: number | null;
  endReason: string | null;
}

async function startUpload(dialer: Dialer, address: string, settleMs: number): Promise<StalledUpload> {
  const socket = await dialer.dial(address);
  let stopped = false;
  const u: StalledUpload = {
    socket,
    accepted: 0,
    lastAcceptAt: performance.now(),
    stalledAt: null,
    acceptedAtStall: 0,
    stop: () => (stopped = true),
    endedAt: null,
    endReason: null,
  };
  watchEnd(socket, u);
  socket.resume(); // the destination sends nothing; an EOF or error still shows
  const pump = (): void => {
    let burst = 0;
    while (!stopped && !socket.destroyed && u.accepted < UPLOAD_GIVE_UP_BYTES) {
      u.accepted += UPLOAD_CHUNK.length;
      u.lastAcceptAt = performance.now();
      if (!socket.write(UPLOAD_CHUNK)) {
        socket.once('drain', pump);
        return;
      }
      // A socket that never says "full" must not hold the event loop.
      if ((burst += UPLOAD_CHUNK.length) >= 16 * MiB) {
        setImmediate(pump);
        return;
      }
    }
  };
  pump();
  const giveUp = performance.now() + UPLOAD_STALL_WAIT_MS;
  while (performance.now() < giveUp && !stopped && u.accepted < UPLOAD_GIVE_UP_BYTES && u.endedAt === null) {
    if (performance.now() - u.lastAcceptAt >= settleMs) {
      u.stalledAt = performance.now();
      u.acceptedAtStall = u.accepted;
      return u;
    }
    await sleep(25);
  }
  stopped = true; // never stalled (or ended): stop feeding it
  u.acceptedAtStall = u.accepted;
  return u;
}

interface Within {
  mbps: number;
  complete: boolean;
  receivedBytes: number;
  /** False when the dial itself did not finish within the limit. */
  dialed: boolean;
}

/** B next to a stuck A: at most `limitMs` including the dial, then the rate of what arrived. */
async function downloadWithin(dial: (signal: AbortSignal) => Promise<Duplex>, bytes: number, limitMs: number): Promise<Within> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), limitMs)));
  let late = false;
  try {
    const dialing = dial(abort.signal);
    // A dial that cannot be abandoned and completes after the limit is closed at once.
    dialing.then((s) => late && s.destroy(), () => {});
    const socket = await Promise.race([dialing, deadline]);
    if (socket === null) {
      late = true;
      abort.abort();
      return { mbps: 0, complete: false, receivedBytes: 0, dialed: false };
    }
    const conn = new MiniHttpConnection(socket);
    try {
      const t0 = performance.now();
      const res = await Promise.race([conn.get(`/bytes/${bytes}`), deadline]);
      const seconds = (performance.now() - t0) / 1000;
      if (res === null) return { mbps: conn.receivedBodyBytes / 1e6 / seconds, complete: false, receivedBytes: conn.receivedBodyBytes, dialed: true };
      if (res.status !== 200 || res.bodyBytes !== bytes) throw new Error(`expected ${bytes} bytes with 200, got ${res.bodyBytes} with ${res.status}`);
      return { mbps: bytes / 1e6 / seconds, complete: true, receivedBytes: bytes, dialed: true };
    } finally {
      conn.close();
    }
  } finally {
    clearTimeout(timer);
  }
}

function blockedText(b: Within, bytes: number, limitMs: number): string {
  if (b.complete) return '';
  if (!b.dialed) return `B's dial did not finish within ${(limitMs / 1000).toFixed(0)} s: head-of-line blocked; `;
  return `B did not finish within ${(limitMs / 1000).toFixed(0)} s (${(b.receivedBytes / MiB).toFixed(1)} of ${bytes / MiB} MiB arrived): head-of-line blocked; `;
}

function describeFate(what: string, s: { endedAt: number | null; endReason: string | null }, since: number, transferStart: number, transferEnd: number): string {
  if (s.endedAt === null) return `the ${what} stayed open (and stalled) for the whole transfer`;
  const after = (s.endedAt - since).toFixed(0);
  const when = s.endedAt < transferStart ? 'before the measured transfer started' : s.endedAt <= transferEnd ? 'during the measured transfer' : 'after the measured transfer';
  return `the ${what} was ended (${s.endReason}) ${after} ms after it stalled, ${when}`;
}

type PerTarget = Partial<Record<TargetName, number[]>>;

/**
 * Runs of this scenario for `--reps`: each kept figure is one transfer next
 * to A over the two transfers alone around it, so a single run scatters far
 * more than the other scenarios' (full runs of session 20: 72-144 % for
 * direct, where nothing is shared; medians of five still moved about ±10 %).
 */
export function holRunCount(reps: number): number {
  return reps * 2 - 1;
}

export const hol: Scenario = {
  id: 'hol',
  title: 'Head-of-line blocking: bulk transfer next to a stalled reader, a destination that stopped reading, a hanging dial',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const bytes = (ctx.quick ? 32 : 256) * MiB;
    const settleMs = ctx.quick ? 300 : 1_000;
    const uploadSettleMs = ctx.quick ? 200 : 300;
    // Every measured B starts after this long without traffic from the
    // bench, alone or next to A: a download that started straight after
    // another ran about 8 % faster than one after a 1 s pause (gRPC, alone
    // against next to a stalled reader, 12 alternations: 0.92-0.96 of alone
    // with the pause only before B next to A, 1.04-1.06 with it before both).
    const quietMs = settleMs;
    const runs = holRunCount(ctx.reps);
    const warmupBytes = (ctx.quick ? 4 : 32) * MiB;
    const address = ctx.destination.httpAddress;
    const cpu = new CpuMeter(ctx);
    const errors: ScenarioResult['errors'] = {};
    const alone: PerTarget = {};
    const stalled: PerTarget = {};
    const kept: PerTarget = {};
    const destStalled: PerTarget = {};
    const destKept: PerTarget = {};
    const uploadAccepted: PerTarget = {};
    const dialPending: PerTarget = {};
    const dialKept: PerTarget = {};
    const fates: Partial<Record<TargetName, string[]>> = {};
    const blackhole = await blackholeEndpoint();
    const dialers = new Map<TargetName, Dialer>();
    try {
      for (const target of ctx.targets) dialers.set(target.name, abortableDialer(target));
      // One full-size download per target before the runs: the first one
      // was slow in every target, direct included (230-280 MB/s through the
      // tunnel against 350-460 later in the same run).
      await forEachRun(ctx, errors, 300_000, async (target) => {
        await download(target, address, bytes);
      }, 1);
      await forEachRun(ctx, errors, 300_000, async (target, rep) => {
        const dialer = dialers.get(target.name)!;
        // The first download after another target's turn was often slower
        // than the rest of the run (cold caches and heaps; 230-280 against
        // 390-430 MB/s): unmeasured, so it lowers no baseline.
        await download(target, address, warmupBytes);
        const downloadAlone = async (): Promise<number> => {
          await sleep(quietMs);
          return cpu.measure(target, () => download(target, address, bytes));
        };
        const a0 = performance.now();
        const a = await downloadAlone();
        // Ten times B's time alone (kept ≤ 10 % by then), at least 10 s.
        const limitMs = Math.max(10_000, 10 * (performance.now() - a0 - quietMs));
        const notes: string[] = [];

        // (a) A's reader stopped (client side).
        let b: number;
        {
          const s = await startStalled(target, address);
          try {
            await sleep(settleMs);
            const t0 = performance.now();
            const bRun = await cpu.measure(target, () => downloadWithin(() => target.dial(address), bytes, limitMs));
            b = bRun.mbps;
            notes.push(`stalled reader: ${blockedText(bRun, bytes, limitMs)}${describeFate('stalled connection', s, s.stalledAt, t0, performance.now())}`);
          } finally {
            s.socket.destroy();
            await sleep(200);
          }
        }

        // B alone between variants too: each variant's baseline is the mean
        // of the two downloads alone around it (see below).
        const a1 = await downloadAlone();

        // (b) A's destination stopped reading (agent side).
        let bDest: number;
        let accepted: number;
        {
          const u = await startUpload(dialer, ctx.destination.stallAddress, uploadSettleMs);
          try {
            await sleep(quietMs - uploadSettleMs); // A has taken nothing for uploadSettleMs already
            const t0 = performance.now();
            const bRun = await cpu.measure(target, () => downloadWithin((signal) => dialer.dial(address, signal), bytes, limitMs));
            bDest = bRun.mbps;
            accepted = u.accepted;
            const stallText =
              u.stalledAt === null
                ? `A's upload NEVER STALLED: ${(u.accepted / MiB).toFixed(1)} MiB accepted within ${UPLOAD_STALL_WAIT_MS / 1000} s (given up)`
                : `A's upload stalled after ${(u.acceptedAtStall / MiB).toFixed(1)} MiB accepted, ${(u.accepted / MiB).toFixed(1)} MiB by the end of B's transfer`;
            notes.push(`destination not reading: ${blockedText(bRun, bytes, limitMs)}${stallText}; ${describeFate('stalled upload', u, u.stalledAt ?? t0, t0, performance.now())}`);
          } finally {
            u.stop();
            u.socket.destroy();
            await ctx.destination.releaseStalled();
            await sleep(200);
          }
        }

        const a2 = await downloadAlone();

        // (c) A's dial hangs.
        let bDial: number;
        {
          const abort = new AbortController();
          const aStart = performance.now();
          let aFate: string | null = null;
          const aDial = dialer.dial(blackhole.address, abort.signal).then(
            (socket) => {
              aFate = `A's dial to the blackhole COMPLETED after ${(performance.now() - aStart).toFixed(0)} ms`;
              socket.destroy();
            },
            (err: unknown) => {
              if (!abort.signal.aborted) aFate = `A's dial ended after ${(performance.now() - aStart).toFixed(0)} ms (${errorText(err)})`;
            },
          );
          try {
            await sleep(quietMs);
            const before = aFate;
            const bRun = await cpu.measure(target, () => downloadWithin((signal) => dialer.dial(address, signal), bytes, limitMs));
            bDial = bRun.mbps;
            const fate = aFate === null ? "A's dial was still pending when B finished (then aborted)" : `${aFate}, ${before === null ? 'during' : 'before'} B's transfer`;
            notes.push(`hanging dial: ${blockedText(bRun, bytes, limitMs)}${fate}`);
          } finally {
            abort.abort();
            await aDial;
            await sleep(200);
          }
        }

        // B alone again after the last variant. Each variant's baseline is the
        // mean of the downloads alone just before and just after it. One
        // baseline for all three (the mean of the first and the last) charged
        // slow stretches in the middle of a run to the variants: in full runs
        // the direct target, where nothing is shared, came out at 78-88 %.
        const a3 = await downloadAlone();
        const baseStalled = (a + a1) / 2;
        const baseDest = (a1 + a2) / 2;
        const baseDial = (a2 + a3) / 2;

        return () => {
          (alone[target.name] ??= []).push(a, a1, a2, a3);
          (stalled[target.name] ??= []).push(b);
          (kept[target.name] ??= []).push((100 * b) / baseStalled);
          (destStalled[target.name] ??= []).push(bDest);
          (destKept[target.name] ??= []).push((100 * bDest) / baseDest);
          (uploadAccepted[target.name] ??= []).push(accepted / MiB);
          (dialPending[target.name] ??= []).push(bDial);
          (dialKept[target.name] ??= []).push((100 * bDial) / baseDial);
          (fates[target.name] ??= []).push(...notes);
          const pct = (x: number, base: number): string => `${x.toFixed(0)} MB/s (${((100 * x) / base).toFixed(0)} %)`;
          ctx.progress(`    ${target.name.padEnd(12)} run ${rep + 1}/${runs}: alone ${[a, a1, a2, a3].map((x) => x.toFixed(0)).join(', ')} MB/s; next to a stalled reader ${pct(b, baseStalled)}, a destination not reading ${pct(bDest, baseDest)} (A accepted ${(accepted / MiB).toFixed(1)} MiB), a hanging dial ${pct(bDial, baseDial)}`);
          for (const n of notes) ctx.progress(`      ${n}`);
        };
      }, runs, cpu);
    } finally {
      await Promise.allSettled([...dialers.values()].map((d) => d.close()));
      await blackhole.close();
    }
    const med = (r: PerTarget) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]));
    const notes = Object.entries(fates).map(([name, list]) => `${name}: ${[...new Set(list)].join('; ')}.`);
    return {
      id: 'hol',
      title: this.title,
      method:
        `One unmeasured ${bytes / MiB} MiB download per target before the runs. Per run: an unmeasured ${warmupBytes / MiB} MiB download; B = GET /bytes/${bytes} (${bytes / MiB} MiB) alone; then B again next to each of three stuck connections A, through the same agent ` +
        `(the same tunnel as B), each time for at most 10 × B's time alone, dial included (at least 10 s; if B does not finish, what arrived by then gives its rate). ` +
        `(1) Stalled reader: A = GET of an endless body whose reader is paused after its first chunk, then a ${settleMs} ms settle so every buffer on A's path fills. ` +
        `(2) Destination not reading: A uploads an endless stream to a destination endpoint that accepts and never reads, until A's socket has taken no bytes for ${uploadSettleMs} ms ` +
        `(given up as unbounded after ${UPLOAD_STALL_WAIT_MS / 1000} s or ${UPLOAD_GIVE_UP_BYTES / MiB} MiB); the MiB A's socket accepted by the end of B's transfer is what the path holds for A (bounded). ` +
        `(3) Hanging dial: A dials a loopback port whose TCP connect never completes (a SIGSTOPped listener with a full accept queue); ${quietMs} ms later B runs; A's dial is then aborted. ` +
        `Variants 2 and 3 use a second client tunnel with the same settings as the target's (their dials take an abort signal), A and B on it. ` +
        `B alone again after each variant. Every measured B, alone or not, starts after ${quietMs} ms without other traffic from the bench (a download right after another ran about 8 % faster than one after a pause). ` +
        `"Kept" = B next to A ÷ the mean of the two downloads of B alone just before and just after that variant (so a slow stretch during a run is charged to neither the variant nor its baseline alone); median of ${runs} run(s) (2 × --reps − 1: a single run of this scenario scatters more than the others'). Direct is the same on plain loopback TCP, where nothing is shared: its spread around 100 % is what this measurement can resolve. CPU is for all seven B transfers.`,
      metrics: [
        { id: 'hol-kept', label: 'Throughput kept next to a stalled reader', unit: '%', better: 'higher', values: med(kept), runs: kept, goal: 90, ratio: false, digits: 0 },
        { id: 'hol-dest-kept', label: 'Throughput kept next to a destination that stopped reading', unit: '%', better: 'higher', values: med(destKept), runs: destKept, goal: 90, ratio: false, digits: 0 },
        { id: 'hol-dial-kept', label: 'Throughput kept next to a hanging dial', unit: '%', better: 'higher', values: med(dialKept), runs: dialKept, goal: 90, ratio: false, digits: 0 },
        { id: 'hol-alone', label: `Download ${bytes / MiB} MiB alone`, unit: 'MB/s', better: 'higher', values: med(alone), runs: alone, digits: 0 },
        { id: 'hol-stalled', label: `Download ${bytes / MiB} MiB next to a stalled reader`, unit: 'MB/s', better: 'higher', values: med(stalled), runs: stalled, digits: 0 },
        { id: 'hol-dest-stalled', label: `Download ${bytes / MiB} MiB next to a destination that stopped reading`, unit: 'MB/s', better: 'higher', values: med(destStalled), runs: destStalled, digits: 0 },
        { id: 'hol-dial-pending', label: `Download ${bytes / MiB} MiB next to a hanging dial`, unit: 'MB/s', better: 'higher', values: med(dialPending), runs: dialPending, digits: 0 },
        { id: 'hol-upload-accepted', label: 'Bytes accepted from an upload to a destination that stopped reading', unit: 'MiB', better: 'lower', values: med(uploadAccepted), runs: uploadAccepted, ratio: false, digits: 1 },
      ],
      cpu: cpu.figures(),
      errors,
      notes,
    };
  },
};
