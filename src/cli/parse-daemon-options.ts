/**
 * Shared start of both daemons: parse the command line and, on failure,
 * answer as upstream's cobra commands do (usage on stdout for --help and
 * exit 0; `Error: …` plus usage on stderr and exit 1 otherwise).
 */
import type { Writable } from 'node:stream';
import { OptionsError } from '../flags/options-error.ts';

export type ParsedOrExit<T> = { options: T } | { exitCode: number };

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
