/**
 * Runs the python grpcio peers of the interop suite. Debian's python3-grpcio
 * and python3-grpc-tools are an independent gRPC and protobuf stack (C-core
 * HTTP/2, upb/C++ protobuf), so what they accept and send is a stand-in for
 * upstream's Go peers, which cannot be run here.
 *
 * Peers print one JSON object per line on stdout ({"event": ..., ...});
 * int64 values come as decimal strings. Some read commands from stdin.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** The python that has Debian's grpcio; the first python3 on PATH (pyenv) may not. */
export const PYTHON = process.env.KONN_INTEROP_PYTHON ?? '/usr/bin/python3';
const here = path.dirname(new URL(import.meta.url).pathname);
const repoRoot = path.resolve(here, '..', '..');
export const PROTO_PATH = path.join(repoRoot, 'proto', 'konnectivity.proto');

export interface InteropEnv {
  /** Where the generated konnectivity_pb2*.py live. */
  genDir: string;
  /** The generated grpc module's source, for checking the method paths protoc derived. */
  grpcModuleSource: string;
  cleanup(): void;
}

/**
 * Checks that grpcio and grpc_tools load, then compiles proto/konnectivity.proto
 * into a fresh temp dir. Throws (never skips) when the python stack is missing.
 */
export function prepareInterop(): InteropEnv {
  const probe = spawnSync(PYTHON, ['-c', 'import grpc, grpc_tools.protoc, google.protobuf; print(grpc.__version__)'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `the interop suite needs python grpcio and grpc_tools under ${PYTHON} ` +
        `(Debian: apt-get install python3-grpcio python3-grpc-tools; .ci/run installs them; ` +
        `set KONN_INTEROP_PYTHON to use another interpreter): ${probe.error?.message ?? probe.stderr.trim()}`,
    );
  }
  const genDir = mkdtempSync(path.join(tmpdir(), 'konn-interop-gen-'));
  const protoc = spawnSync(
    PYTHON,
    ['-m', 'grpc_tools.protoc', `-I${path.dirname(PROTO_PATH)}`, `--python_out=${genDir}`, `--grpc_python_out=${genDir}`, path.basename(PROTO_PATH)],
    { encoding: 'utf8' },
  );
  if (protoc.error || protoc.status !== 0) {
    rmSync(genDir, { recursive: true, force: true });
    throw new Error(`grpc_tools.protoc failed on ${PROTO_PATH}: ${protoc.error?.message ?? protoc.stderr}`);
  }
  return {
    genDir,
    grpcModuleSource: readFileSync(path.join(genDir, 'konnectivity_pb2_grpc.py'), 'utf8'),
    cleanup: () => rmSync(genDir, { recursive: true, force: true }),
  };
}

export type PeerEvent = { event: string } & Record<string, unknown>;

/**
 * One header as grpc C-core's HPACK parser decoded it (GRPC_TRACE=chttp2_hpack_parser):
 * `kind` HDR (headers) or TRL (trailers), `side` SVR (the peer is the server)
 * or CLI (the peer is the client), `streamId` the HTTP/2 stream id.
 */
export interface WireHeader {
  streamId: number;
  kind: 'HDR' | 'TRL';
  side: 'SVR' | 'CLI';
  name: string;
  value: string;
}

const HPACK_TRACE = /hpack_parser\.cc:\d+\]\s+HTTP:(\d+):(HDR|TRL):(SVR|CLI): (:?[^:\s]+): ?(.*)$/;
const CORE_LOG = /^[DIEW]\d{4} /;

export interface PeerOptions {
  /**
   * Makes C-core log every header it decodes, so the test sees what python
   * received on the wire (content-type, te, :path), which grpcio's API hides.
   */
  traceHeaders?: boolean;
}

interface Waiter {
  match: (e: PeerEvent) => boolean;
  resolve: (e: PeerEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** A python peer process and its stream of JSON-line events. */
export class PythonPeer {
  readonly name: string;
  readonly events: PeerEvent[] = [];
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiters = new Set<Waiter>();
  private readonly consumed = new Set<PeerEvent>();
  private stderr = '';
  /** Headers python decoded (only with `traceHeaders`). */
  readonly wireHeaders: WireHeader[] = [];
  /** C-core error log lines (E...), e.g. "Error parsing metadata". */
  readonly coreErrors: string[] = [];
  private failure: Error | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(env: InteropEnv, script: string, args: readonly string[], options: PeerOptions = {}) {
    this.name = script;
    const trace = options.traceHeaders ? { GRPC_TRACE: 'chttp2_hpack_parser', GRPC_VERBOSITY: 'debug' } : {};
    this.child = spawn(PYTHON, ['-u', path.join(here, script), ...args], {
      env: { ...process.env, ...trace, KONN_INTEROP_GEN: env.genDir, PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stderr }).on('line', (line) => this.onStderr(line));
    this.child.stdin.on('error', () => {}); // the peer may exit before reading everything
    createInterface({ input: this.child.stdout }).on('line', (line) => this.onLine(line));
    // 'close', not 'exit': 'exit' can come before the last stdout/stderr lines
    // are read, and events printed just before exiting would then be missing
    // after stop() (or pending next() calls rejected although they came).
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        this.fail(new Error(`${this.name} exited (code ${code}, signal ${signal})`));
        resolve({ code, signal });
      });
    });
  }

  private onStderr(line: string): void {
    const h = HPACK_TRACE.exec(line);
    if (h) {
      this.wireHeaders.push({ streamId: Number(h[1]), kind: h[2] as WireHeader['kind'], side: h[3] as WireHeader['side'], name: h[4]!, value: h[5]! });
      return;
    }
    if (line.startsWith('E') && CORE_LOG.test(line)) this.coreErrors.push(line);
    else if (CORE_LOG.test(line)) return; // C-core debug/info noise from the trace
    this.stderr = `${this.stderr}${line}\n`.slice(-8000);
  }

  /**
   * Header blocks python decoded, as name → values, oldest first. A block is
   * a run of lines for one (stream, HDR|TRL, side); a pseudo-header after a
   * regular header starts a new block (a new request on a reused stream id).
   */
  headerBlocks(side: WireHeader['side'], kind: WireHeader['kind']): Map<string, string[]>[] {
    const blocks: Map<string, string[]>[] = [];
    let current: Map<string, string[]> | null = null;
    let last: WireHeader | null = null;
    for (const h of this.wireHeaders) {
      const sameRun = last !== null && last.streamId === h.streamId && last.kind === h.kind && last.side === h.side;
      const restart = sameRun && h.name.startsWith(':') && !last!.name.startsWith(':');
      if (!sameRun || restart) {
        current = h.side === side && h.kind === kind ? new Map() : null;
        if (current) blocks.push(current);
      }
      last = h;
      current?.set(h.name, [...(current.get(h.name) ?? []), h.value]);
    }
    return blocks;
  }

  private onLine(line: string): void {
    let event: PeerEvent;
    try {
      event = JSON.parse(line) as PeerEvent;
    } catch {
      this.stderr += `[non-JSON stdout] ${line}\n`;
      return;
    }
    this.events.push(event);
    if (event.event === 'fatal') {
      this.fail(new Error(`${this.name} failed: ${String(event.message)}`));
      return;
    }
    for (const w of this.waiters) {
      if (w.match(event)) {
        this.consumed.add(event);
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(event);
        return;
      }
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(this.withStderr(err));
    }
    this.waiters.clear();
  }

  private withStderr(err: Error): Error {
    const tail = this.stderr.trim();
    return tail ? new Error(`${err.message}\n--- ${this.name} stderr ---\n${tail}`) : err;
  }

  /**
   * The first event not yet returned by `next` that has the given name and
   * matches `where`. Events that arrived earlier count; a peer crash or exit
   * rejects.
   */
  next(event: string, where: (e: PeerEvent) => boolean = () => true, timeoutMs = 20_000): Promise<PeerEvent> {
    const match = (e: PeerEvent): boolean => e.event === event && where(e);
    const earlier = this.events.find((e) => !this.consumed.has(e) && match(e));
    if (earlier) {
      this.consumed.add(earlier);
      return Promise.resolve(earlier);
    }
    if (this.failure) return Promise.reject(this.withStderr(this.failure));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(this.withStderr(new Error(`${this.name}: no "${event}" event within ${timeoutMs} ms; events so far: ${JSON.stringify(this.events).slice(-3000)}`)));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** Sends one command line to the peer's stdin. */
  command(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /**
   * Closes stdin (peers treat EOF as "finish") and waits for the exit; kills
   * after `graceMs`. Throws when the peer did not exit 0 or printed a python
   * traceback (an exception in one of its threads). KONN_INTEROP_DEBUG=1
   * prints each peer's stderr.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    let r: { code: number | null; signal: NodeJS.Signals | null };
    try {
      r = await this.exited;
    } finally {
      clearTimeout(timer);
    }
    if (process.env.KONN_INTEROP_DEBUG) console.error(`[${this.name}] exit ${r.code} ${r.signal}\n${this.stderr}`);
    if (r.code !== 0 || this.stderr.includes('Traceback')) {
      throw this.withStderr(new Error(`${this.name} did not end cleanly (code ${r.code}, signal ${r.signal})`));
    }
  }

  get stderrText(): string {
    return this.stderr;
  }
}

/** Metadata pairs as python reported them: [[key, value], ...]. */
export function metadataValues(event: PeerEvent, key: string, field = 'metadata'): string[] {
  const pairs = event[field] as Array<[string, string]>;
  return pairs.filter(([k]) => k === key).map(([, v]) => v);
}

export function str(e: PeerEvent, key: string): string {
  const v = e[key];
  if (typeof v !== 'string') throw new Error(`event ${e.event}: field ${key} is ${JSON.stringify(v)}, not a string`);
  return v;
}

/** Protobuf varint encoding, written out independently of src/protocol for expected-bytes checks. */
export function varint(n: bigint): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

type WireField = [fieldNumber: number, value: bigint | string | Uint8Array];

/** A proto3 message from (field, value) pairs, skipping defaults: bigint → varint, string/bytes → length-delimited. */
export function encodeMessage(fields: readonly WireField[]): number[] {
  const out: number[] = [];
  for (const [no, value] of fields) {
    if (typeof value === 'bigint') {
      if (value !== 0n) out.push(...varint(BigInt(no << 3)), ...varint(value));
    } else {
      const bytes = typeof value === 'string' ? [...Buffer.from(value, 'utf8')] : [...value];
      if (bytes.length > 0) out.push(...varint(BigInt((no << 3) | 2)), ...varint(BigInt(bytes.length)), ...bytes);
    }
  }
  return out;
}

/** A Packet: `type` (omitted when 0) plus the payload submessage at `payloadField` (always present, even empty). */
export function encodePacket(type: number, payloadField: number, payload: readonly WireField[]): string {
  const inner = encodeMessage(payload);
  return Buffer.from([
    ...encodeMessage([[1, BigInt(type)]]),
    ...varint(BigInt((payloadField << 3) | 2)),
    ...varint(BigInt(inner.length)),
    ...inner,
  ]).toString('hex');
}

export const expectedBytes = {
  /** No type field at all (DIAL_REQ = 0), only the dialRequest payload. */
  dialRequest: (protocol: string, address: string, random: bigint): string => encodePacket(0, 2, [[1, protocol], [2, address], [3, random]]),
  dialResponse: (random: bigint, connectID: bigint, error = ''): string => encodePacket(1, 3, [[1, error], [2, connectID], [3, random]]),
  closeResponse: (connectID: bigint, error = ''): string => encodePacket(3, 6, [[1, error], [2, connectID]]),
  closeRequest: (connectID: bigint): string => encodePacket(2, 5, [[1, connectID]]),
  closeDial: (random: bigint): string => encodePacket(5, 7, [[1, random]]),
};
