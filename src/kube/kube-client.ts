/**
 * The Kubernetes API calls konnectivity makes (TokenReview create; Lease
 * get/create/update/list/watch/delete) as JSON over HTTPS (kube-transport.ts),
 * with client-go's client-side rate limiting (--kubeconfig-qps/--kubeconfig-burst)
 * and a deadline on every request so a slow apiserver cannot hold a caller
 * forever. Failures surface as KubeApiError.
 *
 * This is not a general client: six calls need a few hundred lines, where
 * a general client library cost ~50 MB of resident memory to load (see
 * docs/operations.md).
 *
 * Requests are JSON: --kube-api-content-type=application/vnd.kubernetes.protobuf
 * (upstream's default) is accepted and ignored. The apiserver serves JSON for
 * every resource, so this changes only the encoding on the wire.
 */
import type http from 'node:http';
import { silentLogger, type Logger } from '../observability/logger.ts';
import { loadKubeConfig, type KubeConfigSource, type KubeConnectionConfig } from './kube-config.ts';
import { KubeCredentials } from './kube-credentials.ts';
import { KubeAnswerError, KubeApiError, statusError, toKubeApiError } from './kube-errors.ts';
import { KubeTransport, readBody, type KubeHttpRequest } from './kube-transport.ts';
import { leaseFromApi, microTime, type Lease, type LeaseObject } from './lease.ts';
import { createKubeRateLimiter, kubeRateLimits, type RateLimiter } from './rate-limiter.ts';
import { WatchLineSplitter } from './watch-lines.ts';
import { isMap } from './json-map.ts';

/** Deadline for requests that do not name their own (client-go has none; a stuck call must not stall a controller). */
export const DEFAULT_KUBE_REQUEST_TIMEOUT_MS = 30_000;

export const JSON_CONTENT_TYPE = 'application/json';

export interface KubeClientFlags extends KubeConfigSource {
  /** `--kubeconfig-qps`; 0 = client-go's default (5), < 0 = unlimited. */
  qps?: number;
  /** `--kubeconfig-burst`; 0 = client-go's default (10). */
  burst?: number;
  /** `--kube-api-content-type`; only JSON is spoken (see the module comment). */
  contentType?: string;
  logger?: Logger;
  requestTimeoutMs?: number;
}

export interface KubeClientOptions {
  rateLimiter?: RateLimiter;
  requestTimeoutMs?: number;
  logger?: Logger;
  /** Environment for exec credential plugins (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Clock for credential refresh (tests). */
  now?: () => number;
}

export interface RequestOptions {
  /** Overrides the client's default deadline. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface TokenReviewResult {
  authenticated: boolean;
  /** status.user.username ('' when absent). */
  username: string;
  /** status.error ('' when absent). */
  error: string;
  /** status.audiences. */
  audiences: string[];
}

export interface NewLease {
  name: string;
  labels: Readonly<Record<string, string>>;
  holderIdentity: string;
  leaseDurationSeconds: number;
  renewTimeMs: number;
}

export interface LeaseChanges {
  labels?: Readonly<Record<string, string>>;
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  renewTimeMs?: number;
}

export interface LeaseList {
  items: Lease[];
  /** The list's resourceVersion, to start a watch from. */
  resourceVersion: string;
}

export type LeaseWatchEvent =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; lease: Lease }
  | { type: 'BOOKMARK'; resourceVersion: string };

export interface WatchOptions {
  labelSelector?: string;
  resourceVersion?: string;
  /** Asks the apiserver to end the watch after this long (it then closes cleanly). */
  timeoutSeconds?: number;
  signal?: AbortSignal;
  /** Called once the apiserver accepted the watch (HTTP 200), before any event. */
  onEstablished?: () => void;
}

const LEASE_API_VERSION = 'coordination.k8s.io/v1';

const LEASES_PATH = (namespace: string): string => `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
const LEASE_PATH = (namespace: string, name: string): string => `${LEASES_PATH(namespace)}/${encodeURIComponent(name)}`;


/** A 2xx answer's body as a JSON object; anything else is the API server misbehaving. */
function jsonObject(body: Buffer, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new KubeAnswerError('the Kubernetes API answered with something that is not JSON');
  }
  if (!isMap(parsed)) throw new KubeAnswerError('the Kubernetes API answered with JSON that is not an object');
  return parsed;
}

export class KubeClient {
  readonly config: KubeConnectionConfig;
  /** API server URL, for logs. */
  readonly server: string;
  private readonly limiter: RateLimiter;
  private readonly requestTimeoutMs: number;
  private readonly logger: Logger;
  private readonly credentials: KubeCredentials;
  private readonly transport: KubeTransport;

  constructor(config: KubeConnectionConfig, options: KubeClientOptions = {}) {
    this.config = config;
    this.server = config.server;
    this.limiter = options.rateLimiter ?? createKubeRateLimiter(0, 0);
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_KUBE_REQUEST_TIMEOUT_MS;
    this.logger = options.logger ?? silentLogger;
    this.credentials = new KubeCredentials(config, { ...(options.env ? { env: options.env } : {}), ...(options.now ? { now: options.now } : {}) });
    this.transport = new KubeTransport(config, this.credentials);
  }

  /** How many times the kubeconfig's exec credential plugin ran (0 without one). */
  get execPluginRuns(): number {
    return this.credentials.execRuns;
  }

  /** Builds a client from the command-line flags; throws when the configuration cannot be loaded. */
  static fromFlags(flags: KubeClientFlags): KubeClient {
    const logger = flags.logger ?? silentLogger;
    const config = loadKubeConfig(flags);
    const limits = kubeRateLimits(flags.qps ?? 0, flags.burst ?? 0);
    const client = new KubeClient(config, {
      rateLimiter: createKubeRateLimiter(flags.qps ?? 0, flags.burst ?? 0),
      logger,
      ...(flags.env ? { env: { ...flags.env } } : {}),
      ...(flags.requestTimeoutMs !== undefined ? { requestTimeoutMs: flags.requestTimeoutMs } : {}),
    });
    const contentType = flags.contentType ?? JSON_CONTENT_TYPE;
    logger.v(2, 'kubernetes client configured', {
      server: client.server,
      source: config.source,
      auth: config.credentials.kind === 'none' && config.clientCertificate ? 'client-certificate' : config.credentials.kind,
      qps: limits.qps,
      burst: limits.burst,
      contentType: JSON_CONTENT_TYPE,
      ...(contentType !== JSON_CONTENT_TYPE ? { note: `--kube-api-content-type=${contentType} is not supported by this client; requests use ${JSON_CONTENT_TYPE}` } : {}),
    });
    return client;
  }

  /** Closes the client's connections to the API server. */
  close(): void {
    this.transport.close();
  }

  /** Rate limit, deadline and error mapping around one request; resolves with the 2xx answer's JSON object. */
  private async request(what: string, options: RequestOptions, request: Omit<KubeHttpRequest, 'signal'>): Promise<Record<string, unknown>> {
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const timeout = new AbortController();
    const deadline = { timedOut: false, timeoutMs };
    const timer = setTimeout(() => {
      deadline.timedOut = true;
      timeout.abort(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const signal = options.signal ? AbortSignal.any([timeout.signal, options.signal]) : timeout.signal;
    try {
      await this.limiter.take(signal);
      const res = await this.transport.send({ ...request, signal });
      if (res.status < 200 || res.status > 299) throw statusError(what, res.status, res.body.toString('utf8'));
      return jsonObject(res.body, what);
    } catch (err) {
      throw toKubeApiError(err, what, deadline);
    } finally {
      clearTimeout(timer);
    }
  }

  async createTokenReview(token: string, audiences: readonly string[], options: RequestOptions = {}): Promise<TokenReviewResult> {
    const review = await this.request('create TokenReview', options, {
      method: 'POST',
      path: '/apis/authentication.k8s.io/v1/tokenreviews',
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [...audiences] } },
    });
    const status = isMap(review['status']) ? review['status'] : {};
    const user = isMap(status['user']) ? status['user'] : {};
    const audiencesBack = status['audiences'];
    return {
      authenticated: status['authenticated'] === true,
      username: typeof user['username'] === 'string' ? user['username'] : '',
      error: typeof status['error'] === 'string' ? status['error'] : '',
      audiences: Array.isArray(audiencesBack) ? audiencesBack.filter((a): a is string => typeof a === 'string') : [],
    };
  }

  async getLease(namespace: string, name: string, options: RequestOptions = {}): Promise<Lease> {
    const lease = await this.request(`get lease ${namespace}/${name}`, options, { method: 'GET', path: LEASE_PATH(namespace, name) });
    return leaseFromApi(lease);
  }

  async createLease(namespace: string, lease: NewLease, options: RequestOptions = {}): Promise<Lease> {
    const body: LeaseObject = {
      apiVersion: LEASE_API_VERSION,
      kind: 'Lease',
      metadata: { name: lease.name, namespace, labels: { ...lease.labels } },
      spec: { holderIdentity: lease.holderIdentity, leaseDurationSeconds: lease.leaseDurationSeconds, renewTime: microTime(lease.renewTimeMs) },
    };
    const created = await this.request(`create lease ${namespace}/${lease.name}`, options, { method: 'POST', path: LEASES_PATH(namespace), body });
    return leaseFromApi(created);
  }

  /** PUT of `base` with `changes`: fails with Conflict if the lease changed since `base` was read. */
  async updateLease(base: Lease, changes: LeaseChanges, options: RequestOptions = {}): Promise<Lease> {
    const raw = base.raw;
    const body: LeaseObject = {
      ...raw,
      apiVersion: LEASE_API_VERSION,
      kind: 'Lease',
      metadata: { ...raw.metadata, ...(changes.labels ? { labels: { ...changes.labels } } : {}) },
      spec: {
        ...raw.spec,
        ...(changes.holderIdentity !== undefined ? { holderIdentity: changes.holderIdentity } : {}),
        ...(changes.leaseDurationSeconds !== undefined ? { leaseDurationSeconds: changes.leaseDurationSeconds } : {}),
        ...(changes.renewTimeMs !== undefined ? { renewTime: microTime(changes.renewTimeMs) } : {}),
      },
    };
    const updated = await this.request(`update lease ${base.namespace}/${base.name}`, options, { method: 'PUT', path: LEASE_PATH(base.namespace, base.name), body });
    return leaseFromApi(updated);
  }

  async listLeases(namespace: string, labelSelector: string, options: RequestOptions = {}): Promise<LeaseList> {
    const list = await this.request(`list leases in ${namespace}`, options, {
      method: 'GET',
      path: LEASES_PATH(namespace),
      query: { labelSelector: labelSelector !== '' ? labelSelector : undefined },
    });
    const items = Array.isArray(list['items']) ? list['items'].filter(isMap) : [];
    const meta = isMap(list['metadata']) ? list['metadata'] : {};
    return { items: items.map((item) => leaseFromApi(item)), resourceVersion: typeof meta['resourceVersion'] === 'string' ? meta['resourceVersion'] : '' };
  }

  /** Deletes a lease; with `resourceVersion`, only if it is still that version (Conflict otherwise). */
  async deleteLease(namespace: string, name: string, precondition: { resourceVersion?: string } = {}, options: RequestOptions = {}): Promise<void> {
    await this.request(`delete lease ${namespace}/${name}`, options, {
      method: 'DELETE',
      path: LEASE_PATH(namespace, name),
      ...(precondition.resourceVersion ? { body: { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: precondition.resourceVersion } } } : {}),
    });
  }

  /**
   * Streams lease events until the watch ends. Resolves when the apiserver
   * closes it (e.g. after `timeoutSeconds`); rejects with KubeApiError when
   * it cannot start, breaks, goes silent for the request timeout, or the
   * apiserver sends an ERROR event (code 410 means the resourceVersion is
   * too old: list again).
   */
  async watchLeases(namespace: string, options: WatchOptions, onEvent: (event: LeaseWatchEvent) => void): Promise<void> {
    const what = `watch leases in ${namespace}`;
    const idleMs = this.requestTimeoutMs;
    const controller = new AbortController();
    const signal = options.signal ? AbortSignal.any([controller.signal, options.signal]) : controller.signal;
    let idle: NodeJS.Timeout | undefined;
    let idleFired = false;
    const armIdle = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        idleFired = true;
        controller.abort(new Error(`no event within ${idleMs} ms`));
      }, idleMs);
    };
    try {
      await this.limiter.take(signal);
      armIdle();
      const res = await this.transport.open({
        method: 'GET',
        path: LEASES_PATH(namespace),
        query: {
          watch: true,
          allowWatchBookmarks: true,
          labelSelector: options.labelSelector || undefined,
          resourceVersion: options.resourceVersion || undefined,
          timeoutSeconds: options.timeoutSeconds,
        },
        signal,
      });
      if (res.statusCode !== 200) {
        const body = await readBody(res);
        throw statusError(what, res.statusCode ?? 0, body.toString('utf8'));
      }
      armIdle();
      options.onEstablished?.();
      await this.readWatch(res, what, armIdle, onEvent);
    } catch (err) {
      if (idleFired) throw new KubeApiError(`${what}: no event within the idle timeout of ${idleMs} ms`, 0, '', { timedOut: true, cause: err });
      if (options.signal?.aborted) throw new KubeApiError(`${what}: request aborted`, 0, '', { cause: err });
      throw toKubeApiError(err, what);
    } finally {
      clearTimeout(idle);
      controller.abort();
    }
  }

  /** Reads watch events (one JSON object a line) until the stream ends. */
  private readWatch(res: http.IncomingMessage, what: string, onData: () => void, onEvent: (event: LeaseWatchEvent) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (err: Error): void => {
        if (failed) return;
        failed = true;
        res.destroy();
        reject(err);
      };
      const lines = new WatchLineSplitter();
      res.on('data', (chunk: Buffer) => {
        onData();
        let batch: string[];
        try {
          batch = lines.push(chunk);
        } catch (err) {
          return fail(new KubeAnswerError(err instanceof Error ? err.message : String(err)));
        }
        for (const line of batch) {
          if (failed) return;
          const err = this.watchEvent(line, what, onEvent);
          if (err) return fail(err);
        }
      });
      res.on('end', () => {
        if (!failed) resolve();
      });
      res.on('error', (err) => fail(err));
      res.on('aborted', () => fail(new KubeAnswerError('the watch connection closed')));
    });
  }

  /** Handles one watch line; returns the error that ends the watch, if any. */
  private watchEvent(line: string, what: string, onEvent: (event: LeaseWatchEvent) => void): KubeApiError | undefined {
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      this.logger.v(2, 'ignoring a lease watch line that is not JSON', { bytes: line.length });
      return undefined;
    }
    if (!isMap(event)) return undefined;
    const type = event['type'];
    const obj = event['object'];
    if (type === 'ERROR') {
      const code = isMap(obj) ? obj['code'] : undefined;
      return statusError(what, typeof code === 'number' ? code : 500, obj);
    }
    if (!isMap(obj)) return undefined;
    if (type === 'BOOKMARK') {
      const meta = isMap(obj['metadata']) ? obj['metadata'] : {};
      onEvent({ type, resourceVersion: typeof meta['resourceVersion'] === 'string' ? meta['resourceVersion'] : '' });
    } else if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
      onEvent({ type, lease: leaseFromApi(obj) });
    } else {
      this.logger.v(4, 'ignoring unknown lease watch event type', { type });
    }
    return undefined;
  }
}
