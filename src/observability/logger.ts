/**
 * Structured logger with klog-style verbosity. One JSON object per line when
 * stderr is not a terminal (production), a readable line when it is. Call
 * sites on hot paths check `enabled(level)` first so no strings are built
 * for messages that would be dropped.
 */
export type LogFields = Record<string, unknown>;

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

export interface LoggerOptions {
  verbosity: number;
  format?: 'json' | 'text';
  write?: (line: string) => void;
  component?: string;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return value.message;
  return value;
}

class StructuredLogger implements Logger {
  private readonly verbosity: number;
  private readonly format: 'json' | 'text';
  private readonly write: (line: string) => void;
  private readonly base: LogFields;

  constructor(options: LoggerOptions, base: LogFields) {
    this.verbosity = options.verbosity;
    this.format = options.format ?? (process.stderr.isTTY ? 'text' : 'json');
    this.write = options.write ?? ((line) => process.stderr.write(line + '\n'));
    this.base = base;
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
    return new StructuredLogger({ verbosity: this.verbosity, format: this.format, write: this.write }, { ...this.base, ...fields });
  }

  private emit(level: string, v: number, msg: string, fields?: LogFields): void {
    const time = new Date().toISOString();
    if (this.format === 'json') {
      this.write(JSON.stringify({ time, level, v, msg, ...this.base, ...fields }, jsonReplacer));
      return;
    }
    const all = { ...this.base, ...fields };
    let kv = '';
    for (const [k, val] of Object.entries(all)) {
      kv += ` ${k}=${typeof val === 'string' ? (/\s/.test(val) ? JSON.stringify(val) : val) : JSON.stringify(val, jsonReplacer)}`;
    }
    this.write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${kv}`);
  }
}

export function createLogger(options: LoggerOptions): Logger {
  return new StructuredLogger(options, options.component ? { component: options.component } : {});
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = createLogger({ verbosity: -1, write: () => {} });
