/**
 * `PacketStream.sendBatched`: a packet nobody waits for (the server's
 * CLOSE_REQ for a connection whose client is gone) waits briefly and leaves
 * in one write with the next packet, so a client that closes one connection
 * and dials the next costs one write (and one wake-up of the agent) instead
 * of two. The order of packets must never change, a batched packet with
 * nothing after it must still go out, and ending the stream must not lose
 * one. Real HTTP/2 over a unix socket; writes are counted at the sending
 * stream's Writable interface.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Http2Stream } from 'node:http2';
import { GrpcChannel, type GrpcClientCall } from '../src/grpc/grpc-client.ts';
import { GrpcServer, type GrpcServerCall } from '../src/grpc/grpc-server.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { PacketType, packetTypeName, packets, type Packet } from '../src/protocol/packet.ts';
import { sleep, waitFor } from './helpers/wait.ts';

interface Pair {
  client: GrpcClientCall;
  server: GrpcServerCall;
  /** Packets the server received, in order. */
  received: Packet[];
  serverSawEnd: () => boolean;
  close(): Promise<void>;
}

async function openPair(): Promise<Pair> {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-packet-batching-'));
  const socketPath = path.join(dir, 'grpc.sock');
  const received: Packet[] = [];
  let ended = false;
  let serverCall: GrpcServerCall | undefined;
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    handlers: {
      '/AgentService/Connect': (call) => {
        serverCall = call;
        call.sendHeaders({});
        call.stream.onPacket = (p) => received.push(p);
        call.stream.onRemoteEnd = () => {
          ended = true;
          call.finish(GrpcCode.OK);
        };
      },
    },
  });
  server.listener.listen(socketPath);
  await once(server.listener, 'listening');
  const ch = await GrpcChannel.connect({ transport: 'unix', path: socketPath });
  const client = ch.openStream('/AgentService/Connect', { agentid: 'a1' });
  await client.headers;
  await waitFor(() => serverCall !== undefined, 'the server side of the call');
  return {
    client,
    server: serverCall!,
    received,
    serverSawEnd: () => ended,
    async close() {
      ch.close();
      server.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Counts the writes the Writable machinery hands to the HTTP/2 stream (one per `_write` or `_writev`). */
function countWrites(h2: Http2Stream): { writes: number; chunks: number } {
  const counts = { writes: 0, chunks: 0 };
  const writable = h2 as unknown as {
    _write(chunk: unknown, enc: BufferEncoding, cb: (err?: Error | null) => void): void;
    _writev(chunks: { chunk: unknown }[], cb: (err?: Error | null) => void): void;
  };
  const write = writable._write.bind(h2);
  const writev = writable._writev.bind(h2);
  writable._write = (chunk, enc, cb) => {
    counts.writes++;
    counts.chunks++;
    write(chunk, enc, cb);
  };
  writable._writev = (chunks, cb) => {
    counts.writes++;
    counts.chunks += chunks.length;
    writev(chunks, cb);
  };
  return counts;
}

const types = (ps: Packet[]): string[] => ps.map((p) => packetTypeName(p.type));

test('a batched CLOSE_REQ leaves in one write with the next packet, and the order on the wire stays the send order', async () => {
  const pair = await openPair();
  try {
    const counts = countWrites(pair.client.stream.h2);
    pair.client.stream.sendBatched(packets.closeRequest(5n));
    await new Promise((resolve) => setImmediate(resolve)); // a later turn of the event loop, as the next dial's answer would be
    assert.equal(counts.writes, 0, 'the close was written on its own');
    pair.client.stream.send(packets.dialRequest('10.0.0.1:443', 9n));
    await waitFor(() => pair.received.length === 2, 'both packets at the server');
    assert.deepEqual(types(pair.received), ['CLOSE_REQ', 'DIAL_REQ']);
    assert.equal(counts.writes, 1, 'close and dial request in one write');
    assert.equal(counts.chunks, 2);
  } finally {
    await pair.close();
  }
});

test('batched packets with nothing after them still go out on their own', async () => {
  const pair = await openPair();
  try {
    const received: Packet[] = [];
    pair.client.stream.onPacket = (p) => received.push(p);
    pair.server.stream.sendBatched(packets.closeRequest(11n));
    pair.server.stream.sendBatched(packets.closeRequest(12n));
    await waitFor(() => received.length === 2, 'both CLOSE_REQs at the client');
    assert.deepEqual(
      received.map((p) => (p.type === PacketType.CLOSE_REQ ? p.closeRequest.connectID : -1n)),
      [11n, 12n],
    );
  } finally {
    await pair.close();
  }
});

test('ending the stream writes batched packets first', async () => {
  const pair = await openPair();
  try {
    pair.client.stream.sendBatched(packets.closeRequest(3n));
    pair.client.closeSend();
    await waitFor(() => pair.serverSawEnd(), 'the end of the client stream at the server');
    assert.deepEqual(types(pair.received), ['CLOSE_REQ']);
  } finally {
    await pair.close();
  }
});

test('send writes a close at once', async () => {
  const pair = await openPair();
  try {
    const counts = countWrites(pair.client.stream.h2);
    pair.client.stream.send(packets.closeResponse(5n));
    await sleep(0);
    assert.equal(counts.writes, 1);
    await waitFor(() => pair.received.length === 1, 'the close at the server');
  } finally {
    await pair.close();
  }
});
