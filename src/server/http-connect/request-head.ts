/**
 * Go's rules for a request head, applied to complete lines: the request
 * line (net/http parseRequestLine, validMethod, ParseHTTPVersion), header
 * lines (net/textproto readMIMEHeader, including obs-fold, which Go still
 * accepts by joining the lines with one space), and the checks Go makes once
 * the head is complete (net/http readRequest, readTransfer, conn.readRequest
 * and the Expect handling in conn.serve), in Go's order, so a bad request
 * gets the same status Go would answer with.
 *
 * Lines are byte strings (one char per byte) without their line ending.
 */
import type { ConnectRequestParseError, ParsedConnectRequest, RequestHeadErrorStatus } from './connect-request.ts';
import { parseRequestTarget } from './go-request-target.ts';
import {
  asciiEqualFold,
  hasToken,
  headerValuesContainToken,
  isHeaderValueByte,
  isSpaceOrTab,
  isToken,
  isTokenByte,
  isValidHostHeader,
  trimSpaceAndTab,
} from './http-tokens.ts';

export interface RequestLine {
  method: string;
  target: string;
  version: string;
  protoMajor: number;
  protoMinor: number;
  /** Host from the request-target, "" if it has none (byte string). */
  targetHost: string;
}

export function requestHeadError(
  status: RequestHeadErrorStatus,
  reason: string,
  publicText: string | null = null,
  version: { major: number; minor: number } | null = null,
): ConnectRequestParseError {
  return { kind: 'error', status, publicText, reason, version };
}

/** Go's ParseHTTPVersion: "HTTP/1.1", "HTTP/1.0", or "HTTP/d.d". */
function parseHttpVersion(version: string): { major: number; minor: number } | null {
  if (version === 'HTTP/1.1') return { major: 1, minor: 1 };
  if (version === 'HTTP/1.0') return { major: 1, minor: 0 };
  const m = /^HTTP\/([0-9])\.([0-9])$/.exec(version);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : null;
}

export function parseRequestLine(line: string): RequestLine | ConnectRequestParseError {
  // Exactly single spaces, as Go's strings.Cut twice: "A  B C" has an empty target
  // and a version of "B C", which then fails the version check.
  const firstSpace = line.indexOf(' ');
  const secondSpace = firstSpace < 0 ? -1 : line.indexOf(' ', firstSpace + 1);
  if (secondSpace < 0) return requestHeadError(400, 'malformed HTTP request');
  const method = line.slice(0, firstSpace);
  const target = line.slice(firstSpace + 1, secondSpace);
  const version = line.slice(secondSpace + 1);
  if (!isToken(method)) return requestHeadError(400, 'invalid method');
  const parsedVersion = parseHttpVersion(version);
  if (!parsedVersion) return requestHeadError(400, 'malformed HTTP version');
  const targetResult = parseRequestTarget(method, target);
  if (!targetResult.ok) return requestHeadError(400, `bad request-target: ${targetResult.reason}`);
  return { method, target, version, protoMajor: parsedVersion.major, protoMinor: parsedVersion.minor, targetHost: targetResult.host };
}

/**
 * Whether the bytes seen so far of an unfinished request line can still
 * become a valid method. Go would wait for the whole line before
 * answering 400; deciding at the first impossible byte answers the same 400
 * sooner, and stops a TLS ClientHello sent to a plaintext port from being
 * buffered up to the header limit.
 */
export function methodPrefixIsPlausible(partialLine: Uint8Array): boolean {
  for (const b of partialLine) {
    if (b === 0x20) return true;
    if (!isTokenByte(b)) return false;
  }
  return true;
}

interface HeaderField {
  name: string;
  value: string;
}

/** Collects header lines like textproto.readMIMEHeader, validating as lines arrive. */
export class HeaderFieldCollector {
  private readonly fields: HeaderField[] = [];
  private current: { name: string; joined: string } | null = null;

  /** Adds one non-empty header line; returns the error Go would give for it, if any. */
  addLine(line: string): ConnectRequestParseError | null {
    if (isSpaceOrTab(line.charCodeAt(0))) {
      // Only the first header line can find no field to continue: any other error ends the parse.
      if (!this.current) return requestHeadError(400, 'malformed MIME header initial line');
      // obs-fold: Go joins the continuation, trimmed, with a single space.
      const segment = trimSpaceAndTab(line);
      if (!allHeaderValueBytes(segment)) return requestHeadError(400, 'malformed MIME header line');
      this.current.joined += ` ${segment}`;
      return null;
    }
    this.flush();
    const trimmed = trimSpaceAndTab(line);
    const colon = trimmed.indexOf(':');
    if (colon < 0) return requestHeadError(400, 'malformed MIME header: missing colon');
    const name = trimmed.slice(0, colon);
    if (name.length === 0) return requestHeadError(400, 'malformed MIME header line');
    for (let i = 0; i < name.length; i++) {
      const b = name.charCodeAt(i);
      // textproto lets a space through (Go issue 34540); net/http then rejects the name.
      if (!isTokenByte(b) && b !== 0x20) return requestHeadError(400, 'malformed MIME header line');
    }
    const value = trimmed.slice(colon + 1);
    if (!allHeaderValueBytes(value)) return requestHeadError(400, 'malformed MIME header line');
    this.current = { name, joined: value };
    return null;
  }

  finish(): HeaderField[] {
    this.flush();
    return this.fields;
  }

  private flush(): void {
    if (!this.current) return;
    this.fields.push({ name: this.current.name, value: trimLeadingSpaceAndTab(this.current.joined) });
    this.current = null;
  }
}

function allHeaderValueBytes(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    if (!isHeaderValueByte(value.charCodeAt(i))) return false;
  }
  return true;
}

function trimLeadingSpaceAndTab(value: string): string {
  let start = 0;
  while (start < value.length && isSpaceOrTab(value.charCodeAt(start))) start++;
  return value.slice(start);
}

const NON_ASCII = /[^\x00-\x7f]/;

/** Go's string([]byte) of raw bytes, read as UTF-8 (invalid sequences become U+FFFD). */
export function byteStringToText(value: string): string {
  // ASCII reads the same either way; every dial's target and Host take this path.
  if (!NON_ASCII.test(value)) return value;
  return Buffer.from(value, 'latin1').toString('utf8');
}

const MAX_INT64 = (1n << 63n) - 1n;

/** Body framing as Go's readTransfer sees it, or the error it returns. */
function readBodyFraming(
  line: RequestLine,
  headers: ReadonlyMap<string, readonly string[]>,
): { hasBody: boolean } | ConnectRequestParseError {
  const transferEncodings = headers.get('transfer-encoding');
  // Go ignores Transfer-Encoding on HTTP/1.0 requests (issue 12785).
  const http11 = line.protoMajor > 1 || (line.protoMajor === 1 && line.protoMinor >= 1);
  if (transferEncodings && http11) {
    if (transferEncodings.length !== 1) return requestHeadError(501, 'too many transfer encodings');
    if (!asciiEqualFold(transferEncodings[0]!, 'chunked')) return requestHeadError(501, 'unsupported transfer encoding');
    // Chunked overrides Content-Length, which Go then deletes unchecked.
    return { hasBody: true };
  }
  const contentLengths = headers.get('content-length');
  if (!contentLengths) return { hasBody: false };
  const first = trimSpaceAndTab(contentLengths[0]!);
  if (contentLengths.some((v) => trimSpaceAndTab(v) !== first)) {
    return requestHeadError(400, 'http: message cannot contain multiple Content-Length headers');
  }
  if (first === '') return requestHeadError(400, 'invalid empty Content-Length');
  if (!/^[0-9]+$/.test(first) || BigInt(first) > MAX_INT64) return requestHeadError(400, 'bad Content-Length');
  return { hasBody: BigInt(first) > 0n };
}

/** Go's checks on a complete head, in Go's order; builds the request if it passes. */
export function completeRequestHead(
  line: RequestLine,
  fields: readonly HeaderField[],
  rest: Uint8Array,
  headBytes: number,
): ParsedConnectRequest | ConnectRequestParseError {
  const headers = new Map<string, string[]>();
  for (const field of fields) {
    const name = field.name.toLowerCase();
    const values = headers.get(name);
    if (values) values.push(field.value);
    else headers.set(name, [field.value]);
  }
  const hosts = headers.get('host') ?? [];
  // net/http readRequest
  if (hosts.length > 1) return requestHeadError(400, 'too many Host headers');
  const framing = readBodyFraming(line, headers);
  if ('kind' in framing) return framing;

  // net/http conn.readRequest
  const version = { major: line.protoMajor, minor: line.protoMinor };
  const isH2Preface = line.method === 'PRI' && line.target === '*' && line.version === 'HTTP/2.0';
  if (!(line.protoMajor === 1 || isH2Preface)) {
    return requestHeadError(505, 'unsupported protocol version', 'unsupported protocol version', version);
  }
  const http11 = line.protoMajor > 1 || line.protoMinor >= 1;
  if (http11 && hosts.length === 0 && !(isH2Preface && headers.size === 0) && line.method !== 'CONNECT') {
    return requestHeadError(400, 'missing required Host header', 'missing required Host header', version);
  }
  if (hosts.length === 1 && !isValidHostHeader(hosts[0]!)) {
    return requestHeadError(400, 'malformed Host header', 'malformed Host header', version);
  }
  for (const field of fields) {
    if (!isToken(field.name)) return requestHeadError(400, 'invalid header name', 'invalid header name', version);
  }

  // net/http conn.serve: any expectation but 100-continue is refused before the handler runs.
  const expect = headers.get('expect')?.[0] ?? '';
  if (expect !== '' && !hasToken(expect, '100-continue')) {
    return requestHeadError(417, 'unsupported Expect', null, version);
  }

  const connection = headers.get('connection') ?? [];
  const http10 = line.protoMajor === 1 && line.protoMinor === 0;
  const http10KeepAlive = http10 && hasToken(connection[0] ?? '', 'keep-alive');
  // Go's req.Close (shouldClose) or'ed with wantsClose's single-value check.
  const closeRequested =
    headerValuesContainToken(connection, 'close') ||
    (http10 && !headerValuesContainToken(connection, 'keep-alive')) ||
    hasToken(connection[0] ?? '', 'close');

  const textHeaders = new Map<string, string[]>();
  for (const [name, values] of headers) textHeaders.set(name, values.map(byteStringToText));
  return {
    method: line.method,
    target: byteStringToText(line.target),
    version: line.version,
    protoMajor: line.protoMajor,
    protoMinor: line.protoMinor,
    host: byteStringToText(line.targetHost !== '' ? line.targetHost : (hosts[0] ?? '')),
    headers: textHeaders,
    closeRequested,
    http10KeepAlive,
    hasBody: framing.hasBody,
    rest,
    headBytes,
  };
}
