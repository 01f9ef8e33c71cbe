/**
 * Go `strconv` number and bool parsing, reproduced closely enough that flag
 * values accepted or rejected by an upstream (Go) binary are accepted or
 * rejected here too, with the same error text.
 */

/** strconv.NumError, rendered the way Go's `Error()` renders it. */
export class GoNumError extends Error {
  readonly func: string;
  readonly num: string;
  readonly reason: 'invalid syntax' | 'value out of range';
  constructor(func: string, num: string, reason: 'invalid syntax' | 'value out of range') {
    super(`strconv.${func}: parsing ${goQuote(num)}: ${reason}`);
    this.name = 'GoNumError';
    this.func = func;
    this.num = num;
    this.reason = reason;
  }
}

/**
 * strconv.Quote: double-quoted, with Go escapes for `"`, `\`, control and
 * non-printable characters. Printable non-ASCII text is kept as is.
 */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    switch (ch) {
      case '"': out += '\\"'; continue;
      case '\\': out += '\\\\'; continue;
      case '\x07': out += '\\a'; continue;
      case '\b': out += '\\b'; continue;
      case '\f': out += '\\f'; continue;
      case '\n': out += '\\n'; continue;
      case '\r': out += '\\r'; continue;
      case '\t': out += '\\t'; continue;
      case '\v': out += '\\v'; continue;
    }
    if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp >= 0x80 && !isPrintable(ch)) {
      out += cp > 0xffff ? `\\U${cp.toString(16).padStart(8, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return out + '"';
}

// Approximates unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
const printableRe = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;
function isPrintable(ch: string): boolean {
  return printableRe.test(ch);
}

function lower(c: string): string {
  return c.toLowerCase();
}

/** strconv's underscoreOK: underscores only between digits (or after a base prefix). */
export function goUnderscoreOK(input: string): boolean {
  let s = input;
  let saw = '^';
  let i = 0;
  if (s.length >= 1 && (s[0] === '-' || s[0] === '+')) s = s.slice(1);
  let hex = false;
  if (s.length >= 2 && s[0] === '0' && 'box'.includes(lower(s[1] ?? ''))) {
    i = 2;
    saw = '0';
    hex = lower(s[1] ?? '') === 'x';
  }
  for (; i < s.length; i++) {
    const c = s[i] ?? '';
    if ((c >= '0' && c <= '9') || (hex && lower(c) >= 'a' && lower(c) <= 'f')) {
      saw = '0';
      continue;
    }
    if (c === '_') {
      if (saw !== '0') return false;
      saw = '_';
      continue;
    }
    if (saw === '_') return false;
    saw = '!';
  }
  return saw !== '_';
}

/**
 * strconv.ParseUint. `base` 0 means "from the prefix" (0x, 0o, 0b, leading 0
 * for octal) and allows `_` separators, as pflag's int flags do.
 */
export function parseGoUint(s: string, base: number, bitSize: number, funcName = 'ParseUint'): bigint {
  if (s === '') throw new GoNumError(funcName, s, 'invalid syntax');
  const base0 = base === 0;
  const s0 = s;
  let digits = s;
  if (base0) {
    base = 10;
    if (s[0] === '0') {
      const p = lower(s[1] ?? '');
      if (s.length >= 3 && p === 'b') { base = 2; digits = s.slice(2); }
      else if (s.length >= 3 && p === 'o') { base = 8; digits = s.slice(2); }
      else if (s.length >= 3 && p === 'x') { base = 16; digits = s.slice(2); }
      else { base = 8; digits = s.slice(1); }
    }
  }
  const maxVal = (1n << BigInt(bitSize)) - 1n;
  const big = BigInt(base);
  let underscores = false;
  let n = 0n;
  for (const c of digits) {
    let d: number;
    if (c === '_' && base0) { underscores = true; continue; }
    else if (c >= '0' && c <= '9') d = c.charCodeAt(0) - 48;
    else if (lower(c) >= 'a' && lower(c) <= 'z' && lower(c).length === 1) d = lower(c).charCodeAt(0) - 97 + 10;
    else throw new GoNumError(funcName, s0, 'invalid syntax');
    if (d >= base) throw new GoNumError(funcName, s0, 'invalid syntax');
    const next = n * big + BigInt(d);
    if (next > maxVal) throw new GoNumError(funcName, s0, 'value out of range');
    n = next;
  }
  if (underscores && !goUnderscoreOK(s0)) throw new GoNumError(funcName, s0, 'invalid syntax');
  return n;
}

/** strconv.ParseInt (see parseGoUint for `base`). */
export function parseGoInt(s: string, base: number, bitSize: number): bigint {
  if (s === '') throw new GoNumError('ParseInt', s, 'invalid syntax');
  let rest = s;
  let neg = false;
  if (s[0] === '+') rest = s.slice(1);
  else if (s[0] === '-') { neg = true; rest = s.slice(1); }
  let un: bigint;
  try {
    un = parseGoUint(rest, base, bitSize, 'ParseInt');
  } catch (err) {
    if (err instanceof GoNumError && err.reason === 'value out of range') {
      throw new GoNumError('ParseInt', s, 'value out of range');
    }
    if (err instanceof GoNumError) throw new GoNumError('ParseInt', s, err.reason);
    throw err;
  }
  const cutoff = 1n << BigInt(bitSize - 1);
  if (!neg && un >= cutoff) throw new GoNumError('ParseInt', s, 'value out of range');
  if (neg && un > cutoff) throw new GoNumError('ParseInt', s, 'value out of range');
  return neg ? -un : un;
}

const goTrue = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const goFalse = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);

/** strconv.ParseBool. */
export function parseGoBool(s: string): boolean {
  if (goTrue.has(s)) return true;
  if (goFalse.has(s)) return false;
  throw new GoNumError('ParseBool', s, 'invalid syntax');
}

/**
 * strconv.ParseFloat(s, 32): decimal or hex (`0x1p-2`) literals with optional
 * `_` separators, `inf`/`infinity`/`nan`; the result is rounded to float32
 * and overflow of a finite literal is a range error.
 */
export function parseGoFloat32(s: string): number {
  const special = parseSpecialFloat(s);
  if (special !== undefined) return special;
  const value = parseFiniteFloatLiteral(s);
  if (value === undefined) throw new GoNumError('ParseFloat', s, 'invalid syntax');
  const f32 = Math.fround(value);
  if (!Number.isFinite(f32)) throw new GoNumError('ParseFloat', s, 'value out of range');
  return f32;
}

function parseSpecialFloat(s: string): number | undefined {
  let sign = 1;
  let rest = s;
  if (rest[0] === '+' || rest[0] === '-') {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
    const l = rest.toLowerCase();
    if (l === 'inf' || l === 'infinity') return sign * Infinity;
    return undefined;
  }
  const l = rest.toLowerCase();
  if (l === 'inf' || l === 'infinity') return Infinity;
  if (l === 'nan') return NaN;
  return undefined;
}

const decimalFloatRe = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const hexFloatRe = /^([+-]?)0[xX]((?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+))[pP]([+-]?\d+)$/;

function parseFiniteFloatLiteral(s: string): number | undefined {
  let text = s;
  if (text.includes('_')) {
    if (!goUnderscoreOK(text)) return undefined;
    text = text.replaceAll('_', '');
  }
  if (decimalFloatRe.test(text)) return Number(text);
  const hex = hexFloatRe.exec(text);
  if (!hex) return undefined;
  const [, sign, mantissa = '', exp = '0'] = hex;
  const [intPart = '', fracPart = ''] = mantissa.split('.');
  let m = 0;
  for (const c of intPart) m = m * 16 + parseInt(c, 16);
  let scale = 1 / 16;
  for (const c of fracPart) { m += parseInt(c, 16) * scale; scale /= 16; }
  const v = m * 2 ** Number(exp);
  return sign === '-' ? -v : v;
}

/**
 * strconv.FormatFloat(v, 'g', -1, 32): the shortest decimal that reads back
 * as the same float32, in %g layout.
 */
export function formatGoFloat32(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  let digits = '';
  for (let p = 1; p <= 9; p++) {
    digits = v.toExponential(p - 1);
    if (Math.fround(Number(digits)) === v) break;
  }
  const [mant = '', expText = '0'] = digits.split('e');
  const exp = Number(expText);
  const mantDigits = mant.replace('-', '').replace('.', '');
  const sign = v < 0 ? '-' : '';
  // Go's %g in shortest mode switches to exponent form when exp < -4 || exp >= 6.
  if (exp < -4 || exp >= 6) {
    const m = mantDigits.length > 1 ? `${mantDigits[0]}.${mantDigits.slice(1)}` : mantDigits;
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (exp >= mantDigits.length - 1) return sign + mantDigits + '0'.repeat(exp - mantDigits.length + 1);
  if (exp >= 0) return `${sign}${mantDigits.slice(0, exp + 1)}.${mantDigits.slice(exp + 1)}`;
  return `${sign}0.${'0'.repeat(-exp - 1)}${mantDigits}`;
}
