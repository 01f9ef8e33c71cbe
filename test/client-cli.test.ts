import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packets, PacketType } from '../src/protocol/packet.ts';
import { clientTestPki, connectRelayScript, relayScript, startFakeConnectServer, startFakeProxy } from './client-fixtures.ts';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'konnectivity');

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function runCli(args: string[]): Promise<RunResult> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

async function startBackend(): Promise<{ port: number; close(): void }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/missing') {
      res.statusCode = 404;
      res.end('no such thing\n');
      return;
    }
    res.setHeader('content-type', 'text/plain');
    res.end(`backend says hi to ${req.url} (${req.headers['user-agent']})\n`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

test('konnectivity client --mode grpc --proxy-uds fetches a URL through the tunnel', async () => {
  const backend = await startBackend();
  const proxy = await startFakeProxy(relayScript());
  try {
    const uds = (proxy.transport as { unix: string }).unix;
    const r = await runCli(['client', '--proxy-uds', uds, '--url', `http://127.0.0.1:${backend.port}/hello`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `backend says hi to /hello (konnectivity-ts-client)\n`);
    const s = await proxy.streams.next();
    const dial = await s.inbox.next();
    assert.equal(dial.type === PacketType.DIAL_REQ && dial.dialRequest.address, `127.0.0.1:${backend.port}`);
  } finally {
    await proxy.close();
    backend.close();
  }
});

test('konnectivity client --mode http-connect over mTLS with upstream test-client flag names', async () => {
  const backend = await startBackend();
  const server = await startFakeConnectServer(connectRelayScript, { transport: 'tls' });
  const pki = await clientTestPki();
  try {
    const { port } = server.transport as { port: number };
    const r = await runCli([
      'client',
      '--mode=http-connect',
      '--proxy-host=127.0.0.1',
      `--proxy-port=${port}`,
      `--ca-cert=${pki.caPath}`,
      `--client-cert=${pki.clientCertPath}`,
      `--client-key=${pki.clientKeyPath}`,
      '--request-host=127.0.0.1',
      `--request-port=${backend.port}`,
      '--request-path=success',
      '--test-requests=2',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `backend says hi to /success (konnectivity-ts-client)\n`.repeat(2));
    const x = await server.exchanges.next();
    assert.equal(x.requestHead.toString('latin1'), `CONNECT 127.0.0.1:${backend.port} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  } finally {
    await server.close();
    backend.close();
  }
});

test('konnectivity client exits non-zero on HTTP >= 400, on dial errors, and on bad flags', async () => {
  const backend = await startBackend();
  let refuse = false;
  const relay = relayScript();
  const proxy = await startFakeProxy((s) => {
    if (!refuse) {
      relay(s);
      return;
    }
    void s.inbox.cursor().next().then((p) => {
      if (p.type === PacketType.DIAL_REQ) s.send(packets.dialResponse(p.dialRequest.random, 0n, 'dial tcp 10.9.9.9:80: connect: no route to host'));
    });
  });
  try {
    const uds = (proxy.transport as { unix: string }).unix;
    const notFound = await runCli(['client', '--proxy-uds', uds, '--url', `http://127.0.0.1:${backend.port}/missing`]);
    assert.equal(notFound.code, 1);
    assert.equal(notFound.stdout, 'no such thing\n');
    assert.match(notFound.stderr, /HTTP 404 Not Found/);

    refuse = true;
    const refused = await runCli(['client', '--proxy-uds', uds, '--url', 'http://10.9.9.9/']);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /dial 10\.9\.9\.9:80 through the proxy failed \(endpoint\): dial tcp 10\.9\.9\.9:80: connect: no route to host/);

    const badMode = await runCli(['client', '--mode', 'socks', '--proxy-uds', uds]);
    assert.equal(badMode.code, 2);
    assert.match(badMode.stderr, /mode must be set to either 'grpc' or 'http-connect'/);
    const unknownFlag = await runCli(['client', '--bogus']);
    assert.equal(unknownFlag.code, 2);
    assert.match(unknownFlag.stderr, /unknown flag: --bogus/);
    const unknownCommand = await runCli(['frobnicate']);
    assert.equal(unknownCommand.code, 2);
    assert.match(unknownCommand.stderr, /unknown command "frobnicate"/);
    const help = await runCli(['client', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--proxy-uds string/);
  } finally {
    await proxy.close();
    backend.close();
  }
});
