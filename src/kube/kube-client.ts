/**
 * The Kubernetes API calls konnectivity makes (TokenReview create; Lease
 * get/create/update/list/watch/delete), on @kubernetes/client-node, with
 * client-go's client-side rate limiting (--kubeconfig-qps/--kubeconfig-burst)
 * and a deadline on every request so a slow apiserver cannot hold a caller
 * forever. Failures surface as KubeApiError.
 *
 * Requests are JSON: the client library has no protobuf codec, so
 * --kube-api-content-type=application/vnd.kubernetes.protobuf (upstream's
 * default) is accepted and ignored. The apiserver serves JSON for every
 * resource, so this changes only the encoding on the wire.
 */
import {
  AuthenticationV1Api,
  CoordinationV1Api,
  IsomorphicFetchHttpLibrary,
  Watch,
  type ConfigurationOptions,
  type HttpLibrary,
  type KubeConfig,
  type RequestContext,
  type V1Lease,
} from '@kubernetes/client-node';
import { silentLogger, type Logger } from '../observability/logger.ts';
import { kubeServerUrl, loadKubeConfig, type KubeConfigSource } from './kube-config.ts';
import { KubeApiError, statusError, toKubeApiError } from './kube-errors.ts';
import { leaseFromApi, microTime, type Lease } from './lease.ts';
import { createKubeRateLimiter, kubeRateLimits, type RateLimiter } from './rate-limiter.ts';

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

/** A per-request HTTP library that attaches the request's abort signal (the generated API has no signal parameter). */
class SignalledHttp implements HttpLibrary {
  private readonly base: HttpLibrary;
  private readonly signal: AbortSignal;
  constructor(base: HttpLibrary, signal: AbortSignal) {
    this.base = base;
    this.signal = signal;
  }
  send(request: RequestContext) {
    request.setSignal(this.signal);
    return this.base.send(request);
  }
}

const LEASE_API_VERSION = 'coordination.k8s.io/v1';

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  /** API server URL, for logs. */
  readonly server: string;
  private readonly limiter: RateLimiter;
  private readonly requestTimeoutMs: number;
  private readonly logger: Logger;
  private readonly auth: AuthenticationV1Api;
  private readonly coordination: CoordinationV1Api;
  private readonly http = new IsomorphicFetchHttpLibrary();

  constructor(kubeConfig: KubeConfig, options: KubeClientOptions = {}) {
    this.kubeConfig = kubeConfig;
    this.server = kubeServerUrl(kubeConfig);
    this.limiter = options.rateLimiter ?? createKubeRateLimiter(0, 0);
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_KUBE_REQUEST_TIMEOUT_MS;
    this.logger = options.logger ?? silentLogger;
    this.auth = kubeConfig.makeApiClient(AuthenticationV1Api);
    this.coordination = kubeConfig.makeApiClient(CoordinationV1Api);
  }

  /** Builds a client from the command-line flags; throws when the configuration cannot be loaded. */
  static fromFlags(flags: KubeClientFlags): KubeClient {
    const logger = flags.logger ?? silentLogger;
    const kc = loadKubeConfig(flags);
    const limits = kubeRateLimits(flags.qps ?? 0, flags.burst ?? 0);
    const client = new KubeClient(kc, {
      rateLimiter: createKubeRateLimiter(flags.qps ?? 0, flags.burst ?? 0),
      logger,
      ...(flags.requestTimeoutMs !== undefined ? { requestTimeoutMs: flags.requestTimeoutMs } : {}),
    });
    const contentType = flags.contentType ?? JSON_CONTENT_TYPE;
    logger.v(2, 'kubernetes client configured', {
      server: client.server,
      source: flags.kubeconfigPath === '' ? 'in-cluster' : flags.kubeconfigPath,
      qps: limits.qps,
      burst: limits.burst,
      contentType: JSON_CONTENT_TYPE,
      ...(contentType !== JSON_CONTENT_TYPE ? { note: `--kube-api-content-type=${contentType} is not supported by this client; requests use ${JSON_CONTENT_TYPE}` } : {}),
    });
    return client;
  }

  /** Rate limit, deadline and error mapping around one generated-API call. */
  private async request<T>(what: string, options: RequestOptions, call: (config: ConfigurationOptions) => Promise<T>): Promise<T> {
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
      return await call({ httpApi: new SignalledHttp(this.http, signal) });
    } catch (err) {
      throw toKubeApiError(err, what, deadline);
    } finally {
      clearTimeout(timer);
    }
  }

  async createTokenReview(token: string, audiences: readonly string[], options: RequestOptions = {}): Promise<TokenReviewResult> {
    const review = await this.request('create TokenReview', options, (config) =>
      this.auth.createTokenReview(
        { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [...audiences] } } },
        config,
      ),
    );
    const status = review.status;
    return {
      authenticated: status?.authenticated === true,
      username: status?.user?.username ?? '',
      error: status?.error ?? '',
      audiences: status?.audiences ?? [],
    };
  }

  async getLease(namespace: string, name: string, options: RequestOptions = {}): Promise<Lease> {
    const lease = await this.request(`get lease ${namespace}/${name}`, options, (config) => this.coordination.readNamespacedLease({ name, namespace }, config));
    return leaseFromApi(lease);
  }

  async createLease(namespace: string, lease: NewLease, options: RequestOptions = {}): Promise<Lease> {
    const body: V1Lease = {
      apiVersion: LEASE_API_VERSION,
      kind: 'Lease',
      metadata: { name: lease.name, namespace, labels: { ...lease.labels } },
      spec: { holderIdentity: lease.holderIdentity, leaseDurationSeconds: lease.leaseDurationSeconds, renewTime: microTime(lease.renewTimeMs) },
    };
    const created = await this.request(`create lease ${namespace}/${lease.name}`, options, (config) => this.coordination.createNamespacedLease({ namespace, body }, config));
    return leaseFromApi(created);
  }

  /** PUT of `base` with `changes`: fails with Conflict if the lease changed since `base` was read. */
  async updateLease(base: Lease, changes: LeaseChanges, options: RequestOptions = {}): Promise<Lease> {
    const raw = base.raw;
    const body: V1Lease = {
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
    const updated = await this.request(`update lease ${base.namespace}/${base.name}`, options, (config) =>
      this.coordination.replaceNamespacedLease({ name: base.name, namespace: base.namespace, body }, config),
    );
    return leaseFromApi(updated);
  }

  async listLeases(namespace: string, labelSelector: string, options: RequestOptions = {}): Promise<LeaseList> {
    const list = await this.request(`list leases in ${namespace}`, options, (config) =>
      this.coordination.listNamespacedLease({ namespace, ...(labelSelector !== '' ? { labelSelector } : {}) }, config),
    );
    return { items: list.items.map(leaseFromApi), resourceVersion: list.metadata?.resourceVersion ?? '' };
  }

  /** Deletes a lease; with `resourceVersion`, only if it is still that version (Conflict otherwise). */
  async deleteLease(namespace: string, name: string, precondition: { resourceVersion?: string } = {}, options: RequestOptions = {}): Promise<void> {
    await this.request(`delete lease ${namespace}/${name}`, options, (config) =>
      this.coordination.deleteNamespacedLease(
        { name, namespace, ...(precondition.resourceVersion ? { body: { preconditions: { resourceVersion: precondition.resourceVersion } } } : {}) },
        config,
      ),
    );
  }

  /**
   * Streams lease events until the watch ends. Resolves when the apiserver
   * closes it (e.g. after `timeoutSeconds`); rejects with KubeApiError when
   * it cannot start, breaks, or the apiserver sends an ERROR event (code 410
   * means the resourceVersion is too old: list again).
   */
  async watchLeases(namespace: string, options: WatchOptions, onEvent: (event: LeaseWatchEvent) => void): Promise<void> {
    const what = `watch leases in ${namespace}`;
    const signal = options.signal;
    try {
      await this.limiter.take(signal);
    } catch (err) {
      throw toKubeApiError(err, what);
    }
    const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
    const query: Record<string, string | number | boolean | undefined> = {
      allowWatchBookmarks: true,
      labelSelector: options.labelSelector || undefined,
      resourceVersion: options.resourceVersion || undefined,
      timeoutSeconds: options.timeoutSeconds,
    };
    return new Promise<void>((resolve, reject) => {
      let controller: AbortController | undefined;
      let settled = false;
      const settle = (err?: KubeApiError): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        controller?.abort();
        if (err) reject(err);
        else resolve();
      };
      const onAbort = (): void => settle(new KubeApiError(`${what}: request aborted`, 0, ''));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const onWatchEvent = (type: string, obj: unknown): void => {
        if (settled) return;
        if (type === 'ERROR') {
          const code = (obj as { code?: unknown } | null)?.code;
          settle(statusError(what, typeof code === 'number' ? code : 500, obj));
          return;
        }
        if (typeof obj !== 'object' || obj === null) return;
        const lease = obj as V1Lease;
        if (type === 'BOOKMARK') onEvent({ type, resourceVersion: lease.metadata?.resourceVersion ?? '' });
        else if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') onEvent({ type, lease: leaseFromApi(lease) });
        else this.logger.v(4, 'ignoring unknown lease watch event type', { type });
      };
      const onDone = (err: unknown): void => {
        if (!err) return settle();
        // The library aborts a watch that has been silent for 30 s; that is an ordinary end.
        if (err instanceof Error && err.name === 'TimeoutError') return settle(new KubeApiError(`${what}: no event within the idle timeout`, 0, '', { timedOut: true, cause: err }));
        settle(toKubeApiError(err, what));
      };
      new Watch(this.kubeConfig).watch(path, query, onWatchEvent, onDone).then(
        (c) => {
          controller = c;
          // The library resolves here after a non-200 answer too, having already reported it through onDone.
          if (settled) c.abort();
          else options.onEstablished?.();
        },
        (err: unknown) => settle(toKubeApiError(err, what)),
      );
    });
  }
}
