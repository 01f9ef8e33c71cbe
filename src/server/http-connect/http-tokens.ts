/**
 * Byte classes and token matching with the exact rules of Go's net/http,
 * net/textproto and golang.org/x/net/http/httpguts, so that a request Go
 * accepts is accepted here and one Go rejects is rejected here.
 *
 * Strings handled here are "byte strings": one char per byte (latin1), the
 * way Go's string holds raw bytes.
 */

function makeByteClass(predicate: (b: number) => boolean): Uint8Array {
  const table = new Uint8Array(256);
  for (let b = 0; b < 256; b++) table[b] = predicate(b) ? 1 : 0;
  return table;
}

const isAlnum = (b: number): boolean => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);

/** RFC 7230 tchar; Go's httpguts.IsTokenRune and textproto.validHeaderFieldByte. */
const TOKEN_BYTES = makeByteClass((b) => isAlnum(b) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b)));

/** textproto.validHeaderValueByte: HTAB, SP, VCHAR and obs-text; no other CTL, no DEL. */
const HEADER_VALUE_BYTES = makeByteClass((b) => b === 0x09 || (b >= 0x20 && b !== 0x7f));

/** httpguts validHostByte: the lenient Host header check Go's server applies. */
const HOST_HEADER_BYTES = makeByteClass((b) => isAlnum(b) || "!$%&()*+,-.:;=[]'_~".includes(String.fromCharCode(b)));

/**
 * Bytes net/url lets through unescaped in a host (its encodeHost mode):
 * unreserved, sub-delims, ':' for the port, '[' ']' for IPv6 literals and
 * the '<' '>' '"' Go lets pass; '%' is handled separately as an escape.
 * Bytes >= 0x80 are always allowed.
 */
const URL_HOST_BYTES = makeByteClass((b) => b >= 0x80 || isAlnum(b) || "-._~!$&'()*+,;=:[]<>\"".includes(String.fromCharCode(b)));

/** net/url validUserinfo. */
const USERINFO_BYTES = makeByteClass((b) => isAlnum(b) || "-._:~!$&'()*+,;=%@".includes(String.fromCharCode(b)));

const HEX_BYTES = makeByteClass((b) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66));

export function isTokenByte(b: number): boolean {
  return TOKEN_BYTES[b] === 1;
}

export function isHeaderValueByte(b: number): boolean {
  return HEADER_VALUE_BYTES[b] === 1;
}

export function isUrlHostByte(b: number): boolean {
  return URL_HOST_BYTES[b] === 1;
}

export function isUserinfoByte(b: number): boolean {
  return USERINFO_BYTES[b] === 1;
}

export function isHexByte(b: number): boolean {
  return HEX_BYTES[b] === 1;
}

/** Go's httpguts.ValidHostHeader. */
export function isValidHostHeader(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    if (HOST_HEADER_BYTES[value.charCodeAt(i)] !== 1) return false;
  }
  return true;
}

/** A non-empty token: Go's validMethod and httpguts.ValidHeaderFieldName. */
export function isToken(value: string): boolean {
  if (value.length === 0) return false;
  for (let i = 0; i < value.length; i++) {
    if (TOKEN_BYTES[value.charCodeAt(i)] !== 1) return false;
  }
  return true;
}

/** Go's url.stringContainsCTLByte: any byte < 0x20 or 0x7f. */
export function containsControlByte(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const b = value.charCodeAt(i);
    if (b < 0x20 || b === 0x7f) return true;
  }
  return false;
}

/** Go's textproto.TrimString: strips SP and HTAB (and nothing else) at both ends. */
export function trimSpaceAndTab(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isSpaceOrTab(value.charCodeAt(start))) start++;
  while (end > start && isSpaceOrTab(value.charCodeAt(end - 1))) end--;
  return value.slice(start, end);
}

export function isSpaceOrTab(b: number): boolean {
  return b === 0x20 || b === 0x09;
}

function asciiLower(value: string): string {
  return value.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) | 0x20));
}

/** Go's ascii.EqualFold: case folding of ASCII letters only. */
export function asciiEqualFold(a: string, b: string): boolean {
  return a.length === b.length && asciiLower(a) === asciiLower(b);
}

/**
 * net/http's hasToken: whether `token` (lowercase ASCII) occurs in `value`
 * delimited by SP, HTAB, ',' or the string ends. Used for the Connection
 * and Expect checks on a single header value.
 */
export function hasToken(value: string, token: string): boolean {
  if (token.length === 0 || token.length > value.length) return false;
  if (value === token) return true;
  const isBoundary = (b: number): boolean => b === 0x20 || b === 0x2c || b === 0x09;
  for (let start = 0; start + token.length <= value.length; start++) {
    if (start > 0 && !isBoundary(value.charCodeAt(start - 1))) continue;
    const end = start + token.length;
    if (end !== value.length && !isBoundary(value.charCodeAt(end))) continue;
    if (asciiEqualFold(value.slice(start, end), token)) return true;
  }
  return false;
}

/** httpguts.HeaderValuesContainsToken: comma-separated lists, OWS-trimmed elements. */
export function headerValuesContainToken(values: readonly string[], token: string): boolean {
  for (const value of values) {
    for (const element of value.split(',')) {
      if (asciiEqualFold(trimSpaceAndTab(element), token)) return true;
    }
  }
  return false;
}
