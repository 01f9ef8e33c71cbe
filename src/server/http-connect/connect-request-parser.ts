/**
 * Incremental parser for the one request head an HTTP-CONNECT frontend
 * reads from a raw socket. The frontend owns the socket bytes instead of
 * going through node:http, so it decides when the 200 goes out and keeps
 * whatever the client pipelined after the head.
 *
 * Framing follows Go's net/textproto: a line ends at LF, one CR before it
 * is dropped (bare-LF lines are accepted, as Go does), and the head ends at
 * the first empty line after the request line. Line semantics and the
 * resulting statuses are in request-head.ts.
 *
 * Memory stays bounded: at most the head limit is buffered. Go lets a head
 * reach MaxHeaderBytes plus 4096 bytes of bufio slack before it answers
 * 431, and so does this parser.
 */
import type { ConnectRequestParseError, ConnectRequestParseResult } from './connect-request.ts';
import { completeRequestHead, HeaderFieldCollector, methodPrefixIsPlausible, parseRequestLine, requestHeadError, type RequestLine } from './request-head.ts';

export type { ConnectRequestParseError, ConnectRequestParseResult, ParsedConnectRequest, RequestHeadErrorStatus } from './connect-request.ts';

/** Go's http.DefaultMaxHeaderBytes, which upstream's frontend server keeps. */
export const DEFAULT_MAX_HEADER_BYTES = 1 << 20;

/** Go's initialReadLimitSize adds this much "bufio slop" to MaxHeaderBytes. */
export const HEADER_READ_SLACK_BYTES = 4096;

export interface ConnectRequestParserOptions {
  /** Like Go's Server.MaxHeaderBytes; default 1 MiB. */
  maxHeaderBytes?: number;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const EMPTY = new Uint8Array(0);
/** First allocation for a head that spans reads; doubled as needed up to the head limit. */
const INITIAL_BUFFER_BYTES = 4096;

export class ConnectRequestParser {
  /** Largest head accepted, terminating blank line included. */
  readonly headLimit: number;
  private buffer: Uint8Array;
  private length = 0;
  private lineStart = 0;
  private scanFrom = 0;
  private methodScanFrom = 0;
  private methodComplete = false;
  private requestLine: RequestLine | null = null;
  private readonly headerFields = new HeaderFieldCollector();
  private outcome: ConnectRequestParseResult | null = null;

  constructor(options: ConnectRequestParserOptions = {}) {
    const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    if (!Number.isSafeInteger(maxHeaderBytes) || maxHeaderBytes <= 0) {
      throw new RangeError(`maxHeaderBytes must be a positive integer, got ${maxHeaderBytes}`);
    }
    this.headLimit = maxHeaderBytes + HEADER_READ_SLACK_BYTES;
    // Allocated only for a head that spans reads: most arrive whole in the first one.
    this.buffer = EMPTY;
  }

  /** Bytes of an unfinished head currently held. */
  get bufferedBytes(): number {
    return this.length;
  }

  /** Whether a request or an error has been returned; the parser takes no more input then. */
  get done(): boolean {
    return this.outcome !== null;
  }

  /**
   * Feeds the next bytes from the socket. Returns need-more until the head
   * is complete, then the request (with every byte after the head in
   * `rest`) or the error Go would answer. Once done, later calls return
   * the same outcome and ignore their bytes.
   */
  push(chunk: Uint8Array): ConnectRequestParseResult {
    if (this.outcome) return this.outcome;
    const taken = Math.min(this.headLimit - this.length, chunk.length);
    let result: ConnectRequestParseResult;
    if (this.length === 0) {
      // Nothing held yet: scan the read where it is, and keep a copy only if the head is unfinished
      // (the scan positions are offsets from the head's start either way).
      const head = chunk.subarray(0, taken);
      result = this.scan(head, chunk.subarray(taken));
      if (result.kind === 'need-more') this.append(head);
    } else {
      this.append(chunk.subarray(0, taken));
      result = this.scan(this.buffer.subarray(0, this.length), chunk.subarray(taken));
    }
    if (result.kind !== 'need-more') this.finish(result);
    return result;
  }

  /**
   * The client finished sending (EOF) before the head was complete. Go
   * answers 400 if it had received anything and closes silently if not
   * (null). Also the outcome once done.
   */
  end(): ConnectRequestParseResult | null {
    if (this.outcome) return this.outcome;
    if (this.length === 0) return null;
    return this.finish(requestHeadError(400, 'unexpected EOF in request head'));
  }

  private finish(outcome: ConnectRequestParseResult): ConnectRequestParseResult {
    this.outcome = outcome;
    this.buffer = EMPTY;
    this.length = 0;
    return outcome;
  }

  private append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const needed = this.length + bytes.length;
    if (needed > this.buffer.length) {
      let capacity = Math.max(this.buffer.length * 2, INITIAL_BUFFER_BYTES);
      while (capacity < needed) capacity *= 2;
      const grown = new Uint8Array(Math.min(capacity, this.headLimit));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(bytes, this.length);
    this.length = needed;
  }

  /** Scans `held`, the head so far (from its first byte), for complete lines; `overflow` is what the head limit cut off. */
  private scan(held: Uint8Array, overflow: Uint8Array): ConnectRequestParseResult {
    for (;;) {
      const lf = held.indexOf(LF, this.scanFrom);
      if (lf < 0) break;
      let lineEnd = lf;
      if (lineEnd > this.lineStart && held[lineEnd - 1] === CR) lineEnd--;
      const line = Buffer.from(held.buffer, held.byteOffset + this.lineStart, lineEnd - this.lineStart).toString('latin1');
      this.lineStart = lf + 1;
      this.scanFrom = this.lineStart;

      if (!this.requestLine) {
        const parsed = parseRequestLine(line);
        if ('kind' in parsed) return parsed;
        this.requestLine = parsed;
        this.methodComplete = true;
        continue;
      }
      if (line.length === 0) return this.complete(held, overflow);
      const error = this.headerFields.addLine(line);
      if (error) return error;
    }
    this.scanFrom = held.length;

    if (!this.requestLine) {
      const early = this.checkMethodPrefix(held);
      if (early) return early;
    }
    if (held.length >= this.headLimit) {
      return requestHeadError(431, `request head larger than ${this.headLimit} bytes`);
    }
    return { kind: 'need-more' };
  }

  private checkMethodPrefix(held: Uint8Array): ConnectRequestParseError | null {
    if (this.methodComplete) return null;
    const unseen = held.subarray(this.methodScanFrom);
    if (!methodPrefixIsPlausible(unseen)) return requestHeadError(400, 'invalid method');
    const space = unseen.indexOf(SP);
    if (space >= 0) this.methodComplete = true;
    this.methodScanFrom = held.length;
    return null;
  }

  private complete(held: Uint8Array, overflow: Uint8Array): ConnectRequestParseResult {
    const headBytes = this.lineStart;
    // A copy: `held` may be the socket's own read buffer, which the pipelined bytes must not keep alive.
    const rest = new Uint8Array(held.length - headBytes + overflow.length);
    rest.set(held.subarray(headBytes));
    rest.set(overflow, held.length - headBytes);
    const request = completeRequestHead(this.requestLine!, this.headerFields.finish(), rest, headBytes);
    return 'kind' in request ? request : { kind: 'request', request };
  }
}
