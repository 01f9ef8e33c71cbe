/**
 * The HPACK decoder behind the authority repair, against RFC 7541's own
 * examples (Appendix C: integers, requests with and without Huffman coding
 * sharing one dynamic table, responses in a 256-octet table with eviction),
 * the Huffman code table against the RFC's code column, and the decoding
 * errors §5 and §6 define.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HpackDecoder, HpackError, decodeInteger, encodeInteger, type HeaderField } from '../src/grpc/hpack-decoder.ts';
import { HUFFMAN_EOS, huffmanCode, huffmanDecode } from '../src/grpc/hpack-huffman.ts';
import { huffmanEncode } from './helpers/http2-raw.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const text = (fields: readonly HeaderField[]): Array<[string, string]> => fields.map((f) => [Buffer.from(f.name).toString('latin1'), Buffer.from(f.value).toString('latin1')]);

/** Decodes one block and checks the fields, then the dynamic table (index 1 first) and its size. */
function step(decoder: HpackDecoder, block: string, fields: Array<[string, string]>, table: Array<[string, string]>, size: number): void {
  assert.deepEqual(text(decoder.decode(hex(block))), fields);
  assert.deepEqual(text(decoder.dynamicTable), table);
  assert.equal(decoder.tableSize, size);
}

test('C.1: integer representation (10 and 1337 with a 5-bit prefix, 42 on an octet boundary)', () => {
  assert.deepEqual(encodeInteger(10, 5, 0), [0x0a]);
  assert.deepEqual(encodeInteger(1337, 5, 0), [0x1f, 0x9a, 0x0a]);
  assert.deepEqual(encodeInteger(42, 8, 0), [0x2a]);
  assert.deepEqual(decodeInteger(Uint8Array.of(0xea), 0, 5), { value: 10, next: 1 });
  assert.deepEqual(decodeInteger(Uint8Array.of(0x1f, 0x9a, 0x0a), 0, 5), { value: 1337, next: 3 });
  assert.deepEqual(decodeInteger(Uint8Array.of(0x2a), 0, 8), { value: 42, next: 1 });
});

const request1: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']];
const request2: Array<[string, string]> = [...request1, ['cache-control', 'no-cache']];
const request3: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']];
const requestTables: Array<Array<[string, string]>> = [
  [[':authority', 'www.example.com']],
  [['cache-control', 'no-cache'], [':authority', 'www.example.com']],
  [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']],
];

test('C.3: requests without Huffman coding, one dynamic table across three blocks', () => {
  const d = new HpackDecoder();
  step(d, '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', request1, requestTables[0]!, 57);
  step(d, '8286 84be 5808 6e6f 2d63 6163 6865', request2, requestTables[1]!, 110);
  step(d, '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65', request3, requestTables[2]!, 164);
});

test('C.4: the same requests with Huffman coding', () => {
  const d = new HpackDecoder();
  step(d, '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', request1, requestTables[0]!, 57);
  step(d, '8286 84be 5886 a8eb 1064 9cbf', request2, requestTables[1]!, 110);
  step(d, '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf', request3, requestTables[2]!, 164);
});

const date1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const date2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const loc = 'https://www.example.com';
const cookie = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const response1: Array<[string, string]> = [[':status', '302'], ['cache-control', 'private'], ['date', date1], ['location', loc]];
const response2: Array<[string, string]> = [[':status', '307'], ['cache-control', 'private'], ['date', date1], ['location', loc]];
const response3: Array<[string, string]> = [[':status', '200'], ['cache-control', 'private'], ['date', date2], ['location', loc], ['content-encoding', 'gzip'], ['set-cookie', cookie]];
const responseTables: Array<Array<[string, string]>> = [
  [['location', loc], ['date', date1], ['cache-control', 'private'], [':status', '302']],
  // ':status: 302' was evicted to make room for ':status: 307'.
  [[':status', '307'], ['location', loc], ['date', date1], ['cache-control', 'private']],
  // Three more evictions for the three new entries.
  [['set-cookie', cookie], ['content-encoding', 'gzip'], ['date', date2]],
];

test('C.5: responses without Huffman coding in a 256-octet table, with eviction', () => {
  const d = new HpackDecoder({ maxTableSize: 256 });
  step(
    d,
    `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768
     7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
    response1,
    responseTables[0]!,
    222,
  );
  step(d, '4803 3330 37c1 c0bf', response2, responseTables[1]!, 222);
  step(
    d,
    `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153
     444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31`,
    response3,
    responseTables[2]!,
    215,
  );
});

test('C.6: the same responses with Huffman coding, with eviction', () => {
  const d = new HpackDecoder({ maxTableSize: 256 });
  step(
    d,
    `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8
     e9ae 82ae 43d3`,
    response1,
    responseTables[0]!,
    222,
  );
  step(d, '4883 640e ffc1 c0bf', response2, responseTables[1]!, 222);
  step(
    d,
    `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b
     3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
    response3,
    responseTables[2]!,
    215,
  );
});

test('Huffman table: the derived codes match RFC 7541 Appendix B, the code is complete, and every byte round-trips', () => {
  // Rows of Appendix B ("code as hex", "len").
  const rfc: Array<[number, number, number]> = [
    [0, 0x1ff8, 13], [1, 0x7fffd8, 23], [9, 0xffffea, 24], [10, 0x3ffffffc, 30], [22, 0x3ffffffe, 30],
    [32, 0x14, 6], [48, 0x0, 5], [97, 0x3, 5], [116, 0x9, 5], [64, 0x1ffa, 13], [127, 0xffffffc, 28],
    [128, 0xfffe6, 20], [254, 0x7fffff0, 27], [255, 0x3ffffee, 26], [HUFFMAN_EOS, 0x3fffffff, 30],
  ];
  for (const [sym, code, bits] of rfc) assert.deepEqual(huffmanCode(sym), { code, bits }, `symbol ${sym}`);
  // Kraft equality: a complete prefix code (every bit string decodes to something).
  let kraft = 0;
  for (let s = 0; s <= HUFFMAN_EOS; s++) kraft += 2 ** (30 - huffmanCode(s).bits);
  assert.equal(kraft, 2 ** 30);
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(huffmanDecode(huffmanEncode(all)), all);
  assert.deepEqual(huffmanDecode(new Uint8Array(0)), new Uint8Array(0));
});

test('decoding errors (RFC 7541 §5.2, §6): EOS, bad padding, index 0, an index past the table, an oversized size update, truncation', () => {
  const bad: Array<[string, Uint8Array, RegExp]> = [
    ['EOS inside a Huffman string', Uint8Array.of(0x04, 0x84, 0xff, 0xff, 0xff, 0xff), /EOS/],
    ['padding of 8 bits', Uint8Array.of(0x04, 0x82, 0x1f, 0xff), /longer than 7 bits/], // 'a' then a whole padding octet
    ['padding that is not all ones', Uint8Array.of(0x04, 0x81, 0x00), /prefix of EOS/],
    ['index 0', Uint8Array.of(0x80), /index 0/],
    ['an index past the dynamic table', Uint8Array.of(0xbe), /beyond the dynamic table/],
    ['a literal name from an index past the table', Uint8Array.of(0x7e, 0x00), /beyond the dynamic table/],
    ['a size update above the advertised limit', Uint8Array.of(0x3f, 0xe2, 0x1f), /exceeds the limit 4096/],
    ['a string longer than the block', Uint8Array.of(0x04, 0x05, 0x61), /past the end/],
    ['a truncated integer', Uint8Array.of(0x1f), /truncated integer/],
    ['an integer above 2^31', Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f), /too large/],
  ];
  for (const [what, block, message] of bad) {
    assert.throws(() => new HpackDecoder().decode(block), (err: unknown) => err instanceof HpackError && message.test(err.message), what);
  }
});

test('dynamic table: a size update evicts at once; an entry larger than the table empties it; never-indexed and without-indexing literals add nothing', () => {
  const d = new HpackDecoder();
  d.decode(hex('400161 0162 400163 0164')); // a: b, c: d (each 34 octets)
  assert.deepEqual(text(d.dynamicTable), [['c', 'd'], ['a', 'b']]);
  d.decode(hex('3f03')); // size update to 34: only the newest fits
  assert.deepEqual(text(d.dynamicTable), [['c', 'd']]);
  assert.equal(d.maxTableSize, 34);
  d.decode(hex('400165 0266 66')); // e: ff is 35 octets > 34: the table is emptied, nothing added
  assert.deepEqual(text(d.dynamicTable), []);
  assert.equal(d.tableSize, 0);
  const e = new HpackDecoder();
  assert.deepEqual(text(e.decode(hex('1001 61 0162 0001 63 0164'))), [['a', 'b'], ['c', 'd']]);
  assert.deepEqual(text(e.dynamicTable), []);
});
