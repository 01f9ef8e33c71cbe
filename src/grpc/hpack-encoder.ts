/**
 * The header blocks our own HTTP/2 client sends (RFC 7541): a field that is a
 * static-table entry as one indexed byte, anything else as a literal without
 * indexing (with the static table's name index when it has the name). No
 * dynamic table and no Huffman coding: a gRPC request's block is a few dozen
 * bytes either way, and the peer's decoder then keeps no state for us.
 *
 * A client sends the same few header lists over and over, so blocks are
 * cached by their fields.
 */
import { encodeInteger, staticTableIndex } from './hpack-decoder.ts';

const cache = new Map<string, Buffer>();
const CACHE_LIMIT = 64;

/** Characters RFC 9113 §8.2.1 forbids in a field value (and names must be lowercase tokens). */
const BAD_VALUE = /[\0\r\n]/;
const NAME = /^:?[!#$%&'*+\-.^_`|~0-9a-z]+$/;

export function encodeHeaderBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  let key = '';
  for (const [name, value] of fields) key += `${name}\0${value}\0`;
  const hit = cache.get(key);
  if (hit) return hit;
  const parts: number[] = [];
  for (const [name, value] of fields) {
    if (!NAME.test(name)) throw new TypeError(`invalid HTTP/2 header name ${JSON.stringify(name)}`);
    if (BAD_VALUE.test(value)) throw new TypeError(`invalid value for HTTP/2 header ${name}`);
    const index = staticTableIndex(name, value);
    if (index.field !== 0) {
      parts.push(...encodeInteger(index.field, 7, 0x80));
      continue;
    }
    parts.push(...encodeInteger(index.name, 4, 0x00));
    if (index.name === 0) pushString(parts, name);
    pushString(parts, value);
  }
  const block = Buffer.from(parts);
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, block);
  return block;
}

function pushString(out: number[], s: string): void {
  const bytes = Buffer.from(s, 'latin1');
  out.push(...encodeInteger(bytes.length, 7, 0));
  for (const b of bytes) out.push(b);
}
