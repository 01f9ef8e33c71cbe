/**
 * Starts bench/destination.ts as a child process and reads its ports; and a
 * loopback port whose TCP connects never complete (a blackhole), for the
 * head-of-line scenario's hanging-dial variant.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
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

export interface Blackhole {
  /** `127.0.0.1:port`: connects to it stay in SYN-SENT until their own timeout. */
  address: string;
  close(): Promise<void>;
}

/**
 * A loopback port whose listener never accepts (as test/helpers/targets.ts
 * `blackholePort`): a child process listens with backlog 1 and is stopped
 * (SIGSTOP), and we fill its accept queue; from then on the kernel drops SYNs
 * to it. The stopped child is SIGKILLed by `close`, and also when this process
 * exits any other way (an error, or run.ts's Ctrl-C handler calling
 * process.exit), so it never outlives the bench.
 */
export async function startBlackhole(): Promise<Blackhole> {
  const child = spawn(
    process.execPath,
    ['-e', "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>process.stdout.write(s.address().port+'\\n'))"],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  const fillers: net.Socket[] = [];
  const closeAll = async (): Promise<void> => {
    process.off('exit', kill);
    for (const s of fillers) s.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    const [line] = (await once(child.stdout!, 'data')) as [Buffer];
    const port = Number(line.toString().trim());
    process.kill(child.pid!, 'SIGSTOP');
    // Connect until one does not complete: the queue is full. Two more make sure.
    for (let i = 0; i < 16; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      fillers.push(s);
      const connected = await Promise.race([once(s, 'connect').then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 250))]);
      if (!connected) break;
    }
    for (let i = 0; i < 2; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      fillers.push(s);
    }
    return { address: `127.0.0.1:${port}`, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
