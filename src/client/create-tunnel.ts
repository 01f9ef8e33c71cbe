import { createClientMetrics } from '../observability/client-metrics.ts';
import { silentLogger } from '../observability/logger.ts';
import { GrpcTunnel } from './grpc-tunnel.ts';
import { HttpConnectTunnel } from './http-connect-tunnel.ts';
import { isUnixTransport } from './proxy-transport.ts';
import { DEFAULT_DIAL_TIMEOUT_MS, type Tunnel, type TunnelOptions } from './tunnel-options.ts';

/**
 * A tunnel to a konnectivity proxy server. Nothing is connected until the
 * first `dial`.
 *
 * ```ts
 * const tunnel = createTunnel({ mode: 'grpc', transport: { unix: '/etc/kubernetes/konnectivity-server/konnectivity-server.socket' } });
 * const socket = await tunnel.dial('tcp', '10.0.0.5:10250', { signal });
 * ```
 */
export function createTunnel(options: TunnelOptions): Tunnel {
  const { transport } = options;
  if (isUnixTransport(transport)) {
    if (!transport.unix) throw new TypeError('transport.unix must be a socket path');
  } else {
    if (!transport.host) throw new TypeError('transport.host is required');
    if (!Number.isInteger(transport.port) || transport.port < 1 || transport.port > 65535) throw new TypeError(`transport.port must be 1-65535, got ${transport.port}`);
  }
  const dialTimeoutMs = options.dialTimeoutMs ?? DEFAULT_DIAL_TIMEOUT_MS;
  if (!(dialTimeoutMs > 0)) throw new TypeError('dialTimeoutMs must be positive');
  const logger = options.logger ?? silentLogger;
  const metrics = options.metrics ?? createClientMetrics();
  switch (options.mode) {
    case 'grpc':
      return new GrpcTunnel({
        transport,
        logger,
        metrics,
        dialTimeoutMs,
        userAgent: options.userAgent ?? 'konnectivity-ts-client',
        keepaliveTimeMs: options.keepaliveTimeMs ?? 0,
      });
    case 'http-connect':
      return new HttpConnectTunnel({ transport, logger, metrics, dialTimeoutMs });
    default:
      throw new TypeError(`unknown tunnel mode ${JSON.stringify(options.mode satisfies never)}`);
  }
}
