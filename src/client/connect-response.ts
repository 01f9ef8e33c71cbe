/**
 * Reading the proxy server's answer to CONNECT off a socket: the response
 * head, and for a refusal the body (the server's explanation, e.g. the
 * agent's dial error). Tolerant where Go's http.ReadResponse is (bare LF line
 * endings), strict where it matters (status line shape, 1 MiB head cap like
 * kube-apiserver).
 */
import type { Duplex } from 'node:stream';

/** kube-apiserver caps the CONNECT response head at http.DefaultMaxHeaderBytes. */
export const MAX_RESPONSE_HEAD_BYTES = 1 << 20;
/** We only want the explanation text of a refusal, not an arbitrary download. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

export interface ConnectResponseHead {
  statusLine: string;
  httpVersion: string;
  statusCode: number;
  reason: string;
  /** Lower-cased names; repeated headers joined with ", ". */
  headers: Map<string, string>;
}

export class ConnectResponseError extends Error {
  /** `closed`: the socket ended first; `malformed`: not an HTTP response; `too_large`: head over the cap. */
  readonly kind: 'closed' | 'malformed' | 'too_large' | 'socket';
  constructor(kind: ConnectResponseError['kind'], message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ConnectResponseError';
    this.kind = kind;
  }
}

/** Index just past the blank line ending the head, or -1. */
export function headEndIndex(buf: Buffer, from = 0): number {
  for (let i = Math.max(0, from); i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

export function parseConnectResponseHead(head: Buffer): ConnectResponseHead {
  const lines = head.toString('latin1').split(/\r?\n/);
  const statusLine = lines[0] ?? '';
  const m = /^(HTTP\/\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  if (!m) throw new ConnectResponseError('malformed', `malformed HTTP response ${JSON.stringify(statusLine.slice(0, 200))}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new ConnectResponseError('malformed', `malformed HTTP response header ${JSON.stringify(line.slice(0, 200))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const prev = headers.get(name);
    headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
  }
  return { statusLine, httpVersion: m[1]!, statusCode: Number(m[2]), reason: m[3] ?? '', headers };
}

/**
 * Reads until the end of the response head. Bytes after it (tunnel data the
 * server sent in the same write) are returned as `rest`, not consumed.
 */
export function readResponseHead(socket: Duplex, signal: AbortSignal): Promise<{ head: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        const searchFrom = Math.max(0, buffered.length - 3);
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        const end = headEndIndex(buffered, searchFrom);
        if (end >= 0) {
          cleanup();
          resolve({ head: buffered.subarray(0, end), rest: buffered.subarray(end) });
          return;
        }
        if (buffered.length > MAX_RESPONSE_HEAD_BYTES) {
          cleanup();
          reject(new ConnectResponseError('too_large', `CONNECT response head exceeds ${MAX_RESPONSE_HEAD_BYTES} bytes`));
          return;
        }
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new ConnectResponseError('closed', 'proxy server closed the connection before answering CONNECT'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new ConnectResponseError('socket', `connection to proxy server failed while waiting for the CONNECT response: ${err.message}`, err));
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason);
    };
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
    onReadable();
  });
}

/**
 * Best-effort body of a refusal: by Content-Length, chunked, or until the
 * server closes (Go's proxy writes a length-less body and then closes). Stops
 * early, with what it has, on the signal or at 64 KiB.
 */
export function readErrorBody(socket: Duplex, head: ConnectResponseHead, initial: Buffer, signal: AbortSignal): Promise<string> {
  const contentLength = head.headers.has('content-length') ? Number(head.headers.get('content-length')) : NaN;
  const chunked = /\bchunked\b/i.test(head.headers.get('transfer-encoding') ?? '');
  const complete = (buf: Buffer): boolean => {
    if (buf.length >= MAX_ERROR_BODY_BYTES) return true;
    if (chunked) return /(^|\r?\n)0\r?\n\r?\n$/.test(buf.toString('latin1'));
    return Number.isFinite(contentLength) && buf.length >= contentLength;
  };
  const finish = (buf: Buffer): string => {
    let body = chunked ? dechunk(buf) : Number.isFinite(contentLength) ? buf.subarray(0, contentLength) : buf;
    body = body.subarray(0, MAX_ERROR_BODY_BYTES);
    return body.toString('utf8').trim();
  };
  if (complete(initial) || head.statusCode === 204 || head.statusCode === 304) return Promise.resolve(finish(initial));
  return new Promise((resolve) => {
    let buffered: Buffer = initial;
    const done = (): void => {
      socket.off('data', onData);
      socket.off('end', done);
      socket.off('error', done);
      signal.removeEventListener('abort', done);
      resolve(finish(buffered));
    };
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (complete(buffered)) done();
    };
    socket.on('data', onData);
    socket.once('end', done);
    socket.once('error', done);
    if (signal.aborted) done();
    else signal.addEventListener('abort', done, { once: true });
  });
}

function dechunk(buf: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const lineEnd = buf.indexOf('\n', pos);
    if (lineEnd < 0) break;
    const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1').split(';')[0]!.trim(), 16);
    if (!Number.isFinite(size) || size === 0) break;
    parts.push(buf.subarray(lineEnd + 1, lineEnd + 1 + size));
    pos = lineEnd + 1 + size;
    if (buf[pos] === 0x0d) pos++;
    if (buf[pos] === 0x0a) pos++;
  }
  return Buffer.concat(parts);
}
