/**
 * A command-line flag set with spf13/pflag's grammar, as the upstream
 * binaries (cobra commands) parse their arguments:
 *
 * - `--name=value`, `--name value`; a flag with a no-option default (every
 *   bool) takes `--name` alone and never consumes the next argument.
 * - `-x=value`, `-x value`, `-xvalue` for one-letter shorthands (`-v`, `-h`);
 *   any other single-dash word is read as a cluster of shorthands, so
 *   `-logtostderr` fails exactly as it does upstream.
 * - `--` ends flag parsing; other non-flag words are positional arguments.
 * - Errors carry pflag's wording (`unknown flag: --foo`,
 *   `invalid argument "x" for "--agent-port" flag: …`).
 */
import {
  BoolFlagValue,
  DurationFlagValue,
  Float32FlagValue,
  IntFlagValue,
  StringFlagValue,
  StringSliceFlagValue,
  type FlagValue,
} from './flag-values.ts';
import { parseGoDurationNs } from './go-duration.ts';
import { goQuote } from './go-strconv.ts';
import { OptionsError } from './options-error.ts';

export interface FlagOptions {
  /** One-letter alias reachable as `-x`. */
  shorthand?: string;
  /** Value used when the flag is given without `=value` (pflag NoOptDefVal). Bools default to "true". */
  noOptDefVal?: string;
  /** Left out of the usage text. */
  hidden?: boolean;
  /** Deprecation notice; the flag still works, is hidden, and using it yields a warning (pflag MarkDeprecated). */
  deprecated?: string;
  /** Usage section; flags without a group are listed under "Flags:". */
  group?: string;
}

export interface Flag {
  readonly name: string;
  readonly shorthand: string | undefined;
  readonly usage: string;
  readonly value: FlagValue;
  /** `value.toString()` at registration time, as pflag records it. */
  readonly defValue: string;
  readonly noOptDefVal: string | undefined;
  readonly hidden: boolean;
  readonly deprecated: string | undefined;
  readonly group: string | undefined;
  changed: boolean;
}

export interface FlagParseResult {
  /** Positional (non-flag) arguments, in order. */
  readonly args: readonly string[];
  /** Notices pflag would print to stderr, e.g. use of a deprecated flag. */
  readonly warnings: readonly string[];
  /** `--help` / `-h` was given (cobra's help flag). */
  readonly helpRequested: boolean;
}

/** Go `%q` of a single character, as pflag's shorthand errors print it. */
function goQuoteChar(c: string): string {
  if (c === "'") return "'\\''";
  const inner = goQuote(c).slice(1, -1).replace('\\"', '"');
  return `'${inner}'`;
}

/** The placeholder pflag prints after a flag name in usage (UnquoteUsage). */
function usageVarName(flag: Flag): { varname: string; usage: string } {
  const usage = flag.usage;
  const start = usage.indexOf('`');
  if (start >= 0) {
    const end = usage.indexOf('`', start + 1);
    if (end > start) {
      return { varname: usage.slice(start + 1, end), usage: usage.slice(0, start) + usage.slice(start + 1, end) + usage.slice(end + 1) };
    }
  }
  const renamed: Record<string, string> = {
    bool: '',
    float64: 'float',
    int64: 'int',
    uint64: 'uint',
    stringSlice: 'strings',
    intSlice: 'ints',
    uintSlice: 'uints',
    boolSlice: 'bools',
  };
  return { varname: renamed[flag.value.type] ?? flag.value.type, usage };
}

/** pflag's defaultIsZeroValue: zero defaults are not printed as "(default …)". */
function defaultIsZero(flag: Flag): boolean {
  switch (flag.value.type) {
    case 'bool':
      return flag.defValue === 'false';
    case 'duration':
      return flag.defValue === '0' || flag.defValue === '0s';
    case 'int': case 'int8': case 'int32': case 'int64':
    case 'uint': case 'uint8': case 'uint16': case 'uint32': case 'uint64':
    case 'count': case 'float32': case 'float64':
      return flag.defValue === '0';
    case 'string':
      return flag.defValue === '';
    case 'stringSlice': case 'intSlice': case 'stringArray':
      return flag.defValue === '[]';
    default:
      return ['false', '<nil>', '', '0'].includes(flag.defValue);
  }
}

export class FlagSet {
  readonly commandName: string;
  readonly #flags = new Map<string, Flag>();
  readonly #shorthands = new Map<string, Flag>();
  readonly #help: BoolFlagValue;

  constructor(commandName: string) {
    this.commandName = commandName;
    // Cobra adds this to every command.
    this.#help = this.add('help', new BoolFlagValue(false), `help for ${commandName}`, { shorthand: 'h' });
  }

  add<V extends FlagValue>(name: string, value: V, usage: string, options: FlagOptions = {}): V {
    if (this.#flags.has(name)) throw new Error(`flag redefined: ${name}`);
    const shorthand = options.shorthand;
    if (shorthand !== undefined) {
      if (shorthand.length !== 1) throw new Error(`shorthand ${goQuote(shorthand)} for ${name} is not one ASCII letter`);
      if (this.#shorthands.has(shorthand)) throw new Error(`unable to redefine ${goQuote(shorthand)} shorthand`);
    }
    const flag: Flag = {
      name,
      shorthand,
      usage,
      value,
      defValue: value.toString(),
      noOptDefVal: options.noOptDefVal ?? (value.type === 'bool' ? 'true' : undefined),
      hidden: options.hidden ?? options.deprecated !== undefined,
      deprecated: options.deprecated,
      group: options.group,
      changed: false,
    };
    this.#flags.set(name, flag);
    if (shorthand !== undefined) this.#shorthands.set(shorthand, flag);
    return value;
  }

  string(name: string, initial: string, usage: string, options?: FlagOptions): StringFlagValue {
    return this.add(name, new StringFlagValue(initial), usage, options);
  }

  bool(name: string, initial: boolean, usage: string, options?: FlagOptions): BoolFlagValue {
    return this.add(name, new BoolFlagValue(initial), usage, options);
  }

  int(name: string, initial: number, usage: string, options?: FlagOptions): IntFlagValue {
    return this.add(name, new IntFlagValue(initial), usage, options);
  }

  float32(name: string, initial: number, usage: string, options?: FlagOptions): Float32FlagValue {
    return this.add(name, new Float32FlagValue(initial), usage, options);
  }

  /** `initial` in Go syntax, e.g. "1h" or "0". */
  duration(name: string, initial: string, usage: string, options?: FlagOptions): DurationFlagValue {
    return this.add(name, new DurationFlagValue(parseGoDurationNs(initial)), usage, options);
  }

  stringSlice(name: string, initial: readonly string[], usage: string, options?: FlagOptions): StringSliceFlagValue {
    return this.add(name, new StringSliceFlagValue(initial), usage, options);
  }

  lookup(name: string): Flag | undefined {
    return this.#flags.get(name);
  }

  /** Whether the flag was set on the command line. */
  changed(name: string): boolean {
    return this.#flags.get(name)?.changed ?? false;
  }

  /** Parses `argv` (without the program name). Throws OptionsError of kind `parse`. */
  parse(argv: readonly string[]): FlagParseResult {
    const positional: string[] = [];
    const warnings: string[] = [];
    const rest = [...argv];
    while (rest.length > 0) {
      const arg = rest.shift() ?? '';
      if (arg.length < 2 || arg[0] !== '-') {
        positional.push(arg);
        continue;
      }
      if (arg[1] === '-') {
        if (arg.length === 2) {
          positional.push(...rest);
          break;
        }
        this.#parseLong(arg, rest, warnings);
      } else {
        this.#parseShorthands(arg, rest, warnings);
      }
    }
    return { args: positional, warnings, helpRequested: this.#help.value };
  }

  #parseLong(arg: string, rest: string[], warnings: string[]): void {
    const body = arg.slice(2);
    if (body === '' || body[0] === '-' || body[0] === '=') throw parseError(`bad flag syntax: ${arg}`);
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    const flag = this.#flags.get(name);
    if (flag === undefined) throw parseError(`unknown flag: --${name}`);
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else if (flag.noOptDefVal !== undefined) value = flag.noOptDefVal;
    else if (rest.length > 0) value = rest.shift() ?? '';
    else throw parseError(`flag needs an argument: ${arg}`);
    this.#set(flag, value, warnings);
  }

  #parseShorthands(arg: string, rest: string[], warnings: string[]): void {
    let shorthands = arg.slice(1);
    while (shorthands.length > 0) {
      const c = shorthands[0] ?? '';
      const flag = this.#shorthands.get(c);
      if (flag === undefined) throw parseError(`unknown shorthand flag: ${goQuoteChar(c)} in -${shorthands}`);
      let value: string;
      let remaining = shorthands.slice(1);
      if (shorthands.length > 2 && shorthands[1] === '=') {
        value = shorthands.slice(2);
        remaining = '';
      } else if (flag.noOptDefVal !== undefined) {
        value = flag.noOptDefVal;
      } else if (shorthands.length > 1) {
        value = shorthands.slice(1);
        remaining = '';
      } else if (rest.length > 0) {
        value = rest.shift() ?? '';
      } else {
        throw parseError(`flag needs an argument: ${goQuoteChar(c)} in -${shorthands}`);
      }
      this.#set(flag, value, warnings);
      shorthands = remaining;
    }
  }

  #set(flag: Flag, value: string, warnings: string[]): void {
    try {
      flag.value.set(value);
    } catch (err) {
      const shown = flag.shorthand !== undefined ? `-${flag.shorthand}, --${flag.name}` : `--${flag.name}`;
      const reason = err instanceof Error ? err.message : String(err);
      throw parseError(`invalid argument ${goQuote(value)} for ${goQuote(shown)} flag: ${reason}`);
    }
    flag.changed = true;
    if (flag.deprecated !== undefined) warnings.push(`Flag --${flag.name} has been deprecated, ${flag.deprecated}`);
  }

  /** The flag table of one usage section, formatted as pflag's FlagUsages does (sorted, aligned). */
  flagUsages(group?: string): string {
    const flags = [...this.#flags.values()]
      .filter((f) => !f.hidden && f.group === group)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const lines: string[] = [];
    let maxlen = 0;
    for (const flag of flags) {
      let line = flag.shorthand !== undefined ? `  -${flag.shorthand}, --${flag.name}` : `      --${flag.name}`;
      const { varname, usage } = usageVarName(flag);
      if (varname !== '') line += ' ' + varname;
      if (flag.noOptDefVal !== undefined) {
        if (flag.value.type === 'string') line += `[="${flag.noOptDefVal}"]`;
        else if (flag.value.type !== 'bool' || flag.noOptDefVal !== 'true') line += `[=${flag.noOptDefVal}]`;
      }
      line += '\0';
      maxlen = Math.max(maxlen, line.length);
      line += usage;
      if (!defaultIsZero(flag)) {
        line += flag.value.type === 'string' ? ` (default ${goQuote(flag.defValue)})` : ` (default ${flag.defValue})`;
      }
      if (flag.deprecated !== undefined) line += ` (DEPRECATED: ${flag.deprecated})`;
      lines.push(line);
    }
    return lines
      .map((line) => {
        const sidx = line.indexOf('\0');
        const text = line.slice(sidx + 1).replaceAll('\n', '\n' + ' '.repeat(maxlen + 2));
        return `${line.slice(0, sidx)} ${' '.repeat(maxlen - sidx)} ${text}\n`;
      })
      .join('');
  }

  /** Cobra-style help: description, usage line, then one table per flag group. */
  usage(description: string): string {
    const groups: string[] = [];
    for (const flag of this.#flags.values()) {
      if (flag.group !== undefined && !flag.hidden && !groups.includes(flag.group)) groups.push(flag.group);
    }
    let text = `${description}\n\nUsage:\n  ${this.commandName} [flags]\n\nFlags:\n${this.flagUsages()}`;
    for (const group of groups) text += `\n${group}:\n${this.flagUsages(group)}`;
    return text;
  }
}

function parseError(message: string): OptionsError {
  return new OptionsError('parse', message);
}
