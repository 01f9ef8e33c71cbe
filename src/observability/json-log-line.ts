/**
 * One JSON log line, built as a string. At the daemons' default -v=4 a dial
 * logs two lines in the server and three in the agent. Building each line as
 * an object (fixed keys, the logger's base fields spread in, then the call's
 * fields) and stringifying it measured about 6 % of the server's and the
 * agent's CPU per HTTP-CONNECT dial, in two interleaved A/B runs whose noise
 * is of the same order (docs/benchmarks.md, session 15); concatenating
 * the pieces does not create the object, and the base fields are serialized
 * once per logger.
 *
 * The output is what JSON.stringify gives for that object, key order
 * included, with bigints as decimal strings and Errors as their message at
 * any depth (test/json-log-line.test.ts compares the two). One exception: a
 * field with an integer-like name ("0") stays among the call's fields, where
 * the whole-line object would move it to the front. A value JSON cannot hold
 * (a cycle, a throwing toJSON) becomes a "[not serializable: …]" note: a log
 * call never throws into the code that logs.
 */
export type LogFields = Record<string, unknown>;

/** JSON.stringify replacer: bigints as decimal strings, Errors as their message. */
function logJsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return value.message;
  return value;
}

/** The keys every line starts with; a field of the same name replaces the value in place. */
const FIXED_KEYS = new Set(['time', 'level', 'v', 'msg']);

/** A logger's base fields, serialized once: `,"key":value` for each, in order. */
export interface SerializedBase {
  readonly fields: LogFields;
  readonly json: string;
}

export function serializeBase(fields: LogFields): SerializedBase {
  let json = '';
  for (const key in fields) json += memberJson(key, fields[key]);
  return { fields, json };
}

/** `,"key":value`, or nothing when JSON.stringify would leave the key out. */
function memberJson(key: string, value: unknown): string {
  const json = valueJson(value);
  return json === undefined ? '' : `,${JSON.stringify(key)}:${json}`;
}

/** A value as JSON, or undefined when JSON.stringify would leave its key out. Never throws. */
export function valueJson(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'bigint':
      return `"${value}"`;
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      if (value === null) return 'null';
      if (value instanceof Error) return JSON.stringify(value.message);
      return objectJson(value);
  }
}

/** A log call must never throw: a value JSON cannot hold (a cycle, a throwing toJSON) is logged as a note instead. */
function objectJson(value: unknown): string | undefined {
  try {
    return JSON.stringify(value, logJsonReplacer);
  } catch (err) {
    const reason = (err instanceof Error ? err.message : String(err)).split('\n', 1)[0];
    return JSON.stringify(`[not serializable: ${reason}]`);
  }
}

export function jsonLogLine(time: string, level: string, v: number, msg: string, base: SerializedBase, fields: LogFields | undefined): string {
  let line = `{"time":"${time}","level":"${level}","v":${v},"msg":${JSON.stringify(msg)}${base.json}`;
  if (fields !== undefined) {
    for (const key in fields) {
      // A field named like a fixed or base key keeps that key's place in the object; rare, so take the slow path.
      if (FIXED_KEYS.has(key) || Object.hasOwn(base.fields, key)) return jsonLogLineViaObject(time, level, v, msg, base.fields, fields);
      line += memberJson(key, fields[key]);
    }
  }
  return `${line}}`;
}

/** The same line through an object and JSON.stringify: the reference, and the path for colliding keys. */
export function jsonLogLineViaObject(time: string, level: string, v: number, msg: string, base: LogFields, fields: LogFields | undefined): string {
  const line: LogFields = { time, level, v, msg, ...base, ...fields };
  try {
    return JSON.stringify(line, logJsonReplacer);
  } catch {
    // As in jsonLogLine: the value that cannot be serialized becomes a note, the rest of the line stays.
    let members = '';
    for (const key in line) members += memberJson(key, line[key]);
    return `{${members.slice(1)}}`;
  }
}

let isoMs = Number.NaN;
let isoText = '';
let isoSecond = Number.NaN;
/** `YYYY-MM-DDTHH:MM:SS.` of `isoSecond`. */
let isoSecondPrefix = '';

/**
 * `new Date(ms).toISOString()` for a whole number of milliseconds (callers
 * pass `Date.now()`). Date formatting was about 15k instructions
 * per dial in the agent (three lines per dial at the default -v=4, each in a
 * different millisecond), so the text up to the seconds is formatted once per
 * second and the milliseconds are appended.
 */
export function isoTimestampAt(ms: number): string {
  if (ms === isoMs) return isoText;
  isoMs = ms;
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    const full = new Date(ms).toISOString();
    // Six-digit and signed years (outside 0000-9999) have a longer form: no shortcut.
    if (full.length !== 24) {
      isoSecond = Number.NaN;
      return (isoText = full);
    }
    isoSecond = second;
    isoSecondPrefix = full.slice(0, 20);
  }
  const milli = ms - second * 1000;
  isoText = `${isoSecondPrefix}${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
  return isoText;
}
