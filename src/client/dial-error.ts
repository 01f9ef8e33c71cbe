/**
 * The one error class the client library throws for a failed dial (and for a
 * tunnel lost after a dial succeeded). Codes are upstream konnectivity-client's
 * dial failure reasons, so they double as `dial_failure_total{reason}` labels
 * and match what kube-apiserver operators already alert on.
 */
import type { ClientDialFailureReason } from '../observability/client-metrics.ts';

/**
 * - `unknown`: anything else (unsupported network, malformed proxy reply).
 * - `timeout`: no answer within the dial timeout (upstream's 30 s backstop).
 * - `context`: the caller's AbortSignal fired while the dial was pending.
 * - `endpoint`: the proxy or agent reported a dial error (DIAL_RSP error, non-200 CONNECT reply).
 * - `dialclosed`: the server gave up on the dial (DIAL_CLS, or it closed the CONNECT socket without answering).
 * - `tunnelclosed`: the tunnel or its stream ended (also after `close()`).
 * - `tunnelstarted`: a single-use tunnel was asked for a second dial (kept for label parity).
 * - `streamsetup`: no connection or stream to the proxy server could be opened.
 */
export type DialFailureCode = ClientDialFailureReason;

export const dialFailureCodes: readonly DialFailureCode[] = [
  'unknown',
  'timeout',
  'context',
  'endpoint',
  'dialclosed',
  'tunnelclosed',
  'tunnelstarted',
  'streamsetup',
];

export class KonnectivityDialError extends Error {
  readonly code: DialFailureCode;
  /** Dial target (`host:port`), when known. */
  readonly address: string | undefined;
  /** HTTP-CONNECT mode: the status the proxy answered with, when it was not 200. */
  readonly httpStatus: number | undefined;

  constructor(code: DialFailureCode, message: string, options: { cause?: unknown; address?: string; httpStatus?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KonnectivityDialError';
    this.code = code;
    this.address = options.address;
    this.httpStatus = options.httpStatus;
  }
}

/** The failure reason of any error, as upstream's GetDialFailureReason does. */
export function dialFailureReason(err: unknown): DialFailureCode {
  return err instanceof KonnectivityDialError ? err.code : 'unknown';
}
