/**
 * Model-checking fuzzer for the server's relay core (ProxyRouter), in memory.
 *
 * One case = one fresh router, a witness tunnel, and a random interleaving of
 * frontend and agent packets: dials with fresh, reused and foreign IDs, agent
 * answers (right, late, unknown, duplicated), DATA, closes, DIAL_CLS, DRAIN,
 * FLOW_CREDIT, backpressure, agents and frontends ending, limits and idle
 * sweeps. After every step:
 *
 *  - nothing threw;
 *  - pendingDialCount and establishedCount equal what a model built from the
 *    router's observable outputs says, and the router's own books agree
 *    (per-frontend pending sets, per-agent pending counters and maps);
 *  - a frontend only ever hears about dials it made and connections it was
 *    given, and hears of each dial's outcome at most once;
 *  - DATA reaching an agent for a connection came from that connection's
 *    frontend (isolation between frontend streams);
 *  - a paused frontend always has a reason that will resume it;
 *  - the witness tunnel's bytes arrive intact and in order both ways.
 *
 * At the end every frontend ends and every agent behaves (answers dials and
 * CLOSE_REQs): nothing may be left pending or established. Then every agent
 * ends: the router must be empty.
 */
import { PacketType, packetTypeName, packets, type Packet } from '../src/protocol/packet.ts';
import { createServerMetrics, type ServerMetrics } from '../src/observability/server-metrics.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { parseAgentIdentifiers } from '../src/server/agent-identifiers.ts';
import { Backend, ProxyRouter, type FrontendPeer, type FrontendSession } from '../src/server/proxy-router.ts';
import type { ServerLimits } from '../src/server/limits.ts';
import { Rng } from './prng.ts';

export class FuzzViolation extends Error {
  override readonly name = 'FuzzViolation';
}

type FeEvent =
  | { kind: 'dialResponse'; random: bigint; connectID: bigint; error: string }
  | { kind: 'data'; connectID: bigint; data: Uint8Array }
  | { kind: 'closeResponse'; connectID: bigint; error: string }
  | { kind: 'dialClosed'; random: bigint };

type LogEntry = { side: 'fe'; fe: FeState; ev: FeEvent } | { side: 'agent'; agent: AgentState; p: Packet };

interface FeState {
  readonly idx: number;
  readonly session: FrontendSession;
  paused: boolean;
  ended: boolean;
  /** What the frontend's transport reports as queued toward it (a stalled reader). */
  buffered: number;
  /** Dials this frontend sent (by random): outcomes still expected (a stopped stream expects none). */
  readonly dials: Map<bigint, number>;
  /** Connections this frontend was given, keyed by `${agent}:${connectID}`, open or closed. */
  readonly conns: Map<string, { agent: AgentState; connectID: bigint; open: boolean }>;
}

interface AgentState {
  readonly idx: number;
  readonly backend: Backend;
  alive: boolean;
  accept: boolean;
  readonly witness: boolean;
  nextConnectID: bigint;
  /** DIAL_REQs received and not answered yet. */
  readonly unanswered: bigint[];
  /** connectIDs this agent considers open (it answered them with success). */
  readonly open: Set<bigint>;
  /** CLOSE_REQs received and not answered yet. */
  readonly closeReqs: bigint[];
}

interface ModelConn {
  readonly fe: FeState;
  readonly agent: AgentState;
  readonly connectID: bigint;
}

export interface RouterCaseResult {
  steps: number;
  /** Operations applied, for a failure report. */
  trace: string[];
}

const ADDRESSES = ['10.0.0.1:10250', 'node-a:22', '[fd00::1]:443', 'kubernetes.default.svc:443', 'x:1'];

let sharedMetrics: ServerMetrics | null = null;
function metrics(): ServerMetrics {
  sharedMetrics ??= createServerMetrics({ processMetrics: false });
  return sharedMetrics;
}

export function runRouterCase(seed: number, maxSteps = 60): RouterCaseResult {
  const rng = new Rng(seed);
  const trace: string[] = [];
  const log: LogEntry[] = [];
  const limits: Partial<ServerLimits> = {
    maxPendingDialsPerFrontend: rng.pick([0, 1, 2, 16]),
    maxPendingDialsPerAgent: rng.pick([0, 1, 3, 1000]),
    maxConnectionsPerAgent: rng.pick([0, 2, 4, 10000]),
    idleConnectionTimeoutMs: rng.bool(0.2) ? 1000 : 0,
  };
  const idle = (limits.idleConnectionTimeoutMs ?? 0) > 0;
  const strategies = rng.pick([['default'], ['destHost', 'default'], ['defaultRoute', 'default']] as const);
  const router = new ProxyRouter({
    strategies,
    metrics: metrics(),
    logger: silentLogger,
    backendDialTimeoutMs: 0,
    maxFrontendBufferBytes: 4096,
    random: () => rng.float(),
    limits,
  });
  let now = 1_000_000;

  const frontends: FeState[] = [];
  const agents: AgentState[] = [];
  const modelPending = new Map<bigint, Array<{ fe: FeState; agent: AgentState }>>();
  let modelPendingCount = 0;
  const modelConns: ModelConn[] = [];
  /** Frontend whose packet is being handled right now (for isolation checks). */
  let actingFe: FeState | null = null;

  const fail = (msg: string): never => {
    throw new FuzzViolation(`${msg}\n  seed ${seed}, after ${trace.length} ops:\n    ${trace.slice(-25).join('\n    ')}`);
  };

  // --- entities ----------------------------------------------------------------

  const addFrontend = (): FeState => {
    const holder: { fe: FeState | null } = { fe: null };
    const peer: FrontendPeer = {
      dialResponse: (random, connectID, error) => log.push({ side: 'fe', fe: holder.fe!, ev: { kind: 'dialResponse', random, connectID, error } }),
      data: (connectID, payload) => log.push({ side: 'fe', fe: holder.fe!, ev: { kind: 'data', connectID, data: payload.data } }),
      closeResponse: (connectID, error) => log.push({ side: 'fe', fe: holder.fe!, ev: { kind: 'closeResponse', connectID, error } }),
      dialClosed: (random) => log.push({ side: 'fe', fe: holder.fe!, ev: { kind: 'dialClosed', random } }),
      get bufferedBytes() {
        return holder.fe!.buffered;
      },
      pauseReading: () => {
        holder.fe!.paused = true;
      },
      resumeReading: () => {
        holder.fe!.paused = false;
      },
    };
    const fe: FeState = { idx: frontends.length, session: router.openFrontend(peer), paused: false, ended: false, buffered: 0, dials: new Map(), conns: new Map() };
    holder.fe = fe;
    frontends.push(fe);
    return fe;
  };

  const addAgent = (witness: boolean): AgentState => {
    const holder: { a: AgentState | null } = { a: null };
    const idents = witness ? '' : rng.pick(['', 'host=node-a', 'ipv4=10.0.0.1', 'default-route=true', 'ipv6=fd00::1&host=x']);
    const flow = !witness && rng.bool(0.3) ? { agentWindow: rng.pick([64, 1024]), ourWindow: rng.pick([64, 1024]) } : null;
    const backend = new Backend(
      witness ? 'witness-agent' : `agent-${agents.length % 3}`, // agent IDs repeat on purpose (reconnects)
      parseAgentIdentifiers(idents),
      { send: (p) => (log.push({ side: 'agent', agent: holder.a!, p }), holder.a!.accept) },
      flow,
    );
    const a: AgentState = { idx: agents.length, backend, alive: true, accept: true, witness, nextConnectID: 1n, unanswered: [], open: new Set(), closeReqs: [] };
    holder.a = a;
    agents.push(a);
    router.addBackend(backend);
    return a;
  };

  // --- observation -----------------------------------------------------------------

  const resolvePending = (random: bigint, match: (e: { fe: FeState; agent: AgentState }) => boolean): { fe: FeState; agent: AgentState } | null => {
    const list = modelPending.get(random);
    if (!list) return null;
    const i = list.findIndex(match);
    if (i < 0) return null;
    const [entry] = list.splice(i, 1);
    if (list.length === 0) modelPending.delete(random);
    modelPendingCount--;
    return entry!;
  };

  const connKey = (a: AgentState, id: bigint): string => `${a.idx}:${id}`;

  // Witness bookkeeping.
  const witnessUpSent: number[] = [];
  const witnessUpGot: number[] = [];
  const witnessDownSent: number[] = [];
  const witnessDownGot: number[] = [];
  let witnessFe: FeState | null = null;
  let witnessAgent: AgentState | null = null;
  const WITNESS_ID = 999_999n;
  let witnessOpen = false;

  /** The dial the current op made, if any (to attribute DIAL_REQs seen at agents). */
  let dialingFe: FeState | null = null;
  /** Randoms forwarded to an agent during the current op. */
  const forwardedThisOp = new Set<bigint>();

  const observe = (): void => {
    for (let i = 0; i < log.length; i++) {
      const entry = log[i]!;
      if (entry.side === 'agent') {
        const { agent, p } = entry;
        if (!agent.alive) fail(`router sent ${packetTypeName(p.type)} to agent ${agent.idx} after it ended`);
        switch (p.type) {
          case PacketType.DIAL_REQ: {
            if (!dialingFe) fail('DIAL_REQ reached an agent outside a frontend dial');
            const list = modelPending.get(p.dialRequest.random) ?? [];
            list.push({ fe: dialingFe!, agent });
            modelPending.set(p.dialRequest.random, list);
            modelPendingCount++;
            forwardedThisOp.add(p.dialRequest.random);
            agent.unanswered.push(p.dialRequest.random);
            break;
          }
          case PacketType.DIAL_CLS: {
            const gone = resolvePending(p.closeDial.random, (e) => e.agent === agent);
            // The frontend's own DIAL_CLS: it stops waiting, and no outcome follows (upstream).
            if (gone && actingFe === gone.fe && !gone.fe.ended) gone.fe.dials.set(p.closeDial.random, (gone.fe.dials.get(p.closeDial.random) ?? 1) - 1);
            // Our agents abandon the dial; an upstream one would still answer later.
            if (rng.bool(0.5)) {
              const j = agent.unanswered.indexOf(p.closeDial.random);
              if (j >= 0) agent.unanswered.splice(j, 1);
            }
            break;
          }
          case PacketType.CLOSE_REQ:
            agent.closeReqs.push(p.closeRequest.connectID);
            break;
          case PacketType.DATA: {
            const id = p.data.connectID;
            const owner = modelConns.find((c) => c.agent === agent && c.connectID === id);
            if (owner && actingFe && owner.fe !== actingFe) {
              fail(`frontend ${actingFe.idx} injected DATA into connection ${id} of frontend ${owner.fe.idx} on agent ${agent.idx}`);
            }
            if (agent.witness && id === WITNESS_ID) for (const b of p.data.data) witnessUpGot.push(b);
            break;
          }
          default:
            break;
        }
      } else {
        const { fe, ev } = entry;
        switch (ev.kind) {
          case 'dialResponse':
          case 'dialClosed': {
            const d = fe.dials.get(ev.random);
            if (d === undefined) fail(`frontend ${fe.idx} got an outcome for dial ${ev.random} it never made`);
            if (d! <= 0) fail(`frontend ${fe.idx} got an outcome for dial ${ev.random} it was not waiting for`);
            fe.dials.set(ev.random, d! - 1);
            // Answered by the router itself during the dial (no agent, a limit, a reused ID): nothing was pending.
            const immediate = fe === dialingFe && !forwardedThisOp.has(ev.random);
            const entry2 = immediate ? null : resolvePending(ev.random, (e) => e.fe === fe);
            if (ev.kind === 'dialResponse' && ev.error === '') {
              if (!entry2) fail(`frontend ${fe.idx}: dial ${ev.random} succeeded but was never sent to an agent`);
              const conn: ModelConn = { fe, agent: entry2!.agent, connectID: ev.connectID };
              modelConns.push(conn);
              fe.conns.set(connKey(entry2!.agent, ev.connectID), { agent: entry2!.agent, connectID: ev.connectID, open: true });
            }
            break;
          }
          case 'data': {
            const mine = [...fe.conns.values()].some((c) => c.open && c.connectID === ev.connectID);
            if (!mine) fail(`frontend ${fe.idx} got DATA for connection ${ev.connectID} it does not hold`);
            if (fe === witnessFe && ev.connectID === WITNESS_ID) for (const b of ev.data) witnessDownGot.push(b);
            break;
          }
          case 'closeResponse':
            // One entry only: a stream that dialed twice may hold the same connectID from two agents.
            for (const c of fe.conns.values()) {
              if (c.open && c.connectID === ev.connectID) {
                c.open = false;
                break;
              }
            }
            if (fe === witnessFe && ev.connectID === WITNESS_ID) witnessOpen = false;
            break;
        }
      }
    }
    log.length = 0;
    forwardedThisOp.clear();
  };

  // --- invariants ------------------------------------------------------------------

  const checkInvariants = (): void => {
    if (router.pendingDialCount !== modelPendingCount) fail(`pendingDialCount ${router.pendingDialCount}, model ${modelPendingCount}`);
    if (!idle && router.establishedCount !== modelConns.length) fail(`establishedCount ${router.establishedCount}, model ${modelConns.length}`);
    let fePending = 0;
    for (const f of frontends) fePending += f.session.pending.size;
    if (fePending !== router.pendingDialCount) fail(`frontends hold ${fePending} pending dials, router counts ${router.pendingDialCount}`);
    let agentPending = 0;
    let agentConns = 0;
    for (const a of agents) {
      if (a.backend.pendingDials < 0) fail(`agent ${a.idx} pendingDials ${a.backend.pendingDials}`);
      agentPending += a.backend.pendingDials;
      if (a.alive) agentConns += a.backend.connections.size;
      else if (a.backend.connections.size !== 0 || a.backend.pendingDials !== 0) fail(`ended agent ${a.idx} still holds work`);
    }
    if (agentPending !== router.pendingDialCount) fail(`agents hold ${agentPending} pending dials, router counts ${router.pendingDialCount}`);
    if (agentConns !== router.establishedCount) fail(`agents hold ${agentConns} connections, router counts ${router.establishedCount}`);
    for (const f of frontends) {
      if (!f.paused || f.ended) continue;
      const byBackend = agents.some((a) => a.alive && a.backend.pausedFrontends.has(f.session));
      const byCredit = [...f.session.connections].some((c) => c.pausedForCredit);
      if (!byBackend && !byCredit) fail(`frontend ${f.idx} is paused with nothing that would resume it`);
    }
    for (let i = 0; i < witnessUpGot.length; i++) if (witnessUpGot[i] !== witnessUpSent[i]) fail(`witness upstream byte ${i} differs`);
    for (let i = 0; i < witnessDownGot.length; i++) if (witnessDownGot[i] !== witnessDownSent[i]) fail(`witness downstream byte ${i} differs`);
    if (witnessOpen && (witnessUpGot.length !== witnessUpSent.length || witnessDownGot.length !== witnessDownSent.length)) {
      fail(`witness lost bytes: up ${witnessUpGot.length}/${witnessUpSent.length}, down ${witnessDownGot.length}/${witnessDownSent.length}`);
    }
  };

  // --- actions --------------------------------------------------------------------

  const feSend = (fe: FeState, p: Packet, label: string): void => {
    trace.push(`fe${fe.idx} ${label}`);
    actingFe = fe;
    dialingFe = p.type === PacketType.DIAL_REQ ? fe : null;
    fe.session.handlePacket(p);
    observe();
    actingFe = null;
    dialingFe = null;
  };

  const agentSend = (a: AgentState, p: Packet, label: string): void => {
    trace.push(`agent${a.idx} ${label}`);
    // The model's view of what this packet does to established connections.
    if (p.type === PacketType.CLOSE_RSP && a.alive) {
      const i = modelConns.findIndex((c) => c.agent === a && c.connectID === p.closeResponse.connectID);
      if (i >= 0) modelConns.splice(i, 1);
    }
    router.handleBackendPacket(a.backend, p);
    observe();
  };

  const endAgent = (a: AgentState): void => {
    trace.push(`agent${a.idx} END`);
    router.removeBackend(a.backend);
    a.alive = false;
    for (let i = modelConns.length - 1; i >= 0; i--) if (modelConns[i]!.agent === a) modelConns.splice(i, 1);
    observe();
  };

  const endFrontend = (fe: FeState): void => {
    trace.push(`fe${fe.idx} END`);
    fe.ended = true;
    actingFe = fe;
    fe.session.end();
    observe();
    actingFe = null;
  };

  /** Answers a DIAL_REQ the way an agent does: success with a fresh connectID, or an error. */
  const answerDial = (a: AgentState, random: bigint, succeed: boolean): void => {
    if (succeed) {
      let id = a.nextConnectID++;
      if (a.witness && id === WITNESS_ID) id = a.nextConnectID++;
      a.open.add(id);
      agentSend(a, packets.dialResponse(random, id), `DIAL_RSP ${random} → ${id}`);
    } else {
      agentSend(a, packets.dialResponse(random, 0n, 'dial tcp 10.0.0.1:1: connect: connection refused'), `DIAL_RSP ${random} error`);
    }
  };

  const answerClose = (a: AgentState, id: bigint): void => {
    if (a.open.delete(id)) agentSend(a, packets.closeResponse(id), `CLOSE_RSP ${id}`);
    else agentSend(a, packets.closeResponse(id, 'Unknown connectID'), `CLOSE_RSP ${id} unknown`);
  };

  // --- setup: the witness tunnel -------------------------------------------------------

  witnessAgent = addAgent(true);
  witnessFe = addFrontend();
  {
    const R = rng.int63();
    witnessFe.dials.set(R, 1);
    feSend(witnessFe, packets.dialRequest('witness.invalid:1', R), `DIAL_REQ ${R} (witness)`);
    const r = witnessAgent.unanswered.pop();
    if (r !== R) fail('witness dial did not reach the witness agent');
    witnessAgent.open.add(WITNESS_ID);
    agentSend(witnessAgent, packets.dialResponse(R, WITNESS_ID), `DIAL_RSP ${R} → witness`);
    witnessOpen = true;
  }
  for (let i = rng.int(3); i >= 0; i--) addAgent(false);

  // --- random steps ------------------------------------------------------------------

  const steps = rng.range(1, maxSteps);
  const knownRandoms = (): bigint[] => [...modelPending.keys(), ...frontends.flatMap((f) => [...f.dials.keys()])];
  const knownIds = (): bigint[] => [WITNESS_ID, 0n, ...modelConns.map((c) => c.connectID), ...agents.flatMap((a) => [...a.open])];

  for (let step = 0; step < steps; step++) {
    const liveFe = frontends.filter((f) => !f.ended && f !== witnessFe);
    const readyFe = liveFe.filter((f) => !f.paused);
    const liveAgents = agents.filter((a) => a.alive && !a.witness);
    const op = rng.weighted({
      feOpen: liveFe.length < 6 ? 3 : 0,
      feDial: readyFe.length ? 10 : 0,
      feData: readyFe.length ? 8 : 0,
      feClose: readyFe.length ? 3 : 0,
      feDialCls: readyFe.length ? 3 : 0,
      feOther: readyFe.length ? 1 : 0,
      feWritable: liveFe.length ? 1 : 0,
      feStall: liveFe.length ? 1 : 0,
      feEnd: liveFe.length ? 3 : 0,
      agentAdd: agents.length < 8 ? 1 : 0,
      agentAnswer: 10,
      agentBogusRsp: liveAgents.length ? 2 : 0,
      agentData: 6,
      agentClose: 4,
      agentDialCls: liveAgents.length ? 1 : 0,
      agentDrain: liveAgents.length ? 1 : 0,
      agentCredit: 1,
      agentEnd: liveAgents.length ? 1 : 0,
      agentBackpressure: liveAgents.length ? 2 : 0,
      witness: witnessOpen ? 6 : 0,
      sweep: idle ? 2 : 0,
    });
    switch (op) {
      case 'feOpen':
        trace.push(`fe${addFrontend().idx} OPEN`);
        break;
      case 'feDial': {
        const fe = rng.pick(readyFe);
        const reuse = rng.bool(0.15) ? knownRandoms() : [];
        const R = reuse.length ? rng.pick(reuse) : rng.bool(0.1) ? BigInt(rng.int(4)) : rng.int63();
        if (!fe.session.stopped) fe.dials.set(R, (fe.dials.get(R) ?? 0) + 1);
        else if (!fe.dials.has(R)) fe.dials.set(R, 0);
        feSend(fe, packets.dialRequest(rng.pick(ADDRESSES), R), `DIAL_REQ ${R}`);
        break;
      }
      case 'feData': {
        const fe = rng.pick(readyFe);
        const own = [...fe.conns.values()].filter((c) => c.open).map((c) => c.connectID);
        const id = own.length && rng.bool(0.7) ? rng.pick(own) : rng.bool(0.5) ? rng.pick(knownIds()) : BigInt(rng.int(5));
        feSend(fe, packets.data(id, rng.bytes(rng.int(8))), `DATA ${id}`);
        break;
      }
      case 'feClose': {
        const fe = rng.pick(readyFe);
        const own = [...fe.conns.values()].filter((c) => c.open).map((c) => c.connectID);
        const id = own.length && rng.bool(0.7) ? rng.pick(own) : rng.pick(knownIds());
        feSend(fe, packets.closeRequest(id), `CLOSE_REQ ${id}`);
        break;
      }
      case 'feDialCls': {
        const fe = rng.pick(readyFe);
        const own = [...fe.dials.keys()];
        const R = own.length && rng.bool(0.7) ? rng.pick(own) : rng.pick([...knownRandoms(), 5n]);
        feSend(fe, packets.closeDial(R), `DIAL_CLS ${R}`);
        break;
      }
      case 'feOther': {
        const fe = rng.pick(readyFe);
        const p = rng.pick<Packet>([packets.dialResponse(1n, 1n), packets.closeResponse(1n), packets.drain(), packets.flowCredit(1n, 100n)]);
        feSend(fe, p, `stray type ${p.type}`);
        break;
      }
      case 'feWritable': {
        const fe = rng.pick(liveFe);
        trace.push(`fe${fe.idx} writable`);
        fe.session.writable();
        observe();
        break;
      }
      case 'feStall': {
        // The frontend stops (or resumes) reading: past 4 KiB queued, its connections are closed.
        const fe = rng.pick(liveFe);
        fe.buffered = fe.buffered ? 0 : rng.pick([10, 5000]);
        trace.push(`fe${fe.idx} buffered=${fe.buffered}`);
        if (fe.buffered === 0) {
          fe.session.writable();
          observe();
        }
        break;
      }
      case 'feEnd':
        endFrontend(rng.pick(liveFe));
        break;
      case 'agentAdd':
        trace.push(`agent${addAgent(false).idx} ADD`);
        break;
      case 'agentAnswer': {
        const candidates = agents.filter((a) => a.alive && a.unanswered.length > 0);
        if (!candidates.length) break;
        const a = rng.pick(candidates);
        const R = a.unanswered.splice(rng.int(a.unanswered.length), 1)[0]!;
        answerDial(a, R, rng.bool(0.75));
        break;
      }
      case 'agentBogusRsp': {
        const a = rng.pick(liveAgents);
        const kind = rng.int(4);
        if (kind === 0) agentSend(a, packets.dialResponse(rng.pick([...knownRandoms(), 77n]), BigInt(rng.int(4))), 'DIAL_RSP for a dial it never got');
        else if (kind === 1 && a.open.size) {
          // Reuses a connectID it already has open: a buggy or hostile agent.
          const R = a.unanswered.length ? a.unanswered.shift()! : rng.int63();
          agentSend(a, packets.dialResponse(R, rng.pick([...a.open])), `DIAL_RSP ${R} reusing an open connectID`);
        } else if (kind === 2) {
          const R = a.unanswered.length ? a.unanswered.shift()! : rng.int63();
          agentSend(a, packets.dialResponse(R, 0n), `DIAL_RSP ${R} success with connectID 0`);
        } else {
          const R = a.unanswered.length ? a.unanswered[0]! : rng.int63();
          // Answers twice.
          answerDial(a, R, true);
          answerDial(a, R, rng.bool());
          const j = a.unanswered.indexOf(R);
          if (j >= 0) a.unanswered.splice(j, 1);
        }
        break;
      }
      case 'agentData': {
        const candidates = agents.filter((a) => a.alive && !a.witness);
        if (!candidates.length) break;
        const a = rng.pick(candidates);
        const id = a.open.size && rng.bool(0.8) ? rng.pick([...a.open]) : BigInt(rng.int(6));
        agentSend(a, packets.data(id, rng.bytes(rng.int(8))), `DATA ${id}`);
        break;
      }
      case 'agentClose': {
        const candidates = agents.filter((a) => a.alive && (a.closeReqs.length > 0 || (!a.witness && a.open.size > 0)));
        if (!candidates.length) break;
        const a = rng.pick(candidates);
        if (a.closeReqs.length && rng.bool(0.7)) answerClose(a, a.closeReqs.shift()!);
        else if (!a.witness && a.open.size) {
          const id = rng.pick([...a.open]);
          a.open.delete(id);
          agentSend(a, packets.closeResponse(id), `CLOSE_RSP ${id} (endpoint closed)`);
        }
        break;
      }
      case 'agentDialCls': {
        const a = rng.pick(liveAgents);
        const R = a.unanswered.length && rng.bool(0.7) ? a.unanswered.shift()! : rng.pick([...knownRandoms(), 3n]);
        agentSend(a, packets.closeDial(R), `DIAL_CLS ${R}`);
        break;
      }
      case 'agentDrain': {
        const a = rng.pick(liveAgents);
        agentSend(a, packets.drain(), 'DRAIN');
        break;
      }
      case 'agentCredit': {
        const candidates = agents.filter((a) => a.alive);
        const a = rng.pick(candidates);
        const id = a.open.size ? rng.pick([...a.open]) : 1n;
        agentSend(a, packets.flowCredit(id, BigInt(rng.pick([1, 64, 100_000]))), `FLOW_CREDIT ${id}`);
        break;
      }
      case 'agentEnd':
        endAgent(rng.pick(liveAgents));
        break;
      case 'agentBackpressure': {
        const a = rng.pick(liveAgents);
        a.accept = !a.accept;
        trace.push(`agent${a.idx} ${a.accept ? 'drained' : 'backpressured'}`);
        if (a.accept) {
          router.backendDrained(a.backend);
          observe();
        }
        break;
      }
      case 'witness': {
        if (rng.bool()) {
          const bytes = rng.bytes(rng.range(1, 16));
          for (const b of bytes) witnessUpSent.push(b);
          feSend(witnessFe, packets.data(WITNESS_ID, bytes), `witness DATA up ${bytes.length}`);
        } else {
          const bytes = rng.bytes(rng.range(1, 16));
          for (const b of bytes) witnessDownSent.push(b);
          agentSend(witnessAgent, packets.data(WITNESS_ID, bytes), `witness DATA down ${bytes.length}`);
        }
        break;
      }
      case 'sweep': {
        // Keep the witness busy so only fuzz connections can go idle.
        if (witnessOpen) {
          witnessUpSent.push(0);
          feSend(witnessFe, packets.data(WITNESS_ID, new Uint8Array(1)), 'witness keepalive');
        }
        now += rng.pick([100, 600, 1000, 2500]);
        trace.push(`sweep at +${now - 1_000_000}ms`);
        router.sweepIdle(now);
        observe();
        break;
      }
    }
    checkInvariants();
  }

  // --- epilogue: everyone leaves, agents behave ---------------------------------------

  if (!witnessOpen) {
    // The witness may only be closed by something aimed at it; nothing aims at it.
    fail('the witness connection was closed by traffic that was not its own');
  }
  for (const a of agents) {
    if (!a.alive) continue;
    a.accept = true;
    trace.push(`agent${a.idx} drained`);
    router.backendDrained(a.backend);
    observe();
  }
  // Agents answer every dial they hold: then every live, unstopped frontend has all its outcomes.
  for (const a of agents) while (a.alive && a.unanswered.length) answerDial(a, a.unanswered.shift()!, rng.bool());
  checkInvariants();
  for (const f of frontends) {
    if (f.ended) continue;
    for (const [R, n] of f.dials) if (n > 0) fail(`frontend ${f.idx} never heard how dial ${R} ended`);
    const byCredit = [...f.session.connections].some((c) => c.pausedForCredit);
    if (f.paused && !byCredit) fail(`frontend ${f.idx} is still paused with every agent drained`);
  }
  for (const f of frontends) if (!f.ended) endFrontend(f);
  for (let guard = 0; guard < 10_000; guard++) {
    const a = agents.find((x) => x.alive && (x.unanswered.length > 0 || x.closeReqs.length > 0));
    if (!a) break;
    if (a.unanswered.length) answerDial(a, a.unanswered.shift()!, rng.bool());
    else answerClose(a, a.closeReqs.shift()!);
    checkInvariants();
  }
  if (idle) {
    // Connections whose close the agent never confirmed (the bogus ops) are reclaimed.
    for (let i = 0; i < 3; i++) {
      now += 1000;
      router.sweepIdle(now);
      observe();
    }
  }
  if (router.pendingDialCount !== 0) fail(`${router.pendingDialCount} dials still pending after every frontend ended`);
  if (router.establishedCount !== 0) fail(`${router.establishedCount} connections still established after every frontend ended and agents answered every CLOSE_REQ`);
  for (const a of agents) if (a.alive) endAgent(a);
  checkInvariants();
  if (router.backendList.length !== 0 || router.registry.ready) fail('backends left after every agent ended');
  if (router.pendingDialCount !== 0 || router.establishedCount !== 0) fail('router not empty at the end');
  router.dispose();
  return { steps, trace };
}
