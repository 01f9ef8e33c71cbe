/** The project's binaries as child processes, killed after the test if still running. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { waitFor } from './wait.ts';
import { shebangNodeArgs } from '../../bench/lib/shebang-node-args.ts';

export type BinName = 'konnectivity-server' | 'konnectivity-agent' | 'konnectivity';

export function binPath(name: BinName): string {
  return fileURLToPath(new URL(`../../bin/${name}`, import.meta.url));
}

/** Environment for spawned binaries: always the TypeScript sources, never a stale dist/. */
export function binEnv(): NodeJS.ProcessEnv {
  return { ...process.env, KONNECTIVITY_TS_FROM_SOURCE: '1' };
}

export interface BinProcess {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly running: () => boolean;
  /** Waits until stderr or stdout contains `text`. */
  waitForOutput(text: string | RegExp, what?: string): Promise<void>;
}

export function spawnBin(t: TestContext, name: BinName, args: readonly string[]): BinProcess {
  const child = spawn(process.execPath, [...shebangNodeArgs(binPath(name)), binPath(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: binEnv() });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  let running = true;
  const exited = once(child, 'exit').then(([code, signal]) => {
    running = false;
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  t.after(async () => {
    if (running) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const matches = (text: string | RegExp): boolean => {
    const all = stdout + stderr;
    return typeof text === 'string' ? all.includes(text) : text.test(all);
  };
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    running: () => running,
    waitForOutput: (text, what = `output ${String(text)} from ${name}`) => waitFor(() => matches(text) || !running, what).then(() => {
      if (!matches(text)) throw new Error(`${name} exited before printing ${String(text)}; stderr:\n${stderr}`);
    }),
  };
}

/** Runs a binary to completion. */
export async function runBin(t: TestContext, name: BinName, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawnBin(t, name, args);
  const { code } = await p.exited;
  // 'exit' may precede the last 'data' on the pipes.
  if (p.child.stdout && !p.child.stdout.readableEnded) await once(p.child.stdout, 'end').catch(() => {});
  if (p.child.stderr && !p.child.stderr.readableEnded) await once(p.child.stderr, 'end').catch(() => {});
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}
