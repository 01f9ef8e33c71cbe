/**
 * Where the daemons' logs go, from klog's flags, as klog v2 decides it
 * (k8s.io/klog/v2 `output`, `createFiles`, `syncBuffer.rotateFile`):
 *
 * - `--logtostderr=true` (the default): standard error only; the file flags
 *   are ignored. `--legacy-stderr-threshold-behavior=false` makes
 *   `--stderrthreshold` filter standard error here too.
 * - `--logtostderr=false`: files, plus standard error for lines at or above
 *   `--stderrthreshold` (default ERROR), or every line at or above
 *   `--alsologtostderrthreshold` with `--alsologtostderr`.
 *   - `--log-file=PATH`: every severity goes to that one file, opened for
 *     appending at startup. Past `--log-file-max-size` MB (0 = unlimited) it is
 *     truncated and started again (klog's os.Create on rotation).
 *   - else one file per severity in `--log-dir` (default: the OS temp dir),
 *     named `PROGRAM.HOST.USER.log.SEVERITY.YYYYMMDD-hhmmss.PID` with a
 *     `PROGRAM.SEVERITY` symlink beside it, each created on its first line.
 *     The INFO file gets every line, WARNING warnings and errors, ERROR errors
 *     (`--one-output`: each line only in its own severity's file). Past the size
 *     limit a new timestamped file is started.
 *
 * Differences, on purpose: files hold the same JSON lines as standard error
 * (one object per line), and the header klog writes when it opens a file is one
 * JSON line too (`"msg":"log file created"`, omitted with `--skip-log-headers`),
 * so a file stays valid JSON lines. Lines are written synchronously (klog
 * buffers and flushes every 5 s), so nothing is lost when the process dies.
 * A file that cannot be opened at startup is an error (klog exits with status 2
 * on its first log line); one that fails later falls back to standard error.
 */
import { closeSync, fstatSync, openSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KlogOptions } from '../flags/klog-flags.ts';
import { BatchedLineWriter } from './batched-line-writer.ts';
import type { DeferredLogLine } from './deferred-log-line.ts';
import { createLogger, type LogSeverity, type LogSink, type Logger } from './logger.ts';

const SEVERITY: Readonly<Record<LogSeverity, number>> = { info: 0, warn: 1, error: 2 };
const SEVERITY_NAME = ['INFO', 'WARNING', 'ERROR'] as const;

export interface KlogOutputEnv {
  /** Standard error: one line, no newline; `severity` lets a buffering writer flush errors at once. */
  readonly stderr: (line: string, severity?: LogSeverity) => void;
  /** Standard error, for a line built when it is written (a batching writer); without it lines are built at once. */
  readonly stderrDeferred?: (line: DeferredLogLine, severity: LogSeverity) => void;
  readonly stderrIsTTY: boolean;
  readonly now?: () => Date;
  readonly hostname?: string;
  readonly userName?: string;
  readonly pid?: number;
}

export interface KlogOutput {
  readonly sinks: readonly LogSink[];
  /** Closes the open log files. */
  close(): void;
}

type KlogFileOptions = Pick<KlogOptions, 'logFileMaxSizeMb' | 'skipLogHeaders'>;

/** One log file: klog's syncBuffer (size accounting, rotation, header). */
class LogFile {
  private fd: number | undefined;
  private bytes = 0;
  private failed = false;
  private readonly maxBytes: number;
  /** Path for a (re)open: fixed for --log-file, a new timestamped name per file in --log-dir. */
  private readonly nextPath: (startup: boolean) => { file: string; append: boolean; link?: string };
  private readonly options: KlogFileOptions;
  private readonly env: Required<Omit<KlogOutputEnv, 'stderrIsTTY' | 'stderrDeferred'>>;
  private readonly program: string;

  constructor(
    nextPath: (startup: boolean) => { file: string; append: boolean; link?: string },
    options: KlogFileOptions,
    env: Required<Omit<KlogOutputEnv, 'stderrIsTTY' | 'stderrDeferred'>>,
    program: string,
  ) {
    this.nextPath = nextPath;
    this.options = options;
    this.env = env;
    this.program = program;
    this.maxBytes = options.logFileMaxSizeMb * 1024 * 1024;
  }

  /** Opens the file now; throws klog's error text if it cannot. */
  open(startup: boolean): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    const { file, append, link } = this.nextPath(startup);
    let fd: number;
    try {
      fd = openSync(file, append ? 'a' : 'w', 0o666);
    } catch (err) {
      throw new Error(`log: unable to create log: ${(err as Error).message}`);
    }
    this.fd = fd;
    this.bytes = append ? fstatSync(fd).size : 0;
    if (link !== undefined) {
      // PROGRAM.SEVERITY -> the current file, relative, as klog does (errors ignored, as there).
      try {
        unlinkSync(link);
      } catch {
        // not there yet
      }
      try {
        symlinkSync(path.basename(file), link);
      } catch {
        // best effort
      }
    }
    if (!this.options.skipLogHeaders) {
      const header = JSON.stringify({
        time: this.env.now().toISOString(),
        level: 'info',
        v: 0,
        msg: 'log file created',
        component: this.program,
        host: this.env.hostname,
        binary: `node ${process.version} ${process.platform}/${process.arch}`,
        pid: this.env.pid,
      });
      this.append(`${header}\n`);
    }
  }

  write(line: string): void {
    if (this.failed) {
      this.env.stderr(line);
      return;
    }
    const data = `${line}\n`;
    try {
      if (this.fd === undefined) this.open(true);
      else if (this.maxBytes > 0 && this.bytes + Buffer.byteLength(data) >= this.maxBytes) this.open(false);
      this.append(data);
    } catch (err) {
      this.failed = true;
      this.env.stderr(JSON.stringify({ time: this.env.now().toISOString(), level: 'error', v: 0, msg: 'log file write failed; logging to standard error from now on', component: this.program, error: (err as Error).message }));
      this.env.stderr(line);
    }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private append(data: string): void {
    const buf = Buffer.from(data);
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd!, buf, off);
    this.bytes += buf.length;
  }
}

function stamp(t: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${t.getFullYear()}${p(t.getMonth() + 1)}${p(t.getDate())}-${p(t.getHours())}${p(t.getMinutes())}${p(t.getSeconds())}`;
}

function defaultUserName(): string {
  try {
    return os.userInfo().username.replace(/\\/g, '_');
  } catch {
    return 'unknownuser';
  }
}

/**
 * The log sinks for a daemon's klog flags. Opens --log-file (or the INFO file
 * in --log-dir) at once, so a bad path fails startup; throws klog's message.
 */
export function klogOutput(o: KlogOptions, program: string, envIn: KlogOutputEnv): KlogOutput {
  const env = {
    stderr: envIn.stderr,
    now: envIn.now ?? (() => new Date()),
    hostname: envIn.hostname ?? os.hostname().split('.')[0] ?? 'unknownhost',
    userName: envIn.userName ?? defaultUserName(),
    pid: envIn.pid ?? process.pid,
  };
  const stderrFormat = envIn.stderrIsTTY ? 'text' : 'json';
  const stderrWrite = (line: string, sev: LogSeverity) => env.stderr(line, sev);
  const stderrDeferred = envIn.stderrDeferred;
  const stderrSink = (toStderr: (sev: LogSeverity) => boolean): LogSink => {
    const sink: LogSink = {
      format: stderrFormat,
      write: (line, sev) => {
        if (toStderr(sev)) stderrWrite(line, sev);
      },
    };
    if (stderrDeferred !== undefined) {
      sink.writeDeferred = (line, sev) => {
        if (toStderr(sev)) stderrDeferred(line, sev);
      };
    }
    return sink;
  };

  if (o.logtostderr) {
    const threshold = o.legacyStderrThresholdBehavior ? 0 : o.stderrthreshold;
    return { sinks: [stderrSink((sev) => SEVERITY[sev] >= threshold)], close() {} };
  }

  const toStderr = (sev: LogSeverity): boolean =>
    (o.alsologtostderr && SEVERITY[sev] >= o.alsologtostderrthreshold) || SEVERITY[sev] >= o.stderrthreshold;
  const sinks: LogSink[] = [stderrSink(toStderr)];
  const files: LogFile[] = [];

  if (o.logFile !== '') {
    const file = new LogFile((startup) => ({ file: o.logFile, append: startup }), o, env, program);
    file.open(true);
    files.push(file);
    sinks.push({ format: 'json', write: (line) => file.write(line) });
  } else {
    const dir = o.logDir !== '' ? o.logDir : os.tmpdir();
    const perSeverity = SEVERITY_NAME.map((tag) => {
      const f = new LogFile(() => {
        const name = `${program}.${env.hostname}.${env.userName}.log.${tag}.${stamp(env.now())}.${env.pid}`;
        return { file: path.join(dir, name), append: false, link: path.join(dir, `${program}.${tag}`) };
      }, o, env, program);
      files.push(f);
      return f;
    });
    perSeverity[0]!.open(true);
    sinks.push({
      format: 'json',
      write: (line, sev) => {
        const s = SEVERITY[sev];
        if (o.oneOutput) perSeverity[s]!.write(line);
        else for (let i = s; i >= 0; i--) perSeverity[i]!.write(line);
      },
    });
  }
  return { sinks, close: () => { for (const f of files) f.close(); } };
}

/** The daemons' logger: klog's flags decide the outputs; throws if a log file cannot be opened. */
export function createDaemonLogger(o: KlogOptions, component: string): Logger {
  const stderr = new BatchedLineWriter((text) => process.stderr.write(text));
  process.on('exit', () => stderr.flush());
  const toStderr = (line: string | DeferredLogLine, severity?: LogSeverity): void => stderr.write(line, severity === 'error');
  const out = klogOutput(o, component, {
    stderr: toStderr,
    stderrDeferred: toStderr,
    stderrIsTTY: process.stderr.isTTY === true,
  });
  return createLogger({ verbosity: o.v, component, sinks: out.sinks });
}
