/**
 * Go `net/url.ParseQuery`: `&`-separated `key=value` pairs, `+` is a space,
 * `%XX` escapes; a `;` in a pair or a bad escape is an error (Go keeps parsing
 * the rest and reports one error, as this does). Keys keep first-seen order.
 */
import { goQuote } from './go-strconv.ts';

export interface GoQueryResult {
  readonly values: ReadonlyMap<string, readonly string[]>;
  /** Go's error text, or undefined when the query parsed cleanly. */
  readonly error: string | undefined;
}

function isHex(c: string | undefined): boolean {
  return c !== undefined && /^[0-9a-fA-F]$/.test(c);
}

/** url.QueryUnescape; throws with Go's `invalid URL escape "%zz"` text. */
export function goQueryUnescape(s: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  const text = raw.toString('latin1');
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '%') {
      if (i + 2 >= text.length || !isHex(text[i + 1]) || !isHex(text[i + 2])) {
        const bad = Buffer.from(text.slice(i, i + 3), 'latin1').toString('utf8');
        throw new Error(`invalid URL escape ${goQuote(bad)}`);
      }
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === '+') bytes.push(0x20);
    else bytes.push(text.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

export function parseGoUrlQuery(query: string): GoQueryResult {
  const values = new Map<string, string[]>();
  let error: string | undefined;
  for (const pair of query === '' ? [] : query.split('&')) {
    if (pair.includes(';')) {
      error = 'invalid semicolon separator in query';
      continue;
    }
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const rawKey = eq < 0 ? pair : pair.slice(0, eq);
    const rawValue = eq < 0 ? '' : pair.slice(eq + 1);
    let key: string;
    let value: string;
    try {
      key = goQueryUnescape(rawKey);
      value = goQueryUnescape(rawValue);
    } catch (err) {
      error ??= (err as Error).message;
      continue;
    }
    const list = values.get(key);
    if (list) list.push(value);
    else values.set(key, [value]);
  }
  return { values, error };
}
