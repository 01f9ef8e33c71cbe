/**
 * Minimal protobuf wire primitives: varints (32 and 64 bit, int64 as bigint),
 * length-delimited fields and field skipping. Only what the Packet schema needs.
 */
import { ProtocolError } from './protocol-error.ts';

export const WireType = { VARINT: 0, FIXED64: 1, LEN: 2, FIXED32: 5 } as const;

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function varint32Size(v: number): number {
  // Callers pass non-negative lengths and tags only.
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  return 5;
}

// int64 values are split into two 32-bit halves as numbers. Each bigint
// operation can allocate, but V8 compiles BigInt.asUintN chains to plain
// 64-bit arithmetic, which is why these exact forms are used.
/** Low 32 bits (unsigned) of an int64 held in a bigint. */
function int64Low(v: bigint): number {
  return Number(BigInt.asUintN(32, v));
}
/** High 32 bits (unsigned) of the 64-bit two's complement of `v`. */
function int64High(v: bigint): number {
  return Number(BigInt.asUintN(32, BigInt.asUintN(64, v) >> 32n));
}

export function varint64Size(v: bigint): number {
  if (v < 0n) return 10; // proto int64: negatives are sign-extended to 64 bits
  if (v < 0x10000000n) return varint32Size(Number(v));
  if (v > 0xffffffffffffffffn) return beyondUint64Size(v);
  const hi = int64High(v);
  if (hi === 0) return 5; // 2^28 <= v < 2^32
  return Math.ceil((64 - Math.clz32(hi)) / 7);
}

/** Not an int64 at all; sized honestly so the encoder's size check rejects it. */
function beyondUint64Size(v: bigint): number {
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
  let lo = int64Low(v);
  let hi = int64High(v);
  while (hi !== 0 || lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  buf[pos++] = lo;
  return pos;
}

// Below this many UTF-16 units / bytes, plain loops beat the fixed cost of a
// call into Buffer's or TextDecoder's native UTF-8 code (~70-250 ns a call).
const SHORT_STRING = 16;

/** UTF-8 length of `s` as Buffer writes it (a lone surrogate becomes 3-byte U+FFFD). */
export function utf8Length(s: string): number {
  const n = s.length;
  if (n > SHORT_STRING) return Buffer.byteLength(s, 'utf8');
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c < 0xdc00 && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // a surrogate pair: two units, four bytes
      i++;
    } else bytes += 2;
  }
  return bytes;
}

/** Writes `s`, whose UTF-8 length the caller got from utf8Length, at `pos`; returns the new position. */
export function writeUtf8(buf: Buffer, pos: number, s: string, byteLength: number): number {
  if (byteLength === s.length && byteLength <= SHORT_STRING) {
    // Equal lengths means every unit is ASCII.
    for (let i = 0; i < byteLength; i++) buf[pos + i] = s.charCodeAt(i);
    return pos + byteLength;
  }
  return pos + buf.write(s, pos, byteLength, 'utf8');
}

/** Cursor over one encoded message; every read bounds-checks and throws ProtocolError. */
export class WireReader {
  pos: number;
  end: number;
  readonly buf: Uint8Array;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  /** Re-targets the reader at [start, end) of the same buffer, e.g. a submessage already stepped over. */
  narrow(start: number, end: number): void {
    this.pos = start;
    this.end = end;
  }

  done(): boolean {
    return this.pos >= this.end;
  }

  /** Reads a varint as uint32, keeping the low 32 bits (tags, lengths, enums). */
  uint32(): number {
    // Tags and most lengths are one byte; keep that path tiny so it inlines.
    const pos = this.pos;
    if (pos < this.end) {
      const b = this.buf[pos]!;
      if (b < 0x80) {
        this.pos = pos + 1;
        return b;
      }
    }
    return this.uint32Multibyte();
  }

  private uint32Multibyte(): number {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    let result = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw new ProtocolError('truncated', 'truncated varint');
      const b = buf[pos++]!;
      // The fifth byte's bits above 2^32 fall off the 32-bit shift.
      if (i < 5) result |= (b & 0x7f) << (7 * i);
      if (b < 0x80) {
        this.pos = pos;
        return result >>> 0;
      }
    }
    throw new ProtocolError('bad_varint', 'varint longer than 10 bytes');
  }

  int64(): bigint {
    const pos = this.pos;
    if (pos < this.end) {
      const b = this.buf[pos]!;
      if (b < 0x80) {
        this.pos = pos + 1;
        return BigInt(b);
      }
    }
    return this.int64Multibyte();
  }

  private int64Multibyte(): bigint {
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

  /**
   * Steps over a length-delimited field and returns the start of its body;
   * the body ends at the new `pos`. (A number, not a [start, end] pair:
   * this runs for every field and a tuple would be one allocation each.)
   */
  lengthDelimited(): number {
    const len = this.uint32();
    const start = this.pos;
    if (len > this.end - start) throw new ProtocolError('truncated', `length ${len} exceeds remaining ${this.end - start} bytes`);
    this.pos = start + len;
    return start;
  }

  bytes(): Uint8Array {
    const start = this.lengthDelimited();
    return this.buf.subarray(start, this.pos);
  }

  string(): string {
    const start = this.lengthDelimited();
    const end = this.pos;
    if (start === end) return '';
    if (end - start <= SHORT_STRING) {
      let ascii = '';
      for (let i = start; i < end; i++) {
        const b = this.buf[i]!;
        if (b >= 0x80) return this.decodeUtf8(start, end);
        ascii += String.fromCharCode(b);
      }
      return ascii;
    }
    return this.decodeUtf8(start, end);
  }

  private decodeUtf8(start: number, end: number): string {
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
