/**
 * Large DATA packets over a real TLS HTTP/2 connection span the 16 KiB TLS
 * records, so the receiver gets them in pieces (no join) and a relay sends
 * them on as a writev. Every byte must arrive intact and in order, both on
 * the hop that received pieces and on the hop after it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDevPki } from '../src/dev/pki.ts';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { GrpcServer } from '../src/grpc/grpc-server.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { PacketType, packets, payloadLength } from '../src/protocol/packet.ts';
import { waitFor } from './helpers/wait.ts';

test('64 KiB DATA packets over TLS arrive in pieces, byte-exact, and an echo of those pieces arrives byte-exact too', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-grpc-pieces-'));
  const pki = await createDevPki(path.join(dir, 'pki'));
  let receivedInPieces = 0;
  let receivedWhole = 0;
  const serverHash = createHash('sha256');
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    tls: { cert: pki.server.cert, key: pki.server.key },
    handlers: {
      '/AgentService/Connect': (call) => {
        call.sendHeaders({});
        call.stream.onPacket = (p) => {
          if (p.type !== PacketType.DATA) return;
          if (p.data.pieces === undefined) {
            receivedWhole++;
            serverHash.update(p.data.data);
          } else {
            receivedInPieces++;
            for (const piece of p.data.pieces) serverHash.update(piece);
          }
          call.stream.send(p); // sent on as received: pieces go out as one writev
        };
        call.stream.onRemoteEnd = () => call.finish(GrpcCode.OK);
      },
    },
  });
  server.listener.listen(0, '127.0.0.1');
  await once(server.listener, 'listening');
  const port = (server.listener.address() as net.AddressInfo).port;
  const ch = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port, tls: { ca: pki.ca.cert, servername: 'localhost' } });
  try {
    const call = ch.openStream('/AgentService/Connect', { agentid: 'a1' });
    await call.headers;
    const clientHash = createHash('sha256');
    let echoedBytes = 0;
    call.stream.onPacket = (p) => {
      if (p.type !== PacketType.DATA) return;
      assert.equal(p.data.connectID, 7n);
      echoedBytes += payloadLength(p.data);
      clientHash.update(p.data.data);
    };
    const sentHash = createHash('sha256');
    const count = 64;
    for (let i = 0; i < count; i++) {
      const payload = randomBytes(64 * 1024);
      sentHash.update(payload);
      call.stream.send(packets.data(7n, payload));
    }
    await waitFor(() => echoedBytes === count * 64 * 1024, 'the echo of every byte', 10_000);
    call.closeSend();
    assert.equal((await call.status).code, GrpcCode.OK);
    const expected = sentHash.digest('hex');
    assert.equal(serverHash.digest('hex'), expected, 'bytes as the server received them');
    assert.equal(clientHash.digest('hex'), expected, 'bytes after the echo');
    assert.equal(receivedInPieces + receivedWhole, count);
    assert.ok(receivedInPieces > 0, `no packet arrived in pieces (${receivedWhole} whole)`);
  } finally {
    ch.close();
    server.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});
