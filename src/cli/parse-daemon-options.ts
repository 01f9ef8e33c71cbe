/**
 * Shared start of both daemons: parse the command line and, on failure,
 * answer as upstream's cobra commands do (usage on stdout for --help and
 * exit 0; `Error: …` plus usage on stderr and exit 1 otherwise).
 */
import type { Writable } from 'node:stream';
import { OptionsError } from '../flags/options-error.ts';
import type { KlogOptions } from '../flags/klog-flags.ts';
import type { Logger } from '../observability/logger.ts';
import { createDaemonLogger } from '../observability/klog-output.ts';
import { applyHeapTuning, maxSemiSpaceMb } from '../runtime/heap-tuning.ts';
import { applyTieringTuning } from '../runtime/tiering-tuning.ts';

export type ParsedOrExit<T> = { options: T } | { exitCode: number };

/** The process surface both daemons run against; tests pass their own. */
export interface DaemonProcess {
  stdout: Writable;
  stderr: Writable;
  env: Record<string, string | undefined>;
  /** Subscribes to SIGTERM and SIGINT. */
  onShutdownSignal(handler: (signal: string) => void): void;
  logger?: Logger;
}

/** The real process: its standard streams, environment and shutdown signals. */
export const realDaemonProcess: DaemonProcess = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  onShutdownSignal(handler) {
    process.on('SIGTERM', () => handler('SIGTERM'));
    process.on('SIGINT', () => handler('SIGINT'));
  },
};

export function parseDaemonOptions<T>(
  parse: () => T,
  usage: () => string,
  io: { stdout: Writable; stderr: Writable },
): ParsedOrExit<T> {
  try {
    return { options: parse() };
  } catch (err) {
    if (!(err instanceof OptionsError)) throw err;
    if (err.kind === 'help') {
      io.stdout.write(usage());
      return { exitCode: 0 };
    }
    io.stderr.write(`Error: ${err.message}\n`);
    if (err.usage) io.stderr.write(usage());
    return { exitCode: 1 };
  }
}

/** What both daemons need before their own startup: options, a logger, the heap and tiering settings. */
export function startDaemon<T extends KlogOptions & { readonly warnings: readonly string[] }>(
  parse: () => T,
  usage: () => string,
  io: { stdout: Writable; stderr: Writable; env: NodeJS.ProcessEnv; logger?: Logger },
  component: string,
): { options: T; logger: Logger } | { exitCode: number } {
  const parsed = parseDaemonOptions(parse, usage, io);
  if ('exitCode' in parsed) return parsed;
  const heap = applyHeapTuning(io.env);
  const tiering = applyTieringTuning(io.env);
  const options = parsed.options;
  let logger: Logger;
  try {
    // klog's outputs: standard error, or --log-file / --log-dir with --logtostderr=false.
    logger = io.logger ?? createDaemonLogger(options, component);
  } catch (err) {
    io.stderr.write(`log: exiting because of error: ${(err as Error).message}\n`);
    return { exitCode: 2 };
  }
  for (const warning of options.warnings) logger.warn(warning);
  for (const setting of [...heap.ignored, ...tiering.ignored]) logger.warn(`ignoring ${setting}: not a whole number of 0 or more; the default is used`);
  const youngGenerationMb = maxSemiSpaceMb(process.execArgv, io.env.NODE_OPTIONS ?? '');
  logger.v(1, 'V8 heap settings', { growingPercent: heap.growingPercent, headroomMb: heap.headroomMb, maxSemiSpaceMb: youngGenerationMb ?? 'V8 default' });
  logger.v(1, 'V8 tiering settings', { turbofanInvocations: tiering.turbofanInvocations });
  if (youngGenerationMb === undefined) {
    logger.warn('Node was started without --max-semi-space-size, which bin/ and the image\'s /proxy-server and /proxy-agent set to 4: under connection churn V8 grows the young generation to 64 MB and memory to about twice the documented bound (docs/design.md, "Memory under connection churn")');
  }
  return { options, logger };
}
