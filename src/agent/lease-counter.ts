/**
 * `--count-server-leases`: the number of proxy-servers is the number of
 * valid Leases matching `--lease-label-selector` in `--lease-namespace`
 * (upstream pkg/agent/lease_counter.go). Like upstream's informer, the
 * Leases are listed once and then watched, so the count follows servers
 * coming and going without polling the apiserver; validity (renewTime, or
 * acquireTime, plus leaseDurationSeconds, after now) is evaluated at each
 * count, so an expired Lease stops counting even if nothing deletes it.
 * With no valid Lease (or before the first list) the count is 1.
 */
import type { LabelSelector } from '../flags/label-selector.ts';
import type { LeaseList, LeaseWatchEvent, RequestOptions, WatchOptions } from '../kube/kube-client.ts';
import { KubeApiError, isGone } from '../kube/kube-errors.ts';
import { isLeaseValid, type Lease } from '../kube/lease.ts';
import type { AgentMetrics } from '../observability/agent-metrics.ts';
import { silentLogger, type Logger } from '../observability/logger.ts';
import type { ServerCounter } from './server-count.ts';
import { sleepUnlessAborted } from '../runtime/abortable-sleep.ts';
import { errorMessage } from '../runtime/error-message.ts';

/** The Lease calls the counter makes (KubeClient implements them). */
export interface LeaseWatchApi {
  listLeases(namespace: string, labelSelector: string, options?: RequestOptions): Promise<LeaseList>;
  watchLeases(namespace: string, options: WatchOptions, onEvent: (event: LeaseWatchEvent) => void): Promise<void>;
}

export type LeaseCounterMetrics = Pick<AgentMetrics, 'leaseLists' | 'leaseWatches' | 'leaseListLatency'>;

export interface LeaseCounterOptions {
  client: LeaseWatchApi;
  /** `--lease-namespace`. */
  namespace: string;
  /** `--lease-label-selector`. */
  selector: LabelSelector;
  metrics: LeaseCounterMetrics;
  logger?: Logger;
  /** Wall clock in ms (lease times are wall-clock times). */
  now?: () => number;
  /**
   * How long the apiserver keeps one watch open before ending it cleanly
   * (client-go's reflector picks 5–10 min at random, as here by default).
   */
  watchTimeoutSeconds?: () => number;
  /** Backoff after a failed list or a broken watch: initial and cap (defaults 1 s and 30 s). */
  retryInitialMs?: number;
  retryCapMs?: number;
}

/** The count used when no valid Lease is known. */
export const LEASE_COUNT_FALLBACK = 1;


export class ServerLeaseCounter implements ServerCounter {
  /** Completed lists, for tests and status. */
  lists = 0;
  /** Watches the apiserver accepted, for tests and status. */
  watches = 0;

  private readonly options: LeaseCounterOptions;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly selectorText: string;
  private readonly leases = new Map<string, Lease>();
  private readonly stopController = new AbortController();
  private loop: Promise<void> | null = null;
  private lastCount = 0;

  constructor(options: LeaseCounterOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.selectorText = options.selector.toString();
  }

  /** True once the first list succeeded. */
  get synced(): boolean {
    return this.lists > 0;
  }

  /** Leases currently known (valid or not), by name. */
  get knownLeases(): ReadonlyMap<string, Lease> {
    return this.leases;
  }

  start(): void {
    if (this.loop) return;
    this.logger.v(1, 'counting proxy-servers by their leases', { namespace: this.options.namespace, labelSelector: this.selectorText });
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    await this.loop;
  }

  /** Valid matching Leases now; at least 1. */
  count(): number {
    const now = this.now();
    let count = 0;
    for (const lease of this.leases.values()) {
      if (this.options.selector.matches(lease.labels) && isLeaseValid(lease, now)) count++;
    }
    if (count !== this.lastCount) {
      if (count === 0) this.logger.warn('no valid server leases found, assuming a server count of 1', { namespace: this.options.namespace, labelSelector: this.selectorText });
      else this.logger.info('server count from leases changed', { count, previous: this.lastCount });
      this.lastCount = count;
    }
    return count > 0 ? count : LEASE_COUNT_FALLBACK;
  }

  private get signal(): AbortSignal {
    return this.stopController.signal;
  }

  private async run(): Promise<void> {
    const initial = this.options.retryInitialMs ?? 1_000;
    const cap = this.options.retryCapMs ?? 30_000;
    let backoff = initial;
    const pause = async (): Promise<void> => {
      await sleepUnlessAborted(backoff, this.signal);
      backoff = Math.min(backoff * 2, cap);
    };
    while (!this.signal.aborted) {
      let resourceVersion: string;
      try {
        resourceVersion = await this.list();
      } catch (err) {
        if (this.signal.aborted) return;
        this.logger.error('could not list leases', { namespace: this.options.namespace, error: errorMessage(err), retryInMs: backoff });
        await pause();
        continue;
      }
      backoff = initial;
      // Watch from the list's resourceVersion until the apiserver says it is too old or the watch breaks.
      for (;;) {
        if (this.signal.aborted) return;
        const outcome = await this.watch(resourceVersion, (rv) => (resourceVersion = rv));
        if (outcome === 'continue') continue;
        if (outcome === 'relist') break;
        await pause();
        break;
      }
    }
  }

  private observe(counter: 'leaseLists' | 'leaseWatches', err: unknown, startedMs?: number): void {
    const m = this.options.metrics;
    let code: string;
    let reason: string;
    if (err === undefined) {
      code = '200';
      reason = '';
    } else if (err instanceof KubeApiError && err.isApiStatus) {
      code = String(err.code);
      reason = err.reason;
    } else {
      return; // upstream records only errors that carry an API status
    }
    m[counter].inc({ http_response_code: code, reason });
    if (startedMs !== undefined) m.leaseListLatency.observe({ http_response_code: code }, (performance.now() - startedMs) / 1000);
  }

  /** Lists the Leases, replaces the cache, returns the list's resourceVersion. */
  private async list(): Promise<string> {
    const started = performance.now();
    let list: LeaseList;
    try {
      list = await this.options.client.listLeases(this.options.namespace, this.selectorText, { signal: this.signal });
    } catch (err) {
      this.observe('leaseLists', err, started);
      throw err;
    }
    this.observe('leaseLists', undefined, started);
    this.leases.clear();
    for (const lease of list.items) this.leases.set(lease.name, lease);
    this.lists++;
    this.logger.v(4, 'listed server leases', { count: list.items.length, resourceVersion: list.resourceVersion });
    return list.resourceVersion;
  }

  /** One watch; says what to do next. */
  private async watch(resourceVersion: string, setResourceVersion: (rv: string) => void): Promise<'continue' | 'relist' | 'backoff'> {
    let established = false;
    const timeoutSeconds = this.options.watchTimeoutSeconds?.() ?? 300 + Math.floor(Math.random() * 300);
    try {
      await this.options.client.watchLeases(
        this.options.namespace,
        {
          labelSelector: this.selectorText,
          resourceVersion,
          timeoutSeconds,
          signal: this.signal,
          onEstablished: () => {
            established = true;
            this.watches++;
            this.observe('leaseWatches', undefined);
          },
        },
        (event) => {
          if (event.type === 'BOOKMARK') {
            if (event.resourceVersion) setResourceVersion(event.resourceVersion);
            return;
          }
          if (event.lease.resourceVersion) setResourceVersion(event.lease.resourceVersion);
          if (event.type === 'DELETED') this.leases.delete(event.lease.name);
          else this.leases.set(event.lease.name, event.lease);
        },
      );
      return 'continue';
    } catch (err) {
      if (this.signal.aborted) return 'relist';
      if (!established) this.observe('leaseWatches', err);
      if (isGone(err)) {
        this.logger.v(2, 'lease watch expired; listing again', { error: errorMessage(err) });
        return 'relist';
      }
      if (err instanceof KubeApiError && err.timedOut && established) return 'continue';
      this.logger.error('lease watch failed', { namespace: this.options.namespace, error: errorMessage(err) });
      return 'backoff';
    }
  }
}
