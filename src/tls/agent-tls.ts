/**
 * The agent's TLS material (`--ca-cert`, `--agent-cert`, `--agent-key`),
 * kept current without a restart (upstream reads it once, so a CA rotation
 * on the server side leaves agents failing x509 verification until they are
 * restarted: ANP#801, the Kamaji exec/logs outage).
 *
 * With reloading on, the files are checked before every connection attempt
 * (three small reads) and polled in the background so that a rotation is
 * logged and counted when it happens, not at the next reconnect. Connections
 * already established keep the material they were made with.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../observability/logger.ts';
import type { AgentTlsMaterial } from '../agent/server-dialer.ts';
import { fileOf, type FileSnapshot } from './file-snapshot.ts';
import { encodeCertificates, parseCertificates, parseKeyPair } from './pem.ts';
import { createTlsMetrics } from './tls-metrics.ts';
import { DEFAULT_TLS_RELOAD_INTERVAL_MS, TlsReloader, type BuiltTls, type ReloadOutcome } from './tls-reloader.ts';

export const AGENT_TLS_METRICS_NAMESPACE = 'konnectivity_network_proxy_agent_ts_';

export interface AgentTlsFiles {
  /** `--ca-cert`: required. */
  caCertPath: string;
  /** `--agent-cert` / `--agent-key`: a client certificate is presented only when both are set. */
  agentCertPath?: string | undefined;
  agentKeyPath?: string | undefined;
  alpnProtocols?: readonly string[] | undefined;
}

/** konnectivity-ts agent configuration for reloading (alongside AgentConfig). */
export interface AgentTlsReloadConfig {
  /** `--tls-reload-interval`: 0 loads the files once, as upstream; default 2 s. */
  tlsReloadIntervalMs?: number;
}

function agentTlsPaths(files: AgentTlsFiles): string[] {
  const paths = [files.caCertPath];
  if (files.agentCertPath && files.agentKeyPath) paths.push(files.agentCertPath, files.agentKeyPath);
  return paths;
}

export function buildAgentTls(files: AgentTlsFiles, snapshot: FileSnapshot): BuiltTls<AgentTlsMaterial> {
  const cas = parseCertificates(fileOf(snapshot, files.caCertPath), files.caCertPath);
  const material: AgentTlsMaterial = { ca: Buffer.from(encodeCertificates(cas)), alpnProtocols: files.alpnProtocols ?? [] };
  const certificates: BuiltTls<AgentTlsMaterial>['certificates'] = { ca: cas };
  if (files.agentCertPath && files.agentKeyPath) {
    const pair = parseKeyPair(fileOf(snapshot, files.agentCertPath), fileOf(snapshot, files.agentKeyPath), files.agentCertPath, files.agentKeyPath);
    material.cert = Buffer.from(pair.certPem);
    material.key = pair.keyPem;
    certificates.client = pair.chain;
  }
  return { value: material, certificates };
}

export interface AgentTlsSourceOptions {
  /** 0 disables reloading; default 2 s. */
  intervalMs?: number;
  logger: Logger;
  registry?: Registry;
  settleMs?: number;
}

export class AgentTlsSource {
  private readonly reloader: TlsReloader<AgentTlsMaterial>;

  private constructor(reloader: TlsReloader<AgentTlsMaterial>) {
    this.reloader = reloader;
  }

  /** Reads and validates the files; rejects when they are missing or invalid (a startup error, as upstream). */
  static async load(files: AgentTlsFiles, options: AgentTlsSourceOptions): Promise<AgentTlsSource> {
    if (!files.caCertPath) throw new Error('--ca-cert is required: the proxy-server certificate must be verified');
    const metrics = options.registry ? createTlsMetrics(options.registry, AGENT_TLS_METRICS_NAMESPACE) : undefined;
    const reloader = await TlsReloader.load({
      name: 'proxy-server',
      paths: agentTlsPaths(files),
      build: (snapshot) => buildAgentTls(files, snapshot),
      intervalMs: options.intervalMs ?? DEFAULT_TLS_RELOAD_INTERVAL_MS,
      ...(options.settleMs !== undefined ? { settleMs: options.settleMs } : {}),
      logger: options.logger,
      ...(metrics ? { metrics } : {}),
    });
    return new AgentTlsSource(reloader);
  }

  /** The material in use. */
  get current(): AgentTlsMaterial {
    return this.reloader.value;
  }

  /** Material for a new connection attempt: re-checked against the files first when reloading is on. */
  async forConnection(): Promise<AgentTlsMaterial> {
    if (this.reloader.enabled) await this.reloader.check();
    return this.reloader.value;
  }

  /** Checks the files now. */
  reload(): Promise<ReloadOutcome> {
    return this.reloader.check();
  }

  start(): void {
    this.reloader.start();
  }

  stop(): void {
    this.reloader.stop();
  }
}
