/**
 * HPACK's static Huffman code (RFC 7541 Appendix B), decoding only.
 *
 * The code is canonical: within one bit length the codes are consecutive in
 * symbol order, and each length starts right after the last code of the
 * shorter lengths (shifted left). So the bit length of every symbol is all
 * this table has to carry; the codes themselves follow from it, and
 * test/hpack-decoder.test.ts checks the derived codes against the RFC's
 * "code as hex" column and its Appendix C examples.
 */

/** Bit length of the code of each symbol 0..255, then EOS (256). RFC 7541 Appendix B, "len in bits". */
const CODE_BITS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //          0x20 ' ' .. '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //               0x30 '0' .. '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //                 0x40 '@' .. 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //              0x50 'P' .. '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //                 0x60 '`' .. 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //             0x70 'p' .. DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0
  30, //                                                             EOS
];

export const HUFFMAN_EOS = 256;
const MAX_BITS = 30;

/** Symbols ordered by (code length, symbol): the canonical order. */
const bySymbolOrder: number[] = [];
/** For each length L: the first code of that length, its position in `bySymbolOrder`, and how many codes have it. */
const firstCode = new Int32Array(MAX_BITS + 1);
const firstPosition = new Int32Array(MAX_BITS + 1);
const countOfLength = new Int32Array(MAX_BITS + 1);
/** The derived code of each symbol (for tests and encoders outside src/). */
const codeOf = new Int32Array(CODE_BITS.length);

{
  for (let len = 1; len <= MAX_BITS; len++) {
    for (let sym = 0; sym < CODE_BITS.length; sym++) if (CODE_BITS[sym] === len) bySymbolOrder.push(sym);
  }
  let code = 0;
  let position = 0;
  for (let len = 1; len <= MAX_BITS; len++) {
    firstCode[len] = code;
    firstPosition[len] = position;
    while (position < bySymbolOrder.length && CODE_BITS[bySymbolOrder[position]!] === len) {
      codeOf[bySymbolOrder[position]!] = code++;
      position++;
    }
    countOfLength[len] = position - firstPosition[len]!;
    code <<= 1;
  }
}

/** The code and bit length RFC 7541 assigns to `symbol` (0..256, 256 = EOS). */
export function huffmanCode(symbol: number): { code: number; bits: number } {
  const bits = CODE_BITS[symbol];
  if (bits === undefined) throw new RangeError(`no Huffman code for symbol ${symbol}`);
  return { code: codeOf[symbol]!, bits };
}

export class HuffmanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HuffmanError';
  }
}

/**
 * Decodes a Huffman-coded string literal. Refuses what RFC 7541 §5.2 makes a
 * decoding error: the EOS symbol inside the string, and padding that is
 * longer than 7 bits or not the most significant bits of EOS (all ones).
 */
export function huffmanDecode(input: Uint8Array): Uint8Array {
  // The shortest code is 5 bits, so no string decodes to more than 8/5 of its bytes.
  const out = new Uint8Array(Math.floor((input.length * 8) / 5));
  let n = 0;
  let code = 0;
  let len = 0;
  for (let i = 0; i < input.length; i++) {
    const byte = input[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      // Canonical decoding: a code of this length exists iff the bits read so
      // far fall in that length's range (shorter codes are numerically smaller prefixes).
      const offset = code - firstCode[len]!;
      if (offset >= 0 && offset < countOfLength[len]!) {
        const symbol = bySymbolOrder[firstPosition[len]! + offset]!;
        if (symbol === HUFFMAN_EOS) throw new HuffmanError('Huffman string contains EOS');
        out[n++] = symbol;
        code = 0;
        len = 0;
      } else if (len >= MAX_BITS) {
        // Unreachable for this complete code; kept so a corrupt table cannot loop.
        throw new HuffmanError('invalid Huffman code');
      }
    }
  }
  if (len > 7) throw new HuffmanError('Huffman padding longer than 7 bits');
  if (code !== (1 << len) - 1) throw new HuffmanError('Huffman padding is not a prefix of EOS');
  return out.subarray(0, n);
}
