/**
 * Loopback endpoints for dialing through a local tunnel: a bare echo server
 * and a port whose dials hang. Shared by the tests, the wire-fuzz rig and the
 * benchmarks (ports with nothing behind them are in loopback-ports.ts).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';

export interface EchoEndpoint {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Destroys the open sockets first, so it never waits for a tunnel to let go of one. */
  close(): Promise<void>;
}

/** An echo server on 127.0.0.1 that records nothing and does not allow half-open connections. */
export async function echoEndpoint(): Promise<EchoEndpoint> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get accepted() {
      return accepted;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface BlackholeEndpoint {
  readonly port: number;
  /** `127.0.0.1:port`: connects to it stay in SYN-SENT until their own timeout. */
  readonly address: string;
  close(): Promise<void>;
}

/**
 * A loopback port whose listener never accepts: a child process listens with
 * backlog 1 and is stopped (SIGSTOP), and we fill its accept queue. From then
 * on the kernel drops SYNs to it, so a TCP dial hangs until its own timeout.
 * The stopped child is SIGKILLed by `close`, and also when this process exits
 * any other way (an error, or a Ctrl-C handler calling process.exit), so it
 * never outlives its user.
 */
export async function blackholeEndpoint(): Promise<BlackholeEndpoint> {
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
    return { port, address: `127.0.0.1:${port}`, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
