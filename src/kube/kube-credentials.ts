/**
 * The credentials and TLS material of each Kubernetes API request, kept
 * current the way client-go keeps them:
 * - a token file (kubeconfig tokenFile, the in-cluster service-account
 *   token) is re-read once a minute, so projected tokens rotate without a
 *   restart; a failed re-read keeps the last token that was read;
 * - the CA and client certificate files are re-read once a minute too; when
 *   they change, the next request gets new material, and the transport
 *   opens new connections with it (client-go's certificate rotation);
 * - an exec plugin's credential is used until it expires or the API server
 *   rejects it with 401.
 */
import { readFileSync } from 'node:fs';
import { ExecCredentialPlugin, type ExecCredential } from './exec-credential-plugin.ts';
import { KubeCredentialError } from './kube-errors.ts';
import type { KubeConnectionConfig, PemSource } from './kubeconfig-file.ts';

/** client-go's cached file token source re-reads after a minute. */
export const FILE_REFRESH_MS = 60_000;

/** TLS options for connections to the API server. Equal contents are the same object. */
export interface KubeTlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly rejectUnauthorized: boolean;
  readonly servername?: string;
}

export interface RequestAuth {
  /** The Authorization header value, when there is one. */
  readonly authorization?: string;
  readonly tls: KubeTlsMaterial;
  /** The API server answered 401 to a request made with this. */
  readonly rejected: () => void;
}

/** A file's contents, re-read when older than FILE_REFRESH_MS. */
class RefreshedFile {
  private readonly file: string;
  private readonly now: () => number;
  private value: Buffer | undefined;
  private readAtMs = Number.NEGATIVE_INFINITY;

  constructor(file: string, now: () => number) {
    this.file = file;
    this.now = now;
  }

  /** The contents; throws only when the file has never been read successfully. */
  read(): Buffer {
    const now = this.now();
    if (this.value !== undefined && now - this.readAtMs < FILE_REFRESH_MS) return this.value;
    try {
      const fresh = readFileSync(this.file);
      this.value = this.value !== undefined && this.value.equals(fresh) ? this.value : fresh;
    } catch (err) {
      if (this.value === undefined) throw new KubeCredentialError(`cannot read ${this.file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.readAtMs = now;
    return this.value;
  }
}

function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

export class KubeCredentials {
  private readonly config: KubeConnectionConfig;
  private readonly now: () => number;
  private readonly ca: RefreshedFile | Buffer | undefined;
  private readonly cert: RefreshedFile | Buffer | undefined;
  private readonly key: RefreshedFile | Buffer | undefined;
  private readonly tokenFile: RefreshedFile | undefined;
  private readonly plugin: ExecCredentialPlugin | undefined;
  private material: KubeTlsMaterial | undefined;

  constructor(config: KubeConnectionConfig, options: { now?: () => number; env?: NodeJS.ProcessEnv } = {}) {
    this.config = config;
    this.now = options.now ?? Date.now;
    const source = (s: PemSource | undefined): RefreshedFile | Buffer | undefined => (s === undefined ? undefined : 'data' in s ? s.data : new RefreshedFile(s.file, this.now));
    this.ca = source(config.ca);
    this.cert = source(config.clientCertificate);
    this.key = source(config.clientKey);
    const creds = config.credentials;
    this.tokenFile = (creds.kind === 'token' || creds.kind === 'tokenFile') && creds.tokenFile ? new RefreshedFile(creds.tokenFile, this.now) : undefined;
    if (creds.kind === 'exec') {
      const caData = config.ca && 'data' in config.ca ? config.ca.data : undefined;
      this.plugin = new ExecCredentialPlugin(
        creds.exec,
        {
          server: config.server,
          insecureSkipTlsVerify: config.insecureSkipTlsVerify,
          ...(config.tlsServerName ? { tlsServerName: config.tlsServerName } : {}),
          ...(caData ? { certificateAuthorityData: caData } : {}),
        },
        { ...(options.env ? { env: options.env } : {}), now: this.now },
      );
    }
  }

  /** How many times the exec plugin ran (0 without one). */
  get execRuns(): number {
    return this.plugin?.runs ?? 0;
  }

  private static bytes(source: RefreshedFile | Buffer | undefined): Buffer | undefined {
    return source instanceof RefreshedFile ? source.read() : source;
  }

  /** The same object while nothing changed, so the transport can keep its connections. */
  private tls(fromPlugin?: ExecCredential): KubeTlsMaterial {
    const ca = KubeCredentials.bytes(this.ca);
    const cert = fromPlugin?.clientCertificateData !== undefined ? Buffer.from(fromPlugin.clientCertificateData) : KubeCredentials.bytes(this.cert);
    const key = fromPlugin?.clientKeyData !== undefined ? Buffer.from(fromPlugin.clientKeyData) : KubeCredentials.bytes(this.key);
    const same = (a: Buffer | undefined, b: Buffer | undefined): boolean => (a === undefined ? b === undefined : b !== undefined && a.equals(b));
    const current = this.material;
    if (current && same(current.ca, ca) && same(current.cert, cert) && same(current.key, key)) return current;
    this.material = {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      rejectUnauthorized: !this.config.insecureSkipTlsVerify,
      ...(this.config.tlsServerName ? { servername: this.config.tlsServerName } : {}),
    };
    return this.material;
  }

  /** What the next request authenticates with. Throws when a credential cannot be obtained. */
  async forRequest(): Promise<RequestAuth> {
    const creds = this.config.credentials;
    const none = (): void => {};
    switch (creds.kind) {
      case 'none':
        return { tls: this.tls(), rejected: none };
      case 'basic':
        return { authorization: basicAuthorization(creds.username, creds.password), tls: this.tls(), rejected: none };
      case 'token':
      case 'tokenFile': {
        // With both set, the file's last successful read wins over the inline token (client-go's rule).
        let token = creds.kind === 'token' ? creds.token : '';
        if (this.tokenFile) {
          try {
            token = this.tokenFile.read().toString('utf8').trim();
          } catch (err) {
            if (creds.kind === 'tokenFile') throw err;
          }
        }
        return { authorization: `Bearer ${token}`, tls: this.tls(), rejected: none };
      }
      case 'exec': {
        const plugin = this.plugin!;
        const credential = await plugin.get();
        return {
          ...(credential.token !== undefined ? { authorization: `Bearer ${credential.token}` } : {}),
          tls: this.tls(credential),
          rejected: () => plugin.invalidate(credential),
        };
      }
    }
  }
}
