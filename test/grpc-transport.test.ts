import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GrpcServer } from '../src/grpc/grpc-server.ts';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { GrpcCode } from '../src/grpc/status.ts';

test('bidi packet stream over a unix socket: headers, packets both ways, trailers', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-'));
  const sock = path.join(dir, 's.sock');
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    handlers: {
      '/AgentService/Connect': (call) => {
        assert.equal(call.single('agentid'), 'a1');
        call.sendHeaders({ serverid: 's1', servercount: '3' });
        call.stream.onPacket = (p) => {
          call.stream.send(p); // echo
        };
        call.stream.onRemoteEnd = () => call.finish(GrpcCode.OK);
      },
    },
  });
  server.listener.listen(sock);
  await once(server.listener, 'listening');
  const ch = await GrpcChannel.connect({ transport: 'unix', path: sock });
  const call = ch.openStream('/AgentService/Connect', { agentid: 'a1' });
  const headers = await call.headers;
  assert.equal(headers['serverid'], 's1');
  // grpc-go sends no date header, and Node would keep one with every stream.
  assert.equal(headers['date'], undefined);
  const got: Packet[] = [];
  call.stream.onPacket = (p) => got.push(p);
  const big = 1n << 62n;
  call.stream.send(packets.dialRequest('127.0.0.1:80', big));
  call.stream.send(packets.data(7n, Buffer.alloc(100_000, 1)));
  call.closeSend();
  const status = await call.status;
  assert.equal(status.code, 0);
  assert.equal(got.length, 2);
  assert.equal(got[0]!.type, PacketType.DIAL_REQ);
  assert.equal(got[0]!.type === PacketType.DIAL_REQ && got[0]!.dialRequest.random, big);
  assert.equal(got[1]!.type === PacketType.DATA && got[1]!.data.data.length, 100_000);
  ch.close();
  await server.closeGracefully();
});

test('a handler that released the request headers keeps its stream: packets, method and trailers still work', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-'));
  const sock = path.join(dir, 's.sock');
  const seen: Array<{ before: string | undefined; after: string | undefined; raw: number; method: string }> = [];
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    handlers: {
      '/ProxyService/Proxy': (call) => {
        const before = call.single('x-probe');
        call.releaseMetadata();
        seen.push({ before, after: call.single('x-probe'), raw: call.rawHeaders.length, method: call.method });
        call.sendHeaders();
        call.stream.onPacket = (p) => call.stream.send(p);
        call.stream.onRemoteEnd = () => call.finish(GrpcCode.OK);
      },
    },
  });
  server.listener.listen(sock);
  await once(server.listener, 'listening');
  const ch = await GrpcChannel.connect({ transport: 'unix', path: sock });
  const call = ch.openStream('/ProxyService/Proxy', { 'x-probe': 'v' });
  const got: Packet[] = [];
  call.stream.onPacket = (p) => got.push(p);
  call.stream.send(packets.dialRequest('127.0.0.1:80', 5n));
  call.closeSend();
  assert.equal((await call.status).code, GrpcCode.OK);
  assert.deepEqual(seen, [{ before: 'v', after: undefined, raw: 0, method: '/ProxyService/Proxy' }]);
  assert.equal(got.length, 1);
  assert.equal(got[0]!.type === PacketType.DIAL_REQ && got[0]!.dialRequest.random, 5n);
  ch.close();
  await server.closeGracefully();
});

test('unknown method gets UNIMPLEMENTED as a trailers-only response', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-'));
  const sock = path.join(dir, 's.sock');
  const server = new GrpcServer({ keepaliveTimeMs: 0, handlers: { '/ProxyService/Proxy': () => {} } });
  server.listener.listen(sock);
  await once(server.listener, 'listening');
  const ch = await GrpcChannel.connect({ transport: 'unix', path: sock });
  const call = ch.openStream('/pkg.ProxyService/Proxy');
  await assert.rejects(call.headers, /Unimplemented/);
  const st = await call.status;
  assert.equal(st.code, GrpcCode.UNIMPLEMENTED);
  assert.match(st.message, /unknown service pkg.ProxyService/);
  ch.close();
  await server.closeGracefully();
});

test('repeated metadata keys are seen separately: two agentid values are refused as upstream does', async () => {
  const { startLocalCluster } = await import('../src/dev/local-cluster.ts');
  const cluster = await startLocalCluster({ mode: 'grpc', agents: 0 });
  try {
    const ch = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: cluster.server.addresses.agentPort, tls: { ca: cluster.pki.ca.cert } });
    const call = ch.openStream('/AgentService/Connect', { agentid: ['a', 'b'] } as unknown as Record<string, string>);
    await assert.rejects(call.headers, /expected one agent ID/);
    assert.equal(cluster.server.router.backendList.length, 0);
    ch.close();
  } finally {
    await cluster.close();
  }
});

for (const http2Implementation of ['builtin', 'node'] as const) {
  test(`a request that is not gRPC gets 415 with the reason in the body (${http2Implementation} HTTP/2)`, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kts-'));
    const sock = path.join(dir, 's.sock');
    const server = new GrpcServer({ http2: http2Implementation, keepaliveTimeMs: 0, handlers: { '/ProxyService/Proxy': () => assert.fail('handler reached') } });
    server.listener.listen(sock);
    await once(server.listener, 'listening');
    const c = http2.connect('http://localhost', { createConnection: () => net.connect(sock) });
    const req = c.request({ ':method': 'POST', ':path': '/ProxyService/Proxy', 'content-type': 'text/plain' });
    req.end();
    const [headers] = (await once(req, 'response')) as [Record<string, unknown>];
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    await once(req, 'end');
    assert.equal(headers[':status'], 415);
    assert.equal(Buffer.concat(chunks).toString(), 'invalid gRPC request content-type "text/plain"');
    c.close();
    await server.closeGracefully();
  });
}
