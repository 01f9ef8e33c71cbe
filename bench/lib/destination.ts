/**
 * Starts bench/destination.ts as a child process and reads its ports.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ManagedProcess } from './cluster.ts';

const script = fileURLToPath(new URL('../destination.ts', import.meta.url));

export interface Destination {
  process: ManagedProcess;
  httpPort: number;
  echoPort: number;
  /** A listener that accepts and never reads. */
  stallPort: number;
  /** `127.0.0.1:port` of the HTTP target, as a dial address. */
  httpAddress: string;
  echoAddress: string;
  stallAddress: string;
  /** Destroys every socket the stall listener holds; resolves with how many. */
  releaseStalled(): Promise<number>;
  stop(): Promise<void>;
}

export async function startDestination(): Promise<Destination> {
  const child = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  if (child.pid === undefined) throw new Error('could not start the destination process');
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const lines = createInterface({ input: child.stdout! });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const nextLine = (): Promise<string> =>
    Promise.race([
      new Promise<string>((resolve) => waiting.push(resolve)),
      exited.then((code): never => {
        throw new Error(`destination process exited (${code})`);
      }),
    ]);
  const first = await nextLine().catch((err: Error) => {
    throw new Error(`${err.message} before it was ready`);
  });
  const ports = JSON.parse(first) as { http: number; echo: number; stall: number };
  const proc: ManagedProcess = { name: 'destination', pid: child.pid, logPath: '', child, exited };
  return {
    process: proc,
    httpPort: ports.http,
    echoPort: ports.echo,
    stallPort: ports.stall,
    httpAddress: `127.0.0.1:${ports.http}`,
    echoAddress: `127.0.0.1:${ports.echo}`,
    stallAddress: `127.0.0.1:${ports.stall}`,
    async releaseStalled() {
      const answer = nextLine();
      child.stdin!.write('release-stalled\n');
      const line = await answer;
      const m = /^released (\d+)$/.exec(line);
      if (!m) throw new Error(`destination answered ${JSON.stringify(line)} to release-stalled`);
      return Number(m[1]);
    },
    async stop() {
      lines.close();
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

