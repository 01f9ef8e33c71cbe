/**
 * `--enable-lease-controller`: the proxy-server publishes a Lease so agents
 * with `--count-server-leases` know how many servers there are, and
 * garbage-collects the Leases of servers that went away
 * (upstream pkg/server/leases: controller.go, gc_controller.go, with
 * k8s.io/component-helpers' lease controller doing the renewing).
 *
 *   name      konnectivity-proxy-server-<serverID>, in --lease-namespace
 *   labels    --lease-label
 *   spec      holderIdentity = serverID, leaseDurationSeconds = 30,
 *             renewTime = now, renewed every 15 s
 *   GC        every 15 s: list by the labels, delete each expired Lease
 *             with a resourceVersion precondition (a concurrent renewal wins)
 *   stop      the server deletes its own Lease
 */
import type { LeaseChanges, LeaseList, NewLease, RequestOptions } from '../kube/kube-client.ts';
import { KubeApiError, isConflict, isNotFound } from '../kube/kube-errors.ts';
import { formatLabels, isLeaseValid, type Lease } from '../kube/lease.ts';
import { silentLogger, type Logger } from '../observability/logger.ts';
import type { ServerMetrics } from '../observability/server-metrics.ts';
import { sleepUnlessAborted } from '../runtime/abortable-sleep.ts';
import { errorMessage } from '../runtime/error-message.ts';

export const LEASE_DURATION_SECONDS = 30;
export const LEASE_RENEW_INTERVAL_MS = 15_000;
export const LEASE_GC_INTERVAL_MS = 15_000;
/** component-helpers' backoff while the lease cannot be read or created: 0.8 s doubling, capped at 7 s. */
const ENSURE_BACKOFF_INITIAL_MS = 800;
const ENSURE_BACKOFF_CAP_MS = 7_000;
/** component-helpers' maxUpdateRetries. */
const MAX_UPDATE_RETRIES = 5;

export function serverLeaseName(serverId: string): string {
  return `konnectivity-proxy-server-${serverId}`;
}

/** The Lease calls the controller makes (KubeClient implements them). */
export interface LeaseApi {
  getLease(namespace: string, name: string, options?: RequestOptions): Promise<Lease>;
  createLease(namespace: string, lease: NewLease, options?: RequestOptions): Promise<Lease>;
  updateLease(base: Lease, changes: LeaseChanges, options?: RequestOptions): Promise<Lease>;
  listLeases(namespace: string, labelSelector: string, options?: RequestOptions): Promise<LeaseList>;
  deleteLease(namespace: string, name: string, precondition?: { resourceVersion?: string }, options?: RequestOptions): Promise<void>;
}

export type LeaseMetrics = Pick<ServerMetrics, 'culledLeases' | 'leaseDeleteLatency' | 'leaseDeletes' | 'leaseListLatency' | 'leaseLists'>;

export interface LeaseControllerOptions {
  client: LeaseApi;
  serverId: string;
  /** `--lease-namespace`. */
  namespace: string;
  /** `--lease-label`, parsed. */
  labels: Readonly<Record<string, string>>;
  metrics: LeaseMetrics;
  logger?: Logger;
  leaseDurationSeconds?: number;
  renewIntervalMs?: number;
  gcIntervalMs?: number;
  /** Wall clock in ms (lease times are wall-clock times). */
  now?: () => number;
}


export class ServerLeaseController {
  readonly leaseName: string;
  /** Successful renewals (create or update), for tests and status. */
  renewals = 0;
  /** Garbage-collection passes that listed and then tried every expired lease, for tests and status. */
  gcPasses = 0;

  private readonly options: LeaseControllerOptions;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly durationSeconds: number;
  private readonly selector: string;
  private readonly stopController = new AbortController();
  private latest: Lease | null = null;
  private loops: Promise<void>[] = [];
  private ensureFailures = 0;

  constructor(options: LeaseControllerOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.durationSeconds = options.leaseDurationSeconds ?? LEASE_DURATION_SECONDS;
    this.leaseName = serverLeaseName(options.serverId);
    this.selector = formatLabels(options.labels);
  }

  /** Starts renewing and garbage-collecting; both run once right away. */
  start(): void {
    if (this.loops.length > 0) return;
    this.logger.v(1, 'starting lease acquisition and garbage collection controller', { lease: `${this.options.namespace}/${this.leaseName}`, labels: this.selector });
    this.loops = [this.renewLoop(), this.gcLoop()];
  }

  /** Stops both loops, then deletes this server's Lease (a missing one is fine). */
  async stop(timeoutMs = 5_000): Promise<void> {
    this.stopController.abort();
    await Promise.all(this.loops);
    try {
      await this.options.client.deleteLease(this.options.namespace, this.leaseName, {}, { timeoutMs });
      this.logger.v(1, 'deleted own lease', { lease: `${this.options.namespace}/${this.leaseName}` });
    } catch (err) {
      if (!isNotFound(err)) this.logger.error('could not delete own lease', { lease: `${this.options.namespace}/${this.leaseName}`, error: errorMessage(err) });
    }
  }

  private get signal(): AbortSignal {
    return this.stopController.signal;
  }

  private async renewLoop(): Promise<void> {
    const interval = this.options.renewIntervalMs ?? LEASE_RENEW_INTERVAL_MS;
    while (!this.signal.aborted) {
      const ok = await this.sync();
      if (ok) this.ensureFailures = 0;
      else this.ensureFailures++;
      const wait = ok ? interval : Math.min(interval, ENSURE_BACKOFF_INITIAL_MS * 2 ** (this.ensureFailures - 1), ENSURE_BACKOFF_CAP_MS);
      await sleepUnlessAborted(wait, this.signal);
    }
  }

  private renewal(): LeaseChanges {
    return { labels: this.options.labels, holderIdentity: this.options.serverId, leaseDurationSeconds: this.durationSeconds, renewTimeMs: this.now() };
  }

  /** One renewal: update the lease we hold, else get-or-create it. Returns false when the lease could not be written. */
  async sync(): Promise<boolean> {
    if (this.latest) {
      if (await this.retryUpdate(this.latest)) return true;
      this.logger.v(2, 'failed to update lease using latest lease, fallback to ensure lease', { lease: this.leaseName });
    }
    const ensured = await this.ensure();
    if (!ensured) return false;
    if (ensured.created) return true;
    return this.retryUpdate(ensured.lease);
  }

  private async ensure(): Promise<{ lease: Lease; created: boolean } | null> {
    const { client, namespace } = this.options;
    try {
      const lease = await client.getLease(namespace, this.leaseName, { signal: this.signal });
      this.latest = lease;
      return { lease, created: false };
    } catch (err) {
      if (this.signal.aborted) return null;
      if (!isNotFound(err)) {
        this.logger.error('failed to ensure lease exists, will retry', { lease: this.leaseName, error: errorMessage(err) });
        return null;
      }
    }
    try {
      const r = this.renewal();
      const lease = await client.createLease(
        namespace,
        { name: this.leaseName, labels: r.labels ?? {}, holderIdentity: this.options.serverId, leaseDurationSeconds: this.durationSeconds, renewTimeMs: r.renewTimeMs ?? this.now() },
        { signal: this.signal },
      );
      this.latest = lease;
      this.renewals++;
      this.logger.v(2, 'created lease', { lease: `${namespace}/${this.leaseName}` });
      return { lease, created: true };
    } catch (err) {
      if (!this.signal.aborted) this.logger.error('failed to create lease, will retry', { lease: this.leaseName, error: errorMessage(err) });
      return null;
    }
  }

  private async retryUpdate(base: Lease): Promise<boolean> {
    let current: Lease | null = base;
    for (let attempt = 0; attempt < MAX_UPDATE_RETRIES && current && !this.signal.aborted; attempt++) {
      try {
        this.latest = await this.options.client.updateLease(current, this.renewal(), { signal: this.signal });
        this.renewals++;
        return true;
      } catch (err) {
        if (this.signal.aborted) return false;
        this.logger.error('failed to update lease', { lease: this.leaseName, attempt: attempt + 1, error: errorMessage(err) });
        this.latest = null;
        if (isNotFound(err)) return false;
        if (isConflict(err)) {
          const ensured = await this.ensure();
          if (!ensured) return false;
          if (ensured.created) return true;
          current = ensured.lease;
        }
        if (attempt > 0) this.logger.error('repeat heartbeat error in lease acquisition controller', { lease: this.leaseName });
      }
    }
    return false;
  }

  private async gcLoop(): Promise<void> {
    const interval = this.options.gcIntervalMs ?? LEASE_GC_INTERVAL_MS;
    while (!this.signal.aborted) {
      await this.gc();
      await sleepUnlessAborted(interval, this.signal);
    }
  }

  private observe(counter: 'leaseLists' | 'leaseDeletes', histogram: 'leaseListLatency' | 'leaseDeleteLatency', err: unknown, startedMs: number): void {
    const seconds = (performance.now() - startedMs) / 1000;
    const m = this.options.metrics;
    if (err === undefined) {
      m[counter].inc({ http_status_code: '200', reason: '' });
      m[histogram].observe({ http_status_code: '200' }, seconds);
    } else if (err instanceof KubeApiError && err.isApiStatus) {
      // Upstream records only errors that carry an API status.
      m[counter].inc({ http_status_code: String(err.code), reason: err.reason });
      m[histogram].observe({ http_status_code: String(err.code) }, seconds);
    }
  }

  /** One garbage-collection pass. */
  async gc(): Promise<void> {
    const { client, namespace } = this.options;
    let list: LeaseList;
    const listStart = performance.now();
    try {
      list = await client.listLeases(namespace, this.selector, { signal: this.signal });
      this.observe('leaseLists', 'leaseListLatency', undefined, listStart);
    } catch (err) {
      if (this.signal.aborted) return;
      this.observe('leaseLists', 'leaseListLatency', err, listStart);
      this.logger.error('could not list leases to garbage collect', { namespace, labelSelector: this.selector, error: errorMessage(err) });
      return;
    }
    for (const lease of list.items) {
      if (this.signal.aborted) return;
      if (isLeaseValid(lease, this.now())) continue;
      const deleteStart = performance.now();
      try {
        // Optimistic concurrency: a lease renewed since the list has a new resourceVersion and survives.
        await client.deleteLease(namespace, lease.name, { resourceVersion: lease.resourceVersion }, { signal: this.signal });
        this.observe('leaseDeletes', 'leaseDeleteLatency', undefined, deleteStart);
        this.options.metrics.culledLeases.inc();
        this.logger.v(2, 'garbage-collected expired lease', { lease: `${namespace}/${lease.name}`, holderIdentity: lease.holderIdentity ?? '' });
      } catch (err) {
        if (this.signal.aborted) return;
        this.observe('leaseDeletes', 'leaseDeleteLatency', err, deleteStart);
        if (isNotFound(err)) this.logger.v(4, 'lease was already deleted', { lease: lease.name });
        else this.logger.error('could not delete lease', { lease: lease.name, error: errorMessage(err) });
      }
    }
    this.gcPasses++;
  }
}
