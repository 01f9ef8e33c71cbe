import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import path from 'node:path';
import { Registry } from 'prom-client';
import { createTunnel, KonnectivityDialError } from '../src/client/index.ts';
import { connectRequest } from '../src/client/http-connect-tunnel.ts';
import { headEndIndex, parseConnectResponseHead } from '../src/client/connect-response.ts';
import { createClientMetrics } from '../src/observability/client-metrics.ts';
import { connectEchoScript, drain, randomPayload, readExactly, sha256, startFakeConnectServer, tempDir, writeAll } from './client-fixtures.ts';

const MiB = 1024 * 1024;

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<KonnectivityDialError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KonnectivityDialError, `expected KonnectivityDialError, got ${String(err)}`);
    assert.equal(err.code, code, `code (message: ${err.message})`);
    return err;
  }
  assert.fail('expected the dial to fail');
}

for (const transport of ['unix', 'tls'] as const) {
  test(`http-connect over ${transport}: exact CONNECT bytes, 200, 16 MiB sha256-checked echo`, async () => {
    const server = await startFakeConnectServer(connectEchoScript, { transport });
    const registry = new Registry();
    const tunnel = createTunnel({ mode: 'http-connect', transport: server.transport, metrics: createClientMetrics(registry) });
    try {
      const socket = await tunnel.dial('tcp', '10.0.0.5:10250');
      const x = await server.exchanges.next();
      assert.equal(x.requestHead.toString('latin1'), 'CONNECT 10.0.0.5:10250 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      assert.equal(x.rest.length, 0);
      const data = randomPayload(16 * MiB);
      const echoed = drain(socket, data.length);
      await writeAll(socket, data, 128 * 1024);
      const got = await echoed;
      assert.equal(got.bytes, data.length);
      assert.equal(got.sha256, sha256(data));
      const closed = once(socket, 'close');
      socket.end();
      socket.resume();
      await closed;
      const gauge = await registry.getSingleMetric('konnectivity_network_proxy_client_client_connections')?.get();
      assert.ok(gauge?.values.every((v) => v.value === 0));
    } finally {
      await tunnel.close();
      await server.close();
    }
  });
}

test('http-connect: a refusal fails with code endpoint carrying the status line and body', async () => {
  const server = await startFakeConnectServer((x) => {
    x.socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 41\r\n\r\ndial tcp 10.0.0.9:80: too many open files');
  });
  const registry = new Registry();
  const tunnel = createTunnel({ mode: 'http-connect', transport: server.transport, metrics: createClientMetrics(registry) });
  try {
    const err = await rejectsWithCode(tunnel.dial('tcp', '10.0.0.9:80'), 'endpoint');
    assert.equal(err.httpStatus, 503);
    assert.equal(err.message, 'HTTP/1.1 503 Service Unavailable: dial tcp 10.0.0.9:80: too many open files');
    const failures = await registry.getSingleMetric('konnectivity_network_proxy_client_dial_failure_total')?.get();
    assert.equal(failures?.values.find((v) => v.labels.reason === 'endpoint')?.value, 1);
  } finally {
    await tunnel.close();
    await server.close();
  }
});

test('http-connect: an upstream-style length-less error body is read until the server closes', async () => {
  const server = await startFakeConnectServer((x) => {
    // What proxy-server writes when it has no agent (§5): no Content-Length, then close.
    x.socket.end('HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\ncurrently no tunnels available: No agent available');
  });
  const tunnel = createTunnel({ mode: 'http-connect', transport: server.transport });
  try {
    const err = await rejectsWithCode(tunnel.dial('tcp', '10.0.0.9:80'), 'endpoint');
    assert.equal(err.httpStatus, 500);
    assert.equal(err.message, 'HTTP/1.1 500 Internal Server Error: currently no tunnels available: No agent available');
  } finally {
    await tunnel.close();
    await server.close();
  }
});

test('http-connect: tunnel bytes in the same write as the 200 are kept, in order', async () => {
  const server = await startFakeConnectServer((x) => {
    x.socket.write('HTTP/1.1 200 Connection Established\r\n\r\nhello from the remote');
    x.socket.pipe(x.socket);
    x.socket.resume();
  });
  const tunnel = createTunnel({ mode: 'http-connect', transport: server.transport });
  try {
    const socket = await tunnel.dial('tcp', '10.0.0.1:80');
    assert.equal((await readExactly(socket, 21)).toString(), 'hello from the remote');
    socket.write('ping');
    assert.equal((await readExactly(socket, 4)).toString(), 'ping');
    socket.destroy();
  } finally {
    await tunnel.close();
    await server.close();
  }
});

test('http-connect: a server that hangs up without answering → dialclosed; silence → timeout; abort → context', async () => {
  let mode: 'hangup' | 'silent' = 'hangup';
  const server = await startFakeConnectServer((x) => {
    if (mode === 'hangup') x.socket.destroy();
  });
  const tunnel = createTunnel({ mode: 'http-connect', transport: server.transport });
  try {
    await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80'), 'dialclosed');
    mode = 'silent';
    await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80', { timeoutMs: 100 }), 'timeout');
    const ac = new AbortController();
    const dial = tunnel.dial('tcp', '10.0.0.1:80', { signal: ac.signal });
    await server.exchanges.next(); // the hang-up
    await server.exchanges.next(); // the silent one
    const x = await server.exchanges.next();
    const closed = once(x.socket, 'close');
    ac.abort();
    await rejectsWithCode(dial, 'context');
    await closed; // the proxy connection is closed, which is how the server learns
  } finally {
    await tunnel.close();
    await server.close();
  }
});

test('http-connect: unreachable proxy is streamsetup; bad network and address are refused before connecting', async () => {
  const tunnel = createTunnel({ mode: 'http-connect', transport: { unix: path.join(tempDir(), 'none.sock') } });
  await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80'), 'streamsetup');
  await rejectsWithCode(tunnel.dial('udp', '10.0.0.1:53'), 'unknown');
  await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80 HTTP/1.1\r\nX-Injected: 1'), 'unknown');
  await tunnel.close();
  await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80'), 'tunnelclosed');
});

test('http-connect: malformed answer → unknown; response head parsing', async () => {
  const server = await startFakeConnectServer((x) => x.socket.end('SSH-2.0-OpenSSH_9.6\r\n\r\n'));
  const tunnel = createTunnel({ mode: 'http-connect', transport: server.transport });
  try {
    await rejectsWithCode(tunnel.dial('tcp', '10.0.0.1:80'), 'unknown');
  } finally {
    await tunnel.close();
    await server.close();
  }
  assert.equal(connectRequest('[fd00::1]:443'), 'CONNECT [fd00::1]:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  const lf = Buffer.from('HTTP/1.0 200 OK\nX-A: 1\nX-A: 2\n\nrest');
  const end = headEndIndex(lf);
  assert.equal(lf.subarray(end).toString(), 'rest');
  const head = parseConnectResponseHead(lf.subarray(0, end));
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers.get('x-a'), '1, 2');
  assert.equal(parseConnectResponseHead(Buffer.from('HTTP/1.1 502\r\n\r\n')).reason, '');
});
