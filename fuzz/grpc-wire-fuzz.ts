/**
 * Wire fuzzer: random and mutated gRPC traffic against a real
 * konnectivity-server over real sockets, on both of its gRPC ports: the
 * frontend (`/ProxyService/Proxy` on a unix socket, as kube-apiserver uses
 * it) and the agent listener (`/AgentService/Connect` over TLS; no client CA
 * here, so anyone may be an agent, the worst case). A real agent serves one
 * long-lived "good" tunnel through the same server the whole time.
 *
 * One case opens one connection to one port and, driven by the case seed,
 * sends any of: well-formed packets with IDs and addresses that collide
 * with live ones (including the good tunnel's connectID), codec-fuzzer
 * packets, mutated encodings, random message bodies, lying gRPC frame
 * headers (compressed flag, truncated or oversized lengths), bytes that
 * break the gRPC framing, odd request metadata (missing, repeated or bogus
 * agent IDs and extension headers, wrong paths, methods and content types),
 * half-closes, cancels and resets, extra streams; or, for a raw case, an
 * HTTP/2 preface and random HTTP/2 frames or plain garbage on the socket.
 * Then it ends gracefully or drops the connection.
 *
 * After every case:
 *  - the good tunnel echoed the bytes sent through it during the case,
 *    intact (sha256) and in order;
 *  - the server's router is back to its baseline: only the real agent is a
 *    backend (not draining, the same stream as before), no pending dial,
 *    one established connection (the good one), and the grpc_connections
 *    gauges are back at one Connect and one Proxy stream;
 *  - /healthz and /readyz answer 200.
 *
 * The real agent dials only the rig's own loopback targets: any other
 * address a packet names is refused by its dialer without a DNS lookup or a
 * packet leaving the machine.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { createTcpEndpointDialer, type EndpointDialer } from '../src/agent/endpoint-dialer.ts';
import { EndpointDialError } from '../src/agent/go-dial-error.ts';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { echoEndpoint, type EchoEndpoint } from '../src/dev/loopback-endpoints.ts';
import { closedPort } from '../src/dev/loopback-ports.ts';
import type { Tunnel } from '../src/client/tunnel-options.ts';
import { GrpcChannel, GrpcClientCall, type GrpcTarget } from '../src/grpc/grpc-client.ts';
import { encodePacketWithHeadroom } from '../src/protocol/codec.ts';
import { FLOW_CONTROL_HEADER } from '../src/protocol/flow-control.ts';
import { frameMessage } from '../src/protocol/grpc-frame.ts';
import { packetTypeName, packets, type Packet } from '../src/protocol/packet.ts';
import { SERVER_DRAIN_NOTICE_HEADER } from '../src/protocol/server-drain-notice.ts';
import type { Backend } from '../src/server/proxy-router.ts';
import { randomPacket } from './codec-fuzz.ts';
import { Rng } from './prng.ts';
import { FuzzViolation } from './router-fuzz.ts';

const AGENT_METHOD = '/AgentService/Connect';
const PROXY_METHOD = '/ProxyService/Proxy';
/** How long the server gets to clean up after a case before a leak is reported. */
const SETTLE_MS = 5_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Bytes read from the good tunnel, consumed in order by each case's check. */
class EchoReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: (() => void) | null = null;
  closed = false;

  constructor(socket: NodeJS.ReadableStream) {
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Exactly `n` bytes, or null if the tunnel closed or `timeoutMs` passed first. */
  async take(n: number, timeoutMs: number): Promise<Buffer | null> {
    const deadline = performance.now() + timeoutMs;
    while (this.buffered < n) {
      if (this.closed || performance.now() > deadline) return null;
      await Promise.race([new Promise<void>((resolve) => (this.waiter = resolve)), sleep(50)]);
    }
    const all = Buffer.concat(this.chunks);
    this.chunks.length = 0;
    const rest = all.subarray(n);
    if (rest.length > 0) this.chunks.push(rest);
    this.buffered = rest.length;
    return all.subarray(0, n);
  }
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.setTimeout(5_000, () => req.destroy());
  });
}

export interface WireFuzzRigOptions {
  /** Most actions in one case (default 24). */
  maxSteps?: number;
}

export class GrpcWireFuzzRig {
  /** The server under test, its PKI and helpers (for checks from outside). */
  readonly cluster: LocalCluster;
  private readonly agent: KonnectivityAgent;
  private readonly tunnel: Tunnel;
  private readonly good: net.Socket;
  private readonly reader: EchoReader;
  private readonly echo: EchoEndpoint;
  private readonly backend: Backend;
  private readonly goodConnectID: bigint;
  private readonly addresses: readonly string[];
  private readonly maxSteps: number;
  /** The loopback echo target the good tunnel (and some fuzz dials) reach. */
  readonly echoAddress: string;
  /** Description of the case in progress, for violations. */
  private trace: string[] = [];

  private constructor(init: {
    cluster: LocalCluster;
    agent: KonnectivityAgent;
    tunnel: Tunnel;
    good: net.Socket;
    echo: EchoEndpoint;
    backend: Backend;
    goodConnectID: bigint;
    addresses: readonly string[];
    maxSteps: number;
  }) {
    this.cluster = init.cluster;
    this.agent = init.agent;
    this.tunnel = init.tunnel;
    this.good = init.good;
    this.reader = new EchoReader(init.good);
    this.echo = init.echo;
    this.backend = init.backend;
    this.goodConnectID = init.goodConnectID;
    this.addresses = init.addresses;
    this.echoAddress = init.addresses[0]!;
    this.maxSteps = init.maxSteps;
  }

  static async start(options: WireFuzzRigOptions = {}): Promise<GrpcWireFuzzRig> {
    const echo = await echoEndpoint();
    const echoAddress = `127.0.0.1:${echo.port}`;
    const closedAddress = `127.0.0.1:${await closedPort()}`;

    const cluster = await startLocalCluster({ mode: 'grpc', agents: 0 });
    // The only destinations this agent ever dials: the echo target and a closed port.
    const tcp = createTcpEndpointDialer({ timeoutMs: 2_000 });
    const dialEndpoint: EndpointDialer = (address, signal) =>
      address === echoAddress || address === closedAddress ? tcp(address, signal) : Promise.reject(new EndpointDialError(`dial tcp ${address}: refused by the fuzz rig (loopback targets only)`, 'unknown'));
    const agent = await cluster.startAgent({}, { dialEndpoint });
    await cluster.waitForAgents(1);
    const backend = cluster.server.router.backendList[0]!;
    const tunnel = cluster.openTunnel();
    const good = (await tunnel.dial('tcp', echoAddress)) as unknown as net.Socket;
    good.on('error', () => {});
    const goodConnectID = [...backend.connections.keys()][0];
    if (goodConnectID === undefined) throw new Error('the good tunnel has no connection at the agent');
    return new GrpcWireFuzzRig({
      cluster,
      agent,
      tunnel,
      good,
      echo,
      backend,
      goodConnectID,
      addresses: [echoAddress, closedAddress, '', 'no-port', '127.0.0.1:', '127.0.0.1:99999', '[::1]:1', '10.0.0.1:443', 'localhost:1', '999.1.1.1:80'],
      maxSteps: options.maxSteps ?? 24,
    });
  }

  async close(): Promise<void> {
    this.good.destroy();
    await this.tunnel.close();
    await this.agent.stop();
    await this.cluster.close();
    await this.echo.close();
  }

  async runCase(seed: number): Promise<void> {
    const rng = new Rng(seed);
    this.trace = [];
    // Bytes through the good tunnel while the case runs.
    const payload = Buffer.from(rng.bytes(rng.pick([1, 100, 4096, 40_000])));
    this.good.write(payload);
    const echoed = this.reader.take(payload.length, SETTLE_MS);

    const port = rng.bool(0.5) ? 'frontend' : 'agent';
    if (rng.bool(0.15)) await this.rawCase(rng, port);
    else await this.grpcCase(rng, port);

    const back = await echoed;
    if (back === null) this.fail(`the good tunnel did not echo ${payload.length} bytes (closed: ${this.reader.closed})`);
    if (sha256(back) !== sha256(payload)) this.fail('the good tunnel corrupted its bytes');
    await this.settled();
    const [health, ready] = await Promise.all([httpStatus(this.cluster.server.addresses.healthPort, '/healthz'), httpStatus(this.cluster.server.addresses.healthPort, '/readyz')]);
    if (health !== 200 || ready !== 200) this.fail(`server unhealthy: /healthz ${health}, /readyz ${ready}`);
  }

  private fail(message: string): never {
    throw new FuzzViolation(`${message}\n  after:\n    ${this.trace.slice(-30).join('\n    ')}`);
  }

  private note(what: string): void {
    this.trace.push(what);
  }

  // --- raw sockets ------------------------------------------------------------

  private async rawCase(rng: Rng, port: 'frontend' | 'agent'): Promise<void> {
    const socket = port === 'frontend' ? this.rawFrontendSocket() : this.rawAgentSocket();
    socket.on('error', () => {});
    socket.on('data', () => {});
    // The server may close first (GOAWAY after a bad frame): listen from the start.
    // (events.once would reject on the socket's 'error' events, which are expected here.)
    const closed = new Promise<false>((resolve) => socket.once('close', () => resolve(false)));
    const ready = new Promise<true>((resolve) => socket.once(port === 'frontend' ? 'connect' : 'secureConnect', () => resolve(true)));
    const opened = await Promise.race([ready, closed]);
    this.note(`raw ${port} socket${opened ? '' : ' (refused)'}`);
    if (!opened) return;
    if (rng.bool(0.7)) {
      socket.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'));
      this.note('HTTP/2 preface');
    }
    const frames = rng.range(0, 8);
    for (let i = 0; i < frames && !socket.destroyed; i++) {
      if (rng.bool(0.3)) {
        const garbage = rng.bytes(rng.range(1, 300));
        this.note(`garbage ${garbage.length} bytes`);
        socket.write(garbage);
      } else {
        // An HTTP/2 frame with a random type, flags, stream and payload (length sometimes a lie).
        const body = rng.bytes(rng.pick([0, 1, 6, 8, 9, 30, 200]));
        const type = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, rng.int(256)]);
        const flags = rng.int(256);
        const stream = rng.pick([0, 1, 3, 2, 0x7fffffff, rng.next() >>> 1]);
        const length = rng.bool(0.85) ? body.length : rng.int(1 << 24);
        const header = Buffer.alloc(9);
        header.writeUIntBE(length, 0, 3);
        header[3] = type;
        header[4] = flags;
        header.writeUInt32BE(stream >>> 0, 5);
        this.note(`h2 frame type ${type} flags ${flags} stream ${stream} length ${length}/${body.length}`);
        socket.write(Buffer.concat([header, body]));
      }
      if (rng.bool(0.3)) await tick();
    }
    await sleep(rng.pick([0, 1, 5]));
    if (rng.bool(0.5)) socket.end();
    else socket.destroy();
    // After our FIN the server has to close too; a socket it keeps open is a leak.
    const gone = await Promise.race([closed.then(() => true), sleep(2_000).then(() => false)]);
    socket.destroy();
    if (!gone) this.fail('the server kept a raw connection open for 2 s after the client ended it');
  }

  private rawFrontendSocket(): net.Socket {
    const fe = this.cluster.server.config.frontend;
    if (fe.transport !== 'unix') throw new Error('the rig serves its frontend on a unix socket');
    return net.connect(fe.path);
  }

  private rawAgentSocket(): tls.TLSSocket {
    return tls.connect({ host: '127.0.0.1', port: this.cluster.server.addresses.agentPort, ca: this.cluster.pki.ca.cert, servername: 'localhost', ALPNProtocols: ['h2'] });
  }

  // --- gRPC -------------------------------------------------------------------

  private target(port: 'frontend' | 'agent'): GrpcTarget {
    const fe = this.cluster.server.config.frontend;
    if (port === 'frontend' && fe.transport === 'unix') return { transport: 'unix', path: fe.path };
    return { transport: 'tls', host: '127.0.0.1', port: this.cluster.server.addresses.agentPort, tls: { ca: this.cluster.pki.ca.cert, servername: 'localhost' } };
  }

  private requestHeaders(rng: Rng, port: 'frontend' | 'agent'): http2.OutgoingHttpHeaders {
    const headers: http2.OutgoingHttpHeaders = {
      ':method': rng.bool(0.95) ? 'POST' : rng.pick(['GET', 'PUT']),
      ':path': rng.bool(0.9) ? (port === 'agent' ? AGENT_METHOD : PROXY_METHOD) : rng.pick([PROXY_METHOD, AGENT_METHOD, '/ProxyService/Nope', '/grpc.health.v1.Health/Check', '/']),
      'content-type': rng.bool(0.95) ? 'application/grpc' : rng.pick(['application/grpc+proto', 'text/plain', 'application/json']),
      te: 'trailers',
    };
    if (port === 'agent') {
      const ids = ['fuzz-agent', '', this.agent.config.agentID, 'x'.repeat(300)];
      const idCount = rng.weighted({ one: 8, none: 1, two: 1 });
      if (idCount === 'one') headers['agentid'] = rng.pick(ids);
      else if (idCount === 'two') headers['agentid'] = [rng.pick(ids), rng.pick(ids)];
      if (rng.bool(0.8)) headers['agentidentifiers'] = rng.pick(['', 'host=localhost', 'ipv4=127.0.0.1&default-route=true', 'host=%zz', 'ipv4=not-an-ip', 'a=b&a=c&host=h']);
      if (rng.bool(0.3)) headers[FLOW_CONTROL_HEADER] = rng.pick(['1', '0', '-5', '65536', '1048576', '99999999999999999999', 'v1', '']);
      if (rng.bool(0.3)) headers[SERVER_DRAIN_NOTICE_HEADER] = rng.pick(['v1', 'v2', '']);
      if (rng.bool(0.1)) headers['authorization'] = rng.pick(['Bearer junk', 'Basic x']);
    }
    return headers;
  }

  /** A packet whose IDs and addresses collide with live ones often. */
  private livePacket(rng: Rng): Packet {
    const connectID = rng.pick([0n, 1n, 2n, 3n, this.goodConnectID, this.goodConnectID + 1n, -1n]);
    const random = rng.pick([1n, 2n, 3n, 42n, -7n]);
    switch (rng.int(8)) {
      case 0:
      case 1:
        return packets.dialRequest(rng.pick(this.addresses), random, rng.bool(0.9) ? 'tcp' : rng.pick(['udp', '']));
      case 2:
        return packets.dialResponse(random, connectID, rng.bool(0.5) ? '' : 'dial failed');
      case 3:
        return packets.data(connectID, rng.bytes(rng.pick([0, 1, 100, 5000])));
      case 4:
        return packets.closeRequest(connectID);
      case 5:
        return packets.closeResponse(connectID);
      case 6:
        return packets.closeDial(random);
      default:
        return packets.drain();
    }
  }

  private frame(message: Uint8Array): Buffer {
    return frameMessage(message);
  }

  private mutate(rng: Rng, encoded: Uint8Array): Uint8Array {
    const out = Array.from(encoded);
    const edits = rng.range(1, 4);
    for (let i = 0; i < edits; i++) {
      const at = out.length === 0 ? 0 : rng.int(out.length);
      switch (rng.int(4)) {
        case 0:
          if (out.length > 0) out[at] = rng.int(256);
          break;
        case 1:
          out.splice(at, 0, rng.int(256));
          break;
        case 2:
          out.splice(at, 1);
          break;
        default:
          out.length = at;
      }
    }
    return Uint8Array.from(out);
  }

  private openCall(rng: Rng, channel: GrpcChannel, port: 'frontend' | 'agent'): GrpcClientCall | null {
    const headers = this.requestHeaders(rng, port);
    this.note(`stream ${JSON.stringify(headers)}`);
    try {
      const h2 = channel.session.request(headers);
      h2.on('error', () => {});
      const call = new GrpcClientCall(h2, {});
      call.stream.onPacket = () => {};
      call.headers.catch(() => {});
      return call;
    } catch (err) {
      this.note(`client refused to open it: ${err instanceof Error ? err.message : String(err)}`);
      return null;
    }
  }

  private async grpcCase(rng: Rng, port: 'frontend' | 'agent'): Promise<void> {
    let channel: GrpcChannel;
    try {
      channel = await GrpcChannel.connect(this.target(port), { connectTimeoutMs: 5_000 });
    } catch (err) {
      this.fail(`cannot connect to the ${port} port: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.note(`${port} connection`);
    const calls: GrpcClientCall[] = [];
    const first = this.openCall(rng, channel, port);
    if (first) calls.push(first);
    const steps = rng.range(1, this.maxSteps);
    for (let i = 0; i < steps && !channel.isClosed; i++) {
      const call = calls.length > 0 ? rng.pick(calls) : null;
      const action = rng.weighted({ packet: 10, codecPacket: 3, mutated: 4, randomMessage: 2, badFrame: 2, brokenFraming: 1, tick: 4, wait: 1, halfClose: 1, cancel: 1, reset: 1, newStream: 1 });
      if (action === 'tick') {
        await tick();
        continue;
      }
      if (action === 'wait') {
        await sleep(rng.pick([1, 5, 20]));
        continue;
      }
      if (action === 'newStream') {
        const c = this.openCall(rng, channel, port);
        if (c) calls.push(c);
        continue;
      }
      if (!call) continue;
      const h2 = call.stream.h2;
      if (h2.destroyed || !h2.writable) continue;
      switch (action) {
        case 'packet': {
          const p = this.livePacket(rng);
          this.note(`packet ${packetTypeName(p.type)} ${JSON.stringify(p, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? `<${v.length} bytes>` : v))}`);
          call.stream.send(p);
          break;
        }
        case 'codecPacket': {
          const p = randomPacket(rng);
          this.note(`codec packet type ${p.type}`);
          call.stream.send(p);
          break;
        }
        case 'mutated': {
          const encoded = encodePacketWithHeadroom(rng.bool(0.5) ? this.livePacket(rng) : randomPacket(rng), 0);
          const m = this.mutate(rng, encoded);
          this.note(`mutated packet ${Buffer.from(m).toString('hex').slice(0, 80)}`);
          h2.write(this.frame(m));
          break;
        }
        case 'randomMessage': {
          const m = rng.bytes(rng.pick([0, 1, 2, 10, 100, 3000]));
          this.note(`random message ${m.length} bytes`);
          h2.write(this.frame(m));
          break;
        }
        case 'badFrame': {
          const kind = rng.pick(['compressed', 'short', 'huge', 'truncatedHeader'] as const);
          this.note(`bad frame: ${kind}`);
          const body = encodePacketWithHeadroom(this.livePacket(rng), 0);
          const f = this.frame(body);
          if (kind === 'compressed') f[0] = rng.pick([1, 2, 0xff]);
          if (kind === 'short') f.writeUInt32BE(body.length + rng.range(1, 100), 1);
          if (kind === 'huge') f.writeUInt32BE(rng.pick([0x7fffffff, 0xffffffff, 4 * 1024 * 1024 + 1]), 1);
          h2.write(kind === 'truncatedHeader' ? f.subarray(0, rng.range(1, 4)) : f);
          break;
        }
        case 'brokenFraming': {
          const b = rng.bytes(rng.range(1, 64));
          this.note(`bytes into the stream ${b.length}`);
          h2.write(b);
          break;
        }
        case 'halfClose':
          this.note('half-close');
          call.closeSend();
          break;
        case 'cancel':
          this.note('cancel');
          call.cancel();
          break;
        case 'reset': {
          const code = rng.pick([http2.constants.NGHTTP2_INTERNAL_ERROR, http2.constants.NGHTTP2_PROTOCOL_ERROR, http2.constants.NGHTTP2_FLOW_CONTROL_ERROR, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM]);
          this.note(`RST_STREAM ${code}`);
          h2.close(code);
          break;
        }
      }
    }
    if (rng.bool(0.5)) {
      this.note('end gracefully');
      for (const c of calls) c.closeSend();
      await Promise.race([Promise.all(calls.map((c) => c.status)), sleep(300)]);
      channel.close();
      await Promise.race([new Promise<void>((resolve) => channel.onClose(resolve)), sleep(300)]);
    } else {
      this.note('drop the connection');
    }
    channel.destroy();
  }

  // --- invariants -------------------------------------------------------------

  private async gauges(): Promise<{ connect: number; proxy: number }> {
    const { values } = await this.cluster.server.metrics.grpcConnections.get();
    const of = (m: string): number => values.find((v) => v.labels['service_method'] === m)?.value ?? 0;
    return { connect: of('Connect'), proxy: of('Proxy') };
  }

  /** Waits for the server to be back where it was before the case; reports what leaked otherwise. */
  private async settled(): Promise<void> {
    const router = this.cluster.server.router;
    const deadline = performance.now() + SETTLE_MS;
    for (;;) {
      const backends = router.backendList;
      const g = await this.gauges();
      const problems: string[] = [];
      if (backends.length !== 1 || backends[0] !== this.backend) problems.push(`backends: ${backends.map((b) => `${b.agentId}#${b.serial}`).join(', ') || 'none'}`);
      if (this.backend.closed) problems.push('the real agent stream was closed');
      if (this.backend.draining) problems.push('the real agent is marked draining');
      if (router.pendingDialCount !== 0) problems.push(`${router.pendingDialCount} pending dials`);
      if (router.establishedCount !== 1) problems.push(`${router.establishedCount} established connections (want the good one only)`);
      if (this.backend.connections.size !== 1 || !this.backend.connections.has(this.goodConnectID)) problems.push(`real agent connections: ${[...this.backend.connections.keys()].join(', ')}`);
      if (this.backend.pendingDials !== 0) problems.push(`real agent pending dials: ${this.backend.pendingDials}`);
      if (g.connect !== 1 || g.proxy !== 1) problems.push(`grpc_connections Connect ${g.connect}, Proxy ${g.proxy}`);
      if (problems.length === 0) return;
      if (performance.now() > deadline) this.fail(`server state leaked after the case: ${problems.join('; ')}`);
      await sleep(5);
    }
  }
}
