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
 * built at once (see `canDeferFields`).
 */
import { isoTimestampAt, jsonLogLine, type LogFields, type SerializedBase } from './json-log-line.ts';

export class DeferredLogLine {
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

/** True when every field value is a primitive, so the line built later equals the line built now. */
export function canDeferFields(fields: LogFields | undefined): boolean {
  if (fields === undefined) return true;
  for (const key in fields) {
    const value = fields[key];
    if (typeof value === 'object' && value !== null) return false;
  }
  return true;
}
