/**
 * The klog flags both upstream binaries expose. Their main() registers
 * klog's Go-flag-package flags, renames `_` to `-`, forces `-v` to 4 and
 * bridges them into pflag, so:
 * - names are hyphenated only (`--log-file`; `--log_file` is an unknown flag),
 * - `v` is the only one-letter flag, hence reachable as `-v` and `--v`,
 * - bool/uint64 errors use the Go flag package's terse "parse error".
 *
 * The values are recorded for the logger; klog semantics beyond the flag
 * values (file rotation etc.) are the logger's business.
 */
import { BoolFlagValue, GoUint64FlagValue, StringFlagValue, type FlagValue } from './flag-values.ts';
import type { FlagSet } from './flag-set.ts';
import { parseGoInt } from './go-strconv.ts';

export interface VmodulePattern {
  /** File pattern (glob unless it has no `*?[]\`), matched against the source file name. */
  readonly pattern: string;
  readonly level: number;
}

export interface KlogOptions {
  /** `-v`: log verbosity. Upstream forces the default to 4. */
  readonly v: number;
  readonly vmodule: readonly VmodulePattern[];
  readonly logtostderr: boolean;
  readonly alsologtostderr: boolean;
  readonly logDir: string;
  readonly logFile: string;
  readonly logFileMaxSizeMb: number;
  /** Severity number: 0 INFO, 1 WARNING, 2 ERROR, 3 FATAL. */
  readonly stderrthreshold: number;
  readonly addDirHeader: boolean;
  readonly skipHeaders: boolean;
  readonly skipLogHeaders: boolean;
  readonly oneOutput: boolean;
  /** `file.go:N` or "" when unset. */
  readonly logBacktraceAt: string;
  readonly legacyStderrThresholdBehavior: boolean;
  readonly alsologtostderrthreshold: number;
}

/** klog's Level: strconv.ParseInt(s, 10, 32), errors passed through unchanged. */
export class KlogLevelValue implements FlagValue {
  readonly type = 'Level';
  value: number;
  constructor(initial: number) {
    this.value = initial;
  }
  set(raw: string): void {
    this.value = Number(parseGoInt(raw, 10, 32));
  }
  toString(): string {
    return String(this.value);
  }
}

const severityByName: ReadonlyMap<string, number> = new Map([
  ['INFO', 0],
  ['WARNING', 1],
  ['ERROR', 2],
  ['FATAL', 3],
]);

/** klog's severity: a name (any case) or a number; printed as the number. */
export class KlogSeverityValue implements FlagValue {
  readonly type = 'severity';
  value: number;
  constructor(initial: number) {
    this.value = initial;
  }
  set(raw: string): void {
    this.value = severityByName.get(raw.toUpperCase()) ?? Number(parseGoInt(raw, 10, 32));
  }
  toString(): string {
    return String(this.value);
  }
}

const vmoduleSyntax = 'syntax error: expect comma-separated list of filename=N';

/** klog's moduleSpec: `pattern=N,…`; empty items and level 0 are dropped. */
export class KlogModuleSpecValue implements FlagValue {
  readonly type = 'moduleSpec';
  value: VmodulePattern[] = [];
  set(raw: string): void {
    const patterns: VmodulePattern[] = [];
    for (const item of raw.split(',')) {
      if (item === '') continue;
      const parts = item.split('=');
      const [pattern = '', levelText = ''] = parts;
      if (parts.length !== 2 || pattern === '' || levelText === '') throw new Error(vmoduleSyntax);
      let level: number;
      try {
        level = Number(parseGoInt(levelText, 10, 32));
      } catch {
        throw new Error(vmoduleSyntax);
      }
      if (level < 0) throw new Error('negative value for vmodule level');
      if (level === 0) continue;
      patterns.push({ pattern, level });
    }
    this.value = patterns;
  }
  toString(): string {
    return this.value.map((p) => `${p.pattern}=${p.level}`).join(',');
  }
}

const traceSyntax = 'syntax error: expect file.go:234';

/** klog's traceLocation: `file.go:N` with N > 0; "" unsets it. */
export class KlogTraceLocationValue implements FlagValue {
  readonly type = 'traceLocation';
  file = '';
  line = 0;
  set(raw: string): void {
    if (raw === '') {
      this.file = '';
      this.line = 0;
      return;
    }
    const fields = raw.split(':');
    const [file = '', lineText = ''] = fields;
    if (fields.length !== 2 || !file.includes('.')) throw new Error(traceSyntax);
    let line: number;
    try {
      // strconv.Atoi: base 10, no underscores.
      line = Number(parseGoInt(lineText, 10, 64));
    } catch {
      throw new Error(traceSyntax);
    }
    if (line <= 0) throw new Error('negative or zero value for level');
    this.file = file;
    this.line = line;
  }
  toString(): string {
    return `${this.file}:${this.line}`;
  }
}

/** Upstream's forced default for `-v`. */
export const UPSTREAM_DEFAULT_VERBOSITY = 4;

/**
 * Registers the klog flags on `flags` and returns a reader for their values
 * after parsing. Help texts are our own wording.
 */
export function registerKlogFlags(flags: FlagSet, defaultVerbosity = UPSTREAM_DEFAULT_VERBOSITY): () => KlogOptions {
  const goBool = (name: string, initial: boolean, usage: string) =>
    flags.add(name, new BoolFlagValue(initial, { goFlagPackage: true }), usage);
  const goString = (name: string, usage: string) => flags.add(name, new StringFlagValue(''), usage);

  const logDir = goString('log-dir', 'If non-empty, write log files into this directory (ignored when --logtostderr=true)');
  const logFile = goString('log-file', 'If non-empty, write logs to this file (ignored when --logtostderr=true)');
  const logFileMaxSize = flags.add(
    'log-file-max-size',
    new GoUint64FlagValue(1800n),
    'Maximum size of a log file in megabytes; 0 means unlimited (ignored when --logtostderr=true)',
  );
  const logtostderr = goBool('logtostderr', true, 'Write logs to standard error instead of files');
  const alsologtostderr = goBool('alsologtostderr', false, 'Write logs to standard error as well as to files (ignored when --logtostderr=true)');
  const v = flags.add('v', new KlogLevelValue(defaultVerbosity), 'Log verbosity level', { shorthand: 'v' });
  const addDirHeader = goBool('add-dir-header', false, "If true, include the source file's directory in log headers");
  const skipHeaders = goBool('skip-headers', false, 'If true, omit header prefixes from log messages');
  const oneOutput = goBool('one-output', false, 'If true, write each log only at its own severity level, not also to lower levels (ignored when --logtostderr=true)');
  const skipLogHeaders = goBool('skip-log-headers', false, 'If true, omit the header written when a log file is opened (ignored when --logtostderr=true)');
  const stderrthreshold = flags.add(
    'stderrthreshold',
    new KlogSeverityValue(2),
    'Logs at or above this severity also go to standard error when logging to files',
  );
  const vmodule = flags.add('vmodule', new KlogModuleSpecValue(), 'Comma-separated pattern=N settings for per-file verbosity');
  const logBacktraceAt = flags.add('log-backtrace-at', new KlogTraceLocationValue(), 'Emit a stack trace when logging hits this file:line');
  // (inferred) Newer klog releases add these two; accepting them is harmless if the
  // upstream build predates them, and keeps manifests written for newer images working.
  const legacyStderrThresholdBehavior = goBool(
    'legacy-stderr-threshold-behavior',
    true,
    'If true, --stderrthreshold is ignored when --logtostderr=true (the historical behaviour)',
  );
  const alsologtostderrthreshold = flags.add(
    'alsologtostderrthreshold',
    new KlogSeverityValue(0),
    'With --alsologtostderr, only logs at or above this severity go to standard error',
  );

  return () => ({
    v: v.value,
    vmodule: vmodule.value,
    logtostderr: logtostderr.value,
    alsologtostderr: alsologtostderr.value,
    logDir: logDir.value,
    logFile: logFile.value,
    logFileMaxSizeMb: Number(logFileMaxSize.value),
    stderrthreshold: stderrthreshold.value,
    addDirHeader: addDirHeader.value,
    skipHeaders: skipHeaders.value,
    skipLogHeaders: skipLogHeaders.value,
    oneOutput: oneOutput.value,
    logBacktraceAt: logBacktraceAt.line > 0 ? logBacktraceAt.toString() : '',
    legacyStderrThresholdBehavior: legacyStderrThresholdBehavior.value,
    alsologtostderrthreshold: alsologtostderrthreshold.value,
  });
}
