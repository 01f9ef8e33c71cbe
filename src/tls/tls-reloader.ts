/**
 * Hot reload of TLS material from files (konnectivity-ts; upstream loads its
 * certificates once, ANP#801).
 *
 * The files are polled by content digest every `intervalMs`, and their
 * directories are watched so that a change is usually seen at once (the
 * watch only triggers a check; polling is what guarantees it, so it is fine
 * that fs.watch misses symlink swaps on some filesystems). A change is
 * applied only when:
 *  - two reads `settleMs` apart give the same bytes (a file still being
 *    written is picked up on a later check, not half-way), and
 *  - the material validates: complete PEM blocks, parseable certificates,
 *    a key that matches its certificate (`build` throws otherwise).
 * Anything else keeps the previous material in use, logs an error, counts a
 * failure (once per distinct content) and sets the `tls_files_rejected`
 * gauge; the next change of the files is tried again.
 */
import { watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { X509Certificate } from 'node:crypto';
import type { LogFields, Logger } from '../observability/logger.ts';
import { readSnapshot, readSnapshotSync, type FileSnapshot } from './file-snapshot.ts';
import { describeCertificate, earliestExpirySeconds } from './pem.ts';
import type { TlsCertificateRole, TlsMetrics } from './tls-metrics.ts';

/** Default of `--tls-reload-interval`. */
export const DEFAULT_TLS_RELOAD_INTERVAL_MS = 2_000;
const DEFAULT_SETTLE_MS = 100;

/**
 * What one check found: `unchanged` (same bytes as in use), `reloaded`,
 * `rejected` (invalid or unreadable; previous material kept), `in-flux`
 * (files changed between two reads; checked again shortly).
 */
export type ReloadOutcome = 'unchanged' | 'reloaded' | 'rejected' | 'in-flux';

/** Validated material and what to report about it. */
export interface BuiltTls<T> {
  value: T;
  /** Certificates by role, for the expiry gauge and the reload log line. */
  certificates: Partial<Record<TlsCertificateRole, readonly X509Certificate[]>>;
}

export interface TlsReloaderOptions<T> {
  /** `tls_config` label and log field: `frontend`, `agent`, `proxy-server`. */
  name: string;
  /** Every file the material is made of. */
  paths: readonly string[];
  /** Validates and converts; throws (TlsMaterialError) for material that must not be used. */
  build(snapshot: FileSnapshot): BuiltTls<T>;
  /** Puts validated material into use (e.g. `server.setSecureContext`); a throw counts as a rejection. */
  apply?(value: T): void;
  /** 0 disables polling and watching; `check()` still works. */
  intervalMs: number;
  /** Gap between the two reads that must agree (default 100 ms). */
  settleMs?: number;
  /** Watch the files' directories to notice changes before the next poll (default true). */
  watch?: boolean;
  logger: Logger;
  metrics?: TlsMetrics;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export class TlsReloader<T> {
  private readonly options: TlsReloaderOptions<T>;
  private readonly settleMs: number;
  private built: BuiltTls<T>;
  private digest: string;
  /** Digest (or error text) of the last rejected content, so one bad state is reported once. */
  private rejectedKey: string | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private started = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private soonTimer: NodeJS.Timeout | null = null;
  private watchers: FSWatcher[] = [];

  private constructor(options: TlsReloaderOptions<T>, built: BuiltTls<T>, snapshot: FileSnapshot) {
    this.options = options;
    this.settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    this.built = built;
    this.digest = snapshot.digest;
    this.options.metrics?.rejected.set({ tls_config: options.name }, 0);
    this.recordExpiry(built);
  }

  /** Reads and validates the files now; throws when they are missing or invalid (a startup error). */
  static loadSync<T>(options: TlsReloaderOptions<T>): TlsReloader<T> {
    const snapshot = readSnapshotSync(options.paths);
    return new TlsReloader(options, options.build(snapshot), snapshot);
  }

  static async load<T>(options: TlsReloaderOptions<T>): Promise<TlsReloader<T>> {
    const snapshot = await readSnapshot(options.paths);
    return new TlsReloader(options, options.build(snapshot), snapshot);
  }

  /** The material in use. */
  get value(): T {
    return this.built.value;
  }

  get enabled(): boolean {
    return this.options.intervalMs > 0;
  }

  /** Starts polling (and watching); a no-op when the interval is 0. */
  start(): void {
    if (this.started || !this.enabled) return;
    this.started = true;
    this.schedulePoll();
    if (this.options.watch !== false) this.startWatching();
  }

  stop(): void {
    this.started = false;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    if (this.soonTimer) clearTimeout(this.soonTimer);
    this.pollTimer = this.soonTimer = null;
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  /**
   * Compares the files with the material in use and reloads when they
   * changed and validate. Checks run one at a time, in call order; a check
   * requested while another runs starts after it, so it sees the files as
   * they are after the call. Never rejects.
   */
  check(): Promise<ReloadOutcome> {
    const run = this.queue.then(() => this.checkOnce());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async checkOnce(): Promise<ReloadOutcome> {
    let first: FileSnapshot;
    try {
      first = await readSnapshot(this.options.paths);
    } catch (err) {
      return this.reject(`unreadable: ${errorText(err)}`, errorText(err));
    }
    if (first.digest === this.digest) {
      if (this.rejectedKey !== null) {
        // Back to the bytes in use (e.g. a bad swap was reverted).
        this.rejectedKey = null;
        this.options.metrics?.rejected.set({ tls_config: this.options.name }, 0);
        this.options.logger.info('TLS files are back to the material in use', { tls_config: this.options.name });
      }
      return 'unchanged';
    }
    if (first.digest === this.rejectedKey) return 'rejected';
    await delay(this.settleMs);
    let second: FileSnapshot;
    try {
      second = await readSnapshot(this.options.paths);
    } catch (err) {
      return this.reject(`unreadable: ${errorText(err)}`, errorText(err));
    }
    if (second.digest !== first.digest) {
      this.options.logger.v(2, 'TLS files are still changing; checking again shortly', { tls_config: this.options.name });
      this.checkSoon();
      return 'in-flux';
    }
    let built: BuiltTls<T>;
    try {
      built = this.options.build(second);
      this.options.apply?.(built.value);
    } catch (err) {
      return this.reject(second.digest, errorText(err));
    }
    this.built = built;
    this.digest = second.digest;
    this.rejectedKey = null;
    const { metrics, logger, name } = this.options;
    metrics?.reloads.inc({ tls_config: name, result: 'success' });
    metrics?.rejected.set({ tls_config: name }, 0);
    this.recordExpiry(built);
    logger.info('TLS material reloaded; new connections use it, established ones are kept', { tls_config: name, ...this.summary(built) });
    const leaf = built.certificates.serving?.[0] ?? built.certificates.client?.[0];
    if (leaf && leaf.validToDate.getTime() < Date.now()) {
      logger.warn('the reloaded certificate has expired', { tls_config: name, ...describeCertificate(leaf) });
    }
    return 'reloaded';
  }

  private reject(key: string, error: string): ReloadOutcome {
    const { metrics, logger, name } = this.options;
    metrics?.rejected.set({ tls_config: name }, 1);
    if (key !== this.rejectedKey) {
      this.rejectedKey = key;
      metrics?.reloads.inc({ tls_config: name, result: 'failure' });
      logger.error('TLS files changed but cannot be used; keeping the previous material', { tls_config: name, error, files: this.options.paths });
    }
    return 'rejected';
  }

  private summary(built: BuiltTls<T>): LogFields {
    const fields: LogFields = {};
    const leaf = built.certificates.serving?.[0] ?? built.certificates.client?.[0];
    if (leaf) {
      const d = describeCertificate(leaf);
      Object.assign(fields, { subject: d.subject, issuer: d.issuer, notAfter: d.notAfter, serial: d.serial });
    }
    const cas = built.certificates.ca;
    if (cas && cas.length > 0) {
      fields['caSubjects'] = cas.map((c) => describeCertificate(c).subject);
      fields['caNotAfter'] = new Date(earliestExpirySeconds(cas) * 1000).toISOString();
    }
    return fields;
  }

  private recordExpiry(built: BuiltTls<T>): void {
    const metrics = this.options.metrics;
    if (!metrics) return;
    for (const [role, certs] of Object.entries(built.certificates) as [TlsCertificateRole, readonly X509Certificate[]][]) {
      if (certs.length === 0) continue;
      // The leaf for a chain, the earliest for a CA bundle.
      const seconds = role === 'ca' ? earliestExpirySeconds(certs) : certs[0]!.validToDate.getTime() / 1000;
      metrics.expiry.set({ tls_config: this.options.name, certificate: role }, seconds);
    }
  }

  private schedulePoll(): void {
    if (!this.started) return;
    this.pollTimer = setTimeout(() => {
      void this.check().then(() => this.schedulePoll());
    }, this.options.intervalMs);
    this.pollTimer.unref();
  }

  /** One extra check after the settle time (watch events, files in flux). */
  private checkSoon(): void {
    if (!this.started || this.soonTimer) return;
    this.soonTimer = setTimeout(() => {
      this.soonTimer = null;
      void this.check();
    }, this.settleMs);
    this.soonTimer.unref();
  }

  private startWatching(): void {
    const dirs = new Set(this.options.paths.map((p) => path.dirname(path.resolve(p))));
    for (const dir of dirs) {
      try {
        const watcher = watch(dir, { persistent: false }, () => this.checkSoon());
        watcher.on('error', () => watcher.close()); // polling carries on
        this.watchers.push(watcher);
      } catch {
        // Not watchable here (inotify limits, unusual filesystems): polling only.
      }
    }
  }
}
