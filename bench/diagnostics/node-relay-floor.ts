/**
 * Diagnostic: our HTTP-CONNECT tunnel against the thinnest relay Node can
 * be with the same hops: `npm run bench:relay-floor [-- --quick]`.
 *
 * Why: a round trip through the tunnel crosses three hops (client → server
 * over a unix socket, server → agent over TLS, agent → destination over
 * TCP) in four processes. This builds that chain with no protocol at all:
 * relay 1 accepts on a unix socket and forwards raw bytes over TLS (or over
 * one HTTP/2 stream per connection on a shared TLS session, as our agent
 * link carries many connections on one HTTP/2 connection) to relay 2,
 * which forwards them to the destination over TCP. What our tunnel costs
 * above that chain is what konnectivity's own code (packets, flow control,
 * metrics, logs) adds; the chain itself is the floor of a Node relay with
 * these hops on this machine.
 *
 * The relays get the daemons' own tuning, so the comparison is of code,
 * not settings: V8's heap growing factor (src/runtime/heap-tuning.ts) and
 * the HTTP/2 windows and frame size (src/grpc/http2-settings.ts).
 *
 * Targets, interleaved, three runs each, medians: direct (client →
 * destination), chain-tls, chain-h2 (dials: chain-tcp, chain-tls-mux,
 * chain-h2-mux and chain-h2, described below), and ours (konnectivity-server and
 * konnectivity-agent in HTTP-CONNECT mode, started as the bench starts
 * them), and, when a Go toolchain with grpc-go is installed, go-grpc: the
 * same hops in Go (go-relay-floor/), what upstream's runtime reaches on
 * this machine (`--go-read-bytes 4096` gives it upstream's read size; the
 * default, 32768, is Go's io.Copy). grpc:ours and grpc:go-grpc are the
 * same two in gRPC mode: the client speaks ProxyService over h2c on the
 * unix socket, one stream per dial, as kube-apiserver does. The
 * `new-connection-dial` measure times those two with a new gRPC connection
 * for every dial, as kube-apiserver releases with single-use tunnels dial
 * (direct: a plain TCP dial). The destination and the client are the
 * bench's own (bench/destination.ts, MiniHttpConnection). Nothing here
 * asserts a speed.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { parseArgs } from 'node:util';
import { createTunnel } from '../../src/client/create-tunnel.ts';
import { createDevPki } from '../../src/dev/pki.ts';
import { MAX_SESSION_MEMORY_MB, SESSION_WINDOW_BYTES, http2Settings } from '../../src/grpc/http2-settings.ts';
import { applyHeapTuning } from '../../src/runtime/heap-tuning.ts';
import { startGoRelayFloor } from './go-relay-floor.ts';
import { compiledLayout, startCluster } from '../lib/cluster.ts';
import { startDestination } from '../lib/destination.ts';
import { firstByteAfter, newGrpcConnectionFirstByte } from '../lib/first-byte.ts';
import { MiniHttpConnection } from '../lib/mini-http.ts';
import { startRelayChain } from '../lib/relay-chain.ts';
import { median, percentile, sortNumbers } from '../lib/stats.ts';

/**
 * `h2-connect`: relay 1 answers HTTP CONNECT on the unix
 * socket, opens one HTTP/2 stream per dial carrying the address, relay 2
 * dials the destination and answers the stream's headers only once the TCP
 * connect succeeded, and relay 1 then writes `200`: the same four-process,
 * three-hop sequence as a konnectivity dial, with HTTP/2 headers in place of
 * DIAL_REQ / DIAL_RSP. `tcp-connect` is the same with a new plain TCP
 * connection per dial between the relays (the address as one line, "ok" back
 * once connected): no TLS and no HTTP/2 at all, the least a Node relay with
 * four processes can do per dial. A new HTTP/2 stream per dial costs about
 * as much again as the rest of the dial (docs/benchmarks.md, session 15), and
 * our agent link opens none: `h2-mux-connect` below is its floor.
 */
type ChainHop = 'tls' | 'h2' | 'h2-connect' | 'tcp-connect' | 'tls-mux-connect' | 'h2-mux-connect';

/**
 * `h2-mux-connect` is the dial floor shaped like our agent link: every dial
 * rides one long-lived HTTP/2 stream (opened once, as the agent's Connect
 * stream is) in frames of our own: a 9-byte header (type, connection id,
 * length), then DIAL (the address) / OK (connected) / DATA / CLOSE.
 * `tls-mux-connect` carries the same frames on the TLS connection itself,
 * with no HTTP/2: what Node's HTTP/2 adds to a multiplexed dial. Neither
 * answers a CLOSE, closes gracefully, logs or counts anything.
 */
const MuxFrame = { DIAL: 1, OK: 2, DATA: 3, CLOSE: 4 } as const;
type MuxFrame = (typeof MuxFrame)[keyof typeof MuxFrame];

function muxFrame(type: MuxFrame, id: number, payload?: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(9 + (payload?.length ?? 0));
  frame[0] = type;
  frame.writeUInt32BE(id, 1);
  frame.writeUInt32BE(payload?.length ?? 0, 5);
  if (payload) frame.set(payload, 9);
  return frame;
}

/** Calls `onFrame` for every whole frame read from `socket`. */
function readMuxFrames(socket: Duplex, onFrame: (type: MuxFrame, id: number, payload: Buffer) => void): void {
  let pending: Buffer | null = null;
  socket.on('data', (chunk: Buffer) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    while (buf.length >= 9) {
      const length = buf.readUInt32BE(5);
      if (buf.length < 9 + length) break;
      onFrame(buf[0] as MuxFrame, buf.readUInt32BE(1), buf.subarray(9, 9 + length));
      buf = buf.subarray(9 + length);
    }
    if (buf.length > 0) pending = Buffer.from(buf);
  });
}

/** Header carrying the dial address from relay 1 to relay 2 (h2-connect). */
const DEST_HEADER = 'x-relay-destination';

/** Copies `from` into `to`, pausing `from` while `to` is over its buffer limit (what pipe() does, minus its end handling). */
function forward(from: Duplex, to: Duplex): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
}

/** An HTTP/2 server with the windows, frame size and session memory our gRPC server uses. */
function tunedHttp2Server(options: { cert: Buffer; key: Buffer }): http2.Http2SecureServer {
  const server = http2.createSecureServer({ ...options, settings: http2Settings, maxSessionMemory: MAX_SESSION_MEMORY_MB });
  server.on('session', (session) => session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES)));
  return server;
}

/** An HTTP/2 client session with the settings our gRPC client uses. */
function tunedHttp2Session(authority: string, ca: Buffer): http2.ClientHttp2Session {
  const session = http2.connect(authority, { ca, settings: http2Settings, maxSessionMemory: MAX_SESSION_MEMORY_MB });
  session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
  return session;
}

/** Listens on a loopback port and prints it: the parent reads it as the child's first line. */
function listenAndPrintPort(server: net.Server): void {
  server.listen(0, '127.0.0.1', () => console.log((server.address() as net.AddressInfo).port));
}

/** An HTTP/2 server on a loopback port that answers every stream 200 and hands it to `serve`; prints its port. */
function serveEachStream(options: { cert: Buffer; key: Buffer }, serve: (stream: Duplex) => void): void {
  const server = tunedHttp2Server(options);
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    serve(stream);
  });
  listenAndPrintPort(server);
}

/** Relay 2: TLS (or HTTP/2 over TLS) in, TCP to the destination out. Prints its port. */
function runRelay2(hop: ChainHop, dest: string, certPath: string, keyPath: string): void {
  const [host, port] = [dest.slice(0, dest.lastIndexOf(':')), Number(dest.slice(dest.lastIndexOf(':') + 1))];
  const options = { cert: readFileSync(certPath), key: readFileSync(keyPath) };
  const bridge = (from: Duplex): void => {
    const out = net.connect({ host, port, noDelay: true });
    forward(out, from);
    forward(from, out);
    from.on('close', () => out.destroy());
  };
  if (hop === 'tls') {
    const server = tls.createServer(options, (socket) => {
      socket.setNoDelay(true);
      bridge(socket);
    });
    listenAndPrintPort(server);
  } else if (hop === 'tcp-connect') {
    const server = net.createServer((from) => {
      from.setNoDelay(true);
      let line = '';
      const onLine = (chunk: Buffer): void => {
        line += chunk.toString('latin1');
        const end = line.indexOf('\n');
        if (end < 0) return;
        from.off('data', onLine);
        const target = line.slice(0, end);
        const i = target.lastIndexOf(':');
        const out = net.connect({ host: target.slice(0, i), port: Number(target.slice(i + 1)), noDelay: true });
        out.once('connect', () => {
          from.write('ok\n');
          forward(from, out);
        });
        forward(out, from);
        out.on('end', () => from.end());
        out.on('error', () => from.destroy());
        from.on('close', () => out.destroy());
      };
      from.on('data', onLine);
      from.on('error', () => from.destroy());
    });
    listenAndPrintPort(server);
  } else if (hop === 'tls-mux-connect' || hop === 'h2-mux-connect') {
    const serveMux = (link: Duplex): void => {
      const outs = new Map<number, net.Socket>();
      readMuxFrames(link, (type, id, payload) => {
        if (type === MuxFrame.DIAL) {
          const target = payload.toString('latin1');
          const i = target.lastIndexOf(':');
          const out = net.connect({ host: target.slice(0, i), port: Number(target.slice(i + 1)), noDelay: true });
          outs.set(id, out);
          out.once('connect', () => link.write(muxFrame(MuxFrame.OK, id)));
          out.on('data', (chunk: Buffer) => link.write(muxFrame(MuxFrame.DATA, id, chunk)));
          out.on('close', () => {
            if (outs.delete(id)) link.write(muxFrame(MuxFrame.CLOSE, id));
          });
          out.on('error', () => out.destroy());
        } else if (type === MuxFrame.DATA) {
          outs.get(id)?.write(payload);
        } else if (type === MuxFrame.CLOSE) {
          const out = outs.get(id);
          outs.delete(id);
          out?.destroy();
        }
      });
    };
    if (hop === 'tls-mux-connect') {
      const server = tls.createServer(options, (link) => {
        link.setNoDelay(true);
        serveMux(link);
      });
      listenAndPrintPort(server);
    } else {
      serveEachStream(options, serveMux);
    }
  } else if (hop === 'h2-connect') {
    // Both sides half-close instead of resetting streams: Node's HTTP/2 server closes a session that
    // resets streams at a high rate (its rapid-reset defence), and a dial loop would look like one.
    const server = tunedHttp2Server(options);
    server.on('stream', (stream, headers) => {
      const target = String(headers[DEST_HEADER] ?? '');
      const i = target.lastIndexOf(':');
      const out = net.connect({ host: target.slice(0, i), port: Number(target.slice(i + 1)), noDelay: true });
      out.once('connect', () => stream.respond({ ':status': 200 }));
      out.on('error', () => (stream.headersSent ? stream.end() : stream.respond({ ':status': 502 }, { endStream: true })));
      forward(out, stream);
      out.on('end', () => stream.end());
      forward(stream, out);
      stream.on('end', () => out.end());
      stream.on('error', () => out.destroy());
    });
    listenAndPrintPort(server);
  } else {
    serveEachStream(options, bridge);
  }
}

/** Relay 1: unix socket in, TLS (or one HTTP/2 stream per connection on one session) to relay 2 out. */
function runRelay1(hop: ChainHop, relay2Port: number, uds: string, caPath: string): void {
  const ca = readFileSync(caPath);
  const session = hop === 'tls' || hop === 'tcp-connect' || hop === 'tls-mux-connect' ? null : tunedHttp2Session(`https://127.0.0.1:${relay2Port}`, ca);
  // The least an HTTP CONNECT front can do: find the end of the request head, take the authority, no validation.
  const serveConnect = (dial: (client: net.Socket, address: string) => void): void => {
    const server = net.createServer((client) => {
      let head = '';
      const onHead = (chunk: Buffer): void => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        client.off('data', onHead);
        const afterMethod = head.indexOf(' ') + 1;
        dial(client, head.slice(afterMethod, head.indexOf(' ', afterMethod)));
      };
      client.on('data', onHead);
      client.on('error', () => client.destroy());
    });
    server.listen(uds, () => console.log('ready'));
  };
  const established = (client: net.Socket, out: Duplex): void => {
    client.write('HTTP/1.1 200 Connection established\r\n\r\n');
    forward(out, client);
    forward(client, out);
  };
  if (hop === 'tcp-connect') {
    serveConnect((client, address) => {
      const out = net.connect({ host: '127.0.0.1', port: relay2Port, noDelay: true });
      out.write(`${address}\n`);
      // "ok\n" arrives alone: relay 2 sends nothing else before the client's request.
      out.once('data', () => established(client, out));
      out.on('end', () => client.end());
      out.on('error', () => client.destroy());
      client.on('close', () => out.destroy());
    });
    return;
  }
  if (hop === 'tls-mux-connect' || hop === 'h2-mux-connect') {
    let link: Duplex;
    if (hop === 'tls-mux-connect') {
      const socket = tls.connect({ host: '127.0.0.1', port: relay2Port, ca });
      socket.setNoDelay(true);
      link = socket;
    } else {
      // One long-lived stream carries every dial, as our agent link does.
      link = session!.request({ ':method': 'POST', ':path': '/mux' }, { endStream: false });
    }
    const clients = new Map<number, net.Socket>();
    let nextId = 1;
    readMuxFrames(link, (type, id, payload) => {
      const client = clients.get(id);
      if (!client) return;
      if (type === MuxFrame.OK) {
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        client.on('data', (chunk: Buffer) => link.write(muxFrame(MuxFrame.DATA, id, chunk)));
      } else if (type === MuxFrame.DATA) {
        client.write(payload);
      } else if (type === MuxFrame.CLOSE) {
        clients.delete(id);
        client.end();
      }
    });
    serveConnect((client, address) => {
      const id = nextId++;
      clients.set(id, client);
      link.write(muxFrame(MuxFrame.DIAL, id, Buffer.from(address, 'latin1')));
      client.on('close', () => {
        if (clients.delete(id)) link.write(muxFrame(MuxFrame.CLOSE, id));
      });
    });
    return;
  }
  if (hop === 'h2-connect') {
    serveConnect((client, address) => {
      const out = session!.request({ ':method': 'POST', ':path': '/dial', [DEST_HEADER]: address }, { endStream: false });
      out.once('response', (headers) => {
        if (headers[':status'] === 200) established(client, out);
        else client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      });
      out.on('end', () => client.end());
      out.on('error', () => client.destroy());
      client.on('close', () => out.end());
    });
    return;
  }
  const server = net.createServer((client) => {
    let out: Duplex;
    if (session) {
      out = session.request({ ':method': 'POST', ':path': '/relay' }, { endStream: false });
    } else {
      const socket = tls.connect({ host: '127.0.0.1', port: relay2Port, ca });
      socket.setNoDelay(true);
      out = socket;
    }
    forward(out, client);
    forward(client, out);
    client.on('close', () => out.destroy());
    out.on('error', () => client.destroy());
  });
  server.listen(uds, () => console.log('ready'));
}

/** User plus system CPU milliseconds of a process so far, from /proc (10 ms ticks). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Milliseconds from the dial call to the first byte of the answer to `GET /`; the connection is then destroyed. */
async function dialFirstByte(dial: () => Promise<Duplex>): Promise<number> {
  const t0 = performance.now();
  return firstByteAfter(t0, await dial());
}


interface FloorTarget {
  name: string;
  /** A connection ready for requests to the destination (the tunnel dialed). */
  dial(): Promise<Duplex>;
  /** The two relay processes (relay 1 and 2, or server and agent); none for direct. */
  pids: number[];
}

/** The optional "÷go-grpc" column: each target against the Go relay floor, when it ran. */
function goColumn(byTarget: Record<string, number[]>): { title: string; cell: (name: string, value: number) => string } {
  if (!byTarget['go-grpc'] && !byTarget['grpc:go-grpc']) return { title: '', cell: () => '' };
  return {
    title: '   ÷go-grpc',
    cell: (name, value) => {
      // gRPC-mode targets against the Go relay's gRPC frontend, the others against its HTTP CONNECT one.
      const runs = byTarget[name.startsWith('grpc:') ? 'grpc:go-grpc' : 'go-grpc'];
      return runs ? `  ${(value / median(runs)).toFixed(2).padStart(8)}×` : '';
    },
  };
}

/** Width of the target column in progress lines and tables ("chain-tls-mux"). */
const NAME_WIDTH = 13;

interface DialTarget {
  name: string;
  /** Milliseconds from the dial to the first byte of the answer to `GET /`. */
  dialFirstByte(): Promise<number>;
  /** The two relay processes (relay 1 and 2, or server and agent); none for direct. */
  pids: number[];
}

interface DialRuns {
  /** Target → p50 of each run (ms). */
  p50: Record<string, number[]>;
  /** Target → per relay process, CPU µs per dial of each run. */
  cpuPerDial: Record<string, number[][]>;
}

/** Interleaved runs of sequential dials: warm-up (longer before each target's first run), then `count` timed ones. */
async function measureDials(
  targets: readonly DialTarget[],
  plan: { reps: number; count: number; warmup: number; firstRunWarmup: number },
  progress: (msg: string) => void,
): Promise<DialRuns> {
  const runs: DialRuns = { p50: {}, cpuPerDial: {} };
  for (let rep = 0; rep < plan.reps; rep++) {
    for (const target of targets) {
      for (let i = 0; i < (rep === 0 ? plan.firstRunWarmup : plan.warmup); i++) await target.dialFirstByte();
      const before = target.pids.map(cpuMs);
      const samples: number[] = [];
      for (let i = 0; i < plan.count; i++) samples.push(await target.dialFirstByte());
      // Closes finish after the last first byte; let them land in the CPU figures.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const perDial = target.pids.map((pid, i) => ((cpuMs(pid) - before[i]!) * 1000) / plan.count);
      sortNumbers(samples);
      (runs.p50[target.name] ??= []).push(percentile(samples, 50));
      (runs.cpuPerDial[target.name] ??= target.pids.map(() => [])).forEach((cpu, i) => cpu.push(perDial[i]!));
      const cpuText = perDial.length ? `; CPU per dial ${perDial.map((us) => `${us.toFixed(0)} µs`).join(' + ')}` : '';
      progress(`${target.name.padEnd(NAME_WIDTH)} run ${rep + 1}/${plan.reps}: p50 ${percentile(samples, 50).toFixed(3)} ms, p99 ${percentile(samples, 99).toFixed(3)} ms${cpuText}`);
    }
  }
  return runs;
}

/** A target's CPU column: median CPU µs per dial of each relay process, "—" for direct. */
function cpuColumn(runs: DialRuns, name: string): string {
  return (runs.cpuPerDial[name] ?? []).map((cpu) => median(cpu).toFixed(0)).join(' / ') || '—';
}

type Measure = 'round-trip' | 'dial' | 'new-connection-dial' | 'bulk';
const allMeasures: readonly Measure[] = ['round-trip', 'dial', 'new-connection-dial', 'bulk'];
const MiB = 1024 * 1024;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, 'go-read-bytes': { type: 'string', default: '32768' } } });
  const goReadBytes = Number(values['go-read-bytes']);
  if (!Number.isInteger(goReadBytes) || goReadBytes < 1 || goReadBytes > 4 * MiB) {
    console.error(`--go-read-bytes takes a whole number of bytes from 1 to ${4 * MiB}; not ${JSON.stringify(values['go-read-bytes'])}`);
    process.exit(2);
  }
  const quick = values.quick === true;
  const only = values.only?.split(',');
  const unknown = only?.filter((m) => !(allMeasures as readonly string[]).includes(m)) ?? [];
  if (unknown.length > 0) {
    console.error(`--only takes a comma-separated list of ${allMeasures.join(', ')}; not ${unknown.map((m) => JSON.stringify(m)).join(', ')}`);
    process.exit(2);
  }
  const measures = (only ?? allMeasures) as readonly Measure[];
  const bulkBytes = (quick ? 32 : 256) * MiB;
  const [warmup, count, reps] = quick ? [50, 300, 3] : [200, 2000, 3];
  const [dialWarmup, dialCount] = quick ? [20, 100] : [100, 1000];
  const newConnectionCount = quick ? 50 : 300;
  // As in the bench's dial scenario: per-dial code is optimised only after
  // about a thousand dials, so each target's first run warms up that far.
  const firstRunDialWarmup = quick ? dialWarmup : 1000;
  const started = performance.now();
  const progress = (msg: string): void => {
    process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`);
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'relay-floor-'));
  const children: ChildProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  try {
    progress(`${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${reps} interleaved runs per target`);
    const pki = await createDevPki(path.join(dir, 'pki'));
    const dest = await startDestination();
    cleanups.push(() => dest.stop());
    const directDial = async (): Promise<Duplex> => {
      const i = dest.httpAddress.lastIndexOf(':');
      const socket = net.connect({ host: dest.httpAddress.slice(0, i), port: Number(dest.httpAddress.slice(i + 1)), noDelay: true });
      await once(socket, 'connect');
      return socket;
    };
    const roundTripTargets: FloorTarget[] = [{ name: 'direct', dial: directDial, pids: [] }];
    const dialTargets: FloorTarget[] = [{ name: 'direct', dial: directDial, pids: [] }];
    /** gRPC frontends dialled with a new connection each time; direct dials plain TCP. */
    const newConnectionTargets: DialTarget[] = [
      { name: 'direct', dialFirstByte: () => dialFirstByte(directDial), pids: [] },
    ];
    const startChain = (hop: ChainHop): Promise<{ uds: string; pids: number[] }> =>
      startRelayChain({ hop, destination: dest.httpAddress, certPath: pki.server.certPath, keyPath: pki.server.keyPath, caPath: pki.ca.certPath, uds: path.join(dir, `relay1-${hop}.sock`), children });
    if (measures.includes('round-trip') || measures.includes('bulk')) {
      for (const hop of ['tls', 'h2'] as const) {
        const { uds, pids } = await startChain(hop);
        roundTripTargets.push({
          name: `chain-${hop}`,
          dial: async () => {
            const socket = net.connect(uds);
            await once(socket, 'connect');
            return socket;
          },
          pids,
        });
      }
    }
    if (measures.includes('dial')) {
      const chainName = { 'tcp-connect': 'chain-tcp', 'tls-mux-connect': 'chain-tls-mux', 'h2-mux-connect': 'chain-h2-mux', 'h2-connect': 'chain-h2' } as const;
      for (const hop of ['tcp-connect', 'tls-mux-connect', 'h2-mux-connect', 'h2-connect'] as const) {
        const { uds, pids } = await startChain(hop);
        const chainTunnel = createTunnel({ mode: 'http-connect', transport: { unix: uds } });
        cleanups.push(() => chainTunnel.close());
        dialTargets.push({ name: chainName[hop], dial: () => chainTunnel.dial('tcp', dest.httpAddress), pids });
      }
    }
    // As `npm run bench -- --compiled`: a fresh tsc build, so dist/ can never be stale.
    const code = compiledLayout(path.join(dir, 'build'));
    const clusterOptions = { dir, pki: { caCertPath: pki.ca.certPath, serverCertPath: pki.server.certPath, serverKeyPath: pki.server.keyPath }, code };
    /** A target dialing through a tunnel frontend on `uds`, for round trips, dials and downloads alike. */
    const addTunnelTarget = (name: string, mode: 'http-connect' | 'grpc', uds: string, pids: number[]): void => {
      const tunnel = createTunnel({ mode, transport: { unix: uds } });
      cleanups.push(() => tunnel.close());
      const target: FloorTarget = { name, dial: () => tunnel.dial('tcp', dest.httpAddress), pids };
      roundTripTargets.push(target);
      dialTargets.push(target);
    };
    const cluster = await startCluster({ ...clusterOptions, mode: 'http-connect' });
    cleanups.push(() => cluster.stop());
    addTunnelTarget('ours', 'http-connect', cluster.udsPath, [cluster.server.pid, cluster.agent.pid]);
    progress(`ours: konnectivity-server and -agent in HTTP-CONNECT mode, ${code.description}`);
    const goFloor = await startGoRelayFloor({ dir, certPath: pki.server.certPath, keyPath: pki.server.keyPath, caPath: pki.ca.certPath, children, readBytes: goReadBytes });
    if ('skipped' in goFloor) {
      progress(`go-grpc: skipped, ${goFloor.skipped}`);
    } else {
      addTunnelTarget('go-grpc', 'http-connect', goFloor.uds, goFloor.pids);
      progress(`go-grpc: bench/diagnostics/go-relay-floor/, ${goFloor.goVersion}, grpc-go from GOPATH, ${goReadBytes}-byte reads`);
    }
    // gRPC mode: the client speaks ProxyService over h2c on the unix socket, one stream per dial, as kube-apiserver does.
    const grpcCluster = await startCluster({ ...clusterOptions, mode: 'grpc' });
    cleanups.push(() => grpcCluster.stop());
    addTunnelTarget('grpc:ours', 'grpc', grpcCluster.udsPath, [grpcCluster.server.pid, grpcCluster.agent.pid]);
    newConnectionTargets.push({ name: 'grpc:ours', dialFirstByte: () => newGrpcConnectionFirstByte(grpcCluster.udsPath, dest.httpAddress), pids: [grpcCluster.server.pid, grpcCluster.agent.pid] });
    if (!('skipped' in goFloor)) {
      addTunnelTarget('grpc:go-grpc', 'grpc', goFloor.grpcUds, goFloor.pids);
      newConnectionTargets.push({ name: 'grpc:go-grpc', dialFirstByte: () => newGrpcConnectionFirstByte(goFloor.grpcUds, dest.httpAddress), pids: goFloor.pids });
    }
    progress(`grpc:ours${'skipped' in goFloor ? '' : ', grpc:go-grpc'}: as above in gRPC mode, the client speaking ProxyService over the unix socket`);

    if (measures.includes('round-trip')) {
      progress(`round trips: ${count} per run after ${warmup} warm-up`);
      const p50: Record<string, number[]> = {};
      const p99: Record<string, number[]> = {};
      for (let rep = 0; rep < reps; rep++) {
        for (const target of roundTripTargets) {
          const conn = new MiniHttpConnection(await target.dial());
          try {
            for (let i = 0; i < warmup; i++) await conn.get('/');
            const samples: number[] = [];
            for (let i = 0; i < count; i++) {
              const t0 = performance.now();
              const res = await conn.get('/');
              samples.push(performance.now() - t0);
              if (res.status !== 200) throw new Error(`${target.name}: status ${res.status}`);
            }
            sortNumbers(samples);
            (p50[target.name] ??= []).push(percentile(samples, 50));
            (p99[target.name] ??= []).push(percentile(samples, 99));
            progress(`${target.name.padEnd(NAME_WIDTH)} run ${rep + 1}/${reps}: p50 ${percentile(samples, 50).toFixed(3)} ms, p99 ${percentile(samples, 99).toFixed(3)} ms`);
          } finally {
            conn.close();
          }
        }
      }
      const direct = median(p50['direct']!);
      const chainH2 = median(p50['chain-h2']!);
      console.log('\nround trip, medians of the runs (ms):');
      const go = goColumn(p50);
      console.log(`${'target'.padEnd(NAME_WIDTH)} p50     p99   ×direct   ÷chain-h2${go.title}`);
      for (const target of roundTripTargets) {
        const m = median(p50[target.name]!);
        console.log(`${target.name.padEnd(NAME_WIDTH)} ${m.toFixed(3)}  ${median(p99[target.name]!).toFixed(3)}  ${(m / direct).toFixed(2).padStart(6)}×  ${(m / chainH2).toFixed(2).padStart(8)}×${go.cell(target.name, m)}`);
      }
    }

    if (measures.includes('dial')) {
      progress(`dials (dial + first byte of GET /, then close): ${dialCount} per run after ${dialWarmup} warm-up (${firstRunDialWarmup} before each target's first run)`);
      const targets = dialTargets.map((t): DialTarget => ({ name: t.name, dialFirstByte: () => dialFirstByte(t.dial), pids: t.pids }));
      const runs = await measureDials(targets, { reps, count: dialCount, warmup: dialWarmup, firstRunWarmup: firstRunDialWarmup }, progress);
      const direct = median(runs.p50['direct']!);
      // Our agent link is one long-lived stream, so the multiplexed chain is its floor; chain-h2 opens a stream per dial.
      const chain = median(runs.p50['chain-h2-mux']!);
      console.log('\ndial + first byte, medians of the runs (ms; CPU µs per dial in relay 1 / relay 2, or server / agent):');
      const go = goColumn(runs.p50);
      console.log(`${'target'.padEnd(NAME_WIDTH)} p50    ×direct  ÷chain-h2-mux${go.title}   CPU per dial`);
      for (const target of targets) {
        const m = median(runs.p50[target.name]!);
        console.log(`${target.name.padEnd(NAME_WIDTH)} ${m.toFixed(3)}  ${(m / direct).toFixed(2).padStart(6)}×  ${(m / chain).toFixed(2).padStart(12)}×${go.cell(target.name, m)}   ${cpuColumn(runs, target.name)}`);
      }
    }

    if (measures.includes('new-connection-dial')) {
      progress(`new-connection dials (a new gRPC connection, one Proxy stream, first byte of GET /, then close): ${newConnectionCount} per run after ${dialWarmup} warm-up (${firstRunDialWarmup} before each target's first run)`);
      const runs = await measureDials(newConnectionTargets, { reps, count: newConnectionCount, warmup: dialWarmup, firstRunWarmup: firstRunDialWarmup }, progress);
      const direct = median(runs.p50['direct']!);
      console.log('\nnew gRPC connection per dial + first byte, medians of the runs (ms; CPU µs per dial in server / agent):');
      const go = goColumn(runs.p50);
      console.log(`${'target'.padEnd(NAME_WIDTH)} p50    ×direct${go.title}   CPU per dial`);
      for (const target of newConnectionTargets) {
        const m = median(runs.p50[target.name]!);
        console.log(`${target.name.padEnd(NAME_WIDTH)} ${m.toFixed(3)}  ${(m / direct).toFixed(2).padStart(6)}×${go.cell(target.name, m)}   ${cpuColumn(runs, target.name)}`);
      }
    }

    if (measures.includes('bulk')) {
      progress(`bulk: GET /bytes/${bulkBytes} (${bulkBytes / MiB} MiB) on a fresh connection per run, after a 16 MiB warm-up`);
      const rate: Record<string, number[]> = {};
      const cpuPerGiB: Record<string, number[][]> = {};
      for (let rep = 0; rep < reps; rep++) {
        for (const target of roundTripTargets) {
          if (rep === 0) {
            const warm = new MiniHttpConnection(await target.dial());
            await warm.get(`/bytes/${16 * MiB}`).finally(() => warm.close());
          }
          const conn = new MiniHttpConnection(await target.dial());
          try {
            const before = target.pids.map(cpuMs);
            const t0 = performance.now();
            const res = await conn.get(`/bytes/${bulkBytes}`);
            const seconds = (performance.now() - t0) / 1000;
            if (res.status !== 200 || res.bodyBytes !== bulkBytes) throw new Error(`${target.name}: expected ${bulkBytes} bytes with 200, got ${res.bodyBytes} with ${res.status}`);
            const perGiB = target.pids.map((pid, i) => ((cpuMs(pid) - before[i]!) / 1000) * ((1024 * MiB) / bulkBytes));
            (rate[target.name] ??= []).push(bulkBytes / 1e6 / seconds);
            (cpuPerGiB[target.name] ??= target.pids.map(() => [])).forEach((runs, i) => runs.push(perGiB[i]!));
            const cpuText = perGiB.length ? `; CPU s per GiB ${perGiB.map((c) => c.toFixed(2)).join(' + ')}` : '';
            progress(`${target.name.padEnd(NAME_WIDTH)} run ${rep + 1}/${reps}: ${(bulkBytes / 1e6 / seconds).toFixed(0)} MB/s${cpuText}`);
          } finally {
            conn.close();
          }
        }
      }
      const direct = median(rate['direct']!);
      const chainH2 = median(rate['chain-h2']!);
      console.log(`\nbulk download of ${bulkBytes / MiB} MiB, medians of the runs (MB/s; CPU s per GiB in relay 1 / relay 2, or server / agent):`);
      const go = goColumn(rate);
      console.log(`${'target'.padEnd(NAME_WIDTH)}  MB/s   ÷direct  ÷chain-h2${go.title}   CPU s per GiB`);
      for (const target of roundTripTargets) {
        const m = median(rate[target.name]!);
        const cpu = (cpuPerGiB[target.name] ?? []).map((runs) => median(runs).toFixed(2)).join(' / ');
        console.log(`${target.name.padEnd(NAME_WIDTH)} ${m.toFixed(0).padStart(6)}  ${(m / direct).toFixed(2).padStart(7)}×  ${(m / chainH2).toFixed(2).padStart(8)}×${go.cell(target.name, m)}   ${cpu || '—'}`);
      }
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    for (const child of children) child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = process.argv[2];
if (role === '--relay1' || role === '--relay2') {
  applyHeapTuning();
  // A relay stopped with SIGTERM exits normally, so `node --cpu-prof` can write its profile.
  process.once('SIGTERM', () => process.exit(0));
}
if (role === '--relay2') runRelay2(process.argv[3] as ChainHop, process.argv[4]!, process.argv[5]!, process.argv[6]!);
else if (role === '--relay1') runRelay1(process.argv[3] as ChainHop, Number(process.argv[4]), process.argv[5]!, process.argv[6]!);
else await main();
