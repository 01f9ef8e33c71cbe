/**
 * Metrics about TLS material reloads, on the component's own registry. The
 * names carry the `_ts_` infix of konnectivity-ts-only metrics:
 * `konnectivity_network_proxy_server_ts_tls_*` and
 * `konnectivity_network_proxy_agent_ts_tls_*`. Label `tls_config` names the
 * material: `frontend` and `agent` (the server's two listeners) or
 * `proxy-server` (the agent's connections to the servers).
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export type TlsReloadResult = 'success' | 'failure';
/** `serving`/`client`: the leaf certificate presented; `ca`: the bundle that verifies the peer (earliest expiry). */
export type TlsCertificateRole = 'serving' | 'client' | 'ca';

export interface TlsMetrics {
  reloads: Counter<'tls_config' | 'result'>;
  rejected: Gauge<'tls_config'>;
  expiry: Gauge<'tls_config' | 'certificate'>;
}

function getOrCreate<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

/** `namespace` is e.g. `konnectivity_network_proxy_server_ts_`. Safe to call twice on one registry. */
export function createTlsMetrics(registry: Registry, namespace: string): TlsMetrics {
  const registers = [registry];
  return {
    reloads: getOrCreate(
      registry,
      namespace + 'tls_reloads_total',
      () =>
        new Counter({
          name: namespace + 'tls_reloads_total',
          help: 'TLS material reloads after the files changed, by result. A failure (malformed file, key not matching its certificate) keeps the previous material in use; counted once per distinct file content.',
          labelNames: ['tls_config', 'result'] as const,
          registers,
        }),
    ),
    rejected: getOrCreate(
      registry,
      namespace + 'tls_files_rejected',
      () =>
        new Gauge({
          name: namespace + 'tls_files_rejected',
          help: '1 while the TLS files on disk fail validation and the previously loaded material is still in use, else 0.',
          labelNames: ['tls_config'] as const,
          registers,
        }),
    ),
    expiry: getOrCreate(
      registry,
      namespace + 'tls_certificate_expiry_timestamp_seconds',
      () =>
        new Gauge({
          name: namespace + 'tls_certificate_expiry_timestamp_seconds',
          help: 'notAfter of the TLS certificates in use, in seconds since the epoch (earliest in a CA bundle), by role: serving, client or ca.',
          labelNames: ['tls_config', 'certificate'] as const,
          registers,
        }),
    ),
  };
}
