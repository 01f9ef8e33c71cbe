/**
 * The proxy-server's TLS listeners: validated options at startup, and hot
 * reload of `--server-cert/--server-key/--server-ca-cert` (frontend) and
 * `--cluster-cert/--cluster-key/--cluster-ca-cert` (agent listener) through
 * `setSecureContext`, which affects new handshakes only. Established
 * connections, and the tunnels on them, are untouched. Each new secure
 * context gets fresh session-ticket keys, so a session resumed from before
 * a rotation is refused and the peer goes through a full handshake against
 * the new CA.
 */
import type tls from 'node:tls';
import type { Registry } from 'prom-client';
import type { Logger } from '../observability/logger.ts';
import type { TlsFiles } from '../server/tls-context.ts';
import { fileOf, readSnapshotSync, type FileSnapshot } from './file-snapshot.ts';
import { encodeCertificates, parseCertificates, parseKeyPair, TlsMaterialError } from './pem.ts';
import { createTlsMetrics, type TlsMetrics } from './tls-metrics.ts';
import { DEFAULT_TLS_RELOAD_INTERVAL_MS, TlsReloader, type BuiltTls, type ReloadOutcome } from './tls-reloader.ts';

export const SERVER_TLS_METRICS_NAMESPACE = 'konnectivity_network_proxy_server_ts_';

/** The server's two TLS listeners. */
export type ServerTlsListener = 'frontend' | 'agent';

/** What `setSecureContext` takes: everything that lives in the secure context (not requestCert/rejectUnauthorized, which stay on the server). */
export type ServerSecureContextOptions = tls.SecureContextOptions;

function serverTlsPaths(files: TlsFiles): string[] {
  return [files.certPath, files.keyPath, ...(files.clientCaPath ? [files.clientCaPath] : [])];
}

/** Validates the listener's files and turns them into secure-context options with the TLS knobs applied. */
export function buildServerTls(files: TlsFiles, snapshot: FileSnapshot): BuiltTls<ServerSecureContextOptions> {
  const pair = parseKeyPair(fileOf(snapshot, files.certPath), fileOf(snapshot, files.keyPath), files.certPath, files.keyPath);
  const options: ServerSecureContextOptions = {
    cert: pair.certPem,
    key: pair.keyPem,
    minVersion: files.minVersion ?? 'TLSv1.2',
  };
  if (files.ciphers) options.ciphers = files.ciphers;
  const certificates: BuiltTls<ServerSecureContextOptions>['certificates'] = { serving: pair.chain };
  if (files.clientCaPath) {
    const cas = parseCertificates(fileOf(snapshot, files.clientCaPath), files.clientCaPath);
    options.ca = encodeCertificates(cas);
    certificates.ca = cas;
  }
  return { value: options, certificates };
}

/** Full server options (context options plus client-certificate policy) for files read now; throws on invalid material. */
export function loadServerTlsOptions(files: TlsFiles): tls.TlsOptions {
  return withClientAuth(buildServerTls(files, readSnapshotSync(serverTlsPaths(files))).value, files);
}

function withClientAuth(context: ServerSecureContextOptions, files: TlsFiles): tls.TlsOptions {
  const opts: tls.TlsOptions = { ...context };
  if (files.clientCaPath) {
    opts.requestCert = true;
    opts.rejectUnauthorized = true;
  }
  return opts;
}

export interface ServerTlsReloadOptions {
  /** 0 disables reloading (upstream behaviour); default 2 s. */
  intervalMs?: number;
  logger: Logger;
  /** The server's registry; the `_ts_tls_*` metrics go there. */
  registry?: Registry;
  /** Passed to the reloaders (tests). */
  settleMs?: number;
}

interface ListenerEntry {
  files: TlsFiles;
  reloader: TlsReloader<ServerSecureContextOptions>;
  server: tls.Server | null;
}

/**
 * One reloader per TLS listener. Use: `options()` when building a listener,
 * `attach()` once the tls/http2 secure server exists, `start()`/`stop()`
 * with the server.
 */
export class ServerTlsReloading {
  private readonly settings: ServerTlsReloadOptions;
  private readonly metrics: TlsMetrics | undefined;
  private readonly listeners = new Map<ServerTlsListener, ListenerEntry>();

  constructor(settings: ServerTlsReloadOptions) {
    this.settings = settings;
    this.metrics = settings.registry ? createTlsMetrics(settings.registry, SERVER_TLS_METRICS_NAMESPACE) : undefined;
  }

  get intervalMs(): number {
    return this.settings.intervalMs ?? DEFAULT_TLS_RELOAD_INTERVAL_MS;
  }

  /**
   * Validated server options for a listener (throws on missing or invalid
   * files). `requireClientCert` refuses files without a client CA: the TCP
   * frontend is always mTLS (ANP#853).
   */
  options(listener: ServerTlsListener, files: TlsFiles, policy: { requireClientCert?: boolean } = {}): tls.TlsOptions {
    if (policy.requireClientCert && !files.clientCaPath) {
      throw new TlsMaterialError(`the ${listener} TLS listener requires a client CA (--server-ca-cert): it only accepts mTLS clients`);
    }
    const entry: ListenerEntry = {
      files,
      server: null,
      reloader: TlsReloader.loadSync({
        name: listener,
        paths: serverTlsPaths(files),
        build: (snapshot) => buildServerTls(files, snapshot),
        apply: (context) => entry.server?.setSecureContext(context),
        intervalMs: this.intervalMs,
        ...(this.settings.settleMs !== undefined ? { settleMs: this.settings.settleMs } : {}),
        logger: this.settings.logger,
        ...(this.metrics ? { metrics: this.metrics } : {}),
      }),
    };
    this.listeners.set(listener, entry);
    return withClientAuth(entry.reloader.value, files);
  }

  /** The server whose secure context a reload replaces (a tls.Server or http2 secure server). */
  attach(listener: ServerTlsListener, server: tls.Server): void {
    const entry = this.listeners.get(listener);
    if (!entry) throw new Error(`internal: no TLS options were built for the ${listener} listener`);
    entry.server = server;
  }

  start(): void {
    for (const { reloader } of this.listeners.values()) reloader.start();
    if (this.listeners.size > 0 && this.intervalMs > 0) {
      this.settings.logger.v(1, 'watching TLS files for changes', { intervalMs: this.intervalMs, listeners: [...this.listeners.keys()] });
    }
  }

  stop(): void {
    for (const { reloader } of this.listeners.values()) reloader.stop();
  }

  /** Checks every listener's files now (also when polling is disabled). */
  async reload(): Promise<Partial<Record<ServerTlsListener, ReloadOutcome>>> {
    const out: Partial<Record<ServerTlsListener, ReloadOutcome>> = {};
    for (const [name, { reloader }] of this.listeners) out[name] = await reloader.check();
    return out;
  }
}
