/**
 * Negotiation and bookkeeping of the konnectivity-ts per-connection credit
 * extension (docs/design/flow-control.md). Pure logic, shared by server and
 * agent: whoever receives DATA owes credit back once its consumer took the
 * bytes; whoever sends DATA stops reading that connection's source when its
 * credit runs out.
 */

/** Request metadata (agent → server) and response header (server → agent). */
export const FLOW_CONTROL_HEADER = 'konnectivity-ts-flow-control';
export const FLOW_CONTROL_VERSION = 'v1';
const MIN_WINDOW = 64 * 1024;
const MAX_WINDOW = 64 * 1024 * 1024;
/** Bytes a peer may send on one connection before it needs credit (the agent's window, `--flow-control-window`). */
export const DEFAULT_FLOW_WINDOW_BYTES = 1024 * 1024;
/**
 * The server's window: what an agent may send on one connection (a download)
 * before it needs credit. Larger than the agent's because a download through
 * a busy server must ride out scheduling gaps without the agent pausing its
 * destination: in an interleaved A/B (docs/benchmarks.md, session 6), 4 MiB
 * against 1 MiB raised the median one-connection download from 222 to 254
 * MB/s (gRPC) and from 294 to 315 MB/s (HTTP-CONNECT). A server offers less
 * when its bound on what it queues for one frontend is too small for it
 * (`serverFlowWindowFor`).
 */
export const DEFAULT_SERVER_FLOW_WINDOW_BYTES = 4 * 1024 * 1024;
/** The largest DATA packet a peer may send (grpc-go's 4 MiB receive limit), the "one packet over" of rule 4. */
const LARGEST_PACKET_BYTES = 4 * 1024 * 1024;

/**
 * The window a server with this bound on what it queues for one frontend
 * should offer: the default, or less when the bound could not hold 1.5
 * windows plus one largest packet (flow-control.md, rule 4), so a reader that
 * is only slow is never taken for a stalled one. Never under the minimum.
 */
export function serverFlowWindowFor(maxFrontendBufferBytes: number): number {
  const fits = Math.floor((maxFrontendBufferBytes - LARGEST_PACKET_BYTES) / 1.5);
  return Math.max(MIN_WINDOW, Math.min(DEFAULT_SERVER_FLOW_WINDOW_BYTES, fits));
}

export function formatFlowControlHeader(windowBytes: number): string {
  return `${FLOW_CONTROL_VERSION}; window=${windowBytes}`;
}

/** The peer's window, or null when the value is absent, malformed or another version. */
export function parseFlowControlHeader(value: string | readonly string[] | undefined): number | null {
  if (value === undefined) return null;
  const text = Array.isArray(value) ? (value.length === 1 ? value[0]! : '') : (value as string);
  const m = /^v1;\s*window=(\d{1,10})$/.exec(text.trim());
  if (!m) return null;
  const window = Number(m[1]);
  return window >= MIN_WINDOW && window <= MAX_WINDOW ? window : null;
}

/**
 * Credit state of one connection in one direction pair. `sendCredit` is what
 * we may still send; `owed` is what we received and have not credited back.
 */
export class ConnectionCredit {
  sendCredit: number;
  owed = 0;
  private readonly recvWindow: number;

  constructor(peerWindow: number, ourWindow: number) {
    this.sendCredit = peerWindow;
    this.recvWindow = ourWindow;
  }

  /** Records DATA we sent; true when the source must now pause. */
  consume(bytes: number): boolean {
    this.sendCredit -= bytes;
    return this.sendCredit <= 0;
  }

  /** Records credit from the peer; true when a paused source may resume. */
  grant(bytes: number): boolean {
    this.sendCredit += bytes;
    return this.sendCredit > 0;
  }

  /** Records DATA received for our consumer. */
  received(bytes: number): void {
    this.owed += bytes;
  }

  /**
   * Credit to return now, or 0. We return credit only while our consumer is
   * keeping up (its buffer under half a window), coalesced to a quarter
   * window unless the consumer just drained completely.
   */
  takeCreditToReturn(consumerBufferedBytes: number, consumerDrained: boolean): number {
    if (this.owed === 0 || consumerBufferedBytes > this.recvWindow / 2) return 0;
    if (!consumerDrained && this.owed < this.recvWindow / 4) return 0;
    const n = this.owed;
    this.owed = 0;
    return n;
  }
}
