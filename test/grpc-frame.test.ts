import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GRPC_FRAME_HEADER, GrpcDeframer, writeFrameHeader } from '../src/protocol/grpc-frame.ts';
import { decodePacket, encodePacketWithHeadroom } from '../src/protocol/codec.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { ProtocolError, type ProtocolErrorCode } from '../src/protocol/protocol-error.ts';

function frame(message: Uint8Array, flag = 0): Buffer {
  const out = Buffer.alloc(GRPC_FRAME_HEADER + message.length);
  writeFrameHeader(out, message.length);
  out[0] = flag;
  out.set(message, GRPC_FRAME_HEADER);
  return out;
}

function messageOf(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
}

/** Feeds chunks and returns copies of the messages, so later reuse of a chunk cannot mask a bug. */
function deframe(chunks: Uint8Array[], maxMessageBytes = 1 << 22): Uint8Array[] {
  const deframer = new GrpcDeframer(maxMessageBytes);
  const out: Uint8Array[] = [];
  for (const c of chunks) deframer.push(c, { message: (m) => out.push(Uint8Array.from(m)) });
  assert.equal(deframer.midMessage, false, 'stream ended mid-message');
  return out;
}

function assertProtocolError(fn: () => unknown, code: ProtocolErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code, `wrong code for: ${err.message}`);
    return true;
  });
}

// Mixed sizes: empty messages at the start, middle and end, 1-byte, and a body that spans many chunks.
const messages = [new Uint8Array(0), messageOf(1, 1), messageOf(7, 2), new Uint8Array(0), messageOf(300, 3), messageOf(5, 4), new Uint8Array(0)];
const stream = Buffer.concat(messages.map((m) => frame(m)));

describe('GrpcDeframer', () => {
  test('writeFrameHeader: flag 0 and a big-endian 32-bit length', () => {
    const header = new Uint8Array(GRPC_FRAME_HEADER).fill(0xee);
    writeFrameHeader(header, 0x01020304);
    assert.deepEqual(header, Uint8Array.of(0, 1, 2, 3, 4));
    writeFrameHeader(header, 0xfffffffe);
    assert.deepEqual(header, Uint8Array.of(0, 0xff, 0xff, 0xff, 0xfe));
  });

  test('several messages in one chunk', () => {
    assert.deepEqual(deframe([stream]), messages);
  });

  test('split into two chunks at every byte boundary', () => {
    for (let cut = 0; cut <= stream.length; cut++) {
      assert.deepEqual(deframe([stream.subarray(0, cut), stream.subarray(cut)]), messages, `cut at ${cut}`);
    }
  });

  test('split into three chunks at every pair of boundaries', () => {
    const small = Buffer.concat([frame(messageOf(3, 9)), frame(new Uint8Array(0)), frame(messageOf(6, 8))]);
    const expected = [messageOf(3, 9), new Uint8Array(0), messageOf(6, 8)];
    for (let a = 0; a <= small.length; a++) {
      for (let b = a; b <= small.length; b++) {
        assert.deepEqual(deframe([small.subarray(0, a), small.subarray(a, b), small.subarray(b)]), expected, `cuts at ${a}, ${b}`);
      }
    }
  });

  test('one byte at a time', () => {
    const chunks = Array.from(stream, (b) => Uint8Array.of(b));
    assert.deepEqual(deframe(chunks), messages);
  });

  test('property: any chunking yields the same messages', () => {
    const messageArb = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 200 }));
    fc.assert(
      fc.property(fc.array(messageArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, cutSeeds) => {
        const all = Buffer.concat(msgs.map((m) => frame(m)));
        const cuts = [...new Set(cutSeeds.map((c) => c % (all.length + 1)))].sort((x, y) => x - y);
        const chunks: Uint8Array[] = [];
        let prev = 0;
        for (const c of [...cuts, all.length]) {
          chunks.push(all.subarray(prev, c));
          prev = c;
        }
        assert.deepEqual(deframe(chunks), msgs.map((m) => Uint8Array.from(m)));
      }),
      { numRuns: 500 },
    );
  });

  test('zero-length messages are delivered, both inside one chunk and with a split header', () => {
    assert.deepEqual(deframe([frame(new Uint8Array(0))]), [new Uint8Array(0)]);
    const f = frame(new Uint8Array(0));
    assert.deepEqual(deframe([f.subarray(0, 2), f.subarray(2)]), [new Uint8Array(0)]);
    assert.deepEqual(deframe([Buffer.concat([f, f, f])]), [new Uint8Array(0), new Uint8Array(0), new Uint8Array(0)]);
  });

  test('empty chunks are harmless anywhere', () => {
    const f = frame(messageOf(4, 5));
    const e = new Uint8Array(0);
    assert.deepEqual(deframe([e, f.subarray(0, 3), e, f.subarray(3, 6), e, f.subarray(6), e]), [messageOf(4, 5)]);
  });

  test('a message inside one chunk is a view of it; a message that spans chunks is an independent copy', () => {
    const whole = frame(messageOf(10, 1));
    const seen: Uint8Array[] = [];
    new GrpcDeframer(1024).push(whole, { message: (m) => seen.push(m) });
    assert.equal(seen[0]!.buffer, whole.buffer);

    const split = frame(messageOf(10, 1));
    const first = Buffer.from(split.subarray(0, 8));
    const second = Buffer.from(split.subarray(8));
    const deframer = new GrpcDeframer(1024);
    const spanned: Uint8Array[] = [];
    deframer.push(first, { message: (m) => spanned.push(m) });
    assert.equal(deframer.midMessage, true);
    deframer.push(second, { message: (m) => spanned.push(m) });
    first.fill(0);
    second.fill(0); // the transport may reuse its chunks
    assert.deepEqual(spanned.map((m) => [...m]), [[...messageOf(10, 1)]]);
  });

  test('midMessage tracks a partial header and a partial body', () => {
    const f = frame(messageOf(3, 0));
    const deframer = new GrpcDeframer(1024);
    const noop = (): void => {};
    assert.equal(deframer.midMessage, false);
    deframer.push(f.subarray(0, 2), { message: noop });
    assert.equal(deframer.midMessage, true);
    deframer.push(f.subarray(2, 6), { message: noop });
    assert.equal(deframer.midMessage, true);
    deframer.push(f.subarray(6), { message: noop });
    assert.equal(deframer.midMessage, false);
  });

  test('a message of exactly the limit is accepted', () => {
    assert.deepEqual(deframe([frame(messageOf(64, 0))], 64), [messageOf(64, 0)]);
  });

  test('an oversized length is rejected from the header alone, before any body is buffered', () => {
    const header = new Uint8Array(GRPC_FRAME_HEADER);
    writeFrameHeader(header, 65);
    assertProtocolError(() => new GrpcDeframer(64).push(header, { message: () => assert.fail('no message expected') }), 'message_too_large');
  });

  test('an oversized length is rejected when the header arrives split across chunks', () => {
    const header = new Uint8Array(GRPC_FRAME_HEADER);
    writeFrameHeader(header, 0xffffffff);
    const deframer = new GrpcDeframer(4 * 1024 * 1024);
    deframer.push(header.subarray(0, 3), { message: () => assert.fail('no message expected') });
    // A 4 GiB allocation would fail or stall; the check has to come first.
    assertProtocolError(() => deframer.push(header.subarray(3), { message: () => assert.fail('no message expected') }), 'message_too_large');
  });

  test('an oversized message after valid ones: the valid ones are delivered first', () => {
    const ok = frame(messageOf(4, 0));
    const tooBig = new Uint8Array(GRPC_FRAME_HEADER);
    writeFrameHeader(tooBig, 1000);
    const got: Uint8Array[] = [];
    assertProtocolError(() => new GrpcDeframer(100).push(Buffer.concat([ok, tooBig]), { message: (m) => got.push(Uint8Array.from(m)) }), 'message_too_large');
    assert.deepEqual(got, [messageOf(4, 0)]);
  });

  test('the compressed flag is rejected (no compression is ever negotiated)', () => {
    assertProtocolError(() => new GrpcDeframer(1024).push(frame(messageOf(3, 0), 1), { message: () => {} }), 'bad_frame');
  });

  test('the compressed flag is rejected when the header is split', () => {
    const f = frame(messageOf(3, 0), 1);
    const deframer = new GrpcDeframer(1024);
    deframer.push(f.subarray(0, 1), { message: () => {} });
    assertProtocolError(() => deframer.push(f.subarray(1), { message: () => {} }), 'bad_frame');
  });

  test('any other flag value is rejected', () => {
    for (const flag of [2, 0x80, 0xff]) {
      assertProtocolError(() => new GrpcDeframer(1024).push(frame(new Uint8Array(0), flag), { message: () => {} }), 'bad_frame');
    }
  });

  test('frames built with encodePacketWithHeadroom deframe and decode back to the packets', () => {
    const sent = [packets.dialRequest('10.0.0.1:443', (1n << 62n) + 1n), packets.data(1n, messageOf(5000, 1)), packets.drain()];
    const wire = Buffer.concat(
      sent.map((p) => {
        const buf = encodePacketWithHeadroom(p, GRPC_FRAME_HEADER);
        writeFrameHeader(buf, buf.length - GRPC_FRAME_HEADER);
        return buf;
      }),
    );
    const received: Packet[] = [];
    const deframer = new GrpcDeframer(1 << 22);
    for (let i = 0; i < wire.length; i += 1000) deframer.push(wire.subarray(i, i + 1000), { message: (m) => received.push(decodePacket(m)) });
    assert.equal(received.length, 3);
    assert.deepEqual(received[0], sent[0]);
    assert.deepEqual(received[2], sent[2]);
    const data = received[1]!;
    assert.equal(data.type, PacketType.DATA);
    assert.deepEqual(Uint8Array.from(data.data.data), messageOf(5000, 1));
  });
});
