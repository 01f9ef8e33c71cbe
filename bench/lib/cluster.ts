/**
 * A konnectivity-server and one konnectivity-agent as separate OS processes,
 * started from the real bin/ entry points with upstream flags, so their CPU
 * and memory can be read from /proc and never mix with the load generator's.
 * The same launcher starts upstream's Go `proxy-server` and `proxy-agent`
 * (executed directly, with the same upstream flags and nothing else).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TunnelMode } from '../../src/client/tunnel-options.ts';
import { unusedLoopbackPort } from '../../src/dev/loopback-ports.ts';
import { shebangNodeArgs } from './shebang-node-args.ts';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Which code the server and agent processes run. */
export interface CodeLayout {
  /** Directory holding konnectivity-server and konnectivity-agent (the bin/ shims). */
  binDir: string;
  /** The sources (src/) or the compiled output (dist/) the shims load. */
  codeDir: string;
  /** Human description for the report. */
  description: string;
  /** `codeDir` is a tsc build: the shims must not be told to load sources (KONNECTIVITY_TS_FROM_SOURCE). */
  compiled: boolean;
}

/** Newest modification time (ms) of files under `dir` ending in `ext`, or 0. */
function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith(ext)) continue;
    newest = Math.max(newest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/**
 * The checkout's own bin/ shims. They run dist/ when it exists (someone ran
 * `npm run build`) and the sources otherwise; say which, and whether dist/
 * is older than the sources.
 */
export function checkoutLayout(env: NodeJS.ProcessEnv = process.env): CodeLayout {
  const binDir = path.join(repoRoot, 'bin');
  const dist = path.join(repoRoot, 'dist');
  if (env.KONNECTIVITY_TS_FROM_SOURCE === '1') {
    // The shims read the same variable (the children inherit it).
    return { binDir, codeDir: path.join(repoRoot, 'src'), compiled: false, description: 'TypeScript sources run directly (KONNECTIVITY_TS_FROM_SOURCE=1 makes the bin/ shims skip dist/; Node strips types at load time)' };
  }
  if (!existsSync(path.join(dist, 'cli', 'server-main.js'))) {
    return { binDir, codeDir: path.join(repoRoot, 'src'), compiled: false, description: 'TypeScript sources run directly (bin/ shims in a checkout without dist/; Node strips types at load time)' };
  }
  const stale = newestMtime(path.join(repoRoot, 'src'), '.ts') > newestMtime(dist, '.js');
  return {
    binDir,
    codeDir: dist,
    compiled: true,
    description: `compiled JavaScript from the checkout's dist/ (the bin/ shims prefer it when it exists)${stale ? ' — WARNING: dist/ is older than src/, so the figures are for stale code; run `npm run build` or use --compiled' : ''}`,
  };
}

/**
 * Compiles src/ with tsconfig.build.json into `dir`/dist and lays out
 * `dir`/bin next to it, which is what an installed package runs (the bin
 * shims prefer ../dist). node_modules is linked, not copied. `sourceRoot`
 * is this checkout unless another one (e.g. a worktree of an older commit,
 * for before/after profiles) is named; it is built with this checkout's
 * compiler, and runs with its own node_modules when it has them (its
 * dependencies may differ: `npm ci --omit=dev` there), else with this
 * checkout's.
 */
export function compiledLayout(dir: string, sourceRoot: string = repoRoot): CodeLayout {
  process.stdout.write('compiling src/ (tsc -p tsconfig.build.json) into a temp dir…\n');
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  try {
    execFileSync(process.execPath, [path.join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(sourceRoot, 'tsconfig.build.json'), '--outDir', path.join(dir, 'dist'), '--declaration', 'false', '--sourceMap', 'false'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    // Type errors (e.g. someone mid-edit) still emit JavaScript; only a missing output is fatal.
    if (!existsSync(path.join(dir, 'dist', 'cli', 'server-main.js'))) throw err;
    process.stdout.write('tsc reported errors; using the JavaScript it emitted anyway\n');
  }
  for (const f of ['konnectivity-server', 'konnectivity-agent']) copyFileSync(path.join(sourceRoot, 'bin', f), path.join(dir, 'bin', f));
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  const ownModules = path.join(sourceRoot, 'node_modules');
  symlinkSync(sourceRoot !== repoRoot && existsSync(ownModules) ? ownModules : path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const what = sourceRoot === repoRoot ? '' : ` of another checkout, ${sourceRoot}${describeCheckout(sourceRoot)}`;
  return { binDir: path.join(dir, 'bin'), codeDir: path.join(dir, 'dist'), compiled: true, description: `compiled JavaScript${what} (tsc -p tsconfig.build.json, as an installed package runs it)` };
}

/** ` (commit abc1234)` when `root` is a git checkout, else nothing. */
function describeCheckout(root: string): string {
  try {
    return ` (commit ${execFileSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()})`;
  } catch {
    return '';
  }
}

/** Why `root` cannot be run with --code (not a konnectivity-ts checkout), or null. */
export function checkoutProblem(root: string): string | null {
  for (const f of ['tsconfig.build.json', 'src/cli/server-main.ts', 'src/cli/agent-main.ts', 'bin/konnectivity-server', 'bin/konnectivity-agent']) {
    if (!existsSync(path.join(root, f))) return `${root} has no ${f}: not a konnectivity-ts checkout`;
  }
  return null;
}

export interface PkiPaths {
  caCertPath: string;
  serverCertPath: string;
  serverKeyPath: string;
}

/** Upstream's Go binaries, run side by side with ours (--upstream-server / --upstream-agent). */
export interface UpstreamBinaries {
  /** Absolute path of upstream's proxy-server. */
  serverPath: string;
  /** Absolute path of upstream's proxy-agent. */
  agentPath: string;
  /** Extra flags for upstream's server / agent only (--upstream-server-arg / --upstream-agent-arg). */
  serverArgs?: string[];
  agentArgs?: string[];
}

/**
 * Why `file` cannot be run as an upstream binary, or null when it can: it
 * must be an existing regular file with an execute permission for us.
 */
export function executableProblem(file: string): string | null {
  let st;
  try {
    st = statSync(file);
  } catch {
    return 'does not exist';
  }
  if (!st.isFile()) return 'is not a regular file';
  try {
    accessSync(file, fsConstants.X_OK);
  } catch {
    return 'is not executable (chmod +x?)';
  }
  return null;
}

/**
 * What `file --version` prints (first lines, trimmed), for the report; a
 * short explanation instead when it fails, prints nothing or hangs (5 s).
 */
export function probeVersion(file: string, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve) => {
    execFile(file, ['--version'], { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const firstLines = (text: string, n = 2): string =>
        text
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
          .slice(0, n)
          .join(' / ')
          .slice(0, 200);
      if (!err) {
        const out = firstLines(stdout) || firstLines(stderr);
        resolve(out ? `\`--version\`: ${out}` : '`--version` printed nothing');
        return;
      }
      const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: unknown };
      if (e.killed) return resolve(`\`--version\` did not finish within ${timeoutMs / 1000} s`);
      const why = typeof e.code === 'number' ? `exit ${e.code}` : e.signal ? `signal ${e.signal}` : String(e.code ?? e.message);
      // The first line is the error (usually an unknown flag); what follows is usage.
      const said = firstLines(stderr, 1) || firstLines(stdout, 1);
      resolve(`no version: \`--version\` failed (${why}${said ? `: ${said}` : ''})`);
    });
  });
}

export interface ClusterOptions {
  mode: TunnelMode;
  /** Working directory for the socket and the logs. */
  dir: string;
  pki: PkiPaths;
  /** Passed as -v to both processes when set; otherwise the binaries' default applies. */
  verbosity?: number;
  /** Write V8 CPU profiles of both processes into this directory (node --cpu-prof). */
  cpuProfileDir?: string;
  code: CodeLayout;
  /**
   * Diagnostic: run bench/server-entry.ts instead of the real CLI, with the
   * server's maxFrontendBufferBytes (no CLI flag) set to this.
   */
  frontendBufferLimit?: number;
  /** Extra flags for tuning experiments (recorded in the report). */
  serverArgs?: string[];
  agentArgs?: string[];
  /** Extra Node.js flags for server and agent (e.g. --max-semi-space-size=32, --trace-gc). */
  nodeArgs?: string[];
  /** Diagnostic: run the server or the agent under this command (e.g. valgrind and its flags), Node and its arguments after it. */
  commandPrefix?: { server?: readonly string[]; agent?: readonly string[] };
  /** Upstream flags that turn on agent token authentication (--token-auth): for every server and agent, ours and upstream's. */
  tokenAuth?: { serverFlags: readonly string[]; agentFlags: readonly string[] };
  /**
   * Start upstream's binaries instead of ours: same upstream flags, executed
   * directly (no Node, no profiling, none of the extras above, which may be
   * konnectivity-ts extensions).
   */
  upstream?: UpstreamBinaries;
}

export interface ManagedProcess {
  name: string;
  pid: number;
  logPath: string;
  child: ChildProcess;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited: Promise<number | string>;
}

export interface Cluster {
  mode: TunnelMode;
  /** Upstream's binaries (target `upstream-<mode>`), not ours. */
  upstream: boolean;
  udsPath: string;
  server: ManagedProcess;
  agent: ManagedProcess;
  healthPort: number;
  stop(): Promise<void>;
}

/** A port nothing listens on, for the CLIs' port flags (they refuse 0). */
export const freePort = unusedLoopbackPort;

export function spawnNode(name: string, script: string, args: string[], logPath: string, nodeArgs: string[] = [], env: NodeJS.ProcessEnv = process.env, prefix: readonly string[] = []): ManagedProcess {
  const command = [...prefix, process.execPath, ...shebangNodeArgs(script), ...nodeArgs, script, ...args];
  return spawnExecutable(name, command[0]!, command.slice(1), logPath, env);
}

/** Runs `file` directly (no shell), standard output and error appended to `logPath`. */
export function spawnExecutable(name: string, file: string, args: string[], logPath: string, env: NodeJS.ProcessEnv = process.env): ManagedProcess {
  const fd = openSync(logPath, 'a');
  const child = spawn(file, args, { stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  let spawnError: Error | undefined;
  // A failed spawn (ENOENT, EACCES) is also emitted as 'error': without a listener it would crash the bench.
  child.on('error', (err) => (spawnError ??= err));
  if (child.pid === undefined) throw new Error(`could not start ${name} (${file})${spawnError ? `: ${spawnError.message}` : ''}`);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  return { name, pid: child.pid, logPath, child, exited };
}

/**
 * SIGTERM, and again after `secondSignalMs` when given (the agent drains on
 * the first and stops on the second, like upstream); SIGKILL after `graceMs`.
 * A clean exit matters: --cpu-prof writes the profile only then.
 */
export async function stopProcess(p: ManagedProcess, graceMs = 10_000, secondSignalMs?: number): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  let second: NodeJS.Timeout | undefined;
  if (secondSignalMs !== undefined) second = setTimeout(() => p.child.kill('SIGTERM'), secondSignalMs);
  const timedOut = await Promise.race([
    p.exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
  ]);
  clearTimeout(timer);
  clearTimeout(second);
  if (timedOut) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

function getStatus(port: number, urlPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.setTimeout(1_000, () => req.destroy());
  });
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

async function waitUntil(what: string, check: () => Promise<boolean>, procs: ManagedProcess[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const p of procs) {
      if (p.child.exitCode !== null || p.child.signalCode !== null) {
        throw new Error(`${p.name} exited (${p.child.exitCode ?? p.child.signalCode}) while waiting for ${what}; last log lines:\n${tail(p.logPath)}`);
      }
    }
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last log lines:\n${procs.map((p) => `[${p.name}]\n${tail(p.logPath)}`).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The TCP ports one server and one agent listen on, on loopback. */
export interface LoopbackDaemonPorts {
  agentPort: number;
  healthPort: number;
  adminPort: number;
  agentHealthPort: number;
  agentAdminPort: number;
}

export async function loopbackDaemonPorts(): Promise<LoopbackDaemonPorts> {
  return { agentPort: await freePort(), healthPort: await freePort(), adminPort: await freePort(), agentHealthPort: await freePort(), agentAdminPort: await freePort() };
}

/** A server on loopback with a unix-socket frontend. Upstream flags only (upstream-protocol.md §6.1): the same for both implementations. */
export function loopbackServerFlags(mode: TunnelMode, udsPath: string, ports: LoopbackDaemonPorts, pki: PkiPaths): string[] {
  return [
    `--mode=${mode}`,
    `--uds-name=${udsPath}`,
    '--delete-existing-uds-file=true',
    '--server-port=0',
    `--agent-port=${ports.agentPort}`,
    '--agent-bind-address=127.0.0.1',
    `--health-port=${ports.healthPort}`,
    '--health-bind-address=127.0.0.1',
    `--admin-port=${ports.adminPort}`,
    `--cluster-cert=${pki.serverCertPath}`,
    `--cluster-key=${pki.serverKeyPath}`,
  ];
}

/** An agent of that server. Upstream flags only (upstream-protocol.md §7.1). */
export function loopbackAgentFlags(ports: LoopbackDaemonPorts, pki: PkiPaths): string[] {
  return [
    `--ca-cert=${pki.caCertPath}`,
    '--proxy-server-host=127.0.0.1',
    `--proxy-server-port=${ports.agentPort}`,
    `--health-server-port=${ports.agentHealthPort}`,
    `--admin-server-port=${ports.agentAdminPort}`,
  ];
}

/**
 * Starts server and agent for `mode` and waits until the server reports the
 * agent ready. The CLIs refuse port 0, so ports come from `freePort`, which
 * another process can take before ours binds (tests run in parallel): a start
 * that fails with EADDRINUSE is retried with fresh ports.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startClusterOnce(options);
    } catch (err) {
      if (attempt >= 3 || !String((err as Error).message).includes('EADDRINUSE')) throw err;
    }
  }
}

async function startClusterOnce(options: ClusterOptions): Promise<Cluster> {
  const { mode, dir, pki, upstream } = options;
  // Ours and upstream's run side by side: their sockets, logs and ids must not collide.
  const tag = upstream ? `upstream-${mode}` : mode;
  const who = upstream ? `upstream ${mode}` : mode;
  const udsPath = path.join(dir, `konnectivity-${tag}.socket`);
  const ports = await loopbackDaemonPorts();
  const v = options.verbosity === undefined ? [] : [`-v=${options.verbosity}`];
  const serverFlags = [...loopbackServerFlags(mode, udsPath, ports, pki), '--server-count=1', ...v, ...(options.tokenAuth?.serverFlags ?? [])];
  const agentFlags = [...loopbackAgentFlags(ports, pki), `--agent-id=bench-agent-${tag}`, '--sync-interval=100ms', ...v, ...(options.tokenAuth?.agentFlags ?? [])];
  const prof = (name: string): string[] => [
    ...(options.nodeArgs ?? []),
    ...(options.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, `--cpu-prof-name=${name}-${mode}.cpuprofile`] : []),
  ];
  const diagnostic = options.frontendBufferLimit !== undefined;
  // A compiled layout has no sources next to its shims: a test's KONNECTIVITY_TS_FROM_SOURCE=1 must not reach them.
  const env = options.code.compiled ? Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'KONNECTIVITY_TS_FROM_SOURCE')) : process.env;
  const serverLog = path.join(dir, `server-${tag}.log`);
  const server = upstream
    ? spawnExecutable(`upstream server (${mode})`, upstream.serverPath, [...serverFlags, ...(upstream.serverArgs ?? [])], serverLog, env)
    : spawnNode(
        `server (${mode})`,
        diagnostic ? fileURLToPath(new URL('../server-entry.ts', import.meta.url)) : path.join(options.code.binDir, 'konnectivity-server'),
        [...serverFlags, ...(options.serverArgs ?? [])],
        serverLog,
        prof('server'),
        diagnostic ? { ...env, KONNECTIVITY_BENCH_CODE: options.code.codeDir, KONNECTIVITY_BENCH_FRONTEND_BUFFER_LIMIT: String(options.frontendBufferLimit) } : env,
        options.commandPrefix?.server,
      );
  const procs = [server];
  try {
    await waitUntil(`the ${who} server's health port`, async () => (await getStatus(ports.healthPort, '/healthz')) === 200 && existsSync(udsPath), procs, options.commandPrefix?.server ? 120_000 : 20_000);
    const agentLog = path.join(dir, `agent-${tag}.log`);
    const agent = upstream
      ? spawnExecutable(`upstream agent (${mode})`, upstream.agentPath, [...agentFlags, ...(upstream.agentArgs ?? [])], agentLog, env)
      : spawnNode(`agent (${mode})`, path.join(options.code.binDir, 'konnectivity-agent'), [...agentFlags, ...(options.agentArgs ?? [])], agentLog, prof('agent'), env, options.commandPrefix?.agent);
    procs.push(agent);
    await waitUntil(`the ${who} agent to connect`, async () => (await getStatus(ports.healthPort, '/readyz')) === 200, procs, options.commandPrefix ? 120_000 : 20_000);
    return {
      mode,
      upstream: upstream !== undefined,
      udsPath,
      server,
      agent,
      healthPort: ports.healthPort,
      async stop() {
        // Agent first, so the server does not log a lost agent as an error mid-profile.
        // Both agents drain on the first signal and stop on the second.
        await stopProcess(agent, 10_000, 300);
        await stopProcess(server);
      },
    };
  } catch (err) {
    await Promise.all(procs.map((p) => stopProcess(p, 2_000)));
    throw err;
  }
}
