/**
 * The read-restart timer of client HTTP/2 sessions (src/grpc/read-restart.ts)
 * runs while packets flow or a write is stuck, and stops when the session is
 * quiet, so an idle agent is not woken every 10 ms.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GrpcServer } from '../src/grpc/grpc-server.ts';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { QUIET_TICKS, READ_RESTART_INTERVAL_MS, readRestarterOf } from '../src/grpc/read-restart.ts';
import { packets, type Packet } from '../src/protocol/packet.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { sleep, waitFor } from './helpers/wait.ts';

const socketPath = (): string => path.join(mkdtempSync(path.join(tmpdir(), 'kts-rr-')), 's.sock');
/** Comfortably longer than the quiet period after which an idle timer stops. */
const quietPeriodMs = QUIET_TICKS * READ_RESTART_INTERVAL_MS;

test('the timer stops on a quiet session and a packet starts it again', async () => {
  const sock = socketPath();
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    handlers: {
      '/AgentService/Connect': (call) => {
        call.sendHeaders({});
        call.stream.onPacket = (p) => call.stream.send(p);
        call.stream.onRemoteEnd = () => call.finish(GrpcCode.OK);
      },
    },
  });
  server.listener.listen(sock);
  await once(server.listener, 'listening');
  const ch = await GrpcChannel.connect({ transport: 'unix', path: sock });
  try {
    const restarter = readRestarterOf(ch.session);
    assert.ok(restarter, 'a client session has a read restarter');
    await waitFor(() => !restarter.armed, 'the timer of an idle session to stop');

    const call = ch.openStream('/AgentService/Connect', {});
    await call.headers;
    const echoed: Packet[] = [];
    call.stream.onPacket = (p) => echoed.push(p);
    await waitFor(() => !restarter.armed, 'the timer to stop again after the stream opened');
    call.stream.send(packets.data(1n, Buffer.from('ping')));
    assert.equal(restarter.armed, true, 'sending a packet arms the timer');
    await waitFor(() => echoed.length === 1, 'the echo');
    await waitFor(() => !restarter.armed, 'the timer to stop once packets stop');
    call.closeSend();
    await call.status;
  } finally {
    ch.close();
    await server.closeGracefully();
  }
});

test('the timer keeps running while a write is stuck, with no packet moving, and stops once it drains', async () => {
  const sock = socketPath();
  // An HTTP/2 "server" that grants huge windows and then stops reading: the
  // client's writes fill the socket buffers and wait in libuv's write queue,
  // the state in which a Node session stops reading (read-restart.ts).
  let peer: net.Socket | undefined;
  let drained = 0;
  const stuck = net.createServer((socket) => {
    peer = socket;
    const settings = Buffer.alloc(9 + 6);
    settings.writeUIntBE(6, 0, 3);
    settings[3] = 0x4; // SETTINGS
    settings.writeUInt16BE(0x4, 9); // INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(0x7fffffff, 11);
    const windowUpdate = Buffer.alloc(9 + 4);
    windowUpdate.writeUIntBE(4, 0, 3);
    windowUpdate[3] = 0x8; // WINDOW_UPDATE, stream 0
    windowUpdate.writeUInt32BE(0x7fffffff - 65_535, 9);
    socket.write(Buffer.concat([settings, windowUpdate]));
    socket.on('data', (chunk: Buffer) => (drained += chunk.length));
    socket.on('error', () => {});
    socket.pause();
  });
  stuck.listen(sock);
  await once(stuck, 'listening');
  const ch = await GrpcChannel.connect({ transport: 'unix', path: sock });
  try {
    const restarter = readRestarterOf(ch.session);
    assert.ok(restarter);
    const call = ch.openStream('/AgentService/Connect', {});
    call.headers.catch(() => {});
    call.status.catch(() => {});
    const total = 8 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 7);
    for (let sent = 0; sent < total; sent += chunk.length) call.stream.send(packets.data(1n, chunk));
    // Nothing is sent or received from here on; only the stuck write can keep the timer going.
    await sleep(4 * quietPeriodMs);
    assert.equal(restarter.armed, true, 'the timer still runs while the write is stuck');
    assert.ok(drained < total, `the peer has not read everything yet (${drained} of ${total} bytes)`);

    peer!.resume();
    await waitFor(() => drained >= total, 'the peer to read everything');
    await waitFor(() => !restarter.armed, 'the timer to stop once the write queue drained');
  } finally {
    ch.close();
    peer?.destroy();
    stuck.close();
  }
});
