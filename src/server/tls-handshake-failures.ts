/**
 * Failed TLS handshakes on the server's listeners: why, and from where.
 *
 * Without this an agent whose certificate the server refuses is invisible on
 * the server side. Node reports the failures as `tlsClientError`, but not
 * always with the real reason: a client certificate that does not verify
 * (unknown CA, expired) is checked after OpenSSL's handshake, and Node then
 * destroys the socket without a TLS alert, so the error it reports is a
 * meaningless "socket hang up" while the cause sits in
 * `socket.authorizationError`. By then the socket is closed and no longer
 * knows its peer address either.
 */
import net from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { tlsErrorReason } from '../grpc/grpc-client.ts';
import type { Logger } from '../observability/logger.ts';
import type { ServerMetrics } from '../observability/server-metrics.ts';

/** Label of `konnectivity_network_proxy_server_ts_tls_handshake_failures_total{listener}`. */
export type TlsListenerName = 'agent' | 'frontend';

export interface TlsHandshakeFailure {
  /** `ip:port` of the client, or `unknown`. */
  peer: string;
  /** OpenSSL's reason, or why Node refused the client certificate. */
  reason: string;
  /**
   * The client sent no byte: a TCP health check or a port scan, not a TLS
   * client. Not counted, so balancer checks do not drown real failures.
   */
  probe: boolean;
}

// X509_verify_cert_error_string() for the codes Node puts in authorizationError.
const verifyErrors: Readonly<Record<string, string>> = {
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  CERT_REVOKED: 'certificate revoked',
  CERT_SIGNATURE_FAILURE: 'certificate signature failure',
  CERT_UNTRUSTED: 'certificate not trusted',
  CERT_REJECTED: 'certificate rejected',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'self-signed certificate in certificate chain',
  UNABLE_TO_GET_ISSUER_CERT: 'unable to get issuer certificate',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'unable to get local issuer certificate',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'unable to verify the first certificate',
  INVALID_PURPOSE: 'unsupported certificate purpose',
  INVALID_CA: 'invalid CA certificate',
};

/**
 * The TCP socket under a server-side TLSSocket. Node keeps it as `_parent`
 * (not public API): it still has the peer address after the TLS socket was
 * destroyed, and its byte count tells a TLS client from a bare TCP probe.
 */
function underlyingSocket(socket: TLSSocket): net.Socket | undefined {
  const parent = (socket as TLSSocket & { _parent?: unknown })._parent;
  return parent instanceof net.Socket ? parent : undefined;
}

function formatPeer(address: string | undefined, port: number | undefined): string {
  if (!address) return 'unknown';
  return net.isIPv6(address) ? `[${address}]:${port ?? 0}` : `${address}:${port ?? 0}`;
}

const peerOfConnection = new WeakMap<net.Socket, string>();

/**
 * Notes each TCP connection's peer while it is open: a TLS socket that
 * failed its handshake is already destroyed when `tlsClientError` fires, and
 * a destroyed socket can no longer tell its address.
 */
export function rememberPeerAddresses(server: TlsServer): void {
  server.on('connection', (tcp: net.Socket) => {
    peerOfConnection.set(tcp, formatPeer(tcp.remoteAddress, tcp.remotePort));
  });
}

export function describeTlsClientError(err: Error, socket: TLSSocket): TlsHandshakeFailure {
  const tcp = underlyingSocket(socket);
  const peer = (tcp && peerOfConnection.get(tcp)) ?? formatPeer(socket.remoteAddress, socket.remotePort);
  const verifyCode = socket.authorizationError ? String(socket.authorizationError) : '';
  if (verifyCode !== '') {
    return { peer, reason: `client certificate rejected: ${verifyErrors[verifyCode] ?? verifyCode} (${verifyCode})`, probe: false };
  }
  const bytesRead = tcp?.bytesRead ?? socket.bytesRead;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNRESET') {
    if (bytesRead === 0) return { peer, reason: `connection closed before any TLS (${err.message})`, probe: true };
    return { peer, reason: `client closed the connection during the handshake (${err.message}), as one does that does not trust the server certificate`, probe: false };
  }
  return { peer, reason: tlsErrorReason(err), probe: false };
}

/**
 * Logs a failed handshake at -v=2 with the peer and the reason, and counts
 * it; TCP-only probes are logged at -v=5 and not counted.
 */
export function tlsHandshakeFailureReporter(listener: TlsListenerName, logger: Logger, metrics: ServerMetrics): (err: Error, socket: TLSSocket) => void {
  return (err, socket) => {
    const failure = describeTlsClientError(err, socket);
    if (failure.probe) {
      if (logger.enabled(5)) logger.v(5, `${listener} connection closed before a TLS handshake`, { remoteAddress: failure.peer });
      return;
    }
    metrics.tlsHandshakeFailures.inc({ listener });
    if (logger.enabled(2)) logger.v(2, `${listener} TLS handshake failed`, { remoteAddress: failure.peer, reason: failure.reason });
  };
}
