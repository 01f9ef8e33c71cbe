/**
 * HTTP/2 written by hand for tests: frames, HPACK representations (with our
 * own Huffman encoder over the RFC's code table), and a raw client
 * connection that records every frame the server sends and decodes its
 * header blocks. Independent of node:http2, so a test controls every byte.
 */
import { once } from 'node:events';
import net from 'node:net';
import { HpackDecoder, encodeInteger, type HeaderField } from '../../src/grpc/hpack-decoder.ts';
import { huffmanCode } from '../../src/grpc/hpack-huffman.ts';
import { CLIENT_PREFACE } from '../../src/grpc/authority-repair.ts';
import { waitFor } from './wait.ts';

export const FrameType = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

export function frame(type: number, flags: number, streamId: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

export function huffmanEncode(bytes: Uint8Array): Buffer {
  const out: number[] = [];
  let acc = 0n;
  let bits = 0n;
  for (const b of bytes) {
    const { code, bits: n } = huffmanCode(b);
    acc = (acc << BigInt(n)) | BigInt(code);
    bits += BigInt(n);
    while (bits >= 8n) {
      bits -= 8n;
      out.push(Number((acc >> bits) & 0xffn));
    }
  }
  // Pad with the most significant bits of EOS (all ones).
  if (bits > 0n) out.push(Number(((acc << (8n - bits)) | ((1n << (8n - bits)) - 1n)) & 0xffn));
  return Buffer.from(out);
}

function stringLiteral(value: string | Uint8Array, huffman: boolean): Buffer {
  const raw = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value);
  const data = huffman ? huffmanEncode(raw) : raw;
  return Buffer.concat([Buffer.from(encodeInteger(data.length, 7, huffman ? 0x80 : 0)), data]);
}

export type Indexing = 'incremental' | 'without' | 'never';

export const hpack = {
  indexed: (index: number): Buffer => Buffer.from(encodeInteger(index, 7, 0x80)),
  sizeUpdate: (size: number): Buffer => Buffer.from(encodeInteger(size, 5, 0x20)),
  /** A literal; `name` is a static/dynamic index or a literal name. */
  literal(indexing: Indexing, name: number | string, value: string | Uint8Array, huffman = false): Buffer {
    const prefix = indexing === 'incremental' ? 6 : 4;
    const flags = indexing === 'incremental' ? 0x40 : indexing === 'never' ? 0x10 : 0;
    const head = Buffer.from(encodeInteger(typeof name === 'number' ? name : 0, prefix, flags));
    const nameBytes = typeof name === 'number' ? Buffer.alloc(0) : stringLiteral(name, huffman);
    return Buffer.concat([head, nameBytes, stringLiteral(value, huffman)]);
  },
};

/** Static table indexes used by the tests. */
export const STATIC = { AUTHORITY: 1, METHOD_POST: 3, PATH_ROOT: 4, SCHEME_HTTP: 6, CONTENT_TYPE: 31, STATUS_200: 8 } as const;

/** A gRPC request's header block: POST, http, `path`, the given authority representation, content-type and te. */
export function grpcRequestBlock(authority: Buffer, path: string, extra: Buffer[] = []): Buffer {
  return Buffer.concat([
    hpack.indexed(STATIC.METHOD_POST),
    hpack.indexed(STATIC.SCHEME_HTTP),
    hpack.literal('without', 4, path),
    authority,
    hpack.literal('without', STATIC.CONTENT_TYPE, 'application/grpc'),
    hpack.literal('without', 'te', 'trailers'),
    ...extra,
  ]);
}

export interface ReceivedFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

export interface RawClientOptions {
  /** Like grpc-go: send the preface and SETTINGS, then nothing until the server's SETTINGS arrive. */
  waitForServerSettings?: boolean;
  /** Like Node's and C-core's clients: the preface and SETTINGS leave in the same write as the first request. */
  prefaceWithFirstRequest?: boolean;
}

/** A client connection written by hand: it ACKs the server's SETTINGS and answers PINGs; everything else is recorded. */
export class RawH2Client {
  readonly socket: net.Socket;
  readonly frames: ReceivedFrame[] = [];
  /** Server header blocks per stream, decoded (HEADERS then trailers). */
  readonly headers = new Map<number, Array<Map<string, string>>>();
  private readonly decoder = new HpackDecoder();
  private pending = Buffer.alloc(0);
  private blockStream = 0;
  private blockParts: Buffer[] = [];
  /** Preface bytes not written yet (`prefaceWithFirstRequest`). */
  private heldPreface: Buffer | null = null;
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  static async connect(path: string, options: RawClientOptions = {}): Promise<RawH2Client> {
    const socket = net.connect(path);
    await once(socket, 'connect');
    const client = new RawH2Client(socket);
    const preface = Buffer.concat([CLIENT_PREFACE, frame(FrameType.SETTINGS, 0, 0)]);
    if (options.prefaceWithFirstRequest) client.heldPreface = preface;
    else socket.write(preface);
    if (options.waitForServerSettings) await client.waitFor((f) => f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK), 'the server preface SETTINGS');
    return client;
  }

  write(bytes: Buffer): void {
    if (this.heldPreface) {
      bytes = Buffer.concat([this.heldPreface, bytes]);
      this.heldPreface = null;
    }
    this.socket.write(bytes);
  }

  /** HEADERS (END_HEADERS) plus, when given, one DATA frame that ends the stream, in one write. */
  request(streamId: number, block: Buffer, body?: Buffer): void {
    const headers = frame(FrameType.HEADERS, Flag.END_HEADERS | (body ? 0 : Flag.END_STREAM), streamId, block);
    this.write(body ? Buffer.concat([headers, frame(FrameType.DATA, Flag.END_STREAM, streamId, body)]) : headers);
  }

  async waitFor(match: (f: ReceivedFrame) => boolean, what: string): Promise<ReceivedFrame> {
    let found: ReceivedFrame | undefined;
    await waitFor(() => (found = this.frames.find(match)) !== undefined || this.closed, what);
    if (!found) throw new Error(`connection closed before ${what}; frames: ${JSON.stringify(this.frames.map((f) => [f.type, f.flags, f.streamId]))}`);
    return found;
  }

  /** Waits for the stream's response to end (END_STREAM on HEADERS or DATA, or RST_STREAM); returns its header blocks. */
  async response(streamId: number): Promise<{ reset: number | null; headers: Array<Map<string, string>> }> {
    const end = await this.waitFor(
      (f) => f.streamId === streamId && (f.type === FrameType.RST_STREAM || ((f.type === FrameType.HEADERS || f.type === FrameType.DATA) && (f.flags & Flag.END_STREAM) !== 0)),
      `the end of stream ${streamId}`,
    );
    return { reset: end.type === FrameType.RST_STREAM ? end.payload.readUInt32BE(0) : null, headers: this.headers.get(streamId) ?? [] };
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      const f: ReceivedFrame = { type: this.pending[3]!, flags: this.pending[4]!, streamId: this.pending.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(this.pending.subarray(9, 9 + length)) };
      this.pending = this.pending.subarray(9 + length);
      this.frames.push(f);
      this.onFrame(f);
    }
  }

  private onFrame(f: ReceivedFrame): void {
    if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK)) this.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
    if (f.type === FrameType.PING && !(f.flags & Flag.ACK)) this.write(frame(FrameType.PING, Flag.ACK, 0, f.payload));
    if (f.type === FrameType.HEADERS || f.type === FrameType.CONTINUATION) {
      let fragment = f.payload;
      if (f.type === FrameType.HEADERS) {
        let p = 0;
        let pad = 0;
        if (f.flags & Flag.PADDED) pad = fragment[p++]!;
        if (f.flags & Flag.PRIORITY) p += 5;
        fragment = fragment.subarray(p, fragment.length - pad);
        this.blockStream = f.streamId;
        this.blockParts = [];
      }
      this.blockParts.push(fragment);
      if (f.flags & Flag.END_HEADERS) {
        const fields = this.decoder.decode(Buffer.concat(this.blockParts));
        const list = this.headers.get(this.blockStream) ?? [];
        list.push(toMap(fields));
        this.headers.set(this.blockStream, list);
      }
    }
  }
}

function toMap(fields: readonly HeaderField[]): Map<string, string> {
  return new Map(fields.map((f) => [Buffer.from(f.name).toString('latin1'), Buffer.from(f.value).toString('latin1')]));
}

/** Splits a byte stream (without the preface) into frames; throws on a trailing partial frame. */
export function parseFrames(bytes: Uint8Array): ReceivedFrame[] {
  const buf = Buffer.from(bytes);
  const out: ReceivedFrame[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 9 > buf.length) throw new Error(`partial frame header at ${off}`);
    const length = buf.readUIntBE(off, 3);
    if (off + 9 + length > buf.length) throw new Error(`partial frame at ${off}`);
    out.push({ type: buf[off + 3]!, flags: buf[off + 4]!, streamId: buf.readUInt32BE(off + 5) & 0x7fffffff, payload: buf.subarray(off + 9, off + 9 + length) });
    off += 9 + length;
  }
  return out;
}

/** The header blocks of a frame sequence (padding and PRIORITY fields removed), with the HEADERS frame that opened each. */
export function headerBlocks(frames: readonly ReceivedFrame[]): Array<{ opener: ReceivedFrame; block: Buffer; frames: number }> {
  const out: Array<{ opener: ReceivedFrame; block: Buffer; frames: number }> = [];
  for (const f of frames) {
    if (f.type === FrameType.HEADERS) {
      let p = 0;
      let pad = 0;
      if (f.flags & Flag.PADDED) pad = f.payload[p++]!;
      if (f.flags & Flag.PRIORITY) p += 5;
      out.push({ opener: f, block: Buffer.from(f.payload.subarray(p, f.payload.length - pad)), frames: 1 });
    } else if (f.type === FrameType.CONTINUATION) {
      const last = out.at(-1)!;
      last.block = Buffer.concat([last.block, f.payload]);
      last.frames++;
    }
  }
  return out;
}
