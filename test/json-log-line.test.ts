/** The string-built JSON log line equals JSON.stringify of the same object, byte for byte. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isoTimestampAt, jsonLogLine, jsonLogLineViaObject, serializeBase, type LogFields } from '../src/observability/json-log-line.ts';
import { createLogger } from '../src/observability/logger.ts';

const TIME = '2026-11-24T01:02:03.456Z';
const base = { component: 'konnectivity-agent', serverID: '69810180-4a1f-4f5e-935e-b5dd8557583c' };

const cases: Array<[string, LogFields | undefined]> = [
  ['no fields', undefined],
  ['empty fields', {}],
  ['a dial', { address: '127.0.0.1:41363', random: (1n << 62n) + 12345n, connectID: 67n }],
  ['strings that need escaping', { quote: 'say "hi"', newline: 'a\nb\tc', backslash: 'C:\\x', control: '\u0001', unicode: 'grüße ✓ \u2028', empty: '' }],
  ['numbers', { int: 42, negative: -7, float: 1.5, negativeZero: -0, big: 1e21, small: 5e-324, nan: Number.NaN, inf: Number.POSITIVE_INFINITY, ninf: Number.NEGATIVE_INFINITY }],
  ['booleans, null, undefined and functions', { yes: true, no: false, nothing: null, missing: undefined, fn: () => 1, sym: Symbol('s') }],
  ['an Error', { error: new Error('dial tcp 10.0.0.1:10250: connect: connection refused') }],
  ['nested values', { list: [1, 'two', 3n, null, undefined, new Error('inner')], obj: { a: 1n, b: { c: 'd' }, e: new Error('deep') }, date: new Date(0) }],
  ['unusual keys', { 'with space': 1, 'quo"te': 2, '': 3, ünï: 5 }],
  ['a field named like a fixed key', { msg: 'overrides', v: 9, extra: 'x' }],
  ['a field named like a base key', { serverID: 'other', connectID: 1n }],
];

for (const [name, fields] of cases) {
  test(`JSON log line, ${name}: same bytes as JSON.stringify of the object`, () => {
    const fast = jsonLogLine(TIME, 'info', 3, 'dialing "endpoint"', serializeBase(base), fields);
    assert.equal(fast, jsonLogLineViaObject(TIME, 'info', 3, 'dialing "endpoint"', base, fields));
    JSON.parse(fast); // and it is JSON
  });
}

test('JSON log line: an integer-like field name stays among the call fields (a whole-line object would move it first); the content is the same', () => {
  const fields = { a: 1, '0': 4 };
  const fast = jsonLogLine(TIME, 'info', 3, 'm', serializeBase(base), fields);
  assert.match(fast, /"serverID":"[^"]+","0":4,"a":1\}$/);
  assert.deepEqual(JSON.parse(fast), JSON.parse(jsonLogLineViaObject(TIME, 'info', 3, 'm', base, fields)));
});

test('JSON log line: random field sets agree with JSON.stringify', () => {
  const keys = ['address', 'random', 'connectID', 'error', 'agentID', 'host', 'n', 'ok', 'list', 'msg', 'component', 'x y'];
  const values: unknown[] = ['127.0.0.1:1', 'a"b\\c\n', '', 0, -1.25, Number.NaN, 12345678901234567890n, 0n, true, false, null, undefined, new Error('boom'), [1n, 'x'], { k: 2n }];
  let seed = 7;
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < 500; i++) {
    const fields: LogFields = {};
    for (let j = next(6); j > 0; j--) fields[keys[next(keys.length)]!] = values[next(values.length)];
    const b = next(2) === 0 ? base : {};
    assert.equal(jsonLogLine(TIME, 'warn', 0, 'm', serializeBase(b), fields), jsonLogLineViaObject(TIME, 'warn', 0, 'm', b, fields), JSON.stringify(Object.keys(fields)));
  }
});

test('a value JSON cannot hold (a cycle, a throwing toJSON) is logged as a note; the call does not throw and the rest of the line stays', () => {
  const cycle: Record<string, unknown> = { name: 'loop' };
  cycle.self = cycle;
  const throwing = { toJSON(): never { throw new Error('no JSON for you'); } };
  for (const b of [base, { ...base, msgCount: 1 }]) {
    for (const fields of [{ address: 'a:1', state: cycle }, { address: 'a:1', state: throwing }, { msg: 'collides', state: cycle }]) {
      for (const line of [jsonLogLine(TIME, 'info', 2, 'm', serializeBase(b), fields), jsonLogLineViaObject(TIME, 'info', 2, 'm', b, fields)]) {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        assert.match(String(parsed.state), /^\[not serializable: .+\]$/, line);
        assert.equal(parsed.component, 'konnectivity-agent');
      }
    }
  }
  for (const format of ['json', 'text'] as const) {
    const lines: string[] = [];
    const logger = createLogger({ verbosity: 2, format, write: (l) => lines.push(l) });
    logger.v(2, 'still logged', { state: cycle, n: 5n });
    assert.equal(lines.length, 1, format);
    assert.match(lines[0]!, /not serializable: Converting circular structure to JSON/, format);
  }
});

test('the logger writes the string-built line: base fields of a child, then the call fields', () => {
  const lines: string[] = [];
  const logger = createLogger({ verbosity: 3, component: 'konnectivity-agent', format: 'json', write: (l) => lines.push(l) }).child({ serverID: 's1' });
  logger.v(3, 'endpoint connected', { address: '127.0.0.1:1', random: 5n, connectID: 6n });
  logger.v(4, 'dropped at -v=3');
  assert.equal(lines.length, 1);
  const parsed = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(parsed), ['time', 'level', 'v', 'msg', 'component', 'serverID', 'address', 'random', 'connectID']);
  assert.deepEqual({ ...parsed, time: undefined }, { time: undefined, level: 'info', v: 3, msg: 'endpoint connected', component: 'konnectivity-agent', serverID: 's1', address: '127.0.0.1:1', random: '5', connectID: '6' });
});

test('isoTimestampAt of the current time is that time in toISOString form', () => {
  const before = Date.now();
  const stamp = isoTimestampAt(Date.now());
  const after = Date.now();
  assert.match(stamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  const ms = Date.parse(stamp);
  assert.ok(ms >= before && ms <= after, `${stamp} not within [${before}, ${after}]`);
});

test('isoTimestampAt equals toISOString in every millisecond around second, minute, day and year boundaries, in any order', () => {
  const starts = [0, 999, Date.UTC(2026, 10, 24, 23, 59, 59, 990), Date.UTC(2026, 11, 31, 23, 59, 59, 995), Date.UTC(9999, 11, 31, 23, 59, 59, 998), -1500];
  for (const start of starts) {
    for (let ms = start - 20; ms < start + 1020; ms++) assert.equal(isoTimestampAt(ms), new Date(ms).toISOString(), `at ${ms}`);
  }
  // Back and forth between seconds: the cached second must not leak into another one.
  for (const ms of [1_000_000_500, 2_000_000_001, 1_000_000_999, 1_000_000_500, 5, 1_000_000_000, 253402300800000, 1_000_000_007]) {
    assert.equal(isoTimestampAt(ms), new Date(ms).toISOString(), `at ${ms}`);
  }
});
