/**
 * One error type for every Kubernetes API failure: an HTTP status with the
 * apiserver's Status reason when there was a response, code 0 when there
 * was none (connection refused, TLS failure, timeout).
 */

/** metav1.StatusReason for the statuses client-go maps without a Status body (apierrors.NewGenericServerResponse). */
const REASON_BY_CODE: Readonly<Record<number, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  406: 'NotAcceptable',
  409: 'Conflict',
  410: 'Expired',
  413: 'RequestEntityTooLarge',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export class KubeApiError extends Error {
  /** HTTP status code; 0 when no response was received. */
  readonly code: number;
  /** Status.reason (`NotFound`, `Conflict`, …); '' when unknown. */
  readonly reason: string;
  /** The request was abandoned because its deadline passed. */
  readonly timedOut: boolean;

  constructor(message: string, code: number, reason: string, options: { timedOut?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KubeApiError';
    this.code = code;
    this.reason = reason;
    this.timedOut = options.timedOut ?? false;
  }

  /** True when the apiserver answered (upstream records metrics only for these: apierrors.APIStatus). */
  get isApiStatus(): boolean {
    return this.code > 0;
  }
}

/** A credential for the Kubernetes API could not be obtained (a token or certificate file, an exec plugin). */
export class KubeCredentialError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KubeCredentialError';
  }
}

/** The API server's answer could not be used (too large, cut off, not the expected JSON). */
export class KubeAnswerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KubeAnswerError';
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.code === 404;
export const isConflict = (err: unknown): boolean => err instanceof KubeApiError && err.code === 409;
export const isGone = (err: unknown): boolean => err instanceof KubeApiError && err.code === 410;

interface StatusBody {
  message?: unknown;
  reason?: unknown;
  code?: unknown;
}

function parseStatus(body: unknown): StatusBody | undefined {
  if (typeof body === 'string') {
    try {
      const parsed: unknown = JSON.parse(body);
      return typeof parsed === 'object' && parsed !== null ? (parsed as StatusBody) : undefined;
    } catch {
      return undefined;
    }
  }
  return typeof body === 'object' && body !== null ? (body as StatusBody) : undefined;
}

/** A KubeApiError for an HTTP status, with the reason taken from a Status body when there is one. */
export function statusError(what: string, code: number, body?: unknown): KubeApiError {
  const status = parseStatus(body);
  const reason = typeof status?.reason === 'string' && status.reason !== '' ? status.reason : (REASON_BY_CODE[code] ?? '');
  const detail = typeof status?.message === 'string' && status.message !== '' ? status.message : `the server responded with HTTP ${code}${reason ? ` (${reason})` : ''}`;
  return new KubeApiError(`${what}: ${detail}`, code, reason);
}

function describeCause(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause;
  if (cause instanceof Error) {
    const code = (cause as NodeJS.ErrnoException).code;
    return code && !cause.message.includes(code) ? `${code}: ${cause.message}` : cause.message;
  }
  return err.message;
}

/**
 * Normalises whatever a request threw (Node's socket and TLS errors, aborts). `timeoutMs` names the
 * deadline in the message when `timedOut` says it was ours that fired.
 */
export function toKubeApiError(err: unknown, what: string, deadline?: { timedOut: boolean; timeoutMs: number }): KubeApiError {
  if (err instanceof KubeApiError) return err;
  if (deadline?.timedOut) {
    return new KubeApiError(`${what}: no response from the Kubernetes API within ${deadline.timeoutMs} ms`, 0, '', { timedOut: true, cause: err });
  }
  if (err instanceof KubeAnswerError) return new KubeApiError(`${what}: ${err.message}`, 0, '', { cause: err });
  if (err instanceof KubeCredentialError) return new KubeApiError(`${what}: ${err.message}`, 0, '', { cause: err });
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) {
    return new KubeApiError(`${what}: request aborted`, 0, '', { cause: err });
  }
  return new KubeApiError(`${what}: cannot reach the Kubernetes API: ${describeCause(err)}`, 0, '', { cause: err });
}
