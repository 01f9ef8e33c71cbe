/**
 * "Memory stays bounded" under bad input, measured on the processes
 * themselves: the konnectivity-server and konnectivity-agent binaries, a
 * long-lived good tunnel through them, and rounds of hostile or broken
 * frontend traffic (garbage HTTP, unreachable destinations, headers cut
 * off, malformed gRPC messages, packets for connections that do not exist,
 * dials abandoned half way, connections dropped without a close), each
 * followed by normal connections that dial, echo and close properly.
 *
 * After every round both processes' live heap is read: a heap snapshot on
 * the admin port (--enable-profiling) makes V8 collect everything first,
 * then /metrics gives nodejs_heap_size_used_bytes. The first rounds warm up
 * (JIT code, metric series for each error reason); from then on the live
 * heap must not grow with the number of connections. A leak of one
 * kilobyte per connection of any kind would add several MiB over the measured
 * rounds (checked for the normal close path: 1 KB kept per CLOSE_RSP in the
 * server made the live heap grow 5.9 MiB and the test fail). The good tunnel
 * echoes a checked payload every round.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { mapLimit } from '../bench/lib/stats.ts';
import { createTunnel } from '../src/client/create-tunnel.ts';
import type { TunnelMode } from '../src/client/tunnel-options.ts';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { PacketType, packets } from '../src/protocol/packet.ts';
import { parsePrometheusText } from './helpers/metrics-scrape.ts';
import { KiB, MiB, randomPayload, readExactly, sha256, writeAll } from './helpers/payload.ts';
import { startDaemonPair } from './helpers/daemon-pair.ts';
import type { BinProcess } from './helpers/processes.ts';
import { RawCall } from './helpers/raw-grpc.ts';
import { TcpTarget, closedPort, echo } from './helpers/targets.ts';

/** Bad connections of each kind per round. */
const PER_KIND = 150;
/** Normal, properly closed connections per round: enough that a leak of 1 KB each outgrows MAX_HEAP_GROWTH_BYTES over the measured rounds. */
const NORMAL_PER_ROUND = 8 * PER_KIND;
const WARM_UP_ROUNDS = 2;
const MEASURED_ROUNDS = Number(process.env['KTS_MEMORY_ROUNDS'] ?? 4);
/** Allowed growth of the live heap from the end of the warm-up to the last round. */
const MAX_HEAP_GROWTH_BYTES = 2 * MiB;
/** Bad connections in flight at once. */
const CONCURRENCY = 16;

function get(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
        // A heap snapshot is tens of MB: count it, keep only small bodies.
        let body = '';
        const keep = urlPath === '/metrics';
        res.on('data', (c: Buffer) => {
          if (keep) body += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** The value of an unlabelled metric. */
async function metric(port: number, name: string): Promise<number> {
  const { body } = await get(port, '/metrics');
  const sample = parsePrometheusText(body).get(name)?.samples[0];
  if (!sample) throw new Error(`no sample ${name} on port ${port}`);
  return sample.value;
}

/** Live heap after a full collection (the snapshot collects first). */
async function liveHeapBytes(adminPort: number, metricsPort: number): Promise<number> {
  const snap = await get(adminPort, '/debug/pprof/heap');
  assert.equal(snap.status, 200, 'heap snapshot on the admin port');
  return metric(metricsPort, 'nodejs_heap_size_used_bytes');
}

/** Runs `task` `count` times, at most CONCURRENCY at a time. */
async function inParallel(count: number, task: () => Promise<void>): Promise<void> {
  await mapLimit(Array.from({ length: count }), CONCURRENCY, task);
}

/** Writes `bytes` on a fresh unix-socket connection and waits until the server closes it. */
function rawExchange(uds: string, bytes: string, { closeAfterWrite = false } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(uds);
    let answer = '';
    socket.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err)));
    socket.on('close', () => resolve(answer));
    socket.on('connect', () => {
      socket.write(bytes);
      if (closeAfterWrite) socket.destroy();
    });
  });
}

interface Processes {
  server: BinProcess;
  agent: BinProcess;
  serverAdmin: number;
  agentAdmin: number;
  /** The agent serves /metrics on its health port (its admin port redirects there, as upstream's). */
  agentMetrics: number;
  uds: string;
}

async function startProcesses(t: TestContext, mode: TunnelMode): Promise<Processes> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-mem-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const uds = path.join(dir, 'konnectivity-server.socket');
  const pair = await startDaemonPair(t, {
    serverFlags: [`--mode=${mode}`, `--uds-name=${uds}`, '--server-port=0', '--enable-profiling', '--v=0'],
    agentFlags: ['--enable-profiling', '--v=0'],
  });
  return { server: pair.server, agent: pair.agent, serverAdmin: pair.serverAdminPort, agentAdmin: pair.agentAdminPort, agentMetrics: pair.agentHealthPort, uds };
}

/** One round of bad frontend traffic for the mode; every kind PER_KIND times. */
async function badRound(mode: TunnelMode, uds: string, echoAddress: string, refusedAddress: string): Promise<void> {
  if (mode === 'http-connect') {
    // Not HTTP at all: 400 and close.
    await inParallel(PER_KIND, async () => {
      assert.match(await rawExchange(uds, 'GARBAGE that is not a request line\r\n\r\n'), /^HTTP\/1\.[01] 400 /);
    });
    // A destination that refuses: the agent's dial error comes back, then close.
    await inParallel(PER_KIND, async () => {
      assert.match(await rawExchange(uds, `CONNECT ${refusedAddress} HTTP/1.1\r\nHost: ${refusedAddress}\r\n\r\n`), /^HTTP\/1\.1 [45]\d\d /);
    });
    // Headers cut off by the client.
    await inParallel(PER_KIND, async () => {
      await rawExchange(uds, `CONNECT ${echoAddress} HTTP/1.1\r\nHo`, { closeAfterWrite: true });
    });
    // A dial the client abandons before the answer.
    await inParallel(PER_KIND, async () => {
      await rawExchange(uds, `CONNECT ${echoAddress} HTTP/1.1\r\nHost: ${echoAddress}\r\n\r\n`, { closeAfterWrite: true });
    });
    // Established, one echo, then dropped without a close.
    await inParallel(PER_KIND, async () => {
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(uds);
        let seen = '';
        socket.on('error', reject);
        socket.on('connect', () => socket.write(`CONNECT ${echoAddress} HTTP/1.1\r\nHost: ${echoAddress}\r\n\r\nping`));
        socket.on('data', (c: Buffer) => {
          seen += c.toString('latin1');
          if (seen.endsWith('ping')) {
            socket.destroy();
            resolve();
          }
        });
      });
    });
    return;
  }
  const channel = await GrpcChannel.connect({ transport: 'unix', path: uds });
  try {
    const call = (): RawCall => new RawCall(channel, channel.openStream('/ProxyService/Proxy'));
    // Bytes that are no Packet: the call fails with Internal.
    await inParallel(PER_KIND, async () => {
      const c = call();
      c.sendMessage(Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x07, 0x01]));
      const status = await c.status;
      assert.notEqual(status.code, 0, 'a malformed message must fail its call');
    });
    // Packets for connections that do not exist, then the client ends the call.
    await inParallel(PER_KIND, async () => {
      const c = call();
      c.send(packets.data(987_654_321n, Buffer.from('orphan')));
      c.send(packets.closeRequest(123_456_789n));
      c.call.closeSend();
      await c.status;
    });
    // A dial to a refused port: DIAL_RSP with the agent's error.
    await inParallel(PER_KIND, async () => {
      const c = call();
      c.send(packets.dialRequest(refusedAddress, BigInt(1 + Math.floor(Math.random() * 1e9))));
      const rsp = await c.packets.next();
      assert.ok(rsp.type === PacketType.DIAL_RSP && rsp.dialResponse.error !== '', 'a refused dial is answered with the dial error');
      c.call.closeSend();
      await c.status;
    });
    // A dial abandoned before its answer: the stream is reset.
    await inParallel(PER_KIND, async () => {
      const c = call();
      c.send(packets.dialRequest(echoAddress, BigInt(1 + Math.floor(Math.random() * 1e9))));
      c.call.cancel();
      await c.status;
    });
  } finally {
    channel.destroy();
  }
  // Established through the client library, one echo, then the stream is dropped without CLOSE_REQ.
  const tunnel = createTunnel({ mode: 'grpc', transport: { unix: uds } });
  try {
    await inParallel(PER_KIND, async () => {
      const socket = await tunnel.dial('tcp', echoAddress);
      socket.write('ping');
      await readExactly(socket, 4);
      socket.destroy();
    });
  } finally {
    await tunnel.close();
  }
}

/**
 * The everyday path, NORMAL_PER_ROUND times: dial through the client library, one
 * echo, then a proper close (CLOSE_REQ / CLOSE_RSP in gRPC mode, FIN on the
 * CONNECT socket), as kube-apiserver's short requests do.
 */
async function normalRound(mode: TunnelMode, uds: string, echoAddress: string): Promise<void> {
  const tunnel = createTunnel({ mode, transport: { unix: uds } });
  try {
    await inParallel(NORMAL_PER_ROUND, async () => {
      const socket = await tunnel.dial('tcp', echoAddress);
      const closed = new Promise<void>((resolve, reject) => {
        socket.on('close', () => resolve());
        socket.on('error', reject);
      });
      socket.write('ping');
      await readExactly(socket, 4);
      socket.end();
      socket.resume();
      await closed;
    });
  } finally {
    await tunnel.close();
  }
}

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: the live heap of server and agent does not grow with rounds of bad and of normal, properly closed frontend traffic; a good tunnel keeps its bytes`, async (t) => {
    const procs = await startProcesses(t, mode);
    const dest = await TcpTarget.start(echo);
    t.after(() => dest.close());
    const refusedAddress = `127.0.0.1:${await closedPort()}`;

    const good = createTunnel({ mode, transport: { unix: procs.uds } });
    t.after(() => good.close());
    const goodSocket = await good.dial('tcp', dest.address);
    // A failure shows in goodEcho (readExactly rejects). At teardown the
    // processes are killed before this connection is closed, which resets it.
    goodSocket.on('error', () => {});
    const goodEcho = async (): Promise<void> => {
      const data = randomPayload(256 * KiB);
      const back = readExactly(goodSocket, data.length);
      await writeAll(goodSocket, data, 64 * KiB);
      assert.equal(sha256(await back), sha256(data), 'the good tunnel returned different bytes');
    };

    const heaps: Array<{ server: number; agent: number }> = [];
    for (let round = 0; round < WARM_UP_ROUNDS + MEASURED_ROUNDS; round++) {
      await badRound(mode, procs.uds, dest.address, refusedAddress);
      await normalRound(mode, procs.uds, dest.address);
      await goodEcho();
      // Everything the round opened is gone again: only the good tunnel is left.
      for (;;) {
        const [established, pending, endpoints] = await Promise.all([
          metric(procs.serverAdmin, 'konnectivity_network_proxy_server_established_connections'),
          metric(procs.serverAdmin, 'konnectivity_network_proxy_server_pending_backend_dials'),
          metric(procs.agentMetrics, 'konnectivity_network_proxy_agent_open_endpoint_connections'),
        ]);
        if (established === 1 && pending === 0 && endpoints === 1) break;
        assert.ok(procs.server.running() && procs.agent.running(), 'server and agent stay up');
        await new Promise((r) => setTimeout(r, 50));
      }
      heaps.push({ server: await liveHeapBytes(procs.serverAdmin, procs.serverAdmin), agent: await liveHeapBytes(procs.agentAdmin, procs.agentMetrics) });
    }

    const mb = (n: number): string => (n / MiB).toFixed(2);
    const report = heaps.map((h, i) => `round ${i + 1}: server ${mb(h.server)} MiB, agent ${mb(h.agent)} MiB`).join('\n');
    t.diagnostic(report);
    const base = heaps[WARM_UP_ROUNDS - 1]!;
    const last = heaps.at(-1)!;
    const perRound = PER_KIND * 5 + NORMAL_PER_ROUND;
    assert.ok(last.server - base.server < MAX_HEAP_GROWTH_BYTES, `server live heap grew ${mb(last.server - base.server)} MiB over ${MEASURED_ROUNDS * perRound} connections:\n${report}`);
    assert.ok(last.agent - base.agent < MAX_HEAP_GROWTH_BYTES, `agent live heap grew ${mb(last.agent - base.agent)} MiB over ${MEASURED_ROUNDS * perRound} connections:\n${report}`);
    assert.ok(procs.server.running() && procs.agent.running());
    await goodEcho();
    goodSocket.destroy();
  });
}
