/**
 * Why the command line was not turned into options:
 * - `parse`: pflag-level failure (unknown flag, bad value, missing argument,
 *   positional argument). Upstream (cobra) prints `Error: <msg>` plus usage.
 * - `validation`: the flags parsed but failed the upstream `Validate()` rules.
 *   Upstream wraps the reason as "failed to validate <component> options with
 *   <reason>"; that full text is `message`, the bare reason is `reason`.
 *   Cobra prints usage for these too (upstream sets no SilenceUsage).
 * - `help`: `--help`/`-h` was given; print usage to stdout and exit 0.
 */
export type OptionsErrorKind = 'parse' | 'validation' | 'help';

export class OptionsError extends Error {
  readonly kind: OptionsErrorKind;
  /** Whether the CLI should print the usage text (upstream cobra does for all three kinds). */
  readonly usage: boolean;
  /** The message without any "failed to validate … with" wrapper. */
  readonly reason: string;

  constructor(kind: OptionsErrorKind, message: string, options: { reason?: string; usage?: boolean } = {}) {
    super(message);
    this.name = 'OptionsError';
    this.kind = kind;
    this.reason = options.reason ?? message;
    this.usage = options.usage ?? true;
  }
}
