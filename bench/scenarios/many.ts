/**
 * (7) Many established connections: N connections to a TCP echo server
 * (10,000; quick: 500), each proven end to end with a one-byte echo, then
 * held idle while the server's and agent's memory is read; one more echo on
 * every connection at once; then all are closed, and the same number opened
 * and closed twice more, memory read again with the third set open.
 */
import type { Duplex } from 'node:stream';
import { memory } from '../lib/proc.ts';
import { CpuMeter, forEachRun, type BenchContext, type Scenario, type ScenarioResult } from '../lib/scenario.ts';
import { mapLimit, sleep } from '../lib/stats.ts';
import type { Target, TargetName } from '../lib/targets.ts';

const DIALS_IN_FLIGHT = 100;
/** The set of N connections is opened this many times in all, each closed before the next. */
const CHURN_ROUNDS = 3;

class EchoConnection {
  private waiter: ((err?: Error) => void) | null = null;
  private failure: Error | null = null;

  readonly socket: Duplex;

  constructor(socket: Duplex) {
    this.socket = socket;
    socket.on('data', () => {
      const w = this.waiter;
      this.waiter = null;
      w?.();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      const w = this.waiter;
      this.waiter = null;
      w?.(err);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  ping(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = (err) => (err ? reject(err) : resolve());
      this.socket.write('x');
    });
  }
}

/** Dials `n` echo connections, DIALS_IN_FLIGHT at a time, into `conns`, each confirmed with a one-byte echo. */
function openConfirmed(ctx: BenchContext, target: Target, n: number, conns: EchoConnection[], afterEach?: () => void): Promise<unknown> {
  return mapLimit(Array.from({ length: n }), DIALS_IN_FLIGHT, async () => {
    const c = new EchoConnection(await target.dial(ctx.destination.echoAddress));
    conns.push(c);
    await c.ping();
    afterEach?.();
  });
}

export const many: Scenario = {
  id: 'many',
  title: 'Many established idle connections',
  async run(ctx: BenchContext): Promise<ScenarioResult> {
    const n = ctx.quick ? 500 : 10_000;
    const cpu = new CpuMeter(ctx);
    const errors: ScenarioResult['errors'] = {};
    const serverRss: Partial<Record<TargetName, number>> = {};
    const agentRss: Partial<Record<TargetName, number>> = {};
    const churnServerRss: Partial<Record<TargetName, number>> = {};
    const churnAgentRss: Partial<Record<TargetName, number>> = {};
    const perConn: Partial<Record<TargetName, number>> = {};
    const setupRate: Partial<Record<TargetName, number>> = {};
    const echoRound: Partial<Record<TargetName, number>> = {};
    const afterClose: string[] = [];
    await forEachRun(ctx, errors, 600_000, async (target: Target) => {
      const before = target.serverPid !== undefined ? { s: memory(target.serverPid!).rssMB, a: memory(target.agentPid!).rssMB } : null;
      const conns: EchoConnection[] = [];
      let rate: number;
      let echoMs: number;
      let mem: { s: number; a: number } | null = null;
      let closed = '';
      try {
        const t0 = performance.now();
        let lastReport = t0;
        await cpu.measure(target, () =>
          openConfirmed(ctx, target, n, conns, () => {
            if (performance.now() - lastReport > 2_000) {
              lastReport = performance.now();
              ctx.progress(`    ${target.name.padEnd(12)} ${conns.length}/${n} connections established…`);
            }
          }),
        );
        rate = n / ((performance.now() - t0) / 1000);
        await sleep(ctx.quick ? 300 : 2_000);
        if (before) mem = { s: memory(target.serverPid!).rssMB, a: memory(target.agentPid!).rssMB };
        const e0 = performance.now();
        await cpu.measure(target, () => Promise.all(conns.map((c) => c.ping())));
        echoMs = performance.now() - e0;
      } finally {
        for (const c of conns) c.socket.destroy();
      }
      if (target.serverPid !== undefined) {
        await sleep(ctx.quick ? 500 : 3_000);
        closed = `${target.name}: ${Math.round(memory(target.serverPid).rssMB)} MB server / ${Math.round(memory(target.agentPid!).rssMB)} MB agent RSS a few seconds after closing all ${n}.`;
      }
      // Churn: a fresh process's figure alone hid that garbage from closed
      // connections piled up (session 13), so the same N are opened again
      // twice, and memory is read with the third set open.
      let churnMem: { s: number; a: number } | null = null;
      for (let round = 2; round <= CHURN_ROUNDS; round++) {
        const again: EchoConnection[] = [];
        try {
          await cpu.measure(target, () => openConfirmed(ctx, target, n, again));
          ctx.progress(`    ${target.name.padEnd(12)} round ${round}/${CHURN_ROUNDS}: ${n} connections established again`);
          if (round === CHURN_ROUNDS && before) {
            await sleep(ctx.quick ? 300 : 2_000);
            churnMem = { s: memory(target.serverPid!).rssMB, a: memory(target.agentPid!).rssMB };
          }
        } finally {
          for (const c of again) c.socket.destroy();
        }
        await sleep(ctx.quick ? 100 : 1_000);
      }
      return () => {
        if (churnMem) {
          churnServerRss[target.name] = churnMem.s;
          churnAgentRss[target.name] = churnMem.a;
        }
        setupRate[target.name] = rate;
        echoRound[target.name] = echoMs;
        let memNote = '';
        if (before && mem) {
          serverRss[target.name] = mem.s;
          agentRss[target.name] = mem.a;
          // RSS also moves with GC; a growth below zero says nothing about the connections.
          const growth = mem.s - before.s + (mem.a - before.a);
          if (growth > 0) perConn[target.name] = (growth * 1000) / n;
          memNote = `, server RSS ${mem.s.toFixed(1)} MB, agent RSS ${mem.a.toFixed(1)} MB`;
        }
        if (closed) afterClose.push(closed);
        ctx.progress(`    ${target.name.padEnd(12)} ${n} connections at ${rate.toFixed(0)} conn/s${memNote}; one echo on all ${n} at once took ${echoMs.toFixed(0)} ms`);
      };
    }, 1, cpu);
    return {
      id: 'many',
      title: this.title,
      method: `${n} connections to a TCP echo server in the destination process, dialled ${DIALS_IN_FLIGHT} at a time, each confirmed with a one-byte echo; RSS of server and agent read after a short settle with all ${n} open and idle; then one byte echoed on every connection at once; all closed, and the same N opened and closed twice more, RSS read again with the third set open (churn: garbage from closed connections must not pile up); one run. The per-connection figure is (server + agent RSS growth) / N. In a full run server and agent are restarted before this scenario, so the figures start from fresh processes; what the earlier load scenarios leave behind is the separate "idle after the load scenarios" row.`,
      metrics: [
        { id: 'many-server-rss', label: `Server RSS, ${n} connections open`, unit: 'MB', better: 'lower', values: serverRss, ratio: false, goal: 250, digits: 1 },
        { id: 'many-agent-rss', label: `Agent RSS, ${n} connections open`, unit: 'MB', better: 'lower', values: agentRss, ratio: false, goal: 250, digits: 1 },
        { id: 'many-churn-server-rss', label: `Server RSS, the third ${n} open (two sets opened and closed before)`, unit: 'MB', better: 'lower', values: churnServerRss, ratio: false, goal: 250, digits: 1 },
        { id: 'many-churn-agent-rss', label: `Agent RSS, the third ${n} open (two sets opened and closed before)`, unit: 'MB', better: 'lower', values: churnAgentRss, ratio: false, goal: 250, digits: 1 },
        { id: 'many-per-conn', label: 'Server + agent memory per connection', unit: 'KB', better: 'lower', values: perConn, ratio: false, digits: 1 },
        { id: 'many-setup', label: `Establishing ${n} connections (${DIALS_IN_FLIGHT} in flight)`, unit: 'conn/s', better: 'higher', values: setupRate, digits: 0 },
        { id: 'many-echo', label: `One echo on all ${n} at once`, unit: 'ms', better: 'lower', values: echoRound, digits: 0 },
      ],
      cpu: cpu.figures(),
      errors,
      notes: afterClose,
    };
  },
};
