/**
 * Renders endpoint dial failures as Go's net.Dial prints them. The text goes
 * back to the proxy-server in DIAL_RSP.error, and an upstream server in
 * HTTP-CONNECT mode picks the HTTP status (502/503/504) by substring-matching
 * that text, so the wording is part of the wire contract, not cosmetics.
 */
import { errorMessage } from '../runtime/error-message.ts';

/** Label of `endpoint_dial_failure_total{reason}`; Go counts net.Error.Timeout() as "timeout". */
export type DialFailureReason = 'timeout' | 'unknown';

/** A failed dial, already phrased for the wire. */
export class EndpointDialError extends Error {
  readonly reason: DialFailureReason;
  constructor(message: string, reason: DialFailureReason) {
    super(message);
    this.name = 'EndpointDialError';
    this.reason = reason;
  }
}

/** Go's net.JoinHostPort: brackets hosts that contain a colon (IPv6). */
export function joinHostPort(host: string, port: number | string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

interface SyscallText {
  /** The syscall Go names in the error (`connect`, `socket`). */
  op: string;
  /** syscall.Errno.Error() on Linux. */
  text: string;
  /** Go's Errno.Timeout(): EAGAIN, EWOULDBLOCK, ETIMEDOUT. */
  timeout?: boolean;
}

// libuv error code → what Go prints for the same errno during a TCP dial.
// EMFILE/ENFILE/ENOBUFS/EAFNOSUPPORT fail when Go creates the socket, so Go
// names the `socket` syscall for them.
const connectErrors: Readonly<Record<string, SyscallText>> = {
  ECONNREFUSED: { op: 'connect', text: 'connection refused' },
  ECONNRESET: { op: 'connect', text: 'connection reset by peer' },
  ENETUNREACH: { op: 'connect', text: 'network is unreachable' },
  EHOSTUNREACH: { op: 'connect', text: 'no route to host' },
  EHOSTDOWN: { op: 'connect', text: 'host is down' },
  ENETDOWN: { op: 'connect', text: 'network is down' },
  ETIMEDOUT: { op: 'connect', text: 'connection timed out', timeout: true },
  EADDRNOTAVAIL: { op: 'connect', text: 'cannot assign requested address' },
  EADDRINUSE: { op: 'connect', text: 'address already in use' },
  EACCES: { op: 'connect', text: 'permission denied' },
  EPERM: { op: 'connect', text: 'operation not permitted' },
  EPIPE: { op: 'connect', text: 'broken pipe' },
  EINVAL: { op: 'connect', text: 'invalid argument' },
  EMFILE: { op: 'socket', text: 'too many open files' },
  ENFILE: { op: 'socket', text: 'too many open files in system' },
  ENOBUFS: { op: 'socket', text: 'no buffer space available' },
  EAFNOSUPPORT: { op: 'socket', text: 'address family not supported by protocol' },
};

// getaddrinfo results as Go's resolver reports them. Go turns EAI_NONAME
// (and an empty answer) into its own "no such host"; other EAI_* codes are
// printed with gai_strerror's text.
const lookupErrors: Readonly<Record<string, string>> = {
  ENOTFOUND: 'no such host',
  EAI_NONAME: 'no such host',
  ENODATA: 'no such host',
  EAI_NODATA: 'no such host',
  EAI_AGAIN: 'Temporary failure in name resolution',
  EAI_FAIL: 'Non-recoverable failure in name resolution',
  EAI_MEMORY: 'Memory allocation failure',
};

function errorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}


/** `dial tcp 10.0.0.5:10250: connect: connection refused` for a failed connect to a resolved address. */
export function connectDialError(hostPort: string, err: unknown): EndpointDialError {
  const code = errorCode(err);
  const known = code === undefined ? undefined : connectErrors[code];
  if (known) return new EndpointDialError(`dial tcp ${hostPort}: ${known.op}: ${known.text}`, known.timeout ? 'timeout' : 'unknown');
  return new EndpointDialError(`dial tcp ${hostPort}: connect: ${code ?? errorMessage(err)}`, 'unknown');
}

/** `dial tcp: lookup nosuch.invalid: no such host` for a failed name resolution. */
export function lookupDialError(host: string, err: unknown): EndpointDialError {
  const code = errorCode(err);
  const text = (code === undefined ? undefined : lookupErrors[code]) ?? code ?? errorMessage(err);
  return new EndpointDialError(`dial tcp: lookup ${host}: ${text}`, 'unknown');
}

/** The dial deadline passed; `target` is the resolved `ip:port`, or `lookup host` while still resolving. */
export function timeoutDialError(target: string): EndpointDialError {
  return new EndpointDialError(`dial tcp ${target}: i/o timeout`, 'timeout');
}

/** A deadline hit during name resolution reads `dial tcp: lookup host: i/o timeout` in Go. */
export function lookupTimeoutDialError(host: string): EndpointDialError {
  return new EndpointDialError(`dial tcp: lookup ${host}: i/o timeout`, 'timeout');
}

/** The dial was abandoned (DIAL_CLS, shutdown): Go's context.Canceled text. */
export function canceledDialError(target: string): EndpointDialError {
  return new EndpointDialError(`dial tcp ${target}: operation was canceled`, 'unknown');
}

/** net.SplitHostPort and port parsing failures: `dial tcp: address foo: missing port in address`. */
export function addressDialError(address: string, problem: string): EndpointDialError {
  return new EndpointDialError(`dial tcp: address ${address}: ${problem}`, 'unknown');
}

/** A service name Go could not map to a port: `dial tcp: lookup tcp/foo: unknown port`. */
export function unknownPortDialError(port: string): EndpointDialError {
  return new EndpointDialError(`dial tcp: lookup tcp/${port}: unknown port`, 'unknown');
}

/**
 * Upstream passes the protocol straight to net.Dial; we only tunnel TCP (the
 * client refuses anything else too). Go words an unusable network this way.
 */
export function unsupportedProtocolDialError(protocol: string): EndpointDialError {
  return new EndpointDialError(`dial ${protocol}: unknown network ${protocol}`, 'unknown');
}
