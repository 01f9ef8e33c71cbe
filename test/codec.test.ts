import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { decodePacket, encodePacket, encodePacketWithHeadroom, encodedPacketSize } from '../src/protocol/codec.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import { ProtocolError, type ProtocolErrorCode } from '../src/protocol/protocol-error.ts';

const MAX_INT64 = (1n << 63n) - 1n;
const MIN_INT64 = -(1n << 63n);

function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}
function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
function ascii(s: string): string {
  return Buffer.from(s, 'latin1').toString('hex');
}

/** Decoded DATA payloads are views (often Buffers); compare contents, not classes. */
function normalize(p: Packet): Packet {
  if (p.type !== PacketType.DATA) return p;
  return { type: p.type, data: { connectID: p.data.connectID, error: p.data.error, data: Uint8Array.from(p.data.data) } };
}

function assertProtocolError(fn: () => unknown, code: ProtocolErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code, `wrong code for: ${err.message}`);
    return true;
  });
}

// --- golden vectors --------------------------------------------------------

// Each vector is hand-assembled from the tag bytes of spec §2.4, so a codec
// that merely agrees with itself cannot pass.
const goldenVectors: ReadonlyArray<{ name: string; packet: Packet; bytes: string }> = [
  {
    name: 'DIAL_REQ has no type field',
    packet: packets.dialRequest('127.0.0.1:80', 1n),
    bytes: `12 15  0a 03 ${ascii('tcp')}  12 0c ${ascii('127.0.0.1:80')}  18 01`,
  },
  {
    name: 'DIAL_REQ with random = 2^63-1 (9-byte varint)',
    packet: packets.dialRequest('a:1', MAX_INT64),
    bytes: `12 14  0a 03 ${ascii('tcp')}  12 03 ${ascii('a:1')}  18 ff ff ff ff ff ff ff ff 7f`,
  },
  { name: 'DIAL_RSP success', packet: packets.dialResponse(5n, 1n), bytes: '08 01 1a 04  10 01  18 05' },
  { name: 'DIAL_RSP failure: error set, connectID 0 omitted', packet: packets.dialResponse(5n, 0n, 'x'), bytes: '08 01 1a 05  0a 01 78  18 05' },
  { name: 'CLOSE_REQ', packet: packets.closeRequest(7n), bytes: '08 02 2a 02  08 07' },
  { name: 'CLOSE_RSP', packet: packets.closeResponse(7n), bytes: '08 03 32 02  10 07' },
  { name: 'CLOSE_RSP with error', packet: packets.closeResponse(7n, 'e'), bytes: '08 03 32 05  0a 01 65  10 07' },
  { name: 'DATA', packet: packets.data(1n, Uint8Array.of(0xaa, 0xbb)), bytes: '08 04 22 06  08 01  1a 02 aa bb' },
  { name: 'DATA with error (declared upstream, never set)', packet: { type: PacketType.DATA, data: { connectID: 1n, error: 'e', data: Uint8Array.of(0xaa) } }, bytes: '08 04 22 08  08 01  12 01 65  1a 01 aa' },
  { name: 'DIAL_CLS with a 2-byte varint', packet: packets.closeDial(300n), bytes: '08 05 3a 03  08 ac 02' },
  { name: 'DRAIN is type 6 plus an empty drain message', packet: packets.drain(), bytes: '08 06 42 00' },
  // proto3: zero and empty values stay off the wire, but the payload itself is always present.
  { name: 'empty DIAL_REQ', packet: packets.dialRequest('', 0n, ''), bytes: '12 00' },
  { name: 'CLOSE_REQ with connectID 0', packet: packets.closeRequest(0n), bytes: '08 02 2a 00' },
  { name: 'DATA with connectID 0 and no bytes', packet: packets.data(0n, new Uint8Array(0)), bytes: '08 04 22 00' },
  { name: 'DIAL_RSP all defaults', packet: packets.dialResponse(0n, 0n), bytes: '08 01 1a 00' },
  { name: 'CLOSE_RSP all defaults', packet: packets.closeResponse(0n), bytes: '08 03 32 00' },
  { name: 'DIAL_CLS random 0', packet: packets.closeDial(0n), bytes: '08 05 3a 00' },
  // int64 negatives are sign-extended to 64 bits: always a 10-byte varint.
  { name: 'CLOSE_REQ connectID -1', packet: packets.closeRequest(-1n), bytes: '08 02 2a 0b  08 ff ff ff ff ff ff ff ff ff 01' },
  { name: 'DIAL_CLS random -2^63', packet: packets.closeDial(MIN_INT64), bytes: '08 05 3a 0b  08 80 80 80 80 80 80 80 80 80 01' },
  {
    name: 'DATA with a 200-byte payload (2-byte length varints)',
    packet: packets.data(2n, new Uint8Array(200).fill(0x5a)),
    bytes: `08 04 22 cd 01  08 02  1a c8 01 ${'5a'.repeat(200)}`,
  },
];

describe('golden vectors', () => {
  for (const v of goldenVectors) {
    test(v.name, () => {
      const expected = hex(v.bytes);
      const encoded = encodePacket(v.packet);
      assert.equal(toHex(encoded), expected.toString('hex'));
      assert.equal(encodedPacketSize(v.packet), expected.length);
      assert.deepEqual(normalize(decodePacket(expected)), normalize(v.packet));
    });
  }

  test('headroom is zero-filled and followed by the exact encoding', () => {
    const p = packets.dialResponse(5n, 1n);
    const withHeadroom = encodePacketWithHeadroom(p, 5);
    assert.equal(toHex(withHeadroom), '0000000000' + '08011a0410011805');
    assert.equal(toHex(encodePacketWithHeadroom(p, 0)), toHex(encodePacket(p)));
  });

  test('DATA payload larger than 64 KiB (3-byte length varint)', () => {
    const payload = new Uint8Array(70_000).map((_, i) => i & 0xff);
    const encoded = encodePacket(packets.data(3n, payload));
    // 70_000 = 0x11170 -> f0 a2 04; Data body = 2 + 1 + 3 + 70_000 = 70_006 -> f6 a2 04.
    assert.equal(toHex(encoded.subarray(0, 12)), '0804' + '22f6a204' + '0803' + '1af0a204');
    assert.equal(encoded.length, 12 + 70_000);
    const decoded = decodePacket(encoded);
    assert.equal(decoded.type, PacketType.DATA);
    assert.deepEqual(Uint8Array.from(decoded.data.data), payload);
  });
});

describe('int64 precision', () => {
  const values = [
    (1n << 53n) - 1n,
    1n << 53n,
    (1n << 53n) + 1n, // the first integer a double cannot hold
    8_674_665_223_082_153_551n, // a typical rand.Int63() dial ID
    (1n << 62n) + 12_345n,
    MAX_INT64 - 1n,
    MAX_INT64,
    -1n,
    -((1n << 53n) + 1n),
    MIN_INT64 + 1n,
    MIN_INT64,
  ];
  for (const v of values) {
    test(`${v} round-trips exactly through every int64 field`, () => {
      const cases: Packet[] = [
        packets.dialRequest('h:1', v),
        packets.dialResponse(v, v),
        packets.closeRequest(v),
        packets.closeResponse(v),
        packets.data(v, Uint8Array.of(1)),
        packets.closeDial(v),
      ];
      for (const p of cases) assert.deepEqual(normalize(decodePacket(encodePacket(p))), normalize(p));
    });
  }

  test('negative int64 uses a 10-byte varint', () => {
    const encoded = encodePacket(packets.closeDial(-2n));
    assert.equal(toHex(encoded), '08053a0b08feffffffffffffffff01');
  });
});

// --- decoder tolerance -------------------------------------------------------

describe('decoding tolerance', () => {
  test('missing type means DIAL_REQ', () => {
    assert.deepEqual(decodePacket(hex(`12 05 12 03 ${ascii('a:1')}`)), packets.dialRequest('a:1', 0n, ''));
  });

  test('explicit type 0 (as protobufjs writes it) is also DIAL_REQ', () => {
    assert.deepEqual(decodePacket(hex('08 00 12 00')), packets.dialRequest('', 0n, ''));
  });

  test('DRAIN without a payload is accepted', () => {
    assert.deepEqual(decodePacket(hex('08 06')), packets.drain());
  });

  test('DRAIN with unknown fields inside the drain message is accepted', () => {
    assert.deepEqual(decodePacket(hex('08 06 42 0a  08 01  12 01 ff  1d 00 00 00 00')), packets.drain());
  });

  // Unknown fields of every wire type a proto3 peer can emit: varint, fixed64, length-delimited, fixed32.
  const unknownFields = '48 96 01' + ' 51 01 02 03 04 05 06 07 08' + ' 5a 03 01 02 03' + ' 65 01 02 03 04' + ' f8 ff 7f 01'; // fields 9, 10, 11, 12, 262143
  test('unknown Packet fields of all wire types are skipped (before and after known ones)', () => {
    const bytes = hex(`${unknownFields} 08 04 ${unknownFields} 22 02 08 09 ${unknownFields}`);
    assert.deepEqual(normalize(decodePacket(bytes)), normalize(packets.data(9n, new Uint8Array(0))));
  });

  test('unknown fields inside every payload message are skipped', () => {
    const u = hex(unknownFields);
    const wrap = (type: number, field: number, body: string): Buffer => {
      const inner = Buffer.concat([u, hex(body), u]);
      const typeBytes = type === 0 ? Buffer.alloc(0) : Buffer.from([0x08, type]);
      return Buffer.concat([typeBytes, Buffer.from([(field << 3) | 2, inner.length]), inner]);
    };
    assert.deepEqual(decodePacket(wrap(0, 2, `0a 03 ${ascii('tcp')} 18 07`)), packets.dialRequest('', 7n));
    assert.deepEqual(decodePacket(wrap(1, 3, '10 02 18 07')), packets.dialResponse(7n, 2n));
    assert.deepEqual(normalize(decodePacket(wrap(4, 4, '08 02 1a 01 ff'))), normalize(packets.data(2n, Uint8Array.of(0xff))));
    assert.deepEqual(decodePacket(wrap(2, 5, '08 02')), packets.closeRequest(2n));
    assert.deepEqual(decodePacket(wrap(3, 6, '10 02')), packets.closeResponse(2n));
    assert.deepEqual(decodePacket(wrap(5, 7, '08 07')), packets.closeDial(7n));
    assert.deepEqual(decodePacket(wrap(6, 8, '')), packets.drain());
  });

  test('the last oneof member wins', () => {
    // dialRequest, then data: the packet is DATA.
    assert.deepEqual(normalize(decodePacket(hex('08 04  12 00  22 02 08 01'))), normalize(packets.data(1n, new Uint8Array(0))));
    // data, then dialRequest: the DATA type no longer matches the surviving payload.
    assertProtocolError(() => decodePacket(hex('08 04  22 02 08 01  12 00')), 'payload_mismatch');
  });

  test('the last type and the last scalar value win', () => {
    assert.deepEqual(decodePacket(hex('08 01  08 02  2a 04 08 05 08 06')), packets.closeRequest(6n));
  });

  test('DATA bytes are a zero-copy view of the input', () => {
    const input = encodePacket(packets.data(1n, Uint8Array.of(1, 2, 3)));
    const decoded = decodePacket(input);
    assert.equal(decoded.type, PacketType.DATA);
    assert.equal(decoded.data.data.buffer, input.buffer);
  });

  test('lone UTF-16 surrogates are sent as U+FFFD, like Buffer.from does', () => {
    const decoded = decodePacket(encodePacket(packets.dialRequest('a\ud800b', 1n)));
    assert.equal(decoded.type, PacketType.DIAL_REQ);
    assert.equal(decoded.dialRequest.address, 'a\ufffdb');
  });

  test('property: any UTF-16 string is sent exactly as Buffer.from encodes it', () => {
    // Code units, not code points: this includes lone surrogates, and lengths on both
    // sides of the encoder's short-string fast path.
    const codeUnit = fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff }));
    const utf16Arb = fc.string({ unit: codeUnit.map((c) => String.fromCharCode(c)), maxLength: 40 });
    fc.assert(
      fc.property(utf16Arb, (s) => {
        const expected = Buffer.from(s, 'utf8');
        const encoded = encodePacket(packets.dialResponse(1n, 0n, s));
        const decoded = decodePacket(encoded);
        assert.equal(decoded.type, PacketType.DIAL_RSP);
        if (s.length === 0) return;
        assert.equal(toHex(encoded.subarray(encoded.length - 2 - expected.length, encoded.length - 2)), expected.toString('hex'));
        assert.equal(decoded.dialResponse.error, expected.toString('utf8'));
      }),
      { numRuns: 1000 },
    );
  });

  test('multi-byte UTF-8 strings round-trip', () => {
    const p = packets.dialResponse(1n, 0n, 'dial tcp: lookup ünïcödé.example 🚀: no such host');
    assert.deepEqual(decodePacket(encodePacket(p)), p);
  });
});

// --- errors ----------------------------------------------------------------

describe('malformed input throws ProtocolError with a stable code', () => {
  const cases: ReadonlyArray<[string, string, ProtocolErrorCode]> = [
    ['tag varint cut short', '80', 'truncated'],
    ['type value missing', '08', 'truncated'],
    ['type varint cut short', '08 84', 'truncated'],
    ['payload length varint cut short', '08 04 22 80', 'truncated'],
    ['payload length beyond the end', '08 04 22 05 08 01', 'truncated'],
    ['int64 cut short at the payload boundary', '08 02 2a 02 08 80', 'truncated'],
    ['string length beyond the payload', '12 03 12 05 61', 'truncated'],
    ['bytes length beyond the payload', '08 04 22 03 1a 05 00', 'truncated'],
    ['unknown fixed64 cut short', '51 01 02 03', 'truncated'],
    ['unknown fixed32 cut short', '65 01 02', 'truncated'],
    ['unknown length-delimited cut short', '5a 04 01', 'truncated'],
    ['varint longer than 10 bytes', '08 02 2a 0c 08 ff ff ff ff ff ff ff ff ff ff 01', 'bad_varint'],
    ['tag varint longer than 10 bytes', 'ff ff ff ff ff ff ff ff ff ff 01', 'bad_varint'],
    ['wire type 6 does not exist', '4e 00', 'bad_wire_type'],
    ['wire type 7 does not exist', '4f 00', 'bad_wire_type'],
    ['wire type 6 inside a payload', '08 02 2a 02 4e 00', 'bad_wire_type'],
    ['groups (wire types 3/4) are not supported', '4b 4c 08 02 2a 00', 'bad_wire_type'],
    ['Packet.type sent length-delimited', '0a 01 04', 'bad_wire_type'],
    ['payload sent as a varint', '08 04 20 01', 'bad_wire_type'],
    ['Data.connectID sent length-delimited', '08 04 22 03 0a 01 01', 'bad_wire_type'],
    ['Data.data sent as a varint', '08 04 22 02 18 01', 'bad_wire_type'],
    ['DialRequest.address sent as fixed32', '12 05 15 01 02 03 04', 'bad_wire_type'],
    ['invalid UTF-8 byte in DialRequest.address', '12 03 12 01 ff', 'bad_utf8'],
    ['overlong UTF-8 in DialRequest.protocol', '12 04 0a 02 c0 80', 'bad_utf8'],
    ['UTF-8-encoded surrogate in DialResponse.error', '08 01 1a 05 0a 03 ed a0 80', 'bad_utf8'],
    ['truncated UTF-8 sequence in CloseResponse.error', '08 03 32 04 0a 02 e2 82', 'bad_utf8'],
    ['invalid UTF-8 in Data.error', '08 04 22 03 12 01 80', 'bad_utf8'],
    ['type DATA with a dialRequest payload', '08 04 12 00', 'payload_mismatch'],
    ['type DIAL_REQ (absent) with a data payload', '22 00', 'payload_mismatch'],
    ['type CLOSE_REQ with a closeDial payload', '08 02 3a 00', 'payload_mismatch'],
    ['type DIAL_RSP with a drain payload', '08 01 42 00', 'payload_mismatch'],
    ['type DRAIN with a closeRequest payload', '08 06 2a 00', 'payload_mismatch'],
    ['empty message (DIAL_REQ without payload)', '', 'payload_mismatch'],
    ['DATA without payload', '08 04', 'payload_mismatch'],
    ['DIAL_RSP without payload', '08 01', 'payload_mismatch'],
    ['CLOSE_REQ without payload', '08 02', 'payload_mismatch'],
    ['CLOSE_RSP without payload', '08 03', 'payload_mismatch'],
    ['DIAL_CLS without payload', '08 05', 'payload_mismatch'],
    ['unknown packet type 9', '08 09 12 00', 'unknown_packet_type'],
    ['unknown packet type 7 without payload', '08 07', 'unknown_packet_type'],
    ['negative packet type', '08 ff ff ff ff ff ff ff ff ff 01 12 00', 'unknown_packet_type'],
  ];
  for (const [name, bytes, code] of cases) {
    test(`${name} -> ${code}`, () => assertProtocolError(() => decodePacket(hex(bytes)), code));
  }

  test('decoding honours the view bounds of a subarray', () => {
    const full = encodePacket(packets.closeRequest(300n));
    // Cutting the last byte off a view must not read past it into the parent buffer.
    assertProtocolError(() => decodePacket(full.subarray(0, full.length - 1)), 'truncated');
  });
});

// --- cross-check against protobufjs ------------------------------------------

const protoPath = fileURLToPath(new URL('../proto/konnectivity.proto', import.meta.url));
const root = protobuf.loadSync(protoPath);
const PbPacket = root.lookupType('Packet');

/** protobufjs takes int64 input as a Long-like {low, high} pair of 32-bit halves. */
function toLongLike(v: bigint): { low: number; high: number; unsigned: boolean } {
  return { low: Number(BigInt.asIntN(32, v)), high: Number(BigInt.asIntN(32, v >> 32n)), unsigned: false };
}

const oneofNames = ['dialRequest', 'dialResponse', 'closeRequest', 'closeResponse', 'data', 'closeDial', 'drain'] as const;

/**
 * A protobufjs plain object for `p` with proto3 defaults left out, so that
 * protobufjs (which writes any field that is set) emits canonical bytes.
 */
function toProtobufjsObject(p: Packet): Record<string, unknown> {
  const compact = (o: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o)) {
      if (v === '' || v === 0n || (v instanceof Uint8Array && v.length === 0)) continue;
      out[k] = typeof v === 'bigint' ? toLongLike(v) : v;
    }
    return out;
  };
  const out: Record<string, unknown> = {};
  if (p.type !== 0) out['type'] = p.type;
  const name = p.type === PacketType.FLOW_CREDIT ? 'flowCredit' : oneofNames[p.type];
  out[name] = p.type === PacketType.DRAIN ? {} : compact((p as unknown as Record<string, Record<string, unknown>>)[name]!);
  return out;
}

function encodeWithProtobufjs(obj: Record<string, unknown>): Uint8Array {
  const err = PbPacket.verify(obj);
  if (err !== null) throw new Error(`protobufjs rejects test object: ${err}`);
  return PbPacket.encode(PbPacket.fromObject(obj)).finish();
}

interface ProtobufjsPacketObject {
  type: number;
  payload?: string;
  [field: string]: unknown;
}

/** protobufjs' view of `bytes`, converted into our Packet shape. */
function decodeWithProtobufjs(bytes: Uint8Array): Packet {
  const o = PbPacket.toObject(PbPacket.decode(bytes), { longs: String, enums: Number, oneofs: true, defaults: true }) as ProtobufjsPacketObject;
  const body = (o.payload === undefined ? {} : o[o.payload]) as Record<string, unknown>;
  const int64 = (k: string): bigint => BigInt(body[k] as string);
  const str = (k: string): string => body[k] as string;
  assert.equal(o.payload, oneofNames[o.type], 'protobufjs saw a payload that does not match the type');
  switch (o.type) {
    case PacketType.DIAL_REQ:
      return { type: o.type, dialRequest: { protocol: str('protocol'), address: str('address'), random: int64('random') } };
    case PacketType.DIAL_RSP:
      return { type: o.type, dialResponse: { error: str('error'), connectID: int64('connectID'), random: int64('random') } };
    case PacketType.CLOSE_REQ:
      return { type: o.type, closeRequest: { connectID: int64('connectID') } };
    case PacketType.CLOSE_RSP:
      return { type: o.type, closeResponse: { error: str('error'), connectID: int64('connectID') } };
    case PacketType.DATA:
      return { type: o.type, data: { connectID: int64('connectID'), error: str('error'), data: Uint8Array.from(body['data'] as Uint8Array) } };
    case PacketType.DIAL_CLS:
      return { type: o.type, closeDial: { random: int64('random') } };
    case PacketType.DRAIN:
      return { type: o.type };
    default:
      throw new Error(`protobufjs decoded unknown type ${o.type}`);
  }
}

function assertAgreesWithProtobufjs(p: Packet): void {
  const ours = encodePacket(p);
  const theirs = encodeWithProtobufjs(toProtobufjsObject(p));
  assert.equal(toHex(ours), toHex(theirs), 'canonical encodings differ');
  assert.deepEqual(decodeWithProtobufjs(ours), normalize(p), 'protobufjs decodes our bytes differently');
  assert.deepEqual(normalize(decodePacket(theirs)), normalize(p), 'we decode protobufjs bytes differently');
}

const int64Arb = fc.oneof(
  fc.constantFrom(0n, 1n, -1n, 127n, 128n, (1n << 53n) + 1n, MAX_INT64, MIN_INT64),
  fc.bigInt({ min: 0n, max: MAX_INT64 }), // what Go's rand.Int63 and agent counters produce
  fc.bigInt({ min: MIN_INT64, max: MAX_INT64 }),
);
const stringArb = fc.oneof(fc.constant(''), fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'grapheme-ascii', minLength: 120, maxLength: 200 }));
const bytesArb = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 300 }));

const plainRecord = { noNullPrototype: true } as const;
const packetArb: fc.Arbitrary<Packet> = fc.oneof(
  fc.record({ protocol: stringArb, address: stringArb, random: int64Arb }, plainRecord).map((dialRequest): Packet => ({ type: PacketType.DIAL_REQ, dialRequest })),
  fc.record({ error: stringArb, connectID: int64Arb, random: int64Arb }, plainRecord).map((dialResponse): Packet => ({ type: PacketType.DIAL_RSP, dialResponse })),
  fc.record({ connectID: int64Arb }, plainRecord).map((closeRequest): Packet => ({ type: PacketType.CLOSE_REQ, closeRequest })),
  fc.record({ error: stringArb, connectID: int64Arb }, plainRecord).map((closeResponse): Packet => ({ type: PacketType.CLOSE_RSP, closeResponse })),
  fc.record({ connectID: int64Arb, error: stringArb, data: bytesArb }, plainRecord).map((data): Packet => ({ type: PacketType.DATA, data })),
  fc.record({ random: int64Arb }, plainRecord).map((closeDial): Packet => ({ type: PacketType.DIAL_CLS, closeDial })),
  fc.constant<Packet>({ type: PacketType.DRAIN }),
);

describe('cross-check with protobufjs (independent implementation, same .proto)', () => {
  test('every golden vector', () => {
    for (const v of goldenVectors) assertAgreesWithProtobufjs(v.packet);
  });

  test('one packet of every type, with IDs above 2^53', () => {
    const big = MAX_INT64 - 12_345n;
    const all: Packet[] = [
      packets.dialRequest('10.0.0.1:443', big),
      packets.dialResponse(big, big - 1n),
      packets.dialResponse(big, 0n, 'dial tcp 10.0.0.1:443: connect: connection refused'),
      packets.closeRequest(big),
      packets.closeResponse(big, 'x'),
      packets.data(big, new Uint8Array(70_000).fill(7)),
      packets.closeDial(big),
      packets.drain(),
    ];
    for (const p of all) assertAgreesWithProtobufjs(p);
  });

  test('protobufjs with explicitly set defaults (non-canonical bytes) still decodes the same', () => {
    const obj = { type: 0, dialRequest: { protocol: '', address: 'a:1', random: 0 } };
    const theirs = encodeWithProtobufjs(obj);
    assert.equal(toHex(theirs.subarray(0, 2)), '0800'); // protobufjs writes the zero type
    assert.deepEqual(decodePacket(theirs), packets.dialRequest('a:1', 0n, ''));
  });

  test('property: any packet encodes to the bytes protobufjs produces and both decoders agree', () => {
    fc.assert(
      fc.property(packetArb, (p) => assertAgreesWithProtobufjs(p)),
      { numRuns: 1000 },
    );
  });

  test('property: our round trip is the identity and the size is exact', () => {
    fc.assert(
      fc.property(packetArb, fc.nat({ max: 16 }), (p, headroom) => {
        const encoded = encodePacketWithHeadroom(p, headroom);
        assert.equal(encoded.length, headroom + encodedPacketSize(p));
        assert.deepEqual(normalize(decodePacket(encoded.subarray(headroom))), normalize(p));
      }),
      { numRuns: 1000 },
    );
  });

  test('property: random bytes either decode or throw ProtocolError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodePacket(bytes);
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `non-protocol error: ${String(err)}`);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('property: a truncated encoding throws ProtocolError (or, for DRAIN, is still the same packet)', () => {
    fc.assert(
      fc.property(packetArb, fc.nat(), (p, cutSeed) => {
        const encoded = encodePacket(p);
        const cut = cutSeed % encoded.length;
        let decoded: Packet;
        try {
          decoded = decodePacket(encoded.subarray(0, cut));
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `non-protocol error: ${String(err)}`);
          return;
        }
        // Only DRAIN survives losing bytes: `08 06` alone is a valid DRAIN.
        assert.equal(p.type, PacketType.DRAIN);
        assert.deepEqual(decoded, p);
      }),
      { numRuns: 500 },
    );
  });
});
