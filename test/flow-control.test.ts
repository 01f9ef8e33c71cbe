/**
 * The flow-control extension end to end (docs/design/flow-control.md): our
 * agent and server negotiate per-connection credit, so a frontend that stops
 * reading pauses only its own destination — nothing is closed, nothing is
 * lost, and other connections on the same agent stream keep flowing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { startLocalCluster } from '../src/dev/local-cluster.ts';
import type { TunnelMode } from '../src/client/tunnel-options.ts';
import { DEFAULT_FLOW_WINDOW_BYTES, DEFAULT_SERVER_FLOW_WINDOW_BYTES, serverFlowWindowFor } from '../src/protocol/flow-control.ts';

/** A destination that sends `bytes` deterministic bytes to each connection, then closes. */
async function startSource(bytes: number): Promise<{ port: number; sha256: string; close(): void; sockets: net.Socket[] }> {
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 31) & 0xff;
  const hash = createHash('sha256');
  for (let sent = 0; sent < bytes; sent += chunk.length) hash.update(chunk.subarray(0, Math.min(chunk.length, bytes - sent)));
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        const n = Math.min(chunk.length, bytes - sent);
        sent += n;
        if (!s.write(chunk.subarray(0, n))) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, sha256: hash.digest('hex'), sockets, close: () => server.close() };
}

function readAll(socket: NodeJS.ReadableStream): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
    });
    socket.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    socket.on('error', reject);
  });
}

for (const mode of ['grpc', 'http-connect'] as TunnelMode[]) {
  test(`${mode}: a stalled reader pauses only its own destination; a concurrent transfer completes; nothing is lost`, async (t) => {
    const size = 48 * 1024 * 1024;
    const source = await startSource(size);
    const cluster = await startLocalCluster({ mode });
    const tunnel = cluster.openTunnel();
    t.after(async () => {
      await tunnel.close();
      await cluster.close();
      source.close();
    });
    const backend = cluster.server.router.backendList[0]!;
    assert.ok(backend.flow, 'our agent and server negotiated flow control');
    // Downloads get the server's larger window; the agent's (uploads) stays at its flag default.
    assert.deepEqual(backend.flow, { agentWindow: DEFAULT_FLOW_WINDOW_BYTES, ourWindow: DEFAULT_SERVER_FLOW_WINDOW_BYTES });
    assert.equal(DEFAULT_SERVER_FLOW_WINDOW_BYTES, 4 * 1024 * 1024);

    const stalled = await tunnel.dial('tcp', `127.0.0.1:${source.port}`);
    stalled.pause(); // the reader stops reading
    const active = await tunnel.dial('tcp', `127.0.0.1:${source.port}`);
    const result = await readAll(active);
    assert.equal(result.bytes, size);
    assert.equal(result.sha256, source.sha256);

    // The stalled connection is still open (not closed for stalling) and bounded:
    assert.equal(cluster.server.router.stalledFrontendCloses, 0);
    assert.equal(cluster.server.router.establishedCount, 1);
    const sourceSocket = source.sockets[0]!;
    assert.ok(sourceSocket.writableLength > 0 || sourceSocket.writableNeedDrain, 'the stalled destination is being back-pressured');

    // Reading again delivers every byte in order.
    const late = readAll(stalled);
    stalled.resume();
    const rest = await late;
    assert.equal(rest.bytes, size);
    assert.equal(rest.sha256, source.sha256);
  });
}

for (const mode of ['grpc', 'http-connect'] as TunnelMode[]) {
  test(`${mode}: without flow control (upstream-style agent), --frontend-stall-policy=pause: a reader slower than the agent still gets every byte`, async (t) => {
    const size = 40 * 1024 * 1024;
    const source = await startSource(size);
    const cluster = await startLocalCluster({ mode, agent: { flowWindowBytes: 0 }, server: { maxFrontendBufferBytes: 2 * 1024 * 1024, frontendStallPolicy: 'pause' } });
    const tunnel = cluster.openTunnel();
    t.after(async () => {
      await tunnel.close();
      await cluster.close();
      source.close();
    });
    assert.equal(cluster.server.router.backendList[0]!.flow, null);
    const socket = await tunnel.dial('tcp', `127.0.0.1:${source.port}`);
    // A slow consumer: after the first MiB it stops until the server's buffer for it has passed the bound
    // (so the path under test runs however fast or loaded the machine is; gives up after 20 s and lets the
    // final assertion fail), then it stops for a moment after every further MiB.
    let sinceBreak = 0;
    let firstBreak = true;
    const router = cluster.server.router;
    socket.on('data', (d: Buffer) => {
      sinceBreak += d.length;
      if (sinceBreak >= 1024 * 1024) {
        sinceBreak = 0;
        socket.pause();
        if (firstBreak) {
          firstBreak = false;
          const deadline = Date.now() + 20_000;
          const poll = (): void => {
            if (router.frontendBoundPauses > 0 || Date.now() > deadline) socket.resume();
            else setTimeout(poll, 5);
          };
          poll();
        } else {
          setTimeout(() => socket.resume(), 5);
        }
      }
    });
    const result = await readAll(socket);
    assert.equal(result.bytes, size);
    assert.equal(result.sha256, source.sha256);
    assert.equal(cluster.server.router.stalledFrontendCloses, 0, 'a slow reader is not a stalled one');
    assert.ok(cluster.server.router.frontendBoundPauses > 0, 'the reader was slow enough to pass the bound (the path under test ran)');
  });
}

test('an agent that does not offer the extension gets upstream behaviour', async (t) => {
  const cluster = await startLocalCluster({ mode: 'grpc', agent: { flowWindowBytes: 0 } });
  t.after(() => cluster.close());
  assert.equal(cluster.server.router.backendList[0]!.flow, null);
});

test('agent flags: --flow-control-window and --endpoint-buffer-bytes reach the agent config', async () => {
  const { parseAgentOptions } = await import('../src/agent/agent-options.ts');
  const { agentConfigFromOptions } = await import('../src/cli/agent-main.ts');
  const base = ['--agent-id=a'];
  const defaults = agentConfigFromOptions(parseAgentOptions(base, {}));
  assert.equal(defaults.flowWindowBytes, 1024 * 1024);
  assert.equal(defaults.maxEndpointBufferedBytes, 8 * 1024 * 1024);
  const off = agentConfigFromOptions(parseAgentOptions([...base, '--flow-control-window=0', '--endpoint-buffer-bytes=1048576'], {}));
  assert.equal(off.flowWindowBytes, 0);
  assert.equal(off.maxEndpointBufferedBytes, 1048576);
  assert.equal(defaults.endpointStallTimeoutMs, 30_000);
  assert.equal(agentConfigFromOptions(parseAgentOptions([...base, '--endpoint-stall-timeout=0'], {})).endpointStallTimeoutMs, 0);
  assert.equal(agentConfigFromOptions(parseAgentOptions([...base, '--endpoint-stall-timeout=1m30s'], {})).endpointStallTimeoutMs, 90_000);
  assert.throws(() => parseAgentOptions([...base, '--endpoint-stall-timeout=-1s'], {}), /--endpoint-stall-timeout must be 0/);
  assert.equal(defaults.endpointStallPolicy, 'close');
  assert.equal(agentConfigFromOptions(parseAgentOptions([...base, '--endpoint-stall-policy=pause'], {})).endpointStallPolicy, 'pause');
  assert.throws(() => parseAgentOptions([...base, '--endpoint-stall-policy=wait'], {}), /--endpoint-stall-policy "wait" must be close or pause/);
  assert.throws(() => parseAgentOptions([...base, '--flow-control-window=100'], {}), /--flow-control-window 100 must be 0 \(off\) or between/);
});

test('server flags --frontend-stall-timeout (0 = close at once) and --frontend-stall-policy reach the config', async () => {
  const { parseServerOptions } = await import('../src/server/server-options.ts');
  const { serverConfigFromOptions } = await import('../src/cli/server-main.ts');
  const { silentLogger } = await import('../src/observability/logger.ts');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(`${tmpdir()}/kts-flags-`);
  for (const f of ['c.crt', 'c.key']) writeFileSync(`${dir}/${f}`, 'x');
  const base = ['--uds-name', `${dir}/s.sock`, '--server-port=0', `--cluster-cert=${dir}/c.crt`, `--cluster-key=${dir}/c.key`];
  assert.equal(serverConfigFromOptions(parseServerOptions(base, {}), silentLogger).frontendStallTimeoutMs, 30_000);
  assert.equal(serverConfigFromOptions(parseServerOptions([...base, '--frontend-stall-timeout=0'], {}), silentLogger).frontendStallTimeoutMs, 0);
  assert.equal(serverConfigFromOptions(parseServerOptions(base, {}), silentLogger).frontendStallPolicy, 'close');
  assert.equal(serverConfigFromOptions(parseServerOptions([...base, '--frontend-stall-policy=pause'], {}), silentLogger).frontendStallPolicy, 'pause');
  assert.throws(() => parseServerOptions([...base, '--frontend-stall-policy=wait'], {}), /--frontend-stall-policy "wait" must be close or pause/);
});

test('agent: --endpoint-buffer-bytes must cover 1.5 windows plus one 4 MiB packet while flow control is on', async () => {
  const { parseAgentOptions } = await import('../src/agent/agent-options.ts');
  const base = ['--agent-id=a'];
  assert.throws(
    () => parseAgentOptions([...base, '--flow-control-window=4194304', '--endpoint-buffer-bytes=8388608'], {}),
    /--endpoint-buffer-bytes 8388608 must be at least 1\.5 × --flow-control-window \+ 4 MiB \(10485760\)/,
  );
  parseAgentOptions([...base, '--flow-control-window=4194304', '--endpoint-buffer-bytes=10485760'], {});
  parseAgentOptions(base, {}); // the defaults: 1 MiB window, 8 MiB bound
  parseAgentOptions([...base, '--flow-control-window=0', '--endpoint-buffer-bytes=1048576'], {}); // no window, no rule
});

test('the server window fits its per-frontend bound: 1.5 windows plus one 4 MiB packet, never under 64 KiB', () => {
  const MiB = 1024 * 1024;
  assert.equal(serverFlowWindowFor(16 * MiB), DEFAULT_SERVER_FLOW_WINDOW_BYTES, 'the default bound takes the default window');
  assert.equal(serverFlowWindowFor(64 * MiB), DEFAULT_SERVER_FLOW_WINDOW_BYTES, 'a larger bound does not raise it');
  assert.equal(serverFlowWindowFor(10 * MiB), 4 * MiB, 'exactly 1.5 × 4 MiB + 4 MiB');
  assert.equal(serverFlowWindowFor(8 * MiB), Math.floor((4 * MiB) / 1.5));
  for (const bound of [8 * MiB, 5 * MiB, 4.5 * MiB]) {
    const window = serverFlowWindowFor(bound);
    assert.ok(window === 64 * 1024 || 1.5 * window + 4 * MiB <= bound, `bound ${bound}: window ${window}`);
  }
  assert.equal(serverFlowWindowFor(2 * MiB), 64 * 1024, 'a bound below one packet gets the minimum window');
});

test('a server configured with a smaller per-frontend bound negotiates the smaller window with our agent', async (t) => {
  const bound = 8 * 1024 * 1024;
  const cluster = await startLocalCluster({ mode: 'grpc', server: { maxFrontendBufferBytes: bound } });
  t.after(() => cluster.close());
  const backend = cluster.server.router.backendList[0]!;
  assert.deepEqual(backend.flow, { agentWindow: DEFAULT_FLOW_WINDOW_BYTES, ourWindow: serverFlowWindowFor(bound) });
  assert.ok(serverFlowWindowFor(bound) < DEFAULT_SERVER_FLOW_WINDOW_BYTES);
});
