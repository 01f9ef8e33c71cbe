/** Test payloads and stream plumbing: random bytes, sha256, bounded writes, hashed reads. */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';

export const KiB = 1024;
export const MiB = 1024 * 1024;

const cache = new Map<number, Buffer>();

/** Random bytes, the same buffer for the same size within one test process. */
export function randomPayload(size: number): Buffer {
  let b = cache.get(size);
  if (!b) {
    b = randomBytes(size);
    cache.set(size, b);
  }
  return b;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface Digest {
  bytes: number;
  sha256: string;
}

/** Writes `data` in `chunkSize` pieces, honouring backpressure. Rejects if the stream errors or closes first. */
export async function writeAll(stream: Writable, data: Uint8Array, chunkSize = 256 * KiB): Promise<void> {
  for (let off = 0; off < data.length; off += chunkSize) {
    if (stream.destroyed) throw new Error(`stream closed after ${off} of ${data.length} bytes`);
    if (!stream.write(data.subarray(off, off + chunkSize))) await drainOrClose(stream, off, data.length);
  }
}

function drainOrClose(stream: Writable, off: number, total: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => {
      stream.off('close', onClose);
      resolve();
    };
    const onClose = (): void => {
      stream.off('drain', onDrain);
      reject(new Error(`stream closed while writing (after ${off} of ${total} bytes)`));
    };
    stream.once('drain', onDrain);
    stream.once('close', onClose);
  });
}

/**
 * Hashes everything read until the stream ends or closes. Resolves with what
 * arrived (a reset is not an error here: callers compare digests).
 */
export function hashUntilEnd(stream: Readable): Promise<Digest & { error: Error | null }> {
  return new Promise((resolve) => {
    const h = createHash('sha256');
    let bytes = 0;
    let error: Error | null = null;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve({ bytes, sha256: h.digest('hex'), error });
    };
    stream.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    stream.on('error', (err: Error) => (error ??= err));
    stream.once('end', finish);
    stream.once('close', finish);
  });
}

/** Reads exactly `n` bytes (rejects if the stream ends first). Leaves the stream paused afterwards. */
export function readExactly(stream: Readable, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer): void => {
      const need = n - got;
      const rest = c.length > need ? c.subarray(need) : null;
      if (rest) c = c.subarray(0, need);
      parts.push(c);
      got += c.length;
      if (got === n) {
        cleanup();
        stream.pause();
        if (rest) stream.unshift(rest);
        resolve(Buffer.concat(parts));
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`stream ended after ${got} of ${n} bytes`));
    };
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.resume();
  });
}

/** Collects everything until end/close. */
export function readToEnd(stream: Readable): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(parts));
    };
    stream.on('data', (c: Buffer) => parts.push(c));
    stream.on('error', () => {});
    stream.once('end', finish);
    stream.once('close', finish);
  });
}

/**
 * Resolves when the duplex has closed (any reason). Unread data is
 * discarded: a paused stream never reaches 'end', so it would never close.
 */
export function closed(stream: Duplex): Promise<void> {
  if (stream.closed) return Promise.resolve();
  stream.on('error', () => {});
  stream.resume();
  return once(stream, 'close').then(() => undefined);
}
