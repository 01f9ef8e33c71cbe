/**
 * A JSON log line that is built when a batching sink writes its batch, not
 * when the code logs. At the daemons' default -v=4 a dial logs two lines in
 * the server and three in the agent, most of them before the dial is answered.
 * Built one at a time, between a dial's socket events, each line cost the
 * daemon far more than in a loop (the code and data are cold by then); built
 * together when the batch leaves, they cost less and wait for no packet.
 *
 * Only lines whose fields are all primitives are deferred: a primitive cannot
 * change between the call and the batch, so the line is the one the call
 * would have built. A line with an object, array or Error among its fields is
 * built at once (see `deferrableFieldChars`).
 */
import { isoTimestampAt, jsonLogLine, type LogFields, type SerializedBase } from './json-log-line.ts';

export class DeferredLogLine {
  /** About as many characters as the built line; what the line holds until it is built. */
  readonly estimatedChars: number;
  /** Whether the line may wait for its batch: every field is a primitive (`deferrableFieldChars`). */
  readonly deferrable: boolean;
  private built: string | undefined;
  private fields: LogFields | undefined;
  private readonly timeMs: number;
  private readonly level: string;
  private readonly v: number;
  private readonly msg: string;
  private readonly base: SerializedBase;

  constructor(timeMs: number, level: string, v: number, msg: string, base: SerializedBase, fields: LogFields | undefined) {
    this.timeMs = timeMs;
    this.level = level;
    this.v = v;
    this.msg = msg;
    this.base = base;
    this.fields = fields;
    const fieldChars = deferrableFieldChars(fields);
    this.deferrable = fieldChars >= 0;
    this.estimatedChars = LINE_OVERHEAD_CHARS + msg.length + base.json.length + Math.max(0, fieldChars);
  }

  /** The line's JSON (no newline); built on the first call, with the time of the log call. */
  text(): string {
    if (this.built === undefined) {
      this.built = jsonLogLine(isoTimestampAt(this.timeMs), this.level, this.v, this.msg, this.base, this.fields);
      this.fields = undefined;
    }
    return this.built;
  }
}

/** Time, level and v, with their keys and punctuation. */
const LINE_OVERHEAD_CHARS = 64;
/** A number, bigint, boolean or null field with its key and punctuation, short of the key's own length. */
const SCALAR_FIELD_CHARS = 24;

/**
 * The characters a line's fields add when every value is a primitive, so the
 * line built later equals the line built now; -1 when one is an object, an
 * array or an Error. Strings count at their length: a batch is bounded by what
 * its lines hold (a long address from a client counts in full), not by the
 * escaping JSON adds when the line is built.
 */
export function deferrableFieldChars(fields: LogFields | undefined): number {
  if (fields === undefined) return 0;
  let chars = 0;
  for (const key in fields) {
    const value = fields[key];
    if (typeof value === 'object' && value !== null) return -1;
    chars += key.length + (typeof value === 'string' ? value.length + 6 : SCALAR_FIELD_CHARS);
  }
  return chars;
}
