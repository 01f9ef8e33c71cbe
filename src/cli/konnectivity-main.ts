/**
 * `konnectivity <command> [flags]`: dispatches to one subcommand. Each
 * command owns its flags; this file only routes and prints the command list.
 */
import type { Writable } from 'node:stream';
import { runClientCommand } from './client-command.ts';
import { runQuickstartCommand } from './quickstart-command.ts';
import { runStatusCommand } from './status-command.ts';

/** Where a command writes; tests pass buffers, the binary passes the process streams. */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
}

export interface CliCommand {
  summary: string;
  /** Resolves to the process exit code. */
  run(args: readonly string[], io: CliIO): Promise<number>;
}

/** The subcommands. Add a row to add a command. */
export const commands: Record<string, CliCommand> = {
  client: {
    summary: 'Fetch a URL through a konnectivity proxy server (like upstream proxy-test-client)',
    run: runClientCommand,
  },
  quickstart: {
    summary: 'Start a throwaway local konnectivity (server, agent, demo target) and send requests through it',
    run: runQuickstartCommand,
  },
  status: {
    summary: "Show a server's or agent's agents, servers and open connections from its admin port",
    run: runStatusCommand,
  },
};

export const EXIT_USAGE = 2;

function usage(): string {
  const names = Object.keys(commands).sort();
  const width = Math.max(...names.map((n) => n.length));
  const rows = names.map((n) => `  ${n.padEnd(width)}  ${commands[n]!.summary}`).join('\n');
  return `konnectivity: Kubernetes Konnectivity tools\n\nUsage:\n  konnectivity <command> [flags]\n\nCommands:\n${rows}\n\nRun "konnectivity <command> --help" for a command's flags.\n`;
}

export async function main(argv: readonly string[] = process.argv.slice(2), io: CliIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    (name === undefined ? io.stderr : io.stdout).write(usage());
    return name === undefined ? EXIT_USAGE : 0;
  }
  const command = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!command) {
    io.stderr.write(`Error: unknown command ${JSON.stringify(name)} for "konnectivity"\n\n${usage()}`);
    return EXIT_USAGE;
  }
  return command.run(rest, io);
}

if (import.meta.main) process.exitCode = await main();
