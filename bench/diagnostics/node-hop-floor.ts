/**
 * Diagnostic: what ONE Node.js network hop costs on this machine, with no
 * konnectivity code involved: `npm run bench:hop-floor [-- --quick] [-- --json FILE]`.
 *
 * Why: a relay cannot be faster than the hops it is made of. Konnectivity's
 * tunnel in HTTP-CONNECT mode is three hops: client → server (unix socket),
 * server → agent (HTTP/2 over TLS), agent → destination (TCP); every byte is
 * read and written again by a Node process at each relay point. So the
 * latency floor of a Node relay is N of these hops, and this tool measures
 * one hop per transport so that docs can state that floor with numbers from
 * the same machine instead of guessing.
 *
 * For each transport (tcp with setNoDelay; tls 1.3 with a dev CA; h2c and
 * h2-tls: node:http2 with one long-lived bidi stream) a child process (this
 * file with --serve) runs an echo server, and this process is the client:
 *   - round trip: a 100-byte message, wait for the full echo, repeat
 *     sequentially (warm-up, then measured); p50/p99 and CPU µs per round
 *     trip for client (process.cpuUsage around the loop) and server (the
 *     child prints its cpuUsage on SIGUSR2, sent before and after the loop).
 *   - bulk: on the client's request the server sends N MiB in 64 KiB chunks
 *     respecting backpressure; the client reports MB/s (10^6 bytes).
 * Every run has a fresh child; runs repeat 3 times interleaved across the
 * transports and the table shows medians. Nothing here asserts any speed.
 *
 * Options: --quick (fewer round trips, 32 MiB bulk), --json FILE.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createDevPki, type DevPki } from '../../src/dev/pki.ts';
import { median, percentile, sortNumbers } from '../lib/stats.ts';

const transports = ['tcp', 'tls', 'h2c', 'h2-tls'] as const;
type Transport = (typeof transports)[number];
type Mode = 'rtt' | 'bulk';
const MiB = 1024 * 1024;
const MESSAGE_BYTES = 100;
const CHUNK_BYTES = 64 * 1024;
const H2_STREAM_WINDOW = 4 * MiB;
const H2_SESSION_WINDOW = 16 * MiB;
const RUNS = 3;
const REQUEST = Buffer.from('go\n');
const script = fileURLToPath(import.meta.url);

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    serve: { type: 'string' },
    mode: { type: 'string', default: 'rtt' },
    bytes: { type: 'string', default: '0' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});

const isTransport = (s: string): s is Transport => (transports as readonly string[]).includes(s);
const usesTls = (t: Transport): boolean => t === 'tls' || t === 'h2-tls';
const cpuMicros = (u: NodeJS.CpuUsage): number => u.user + u.system;
const cpuLine = (): string => `${JSON.stringify({ cpu: process.cpuUsage() })}\n`;

// ---- child: the echo / bulk server ----

async function sendBulk(out: Duplex, bytes: number, chunk: Buffer): Promise<void> {
  for (let sent = 0; sent < bytes; sent += CHUNK_BYTES) {
    const n = Math.min(CHUNK_BYTES, bytes - sent);
    if (!out.write(n === CHUNK_BYTES ? chunk : chunk.subarray(0, n))) await once(out, 'drain');
  }
  out.end();
}

function serve(transport: Transport): void {
  const bulk = args.mode === 'bulk';
  const bytes = Number(args.bytes);
  const chunk = Buffer.alloc(CHUNK_BYTES, 0x62);
  const handle = (s: Duplex): void => {
    s.on('error', () => {});
    if (bulk) s.once('data', () => void sendBulk(s, bytes, chunk).catch(() => s.destroy()));
    else s.on('data', (c: Buffer) => s.write(c));
  };
  const onStream = (stream: http2.ServerHttp2Stream): void => {
    stream.respond({ ':status': 200 });
    handle(stream);
  };
  const secure = usesTls(transport) ? { cert: readFileSync(args.cert ?? ''), key: readFileSync(args.key ?? ''), minVersion: 'TLSv1.3' as const } : {};
  const h2 = { settings: { initialWindowSize: H2_STREAM_WINDOW } };
  const server: net.Server =
    transport === 'tcp' ? net.createServer(handle)
    : transport === 'tls' ? tls.createServer(secure, handle)
    : transport === 'h2c' ? http2.createServer(h2).on('stream', onStream)
    : http2.createSecureServer({ ...h2, ...secure }).on('stream', onStream);
  server.on('connection', (s: net.Socket) => {
    s.setNoDelay(true);
    s.on('error', () => {});
  });
  process.on('SIGUSR2', () => process.stdout.write(cpuLine()));
  process.on('SIGTERM', () => {
    process.stdout.write(cpuLine());
    process.exit(0);
  });
  process.stdin.on('end', () => process.exit(0)).resume(); // the parent is gone
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port })}\n`));
}

// ---- parent: children, connections, measurements ----

interface ServerChild {
  port: number;
  cpu(): Promise<number>;
  /** SIGTERM; resolves with the child's total CPU µs when it reported it. */
  stop(): Promise<number | undefined>;
}

const liveChildren = new Set<ReturnType<typeof spawn>>();
process.on('exit', () => liveChildren.forEach((c) => c.kill('SIGKILL')));

async function startServer(transport: Transport, mode: Mode, bytes: number, pki: DevPki): Promise<ServerChild> {
  const argv = [...process.execArgv, script, '--serve', transport, '--mode', mode, '--bytes', String(bytes), '--cert', pki.server.certPath, '--key', pki.server.keyPath];
  const child = spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'inherit'] });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  // Lines come only when asked for: the port, then one cpuUsage per SIGUSR2 / SIGTERM.
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<string> => {
    const next = await lines.next();
    if (next.done) throw new Error(`${transport} server exited (${child.exitCode ?? child.signalCode})`);
    return next.value;
  };
  const readCpu = (line: string): number => cpuMicros((JSON.parse(line) as { cpu: NodeJS.CpuUsage }).cpu);
  const stop = async (): Promise<number | undefined> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    const last = await nextLine().catch(() => undefined);
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
    clearTimeout(timer);
    return last?.startsWith('{"cpu"') ? readCpu(last) : undefined;
  };
  try {
    const port = (JSON.parse(await nextLine()) as { port: number }).port;
    const cpu = async (): Promise<number> => {
      child.kill('SIGUSR2');
      return readCpu(await nextLine());
    };
    return { port, cpu, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

interface Client {
  /** A connection (tcp, tls) or a new stream (h2), with `first` written to it. */
  request(first: Buffer): Duplex;
  close(): void;
}

async function connect(transport: Transport, port: number, ca: string): Promise<Client> {
  const socket = usesTls(transport)
    ? tls.connect({ host: '127.0.0.1', port, ca, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ALPNProtocols: transport === 'h2-tls' ? ['h2'] : undefined })
    : net.connect({ host: '127.0.0.1', port });
  socket.setNoDelay(true);
  try {
    await once(socket, usesTls(transport) ? 'secureConnect' : 'connect');
    if (transport === 'tcp' || transport === 'tls') {
      const request = (first: Buffer): Duplex => {
        socket.write(first);
        return socket;
      };
      return { request, close: () => socket.destroy() };
    }
    const session = http2.connect(`${transport === 'h2c' ? 'http' : 'https'}://127.0.0.1:${port}`, {
      settings: { initialWindowSize: H2_STREAM_WINDOW },
      createConnection: () => socket,
    });
    await once(session, 'connect');
    session.on('error', () => {}); // streams report it
    session.setLocalWindowSize(H2_SESSION_WINDOW);
    return {
      request: (first) => {
        const stream = session.request({ ':method': 'POST', ':path': '/' }, { endStream: false });
        stream.write(first);
        return stream;
      },
      close: () => {
        session.destroy();
        socket.destroy();
      },
    };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

interface RttResult { p50Ms: number; p99Ms: number; clientCpuUs: number; serverCpuUs: number; serverTotalCpuUs?: number }
interface BulkResult { mbPerSec: number; bytes: number; seconds: number; serverTotalCpuUs?: number }

/** Starts a fresh server child, connects, runs `body`, and always cleans up. */
async function withServer<R extends object>(
  transport: Transport, mode: Mode, bytes: number, pki: DevPki, body: (client: Client, server: ServerChild) => Promise<R>,
): Promise<R & { serverTotalCpuUs?: number }> {
  const server = await startServer(transport, mode, bytes, pki);
  let client: Client | undefined;
  let result: R;
  let serverTotalCpuUs: number | undefined;
  try {
    client = await connect(transport, server.port, pki.ca.cert);
    result = await body(client, server);
  } finally {
    client?.close();
    serverTotalCpuUs = await server.stop();
  }
  return { ...result, serverTotalCpuUs };
}

function rttRun(transport: Transport, pki: DevPki, warmUp: number, count: number): Promise<RttResult> {
  return withServer(transport, 'rtt', 0, pki, async (client, server) => {
    const message = Buffer.alloc(MESSAGE_BYTES, 0x61);
    let missing = 0;
    let waiter: ((err?: Error) => void) | undefined;
    const settle = (err?: Error): void => {
      const w = waiter;
      waiter = undefined;
      w?.(err);
    };
    const stream = client.request(message);
    stream.on('data', (c: Buffer) => { if ((missing -= c.length) <= 0) settle(); });
    stream.on('error', settle);
    stream.on('close', () => settle(new Error(`${transport} connection closed during a round trip`)));
    const roundTrip = (): Promise<void> => new Promise<void>((resolve, reject) => {
      if (stream.destroyed) return reject(new Error(`${transport} connection closed`));
      waiter = (err) => (err ? reject(err) : resolve());
      missing += MESSAGE_BYTES;
      stream.write(message);
    });
    missing = MESSAGE_BYTES; // the echo of the request message
    for (let i = 0; i < warmUp; i++) await roundTrip();
    const serverBefore = await server.cpu();
    const clientBefore = process.cpuUsage();
    const samples = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const t0 = performance.now();
      await roundTrip();
      samples[i] = performance.now() - t0;
    }
    const clientCpu = cpuMicros(process.cpuUsage(clientBefore));
    const serverCpu = (await server.cpu()) - serverBefore;
    const sorted = sortNumbers(samples);
    return { p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), clientCpuUs: clientCpu / count, serverCpuUs: serverCpu / count };
  });
}

function bulkRun(transport: Transport, pki: DevPki, bytes: number): Promise<BulkResult> {
  return withServer(transport, 'bulk', bytes, pki, async (client) => {
    const t0 = performance.now();
    const stream = client.request(REQUEST);
    let received = 0;
    stream.on('data', (c: Buffer) => (received += c.length));
    await once(stream, 'end');
    const seconds = (performance.now() - t0) / 1000;
    if (received !== bytes) throw new Error(`${transport} bulk: received ${received} of ${bytes} bytes`);
    return { mbPerSec: received / 1e6 / seconds, bytes: received, seconds };
  });
}

const perTransport = <T>(): Record<Transport, T[]> => ({ tcp: [], tls: [], h2c: [], 'h2-tls': [] });

async function main(): Promise<void> {
  const started = performance.now();
  const progress = (msg: string): void => {
    process.stderr.write(`[${String(Math.round((performance.now() - started) / 1000)).padStart(3)} s] ${msg}\n`);
  };
  const [warmUp, count, bulkBytes] = args.quick ? [200, 500, 32 * MiB] : [500, 3000, 256 * MiB];
  const cpus = os.cpus();
  const machine = { cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', node: process.version, platform: `${os.platform()} ${os.release()}`, arch: os.arch() };
  console.log(`node-hop-floor: ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, ${machine.platform} ${machine.arch}`);
  console.log(`round trip: ${MESSAGE_BYTES} B, ${warmUp} warm-up + ${count} measured; bulk: ${bulkBytes / MiB} MiB in ${CHUNK_BYTES / 1024} KiB chunks; ${RUNS} runs each, interleaved`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'node-hop-floor-'));
  try {
    const pki = await createDevPki(dir);
    const rtt = perTransport<RttResult>();
    const bulk = perTransport<BulkResult>();
    for (let run = 1; run <= RUNS; run++) {
      for (const t of transports) {
        const r = await rttRun(t, pki, warmUp, count);
        progress(`${t} rtt run ${run}/${RUNS}: p50 ${r.p50Ms.toFixed(3)} ms, p99 ${r.p99Ms.toFixed(3)} ms`);
        rtt[t].push(r);
      }
    }
    for (let run = 1; run <= RUNS; run++) {
      for (const t of transports) {
        const r = await bulkRun(t, pki, bulkBytes);
        progress(`${t} bulk run ${run}/${RUNS}: ${r.mbPerSec.toFixed(0)} MB/s`);
        bulk[t].push(r);
      }
    }
    const rows = transports.map((t) => ({
      transport: t,
      p50Ms: median(rtt[t].map((r) => r.p50Ms)),
      p99Ms: median(rtt[t].map((r) => r.p99Ms)),
      clientCpuUs: median(rtt[t].map((r) => r.clientCpuUs)),
      serverCpuUs: median(rtt[t].map((r) => r.serverCpuUs)),
      bulkMBps: median(bulk[t].map((r) => r.mbPerSec)),
    }));
    const tcp = rows[0]!;
    const header = ['transport', 'rtt p50 ms', 'p50 ÷ tcp', 'rtt p99 ms', 'client µs/rt', 'server µs/rt', 'bulk MB/s', 'bulk ÷ tcp'];
    const table = [header, ...rows.map((r) => [
      r.transport, r.p50Ms.toFixed(3), `${(r.p50Ms / tcp.p50Ms).toFixed(2)}×`, r.p99Ms.toFixed(3),
      r.clientCpuUs.toFixed(1), r.serverCpuUs.toFixed(1), r.bulkMBps.toFixed(0), `${(r.bulkMBps / tcp.bulkMBps).toFixed(2)}×`,
    ])];
    const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    console.log(`\nmedians of ${RUNS} runs (CPU: µs per round trip, user+system):`);
    for (const row of table) console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
    if (args.json) {
      const settings = { quick: args.quick, warmUp, roundTrips: count, messageBytes: MESSAGE_BYTES, bulkBytes, chunkBytes: CHUNK_BYTES, runs: RUNS };
      writeFileSync(args.json, `${JSON.stringify({ date: new Date().toISOString(), machine, settings, medians: rows, runs: { rtt, bulk } }, null, 2)}\n`);
      progress(`wrote ${args.json}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (args.serve !== undefined) {
  if (!isTransport(args.serve)) throw new Error(`--serve: unknown transport ${args.serve}`);
  serve(args.serve);
} else {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
