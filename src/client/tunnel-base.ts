/**
 * What both tunnel modes share: the close signal every dial watches, failure
 * accounting around `dial`, and a `close` that runs its shutdown once. Each
 * mode supplies how one dial opens a connection and how it shuts down.
 */
import type { ClientMetrics } from '../observability/client-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { recordDialFailure } from './client-instrumentation.ts';
import type { DialOptions, Tunnel, TunnelConnection, TunnelMode } from './tunnel-options.ts';

export interface TunnelBaseOptions {
  logger: Logger;
  metrics: ClientMetrics;
}

export abstract class TunnelBase<Options extends TunnelBaseOptions> implements Tunnel {
  abstract readonly mode: TunnelMode;
  protected readonly options: Options;
  /** Aborted by `close()`: pending dials fail with `tunnelclosed`. */
  protected readonly closeController = new AbortController();
  private closing: Promise<void> | null = null;

  constructor(options: Options) {
    this.options = options;
  }

  get closed(): boolean {
    return this.closeController.signal.aborted;
  }

  async dial(network: string, address: string, options: DialOptions = {}): Promise<TunnelConnection> {
    try {
      return await this.open(network, address, options);
    } catch (err) {
      recordDialFailure(this.options.metrics, this.options.logger, address, err);
      throw err;
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /** One dial: resolves with the tunnelled connection or rejects with a KonnectivityDialError. */
  protected abstract open(network: string, address: string, options: DialOptions): Promise<TunnelConnection>;

  /** Runs once, on the first `close()`. */
  protected abstract shutdown(): Promise<void>;
}
