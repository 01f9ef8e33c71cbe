/**
 * HTTP/2 (RFC 9113) frame-level vocabulary shared by our client and server
 * connections: frame types, flags, settings identifiers, error codes, the
 * frame header, and the errors a connection reports.
 */

export const FRAME_HEADER_BYTES = 9;

export const DATA = 0x0;
export const HEADERS = 0x1;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PUSH_PROMISE = 0x5;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const CONTINUATION = 0x9;

export const FLAG_END_STREAM = 0x1;
export const FLAG_ACK = 0x1;
export const FLAG_END_HEADERS = 0x4;
export const FLAG_PADDED = 0x8;
export const FLAG_PRIORITY = 0x20;

export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

/** HTTP/2 error codes (RFC 9113 §7), the ones we send or read. */
export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_INTERNAL_ERROR = 0x2;
export const H2_FLOW_CONTROL_ERROR = 0x3;
export const H2_STREAM_CLOSED = 0x5;
export const H2_FRAME_SIZE_ERROR = 0x6;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
export const H2_COMPRESSION_ERROR = 0x9;
export const H2_ENHANCE_YOUR_CALM = 0xb;

export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const DEFAULT_WINDOW = 65_535;
export const MAX_WINDOW = 2 ** 31 - 1;
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
export const MAX_STREAM_ID = 2 ** 31 - 1;

/** Header fields as received, shaped like Node's IncomingHttpHeaders (repeated names become arrays). */
export type H2Headers = Record<string, string | string[] | undefined>;

/** A stream the peer reset with an error code (RST_STREAM, or REFUSED_STREAM through GOAWAY). */
export class H2StreamResetError extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`stream reset by peer (HTTP/2 code ${code})`);
    this.name = 'H2StreamResetError';
    this.code = code;
  }
}

/** The peer broke the protocol; the connection is failed with this code. */
export class H2ProtocolError extends Error {
  readonly code: number;
  constructor(code: number, message: string) {
    super(message);
    this.name = 'H2ProtocolError';
    this.code = code;
  }
}

export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h[0] = (length >>> 16) & 0xff;
  h[1] = (length >>> 8) & 0xff;
  h[2] = length & 0xff;
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return h;
}

export function u32Payload(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

/** Decoded fields as a header object plus the name/value list in order (gRPC metadata may repeat a name). */
export function decodeHeaders(fields: ReadonlyArray<{ name: Uint8Array; value: Uint8Array }>): { headers: H2Headers; raw: string[]; listBytes: number } {
  const headers: H2Headers = {};
  const raw: string[] = [];
  let listBytes = 0;
  for (const f of fields) {
    const name = Buffer.from(f.name.buffer, f.name.byteOffset, f.name.byteLength).toString('latin1');
    const value = Buffer.from(f.value.buffer, f.value.byteOffset, f.value.byteLength).toString('latin1');
    // RFC 9113 §6.5.2: a field's size is its name and value plus 32.
    listBytes += f.name.byteLength + f.value.byteLength + 32;
    raw.push(name, value);
    const prev = headers[name];
    if (prev === undefined) headers[name] = value;
    else if (Array.isArray(prev)) prev.push(value);
    else headers[name] = [prev, value];
  }
  return { headers, raw, listBytes };
}
