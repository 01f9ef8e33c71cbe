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
 * Targets, interleaved, three runs each, medians: direct (client →
 * destination), chain-tls, chain-h2, and ours (konnectivity-server and
 * konnectivity-agent in HTTP-CONNECT mode, started as the bench starts
 * them). The destination and the client are the bench's own
 * (bench/destination.ts, MiniHttpConnection). Nothing here asserts a speed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createTunnel } from '../../src/client/create-tunnel.ts';
import { createDevPki } from '../../src/dev/pki.ts';
import { compiledLayout, startCluster } from '../lib/cluster.ts';
import { startDestination } from '../lib/destination.ts';
import { MiniHttpConnection } from '../lib/mini-http.ts';
import { median, percentile, sortNumbers } from '../lib/stats.ts';

type ChainHop = 'tls' | 'h2';

/** Relay 2: TLS (or HTTP/2 over TLS) in, TCP to the destination out. Prints its port. */
function runRelay2(hop: ChainHop, dest: string, certPath: string, keyPath: string): void {
  const [host, port] = [dest.slice(0, dest.lastIndexOf(':')), Number(dest.slice(dest.lastIndexOf(':') + 1))];
  const options = { cert: readFileSync(certPath), key: readFileSync(keyPath) };
  const bridge = (from: Duplex, to: (chunk: Buffer) => void): void => {
    const out = net.connect({ host, port, noDelay: true });
    out.on('data', to);
    from.on('data', (chunk: Buffer) => out.write(chunk));
    from.on('close', () => out.destroy());
  };
  if (hop === 'tls') {
    const server = tls.createServer(options, (socket) => {
      socket.setNoDelay(true);
      bridge(socket, (c) => socket.write(c));
    });
    server.listen(0, '127.0.0.1', () => console.log((server.address() as net.AddressInfo).port));
  } else {
    const server = http2.createSecureServer(options);
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      bridge(stream, (c) => stream.write(c));
    });
    server.listen(0, '127.0.0.1', () => console.log((server.address() as net.AddressInfo).port));
  }
}

/** Relay 1: unix socket in, TLS (or one HTTP/2 stream per connection on one session) to relay 2 out. */
function runRelay1(hop: ChainHop, relay2Port: number, uds: string, caPath: string): void {
  const ca = readFileSync(caPath);
  const session = hop === 'h2' ? http2.connect(`https://127.0.0.1:${relay2Port}`, { ca }) : null;
  const server = net.createServer((client) => {
    let out: Duplex;
    if (session) {
      out = session.request({ ':method': 'POST', ':path': '/relay' }, { endStream: false });
    } else {
      const socket = tls.connect({ host: '127.0.0.1', port: relay2Port, ca });
      socket.setNoDelay(true);
      out = socket;
    }
    out.on('data', (chunk: Buffer) => client.write(chunk));
    client.on('data', (chunk: Buffer) => out.write(chunk));
    client.on('close', () => out.destroy());
    out.on('error', () => client.destroy());
  });
  server.listen(uds, () => console.log('ready'));
}

async function startChild(args: string[], children: ChildProcess[]): Promise<string> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  return line.toString().trim();
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const quick = values.quick === true;
  const [warmup, count, reps] = quick ? [50, 300, 3] : [200, 2000, 3];
  const started = performance.now();
  const progress = (msg: string): void => {
    process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`);
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'relay-floor-'));
  const children: ChildProcess[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  try {
    progress(`${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}; ${count} round trips per run after ${warmup} warm-up, ${reps} runs`);
    const pki = await createDevPki(path.join(dir, 'pki'));
    const dest = await startDestination();
    cleanups.push(() => dest.stop());
    const targets: Array<{ name: string; dial(): Promise<Duplex> }> = [
      {
        name: 'direct',
        dial: async () => {
          const i = dest.httpAddress.lastIndexOf(':');
          const socket = net.connect({ host: dest.httpAddress.slice(0, i), port: Number(dest.httpAddress.slice(i + 1)), noDelay: true });
          await once(socket, 'connect');
          return socket;
        },
      },
    ];
    for (const hop of ['tls', 'h2'] as const) {
      const port = await startChild(['--relay2', hop, dest.httpAddress, pki.server.certPath, pki.server.keyPath], children);
      const uds = path.join(dir, `relay1-${hop}.sock`);
      await startChild(['--relay1', hop, port, uds, pki.ca.certPath], children);
      targets.push({
        name: `chain-${hop}`,
        dial: async () => {
          const socket = net.connect(uds);
          await once(socket, 'connect');
          return socket;
        },
      });
    }
    // As `npm run bench -- --compiled`: a fresh tsc build, so dist/ can never be stale.
    const code = compiledLayout(path.join(dir, 'build'));
    const cluster = await startCluster({
      mode: 'http-connect',
      dir,
      pki: { caCertPath: pki.ca.certPath, serverCertPath: pki.server.certPath, serverKeyPath: pki.server.keyPath },
      code,
    });
    cleanups.push(() => cluster.stop());
    const tunnel = createTunnel({ mode: 'http-connect', transport: { unix: cluster.udsPath } });
    cleanups.push(() => tunnel.close());
    targets.push({ name: 'ours', dial: () => tunnel.dial('tcp', dest.httpAddress) });
    progress(`ours: konnectivity-server and -agent in HTTP-CONNECT mode, ${code.description}`);

    const p50: Record<string, number[]> = {};
    const p99: Record<string, number[]> = {};
    for (let rep = 0; rep < reps; rep++) {
      for (const target of targets) {
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
          progress(`${target.name.padEnd(10)} run ${rep + 1}/${reps}: p50 ${percentile(samples, 50).toFixed(3)} ms, p99 ${percentile(samples, 99).toFixed(3)} ms`);
        } finally {
          conn.close();
        }
      }
    }
    const direct = median(p50['direct']!);
    const chainH2 = median(p50['chain-h2']!);
    console.log('\nround trip, medians of the runs (ms):');
    console.log('target      p50     p99   ×direct   ÷chain-h2');
    for (const target of targets) {
      const m = median(p50[target.name]!);
      console.log(`${target.name.padEnd(10)} ${m.toFixed(3)}  ${median(p99[target.name]!).toFixed(3)}  ${(m / direct).toFixed(2).padStart(6)}×  ${(m / chainH2).toFixed(2).padStart(8)}×`);
    }
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    for (const child of children) child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

const role = process.argv[2];
if (role === '--relay2') runRelay2(process.argv[3] as ChainHop, process.argv[4]!, process.argv[5]!, process.argv[6]!);
else if (role === '--relay1') runRelay1(process.argv[3] as ChainHop, Number(process.argv[4]), process.argv[5]!, process.argv[6]!);
else await main();
