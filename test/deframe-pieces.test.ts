/**
 * The zero-copy path for large DATA packets that span transport reads:
 * the deframer hands such a message over as views of the chunks, and
 * peekDataPacketHeader reads the packet header from the first view only.
 * Both must agree exactly with the copying path they replace.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GRPC_FRAME_HEADER, GrpcDeframer, PIECES_MIN_MESSAGE_BYTES, frameMessage, writeFrameHeader } from '../src/protocol/grpc-frame.ts';
import { decodePacket, encodePacket, encodePacketWithHeadroom, peekDataPacketHeader } from '../src/protocol/codec.ts';
import { PacketType, packets, payloadLength, type Packet } from '../src/protocol/packet.ts';

const frame = frameMessage;

function bytesOf(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 131 + seed) & 0xff);
}

/** Splits `buf` at the given offsets (sorted, deduplicated, inside the buffer). */
function chunksAt(buf: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < buf.length))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const p of [...points, buf.length]) {
    out.push(buf.subarray(from, p));
    from = p;
  }
  return out;
}

describe('GrpcDeframer with a pieces handler', () => {
  test('a large message that spans chunks arrives as views of those chunks, in order, with no copy', () => {
    const message = bytesOf(3 * PIECES_MIN_MESSAGE_BYTES, 7);
    const wire = frame(message);
    const chunks = chunksAt(wire, [100, 9000, 20000]);
    const deframer = new GrpcDeframer(1 << 22);
    const whole: Uint8Array[] = [];
    const offered: Array<{ pieces: readonly Uint8Array[]; byteLength: number }> = [];
    for (const c of chunks) {
      deframer.push(c, { message: (m) => whole.push(m), pieces: (pieces, byteLength) => (offered.push({ pieces, byteLength }), true) });
    }
    assert.equal(whole.length, 0);
    assert.equal(offered.length, 1);
    const { pieces, byteLength } = offered[0]!;
    assert.equal(byteLength, message.length);
    assert.equal(pieces.length, chunks.length);
    pieces.forEach((piece, i) => assert.equal(piece.buffer, chunks[i]!.buffer, `piece ${i} is a view of chunk ${i}`));
    assert.deepEqual(Buffer.concat(pieces), Buffer.from(message));
    assert.equal(deframer.midMessage, false);
  });

  test('a handler that declines gets the message joined through message()', () => {
    const message = bytesOf(PIECES_MIN_MESSAGE_BYTES + 1, 3);
    const deframer = new GrpcDeframer(1 << 22);
    const whole: Uint8Array[] = [];
    for (const c of chunksAt(frame(message), [10, 5000])) deframer.push(c, { message: (m) => whole.push(m), pieces: () => false });
    assert.deepEqual(whole.map((m) => Buffer.from(m)), [Buffer.from(message)]);
  });

  test('small spanning messages, and messages whose body is inside one chunk, still go to message()', () => {
    const small = bytesOf(PIECES_MIN_MESSAGE_BYTES - 1, 1);
    const large = bytesOf(PIECES_MIN_MESSAGE_BYTES * 2, 2);
    const wire = Buffer.concat([frame(small), frame(large)]);
    // Cut the small one's body, and the large one's header only (its body then lies in one chunk).
    const cuts = [GRPC_FRAME_HEADER + 100, GRPC_FRAME_HEADER + small.length + 2];
    const deframer = new GrpcDeframer(1 << 22);
    const whole: Uint8Array[] = [];
    let offered = 0;
    for (const c of chunksAt(wire, cuts)) deframer.push(c, { message: (m) => whole.push(Uint8Array.from(m)), pieces: () => (offered++, true) });
    assert.equal(offered, 0);
    assert.deepEqual(whole.map((m) => Buffer.from(m)), [Buffer.from(small), Buffer.from(large)]);
  });

  test('property: with or without the handler, any chunking yields the same message bytes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 3 * PIECES_MIN_MESSAGE_BYTES }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 12 * PIECES_MIN_MESSAGE_BYTES }), { maxLength: 12 }),
        (lengths, cuts) => {
          const messages = lengths.map((n, i) => bytesOf(n, i));
          const wire = Buffer.concat(messages.map(frame));
          const chunks = chunksAt(wire, cuts);
          const viaPieces: Buffer[] = [];
          const deframer = new GrpcDeframer(1 << 22);
          for (const c of chunks) {
            deframer.push(c, {
              message: (m) => viaPieces.push(Buffer.from(m)),
              pieces: (pieces, byteLength) => {
                assert.equal(pieces.reduce((n, p) => n + p.length, 0), byteLength);
                viaPieces.push(Buffer.concat(pieces));
                return true;
              },
            });
          }
          assert.equal(deframer.midMessage, false);
          assert.deepEqual(viaPieces, messages.map((m) => Buffer.from(m)));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('peekDataPacketHeader', () => {
  const connectIDs = [1n, 127n, 128n, (1n << 53n) + 7n, (1n << 63n) - 1n, -1n];

  test('reads our encoder’s DATA packets, for every connect ID width', () => {
    for (const connectID of connectIDs) {
      const payload = bytesOf(20_000, Number(connectID & 0xffn));
      const message = encodePacket(packets.data(connectID, payload));
      const peek = peekDataPacketHeader(message.subarray(0, 64), message.length);
      assert.ok(peek, `connectID ${connectID}`);
      assert.equal(peek.connectID, connectID);
      assert.deepEqual(Buffer.from(message.subarray(peek.payloadOffset)), Buffer.from(payload));
    }
  });

  test('null when the header does not fit in the first piece, so the caller joins instead', () => {
    const message = encodePacket(packets.data((1n << 62n) + 5n, bytesOf(10_000, 1)));
    const full = peekDataPacketHeader(message, message.length);
    assert.ok(full);
    for (let cut = 0; cut < full.payloadOffset; cut++) assert.equal(peekDataPacketHeader(message.subarray(0, cut), message.length), null, `cut at ${cut}`);
    assert.ok(peekDataPacketHeader(message.subarray(0, full.payloadOffset), message.length));
  });

  test('null for other packet types, a DATA packet with an error text, and a zero connect ID (field omitted)', () => {
    const others: Packet[] = [packets.dialRequest('a:1', 5n), packets.closeRequest(3n), packets.closeResponse(3n, 'x'), packets.flowCredit(3n, 100n)];
    for (const p of others) {
      const m = encodePacket(p);
      assert.equal(peekDataPacketHeader(m, m.length), null, `type ${p.type}`);
    }
    const withError = encodePacket({ type: PacketType.DATA, data: { connectID: 9n, error: 'boom', data: bytesOf(9000, 2) } });
    assert.equal(peekDataPacketHeader(withError, withError.length), null);
    const zeroID = encodePacket(packets.data(0n, bytesOf(9000, 2)));
    assert.equal(peekDataPacketHeader(zeroID, zeroID.length), null);
  });

  test('null when the stated lengths do not end exactly at the end of the message', () => {
    const message = encodePacket(packets.data(4n, bytesOf(9000, 2)));
    assert.equal(peekDataPacketHeader(message, message.length + 1), null);
    assert.equal(peekDataPacketHeader(message, message.length - 1), null);
  });

  test('property: whenever it answers, decodePacket on the whole message gives the same packet', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), fc.integer({ min: 0, max: 20_000 }), (head, tail) => {
        const message = Buffer.concat([head, Buffer.from(bytesOf(tail, 5))]);
        const peek = peekDataPacketHeader(head, message.length);
        if (peek === null) return;
        const packet = decodePacket(message);
        assert.equal(packet.type, PacketType.DATA);
        if (packet.type !== PacketType.DATA) return;
        assert.equal(packet.data.connectID, peek.connectID);
        assert.equal(packet.data.error, '');
        assert.deepEqual(Buffer.from(packet.data.data), message.subarray(peek.payloadOffset));
      }),
      { numRuns: 2000 },
    );
  });

  test('property: it answers for every DATA packet our encoder frames, whatever the payload size', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: (1n << 63n) - 1n }), fc.integer({ min: 1, max: 70_000 }), (connectID, size) => {
        const framed = encodePacketWithHeadroom(packets.data(connectID, bytesOf(size, 9)), GRPC_FRAME_HEADER);
        const message = framed.subarray(GRPC_FRAME_HEADER);
        const peek = peekDataPacketHeader(message.subarray(0, 32), message.length);
        assert.ok(peek);
        assert.equal(peek.connectID, connectID);
        assert.equal(message.length - peek.payloadOffset, size);
      }),
      { numRuns: 300 },
    );
  });
});

describe('packets.dataInPieces', () => {
  test('reports its length without joining, joins once on first use of data, and encodes like packets.data', () => {
    const pieces = [bytesOf(10, 1), bytesOf(20_000, 2), bytesOf(5, 3)];
    const packet = packets.dataInPieces(77n, pieces, 20_015);
    assert.equal(packet.data.pieces, pieces);
    assert.equal(payloadLength(packet.data), 20_015);
    const joined = packet.data.data;
    assert.equal(packet.data.data, joined, 'joined once');
    assert.deepEqual(Buffer.from(joined), Buffer.concat(pieces));
    assert.deepEqual(encodePacket(packet), encodePacket(packets.data(77n, Buffer.concat(pieces))));
  });

  test('payloadLength of an ordinary DATA packet is its data length', () => {
    assert.equal(payloadLength(packets.data(1n, bytesOf(123, 1)).data), 123);
  });
});
