/**
 * Splits a watch response (one JSON event a line) into lines, holding at
 * most one partial line, and refusing a line longer than the bound so a
 * broken or hostile answer cannot grow memory without limit.
 */

/** The largest watch event accepted; a Lease event is about a kilobyte. */
export const MAX_WATCH_LINE_BYTES = 4 * 1024 * 1024;

export class WatchLineSplitter {
  private readonly maxLineBytes: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(maxLineBytes = MAX_WATCH_LINE_BYTES) {
    this.maxLineBytes = maxLineBytes;
  }

  /** The complete, non-empty lines ending in `chunk`; throws when a line exceeds the bound. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, nl);
      this.check(piece.length);
      const line = this.pendingBytes === 0 ? piece.toString('utf8') : Buffer.concat([...this.pending, piece]).toString('utf8');
      this.pending = [];
      this.pendingBytes = 0;
      if (line.trim() !== '') lines.push(line);
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.check(rest.length);
      this.pending.push(rest);
      this.pendingBytes += rest.length;
    }
    return lines;
  }

  private check(more: number): void {
    if (this.pendingBytes + more > this.maxLineBytes) throw new Error(`a watch event is longer than ${this.maxLineBytes} bytes`);
  }
}
