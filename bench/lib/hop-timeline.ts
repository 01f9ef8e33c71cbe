/**
 * The hop-by-hop timeline of HTTP-CONNECT dials, rebuilt from kernel
 * tracepoints (`perf record` of system calls and scheduler events in the
 * client, server, agent and destination; see
 * bench/diagnostics/dial-hops.ts). Pure: it takes `perf script` text and
 * returns each dial's step times (the diagnostic takes the medians), so it
 * is tested on written traces.
 *
 * A dial is the system calls each process makes for it, in causal order
 * (DIAL_SEQUENCE). The server's frontend socket is the one it accepted last,
 * the agent's endpoint socket the one it connected last, and "link" is any
 * other socket of that process (the TLS connection between server and
 * agent). Reads count only when they return bytes. Each dial starts at the
 * client's connect(); its steps are matched in order, each the first
 * matching call after the previous step, so a close of the previous dial
 * running in between is skipped unless it looks exactly like the next step.
 */

export type HopRole = 'client' | 'server' | 'agent' | 'destination';

type FdRole = 'tunnel' | 'frontend' | 'endpoint' | 'link' | 'any';

interface DialStep {
  readonly who: HopRole;
  readonly call: 'connect' | 'read' | 'write';
  readonly fd: FdRole;
  readonly label: string;
}

/** What an HTTP-CONNECT dial is, from the client's connect() to the first byte of the answer to its GET. */
export const DIAL_SEQUENCE: readonly DialStep[] = [
  { who: 'client', call: 'connect', fd: 'tunnel', label: 'client connects to the frontend' },
  { who: 'client', call: 'write', fd: 'tunnel', label: 'client writes CONNECT' },
  { who: 'server', call: 'read', fd: 'frontend', label: 'server reads CONNECT' },
  { who: 'server', call: 'write', fd: 'link', label: 'server writes DIAL_REQ' },
  { who: 'agent', call: 'read', fd: 'link', label: 'agent reads DIAL_REQ' },
  { who: 'agent', call: 'connect', fd: 'endpoint', label: 'agent calls connect() to the destination' },
  { who: 'agent', call: 'write', fd: 'link', label: 'agent writes DIAL_RSP' },
  { who: 'server', call: 'read', fd: 'link', label: 'server reads DIAL_RSP' },
  { who: 'server', call: 'write', fd: 'frontend', label: 'server writes 200' },
  { who: 'client', call: 'read', fd: 'tunnel', label: 'client reads 200' },
  { who: 'client', call: 'write', fd: 'tunnel', label: 'client writes GET' },
  { who: 'server', call: 'read', fd: 'frontend', label: 'server reads GET' },
  { who: 'server', call: 'write', fd: 'link', label: 'server writes DATA' },
  { who: 'agent', call: 'read', fd: 'link', label: 'agent reads DATA' },
  { who: 'agent', call: 'write', fd: 'endpoint', label: 'agent writes GET to the destination' },
  { who: 'destination', call: 'read', fd: 'any', label: 'destination reads GET' },
  { who: 'destination', call: 'write', fd: 'any', label: 'destination writes its answer' },
  { who: 'agent', call: 'read', fd: 'endpoint', label: 'agent reads the answer' },
  { who: 'agent', call: 'write', fd: 'link', label: 'agent writes DATA' },
  { who: 'server', call: 'read', fd: 'link', label: 'server reads DATA' },
  { who: 'server', call: 'write', fd: 'frontend', label: 'server writes the answer' },
  { who: 'client', call: 'read', fd: 'tunnel', label: 'client reads the first byte' },
];

/** One system call of a process's main thread, with the socket role it played. */
interface SocketCall {
  timeUs: number;
  who: HopRole;
  call: 'connect' | 'read' | 'write';
  fd: number;
  /** The fd this process accepted (server, destination) or connected (agent, client) most recently before the call. */
  ownFd: number;
}

export interface HopTimeline {
  /** Dials whose every step was found. */
  dials: number;
  /** Per step after the first: the time since the previous step, µs, one entry per dial. */
  stepUs: number[][];
  /**
   * Per step that is a read: from the reader's wake-up to its running again, µs,
   * for the dials in which it slept in between (otherwise it was already running or busy).
   */
  runQueueUs: number[][];
  /** From the client's connect() to its reading the first byte, µs, per dial. */
  totalUs: number[];
  /** On-CPU time of each process's main thread over the whole recording, µs. */
  mainThreadBusyUs: Record<HopRole, number>;
  /** Client connect() calls seen: the dials the recording holds (complete or not). */
  anchors: number;
}

const SYSCALL_EVENTS = new Set(['syscalls:sys_enter_read', 'syscalls:sys_exit_read', 'syscalls:sys_enter_write', 'syscalls:sys_enter_writev', 'syscalls:sys_enter_connect', 'syscalls:sys_exit_accept4']);

/** The tracepoints `perf record` needs for analyseHopTrace. */
export const HOP_TRACE_EVENTS: readonly string[] = ['sched:sched_switch', 'sched:sched_wakeup', ...SYSCALL_EVENTS];

/** The `perf script` fields analyseHopTrace reads. */
export const HOP_TRACE_FIELDS = 'pid,tid,time,event,trace';

const LINE = /^\s*(\d+)\/(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)$/;

/** Parses a `perf script -F pid,tid,time,event,trace` number: hex with 0x, else decimal; returns negative errnos as negative. */
function traceNumber(text: string): number {
  const raw = text.startsWith('0x') ? BigInt(text) : BigInt(text.trim());
  return Number(BigInt.asIntN(64, raw));
}

const FIELD_PATTERNS = new Map<string, RegExp>();

/** The value of `name: value` or `name=value` in a tracepoint's arguments. */
function field(args: string, name: string): string | undefined {
  let pattern = FIELD_PATTERNS.get(name);
  if (!pattern) FIELD_PATTERNS.set(name, (pattern = new RegExp(`(?:^|[\\s,])${name}[:=] ?(\\S+?)(?:,|\\s|$)`)));
  return pattern.exec(args)?.[1];
}

export function analyseHopTrace(perfScriptText: string, pids: Record<HopRole, number>): HopTimeline {
  const roleOf = new Map<number, HopRole>(Object.entries(pids).map(([role, pid]) => [pid, role as HopRole]));
  const calls: SocketCall[] = [];
  const wakeups: Record<HopRole, number[]> = { client: [], server: [], agent: [], destination: [] };
  const switchIns: Record<HopRole, number[]> = { client: [], server: [], agent: [], destination: [] };
  const busy: Record<HopRole, number> = { client: 0, server: 0, agent: 0, destination: 0 };
  const runningSince = new Map<number, number>();
  const ownFd = new Map<HopRole, number>();
  const pendingRead = new Map<number, number>(); // tid → fd of the read in progress

  for (const line of perfScriptText.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    const tid = Number(m[2]);
    const timeUs = Number(m[3]) * 1e6;
    const event = m[4]!;
    const args = m[5]!;
    if (event === 'sched:sched_switch') {
      const prev = Number(field(args, 'prev_pid'));
      const next = Number(field(args, 'next_pid'));
      const prevRole = roleOf.get(prev);
      const since = runningSince.get(prev);
      if (prevRole && since !== undefined) {
        busy[prevRole] += timeUs - since;
        runningSince.delete(prev);
      }
      const nextRole = roleOf.get(next);
      if (nextRole) {
        switchIns[nextRole].push(timeUs);
        runningSince.set(next, timeUs);
      }
      continue;
    }
    if (event === 'sched:sched_wakeup') {
      const role = roleOf.get(Number(field(args, 'pid')));
      if (role) wakeups[role].push(timeUs);
      continue;
    }
    // System calls count on main threads only: Node does its socket I/O there.
    const who = roleOf.get(pid);
    if (!who || pid !== tid || !SYSCALL_EVENTS.has(event)) continue;
    if (event === 'syscalls:sys_exit_accept4') {
      const fd = traceNumber(args);
      if (fd >= 0) ownFd.set(who, fd);
    } else if (event === 'syscalls:sys_enter_connect') {
      const fd = traceNumber(field(args, 'fd') ?? '-1');
      ownFd.set(who, fd);
      calls.push({ timeUs, who, call: 'connect', fd, ownFd: fd });
    } else if (event === 'syscalls:sys_enter_read') {
      pendingRead.set(tid, traceNumber(field(args, 'fd') ?? '-1'));
    } else if (event === 'syscalls:sys_exit_read') {
      const fd = pendingRead.get(tid);
      pendingRead.delete(tid);
      if (fd !== undefined && traceNumber(args) > 0) calls.push({ timeUs, who, call: 'read', fd, ownFd: ownFd.get(who) ?? -1 });
    } else {
      const fd = traceNumber(field(args, 'fd') ?? '-1');
      // Standard output and error are logs, not hops.
      if (fd > 2) calls.push({ timeUs, who, call: 'write', fd, ownFd: ownFd.get(who) ?? -1 });
    }
  }

  const matches = (c: SocketCall, step: DialStep, tunnelFd: number): boolean => {
    if (c.who !== step.who || c.call !== step.call) return false;
    switch (step.fd) {
      case 'tunnel':
        return step.call === 'connect' || c.fd === tunnelFd;
      case 'frontend':
      case 'endpoint':
        return step.call === 'connect' || c.fd === c.ownFd;
      case 'link':
        return c.fd !== c.ownFd;
      case 'any':
        return true;
    }
  };
  const anchors: number[] = [];
  calls.forEach((c, i) => {
    if (c.who === 'client' && c.call === 'connect') anchors.push(i);
  });
  const timeline: HopTimeline = {
    dials: 0,
    stepUs: DIAL_SEQUENCE.map(() => []),
    runQueueUs: DIAL_SEQUENCE.map(() => []),
    totalUs: [],
    mainThreadBusyUs: busy,
    anchors: anchors.length,
  };
  for (let a = 0; a < anchors.length; a++) {
    const end = a + 1 < anchors.length ? anchors[a + 1]! : calls.length;
    const tunnelFd = calls[anchors[a]!]!.fd;
    const times: number[] = [];
    let i = anchors[a]!;
    for (const step of DIAL_SEQUENCE) {
      while (i < end && !matches(calls[i]!, step, tunnelFd)) i++;
      if (i >= end) break;
      times.push(calls[i]!.timeUs);
      i++;
    }
    if (times.length !== DIAL_SEQUENCE.length) continue;
    timeline.dials++;
    timeline.totalUs.push(times[times.length - 1]! - times[0]!);
    for (let k = 1; k < DIAL_SEQUENCE.length; k++) {
      timeline.stepUs[k]!.push(times[k]! - times[k - 1]!);
      const step = DIAL_SEQUENCE[k]!;
      if (step.call !== 'read') continue;
      const wake = lastBefore(wakeups[step.who], times[k]!);
      const ran = lastBefore(switchIns[step.who], times[k]!);
      if (wake !== undefined && ran !== undefined && wake > times[k - 1]! && wake <= ran) timeline.runQueueUs[k]!.push(ran - wake);
    }
  }
  return timeline;
}

/** The last value not after `t` in an ascending list. */
function lastBefore(sorted: readonly number[], t: number): number | undefined {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 ? sorted[lo - 1] : undefined;
}
