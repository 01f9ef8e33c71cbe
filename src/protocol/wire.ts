/**
 * Minimal protobuf wire primitives: varints (32 and 64 bit, int64 as bigint),
 * length-delimited fields and field skipping. Only what the Packet schema needs.
 */
import { ProtocolError } from './protocol-error.ts';

export const WireType = { VARINT: 0, FIXED64: 1, LEN: 2, FIXED32: 5 } as const;

const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

export function varint32Size(v: number): number {
  // Callers pass non-negative lengths and tags only.
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  return 5;
}

export function varint64Size(v: bigint): number {
  if (v < 0n) return 10; // proto int64: negatives are sign-extended to 64 bits
  if (v < 0x10000000n) return varint32Size(Number(v));
  let size = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    size++;
  }
  return size;
}

export function writeVarint32(buf: Uint8Array, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

export function writeVarint64(buf: Uint8Array, pos: number, v: bigint): number {
  if (v >= 0n && v < 0x10000000n) return writeVarint32(buf, pos, Number(v));
  const u = BigInt.asUintN(64, v);
  let lo = Number(u & 0xffffffffn);
  let hi = Number(u >> 32n);
  while (hi !== 0 || lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[pos++] = lo;
  return pos;
}

/** Cursor over one encoded message; every read bounds-checks and throws ProtocolError. */
export class WireReader {
  pos: number;
  readonly end: number;
  readonly buf: Uint8Array;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** Reads a varint that must fit in 32 bits unsigned (tags, lengths, enums). */
  uint32(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtocolError('truncated', 'truncated varint');
      const b = this.buf[this.pos++]!;
      if (shift < 32) result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) return result > 0xffffffff ? result % 0x100000000 : result;
    }
    throw new ProtocolError('bad_varint', 'varint longer than 10 bytes');
  }

  int64(): bigint {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtocolError('truncated', 'truncated varint');
      const b = this.buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) {
        if (hi === 0 && lo >= 0) return BigInt(lo);
        return BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
      }
    }
    throw new ProtocolError('bad_varint', 'varint longer than 10 bytes');
  }

  /** Returns [start, end) of a length-delimited field's body. */
  lengthDelimited(): [number, number] {
    const len = this.uint32();
    const start = this.pos;
    if (len > this.end - start) throw new ProtocolError('truncated', `length ${len} exceeds remaining ${this.end - start} bytes`);
    this.pos = start + len;
    return [start, start + len];
  }

  bytes(): Uint8Array {
    const [start, end] = this.lengthDelimited();
    return this.buf.subarray(start, end);
  }

  string(): string {
    const [start, end] = this.lengthDelimited();
    if (start === end) return '';
    try {
      return utf8Decoder.decode(this.buf.subarray(start, end));
    } catch {
      throw new ProtocolError('bad_utf8', 'string field contains invalid UTF-8');
    }
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WireType.VARINT:
        this.int64();
        return;
      case WireType.FIXED64:
        this.advance(8);
        return;
      case WireType.LEN:
        this.lengthDelimited();
        return;
      case WireType.FIXED32:
        this.advance(4);
        return;
      default:
        throw new ProtocolError('bad_wire_type', `unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (this.end - this.pos < n) throw new ProtocolError('truncated', 'truncated fixed-width field');
    this.pos += n;
  }
}

export function expectWireType(field: string, actual: number, expected: number): void {
  if (actual !== expected) throw new ProtocolError('bad_wire_type', `${field}: wire type ${actual}, expected ${expected}`);
}
