/**
 * Go `time.ParseDuration` and `Duration.String()`, so duration flags accept,
 * reject and print exactly what the upstream binaries do. Internally exact
 * (bigint nanoseconds, int64 overflow rules); callers mostly want
 * milliseconds.
 */

const NS = 1n;
const US = 1000n * NS;
const MS = 1000n * US;
const SECOND = 1000n * MS;
const MINUTE = 60n * SECOND;
const HOUR = 60n * MINUTE;

const unitNs: ReadonlyMap<string, bigint> = new Map([
  ['ns', NS],
  ['us', US],
  ['\u00b5s', US], // U+00B5 micro sign
  ['\u03bcs', US], // U+03BC Greek mu
  ['ms', MS],
  ['s', SECOND],
  ['m', MINUTE],
  ['h', HOUR],
]);

const INT64_MAX = (1n << 63n) - 1n;
const TWO_63 = 1n << 63n;

export class GoDurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GoDurationError';
  }
}

/** The time package's private quote: ASCII kept, other bytes as \xNN. */
function timeQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    if (cp >= 0x80 || cp < 0x20) {
      for (const b of Buffer.from(ch, 'utf8')) out += `\\x${b.toString(16).padStart(2, '0')}`;
    } else {
      if (ch === '"' || ch === '\\') out += '\\';
      out += ch;
    }
  }
  return out + '"';
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

/** time.ParseDuration → signed nanoseconds. Throws GoDurationError with Go's message. */
export function parseGoDurationNs(input: string): bigint {
  const orig = input;
  let s = input;
  let neg = false;
  const invalid = () => new GoDurationError(`time: invalid duration ${timeQuote(orig)}`);
  if (s !== '') {
    const c = s[0];
    if (c === '-' || c === '+') {
      neg = c === '-';
      s = s.slice(1);
    }
  }
  if (s === '0') return 0n;
  if (s === '') throw invalid();
  let total = 0n;
  while (s !== '') {
    if (!(s[0] === '.' || isDigit(s[0]))) throw invalid();
    // Leading integer; Go fails on more than int64 worth of digits.
    let i = 0;
    let v = 0n;
    while (isDigit(s[i])) {
      if (v > TWO_63 / 10n) throw invalid();
      v = v * 10n + BigInt(s.charCodeAt(i) - 48);
      if (v > TWO_63) throw invalid();
      i++;
    }
    const pre = i > 0;
    s = s.slice(i);
    // Optional fraction: digits past int64 precision are dropped, as in Go.
    let post = false;
    let f = 0n;
    let scale = 1;
    if (s[0] === '.') {
      s = s.slice(1);
      let j = 0;
      let overflow = false;
      while (isDigit(s[j])) {
        if (!overflow) {
          if (f > INT64_MAX / 10n) overflow = true;
          else {
            const next = f * 10n + BigInt(s.charCodeAt(j) - 48);
            if (next > TWO_63) overflow = true;
            else {
              f = next;
              scale *= 10;
            }
          }
        }
        j++;
      }
      post = j > 0;
      s = s.slice(j);
    }
    if (!pre && !post) throw invalid();
    let u = 0;
    while (u < s.length && s[u] !== '.' && !isDigit(s[u])) u++;
    if (u === 0) throw new GoDurationError(`time: missing unit in duration ${timeQuote(orig)}`);
    const unitText = s.slice(0, u);
    s = s.slice(u);
    const unit = unitNs.get(unitText);
    if (unit === undefined) {
      throw new GoDurationError(`time: unknown unit ${timeQuote(unitText)} in duration ${timeQuote(orig)}`);
    }
    if (v > TWO_63 / unit) throw invalid();
    v *= unit;
    if (f > 0n) {
      // Go computes the fractional part in float64: uint64(float64(f) * (float64(unit) / scale)).
      v += BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
      if (v > TWO_63) throw invalid();
    }
    total += v;
    if (total > TWO_63) throw invalid();
  }
  if (neg) return -total;
  if (total > INT64_MAX) throw invalid();
  return total;
}

/** time.ParseDuration → milliseconds (fractional below 1 ms). */
export function parseGoDurationMs(input: string): number {
  return nsToMs(parseGoDurationNs(input));
}

export function nsToMs(ns: bigint): number {
  const whole = ns / MS;
  const rest = ns % MS;
  return Number(whole) + Number(rest) / 1e6;
}

export function msToNs(ms: number): bigint {
  const whole = Math.trunc(ms);
  return BigInt(whole) * MS + BigInt(Math.round((ms - whole) * 1e6));
}

/** Go's fmtFrac: ".123" with trailing zeros (and a bare ".") dropped. */
function fmtFrac(v: bigint, prec: number): { frac: string; rest: bigint } {
  let digits = '';
  let printed = false;
  let value = v;
  for (let i = 0; i < prec; i++) {
    const digit = value % 10n;
    printed = printed || digit !== 0n;
    if (printed) digits = digit.toString() + digits;
    value /= 10n;
  }
  return { frac: printed ? '.' + digits : '', rest: value };
}

/** Duration.String(): "1h0m0s", "1.5s", "300ms", "0s", "-1m30s". */
export function formatGoDurationNs(d: bigint): string {
  const neg = d < 0n;
  const u = neg ? -d : d;
  let out: string;
  if (u < SECOND) {
    if (u === 0n) return '0s';
    let prec: number;
    let unit: string;
    if (u < US) { prec = 0; unit = 'ns'; }
    else if (u < MS) { prec = 3; unit = '\u00b5s'; }
    else { prec = 6; unit = 'ms'; }
    const { frac, rest } = fmtFrac(u, prec);
    out = `${rest}${frac}${unit}`;
  } else {
    const { frac, rest } = fmtFrac(u, 9);
    const secs = rest % 60n;
    const totalMinutes = rest / 60n;
    out = `${secs}${frac}s`;
    if (totalMinutes > 0n) {
      out = `${totalMinutes % 60n}m${out}`;
      const hours = totalMinutes / 60n;
      if (hours > 0n) out = `${hours}h${out}`;
    }
  }
  return neg ? '-' + out : out;
}

export function formatGoDurationMs(ms: number): string {
  return formatGoDurationNs(msToNs(ms));
}
