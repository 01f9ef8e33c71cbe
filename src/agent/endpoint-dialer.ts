/**
 * Dials an endpoint for a DIAL_REQ the way upstream's
 * net.DialTimeout("tcp", address, 5s) does: Go's address parsing, name
 * resolution inside the same deadline, addresses tried one after another
 * with Go's per-address share of the remaining time, TCP_NODELAY and 15 s
 * keepalive. Every failure is an EndpointDialError carrying Go's wording.
 */
import { promises as dns } from 'node:dns';
import net, { type Socket } from 'node:net';
import {
  EndpointDialError,
  addressDialError,
  canceledDialError,
  connectDialError,
  joinHostPort,
  lookupDialError,
  lookupTimeoutDialError,
  timeoutDialError,
  unknownPortDialError,
} from './go-dial-error.ts';

/** Upstream's hard-coded `dialTimeout` in pkg/agent/client.go. */
export const ENDPOINT_DIAL_TIMEOUT_MS = 5_000;
/** Go's net.Dialer default KeepAlive for dialed TCP connections. */
const GO_TCP_KEEPALIVE_MS = 15_000;
/** Go's partialDeadline floor when several addresses share one deadline. */
const GO_SANE_MINIMUM_PER_ADDRESS_MS = 2_000;

/** Opens a connected TCP socket to `address` (`host:port`) or rejects with an EndpointDialError. */
export type EndpointDialer = (address: string, signal: AbortSignal) => Promise<Socket>;

export type HostResolver = (host: string) => Promise<string[]>;

export interface EndpointDialerOptions {
  timeoutMs?: number;
  /** Name resolution; defaults to getaddrinfo (dns.lookup), which reads /etc/hosts like Go. */
  resolve?: HostResolver;
}

// Go falls back to a built-in table when /etc/services lacks an entry; these
// are the names anyone plausibly sends through a tunnel.
const wellKnownPorts: Readonly<Record<string, number>> = { http: 80, https: 443, domain: 53, ssh: 22, ftp: 21, smtp: 25, telnet: 23 };

export interface SplitAddress {
  host: string;
  port: number;
}

/** Go's net.SplitHostPort plus LookupPort, with Go's error texts. */
export function splitDialAddress(address: string): SplitAddress {
  const i = address.lastIndexOf(':');
  if (i < 0) throw addressDialError(address, 'missing port in address');
  let host: string;
  let j = 0;
  let k = 0;
  if (address.startsWith('[')) {
    const end = address.indexOf(']');
    if (end < 0) throw addressDialError(address, "missing ']' in address");
    if (end + 1 === address.length) throw addressDialError(address, 'missing port in address');
    if (end + 1 !== i) {
      throw addressDialError(address, address[end + 1] === ':' ? 'too many colons in address' : 'missing port in address');
    }
    host = address.slice(1, end);
    j = 1;
    k = end + 1;
  } else {
    host = address.slice(0, i);
    if (host.includes(':')) throw addressDialError(address, 'too many colons in address');
  }
  if (address.indexOf('[', j) >= 0) throw addressDialError(address, "unexpected '[' in address");
  if (address.indexOf(']', k) >= 0) throw addressDialError(address, "unexpected ']' in address");
  const service = address.slice(i + 1);
  let port: number;
  if (/^[0-9]*$/.test(service)) {
    port = service === '' ? 0 : Number(service);
  } else {
    const known = wellKnownPorts[service.toLowerCase()];
    if (known === undefined) throw unknownPortDialError(service);
    port = known;
  }
  if (port > 65535) throw addressDialError(service, 'invalid port');
  return { host, port };
}

const systemResolve: HostResolver = async (host) => {
  const results = await dns.lookup(host, { all: true });
  return results.map((r) => r.address);
};

/** Rejects when the deadline passes or the signal aborts, whichever comes first. */
function raceDeadline<T>(work: Promise<T>, remainingMs: number, signal: AbortSignal, onTimeout: () => Error, onAbort: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', abort);
      reject(onTimeout());
    }, Math.max(0, remainingMs));
    const abort = (): void => {
      clearTimeout(timer);
      reject(onAbort());
    };
    signal.addEventListener('abort', abort, { once: true });
    work.then(
      (v) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', abort);
        reject(err);
      },
    );
  });
}

function connectOnce(ip: string, port: number, timeoutMs: number, signal: AbortSignal): Promise<Socket> {
  const hostPort = joinHostPort(ip, port);
  return new Promise<Socket>((resolve, reject) => {
    const socket = net.connect({ host: ip === '' ? '0.0.0.0' : ip, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: GO_TCP_KEEPALIVE_MS });
    const settle = (err: EndpointDialError | null): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
      socket.off('error', onError);
      socket.off('connect', onConnect);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        resolve(socket);
      }
    };
    const onError = (err: Error): void => settle(connectDialError(hostPort, err));
    const onConnect = (): void => settle(null);
    const abort = (): void => settle(canceledDialError(hostPort));
    const timer = setTimeout(() => settle(timeoutDialError(hostPort)), Math.max(0, timeoutMs));
    socket.once('error', onError);
    socket.once('connect', onConnect);
    signal.addEventListener('abort', abort, { once: true });
  });
}

/** Dials `address` within the timeout; `signal` abandons the dial (DIAL_CLS, shutdown). */
export async function dialTcpEndpoint(address: string, signal: AbortSignal, options: EndpointDialerOptions = {}): Promise<Socket> {
  const timeoutMs = options.timeoutMs ?? ENDPOINT_DIAL_TIMEOUT_MS;
  const deadline = performance.now() + timeoutMs;
  const { host, port } = splitDialAddress(address);
  if (signal.aborted) throw canceledDialError(joinHostPort(host, port));
  let ips: string[];
  if (host === '' || net.isIP(host) !== 0) {
    ips = [host];
  } else {
    const resolve = options.resolve ?? systemResolve;
    const lookup = resolve(host).catch((err: unknown) => {
      throw lookupDialError(host, err);
    });
    lookup.catch(() => {}); // may settle after we gave up on it
    ips = await raceDeadline(lookup, deadline - performance.now(), signal, () => lookupTimeoutDialError(host), () => canceledDialError(joinHostPort(host, port)));
    if (ips.length === 0) throw lookupDialError(host, Object.assign(new Error('no addresses'), { code: 'ENOTFOUND' }));
  }
  let firstError: EndpointDialError | null = null;
  for (let i = 0; i < ips.length; i++) {
    const remaining = deadline - performance.now();
    if (remaining <= 0) {
      firstError ??= timeoutDialError(joinHostPort(ips[i]!, port));
      break;
    }
    let share = remaining / (ips.length - i);
    if (share < GO_SANE_MINIMUM_PER_ADDRESS_MS) share = Math.min(remaining, GO_SANE_MINIMUM_PER_ADDRESS_MS);
    try {
      return await connectOnce(ips[i]!, port, share, signal);
    } catch (err) {
      if (!(err instanceof EndpointDialError)) throw err;
      firstError ??= err;
      if (signal.aborted) break;
    }
  }
  throw firstError ?? timeoutDialError(joinHostPort(host, port));
}

/** The production dialer: upstream's 5 s timeout and the system resolver. */
export function createTcpEndpointDialer(options: EndpointDialerOptions = {}): EndpointDialer {
  return (address, signal) => dialTcpEndpoint(address, signal, options);
}
