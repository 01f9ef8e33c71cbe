/**
 * The HTTP-CONNECT frontend byte for byte, from a raw socket (a unix socket
 * or mTLS TCP) the way kube-apiserver talks to it: the 200 is alone in its
 * read, bytes pipelined behind the CONNECT head are relayed, error
 * responses are Go's exact bytes, and a bad or slow client harms nobody else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import type { TestContext } from 'node:test';
import type { LocalCluster } from '../src/dev/local-cluster.ts';
import { connectHead, rawFrontendSocket, readChunk, startCluster, type FrontendTransport } from './helpers/cluster.ts';
import { KiB, MiB, randomPayload, readExactly, readToEnd, sha256 } from './helpers/payload.ts';
import { TcpTarget, closedPort, echo, sink } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

async function target(t: TestContext, behaviour: Parameters<typeof TcpTarget.start>[0]): Promise<TcpTarget> {
  const tgt = await TcpTarget.start(behaviour);
  t.after(() => tgt.close());
  return tgt;
}

/** Opens a tunnel with the raw protocol and checks it works both ways. */
async function connectAndEcho(t: TestContext, cluster: LocalCluster, dest: TcpTarget): Promise<net.Socket> {
  const socket = await rawFrontendSocket(t, cluster);
  socket.write(connectHead(dest.address));
  assert.equal((await readChunk(socket)).toString('latin1'), ESTABLISHED);
  socket.write('ping');
  assert.equal((await readExactly(socket, 4)).toString(), 'ping');
  return socket;
}

for (const transport of ['unix', 'tcp'] as const satisfies readonly FrontendTransport[]) {
  const name = transport === 'unix' ? 'unix socket' : 'mTLS TCP';

  test(`${name}: the 200 is alone in the first read and pipelined bytes reach the destination`, async (t) => {
    const cluster = await startCluster(t, { mode: 'http-connect', frontendTransport: transport });
    const dest = await target(t, sink);
    const socket = await rawFrontendSocket(t, cluster);
    const pipelined = randomPayload(8 * KiB);
    socket.write(Buffer.concat([Buffer.from(connectHead(dest.address), 'latin1'), pipelined]));
    const first = await readChunk(socket);
    assert.equal(first.toString('latin1'), ESTABLISHED);
    const more = randomPayload(100 * KiB);
    socket.write(more);
    socket.end();
    const conn = await dest.connections.next();
    const all = Buffer.concat([pipelined, more]);
    assert.deepEqual(await conn.received, { bytes: all.length, sha256: sha256(all) });
  });

  test(`${name}: a refused dial gets Go's 502 response with the agent's error as the body`, async (t) => {
    const cluster = await startCluster(t, { mode: 'http-connect', frontendTransport: transport });
    const port = await closedPort();
    const socket = await rawFrontendSocket(t, cluster);
    const all = readToEnd(socket);
    socket.write(connectHead(`127.0.0.1:${port}`));
    assert.equal(
      (await all).toString('latin1'),
      'HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n' +
        `dial tcp 127.0.0.1:${port}: connect: connection refused`,
    );
  });

  test(`${name}: GET gets 405 with Go's http.Error body`, async (t) => {
    const cluster = await startCluster(t, { mode: 'http-connect', frontendTransport: transport });
    const socket = await rawFrontendSocket(t, cluster);
    const all = readToEnd(socket);
    socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const text = (await all).toString('latin1');
    assert.match(
      text,
      /^HTTP\/1\.1 405 Method Not Allowed\r\nContent-Type: text\/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\r\nContent-Length: 45\r\n(Connection: close\r\n)?\r\nthis proxy only supports CONNECT passthrough\n$/,
    );
    assert.equal(cluster.server.router.pendingDialCount, 0);
  });

  test(`${name}: a garbage request gets 400 and the server keeps serving`, async (t) => {
    const cluster = await startCluster(t, { mode: 'http-connect', frontendTransport: transport });
    const dest = await target(t, echo);
    for (const garbage of ['this is not http\r\n\r\n', 'CONNECT\r\n\r\n', '\x00\x01\x02\x03\r\n\r\n']) {
      const socket = await rawFrontendSocket(t, cluster);
      const all = readToEnd(socket);
      socket.write(garbage);
      const text = (await all).toString('latin1');
      assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\nContent-Type: text\/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request/, JSON.stringify(garbage));
    }
    (await connectAndEcho(t, cluster, dest)).destroy();
    assert.equal(cluster.server.router.pendingDialCount, 0);
  });

  test(`${name}: a client that never finishes its head does not hold up other CONNECTs`, async (t) => {
    const cluster = await startCluster(t, { mode: 'http-connect', frontendTransport: transport });
    const dest = await target(t, echo);
    const slow: net.Socket[] = [];
    const heard: Buffer[] = [];
    for (let i = 0; i < 5; i++) {
      const s = await rawFrontendSocket(t, cluster);
      s.on('data', (c: Buffer) => heard.push(c));
      s.write(`CONNECT ${dest.address} HTTP/1.1\r\nHo`);
      slow.push(s);
    }
    for (let i = 0; i < 3; i++) (await connectAndEcho(t, cluster, dest)).destroy();
    assert.deepEqual(heard, []);
    assert.ok(slow.every((s) => !s.destroyed));
    assert.equal(dest.connections.all.length, 3);
  });

  test(`${name}: a request head over 1 MiB gets 431`, async (t) => {
    const cluster = await startCluster(t, { mode: 'http-connect', frontendTransport: transport });
    const dest = await target(t, echo);
    const socket = await rawFrontendSocket(t, cluster);
    const all = readToEnd(socket);
    socket.write(`CONNECT ${dest.address} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'a'.repeat(MiB + 8 * KiB)}\r\n\r\n`);
    assert.equal(
      (await all).toString('latin1'),
      'HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large',
    );
    assert.equal(dest.connections.all.length, 0);
    (await connectAndEcho(t, cluster, dest)).destroy();
  });

  test(`${name}: bytes the client sends while the dial is pending are relayed in order`, async (t) => {
    const cluster = await startCluster(t, { mode: 'http-connect', frontendTransport: transport });
    const dest = await target(t, sink);
    const socket = await rawFrontendSocket(t, cluster);
    const parts = [randomPayload(3 * KiB), randomPayload(5 * KiB), randomPayload(7 * KiB)];
    socket.write(Buffer.concat([Buffer.from(connectHead(dest.address), 'latin1'), parts[0]!]));
    socket.write(parts[1]!);
    socket.write(parts[2]!);
    assert.equal((await readChunk(socket)).toString('latin1'), ESTABLISHED);
    socket.end();
    const conn = await dest.connections.next();
    const all = Buffer.concat(parts);
    assert.deepEqual(await conn.received, { bytes: all.length, sha256: sha256(all) });
    await waitFor(() => cluster.server.router.establishedCount === 0, 'established count back to 0');
  });
}
