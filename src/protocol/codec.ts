/**
 * Hand-written protobuf codec for `Packet`. It follows proto3 rules exactly
 * (defaults omitted, DIAL_REQ therefore has no type field, unknown fields
 * skipped) and returns DATA payloads as zero-copy views of the input.
 * Chosen over generated codecs after measuring; see docs/design.md.
 */
import { PacketType, type Packet, packetTypeName } from './packet.ts';
import { ProtocolError } from './protocol-error.ts';
import { WireReader, WireType, expectWireType, utf8Length, varint32Size, varint64Size, writeUtf8, writeVarint32, writeVarint64 } from './wire.ts';

// Packet field numbers of the `payload` oneof, indexed by PacketType.
const upstreamPayloadField = [2, 3, 5, 6, 4, 7, 8] as const;
/** Payload field of the FLOW_CREDIT extension (docs/design/flow-control.md). */
const FLOW_CREDIT_FIELD = 64;

function payloadFieldOf(type: number): number {
  return type === PacketType.FLOW_CREDIT ? FLOW_CREDIT_FIELD : upstreamPayloadField[type as 0]!;
}

const TAG_LEN = (field: number): number => (field << 3) | WireType.LEN;
const TAG_VARINT = (field: number): number => (field << 3) | WireType.VARINT;

function stringFieldSize(s: string): number {
  if (s.length === 0) return 0;
  const n = utf8Length(s);
  return 1 + varint32Size(n) + n;
}
function int64FieldSize(v: bigint): number {
  return v === 0n ? 0 : 1 + varint64Size(v);
}

function payloadSize(p: Packet): number {
  switch (p.type) {
    case PacketType.DIAL_REQ: {
      const m = p.dialRequest;
      return stringFieldSize(m.protocol) + stringFieldSize(m.address) + int64FieldSize(m.random);
    }
    case PacketType.DIAL_RSP: {
      const m = p.dialResponse;
      return stringFieldSize(m.error) + int64FieldSize(m.connectID) + int64FieldSize(m.random);
    }
    case PacketType.CLOSE_REQ:
      return int64FieldSize(p.closeRequest.connectID);
    case PacketType.CLOSE_RSP:
      return stringFieldSize(p.closeResponse.error) + int64FieldSize(p.closeResponse.connectID);
    case PacketType.DATA: {
      const m = p.data;
      const n = m.data.length;
      return int64FieldSize(m.connectID) + stringFieldSize(m.error) + (n === 0 ? 0 : 1 + varint32Size(n) + n);
    }
    case PacketType.DIAL_CLS:
      return int64FieldSize(p.closeDial.random);
    case PacketType.DRAIN:
      return 0;
    case PacketType.FLOW_CREDIT:
      return int64FieldSize(p.flowCredit.connectID) + int64FieldSize(p.flowCredit.bytes);
  }
}

/** Encoded size of the packet, without any framing. */
export function encodedPacketSize(p: Packet): number {
  const body = payloadSize(p);
  return headerSize(p.type) + varint32Size(body) + body;
}

/** Bytes for the type field plus the payload tag. */
function headerSize(type: number): number {
  return type === PacketType.FLOW_CREDIT ? 2 + 2 : (type === 0 ? 0 : 2) + 1;
}

function writeString(buf: Buffer, pos: number, field: number, s: string): number {
  if (s.length === 0) return pos;
  const n = utf8Length(s);
  buf[pos++] = TAG_LEN(field);
  pos = writeVarint32(buf, pos, n);
  return writeUtf8(buf, pos, s, n);
}
function writeInt64(buf: Buffer, pos: number, field: number, v: bigint): number {
  if (v === 0n) return pos;
  buf[pos++] = TAG_VARINT(field);
  return writeVarint64(buf, pos, v);
}

/**
 * Encodes `p` into a fresh buffer, leaving `headroom` zero bytes at the
 * front so a framing layer can prepend its header without another copy.
 */
export function encodePacketWithHeadroom(p: Packet, headroom: number): Buffer {
  const body = payloadSize(p);
  const size = headroom + headerSize(p.type) + varint32Size(body) + body;
  const buf = Buffer.allocUnsafe(size);
  // allocUnsafe memory is not zeroed; a loop beats fill()'s call overhead for a 5-byte header.
  for (let i = 0; i < headroom; i++) buf[i] = 0;
  let pos = headroom;
  if (p.type !== 0) {
    buf[pos++] = TAG_VARINT(1);
    buf[pos++] = p.type;
  }
  pos = writeVarint32(buf, pos, TAG_LEN(payloadFieldOf(p.type)));
  pos = writeVarint32(buf, pos, body);
  switch (p.type) {
    case PacketType.DIAL_REQ:
      pos = writeString(buf, pos, 1, p.dialRequest.protocol);
      pos = writeString(buf, pos, 2, p.dialRequest.address);
      pos = writeInt64(buf, pos, 3, p.dialRequest.random);
      break;
    case PacketType.DIAL_RSP:
      pos = writeString(buf, pos, 1, p.dialResponse.error);
      pos = writeInt64(buf, pos, 2, p.dialResponse.connectID);
      pos = writeInt64(buf, pos, 3, p.dialResponse.random);
      break;
    case PacketType.CLOSE_REQ:
      pos = writeInt64(buf, pos, 1, p.closeRequest.connectID);
      break;
    case PacketType.CLOSE_RSP:
      pos = writeString(buf, pos, 1, p.closeResponse.error);
      pos = writeInt64(buf, pos, 2, p.closeResponse.connectID);
      break;
    case PacketType.DATA: {
      pos = writeInt64(buf, pos, 1, p.data.connectID);
      pos = writeString(buf, pos, 2, p.data.error);
      const d = p.data.data;
      if (d.length > 0) {
        buf[pos++] = TAG_LEN(3);
        pos = writeVarint32(buf, pos, d.length);
        buf.set(d, pos);
        pos += d.length;
      }
      break;
    }
    case PacketType.DIAL_CLS:
      pos = writeInt64(buf, pos, 1, p.closeDial.random);
      break;
    case PacketType.DRAIN:
      break;
    case PacketType.FLOW_CREDIT:
      pos = writeInt64(buf, pos, 1, p.flowCredit.connectID);
      pos = writeInt64(buf, pos, 2, p.flowCredit.bytes);
      break;
  }
  if (pos !== size) throw new Error(`codec size mismatch: wrote ${pos}, sized ${size}`);
  return buf;
}

export function encodePacket(p: Packet): Buffer {
  return encodePacketWithHeadroom(p, 0);
}

// --- decoding -------------------------------------------------------------

function decodeDialRequest(r: WireReader): Packet {
  let protocol = '';
  let address = '';
  let random = 0n;
  while (!r.done()) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) (expectWireType('DialRequest.protocol', wt, WireType.LEN), (protocol = r.string()));
    else if (field === 2) (expectWireType('DialRequest.address', wt, WireType.LEN), (address = r.string()));
    else if (field === 3) (expectWireType('DialRequest.random', wt, WireType.VARINT), (random = r.int64()));
    else r.skip(wt);
  }
  return { type: PacketType.DIAL_REQ, dialRequest: { protocol, address, random } };
}

function decodeDialResponse(r: WireReader): Packet {
  let error = '';
  let connectID = 0n;
  let random = 0n;
  while (!r.done()) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) (expectWireType('DialResponse.error', wt, WireType.LEN), (error = r.string()));
    else if (field === 2) (expectWireType('DialResponse.connectID', wt, WireType.VARINT), (connectID = r.int64()));
    else if (field === 3) (expectWireType('DialResponse.random', wt, WireType.VARINT), (random = r.int64()));
    else r.skip(wt);
  }
  return { type: PacketType.DIAL_RSP, dialResponse: { error, connectID, random } };
}

/** CloseRequest{connectID=1} and CloseDial{random=1} share one shape. */
function decodeSingleInt64(r: WireReader, name: string): bigint {
  let v = 0n;
  while (!r.done()) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) (expectWireType(name, tag & 7, WireType.VARINT), (v = r.int64()));
    else r.skip(tag & 7);
  }
  return v;
}

function decodeCloseResponse(r: WireReader): Packet {
  let error = '';
  let connectID = 0n;
  while (!r.done()) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) (expectWireType('CloseResponse.error', wt, WireType.LEN), (error = r.string()));
    else if (field === 2) (expectWireType('CloseResponse.connectID', wt, WireType.VARINT), (connectID = r.int64()));
    else r.skip(wt);
  }
  return { type: PacketType.CLOSE_RSP, closeResponse: { error, connectID } };
}

const EMPTY = new Uint8Array(0);

function decodeData(r: WireReader): Packet {
  let connectID = 0n;
  let error = '';
  let data: Uint8Array = EMPTY;
  while (!r.done()) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) (expectWireType('Data.connectID', wt, WireType.VARINT), (connectID = r.int64()));
    else if (field === 2) (expectWireType('Data.error', wt, WireType.LEN), (error = r.string()));
    else if (field === 3) (expectWireType('Data.data', wt, WireType.LEN), (data = r.bytes()));
    else r.skip(wt);
  }
  return { type: PacketType.DATA, data: { connectID, error, data } };
}

function decodePayload(field: number, r: WireReader): Packet {
  switch (field) {
    case 2:
      return decodeDialRequest(r);
    case 3:
      return decodeDialResponse(r);
    case 4:
      return decodeData(r);
    case 5:
      return { type: PacketType.CLOSE_REQ, closeRequest: { connectID: decodeSingleInt64(r, 'CloseRequest.connectID') } };
    case 6:
      return decodeCloseResponse(r);
    case 7:
      return { type: PacketType.DIAL_CLS, closeDial: { random: decodeSingleInt64(r, 'CloseDial.random') } };
    case FLOW_CREDIT_FIELD: {
      let connectID = 0n;
      let bytes = 0n;
      while (!r.done()) {
        const tag = r.uint32();
        const wt = tag & 7;
        if (tag >>> 3 === 1) (expectWireType('FlowCredit.connectID', wt, WireType.VARINT), (connectID = r.int64()));
        else if (tag >>> 3 === 2) (expectWireType('FlowCredit.bytes', wt, WireType.VARINT), (bytes = r.int64()));
        else r.skip(wt);
      }
      return { type: PacketType.FLOW_CREDIT, flowCredit: { connectID, bytes } };
    }
    default: // 8: Drain has no fields; skip whatever a newer peer may add
      while (!r.done()) r.skip(r.uint32() & 7);
      return { type: PacketType.DRAIN };
  }
}

/**
 * Decodes one Packet. Throws ProtocolError for malformed bytes, an unknown
 * packet type, or a payload that does not belong to the packet type: Go peers
 * dereference the matching payload unchecked, so we never accept or forward
 * a mismatched one.
 */
export function decodePacket(buf: Uint8Array): Packet {
  const r = new WireReader(buf);
  let type = 0;
  let payloadFieldSeen = 0;
  let payloadStart = 0;
  let payloadEnd = 0;
  while (!r.done()) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wt = tag & 7;
    if (field === 1) {
      expectWireType('Packet.type', wt, WireType.VARINT);
      type = r.uint32();
    } else if ((field >= 2 && field <= 8) || field === FLOW_CREDIT_FIELD) {
      expectWireType('Packet.payload', wt, WireType.LEN);
      payloadStart = r.lengthDelimited();
      payloadEnd = r.pos;
      payloadFieldSeen = field; // proto oneof: the last one wins
    } else {
      r.skip(wt);
    }
  }
  if (type > PacketType.DRAIN && type !== PacketType.FLOW_CREDIT) throw new ProtocolError('unknown_packet_type', `unknown packet type ${type}`);
  const expected = payloadFieldOf(type);
  if (payloadFieldSeen === 0) {
    if (type === PacketType.DRAIN) return { type: PacketType.DRAIN };
    throw new ProtocolError('payload_mismatch', `${packetTypeName(type)} packet has no payload`);
  }
  if (payloadFieldSeen !== expected) {
    throw new ProtocolError('payload_mismatch', `${packetTypeName(type)} packet carries payload field ${payloadFieldSeen}, expected ${expected}`);
  }
  r.narrow(payloadStart, payloadEnd);
  return decodePayload(payloadFieldSeen, r);
}

/**
 * Everything of a DATA packet except its payload bytes, with `headroom`
 * bytes in front for framing. Writing this and then the payload (one
 * writev) sends the same bytes as `encodePacket` without copying the
 * payload — on the hot path that copy, and the garbage it leaves, cost more
 * than the encoding itself.
 */
export function encodeDataPacketHeader(connectID: bigint, payloadLength: number, headroom: number): Buffer {
  const body = int64FieldSize(connectID) + (payloadLength === 0 ? 0 : 1 + varint32Size(payloadLength) + payloadLength);
  const headerLength = 3 + varint32Size(body) + (body - payloadLength);
  const buf = Buffer.allocUnsafe(headroom + headerLength);
  for (let i = 0; i < headroom; i++) buf[i] = 0;
  let pos = headroom;
  buf[pos++] = TAG_VARINT(1);
  buf[pos++] = PacketType.DATA;
  buf[pos++] = TAG_LEN(4);
  pos = writeVarint32(buf, pos, body);
  pos = writeInt64(buf, pos, 1, connectID);
  if (payloadLength > 0) {
    buf[pos++] = TAG_LEN(3);
    pos = writeVarint32(buf, pos, payloadLength);
  }
  if (pos !== buf.length) throw new Error(`codec size mismatch: wrote ${pos}, sized ${buf.length}`);
  return buf;
}

/**
 * Reads a DATA packet's header from the first bytes of its message when the
 * packet has the layout every known encoder writes (grpc-go, ours): type
 * DATA, then Data{connectID, data} with the payload running to the end of
 * the message. Returns the connect ID and where the payload starts, or null
 * for any other shape or a header that does not fit in `head`; decodePacket
 * then handles the joined message. Whenever this
 * returns a header, decodePacket on the whole message yields the same
 * packet, so a relay can pass the payload on in the pieces it arrived in.
 */
export function peekDataPacketHeader(head: Uint8Array, messageLength: number): { connectID: bigint; payloadOffset: number } | null {
  const r = new WireReader(head);
  try {
    if (r.uint32() !== TAG_VARINT(1) || r.uint32() !== PacketType.DATA) return null;
    if (r.uint32() !== TAG_LEN(4)) return null;
    const bodyLength = r.uint32();
    if (r.pos + bodyLength !== messageLength) return null;
    if (r.uint32() !== TAG_VARINT(1)) return null;
    const connectID = r.int64();
    if (r.uint32() !== TAG_LEN(3)) return null;
    const payloadLength = r.uint32();
    if (r.pos + payloadLength !== messageLength) return null;
    return { connectID, payloadOffset: r.pos };
  } catch (err) {
    if (err instanceof ProtocolError) return null; // ran past `head`, or a malformed varint: let decodePacket judge
    throw err;
  }
}
