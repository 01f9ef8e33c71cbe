/**
 * Lets gRPC clients that send a unix socket path as `:authority` reach our
 * node:http2 frontend.
 *
 * grpc-go before ~1.57 used the dial target as the authority, so
 * kube-apiserver's egress selector over a unix socket (Kubernetes ≤ 1.28 era)
 * sends e.g. `/etc/kubernetes/konnectivity-server/konnectivity-server.socket`.
 * Node's http2 is nghttp2 with its HTTP checks on, and nghttp2 refuses an
 * authority with any byte outside [A-Za-z0-9-._~!$&'()*+,;=:[]%] with
 * RST_STREAM PROTOCOL_ERROR before any handler runs; upstream's grpc-go
 * server accepts anything. Node has no switch for the check, so we rewrite
 * the bytes nghttp2 gets:
 *
 * 1. Peek. Read the client preface. Eager clients (Node, gRPC C-core) send
 *    their first request with it, and we decide at once, having sent
 *    nothing. Otherwise send an empty SETTINGS frame ourselves (a valid
 *    server preface: grpc-go clients send no request before they have one,
 *    so waiting for a request without it would deadlock), and read on until
 *    the client's first header block and its ACK of that SETTINGS. (Always
 *    sending it cost every new connection a round trip: 0.4 ms on a new
 *    tunnel's first dial here.)
 * 2. Clean authority (every modern client): cut that one ACK out, if we sent
 *    the SETTINGS (nghttp2 never sent it and would refuse an ACK it is not
 *    waiting for), `unshift` the rest and give the native socket to http2.
 *    Its real SETTINGS follow ours; RFC 9113 allows any number of SETTINGS
 *    frames, and the client applies them in order.
 * 3. Otherwise, or when peeking fails (no request within PEEK_TIMEOUT_MS,
 *    more than MAX_PEEK_BYTES, malformed frames), give http2 a Duplex that
 *    rewrites the client's bytes for the whole connection
 *    (ClientStreamRewriter): every frame passes unchanged except header
 *    blocks, in which each literal `:authority` value has its refused bytes
 *    replaced by '_'. The decoded length does not change, so nghttp2's HPACK
 *    dynamic table stays index- and size-identical to the client's encoder.
 *    Server→client bytes are untouched.
 *
 * Known limits: the decision is made on the first request; a connection
 * whose first authority is clean and a later one is not stays native (no
 * gRPC client changes authority on a channel). A connection whose header
 * block exceeds MAX_HEADER_BLOCK_BYTES is passed through unrepaired from
 * then on (nghttp2 applies its own limits to it).
 */
import { Duplex } from 'node:stream';
import type net from 'node:net';
import { HpackDecoder, HpackError, encodeRawString } from './hpack-decoder.ts';
import { CLIENT_PREFACE, CONTINUATION, FLAG_ACK, FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY, FRAME_HEADER_BYTES, HEADERS, SETTINGS } from './h2-frames.ts';

export { CLIENT_PREFACE };
/** A SETTINGS frame with no parameters on stream 0: the smallest valid server preface. */
export const EMPTY_SETTINGS_FRAME: Buffer = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);

/**
 * Most encoded header block bytes (HEADERS + CONTINUATION payloads) buffered
 * for one block. Node advertises SETTINGS_MAX_HEADER_LIST_SIZE 65535 (decoded
 * bytes), grpc-go's default limit is 16 KiB; a conforming gRPC client's block
 * is far below this. Larger blocks end the repair for that connection.
 */
export const MAX_HEADER_BLOCK_BYTES = 64 * 1024;
/** Most bytes read before deciding; beyond it the connection is rewritten. */
export const MAX_PEEK_BYTES = 64 * 1024;
/**
 * How long to wait for the first request and the ACK before rewriting the
 * connection. Clients send both within a round trip of connecting; 5 s stays
 * well below grpc-go's shortest keepalive (10 s), whose PINGs nobody answers
 * while we peek.
 */
export const PEEK_TIMEOUT_MS = 5_000;
/**
 * Frame payload size for re-emitted header blocks: SETTINGS_MAX_FRAME_SIZE's
 * initial value. Our 1 MiB setting applies only once the client has
 * acknowledged it, and the first request reaches nghttp2 before that.
 */
const REEMIT_FRAME_PAYLOAD = 16_384;

const FRAME_HEADER = FRAME_HEADER_BYTES;
const TYPE_HEADERS = HEADERS;
const TYPE_SETTINGS = SETTINGS;
const TYPE_CONTINUATION = CONTINUATION;

const AUTHORITY_NAME = Buffer.from(':authority', 'latin1');
/** Bytes nghttp2 (Node 24's, checked byte by byte in test/authority-repair.test.ts) accepts in an authority. Not '@'. */
const ACCEPTED_AUTHORITY_BYTES = (() => {
  const ok = new Uint8Array(256);
  for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:[]%") ok[c.charCodeAt(0)] = 1;
  return ok;
})();
const REPLACEMENT = '_'.charCodeAt(0);

export function isAcceptableAuthority(value: Uint8Array): boolean {
  for (let i = 0; i < value.length; i++) if (!ACCEPTED_AUTHORITY_BYTES[value[i]!]) return false;
  return true;
}

/** The authority with each byte nghttp2 would refuse replaced by '_': same length, so the same HPACK entry size. */
export function repairAuthorityValue(value: Uint8Array): Uint8Array {
  const out = Uint8Array.from(value);
  for (let i = 0; i < out.length; i++) if (!ACCEPTED_AUTHORITY_BYTES[out[i]!]) out[i] = REPLACEMENT;
  return out;
}

function isAuthorityName(name: Uint8Array): boolean {
  return Buffer.compare(name, AUTHORITY_NAME) === 0;
}

/**
 * Rewrites one complete header block: every literal `:authority` with a
 * refused byte gets the repaired value as a raw string, with the same
 * indexing kind and name encoding; every other representation is copied.
 * Returns null when nothing needed repair. The decoder follows the client's
 * dynamic table (it records the original values; sizes are equal).
 */
export function repairHeaderBlock(decoder: HpackDecoder, block: Uint8Array): Uint8Array | null {
  const pieces: Uint8Array[] = [];
  let changed = false;
  decoder.walk(block, (r) => {
    if (r.kind === 'literal' && isAuthorityName(r.field.name) && !isAcceptableAuthority(r.field.value)) {
      pieces.push(block.subarray(r.start, r.valueStart), encodeRawString(repairAuthorityValue(r.field.value)));
      changed = true;
    } else {
      pieces.push(block.subarray(r.start, r.end));
    }
  });
  return changed ? Buffer.concat(pieces) : null;
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return h;
}

/** One header block as HEADERS (+ CONTINUATION) frames without padding, PRIORITY fields kept. */
function headerBlockFrames(streamId: number, endStream: boolean, priority: Uint8Array | null, block: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const firstRoom = REEMIT_FRAME_PAYLOAD - (priority ? priority.length : 0);
  const first = block.subarray(0, firstRoom);
  const last = block.length <= firstRoom;
  const flags = (endStream ? FLAG_END_STREAM : 0) | (priority ? FLAG_PRIORITY : 0) | (last ? FLAG_END_HEADERS : 0);
  out.push(frameHeader((priority ? priority.length : 0) + first.length, TYPE_HEADERS, flags, streamId));
  if (priority) out.push(Buffer.from(priority));
  out.push(Buffer.from(first));
  for (let off = firstRoom; off < block.length; off += REEMIT_FRAME_PAYLOAD) {
    const part = block.subarray(off, off + REEMIT_FRAME_PAYLOAD);
    const end = off + REEMIT_FRAME_PAYLOAD >= block.length;
    out.push(frameHeader(part.length, TYPE_CONTINUATION, end ? FLAG_END_HEADERS : 0, streamId), Buffer.from(part));
  }
  return out;
}

interface OpenBlock {
  readonly streamId: number;
  readonly endStream: boolean;
  readonly priority: Uint8Array | null;
  /** The original frames, re-sent as they were when the block needs no repair. */
  readonly frames: Buffer[];
  readonly fragments: Uint8Array[];
  bytes: number;
}

/** The fragment of a HEADERS frame payload (padding and PRIORITY fields removed), or null when malformed. */
function headersFragment(flags: number, payload: Uint8Array): { fragment: Uint8Array; priority: Uint8Array | null } | null {
  let p = 0;
  let end = payload.length;
  let pad = 0;
  if (flags & FLAG_PADDED) {
    if (end < 1) return null;
    pad = payload[p++]!;
  }
  let priority: Uint8Array | null = null;
  if (flags & FLAG_PRIORITY) {
    if (end - p < 5) return null;
    priority = payload.subarray(p, p + 5);
    p += 5;
  }
  if (pad > end - p) return null;
  end -= pad;
  return { fragment: payload.subarray(p, end), priority };
}

export interface ClientStreamRewriterOptions {
  /** Drop the client's first SETTINGS ACK (it answers our own preface SETTINGS, which nghttp2 never sent). */
  dropFirstSettingsAck: boolean;
  maxHeaderBlockBytes?: number;
}

/**
 * The client→server byte stream after the connection preface, rewritten
 * frame by frame. Frames other than header blocks are passed on as they
 * arrive (payloads are not buffered); header blocks are buffered up to
 * maxHeaderBlockBytes and re-emitted unchanged unless an authority needed
 * repair. Anything it cannot follow (malformed framing or HPACK, an
 * oversized block) stops the repair: the rest of the connection passes
 * through byte for byte, and nghttp2 judges it.
 */
export class ClientStreamRewriter {
  private readonly decoder = new HpackDecoder();
  private readonly maxBlock: number;
  private dropAck: boolean;
  private repairing = true;
  private readonly header = Buffer.alloc(FRAME_HEADER);
  private headerFill = 0;
  /** Payload bytes of the current frame still to come. */
  private remaining = 0;
  /** The current header block frame being collected (header + payload), when in one. */
  private frame: Buffer | null = null;
  private frameFill = 0;
  private block: OpenBlock | null = null;
  /** Header blocks in which an authority was repaired. */
  repairedBlocks = 0;

  constructor(options: ClientStreamRewriterOptions) {
    this.dropAck = options.dropFirstSettingsAck;
    this.maxBlock = options.maxHeaderBlockBytes ?? MAX_HEADER_BLOCK_BYTES;
  }

  /** False once the repair was given up (everything after passes through unchanged). */
  get active(): boolean {
    return this.repairing;
  }

  /** Takes the next client bytes; returns what to hand to http2, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (!this.repairing && !this.dropAck) return [chunk];
    const out: Uint8Array[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.remaining > 0 && this.frame === null) {
        const n = Math.min(this.remaining, chunk.length - off);
        out.push(chunk.subarray(off, off + n));
        off += n;
        this.remaining -= n;
        continue;
      }
      if (this.frame !== null) {
        const n = Math.min(this.frame.length - this.frameFill, chunk.length - off);
        this.frame.set(chunk.subarray(off, off + n), this.frameFill);
        this.frameFill += n;
        off += n;
        if (this.frameFill === this.frame.length) {
          const frame = this.frame;
          this.frame = null;
          this.onBlockFrame(frame, out);
        }
        continue;
      }
      if (!this.repairing && !this.dropAck) {
        out.push(chunk.subarray(off));
        break;
      }
      const n = Math.min(FRAME_HEADER - this.headerFill, chunk.length - off);
      this.header.set(chunk.subarray(off, off + n), this.headerFill);
      this.headerFill += n;
      off += n;
      if (this.headerFill < FRAME_HEADER) break;
      this.headerFill = 0;
      this.onFrameHeader(out);
    }
    return out;
  }

  private onFrameHeader(out: Uint8Array[]): void {
    const h = this.header;
    const length = h.readUIntBE(0, 3);
    const type = h[3]!;
    const flags = h[4]!;
    const streamId = h.readUInt32BE(5) & 0x7fffffff;
    if (this.dropAck && type === TYPE_SETTINGS && flags & FLAG_ACK && length === 0) {
      this.dropAck = false;
      return;
    }
    const blockFrame = type === TYPE_HEADERS || type === TYPE_CONTINUATION;
    if (this.repairing) {
      const open = this.block;
      // Only CONTINUATION of the same stream may follow an open block (RFC 9113 §6.10).
      const outOfOrder = open ? type !== TYPE_CONTINUATION || streamId !== open.streamId : type === TYPE_CONTINUATION;
      if (outOfOrder || (blockFrame && (open?.bytes ?? 0) + length > this.maxBlock)) this.giveUp(out);
    }
    if (this.repairing && blockFrame) {
      this.frame = Buffer.allocUnsafe(FRAME_HEADER + length);
      h.copy(this.frame, 0);
      this.frameFill = FRAME_HEADER;
      if (length === 0) {
        const frame = this.frame;
        this.frame = null;
        this.onBlockFrame(frame, out);
      }
      return;
    }
    out.push(Buffer.from(h));
    this.remaining = length;
  }

  private onBlockFrame(frame: Buffer, out: Uint8Array[]): void {
    const type = frame[3]!;
    const flags = frame[4]!;
    const payload = frame.subarray(FRAME_HEADER);
    if (type === TYPE_HEADERS) {
      const parsed = headersFragment(flags, payload);
      if (!parsed) {
        this.giveUp(out);
        out.push(frame);
        return;
      }
      this.block = {
        streamId: frame.readUInt32BE(5) & 0x7fffffff,
        endStream: (flags & FLAG_END_STREAM) !== 0,
        priority: parsed.priority,
        frames: [frame],
        fragments: [parsed.fragment],
        bytes: payload.length,
      };
    } else {
      const block = this.block!;
      block.frames.push(frame);
      block.fragments.push(payload);
      block.bytes += payload.length;
    }
    if (flags & FLAG_END_HEADERS) this.finishBlock(out);
  }

  private finishBlock(out: Uint8Array[]): void {
    const block = this.block!;
    this.block = null;
    let repaired: Uint8Array | null;
    try {
      repaired = repairHeaderBlock(this.decoder, block.fragments.length === 1 ? block.fragments[0]! : Buffer.concat(block.fragments));
    } catch (err) {
      if (!(err instanceof HpackError)) throw err;
      out.push(...block.frames);
      this.repairing = false;
      return;
    }
    if (repaired === null) {
      out.push(...block.frames);
      return;
    }
    this.repairedBlocks++;
    out.push(...headerBlockFrames(block.streamId, block.endStream, block.priority, repaired));
  }

  /** Stops repairing: whatever was held goes out as it came, and later header frames are passed on unparsed. */
  private giveUp(out: Uint8Array[]): void {
    if (this.block) out.push(...this.block.frames);
    this.block = null;
    this.repairing = false;
  }
}

/** http2 reads the rewritten client bytes from this and writes its own bytes straight to the socket. */
class RewritingDuplex extends Duplex {
  private readonly socket: net.Socket;

  constructor(socket: net.Socket, rewriter: ClientStreamRewriter, initial: readonly Uint8Array[]) {
    super();
    this.socket = socket;
    for (const c of initial) this.push(c);
    socket.on('data', (chunk: Buffer) => {
      let more = true;
      for (const c of rewriter.push(chunk)) more = this.push(c) && more;
      // Backpressure: stop reading the client until http2 has taken what we hold.
      if (!more) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    socket.resume();
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    // Completes when the socket took it, so http2 sees the client's read pace as with a native socket.
    this.socket.write(chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    callback(err);
  }
}

export interface AuthorityRepairOptions {
  peekTimeoutMs?: number;
  maxPeekBytes?: number;
  maxHeaderBlockBytes?: number;
}

/**
 * Hands an accepted frontend connection to http2 (`toHttp2`, e.g. emitting
 * 'connection' on an Http2Server): the native socket itself when the
 * client's authority is acceptable to nghttp2, otherwise a Duplex that
 * repairs it. See the module comment for the procedure.
 */
export function handOffRepairingAuthority(socket: net.Socket, toHttp2: (s: Duplex) => void, options: AuthorityRepairOptions = {}): void {
  const maxPeek = options.maxPeekBytes ?? MAX_PEEK_BYTES;
  let buf = Buffer.allocUnsafe(1024);
  let len = 0;
  /** Where frame parsing stands (after the preface). */
  let cursor = 0;
  let prefaceOk = false;
  /** Our empty SETTINGS went out (only when the first request was not already in). */
  let settingsSent = false;
  let ack: { start: number; end: number } | null = null;
  const firstBlock: Uint8Array[] = [];
  let firstBlockOpen = false;
  let firstBlockDone = false;
  let firstOk: boolean | null = null;
  let settled = false;

  const release = (): void => {
    settled = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeListener('end', onGone);
    socket.removeListener('close', onGone);
    socket.pause();
  };
  const native = (): void => {
    release();
    const held = ack ? Buffer.concat([buf.subarray(0, ack.start), buf.subarray(ack.end, len)]) : buf.subarray(0, len);
    if (held.length > 0) socket.unshift(held);
    toHttp2(socket);
  };
  const rewrite = (): void => {
    // Before a complete preface we have sent nothing: nghttp2 can judge the bytes as they are.
    if (!prefaceOk) return native();
    release();
    const rewriter = new ClientStreamRewriter({
      dropFirstSettingsAck: settingsSent,
      ...(options.maxHeaderBlockBytes !== undefined ? { maxHeaderBlockBytes: options.maxHeaderBlockBytes } : {}),
    });
    const initial = [CLIENT_PREFACE, ...rewriter.push(buf.subarray(CLIENT_PREFACE.length, len))];
    toHttp2(new RewritingDuplex(socket, rewriter, initial));
  };
  const firstAuthorityOk = (): boolean => {
    try {
      const fields = new HpackDecoder().decode(firstBlock.length === 1 ? firstBlock[0]! : Buffer.concat(firstBlock));
      return fields.every((f) => !isAuthorityName(f.name) || isAcceptableAuthority(f.value));
    } catch (err) {
      if (err instanceof HpackError) return false; // the rewriter passes it through for nghttp2 to refuse
      throw err;
    }
  };

  /** Parses what has arrived; decides once the preface, the first header block and our ACK are in. */
  const step = (): void => {
    if (!prefaceOk) {
      const n = Math.min(len, CLIENT_PREFACE.length);
      if (buf.compare(CLIENT_PREFACE, 0, n, 0, n) !== 0) return native(); // not HTTP/2: nghttp2 answers it
      if (len < CLIENT_PREFACE.length) return;
      prefaceOk = true;
      cursor = CLIENT_PREFACE.length;
    }
    while (cursor + FRAME_HEADER <= len) {
      const length = buf.readUIntBE(cursor, 3);
      if (cursor + FRAME_HEADER + length > len) break;
      const type = buf[cursor + 3]!;
      const flags = buf[cursor + 4]!;
      const payload = buf.subarray(cursor + FRAME_HEADER, cursor + FRAME_HEADER + length);
      if (settingsSent && type === TYPE_SETTINGS && flags & FLAG_ACK && length === 0 && ack === null) {
        ack = { start: cursor, end: cursor + FRAME_HEADER };
      } else if (!firstBlockDone && (type === TYPE_HEADERS || type === TYPE_CONTINUATION || firstBlockOpen)) {
        let fragment: Uint8Array | null = null;
        if (type === TYPE_HEADERS && !firstBlockOpen) fragment = headersFragment(flags, payload)?.fragment ?? null;
        else if (type === TYPE_CONTINUATION && firstBlockOpen) fragment = payload;
        if (fragment === null) return rewrite(); // malformed: the rewriter gives up and passes it on
        firstBlock.push(Uint8Array.from(fragment));
        firstBlockOpen = true;
        if (flags & FLAG_END_HEADERS) {
          firstBlockOpen = false;
          firstBlockDone = true;
        }
      }
      cursor += FRAME_HEADER + length;
    }
    if (firstBlockDone) {
      firstOk ??= firstAuthorityOk();
      // A refused authority needs the rewriter anyway, and it drops the ACK whenever it comes.
      if (!firstOk) return rewrite();
      // Eager clients (Node, C-core) send their first request with the
      // preface: nothing of ours went out, so there is no ACK to wait for.
      if (!settingsSent || ack !== null) return native();
    } else if (!settingsSent) {
      // The client waits for a server preface before its first request, as
      // grpc-go does: send the smallest valid one, and cut its ACK later.
      settingsSent = true;
      socket.write(EMPTY_SETTINGS_FRAME);
    }
    if (len >= maxPeek) rewrite();
  };

  const onData = (chunk: Buffer): void => {
    if (len + chunk.length > buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(buf.length * 2, len + chunk.length));
      buf.copy(bigger, 0, 0, len);
      buf = bigger;
    }
    chunk.copy(buf, len);
    len += chunk.length;
    step();
  };
  // Gone before a decision: there is no request to serve.
  const onGone = (): void => {
    if (settled) return;
    release();
    socket.destroy();
  };
  const timer = setTimeout(() => {
    if (!settled) rewrite();
  }, options.peekTimeoutMs ?? PEEK_TIMEOUT_MS);
  timer.unref();
  socket.on('error', () => {}); // 'close' follows; after the hand-off http2 reports errors
  socket.on('data', onData);
  socket.on('end', onGone);
  socket.on('close', onGone);
}
