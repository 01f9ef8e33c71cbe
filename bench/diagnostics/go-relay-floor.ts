/**
 * Builds and starts the Go relay floor (go-relay-floor/) for
 * `npm run bench:relay-floor`: the same hops as our HTTP-CONNECT tunnel, in
 * Go with grpc-go, the runtime upstream is written in. It answers "what
 * would a Go implementation reach on this machine", which the issue's
 * upstream reference figures (measured on another machine) cannot.
 *
 * Optional: without a Go toolchain and grpc-go in a GOPATH it reports why
 * and the floor runs without it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SOURCE_DIR = fileURLToPath(new URL('./go-relay-floor/', import.meta.url));
/** Where Debian's golang-*-dev packages put their sources. */
const DEBIAN_GOPATH = '/usr/share/gocode';
const INSTALL_HINT = 'apt-get install golang-go golang-google-grpc-dev';

export interface GoRelayFloor {
  /** The "server"'s HTTP CONNECT unix socket. */
  uds: string;
  /** The "server"'s gRPC frontend (ProxyService, h2c) unix socket. */
  grpcUds: string;
  /** Server and agent. */
  pids: number[];
  /** `go version` of the toolchain that built it. */
  goVersion: string;
}

export interface GoRelayFloorOptions {
  dir: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  /** Child processes are added here so the caller stops them with its own. */
  children: ChildProcess[];
  /** Bytes per socket read in both relays; upstream reads 4 KiB, Go's io.Copy 32 KiB. */
  readBytes: number;
}

function goEnv(): NodeJS.ProcessEnv {
  const gopath = process.env['GOPATH'] ?? (existsSync(DEBIAN_GOPATH) ? DEBIAN_GOPATH : undefined);
  return { ...process.env, GO111MODULE: 'off', ...(gopath ? { GOPATH: gopath } : {}) };
}

/** Builds the relay; returns the binary, or why it could not be built. */
function build(dir: string): { binary: string; goVersion: string } | { skipped: string } {
  const version = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (version.error || version.status !== 0) return { skipped: `no Go toolchain on PATH (${INSTALL_HINT})` };
  const binary = path.join(dir, 'go-relay-floor');
  const result = spawnSync('go', ['build', '-o', binary, '.'], { cwd: SOURCE_DIR, encoding: 'utf8', env: goEnv() });
  if (result.status !== 0) {
    const firstLine = (result.stderr || result.stdout || String(result.error)).trim().split('\n')[0]!.replace(/ in any of:$/, '');
    return { skipped: `go build failed (${firstLine}; needs grpc-go in GOPATH: ${INSTALL_HINT})` };
  }
  return { binary, goVersion: version.stdout.trim() };
}

/** Resolves with each stdout line of `child` in turn. */
function lineReader(child: ChildProcess, name: string): () => Promise<string> {
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return async () => {
    const next = await lines.next();
    if (next.done) throw new Error(`${name} exited before it was ready (exit ${child.exitCode})`);
    return next.value.trim();
  };
}

export async function startGoRelayFloor(options: GoRelayFloorOptions): Promise<GoRelayFloor | { skipped: string }> {
  const built = build(options.dir);
  if ('skipped' in built) return built;
  const uds = path.join(options.dir, 'go-relay.sock');
  const grpcUds = path.join(options.dir, 'go-relay-grpc.sock');
  const server = spawn(built.binary, ['-role', 'server', '-read-bytes', String(options.readBytes), '-uds', uds, '-grpc-uds', grpcUds, '-cert', options.certPath, '-key', options.keyPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  options.children.push(server);
  const serverLine = lineReader(server, 'go relay server');
  const port = await serverLine();
  const agent = spawn(built.binary, ['-role', 'agent', '-read-bytes', String(options.readBytes), '-server-port', port, '-ca', options.caPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  options.children.push(agent);
  // "ready" comes once the agent's stream is open and the unix socket listens.
  const ready = await serverLine();
  if (ready !== 'ready') throw new Error(`go relay server: expected "ready", got ${JSON.stringify(ready)}`);
  return { uds, grpcUds, pids: [server.pid!, agent.pid!], goVersion: built.goVersion };
}
