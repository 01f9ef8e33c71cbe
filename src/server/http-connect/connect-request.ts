/** What the HTTP-CONNECT frontend gets out of a request head. */

export interface ParsedConnectRequest {
  /** Request method as sent (case-sensitive, like Go). */
  method: string;
  /** Request-target as sent, e.g. "10.0.0.5:10250". */
  target: string;
  /** Version as sent, e.g. "HTTP/1.1". */
  version: string;
  protoMajor: number;
  protoMinor: number;
  /**
   * Go's r.Host: the host of the request-target (for CONNECT the authority,
   * %-escapes decoded), or the first Host header when the target has none.
   * Upstream dials exactly this string; the Host header of a normal CONNECT
   * is ignored.
   */
  host: string;
  /** Header fields by lowercased name, values in arrival order, Host included. */
  headers: ReadonlyMap<string, readonly string[]>;
  /** Go's req.wantsClose(): HTTP/1.1 "Connection: close", or HTTP/1.0 without keep-alive. */
  closeRequested: boolean;
  /** Go's wantsHttp10KeepAlive: HTTP/1.0 with "Connection: keep-alive". */
  http10KeepAlive: boolean;
  /** Content-Length > 0 or chunked: bytes in `rest` may be a body rather than tunnel data. */
  hasBody: boolean;
  /** Bytes received after the head (pipelined tunnel data); never dropped. */
  rest: Uint8Array;
  /** Length of the head including the blank line. */
  headBytes: number;
}

/** Statuses Go's HTTP/1 server answers a bad request head with, before any handler runs. */
export type RequestHeadErrorStatus = 400 | 417 | 431 | 501 | 505;

export interface ConnectRequestParseError {
  kind: 'error';
  status: RequestHeadErrorStatus;
  /**
   * Text Go's server puts after the status, as in
   * "400 Bad Request: missing required Host header"; null where Go writes
   * the bare status.
   */
  publicText: string | null;
  /** What was wrong, for logs; never sent to the client. */
  reason: string;
  /** Request version when the request line was valid; a 417 is answered in it. */
  version: { major: number; minor: number } | null;
}

export type ConnectRequestParseResult =
  | { kind: 'need-more' }
  | { kind: 'request'; request: ParsedConnectRequest }
  | ConnectRequestParseError;
