/**
 * Codec fuzzer: random packets round-trip exactly; mutated encodings and
 * random bytes either decode (and then re-encode to something that decodes
 * to the same packet) or fail with ProtocolError, never anything else; the
 * gRPC deframer yields the same messages whatever the chunking, and fails
 * only with ProtocolError on corrupt framing.
 */
import { decodePacket, encodeDataPacketHeader, encodePacket, encodePacketWithHeadroom, encodedPacketSize } from '../src/protocol/codec.ts';
import { GRPC_FRAME_HEADER, GrpcDeframer, writeFrameHeader } from '../src/protocol/grpc-frame.ts';
import { PacketType, type Packet } from '../src/protocol/packet.ts';
import { ProtocolError } from '../src/protocol/protocol-error.ts';
import { FuzzViolation } from './router-fuzz.ts';
import { Rng } from './prng.ts';

const MAX_INT64 = (1n << 63n) - 1n;
const MIN_INT64 = -(1n << 63n);

function int64(rng: Rng): bigint {
  switch (rng.int(6)) {
    case 0:
      return rng.pick([0n, 1n, -1n, 127n, 128n, 16383n, 16384n, (1n << 53n) + 1n, MAX_INT64, MIN_INT64]);
    case 1:
      return BigInt(rng.int(1000));
    case 2:
      return -BigInt(rng.int(1000)) - 1n;
    default:
      return BigInt.asIntN(64, (BigInt(rng.next()) << 32n) | BigInt(rng.next()));
  }
}

function text(rng: Rng): string {
  const n = rng.pick([0, 0, 1, 5, 20, 130]);
  let s = '';
  for (let i = 0; i < n; i++) {
    const k = rng.int(10);
    if (k < 6) s += String.fromCharCode(0x20 + rng.int(95));
    else if (k < 8) s += String.fromCharCode(rng.int(0x800));
    else if (k < 9) s += String.fromCodePoint(0x10000 + rng.int(0xfffff));
    else s += String.fromCharCode(0xd800 + rng.int(0x800)); // lone surrogate: encoded as U+FFFD
  }
  return s;
}

export function randomPacket(rng: Rng): Packet {
  switch (rng.int(8)) {
    case 0:
      return { type: PacketType.DIAL_REQ, dialRequest: { protocol: rng.bool(0.8) ? 'tcp' : text(rng), address: text(rng), random: int64(rng) } };
    case 1:
      return { type: PacketType.DIAL_RSP, dialResponse: { error: text(rng), connectID: int64(rng), random: int64(rng) } };
    case 2:
      return { type: PacketType.CLOSE_REQ, closeRequest: { connectID: int64(rng) } };
    case 3:
      return { type: PacketType.CLOSE_RSP, closeResponse: { error: text(rng), connectID: int64(rng) } };
    case 4:
      return { type: PacketType.DATA, data: { connectID: int64(rng), error: rng.bool(0.9) ? '' : text(rng), data: rng.bytes(rng.pick([0, 1, 7, 128, 300, 5000])) } };
    case 5:
      return { type: PacketType.DIAL_CLS, closeDial: { random: int64(rng) } };
    case 6:
      return { type: PacketType.FLOW_CREDIT, flowCredit: { connectID: int64(rng), bytes: int64(rng) } };
    default:
      return { type: PacketType.DRAIN };
  }
}

/** What a string is after a UTF-8 round trip (lone surrogates become U+FFFD). */
const utf8 = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

function samePacket(a: Packet, b: Packet): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case PacketType.DIAL_REQ: {
      const x = a.dialRequest;
      const y = (b as typeof a).dialRequest;
      return utf8(x.protocol) === utf8(y.protocol) && utf8(x.address) === utf8(y.address) && x.random === y.random;
    }
    case PacketType.DIAL_RSP: {
      const x = a.dialResponse;
      const y = (b as typeof a).dialResponse;
      return utf8(x.error) === utf8(y.error) && x.connectID === y.connectID && x.random === y.random;
    }
    case PacketType.CLOSE_REQ:
      return a.closeRequest.connectID === (b as typeof a).closeRequest.connectID;
    case PacketType.CLOSE_RSP: {
      const y = (b as typeof a).closeResponse;
      return utf8(a.closeResponse.error) === utf8(y.error) && a.closeResponse.connectID === y.connectID;
    }
    case PacketType.DATA: {
      const y = (b as typeof a).data;
      return a.data.connectID === y.connectID && utf8(a.data.error) === utf8(y.error) && Buffer.compare(a.data.data, y.data) === 0;
    }
    case PacketType.DIAL_CLS:
      return a.closeDial.random === (b as typeof a).closeDial.random;
    case PacketType.FLOW_CREDIT: {
      const y = (b as typeof a).flowCredit;
      return a.flowCredit.connectID === y.connectID && a.flowCredit.bytes === y.bytes;
    }
    case PacketType.DRAIN:
      return true;
  }
}

function mutate(rng: Rng, input: Uint8Array, donor: Uint8Array): Uint8Array {
  let b = Buffer.from(input);
  for (let n = rng.range(1, 4); n > 0; n--) {
    const at = rng.int(b.length + 1);
    switch (rng.int(8)) {
      case 0: // flip a bit
        if (b.length) b[rng.int(b.length)]! ^= 1 << rng.int(8);
        break;
      case 1: // interesting byte
        if (b.length) b[rng.int(b.length)] = rng.pick([0x00, 0x01, 0x07, 0x08, 0x0a, 0x12, 0x40, 0x7f, 0x80, 0xff]);
        break;
      case 2: // insert random bytes
        b = Buffer.concat([b.subarray(0, at), rng.bytes(rng.range(1, 6)), b.subarray(at)]);
        break;
      case 3: // delete a range
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + rng.range(1, 8)))]);
        break;
      case 4: // truncate
        b = b.subarray(0, at);
        break;
      case 5: // duplicate a range
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + rng.range(1, 10)), b.subarray(at)]);
        break;
      case 6: // splice in part of another packet
        b = Buffer.concat([b.subarray(0, at), donor.subarray(rng.int(donor.length + 1)), b.subarray(at + rng.int(4))]);
        break;
      default: // an overlong varint
        b = Buffer.concat([b.subarray(0, at), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, rng.pick([0x01, 0x7f, 0xff])]), b.subarray(at)]);
        break;
    }
  }
  return b;
}

/** Decodes hostile bytes: a ProtocolError is fine; if it decodes, encode → decode must be stable. */
function decodeHostile(bytes: Uint8Array, what: string): void {
  let p: Packet;
  try {
    p = decodePacket(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) return;
    throw new FuzzViolation(`${what}: decodePacket threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} for ${Buffer.from(bytes).toString('hex')}`);
  }
  let again: Packet;
  try {
    again = decodePacket(encodePacket(p));
  } catch (err) {
    throw new FuzzViolation(`${what}: a decoded packet does not survive re-encoding (${String(err)}) for ${Buffer.from(bytes).toString('hex')}`);
  }
  if (!samePacket(p, again)) throw new FuzzViolation(`${what}: re-encoding changed the packet for ${Buffer.from(bytes).toString('hex')}`);
}

function frame(p: Packet): Buffer {
  const f = encodePacketWithHeadroom(p, GRPC_FRAME_HEADER);
  writeFrameHeader(f, f.length - GRPC_FRAME_HEADER);
  return f;
}

export function runCodecCase(seed: number): void {
  const rng = new Rng(seed);
  const fail = (msg: string): never => {
    throw new FuzzViolation(`${msg} (seed ${seed})`);
  };

  // 1. Round trip.
  const p = randomPacket(rng);
  const headroom = rng.int(8);
  const enc = encodePacketWithHeadroom(p, headroom);
  if (enc.length !== headroom + encodedPacketSize(p)) fail(`encodedPacketSize is off for type ${p.type}`);
  const body = enc.subarray(headroom);
  let back: Packet;
  try {
    back = decodePacket(body);
  } catch (err) {
    return fail(`a valid packet of type ${p.type} does not decode: ${String(err)}`);
  }
  if (!samePacket(p, back)) fail(`round trip changed a packet of type ${p.type}`);
  if (p.type === PacketType.DATA && p.data.error === '') {
    const split = Buffer.concat([encodeDataPacketHeader(p.data.connectID, p.data.data.length, 0), p.data.data]);
    if (!split.equals(body)) fail('encodeDataPacketHeader + payload differs from encodePacket');
  }

  // 2. Mutations of a valid encoding, and plain random bytes.
  const donor = encodePacket(randomPacket(rng));
  decodeHostile(mutate(rng, body, donor), 'mutated encoding');
  decodeHostile(rng.bytes(rng.int(48)), 'random bytes');

  // 3. Deframing: any chunking gives the same messages; corrupt framing fails only with ProtocolError.
  const packets = Array.from({ length: rng.range(1, 5) }, () => randomPacket(rng));
  const stream = Buffer.concat(packets.map(frame));
  const limit = rng.bool(0.7) ? 1 << 20 : rng.range(0, 400);
  const corrupt = rng.bool(0.3);
  const input = corrupt ? mutate(rng, stream, donor) : stream;
  const deframer = new GrpcDeframer(limit);
  const got: Uint8Array[] = [];
  let failed = false;
  try {
    for (let pos = 0; pos < input.length; ) {
      const n = rng.bool(0.3) ? rng.range(1, 3) : rng.range(1, 64);
      deframer.push(input.subarray(pos, pos + n), { message: (m) => got.push(Uint8Array.from(m)) });
      pos += n;
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) fail(`deframer threw ${String(err)}`);
    failed = true;
  }
  for (const m of got) if (m.length > limit) fail(`deframer delivered ${m.length} bytes over a ${limit}-byte limit`);
  if (!corrupt) {
    const expected = packets.map((q) => encodePacket(q));
    const within = expected.findIndex((e) => e.length > limit);
    const deliverable = within < 0 ? expected : expected.slice(0, within);
    if (got.length !== deliverable.length || got.some((m, i) => Buffer.compare(m, deliverable[i]!) !== 0)) fail('deframer output differs from the frames sent');
    if ((within >= 0) !== failed) fail(`deframer ${failed ? 'failed' : 'did not fail'} with ${within >= 0 ? 'an oversized' : 'no oversized'} frame`);
    for (const m of got) decodePacket(m);
  } else {
    for (const m of got) decodeHostile(m, 'message from corrupt framing');
  }
}
