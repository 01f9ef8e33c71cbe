/**
 * Flag value types with pflag's parsing rules and Go's error texts. A value
 * holds its current setting; `set` throws an Error whose message is exactly
 * what the Go value's `Set` would return (the flag set adds the
 * `invalid argument … for … flag:` prefix).
 */
import { formatGoStringSlice, readGoCsvRecord } from './go-csv-record.ts';
import { formatGoDurationNs, nsToMs, parseGoDurationNs } from './go-duration.ts';
import { LabelSelector } from './label-selector.ts';
import { formatGoFloat32, GoNumError, parseGoBool, parseGoFloat32, parseGoInt, parseGoUint } from './go-strconv.ts';

export interface FlagValue {
  /** pflag `Value.Type()`: shown in usage, and decides what counts as a zero default. */
  readonly type: string;
  /** Parses and stores `raw`; throws with the Go error text on bad input. */
  set(raw: string): void;
  /** Go `Value.String()` of the current setting. */
  toString(): string;
}

/**
 * Values registered through Go's `flag` package (klog's) and bridged into
 * pflag with AddGoFlag report strconv failures as Go's flag package does:
 * just "parse error" or "value out of range".
 */
function goFlagPackageError(err: unknown): Error {
  if (err instanceof GoNumError) {
    return new Error(err.reason === 'value out of range' ? 'value out of range' : 'parse error');
  }
  return err instanceof Error ? err : new Error(String(err));
}

export class StringFlagValue implements FlagValue {
  readonly type = 'string';
  value: string;
  constructor(initial: string) {
    this.value = initial;
  }
  set(raw: string): void {
    this.value = raw;
  }
  toString(): string {
    return this.value;
  }
}

export class BoolFlagValue implements FlagValue {
  readonly type = 'bool';
  value: boolean;
  readonly #goFlagPackage: boolean;
  constructor(initial: boolean, options: { goFlagPackage?: boolean } = {}) {
    this.value = initial;
    this.#goFlagPackage = options.goFlagPackage ?? false;
  }
  set(raw: string): void {
    try {
      this.value = parseGoBool(raw);
    } catch (err) {
      throw this.#goFlagPackage ? goFlagPackageError(err) : err;
    }
  }
  toString(): string {
    return String(this.value);
  }
}

/** pflag `int`: strconv.ParseInt(s, 0, 64), so 0x/0o/0b prefixes and `_` are accepted. */
export class IntFlagValue implements FlagValue {
  readonly type = 'int';
  value: number;
  constructor(initial: number) {
    this.value = initial;
  }
  set(raw: string): void {
    this.value = Number(parseGoInt(raw, 0, 64));
  }
  toString(): string {
    return String(this.value);
  }
}

/** Go flag package `uint64` (klog's log_file_max_size). */
export class GoUint64FlagValue implements FlagValue {
  readonly type = 'uint64';
  value: bigint;
  constructor(initial: bigint) {
    this.value = initial;
  }
  set(raw: string): void {
    try {
      this.value = parseGoUint(raw, 0, 64);
    } catch (err) {
      throw goFlagPackageError(err);
    }
  }
  toString(): string {
    return this.value.toString();
  }
}

export class Float32FlagValue implements FlagValue {
  readonly type = 'float32';
  value: number;
  constructor(initial: number) {
    this.value = Math.fround(initial);
  }
  set(raw: string): void {
    this.value = parseGoFloat32(raw);
  }
  toString(): string {
    return formatGoFloat32(this.value);
  }
}

export class DurationFlagValue implements FlagValue {
  readonly type = 'duration';
  nanoseconds: bigint;
  constructor(initialNs: bigint) {
    this.nanoseconds = initialNs;
  }
  get milliseconds(): number {
    return nsToMs(this.nanoseconds);
  }
  set(raw: string): void {
    this.nanoseconds = parseGoDurationNs(raw);
  }
  toString(): string {
    return formatGoDurationNs(this.nanoseconds);
  }
}

/**
 * pflag `[]string`: each occurrence is read as one CSV record; the first
 * occurrence replaces the default, later ones append.
 */
export class StringSliceFlagValue implements FlagValue {
  readonly type = 'stringSlice';
  value: string[];
  #changed = false;
  constructor(initial: readonly string[]) {
    this.value = [...initial];
  }
  set(raw: string): void {
    const parsed = raw === '' ? [] : readGoCsvRecord(raw);
    this.value = this.#changed ? [...this.value, ...parsed] : parsed;
    this.#changed = true;
  }
  toString(): string {
    return formatGoStringSlice(this.value);
  }
}

/**
 * A Kubernetes label selector (`--lease-label-selector`); malformed selectors
 * are rejected while parsing the command line, as upstream does.
 */
export class LabelSelectorFlagValue implements FlagValue {
  readonly type = 'labelSelector';
  value: LabelSelector;
  constructor(initial: string) {
    this.value = LabelSelector.parse(initial);
  }
  set(raw: string): void {
    this.value = LabelSelector.parse(raw);
  }
  toString(): string {
    return this.value.toString();
  }
}
