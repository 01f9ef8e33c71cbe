/**
 * Keeps one ServerLink per distinct serverID (upstream's ClientSet): the sync
 * loop dials until the server count is reached (or forever with
 * --sync-forever), closes duplicates, backs off on errors, and a probe drops
 * links whose connection is gone so the loop replaces them.
 */
import type { AgentMetrics } from '../observability/agent-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { effectiveServerCount, type ServerCountSource, type ServerCounter } from './server-count.ts';
import type { ProxyServerAddress, ServerDialer, ServerSession } from './server-dialer.ts';
import type { ServerLink } from './server-link.ts';
import { SyncBackoff } from './sync-backoff.ts';
import { sleepUnlessAborted } from '../runtime/abortable-sleep.ts';

export interface ServerLinkSetOptions {
  /** Addresses tried in turn, one per attempt. Upstream has exactly one. */
  addresses: readonly ProxyServerAddress[];
  dialServer: ServerDialer;
  createLink: (session: ServerSession) => ServerLink;
  syncIntervalMs: number;
  syncIntervalCapMs: number;
  probeIntervalMs: number;
  syncForever: boolean;
  leaseCounter?: ServerCounter;
  serverCountSource: ServerCountSource;
  metrics: AgentMetrics;
  logger: Logger;
  random?: () => number;
}

/** What one sync attempt did; exposed for logging and tests. */
export type SyncOutcome = 'skipped' | 'connected' | 'duplicate' | 'failed';

export class ServerLinkSet {
  private readonly options: ServerLinkSetOptions;
  private readonly links = new Map<string, ServerLink>();
  /**
   * Links to a draining server that were replaced by a new connection with
   * the same serverID (its successor process): kept until the old server
   * closes them, so their tunnels finish, but no longer in `links`.
   */
  private readonly retiring = new Set<ServerLink>();
  /** Ends the current sleep of the sync loop early (a server announced it is going). */
  private wake: (() => void) | null = null;
  private readonly backoff: SyncBackoff;
  private readonly stopController = new AbortController();
  private readonly logger: Logger;
  /** `servercount` from the most recent new server; 0 until one answered. */
  private latestResponseCount = 0;
  private nextAddress = 0;
  private draining = false;
  private running = false;
  private probeTimer: NodeJS.Timeout | null = null;
  private loopDone: Promise<void> = Promise.resolve();
  /** Called after every sync attempt (tests wait on it). */
  onSync: (outcome: SyncOutcome, detail?: Error) => void = () => {};

  constructor(options: ServerLinkSetOptions) {
    if (options.addresses.length === 0) throw new Error('at least one proxy-server address is required');
    this.options = options;
    this.logger = options.logger;
    this.backoff = new SyncBackoff(options.syncIntervalMs, options.syncIntervalCapMs, options.random);
  }

  get size(): number {
    return this.links.size;
  }

  /** Links whose connection is usable; readiness needs at least one. */
  get healthyCount(): number {
    let n = 0;
    for (const link of this.links.values()) if (link.isHealthy) n++;
    return n;
  }

  get serverIDs(): string[] {
    return [...this.links.keys()];
  }

  /** Servers that announced a graceful shutdown (drain-notice extension) and are still connected. */
  get drainingServerIDs(): string[] {
    return [...this.links.values()].filter((l) => l.serverDraining).map((l) => l.serverID);
  }

  /** Links that count toward the server count: a draining server is about to go. */
  private get activeCount(): number {
    let n = 0;
    for (const link of this.links.values()) if (!link.serverDraining) n++;
    return n;
  }

  /** Endpoint connections open through every link (a drain is complete at 0). */
  get endpointConnectionCount(): number {
    let n = 0;
    for (const link of this.links.values()) n += link.endpointConnectionCount;
    for (const link of this.retiring) n += link.endpointConnectionCount;
    return n;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** The count the sync loop is aiming for right now. */
  get targetServerCount(): number {
    return effectiveServerCount(this.latestResponseCount, this.options.leaseCounter, this.options.serverCountSource);
  }

  start(): void {
    if (this.running || this.stopController.signal.aborted) return;
    this.running = true;
    this.loopDone = this.syncLoop();
    this.probeTimer = setInterval(() => this.probe(), this.options.probeIntervalMs);
    this.probeTimer.unref();
  }

  /** Sends DRAIN on every link and stops making new connections; tunnels keep working. */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    for (const link of this.links.values()) link.sendDrain();
    for (const link of this.retiring) link.sendDrain();
  }

  /** Stops the loop and closes every link (and with them every tunnel). */
  async stop(): Promise<void> {
    this.stopController.abort();
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.probeTimer = null;
    for (const link of [...this.links.values(), ...this.retiring]) link.close('agent stopping');
    await this.loopDone;
  }

  private async syncLoop(): Promise<void> {
    const signal = this.stopController.signal;
    while (!signal.aborted) {
      let waitMs: number;
      let outcome: SyncOutcome;
      let error: Error | undefined;
      try {
        outcome = await this.syncOnce(signal);
        waitMs = this.backoff.steady();
      } catch (err) {
        if (signal.aborted) break;
        error = err instanceof Error ? err : new Error(String(err));
        outcome = 'failed';
        waitMs = this.backoff.step();
        this.logger.error('cannot connect to proxy-server', { error: error.message, retryInMs: Math.round(waitMs) });
      }
      this.onSync(outcome, error);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void sleepUnlessAborted(waitMs, signal).then(resolve);
      });
      this.wake = null;
    }
  }

  private async syncOnce(signal: AbortSignal): Promise<SyncOutcome> {
    if (this.draining) return 'skipped';
    const target = this.targetServerCount;
    this.options.metrics.knownServerCount.set(target);
    // A server that announced its shutdown does not count: its replacement (or
    // another server) is wanted before it goes (drain-notice extension).
    if (!this.options.syncForever && this.activeCount >= target) return 'skipped';
    const addresses = this.options.addresses;
    const address = addresses[this.nextAddress++ % addresses.length]!;
    const session = await this.options.dialServer(address, signal);
    if (signal.aborted) {
      session.call.cancel();
      session.channel.destroy();
      return 'skipped';
    }
    const existing = this.links.get(session.serverID);
    if (existing?.serverDraining) {
      // Same serverID as a server that is going: this is its successor
      // process. The old link stays open for its tunnels, outside the set.
      this.links.delete(existing.serverID);
      this.retiring.add(existing);
      this.logger.info('replacing the connection to a draining proxy-server with its successor', { serverID: session.serverID });
    } else if (existing) {
      if (this.logger.enabled(4)) this.logger.v(4, 'closing duplicate proxy-server connection', { serverID: session.serverID });
      session.call.cancel();
      session.channel.destroy();
      return 'duplicate';
    }
    if (this.latestResponseCount !== 0 && this.latestResponseCount !== session.serverCount && this.logger.enabled(2)) {
      this.logger.v(2, 'proxy-server suggests a different server count', { current: this.latestResponseCount, serverID: session.serverID, actual: session.serverCount });
    }
    this.latestResponseCount = session.serverCount;
    this.options.metrics.knownServerCount.set(this.targetServerCount);
    const link = this.options.createLink(session);
    this.links.set(link.serverID, link);
    link.onClosed = (closed) => this.remove(closed);
    link.onServerDraining = () => this.wake?.();
    this.options.metrics.openServerConnections.set(this.links.size);
    this.logger.info('connected to proxy-server', { serverID: link.serverID, address: `${address.host}:${address.port}`, serverCount: session.serverCount });
    link.start();
    // Drain began while this connect was in flight: keep the connection (as
    // upstream does) but tell the server straight away.
    if (this.draining) link.sendDrain();
    return 'connected';
  }

  private remove(link: ServerLink): void {
    if (this.retiring.delete(link)) return;
    if (this.links.get(link.serverID) !== link) return;
    this.links.delete(link.serverID);
    this.options.metrics.openServerConnections.set(this.links.size);
    if (!this.stopController.signal.aborted) this.logger.info('lost proxy-server connection', { serverID: link.serverID });
  }

  private probe(): void {
    for (const link of [...this.links.values()]) {
      if (!link.isHealthy) link.close('probe: connection is not ready');
    }
  }
}

