/**
 * The exact bytes upstream's HTTP-CONNECT frontend writes (pkg/server/tunnel.go
 * and server.go), plus those Go's HTTP/1 server writes itself for a bad
 * request head (net/http conn.serve) and for a non-CONNECT method
 * (http.Error through the ResponseWriter). kube-apiserver reads exactly one
 * response and wants nothing after a 200, so each of these is meant to be
 * written alone in one write.
 */
import type { ConnectRequestParseError, ParsedConnectRequest } from './connect-request.ts';
import { mapDialErrorToHTTPStatus } from './dial-error-status.ts';
import { formatHttpDate } from './http-date.ts';

/** Go's http.StatusText for the statuses written here. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  400: 'Bad Request',
  405: 'Method Not Allowed',
  417: 'Expectation Failed',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** Upstream's errBackendDialTimeout text. */
export const BACKEND_DIAL_TIMEOUT_TEXT = 'timed out waiting for backend dial';

/** Upstream's ErrNotFound text when no backend matches. */
export const NO_AGENT_AVAILABLE_TEXT = 'No agent available';

/** Body of Go's http.Error for a method other than CONNECT (Fprintln adds the newline). */
export const METHOD_NOT_ALLOWED_BODY = 'this proxy only supports CONNECT passthrough\n';

function bytes(text: string): Uint8Array {
  return Buffer.from(text, 'utf8');
}

function statusText(status: number): string {
  const text = STATUS_TEXT[status];
  if (text === undefined) throw new RangeError(`no status text for ${status}`);
  return text;
}

const CONNECTION_ESTABLISHED = bytes('HTTP/1.1 200 Connection Established\r\n\r\n');

/**
 * The only success response: no headers, and nothing else in the same write.
 * The same bytes for every dial; sockets never modify what they are given to write.
 */
export function connectionEstablished(): Uint8Array {
  return CONNECTION_ESTABLISHED;
}

/** Request facts that shape Go's 405 response; absent means a plain HTTP/1.1 keep-alive request. */
export type MethodNotAllowedRequest = Pick<
  ParsedConnectRequest,
  'method' | 'protoMajor' | 'protoMinor' | 'closeRequested' | 'http10KeepAlive' | 'hasBody'
>;

const PLAIN_HTTP11_REQUEST: MethodNotAllowedRequest = {
  method: 'GET',
  protoMajor: 1,
  protoMinor: 1,
  closeRequested: false,
  http10KeepAlive: false,
  hasBody: false,
};

function atLeastHttp11(request: MethodNotAllowedRequest): boolean {
  return request.protoMajor > 1 || (request.protoMajor === 1 && request.protoMinor >= 1);
}

/**
 * Whether the connection must be closed after the 405. Go keeps an
 * HTTP/1.1 connection open for the next request; it closes for
 * "Connection: close" and for HTTP/1.0 without keep-alive. A request with
 * a body is closed here too (Go would first drain up to 256 KiB of the body),
 * so such a 405 says "Connection: close".
 */
export function closesAfterMethodNotAllowed(request: MethodNotAllowedRequest = PLAIN_HTTP11_REQUEST): boolean {
  if (request.hasBody) return true;
  if (request.http10KeepAlive) return false;
  return !atLeastHttp11(request) || request.closeRequested;
}

/**
 * Go's http.Error(w, "this proxy only supports CONNECT passthrough", 405)
 * as the server puts it on the wire: handler headers sorted, then Date and
 * the Content-Length Go computes for a short body, then Connection when Go
 * adds one. HEAD gets the headers only.
 */
export function methodNotAllowed(request: MethodNotAllowedRequest = PLAIN_HTTP11_REQUEST, now: Date = new Date()): Uint8Array {
  const http11 = atLeastHttp11(request);
  const body = bytes(METHOD_NOT_ALLOWED_BODY);
  let connection = '';
  if (request.hasBody) connection = 'close';
  else if (request.http10KeepAlive) connection = 'keep-alive';
  else if (http11 && request.closeRequested) connection = 'close';
  const head =
    `HTTP/1.${http11 ? 1 : 0} 405 ${statusText(405)}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    'X-Content-Type-Options: nosniff\r\n' +
    `Date: ${formatHttpDate(now)}\r\n` +
    `Content-Length: ${body.length}\r\n` +
    (connection ? `Connection: ${connection}\r\n` : '') +
    '\r\n';
  return request.method === 'HEAD' ? bytes(head) : Buffer.concat([bytes(head), body]);
}

/** No backend for the request: written raw by upstream, no Content-Length, then close. */
export function noTunnelsAvailable(errorText: string = NO_AGENT_AVAILABLE_TEXT): Uint8Array {
  return bytes(`HTTP/1.1 500 ${statusText(500)}\r\nContent-Type: text/plain\r\n\r\ncurrently no tunnels available: ${errorText}`);
}

function rawPlainTextError(status: 502 | 504, body: string): Uint8Array {
  return bytes(`HTTP/1.1 ${status} ${statusText(status)}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}\r\n`);
}

/**
 * Sending the DIAL_REQ to the agent failed: 502, or 504 when the failure
 * was --backend-dial-timeout expiring. Then close.
 */
export function dialRequestSendFailed(errorText: string, options: { timedOut?: boolean } = {}): Uint8Array {
  return rawPlainTextError(options.timedOut ? 504 : 502, `Failed to tunnel dial request: ${errorText}`);
}

/** The agent's stream ended while the dial was pending (Go's ctx.Err(), usually "context canceled"). */
export function backendContextError(errorText: string): Uint8Array {
  return rawPlainTextError(502, `Backend context error: ${errorText}`);
}

/** --backend-dial-timeout expired while waiting for DIAL_RSP. */
export function backendDialTimeout(errorText: string = BACKEND_DIAL_TIMEOUT_TEXT): Uint8Array {
  return rawPlainTextError(504, `Backend dial timeout: ${errorText}`);
}

/**
 * The agent answered DIAL_RSP with an error. Upstream writes an
 * http.Response{StatusCode: mapDialErrorToHTTPStatus(err), HTTP/1.1,
 * Content-Type text/plain; charset=utf-8, Body: err} with Response.Write;
 * the length is unknown to Write, so it adds "Connection: close" before the
 * sorted headers and the body runs to the close. (An empty body would be
 * sent with "Content-Length: 0" instead; upstream never sends one.)
 */
export function dialFailed(agentErrorText: string): Uint8Array {
  const status = mapDialErrorToHTTPStatus(agentErrorText);
  const framing = agentErrorText === '' ? 'Content-Length: 0\r\n' : 'Connection: close\r\n';
  return bytes(`HTTP/1.1 ${status} ${statusText(status)}\r\n${framing}Content-Type: text/plain; charset=utf-8\r\n\r\n${agentErrorText}`);
}

const GO_ERROR_HEADERS = '\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n';

/**
 * What Go's HTTP/1 server writes for a request head it refuses, before any
 * handler runs; the connection is closed afterwards. `now` is used only by
 * the 417, the one such response that goes through the ResponseWriter.
 */
export function parseError(error: ConnectRequestParseError, now: Date = new Date()): Uint8Array {
  switch (error.status) {
    case 431:
      return bytes(`HTTP/1.1 431 ${statusText(431)}${GO_ERROR_HEADERS}431 ${statusText(431)}`);
    case 501:
      return bytes(`HTTP/1.1 501 ${statusText(501)}${GO_ERROR_HEADERS}Unsupported transfer encoding`);
    case 417: {
      const version = error.version ?? { major: 1, minor: 1 };
      const http11 = version.major > 1 || (version.major === 1 && version.minor >= 1);
      return bytes(
        `HTTP/1.${http11 ? 1 : 0} 417 ${statusText(417)}\r\nConnection: close\r\nDate: ${formatHttpDate(now)}\r\nContent-Length: 0\r\n\r\n`,
      );
    }
    case 400:
    case 505: {
      const status = `${error.status} ${statusText(error.status)}`;
      const publicError = error.publicText === null ? status : `${status}: ${error.publicText}`;
      return bytes(`HTTP/1.1 ${publicError}${GO_ERROR_HEADERS}${publicError}`);
    }
  }
}
