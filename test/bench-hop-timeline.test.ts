import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyseHopTrace, DIAL_SEQUENCE } from '../bench/lib/hop-timeline.ts';

const pids = { client: 100, server: 200, agent: 300, destination: 400 } as const;
type Who = keyof typeof pids;

/** `perf script -F pid,tid,time,event,trace` lines, built from µs offsets. */
class Trace {
  private readonly lines: string[] = [];
  private line(atUs: number, who: Who, event: string, args: string, tid?: number): this {
    const pid = pids[who];
    this.lines.push(` ${pid}/${tid ?? pid}  ${(1000 + atUs / 1e6).toFixed(6)}: ${event}: ${args}`);
    return this;
  }
  connect(atUs: number, who: Who, fd: number): this {
    return this.line(atUs, who, 'syscalls:sys_enter_connect', `fd: 0x${fd.toString(16).padStart(8, '0')}, uservaddr: 0x7ffd, addrlen: 0x00000010`);
  }
  accept(atUs: number, who: Who, fd: number): this {
    return this.line(atUs, who, 'syscalls:sys_exit_accept4', `0x${fd.toString(16)}`);
  }
  read(atUs: number, who: Who, fd: number, ret: number, tid?: number): this {
    this.line(atUs - 1, who, 'syscalls:sys_enter_read', `fd: 0x${fd.toString(16).padStart(8, '0')}, buf: 0x55d0, count: 0x00010000`, tid);
    const retText = ret < 0 ? `0x${BigInt.asUintN(64, BigInt(ret)).toString(16)}` : `0x${ret.toString(16)}`;
    return this.line(atUs, who, 'syscalls:sys_exit_read', retText, tid);
  }
  write(atUs: number, who: Who, fd: number, tid?: number): this {
    return this.line(atUs, who, 'syscalls:sys_enter_write', `fd: 0x${fd.toString(16).padStart(8, '0')}, buf: 0x55d0, count: 0x00000035`, tid);
  }
  wakeup(atUs: number, who: Who): this {
    return this.line(atUs, 'destination', 'sched:sched_wakeup', `comm=node pid=${pids[who]} prio=120 target_cpu=001`, 999);
  }
  switchTo(atUs: number, from: Who | 'idle', to: Who | 'idle'): this {
    const prev = from === 'idle' ? 0 : pids[from];
    const next = to === 'idle' ? 0 : pids[to];
    return this.line(atUs, 'destination', 'sched:sched_switch', `prev_comm=x prev_pid=${prev} prev_prio=120 prev_state=S ==> next_comm=y next_pid=${next} next_prio=120`, 999);
  }
  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** One whole dial (client fd 5, server frontend 9 and link 7, agent link 6 and endpoint 12, destination 4), with what must be skipped in between. */
function oneDialThenAnIncompleteOne(): Trace {
  return new Trace()
    .connect(0, 'client', 5)
    .write(10, 'client', 5) // CONNECT
    .accept(15, 'server', 9)
    .read(20, 'server', 7, 43) // the previous dial's CLOSE_RSP on the link: not the CONNECT
    .switchTo(25, 'idle', 'server')
    .read(30, 'server', 9, 53) // CONNECT
    .write(40, 'server', 7) // DIAL_REQ
    .switchTo(45, 'server', 'idle')
    .wakeup(50, 'agent')
    .read(60, 'agent', 6, -11) // EAGAIN: no bytes
    .switchTo(65, 'idle', 'agent')
    .read(70, 'agent', 6, 95) // DIAL_REQ
    .connect(80, 'agent', 12)
    .write(100, 'agent', 2) // a log line
    .write(120, 'agent', 6, 301) // another thread
    .write(130, 'agent', 12) // to the destination: not the DIAL_RSP, which goes on the link
    .write(150, 'agent', 6) // DIAL_RSP
    .read(170, 'server', 7, 53)
    .write(180, 'server', 9) // 200
    .read(200, 'client', 5, 39)
    .write(210, 'client', 5) // GET
    .read(215, 'server', 9, 0) // EOF of nothing: not a read of bytes
    .read(220, 'server', 9, 50)
    .write(230, 'server', 7)
    .read(250, 'agent', 6, 95)
    .write(260, 'agent', 12)
    .accept(255, 'destination', 4)
    .read(270, 'destination', 4, 50)
    .write(280, 'destination', 4)
    .read(290, 'agent', 12, 119)
    .write(300, 'agent', 6)
    .read(310, 'server', 7, 164)
    .write(320, 'server', 9)
    .read(330, 'client', 5, 119)
    .connect(1000, 'client', 8) // the next dial, cut off by the end of the recording
    .write(1010, 'client', 8);
}

test('a dial is rebuilt step by step from its system calls, skipping what belongs to other sockets, threads and logs', () => {
  const timeline = analyseHopTrace(oneDialThenAnIncompleteOne().text(), pids);
  assert.equal(timeline.anchors, 2);
  assert.equal(timeline.dials, 1);
  const steps = timeline.stepUs.map((s) => (s.length ? Math.round(s[0]!) : null));
  assert.deepEqual(steps, [null, 10, 20, 10, 30, 10, 70, 20, 10, 20, 10, 10, 10, 20, 10, 10, 10, 10, 10, 10, 10, 10]);
  assert.equal(steps.length, DIAL_SEQUENCE.length);
  assert.deepEqual(timeline.totalUs.map(Math.round), [330]);
});

test('a reader that slept has its wait in the run queue, from wake-up to running', () => {
  const timeline = analyseHopTrace(oneDialThenAnIncompleteOne().text(), pids);
  const agentReadsDialRequest = DIAL_SEQUENCE.findIndex((s) => s.label === 'agent reads DIAL_REQ');
  assert.deepEqual(timeline.runQueueUs[agentReadsDialRequest]!.map(Math.round), [15]);
  const serverReadsConnect = DIAL_SEQUENCE.findIndex((s) => s.label === 'server reads CONNECT');
  assert.deepEqual(timeline.runQueueUs[serverReadsConnect], [], 'no wake-up recorded for the server before that read');
  assert.equal(Math.round(timeline.mainThreadBusyUs.server), 20);
});

test('a dial missing a step is not counted, and a recording of nothing gives no dials', () => {
  const withoutDestination = oneDialThenAnIncompleteOne().text().split('\n').filter((l) => !l.startsWith(' 400/400')).join('\n');
  assert.equal(analyseHopTrace(withoutDestination, pids).dials, 0);
  const empty = analyseHopTrace('', pids);
  assert.equal(empty.dials, 0);
  assert.equal(empty.anchors, 0);
});
