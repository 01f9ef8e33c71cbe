/** Starts bench/destination.ts as a child process and reads its ports. */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ManagedProcess } from './cluster.ts';

const script = fileURLToPath(new URL('../destination.ts', import.meta.url));

export interface Destination {
  process: ManagedProcess;
  httpPort: number;
  echoPort: number;
  /** `127.0.0.1:port` of the HTTP target, as a dial address. */
  httpAddress: string;
  echoAddress: string;
  stop(): Promise<void>;
}

export async function startDestination(): Promise<Destination> {
  const child = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  if (child.pid === undefined) throw new Error('could not start the destination process');
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const lines = createInterface({ input: child.stdout! });
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once('line', resolve)),
    exited.then((code) => {
      throw new Error(`destination process exited (${code}) before it was ready`);
    }),
  ]);
  lines.close();
  const ports = JSON.parse(first) as { http: number; echo: number };
  const proc: ManagedProcess = { name: 'destination', pid: child.pid, logPath: '', child, exited };
  return {
    process: proc,
    httpPort: ports.http,
    echoPort: ports.echo,
    httpAddress: `127.0.0.1:${ports.http}`,
    echoAddress: `127.0.0.1:${ports.echo}`,
    async stop() {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
