/**
 * The `:authority` repair (src/grpc/authority-repair.ts): nghttp2's accepted
 * byte set measured on Node's own http2, the client-stream rewriter byte for
 * byte (identical output for clean authorities, repaired literals with the
 * HPACK dynamic table kept in step), and the hand-off in front of a real
 * node:http2 server on a unix socket, with clients written by hand: one that
 * waits for the server's SETTINGS before its first request (grpc-go) and one
 * that does not, each shown to fail without the repair.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { once } from 'node:events';
import { ClientStreamRewriter, handOffRepairingAuthority, isAcceptableAuthority, repairAuthorityValue, type AuthorityRepairOptions } from '../src/grpc/authority-repair.ts';
import { HpackDecoder } from '../src/grpc/hpack-decoder.ts';
import { http2Settings } from '../src/grpc/http2-settings.ts';
import { Flag, FrameType, RawH2Client, STATIC, frame, grpcRequestBlock, headerBlocks, hpack, parseFrames, type ReceivedFrame } from './helpers/http2-raw.ts';
import { waitFor } from './helpers/wait.ts';

const UDS_AUTHORITY = '/etc/kubernetes/konnectivity-server/konnectivity-server.socket';
const REPAIRED = '_etc_kubernetes_konnectivity-server_konnectivity-server.socket';
const NGHTTP2_PROTOCOL_ERROR = 1;

const latin1 = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

function tempSocketPath(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-authority-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'frontend.sock');
}

interface TestServer {
  path: string;
  /** How each connection reached http2: its own socket, or a rewriting Duplex. */
  handOffs: Array<'native' | 'rewritten'>;
  /** `:authority` of each request, as the handler saw it. */
  authorities: string[];
}

/**
 * A node:http2 server (our settings) fed from a net.Server on a unix socket,
 * the way GrpcServer feeds its frontend: through the repairing hand-off, or
 * straight (`repair: false`, today's behaviour). Every request gets a 200.
 */
async function startServer(t: TestContext, repair: boolean, options: AuthorityRepairOptions = {}): Promise<TestServer> {
  const result: TestServer = { path: tempSocketPath(t), handOffs: [], authorities: [] };
  const h2 = http2.createServer({ settings: http2Settings });
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (s) => {
    sessions.add(s);
    s.on('error', () => {});
  });
  h2.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    result.authorities.push(String(headers[':authority']));
    stream.respond({ ':status': 200, 'x-authority': String(headers[':authority']) }, { endStream: true });
  });
  const listener = net.createServer((socket) => {
    if (!repair) {
      result.handOffs.push('native');
      h2.emit('connection', socket);
      return;
    }
    handOffRepairingAuthority(
      socket,
      (s: Duplex) => {
        result.handOffs.push(s === socket ? 'native' : 'rewritten');
        h2.emit('connection', s);
      },
      options,
    );
  });
  listener.listen(result.path);
  await once(listener, 'listening');
  t.after(() => {
    for (const s of sessions) s.destroy();
    listener.close();
  });
  return result;
}

async function rawClient(t: TestContext, server: TestServer, waitForServerSettings: boolean): Promise<RawH2Client> {
  // The eager style sends its preface with the first request, as Node's and C-core's clients do.
  const c = await RawH2Client.connect(server.path, { waitForServerSettings, prefaceWithFirstRequest: !waitForServerSettings });
  t.after(() => c.close());
  return c;
}

test("nghttp2 in this Node accepts exactly the authority bytes isAcceptableAuthority accepts (byte by byte, no '@')", async (t) => {
  const server = await startServer(t, false);
  const client = await rawClient(t, server, false);
  for (let b = 0; b < 256; b++) {
    const value = Buffer.from([0x61, b, 0x62]);
    client.request(1 + 2 * b, grpcRequestBlock(hpack.literal('without', STATIC.AUTHORITY, value), '/'));
  }
  const refused: number[] = [];
  for (let b = 0; b < 256; b++) {
    const r = await client.response(1 + 2 * b);
    const acceptedByNghttp2 = r.reset === null;
    if (!acceptedByNghttp2) refused.push(b);
    assert.equal(isAcceptableAuthority(Buffer.from([0x61, b, 0x62])), acceptedByNghttp2, `byte 0x${b.toString(16)}`);
  }
  assert.ok(refused.includes('/'.charCodeAt(0)) && refused.includes('@'.charCodeAt(0)));
  assert.equal(latin1(repairAuthorityValue(Buffer.from(UDS_AUTHORITY))), REPAIRED);
});

// --- the rewriter, byte for byte ---------------------------------------------

/**
 * A client's bytes after the preface, exercising every header block form:
 * a padded HEADERS with PRIORITY split into CONTINUATIONs, a Huffman-coded
 * authority added to the dynamic table and then referenced by index, a
 * never-indexed literal name, a table size update, a block over 16 KiB, and
 * non-header frames in between (SETTINGS, its ACK, WINDOW_UPDATE, DATA, PING).
 */
function clientBytes(authority: string): { bytes: Buffer; blocks: number } {
  const block1 = grpcRequestBlock(hpack.literal('incremental', STATIC.AUTHORITY, authority, true), '/ProxyService/Proxy');
  const padded = Buffer.concat([Buffer.from([3]), Buffer.from([0x80, 0, 0, 0, 15]), block1.subarray(0, 10), Buffer.alloc(3)]);
  const bigValue = 'v'.repeat(20_000);
  const frames = [
    frame(FrameType.SETTINGS, 0, 0, Buffer.from([0, 2, 0, 0, 0, 0])),
    frame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.from([0, 0x0f, 0, 0])),
    frame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, 1, padded),
    frame(FrameType.CONTINUATION, 0, 1, block1.subarray(10, 20)),
    frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block1.subarray(20)),
    frame(FrameType.SETTINGS, Flag.ACK, 0),
    frame(FrameType.DATA, Flag.END_STREAM, 1, Buffer.from('00000000050801120162', 'hex')),
    frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, grpcRequestBlock(hpack.indexed(62), '/ProxyService/Proxy')),
    frame(FrameType.PING, 0, 0, Buffer.alloc(8, 7)),
    frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 5, grpcRequestBlock(hpack.literal('never', ':authority', authority), '/p')),
    frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 7, Buffer.concat([hpack.sizeUpdate(256), grpcRequestBlock(hpack.literal('incremental', STATIC.AUTHORITY, authority), '/q', [hpack.literal('without', 'x-big', bigValue)])])),
    frame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 9, grpcRequestBlock(hpack.indexed(62), '/r')),
  ];
  return { bytes: Buffer.concat(frames), blocks: 5 };
}

/** Feeds `bytes` to a rewriter in chunks of the given sizes (cycled) and returns everything it produced. */
function rewrite(bytes: Buffer, chunkSizes: readonly number[], dropFirstSettingsAck = false): { out: Buffer; rewriter: ClientStreamRewriter } {
  const rewriter = new ClientStreamRewriter({ dropFirstSettingsAck });
  const out: Uint8Array[] = [];
  for (let off = 0, i = 0; off < bytes.length; i++) {
    const n = chunkSizes[i % chunkSizes.length]!;
    out.push(...rewriter.push(bytes.subarray(off, off + n)));
    off += n;
  }
  return { out: Buffer.concat(out), rewriter };
}

const chunkings: ReadonlyArray<[string, number[]]> = [
  ['one chunk', [1 << 30]],
  ['one byte at a time', [1]],
  ['uneven chunks', [7, 1, 9, 100, 3, 4096, 2, 17]],
];

test('rewriter: clean authorities (raw, Huffman, indexed) leave the byte stream identical, however it is chunked', () => {
  for (const authority of ['localhost', '127.0.0.1:8090', '[::1]:8090', 'konnectivity-server.kube-system.svc']) {
    const { bytes } = clientBytes(authority);
    for (const [how, sizes] of chunkings) {
      const { out, rewriter } = rewrite(bytes, sizes);
      assert.ok(out.equals(bytes), `${authority}, ${how}`);
      assert.equal(rewriter.repairedBlocks, 0);
      assert.equal(rewriter.active, true);
    }
  }
});

test('rewriter: the first SETTINGS ACK (answering our own preface SETTINGS) is cut out, nothing else', () => {
  const { bytes } = clientBytes('localhost');
  const ack = frame(FrameType.SETTINGS, Flag.ACK, 0);
  const at = bytes.indexOf(ack);
  const expected = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + ack.length)]);
  const twoAcks = Buffer.concat([bytes, ack]);
  for (const [how, sizes] of chunkings) {
    assert.ok(rewrite(twoAcks, sizes, true).out.equals(Buffer.concat([expected, ack])), how);
  }
});

test('rewriter: a refused authority is repaired in every literal form; indexes, table sizes and every other frame stay as the client sent them', () => {
  const { bytes, blocks } = clientBytes(UDS_AUTHORITY);
  for (const [how, sizes] of chunkings) {
    const { out, rewriter } = rewrite(bytes, sizes);
    assert.equal(rewriter.repairedBlocks, 3, how); // the three literals; the indexed references need nothing
    const inFrames = parseFrames(bytes);
    const outFrames = parseFrames(out);
    // Non-header frames: the same frames, in the same order.
    const others = (fs: ReceivedFrame[]): string[] => fs.filter((f) => f.type !== FrameType.HEADERS && f.type !== FrameType.CONTINUATION).map((f) => `${f.type}/${f.flags}/${f.streamId}/${f.payload.toString('hex')}`);
    assert.deepEqual(others(outFrames), others(inFrames), how);

    const inBlocks = headerBlocks(inFrames);
    const outBlocks = headerBlocks(outFrames);
    assert.equal(outBlocks.length, blocks);
    const client = new HpackDecoder(); // what the client's encoder holds
    const server = new HpackDecoder(); // what nghttp2 will hold
    for (let i = 0; i < blocks; i++) {
      const sent = client.decode(inBlocks[i]!.block);
      const got = server.decode(outBlocks[i]!.block);
      assert.deepEqual(
        got.map((f) => [latin1(f.name), latin1(f.value)]),
        sent.map((f) => [latin1(f.name), latin1(f.name) === ':authority' ? latin1(repairAuthorityValue(f.value)) : latin1(f.value)]),
        `${how}: block ${i}`,
      );
      assert.equal(server.tableSize, client.tableSize, `${how}: table size after block ${i}`);
      assert.equal(server.dynamicTable.length, client.dynamicTable.length, `${how}: entries after block ${i}`);
      // Stream, END_STREAM and PRIORITY as sent; padding dropped.
      const o = outBlocks[i]!.opener;
      const s = inBlocks[i]!.opener;
      assert.equal(o.streamId, s.streamId);
      assert.equal(o.flags & (Flag.END_STREAM | Flag.PRIORITY), s.flags & (Flag.END_STREAM | Flag.PRIORITY));
      if (s.flags & Flag.PRIORITY) assert.deepEqual(o.payload.subarray(0, 5), Buffer.from([0x80, 0, 0, 0, 15]));
    }
    // A repaired block over 16 KiB goes out as HEADERS + CONTINUATION frames of at most 16384 bytes each.
    assert.ok(outBlocks[3]!.frames >= 2, `${how}: ${outBlocks[3]!.frames} frames`);
    assert.ok(outFrames.every((f) => f.payload.length <= 16_384));
  }
});

test('rewriter: a header block over the bound, or malformed framing, ends the repair and passes everything on unchanged', () => {
  const small = new ClientStreamRewriter({ dropFirstSettingsAck: false, maxHeaderBlockBytes: 64 });
  const first = frame(FrameType.HEADERS, Flag.END_HEADERS, 1, grpcRequestBlock(hpack.literal('incremental', STATIC.AUTHORITY, UDS_AUTHORITY), '/'));
  const second = frame(FrameType.HEADERS, Flag.END_HEADERS, 3, grpcRequestBlock(hpack.literal('without', STATIC.AUTHORITY, UDS_AUTHORITY), '/'));
  const passed = Buffer.concat([...small.push(first), ...small.push(second)]);
  assert.ok(passed.equals(Buffer.concat([first, second])));
  assert.equal(small.active, false);

  const orphan = new ClientStreamRewriter({ dropFirstSettingsAck: false });
  const stray = frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, Buffer.from([0x82]));
  assert.ok(Buffer.concat([...orphan.push(stray), ...orphan.push(second)]).equals(Buffer.concat([stray, second])));
  assert.equal(orphan.active, false);

  const badHpack = new ClientStreamRewriter({ dropFirstSettingsAck: false });
  const broken = frame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80])); // index 0
  assert.ok(Buffer.concat([...badHpack.push(broken), ...badHpack.push(second)]).equals(Buffer.concat([broken, second])));
  assert.equal(badHpack.active, false);
});

// --- the hand-off in front of node:http2 --------------------------------------

for (const waitForServerSettings of [true, false]) {
  const style = waitForServerSettings ? 'a client that waits for the server SETTINGS (grpc-go)' : 'a client that sends its request at once';

  test(`hand-off: ${style} with a clean authority gets the native socket handed to http2`, async (t) => {
    const server = await startServer(t, true);
    const client = await rawClient(t, server, waitForServerSettings);
    client.request(1, grpcRequestBlock(hpack.literal('incremental', STATIC.AUTHORITY, 'localhost', true), '/a'));
    client.request(3, grpcRequestBlock(hpack.indexed(62), '/b'));
    for (const id of [1, 3]) {
      const r = await client.response(id);
      assert.equal(r.reset, null);
      assert.equal(r.headers[0]?.get(':status'), '200');
      assert.equal(r.headers[0]?.get('x-authority'), 'localhost');
    }
    assert.deepEqual(server.handOffs, ['native']);
    const settings = client.frames.filter((f) => f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK));
    if (waitForServerSettings) {
      // Two server SETTINGS frames (ours, empty, then nghttp2's), both acknowledged without complaint.
      assert.equal(settings.length, 2);
      assert.equal(settings[0]!.payload.length, 0);
    } else {
      // The request came with the preface: we sent nothing, so no round trip for an ACK; nghttp2's SETTINGS only.
      assert.equal(settings.length, 1);
      assert.ok(settings[0]!.payload.length > 0, "nghttp2's SETTINGS carry parameters");
    }
    assert.ok(!client.frames.some((f) => f.type === FrameType.GOAWAY), 'no GOAWAY');
  });

  test(`hand-off: ${style} with a unix socket path as authority is served through the rewriter (incremental indexing, then an indexed reference); refused without it`, async (t) => {
    const requests = (client: RawH2Client): void => {
      client.request(1, grpcRequestBlock(hpack.literal('incremental', STATIC.AUTHORITY, UDS_AUTHORITY, true), '/a'), Buffer.from('0000000000', 'hex'));
      client.request(3, grpcRequestBlock(hpack.indexed(62), '/b'));
      client.request(5, grpcRequestBlock(hpack.literal('without', STATIC.AUTHORITY, UDS_AUTHORITY), '/c'));
    };
    const without = await startServer(t, false);
    const plain = await rawClient(t, without, waitForServerSettings);
    requests(plain);
    for (const id of [1, 3, 5]) assert.equal((await plain.response(id)).reset, NGHTTP2_PROTOCOL_ERROR, `stream ${id} without the repair`);
    assert.deepEqual(without.authorities, []);

    const server = await startServer(t, true);
    const client = await rawClient(t, server, waitForServerSettings);
    requests(client);
    for (const id of [1, 3, 5]) {
      const r = await client.response(id);
      assert.equal(r.reset, null, `stream ${id}`);
      assert.equal(r.headers[0]?.get(':status'), '200');
      assert.equal(r.headers[0]?.get('x-authority'), REPAIRED);
    }
    assert.deepEqual(server.handOffs, ['rewritten']);
    assert.deepEqual(server.authorities, [REPAIRED, REPAIRED, REPAIRED]);
    // Keepalive still works through the rewriter: a PING is answered by nghttp2.
    client.write(frame(FrameType.PING, 0, 0, Buffer.from('12345678')));
    await client.waitFor((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0, 'the PING ACK');
  });
}

test('hand-off: a client that sends no request within the peek time is rewritten (and still served); one that hangs up while peeking is closed', async (t) => {
  const server = await startServer(t, true, { peekTimeoutMs: 200 });
  const idle = await rawClient(t, server, true);
  await waitFor(() => server.handOffs.length === 1, 'the peek to give up');
  assert.deepEqual(server.handOffs, ['rewritten']);
  idle.request(1, grpcRequestBlock(hpack.literal('incremental', STATIC.AUTHORITY, UDS_AUTHORITY), '/a'));
  assert.equal((await idle.response(1)).headers[0]?.get('x-authority'), REPAIRED);

  const quitter = await RawH2Client.connect(server.path);
  quitter.close();
  await waitFor(() => quitter.closed, 'the quitter to be closed');
  assert.equal(server.handOffs.length, 1, 'nothing handed to http2 for a client that left');
});

test('hand-off: bytes that are not HTTP/2 go to http2 natively, with nothing sent by us', async (t) => {
  const server = await startServer(t, true);
  const socket = net.connect(server.path);
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  const received: Buffer[] = [];
  socket.on('data', (c: Buffer) => received.push(c));
  const closed = once(socket, 'close');
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  await closed;
  assert.deepEqual(server.handOffs, ['native']);
  // nghttp2 answers a bad preface itself (SETTINGS + GOAWAY); no empty SETTINGS of ours came first.
  const bytes = Buffer.concat(received);
  assert.ok(bytes.length === 0 || !(bytes.readUIntBE(0, 3) === 0 && bytes[3] === FrameType.SETTINGS), bytes.toString('hex'));
});
