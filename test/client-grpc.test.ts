import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Registry } from 'prom-client';
import { createTunnel, KonnectivityDialError, MAX_DATA_PAYLOAD_BYTES, TunnelHttpAgent, type TunnelConnection } from '../src/client/index.ts';
import { createClientMetrics } from '../src/observability/client-metrics.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import {
  drain,
  echoScript,
  randomPayload,
  readExactly,
  relayScript,
  sha256,
  startFakeProxy,
  tempDir,
  writeAll,
  type ProxyStreamHandle,
} from './client-fixtures.ts';

const MiB = 1024 * 1024;

function isDialReq(p: Packet): p is Extract<Packet, { type: 0 }> {
  return p.type === PacketType.DIAL_REQ;
}

async function dialRequestOf(s: ProxyStreamHandle) {
  const p = await s.inbox.next();
  assert.ok(isDialReq(p), `first packet is DIAL_REQ, got type ${p.type}`);
  return p.dialRequest;
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const v = metric?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

async function rejectsWithCode(p: Promise<unknown>, code: string, message?: RegExp | string): Promise<KonnectivityDialError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KonnectivityDialError, `expected KonnectivityDialError, got ${String(err)}`);
    assert.equal(err.code, code, `code (message: ${err.message})`);
    if (typeof message === 'string') assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail('expected the dial to fail');
}

for (const transport of ['unix', 'tls'] as const) {
  test(`grpc over ${transport}: dial, 16 MiB sha256-checked echo, split writes, CLOSE_REQ/CLOSE_RSP`, async () => {
    const proxy = await startFakeProxy(echoScript(42n), { transport, ...(transport === 'tls' ? { servername: 'proxy.test' } : {}) });
    const registry = new Registry();
    const metrics = createClientMetrics(registry);
    const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport, metrics });
    try {
      const socket = await tunnel.dial('tcp', '10.0.0.5:10250');
      const s = await proxy.streams.next();
      const req = await dialRequestOf(s);
      assert.equal(req.protocol, 'tcp');
      assert.equal(req.address, '10.0.0.5:10250');
      assert.ok(req.random >= 0n && req.random < 1n << 63n);
      assert.equal(s.call.method, '/ProxyService/Proxy');
      assert.equal(await metricValue(registry, 'konnectivity_network_proxy_client_client_connections', { status: 'ok' }), 1);

      // 11 MiB in 64 KiB writes plus one 5 MiB write that must be split below the 4 MiB gRPC limit.
      const data = Buffer.concat([randomPayload(11 * MiB), randomPayload(5 * MiB)]);
      const received = drain(socket, data.length);
      await writeAll(socket, data.subarray(0, 11 * MiB), 64 * 1024);
      socket.write(data.subarray(11 * MiB));
      const got = await received;
      assert.equal(got.bytes, data.length);
      assert.equal(got.sha256, sha256(data));

      const dataPackets = s.inbox.all.filter((p) => p.type === PacketType.DATA);
      assert.ok(dataPackets.every((p) => p.type === PacketType.DATA && p.data.connectID === 42n));
      assert.ok(dataPackets.every((p) => p.type === PacketType.DATA && p.data.data.length <= MAX_DATA_PAYLOAD_BYTES));

      socket.end();
      socket.resume();
      await once(socket, 'close');
      const closeReq = await s.inbox.nextMatching((p) => p.type !== PacketType.DATA);
      assert.deepEqual(closeReq, packets.closeRequest(42n));
      await s.remoteEnded; // stream ended after CLOSE_RSP
      await s.closed;
      assert.equal(await metricValue(registry, 'konnectivity_network_proxy_client_stream_packets_total', { segment: 'from_client', packet_type: 'DIAL_REQ' }), 1);
      assert.equal(await metricValue(registry, 'konnectivity_network_proxy_client_stream_packets_total', { segment: 'to_client', packet_type: 'CLOSE_RSP' }), 1);
      await tunnel.close(); // waits for the client side of every stream to finish
      for (const status of ['created', 'dialing', 'ok', 'closing']) {
        assert.equal(await metricValue(registry, 'konnectivity_network_proxy_client_client_connections', { status }), 0, status);
      }
    } finally {
      await tunnel.close();
      await proxy.close();
    }
  });
}

test('grpc: many dials share one HTTP/2 connection, one stream (and one DIAL_REQ) each', async () => {
  const proxy = await startFakeProxy(echoScript());
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  try {
    const sockets = await Promise.all([1, 2, 3, 4, 5].map((i) => tunnel.dial('tcp', `10.0.0.${i}:80`)));
    assert.equal(proxy.server.sessionCount, 1);
    const randoms = new Set<bigint>();
    for (const s of proxy.streams.all) {
      const dialReqs = s.inbox.all.filter(isDialReq);
      assert.equal(dialReqs.length, 1);
      randoms.add(dialReqs[0]!.dialRequest.random);
    }
    assert.equal(randoms.size, 5);
    for (const [i, socket] of sockets.entries()) {
      socket.write(`hello ${i}`);
      assert.equal((await readExactly(socket, `hello ${i}`.length)).toString(), `hello ${i}`);
      socket.destroy();
    }
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: DIAL_RSP error fails with code endpoint and the agent text; the stream is ended', async () => {
  const agentText = 'dial tcp 10.0.0.9:443: connect: connection refused';
  const proxy = await startFakeProxy((s) => {
    void s.inbox.cursor().next().then((p) => {
      if (isDialReq(p)) s.send(packets.dialResponse(p.dialRequest.random, 0n, agentText));
    });
  });
  const registry = new Registry();
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport, metrics: createClientMetrics(registry) });
  try {
    const err = await rejectsWithCode(tunnel.dial('tcp', '10.0.0.9:443'), 'endpoint', agentText);
    assert.equal(err.address, '10.0.0.9:443');
    const s = await proxy.streams.next();
    await s.remoteEnded;
    assert.equal(await metricValue(registry, 'konnectivity_network_proxy_client_dial_failure_total', { reason: 'endpoint' }), 1);
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: DIAL_CLS from the server fails the dial with code dialclosed', async () => {
  const proxy = await startFakeProxy((s) => {
    void s.inbox.cursor().next().then((p) => {
      if (isDialReq(p)) s.send(packets.closeDial(p.dialRequest.random));
    });
  });
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  try {
    await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80'), 'dialclosed');
    await (await proxy.streams.next()).remoteEnded;
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: no answer → timeout; DIAL_CLS with the same random goes out before the stream ends', async () => {
  const proxy = await startFakeProxy(() => {});
  const registry = new Registry();
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport, metrics: createClientMetrics(registry) });
  try {
    await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80', { timeoutMs: 150 }), 'timeout');
    const s = await proxy.streams.next();
    const req = await dialRequestOf(s);
    assert.deepEqual(await s.inbox.next(), packets.closeDial(req.random));
    await s.remoteEnded;
    assert.equal(s.inbox.all.length, 2);
    assert.equal(await metricValue(registry, 'konnectivity_network_proxy_client_dial_failure_total', { reason: 'timeout' }), 1);
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: aborting the signal → context; DIAL_CLS on the wire', async () => {
  const proxy = await startFakeProxy(() => {});
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  try {
    const ac = new AbortController();
    const dial = tunnel.dial('tcp', '10.0.0.1:80', { signal: ac.signal });
    const s = await proxy.streams.next();
    const req = await dialRequestOf(s);
    ac.abort(new Error('caller gave up'));
    const err = await rejectsWithCode(dial, 'context');
    assert.match(String((err.cause as Error).message), /caller gave up/);
    assert.deepEqual(await s.inbox.next(), packets.closeDial(req.random));
    await s.remoteEnded;
    // An already-aborted signal fails before anything is sent.
    await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80', { signal: AbortSignal.abort() }), 'context');
    assert.equal(proxy.streams.all.length, 1);
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: DATA for another connectID is answered with CLOSE_REQ for it; connectID 0 is skipped', async () => {
  const proxy = await startFakeProxy((s) => {
    void s.inbox.cursor().next().then((p) => {
      if (!isDialReq(p)) return;
      s.send(packets.dialResponse(p.dialRequest.random, 5n));
      s.send(packets.data(99n, Buffer.from('stray')));
      s.send(packets.data(0n, Buffer.from('nobody')));
      s.send(packets.data(5n, Buffer.from('mine')));
    });
    void s.inbox.cursor().nextMatching((p) => p.type === PacketType.CLOSE_REQ && p.closeRequest.connectID === 5n).then(() => s.send(packets.closeResponse(5n)));
  });
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  try {
    const socket = await tunnel.dial('tcp', '10.0.0.1:80');
    assert.equal((await readExactly(socket, 4)).toString(), 'mine');
    const s = await proxy.streams.next();
    await dialRequestOf(s);
    assert.deepEqual(await s.inbox.next(), packets.closeRequest(99n));
    socket.destroy();
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: CLOSE_RSP from the server is EOF; the socket then closes and our stream ends', async () => {
  const proxy = await startFakeProxy((s) => {
    void s.inbox.cursor().next().then((p) => {
      if (!isDialReq(p)) return;
      s.send(packets.dialResponse(p.dialRequest.random, 3n));
      s.send(packets.data(3n, Buffer.from('last words')));
      s.send(packets.closeResponse(3n));
    });
  });
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  try {
    const socket = await tunnel.dial('tcp', '10.0.0.1:80');
    const closed = once(socket, 'close');
    const got = await drain(socket);
    assert.equal(got.sha256, sha256(Buffer.from('last words')));
    await closed;
    const s = await proxy.streams.next();
    await s.remoteEnded;
    // Nothing after DIAL_REQ: the remote closed, so no CLOSE_REQ is owed.
    assert.equal(s.inbox.all.length, 1);
    await assert.rejects(new Promise((resolve, reject) => socket.write('late', (err) => (err ? reject(err) : resolve(undefined)))));
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: stream reset after the dial destroys the socket with code tunnelclosed', async () => {
  const proxy = await startFakeProxy((s) => {
    const packetsIn = s.inbox.cursor();
    void packetsIn.next().then((p) => {
      if (!isDialReq(p)) return;
      s.send(packets.dialResponse(p.dialRequest.random, 3n));
      void packetsIn.next().then(() => s.call.finish(GrpcCode.UNAVAILABLE, 'server going away'));
    });
  });
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  try {
    const socket = await tunnel.dial('tcp', '10.0.0.1:80');
    socket.write('x');
    const [err] = (await once(socket, 'error')) as [KonnectivityDialError];
    assert.ok(err instanceof KonnectivityDialError);
    assert.equal(err.code, 'tunnelclosed');
    assert.match(err.message, /server going away/);
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: a reader that does not read does not stall a second dial; it resumes when read', async () => {
  const total = 64 * MiB;
  let sentOnFirst = 0;
  let firstSettled: Promise<void> | null = null;
  let markBlocked: () => void = () => {};
  const firstBlocked = new Promise<void>((resolve) => (markBlocked = resolve));
  let streamIndex = 0;
  const proxy = await startFakeProxy((s) => {
    const index = streamIndex++;
    if (index > 0) {
      echoScript(2n)(s);
      return;
    }
    void s.inbox.cursor().next().then((p) => {
      if (!isDialReq(p)) return;
      s.send(packets.dialResponse(p.dialRequest.random, 1n));
      const chunk = Buffer.alloc(16 * 1024, 0xab);
      firstSettled = new Promise<void>((resolve) => {
        const pump = (): void => {
          while (sentOnFirst < total) {
            sentOnFirst += chunk.length;
            if (!s.send(packets.data(1n, chunk))) {
              markBlocked();
              return; // wait for drain
            }
          }
          s.send(packets.closeResponse(1n));
          resolve();
        };
        s.call.stream.onDrain = pump;
        pump();
      });
    });
  });
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  try {
    const slow = await tunnel.dial('tcp', '10.0.0.1:80');
    // The server is pushed back on the first stream before the second dial starts.
    await firstBlocked;
    const fast = await tunnel.dial('tcp', '10.0.0.2:80');
    const payload = randomPayload(4 * MiB);
    const echoed = drain(fast, payload.length);
    await writeAll(fast, payload, 256 * 1024);
    assert.equal((await echoed).sha256, sha256(payload));
    // The slow stream is held back by flow control, not buffered without bound.
    assert.ok(sentOnFirst < total, `server was blocked (sent ${sentOnFirst} of ${total})`);
    assert.ok(slow.readableLength < 8 * MiB, `client buffered ${slow.readableLength} bytes`);
    const all = await drain(slow);
    assert.equal(all.bytes, total);
    await firstSettled;
    fast.destroy();
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});

test('grpc: node:http GET through TunnelHttpAgent against a real endpoint behind a relaying fake proxy', async () => {
  const backend = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from ${req.url}`);
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const port = (backend.address() as AddressInfo).port;
  const proxy = await startFakeProxy(relayScript());
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  const agent = new TunnelHttpAgent({ tunnel, keepAlive: true });
  try {
    for (const p of ['/a', '/b']) {
      const body = await new Promise<string>((resolve, reject) => {
        http.get(`http://127.0.0.1:${port}${p}`, { agent }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve(text));
        }).on('error', reject);
      });
      assert.equal(body, `hello from ${p}`);
    }
    // keep-alive reused the tunnelled connection: one dial for two requests
    assert.equal(proxy.streams.all.length, 1);
  } finally {
    agent.destroy();
    await tunnel.close();
    await proxy.close();
    backend.close();
  }
});

test('grpc: failures to reach the proxy are streamsetup; unsupported network is unknown', async () => {
  const missing = createTunnel({ mode: 'grpc', transport: { unix: path.join(tempDir(), 'nothing.sock') } });
  await rejectsWithCode(missing.dial('tcp', '10.0.0.1:80'), 'streamsetup', /cannot connect to proxy server unix:\/\//);
  await rejectsWithCode(missing.dial('udp', '10.0.0.1:53'), 'unknown', 'protocol not supported');
  await missing.close();

  const proxy = await startFakeProxy(echoScript(), { transport: 'tls' });
  try {
    const transport = proxy.transport as { host: string; port: number; tls: { cert: string; key: string } };
    const { otherCaPem } = await (await import('./client-fixtures.ts')).clientTestPki();
    const wrongCa = createTunnel({ mode: 'grpc', transport: { ...transport, tls: { ...transport.tls, ca: otherCaPem } } });
    await rejectsWithCode(wrongCa.dial('tcp', '10.0.0.1:80'), 'streamsetup');
    await wrongCa.close();
  } finally {
    await proxy.close();
  }
});

test('grpc: close() fails pending dials (tunnelclosed, DIAL_CLS), closes open connections, refuses new dials', async () => {
  let streamIndex = 0;
  const proxy = await startFakeProxy((s) => {
    if (streamIndex++ === 0) echoScript(8n)(s);
    // the second stream never answers
  });
  const tunnel = createTunnel({ mode: 'grpc', transport: proxy.transport });
  let open: TunnelConnection | null = null;
  try {
    open = await tunnel.dial('tcp', '10.0.0.1:80');
    const openClosed = once(open, 'close');
    open.resume();
    const pending = rejectsWithCode(tunnel.dial('tcp', '10.0.0.2:80'), 'tunnelclosed');
    await proxy.streams.next();
    const s2 = await proxy.streams.next();
    const req = await dialRequestOf(s2);
    await tunnel.close();
    assert.ok(tunnel.closed);
    await pending;
    assert.deepEqual(s2.inbox.all[1], packets.closeDial(req.random));
    const s1 = proxy.streams.all[0]!;
    assert.ok(s1.inbox.all.some((p) => p.type === PacketType.CLOSE_REQ && p.closeRequest.connectID === 8n));
    await openClosed;
    await rejectsWithCode(tunnel.dial('tcp', '10.0.0.3:80'), 'tunnelclosed');
  } finally {
    await tunnel.close();
    await proxy.close();
  }
});
