/**
 * The three ways a pending dial can be cut short, folded into one
 * AbortSignal, remembering which one fired so the failure gets the right
 * stable code: the timeout (`timeout`), the caller's signal (`context`) and
 * the tunnel closing (`tunnelclosed`).
 */
import { KonnectivityDialError } from './dial-error.ts';

export interface DialDeadlineOptions {
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  closeSignal: AbortSignal;
}

export class DialDeadline {
  readonly signal: AbortSignal;
  private readonly controller = new AbortController();
  private readonly timeoutMs: number;
  private readonly timer: NodeJS.Timeout;
  private readonly callerSignal: AbortSignal | undefined;
  private readonly closeSignal: AbortSignal;
  private cause: 'timeout' | 'context' | 'tunnelclosed' | null = null;

  constructor(options: DialDeadlineOptions) {
    this.signal = this.controller.signal;
    this.timeoutMs = options.timeoutMs;
    this.callerSignal = options.signal;
    this.closeSignal = options.closeSignal;
    this.timer = setTimeout(() => this.fire('timeout'), options.timeoutMs);
    if (this.callerSignal?.aborted) this.fire('context');
    else this.callerSignal?.addEventListener('abort', this.onCallerAbort, { once: true });
    if (this.closeSignal.aborted) this.fire('tunnelclosed');
    else this.closeSignal.addEventListener('abort', this.onClose, { once: true });
  }

  get fired(): boolean {
    return this.cause !== null;
  }

  /** The error describing why the deadline fired. Only meaningful once `fired`. */
  failure(address: string): KonnectivityDialError {
    switch (this.cause) {
      case 'context':
        return new KonnectivityDialError('context', 'dial aborted', { address, cause: this.callerSignal?.reason });
      case 'tunnelclosed':
        return new KonnectivityDialError('tunnelclosed', 'tunnel closed while dialing', { address });
      default:
        return new KonnectivityDialError('timeout', `dial timeout after ${this.timeoutMs} ms`, { address });
    }
  }

  /** Stops watching; call once the dial settled. */
  dispose(): void {
    clearTimeout(this.timer);
    this.callerSignal?.removeEventListener('abort', this.onCallerAbort);
    this.closeSignal.removeEventListener('abort', this.onClose);
  }

  private readonly onCallerAbort = (): void => this.fire('context');
  private readonly onClose = (): void => this.fire('tunnelclosed');

  private fire(cause: 'timeout' | 'context' | 'tunnelclosed'): void {
    if (this.cause !== null) return;
    this.cause = cause;
    this.dispose();
    this.controller.abort();
  }
}
