/**
 * What the diagnostics under bench/diagnostics share on their command line
 * and while they run: usage errors (exit 2, named after the diagnostic),
 * positive whole-number options, and progress lines on standard error.
 */

export interface DiagnosticCli {
  usage(message: string): never;
  /** `--name`'s value as a positive whole number, `fallback` when it was not given; anything else is a usage error. */
  count(name: string, raw: string | undefined, fallback: number): number;
  /** A progress line with the seconds since start. */
  progress(line: string): void;
}

export function diagnosticCli(diagnostic: string): DiagnosticCli {
  const started = performance.now();
  const usage = (message: string): never => {
    process.stderr.write(`${diagnostic}: ${message}\n`);
    process.exit(2);
  };
  return {
    usage,
    count(name, raw, fallback) {
      if (raw === undefined) return fallback;
      const n = Number(raw);
      if (!Number.isInteger(n) || n < 1) usage(`--${name} ${raw}: a positive integer`);
      return n;
    },
    progress(line) {
      process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`);
    },
  };
}
