/**
 * Runs a kubeconfig exec credential plugin (client.authentication.k8s.io
 * v1 / v1beta1) as client-go does: the command with its args, the process
 * environment plus the configured variables, KUBERNETES_EXEC_INFO describing
 * the request (non-interactive, and the cluster when provideClusterInfo),
 * stdin closed. The ExecCredential it prints carries a bearer token or a
 * client certificate and key, valid until its expirationTimestamp (forever
 * when absent). One run is shared by concurrent callers; a 401 drops the
 * cached credential so the next request runs the plugin again.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { KubeCredentialError } from './kube-errors.ts';
import type { ExecPluginConfig } from './kubeconfig-file.ts';
import { isMap } from './json-map.ts';

export interface ExecCredential {
  readonly token?: string;
  readonly clientCertificateData?: string;
  readonly clientKeyData?: string;
  /** ms since the epoch; undefined = does not expire. */
  readonly expiresAtMs?: number;
}

/** What client-go passes as spec.cluster with provideClusterInfo. */
export interface ExecClusterInfo {
  readonly server: string;
  readonly tlsServerName?: string;
  readonly insecureSkipTlsVerify: boolean;
  readonly certificateAuthorityData?: Buffer;
}

/** A plugin that prints more than this is broken; its output is not kept. */
const MAX_PLUGIN_OUTPUT_BYTES = 1024 * 1024;
/** client-go waits for the plugin without a limit; a daemon must not hang on one forever. */
export const EXEC_PLUGIN_TIMEOUT_MS = 60_000;


/** Parses and checks a plugin's stdout; throws with what is wrong. */
export function parseExecCredential(stdout: string, apiVersion: string): ExecCredential {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw new Error('its output is not an ExecCredential JSON object');
  }
  if (!isMap(doc) || doc['kind'] !== 'ExecCredential') throw new Error('its output is not an ExecCredential JSON object');
  if (doc['apiVersion'] !== apiVersion) throw new Error(`it returned apiVersion ${JSON.stringify(doc['apiVersion'])}, the kubeconfig asks for ${apiVersion}`);
  const status = doc['status'];
  if (!isMap(status)) throw new Error('its ExecCredential has no status');
  const text = (key: string): string | undefined => {
    const v = status[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string') throw new Error(`status.${key} must be a string`);
    return v;
  };
  const token = text('token');
  const cert = text('clientCertificateData');
  const key = text('clientKeyData');
  const expiry = text('expirationTimestamp');
  if ((cert === undefined) !== (key === undefined)) throw new Error('status.clientCertificateData and status.clientKeyData must be set together');
  if (token === undefined && cert === undefined) throw new Error('its ExecCredential has neither status.token nor status.clientCertificateData');
  let expiresAtMs: number | undefined;
  if (expiry !== undefined) {
    expiresAtMs = Date.parse(expiry);
    if (Number.isNaN(expiresAtMs)) throw new Error(`status.expirationTimestamp ${JSON.stringify(expiry)} is not a time`);
  }
  return {
    ...(token !== undefined ? { token } : {}),
    ...(cert !== undefined && key !== undefined ? { clientCertificateData: cert, clientKeyData: key } : {}),
    ...(expiresAtMs !== undefined ? { expiresAtMs } : {}),
  };
}

export class ExecCredentialPlugin {
  private readonly config: ExecPluginConfig;
  private readonly cluster: ExecClusterInfo;
  private readonly baseEnv: NodeJS.ProcessEnv;
  private readonly now: () => number;
  private cached: ExecCredential | undefined;
  private running: Promise<ExecCredential> | undefined;
  /** How many times the plugin ran (for tests and logs). */
  runs = 0;

  constructor(config: ExecPluginConfig, cluster: ExecClusterInfo, options: { env?: NodeJS.ProcessEnv; now?: () => number } = {}) {
    this.config = config;
    this.cluster = cluster;
    this.baseEnv = options.env ?? process.env;
    this.now = options.now ?? Date.now;
  }

  /** A valid credential: the cached one, or a fresh run of the plugin. */
  get(): Promise<ExecCredential> {
    const cached = this.cached;
    if (cached && (cached.expiresAtMs === undefined || cached.expiresAtMs > this.now())) return Promise.resolve(cached);
    this.cached = undefined;
    this.running ??= this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** The API server rejected `used`: forget it so the next request asks the plugin again. */
  invalidate(used: ExecCredential): void {
    if (this.cached === used) this.cached = undefined;
  }

  private execInfo(): string {
    const spec: Record<string, unknown> = { interactive: false };
    if (this.config.provideClusterInfo) {
      const c = this.cluster;
      spec['cluster'] = {
        server: c.server,
        ...(c.tlsServerName ? { 'tls-server-name': c.tlsServerName } : {}),
        ...(c.insecureSkipTlsVerify ? { 'insecure-skip-tls-verify': true } : {}),
        ...(c.certificateAuthorityData ? { 'certificate-authority-data': c.certificateAuthorityData.toString('base64') } : {}),
      };
    }
    return JSON.stringify({ kind: 'ExecCredential', apiVersion: this.config.apiVersion, spec });
  }

  private commandPath(): string {
    const command = this.config.command;
    // clientcmd resolves a command with a path separator against the kubeconfig's directory; a bare name goes through PATH.
    return command.includes('/') && !path.isAbsolute(command) ? path.join(this.config.baseDir, command) : command;
  }

  private run(): Promise<ExecCredential> {
    const env: NodeJS.ProcessEnv = { ...this.baseEnv };
    for (const v of this.config.env) env[v.name] = v.value;
    env['KUBERNETES_EXEC_INFO'] = this.execInfo();
    const command = this.commandPath();
    this.runs++;
    return new Promise<ExecCredential>((resolve, reject) => {
      const child = execFile(
        command,
        [...this.config.args],
        { env, timeout: EXEC_PLUGIN_TIMEOUT_MS, maxBuffer: MAX_PLUGIN_OUTPUT_BYTES, encoding: 'utf8' },
        (err, stdout, stderr) => {
          const failure = (why: string, withHint = false): Error => {
            // client-go shows the install hint only when the executable is missing.
            const hint = withHint && this.config.installHint ? ` (${this.config.installHint.trim()})` : '';
            return new KubeCredentialError(`exec credential plugin ${command}: ${why}${hint}`, err ? { cause: err } : undefined);
          };
          if (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code === 'ENOENT') return reject(failure('executable not found', true));
            const detail = stderr.trim().split('\n').slice(-3).join(' | ');
            const why = err.killed ? `no answer within ${EXEC_PLUGIN_TIMEOUT_MS} ms` : code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER' ? 'printed more than 1 MiB' : `failed (${err.message.split('\n')[0]})`;
            return reject(failure(detail ? `${why}: ${detail}` : why));
          }
          try {
            const credential = parseExecCredential(stdout, this.config.apiVersion);
            this.cached = credential;
            resolve(credential);
          } catch (parseErr) {
            reject(failure(parseErr instanceof Error ? parseErr.message : String(parseErr)));
          }
        },
      );
      child.stdin?.end();
    });
  }
}
