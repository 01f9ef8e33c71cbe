/**
 * An HPACK decoder (RFC 7541): static and dynamic table with size accounting
 * and eviction, prefixed integers, string literals (raw and Huffman).
 *
 * It exists for authority-repair.ts, which must follow a client's header
 * compression state byte for byte to rewrite one header in flight, so it
 * reports each representation with its position in the block, not only the
 * decoded fields. Nothing here is on the per-packet path.
 */
import { HuffmanError, huffmanDecode } from './hpack-huffman.ts';

export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HpackError';
  }
}

export interface HeaderField {
  readonly name: Uint8Array;
  readonly value: Uint8Array;
}

/** How a literal asks the decoder to treat its field (RFC 7541 §6.2). */
export type LiteralIndexing = 'incremental' | 'without' | 'never';

/** One representation of a header block, with its byte range in the block. */
export type HpackRepresentation =
  | { readonly kind: 'indexed'; readonly start: number; readonly end: number; readonly index: number; readonly field: HeaderField }
  | {
      readonly kind: 'literal';
      readonly start: number;
      readonly end: number;
      readonly indexing: LiteralIndexing;
      /** Index the name came from; 0 when the name is a literal too. */
      readonly nameIndex: number;
      /** Where the value's string literal (length prefix and data) starts; the bytes before it encode the kind and the name. */
      readonly valueStart: number;
      readonly valueHuffman: boolean;
      readonly field: HeaderField;
    }
  | { readonly kind: 'size-update'; readonly start: number; readonly end: number; readonly size: number };

/** Every entry costs its name and value length plus 32 octets (RFC 7541 §4.1). */
export const HPACK_ENTRY_OVERHEAD = 32;
/** SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 7540 §6.5.2), also what Node's http2 advertises. */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;

const latin1 = (s: string): Uint8Array => Buffer.from(s, 'latin1');

/** RFC 7541 Appendix A; index 1 is STATIC_TABLE[0]. */
const STATIC_TABLE: readonly HeaderField[] = (
  [
    [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
    [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
    [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
    ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
    ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
    ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
    ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
    ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
    ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
    ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
    ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
    ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
    ['www-authenticate', ''],
  ] as const
).map(([name, value]) => ({ name: latin1(name), value: latin1(value) }));

export const STATIC_TABLE_LENGTH = STATIC_TABLE.length;

/** The static table's index of `name` and `value` together (0 when absent), and of `name` alone. */
export function staticTableIndex(name: string, value: string): { field: number; name: number } {
  let nameIndex = 0;
  for (let i = 0; i < STATIC_TABLE.length; i++) {
    const e = STATIC_TABLE[i]!;
    if (e.name.length !== name.length || Buffer.from(e.name).toString('latin1') !== name) continue;
    if (nameIndex === 0) nameIndex = i + 1;
    if (Buffer.from(e.value).toString('latin1') === value) return { field: i + 1, name: nameIndex };
  }
  return { field: 0, name: nameIndex };
}

/**
 * Reads a prefixed integer (RFC 7541 §5.1) at `pos`. Values above 2^31 are
 * refused: nothing legitimate in a header block comes near, and it keeps the
 * arithmetic exact.
 */
export function decodeInteger(block: Uint8Array, pos: number, prefixBits: number): { value: number; next: number } {
  if (pos >= block.length) throw new HpackError('truncated integer');
  const max = (1 << prefixBits) - 1;
  let value = block[pos]! & max;
  pos++;
  if (value < max) return { value, next: pos };
  let shift = 0;
  for (;;) {
    if (pos >= block.length) throw new HpackError('truncated integer');
    const byte = block[pos++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if (value > 2 ** 31) throw new HpackError('integer too large');
    if ((byte & 0x80) === 0) return { value, next: pos };
    shift += 7;
  }
}

/** Appends a prefixed integer; `firstByteFlags` fills the bits above the prefix. */
export function encodeInteger(value: number, prefixBits: number, firstByteFlags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteFlags | value];
  const out = [firstByteFlags | max];
  value -= max;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

/** A string literal without Huffman coding (H = 0). */
export function encodeRawString(bytes: Uint8Array): Uint8Array {
  const prefix = encodeInteger(bytes.length, 7, 0);
  const out = new Uint8Array(prefix.length + bytes.length);
  out.set(prefix, 0);
  out.set(bytes, prefix.length);
  return out;
}

export interface HpackDecoderOptions {
  /**
   * The SETTINGS_HEADER_TABLE_SIZE the decoding side advertised: the table
   * starts at this size, and a size update above it is a decoding error.
   */
  maxTableSize?: number;
}

export class HpackDecoder {
  /** Newest entry last: dynamic index 1 is `entries[entries.length - 1]`. */
  private readonly entries: HeaderField[] = [];
  private size = 0;
  private maxSize: number;
  private readonly limit: number;

  constructor(options: HpackDecoderOptions = {}) {
    this.limit = options.maxTableSize ?? DEFAULT_HEADER_TABLE_SIZE;
    this.maxSize = this.limit;
  }

  /** Current dynamic table size in octets (RFC 7541 §4.1). */
  get tableSize(): number {
    return this.size;
  }

  /** Current maximum dynamic table size (changed by size updates). */
  get maxTableSize(): number {
    return this.maxSize;
  }

  /** The dynamic table, dynamic index 1 (newest) first. */
  get dynamicTable(): readonly HeaderField[] {
    return [...this.entries].reverse();
  }

  /** Decodes one complete header block into its fields, in order. */
  decode(block: Uint8Array): HeaderField[] {
    const fields: HeaderField[] = [];
    this.walk(block, (r) => {
      if (r.kind !== 'size-update') fields.push(r.field);
    });
    return fields;
  }

  /**
   * Walks one complete header block, calling `visit` for each representation
   * before applying its effect on the dynamic table (so indexes inside a
   * representation refer to the table as it was before it). Throws HpackError
   * on anything RFC 7541 calls a decoding error; the table is then undefined.
   */
  walk(block: Uint8Array, visit: (r: HpackRepresentation) => void): void {
    let pos = 0;
    while (pos < block.length) {
      const start = pos;
      const first = block[pos]!;
      if (first & 0x80) {
        const { value: index, next } = decodeInteger(block, pos, 7);
        const field = this.lookup(index);
        pos = next;
        visit({ kind: 'indexed', start, end: pos, index, field });
      } else if ((first & 0xe0) === 0x20) {
        const { value: size, next } = decodeInteger(block, pos, 5);
        if (size > this.limit) throw new HpackError(`dynamic table size update to ${size} exceeds the limit ${this.limit}`);
        pos = next;
        visit({ kind: 'size-update', start, end: pos, size });
        this.maxSize = size;
        this.evictTo(size);
      } else {
        const indexing: LiteralIndexing = first & 0x40 ? 'incremental' : first & 0x10 ? 'never' : 'without';
        const { value: nameIndex, next } = decodeInteger(block, pos, indexing === 'incremental' ? 6 : 4);
        pos = next;
        let name: Uint8Array;
        if (nameIndex === 0) {
          const s = this.readString(block, pos);
          name = s.bytes;
          pos = s.next;
        } else {
          name = this.lookup(nameIndex).name;
        }
        const valueStart = pos;
        const s = this.readString(block, pos);
        pos = s.next;
        const field = { name, value: s.bytes };
        visit({ kind: 'literal', start, end: pos, indexing, nameIndex, valueStart, valueHuffman: s.huffman, field });
        if (indexing === 'incremental') this.insert(field);
      }
    }
  }

  private lookup(index: number): HeaderField {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const d = index - STATIC_TABLE.length;
    if (d > this.entries.length) throw new HpackError(`index ${index} is beyond the dynamic table (${this.entries.length} entries)`);
    return this.entries[this.entries.length - d]!;
  }

  private readString(block: Uint8Array, pos: number): { bytes: Uint8Array; huffman: boolean; next: number } {
    if (pos >= block.length) throw new HpackError('truncated string literal');
    const huffman = (block[pos]! & 0x80) !== 0;
    const { value: length, next } = decodeInteger(block, pos, 7);
    if (next + length > block.length) throw new HpackError('string literal runs past the end of the block');
    const raw = block.subarray(next, next + length);
    let bytes: Uint8Array;
    if (!huffman) {
      bytes = Uint8Array.from(raw);
    } else {
      try {
        bytes = huffmanDecode(raw);
      } catch (err) {
        if (err instanceof HuffmanError) throw new HpackError(err.message);
        throw err;
      }
    }
    return { bytes, huffman, next: next + length };
  }

  /** RFC 7541 §4.4: evict from the oldest end; an entry larger than the table empties it and is not added. */
  private insert(field: HeaderField): void {
    const entrySize = field.name.length + field.value.length + HPACK_ENTRY_OVERHEAD;
    if (entrySize > this.maxSize) {
      this.entries.length = 0;
      this.size = 0;
      return;
    }
    this.evictTo(this.maxSize - entrySize);
    this.entries.push(field);
    this.size += entrySize;
  }

  private evictTo(size: number): void {
    let drop = 0;
    while (this.size > size && drop < this.entries.length) {
      const e = this.entries[drop++]!;
      this.size -= e.name.length + e.value.length + HPACK_ENTRY_OVERHEAD;
    }
    if (drop > 0) this.entries.splice(0, drop);
  }
}
