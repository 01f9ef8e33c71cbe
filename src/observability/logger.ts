/**
 * Structured logger with klog-style verbosity. One JSON object per line when
 * stderr is not a terminal (production), a readable line when it is. Call
 * sites on hot paths check `enabled(level)` first so no strings are built
 * for messages that would be dropped.
 */
import { DeferredLogLine } from './deferred-log-line.ts';
import { isoTimestampAt, serializeBase, valueJson, type LogFields, type SerializedBase } from './json-log-line.ts';

export type { LogFields } from './json-log-line.ts';

export interface Logger {
  /**
   * True when messages at klog verbosity `level` are written. Verbosity -1
   * keeps errors only (the quickstart's quiet mode).
   */
  enabled(level: number): boolean;
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  /** Verbose info, written when -v >= level (klog V(level).Info). */
  v(level: number, msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/** klog severities our levels map to: info = INFO, warn = WARNING, error = ERROR. */
export type LogSeverity = 'info' | 'warn' | 'error';

/** One destination of log lines (stderr, a --log-file, ...), with its own format. */
export interface LogSink {
  readonly format: 'json' | 'text';
  write(line: string, severity: LogSeverity): void;
  /** A json sink that writes in batches may take a line unbuilt and build it with its batch (deferred-log-line.ts). */
  writeDeferred?(line: DeferredLogLine, severity: LogSeverity): void;
}

export interface LoggerOptions {
  verbosity: number;
  format?: 'json' | 'text';
  write?: (line: string) => void;
  component?: string;
  /** Several destinations (replaces format/write): see klog-output.ts for the daemons' klog flags. */
  sinks?: readonly LogSink[];
}

class StructuredLogger implements Logger {
  private readonly verbosity: number;
  private readonly sinks: readonly LogSink[];
  private readonly base: LogFields;
  private readonly serializedBase: SerializedBase;

  constructor(options: LoggerOptions, base: LogFields) {
    this.verbosity = options.verbosity;
    if (options.sinks) {
      this.sinks = options.sinks;
    } else {
      const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
      this.sinks = [{ format: options.format ?? (process.stderr.isTTY ? 'text' : 'json'), write }];
    }
    this.base = base;
    this.serializedBase = serializeBase(base);
  }

  enabled(level: number): boolean {
    return level <= this.verbosity;
  }
  error(msg: string, fields?: LogFields): void {
    this.emit('error', 0, msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    if (this.verbosity >= 0) this.emit('warn', 0, msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    if (this.verbosity >= 0) this.emit('info', 0, msg, fields);
  }
  v(level: number, msg: string, fields?: LogFields): void {
    if (level <= this.verbosity) this.emit('info', level, msg, fields);
  }
  child(fields: LogFields): Logger {
    return new StructuredLogger({ verbosity: this.verbosity, sinks: this.sinks }, { ...this.base, ...fields });
  }

  private emit(level: LogSeverity, v: number, msg: string, fields?: LogFields): void {
    const timeMs = Date.now();
    let line: DeferredLogLine | undefined;
    let text: string | undefined;
    for (const sink of this.sinks) {
      if (sink.format === 'json') {
        line ??= new DeferredLogLine(timeMs, level, v, msg, this.serializedBase, fields);
        if (line.deferrable && sink.writeDeferred !== undefined) sink.writeDeferred(line, level);
        else sink.write(line.text(), level);
      } else {
        text ??= textLine(isoTimestampAt(timeMs), level, msg, { ...this.base, ...fields });
        sink.write(text, level);
      }
    }
  }
}

function textLine(time: string, level: LogSeverity, msg: string, all: LogFields): string {
  let kv = '';
  for (const [k, val] of Object.entries(all)) {
    kv += ` ${k}=${typeof val === 'string' ? (/\s/.test(val) ? JSON.stringify(val) : val) : (valueJson(val) ?? 'undefined')}`;
  }
  return `${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${kv}`;
}

export function createLogger(options: LoggerOptions): Logger {
  return new StructuredLogger(options, options.component ? { component: options.component } : {});
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = createLogger({ verbosity: -1, write: () => {} });
