import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FlagSet } from '../src/flags/flag-set.ts';
import { readGoCsvRecord, formatGoStringSlice } from '../src/flags/go-csv-record.ts';
import {
  formatGoDurationMs,
  formatGoDurationNs,
  parseGoDurationMs,
  parseGoDurationNs,
} from '../src/flags/go-duration.ts';
import { formatGoFloat32, goQuote, parseGoBool, parseGoFloat32, parseGoInt, parseGoUint } from '../src/flags/go-strconv.ts';
import { parseGoUrlQuery } from '../src/flags/go-url-query.ts';
import { registerKlogFlags } from '../src/flags/klog-flags.ts';
import { LabelSelector } from '../src/flags/label-selector.ts';
import { OptionsError } from '../src/flags/options-error.ts';

const NS = 1n;
const US = 1000n;
const MS = 1000n * US;
const S = 1000n * MS;
const M = 60n * S;
const H = 60n * M;

function parseError(fn: () => unknown): OptionsError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof OptionsError, `expected OptionsError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected an OptionsError');
}

// --- Go durations ---

test('Go durations: accepted syntax (cases from Go time.ParseDuration)', () => {
  const cases: [string, bigint][] = [
    ['0', 0n],
    ['5s', 5n * S],
    ['30s', 30n * S],
    ['1478s', 1478n * S],
    ['-5s', -5n * S],
    ['+5s', 5n * S],
    ['-0', 0n],
    ['+0', 0n],
    ['5.0s', 5n * S],
    ['5.6s', 5n * S + 600n * MS],
    ['5.s', 5n * S],
    ['.5s', 500n * MS],
    ['1.0s', 1n * S],
    ['1.00s', 1n * S],
    ['1.004s', 1n * S + 4n * MS],
    ['1.0040s', 1n * S + 4n * MS],
    ['100.00100s', 100n * S + 1n * MS],
    ['10ns', 10n * NS],
    ['11us', 11n * US],
    ['12\u00b5s', 12n * US],
    ['12\u03bcs', 12n * US],
    ['13ms', 13n * MS],
    ['14s', 14n * S],
    ['15m', 15n * M],
    ['16h', 16n * H],
    ['3h30m', 3n * H + 30n * M],
    ['10.5s4m', 4n * M + 10n * S + 500n * MS],
    ['-2m3.4s', -(2n * M + 3n * S + 400n * MS)],
    ['1h2m3s4ms5us6ns', H + 2n * M + 3n * S + 4n * MS + 5n * US + 6n * NS],
    ['39h9m14.425s', 39n * H + 9n * M + 14n * S + 425n * MS],
    ['52763797000ns', 52763797000n],
    ['0.3333333333333333333h', 20n * M],
    ['9007199254740993ns', (1n << 53n) + 1n],
    ['9223372036854775807ns', (1n << 63n) - 1n],
    ['9223372036854775.807us', (1n << 63n) - 1n],
    ['9223372036s854ms775us807ns', (1n << 63n) - 1n],
    ['-9223372036854775808ns', -(1n << 63n)],
    ['-9223372036854775.808us', -(1n << 63n)],
    ['-9223372036s854ms775us808ns', -(1n << 63n)],
    ['-2562047h47m16.854775808s', -(1n << 63n)],
    ['0.100000000000000000000h', 6n * M],
    ['0.830103483285477580700h', 49n * M + 48n * S + 372539827n],
    ['1h', H],
    ['1m30s', 90n * S],
    ['500ms', 500n * MS],
    ['1.5h', 90n * M],
    ['-1s', -S],
  ];
  for (const [text, want] of cases) assert.equal(parseGoDurationNs(text), want, text);
});

test('Go durations: rejected with Go error texts', () => {
  const cases: [string, string][] = [
    ['', 'time: invalid duration ""'],
    ['3', 'time: missing unit in duration "3"'],
    ['-', 'time: invalid duration "-"'],
    ['s', 'time: invalid duration "s"'],
    ['.', 'time: invalid duration "."'],
    ['-.', 'time: invalid duration "-."'],
    ['.s', 'time: invalid duration ".s"'],
    ['+.s', 'time: invalid duration "+.s"'],
    ['1d', 'time: unknown unit "d" in duration "1d"'],
    ['1.5e3s', 'time: unknown unit "e" in duration "1.5e3s"'],
    ['abc', 'time: invalid duration "abc"'],
    ['1h 30m', 'time: unknown unit "h " in duration "1h 30m"'],
    ['\u0085\u0085', 'time: invalid duration "\\xc2\\x85\\xc2\\x85"'],
    ['9223372036854775810ns', 'time: invalid duration "9223372036854775810ns"'],
    ['9223372036854775808ns', 'time: invalid duration "9223372036854775808ns"'],
    ['-9223372036854775809ns', 'time: invalid duration "-9223372036854775809ns"'],
    ['9223372036854776us', 'time: invalid duration "9223372036854776us"'],
    ['3000000h', 'time: invalid duration "3000000h"'],
    ['9223372036854775.808us', 'time: invalid duration "9223372036854775.808us"'],
    ['9223372036854ms775us808ns', 'time: invalid duration "9223372036854ms775us808ns"'],
  ];
  for (const [text, message] of cases) assert.throws(() => parseGoDurationNs(text), { message }, JSON.stringify(text));
});

test('Go durations: String() formatting', () => {
  const cases: [bigint, string][] = [
    [0n, '0s'],
    [1n, '1ns'],
    [1100n, '1.1\u00b5s'],
    [2200n * US, '2.2ms'],
    [3300n * MS, '3.3s'],
    [4n * M + 5n * S, '4m5s'],
    [4n * M + 5001n * MS, '4m5.001s'],
    [5n * H + 6n * M + 7001n * MS, '5h6m7.001s'],
    [8n * M + 1n, '8m0.000000001s'],
    [H, '1h0m0s'],
    [10n * S, '10s'],
    [-S, '-1s'],
    [(1n << 63n) - 1n, '2562047h47m16.854775807s'],
    [-(1n << 63n), '-2562047h47m16.854775808s'],
  ];
  for (const [ns, text] of cases) assert.equal(formatGoDurationNs(ns), text, text);
  assert.equal(formatGoDurationMs(3_600_000), '1h0m0s');
  assert.equal(formatGoDurationMs(1500), '1.5s');
  assert.equal(formatGoDurationMs(0.5), '500\u00b5s');
});

test('Go durations: milliseconds', () => {
  assert.equal(parseGoDurationMs('1h'), 3_600_000);
  assert.equal(parseGoDurationMs('30s'), 30_000);
  assert.equal(parseGoDurationMs('1m30s'), 90_000);
  assert.equal(parseGoDurationMs('500ms'), 500);
  assert.equal(parseGoDurationMs('0'), 0);
  assert.equal(parseGoDurationMs('1.5h'), 5_400_000);
  assert.equal(parseGoDurationMs('-1s'), -1000);
  assert.equal(parseGoDurationMs('500us'), 0.5);
  assert.equal(parseGoDurationMs('1ns'), 0.000001);
});

// --- strconv ---

test('strconv.ParseInt base 0 (pflag int): prefixes, underscores, range', () => {
  const ok: [string, bigint][] = [
    ['0', 0n], ['8090', 8090n], ['-1', -1n], ['+7', 7n], ['0x1F', 31n], ['0X1f', 31n], ['0o17', 15n],
    ['017', 15n], ['0b101', 5n], ['1_000', 1000n], ['0x_1F', 31n],
    ['9223372036854775807', (1n << 63n) - 1n], ['-9223372036854775808', -(1n << 63n)],
  ];
  for (const [text, want] of ok) assert.equal(parseGoInt(text, 0, 64), want, text);
  const bad: [string, string][] = [
    ['', 'strconv.ParseInt: parsing "": invalid syntax'],
    ['abc', 'strconv.ParseInt: parsing "abc": invalid syntax'],
    ['08', 'strconv.ParseInt: parsing "08": invalid syntax'],
    ['0x', 'strconv.ParseInt: parsing "0x": invalid syntax'],
    ['1.5', 'strconv.ParseInt: parsing "1.5": invalid syntax'],
    ['_1', 'strconv.ParseInt: parsing "_1": invalid syntax'],
    ['1__0', 'strconv.ParseInt: parsing "1__0": invalid syntax'],
    ['1_', 'strconv.ParseInt: parsing "1_": invalid syntax'],
    ['-', 'strconv.ParseInt: parsing "-": invalid syntax'],
    [' 1', 'strconv.ParseInt: parsing " 1": invalid syntax'],
    ['9223372036854775808', 'strconv.ParseInt: parsing "9223372036854775808": value out of range'],
    ['-9223372036854775809', 'strconv.ParseInt: parsing "-9223372036854775809": value out of range'],
  ];
  for (const [text, message] of bad) assert.throws(() => parseGoInt(text, 0, 64), { message }, text);
  // base 10 (klog levels) has no prefixes or underscores; bitSize 32 bounds the range.
  assert.throws(() => parseGoInt('0x10', 10, 32), { message: 'strconv.ParseInt: parsing "0x10": invalid syntax' });
  assert.throws(() => parseGoInt('1_0', 10, 32), { message: 'strconv.ParseInt: parsing "1_0": invalid syntax' });
  assert.throws(() => parseGoInt('2147483648', 10, 32), { message: 'strconv.ParseInt: parsing "2147483648": value out of range' });
  assert.equal(parseGoUint('18446744073709551615', 0, 64), (1n << 64n) - 1n);
  assert.throws(() => parseGoUint('-1', 0, 64), { message: 'strconv.ParseUint: parsing "-1": invalid syntax' });
});

test('strconv.ParseBool accepts exactly Go spellings', () => {
  for (const t of ['1', 't', 'T', 'TRUE', 'true', 'True']) assert.equal(parseGoBool(t), true, t);
  for (const f of ['0', 'f', 'F', 'FALSE', 'false', 'False']) assert.equal(parseGoBool(f), false, f);
  for (const bad of ['yes', 'tRUE', 'on', '', ' true']) {
    assert.throws(() => parseGoBool(bad), { message: `strconv.ParseBool: parsing ${goQuote(bad)}: invalid syntax` }, bad);
  }
});

test('strconv.ParseFloat(s, 32) for float32 flags', () => {
  assert.equal(parseGoFloat32('1.5'), 1.5);
  assert.equal(parseGoFloat32('1e3'), 1000);
  assert.equal(parseGoFloat32('.5'), 0.5);
  assert.equal(parseGoFloat32('5.'), 5);
  assert.equal(parseGoFloat32('0x1p-2'), 0.25);
  assert.equal(parseGoFloat32('1_0.5'), 10.5);
  assert.equal(parseGoFloat32('0.1'), Math.fround(0.1));
  assert.equal(parseGoFloat32('inf'), Infinity);
  assert.equal(parseGoFloat32('-Infinity'), -Infinity);
  assert.ok(Number.isNaN(parseGoFloat32('NaN')));
  assert.throws(() => parseGoFloat32('abc'), { message: 'strconv.ParseFloat: parsing "abc": invalid syntax' });
  assert.throws(() => parseGoFloat32(''), { message: 'strconv.ParseFloat: parsing "": invalid syntax' });
  assert.throws(() => parseGoFloat32('+nan'), { message: 'strconv.ParseFloat: parsing "+nan": invalid syntax' });
  assert.throws(() => parseGoFloat32('1e39'), { message: 'strconv.ParseFloat: parsing "1e39": value out of range' });
  assert.equal(formatGoFloat32(0), '0');
  assert.equal(formatGoFloat32(Math.fround(0.1)), '0.1');
  assert.equal(formatGoFloat32(50), '50');
  assert.equal(formatGoFloat32(1e6), '1e+06');
  assert.equal(formatGoFloat32(Math.fround(1e-5)), '1e-05');
});

test('strconv.Quote', () => {
  assert.equal(goQuote('abc'), '"abc"');
  assert.equal(goQuote('a"b\\c'), '"a\\"b\\\\c"');
  assert.equal(goQuote('a\nb\t'), '"a\\nb\\t"');
  assert.equal(goQuote('\x01'), '"\\x01"');
  assert.equal(goQuote('héllo'), '"héllo"');
});

// --- CSV ([]string flags) ---

test('[]string values are read as one CSV record', () => {
  assert.deepEqual(readGoCsvRecord('a,b,c'), ['a', 'b', 'c']);
  assert.deepEqual(readGoCsvRecord('a'), ['a']);
  assert.deepEqual(readGoCsvRecord('a,,b'), ['a', '', 'b']);
  assert.deepEqual(readGoCsvRecord('"a,b",c'), ['a,b', 'c']);
  assert.deepEqual(readGoCsvRecord('"a""b"'), ['a"b']);
  assert.deepEqual(readGoCsvRecord(' a , b'), [' a ', ' b']);
  assert.throws(() => readGoCsvRecord('a"b'), { message: 'parse error on line 1, column 2: bare " in non-quoted-field' });
  assert.throws(() => readGoCsvRecord('"a"b'), { message: 'parse error on line 1, column 3: extraneous or missing " in quoted-field' });
  assert.throws(() => readGoCsvRecord('"abc'), { message: 'parse error on line 1, column 6: extraneous or missing " in quoted-field' });
  assert.equal(formatGoStringSlice([]), '[]');
  assert.equal(formatGoStringSlice(['a', 'b,c']), '[a,"b,c"]');
});

// --- flag set grammar ---

function sampleFlags() {
  const flags = new FlagSet('demo');
  const values = {
    name: flags.string('name', 'dflt', 'A string.'),
    port: flags.int('port', 8091, 'A port.'),
    on: flags.bool('on', false, 'A bool.'),
    yes: flags.bool('yes', true, 'A bool defaulting to true.'),
    wait: flags.duration('wait', '1h', 'A duration.'),
    qps: flags.float32('qps', 0, 'A float.'),
    list: flags.stringSlice('list', [], 'A list.'),
    old: flags.string('old', '', 'Old flag.', { deprecated: 'use --name' }),
    secret: flags.string('secret', '', 'Hidden flag.', { hidden: true }),
    extra: flags.bool('extra', false, 'An extension.', { group: 'Extensions' }),
  };
  const klog = registerKlogFlags(flags);
  return { flags, values, klog };
}

test('flag set: --name=value and --name value', () => {
  const { flags, values } = sampleFlags();
  const result = flags.parse(['--name=x', '--port', '9000', '--wait', '30s', '--qps=2.5']);
  assert.equal(values.name.value, 'x');
  assert.equal(values.port.value, 9000);
  assert.equal(values.wait.milliseconds, 30_000);
  assert.equal(values.qps.value, 2.5);
  assert.deepEqual(result.args, []);
  assert.equal(flags.changed('name'), true);
  assert.equal(flags.changed('on'), false);
});

test('flag set: value may contain "=" and may look like a flag when separate', () => {
  const { flags, values } = sampleFlags();
  flags.parse(['--name=a=b']);
  assert.equal(values.name.value, 'a=b');
  const again = sampleFlags();
  again.flags.parse(['--name', '--port']);
  assert.equal(again.values.name.value, '--port');
  const empty = sampleFlags();
  empty.flags.parse(['--name=']);
  assert.equal(empty.values.name.value, '');
});

test('flag set: bools take --b, --b=true|false, never the next argument', () => {
  const { flags, values } = sampleFlags();
  const result = flags.parse(['--on', 'false', '--yes=false']);
  assert.equal(values.on.value, true);
  assert.equal(values.yes.value, false);
  assert.deepEqual(result.args, ['false']);
  for (const [text, want] of [['1', true], ['t', true], ['T', true], ['TRUE', true], ['True', true], ['0', false], ['f', false], ['F', false], ['FALSE', false], ['False', false]] as const) {
    const s = sampleFlags();
    s.flags.parse([`--on=${text}`]);
    assert.equal(s.values.on.value, want, text);
  }
  const bad = parseError(() => sampleFlags().flags.parse(['--on=yes']));
  assert.equal(bad.kind, 'parse');
  assert.equal(bad.message, 'invalid argument "yes" for "--on" flag: strconv.ParseBool: parsing "yes": invalid syntax');
});

test('flag set: -v forms (klog verbosity, shorthand of a one-letter Go flag)', () => {
  for (const argv of [['-v=7'], ['-v', '7'], ['-v7'], ['--v=7'], ['--v', '7']]) {
    const { flags, klog } = sampleFlags();
    flags.parse(argv);
    assert.equal(klog().v, 7, argv.join(' '));
  }
  const defaults = sampleFlags();
  defaults.flags.parse([]);
  assert.equal(defaults.klog().v, 4);
  const negative = sampleFlags();
  negative.flags.parse(['-v=-1']);
  assert.equal(negative.klog().v, -1);
  assert.equal(parseError(() => sampleFlags().flags.parse(['-v'])).message, "flag needs an argument: 'v' in -v");
  assert.equal(parseError(() => sampleFlags().flags.parse(['--v'])).message, 'flag needs an argument: --v');
  assert.equal(
    parseError(() => sampleFlags().flags.parse(['-v=x'])).message,
    'invalid argument "x" for "-v, --v" flag: strconv.ParseInt: parsing "x": invalid syntax',
  );
  assert.equal(
    parseError(() => sampleFlags().flags.parse(['--v=0x10'])).message,
    'invalid argument "0x10" for "-v, --v" flag: strconv.ParseInt: parsing "0x10": invalid syntax',
  );
});

test('flag set: pflag error wording', () => {
  const cases: [string[], string][] = [
    [['--foo'], 'unknown flag: --foo'],
    [['--foo=bar'], 'unknown flag: --foo'],
    [['-x'], "unknown shorthand flag: 'x' in -x"],
    [['-logtostderr'], "unknown shorthand flag: 'l' in -logtostderr"],
    [['---port=1'], 'bad flag syntax: ---port=1'],
    [['--=1'], 'bad flag syntax: --=1'],
    [['--port'], 'flag needs an argument: --port'],
    [['--port=abc'], 'invalid argument "abc" for "--port" flag: strconv.ParseInt: parsing "abc": invalid syntax'],
    [['--port=1.5'], 'invalid argument "1.5" for "--port" flag: strconv.ParseInt: parsing "1.5": invalid syntax'],
    [['--port='], 'invalid argument "" for "--port" flag: strconv.ParseInt: parsing "": invalid syntax'],
    [['--wait=1x'], 'invalid argument "1x" for "--wait" flag: time: unknown unit "x" in duration "1x"'],
    [['--wait=10'], 'invalid argument "10" for "--wait" flag: time: missing unit in duration "10"'],
    [['--qps=fast'], 'invalid argument "fast" for "--qps" flag: strconv.ParseFloat: parsing "fast": invalid syntax'],
    [['--list=a"b'], 'invalid argument "a\\"b" for "--list" flag: parse error on line 1, column 2: bare " in non-quoted-field'],
    [['--logtostderr=yes'], 'invalid argument "yes" for "--logtostderr" flag: parse error'],
    [['--log-file-max-size=-1'], 'invalid argument "-1" for "--log-file-max-size" flag: parse error'],
    [['--log-file-max-size=99999999999999999999'], 'invalid argument "99999999999999999999" for "--log-file-max-size" flag: value out of range'],
    [['--log_file=x'], 'unknown flag: --log_file'],
    [['--stderrthreshold=LOUD'], 'invalid argument "LOUD" for "--stderrthreshold" flag: strconv.ParseInt: parsing "LOUD": invalid syntax'],
    [['--vmodule=a'], 'invalid argument "a" for "--vmodule" flag: syntax error: expect comma-separated list of filename=N'],
    [['--vmodule=a=x'], 'invalid argument "a=x" for "--vmodule" flag: syntax error: expect comma-separated list of filename=N'],
    [['--vmodule=a=-1'], 'invalid argument "a=-1" for "--vmodule" flag: negative value for vmodule level'],
    [['--log-backtrace-at=foo:1'], 'invalid argument "foo:1" for "--log-backtrace-at" flag: syntax error: expect file.go:234'],
    [['--log-backtrace-at=foo.go:0'], 'invalid argument "foo.go:0" for "--log-backtrace-at" flag: negative or zero value for level'],
  ];
  for (const [argv, message] of cases) {
    const err = parseError(() => sampleFlags().flags.parse(argv));
    assert.equal(err.kind, 'parse');
    assert.equal(err.usage, true);
    assert.equal(err.message, message, argv.join(' '));
  }
});

test('flag set: int flags take Go integer literals', () => {
  for (const [text, want] of [['0x1F90', 8080], ['017', 15], ['0b11', 3], ['1_024', 1024], ['-5', -5]] as const) {
    const { flags, values } = sampleFlags();
    flags.parse([`--port=${text}`]);
    assert.equal(values.port.value, want, text);
  }
});

test('flag set: []string is comma-separated and repeatable', () => {
  const { flags, values } = sampleFlags();
  flags.parse(['--list=a,b', '--list', 'c']);
  assert.deepEqual(values.list.value, ['a', 'b', 'c']);
  const reset = sampleFlags();
  reset.flags.parse(['--list=']);
  assert.deepEqual(reset.values.list.value, []);
});

test('flag set: positional arguments and "--"', () => {
  const { flags, values } = sampleFlags();
  const result = flags.parse(['pos1', '--name=x', '-', 'pos2', '--', '--port=1', 'tail']);
  assert.deepEqual(result.args, ['pos1', '-', 'pos2', '--port=1', 'tail']);
  assert.equal(values.name.value, 'x');
  assert.equal(values.port.value, 8091);
});

test('flag set: deprecated flags still work and warn; last occurrence wins', () => {
  const { flags, values } = sampleFlags();
  const result = flags.parse(['--old=x', '--name=a', '--name=b']);
  assert.equal(values.old.value, 'x');
  assert.equal(values.name.value, 'b');
  assert.deepEqual(result.warnings, ['Flag --old has been deprecated, use --name']);
});

test('flag set: --help and -h', () => {
  for (const argv of [['--help'], ['-h'], ['--name=x', '--help=true']]) {
    assert.equal(sampleFlags().flags.parse(argv).helpRequested, true, argv.join(' '));
  }
  assert.equal(sampleFlags().flags.parse(['--help=false']).helpRequested, false);
  assert.equal(sampleFlags().flags.parse([]).helpRequested, false);
});

test('flag set: klog flag values and defaults', () => {
  const { flags, klog } = sampleFlags();
  flags.parse([]);
  assert.deepEqual(klog(), {
    v: 4,
    vmodule: [],
    logtostderr: true,
    alsologtostderr: false,
    logDir: '',
    logFile: '',
    logFileMaxSizeMb: 1800,
    stderrthreshold: 2,
    addDirHeader: false,
    skipHeaders: false,
    skipLogHeaders: false,
    oneOutput: false,
    logBacktraceAt: '',
    legacyStderrThresholdBehavior: true,
    alsologtostderrthreshold: 0,
  });
  const set = sampleFlags();
  set.flags.parse([
    '--logtostderr=false', '--alsologtostderr', '--log-dir=/var/log', '--log-file=/tmp/x.log', '--log-file-max-size=0x10',
    '--stderrthreshold=warning', '--vmodule=server*=5,agent.go=0,,client=2', '--log-backtrace-at=a.go:12', '--add-dir-header',
    '--skip-headers', '--skip-log-headers', '--one-output', '--v=9',
  ]);
  const k = set.klog();
  assert.equal(k.logtostderr, false);
  assert.equal(k.alsologtostderr, true);
  assert.equal(k.logDir, '/var/log');
  assert.equal(k.logFile, '/tmp/x.log');
  assert.equal(k.logFileMaxSizeMb, 16);
  assert.equal(k.stderrthreshold, 1);
  assert.deepEqual(k.vmodule, [{ pattern: 'server*', level: 5 }, { pattern: 'client', level: 2 }]);
  assert.equal(k.logBacktraceAt, 'a.go:12');
  assert.equal(k.addDirHeader && k.skipHeaders && k.skipLogHeaders && k.oneOutput, true);
  assert.equal(k.v, 9);
  const numeric = sampleFlags();
  numeric.flags.parse(['--stderrthreshold=3']);
  assert.equal(numeric.klog().stderrthreshold, 3);
});

test('flag set: usage lists flags sorted with type, help and non-zero default; groups separately', () => {
  const { flags } = sampleFlags();
  const text = flags.usage('Demo command.');
  const lines = text.split('\n');
  assert.equal(lines[0], 'Demo command.');
  assert.ok(text.includes('Usage:\n  demo [flags]\n\nFlags:\n'));
  const line = (name: string) => lines.find((l) => new RegExp(`^ +(-\\w, )?--${name}( |$)`).test(l)) ?? '';
  assert.match(line('name'), /^ {6}--name string +A string\. \(default "dflt"\)$/);
  assert.match(line('port'), /^ {6}--port int +A port\. \(default 8091\)$/);
  assert.match(line('on'), /^ {6}--on +A bool\.$/);
  assert.match(line('yes'), /^ {6}--yes +A bool defaulting to true\. \(default true\)$/);
  assert.match(line('wait'), /^ {6}--wait duration +A duration\. \(default 1h0m0s\)$/);
  assert.match(line('qps'), /^ {6}--qps float32 +A float\.$/);
  assert.match(line('list'), /^ {6}--list strings +A list\.$/);
  assert.match(line('help'), /^ {2}-h, --help +help for demo$/);
  assert.match(line('v'), /^ {2}-v, --v Level +\S.* \(default 4\)$/);
  assert.match(line('log-file-max-size'), /--log-file-max-size uint +.*\(default 1800\)$/);
  assert.match(line('stderrthreshold'), /--stderrthreshold severity +.*\(default 2\)$/);
  assert.ok(!text.includes('--old'), 'deprecated flags are hidden');
  assert.ok(!text.includes('--secret'), 'hidden flags are hidden');
  // Every usage column starts at the same offset within a section.
  const main = text.slice(text.indexOf('Flags:\n') + 7, text.indexOf('\nExtensions:'));
  const starts = new Set(main.trimEnd().split('\n').map((l) => /^ *(-\w, )?--[\w-]+( \w+)? +/.exec(l)?.[0].length));
  assert.equal(starts.size, 1);
  assert.match(text, /\nExtensions:\n {6}--extra +An extension\.\n$/);
});

// --- label selectors ---

test('label selectors: Kubernetes syntax, canonical string, matching', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['k8s-app=konnectivity-server', 'k8s-app=konnectivity-server'],
    ['k8s-app=konnectivity-server,component=proxy', 'component=proxy,k8s-app=konnectivity-server'],
    ['a==b', 'a==b'],
    ['a != b', 'a!=b'],
    ['a', 'a'],
    ['!a', '!a'],
    ['a in (y, x)', 'a in (x,y)'],
    ['a notin (x)', 'a notin (x)'],
    ['a=', 'a='],
    ['a in ()', 'a in ()'],
    ['example.com/app=x', 'example.com/app=x'],
    ['n>3,m<10', 'm<10,n>3'],
  ];
  for (const [text, canonical] of cases) assert.equal(LabelSelector.parse(text).toString(), canonical, text);
  const sel = LabelSelector.parse('app=x,tier in (a,b),!legacy,n>3');
  assert.equal(sel.matches({ app: 'x', tier: 'b', n: '4' }), true);
  assert.equal(sel.matches({ app: 'x', tier: 'c', n: '4' }), false);
  assert.equal(sel.matches({ app: 'x', tier: 'a', n: '4', legacy: '' }), false);
  assert.equal(sel.matches({ app: 'x', tier: 'a', n: '3' }), false);
  assert.equal(LabelSelector.parse('').matches({}), true);
  assert.equal(LabelSelector.parse('a!=b').matches({}), true);
});

test('label selectors: errors', () => {
  assert.throws(() => LabelSelector.parse('*notavalidlabel*'), {
    message:
      "unable to parse requirement: <nil>: Invalid value: \"*notavalidlabel*\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
  });
  assert.throws(() => LabelSelector.parse('a=b,'), { message: "found '', expected: identifier after ','" });
  assert.throws(() => LabelSelector.parse('a=b c'), { message: "found 'c', expected: ',' or 'end of string'" });
  assert.throws(() => LabelSelector.parse('!a=b'), { message: "found '=', expected: ',' or 'end of string'" });
  assert.throws(() => LabelSelector.parse('a in (x'), { message: "unable to parse requirement: found '', expected: ',' or ')'" });
  assert.throws(() => LabelSelector.parse('a in x'), { message: "unable to parse requirement: found 'x' expected: '('" });
  assert.throws(() => LabelSelector.parse('a ! b'), { message: "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt" });
  assert.throws(() => LabelSelector.parse('a>x'), { message: "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer" });
  assert.throws(() => LabelSelector.parse('a=b*'), /unable to parse requirement: values\[0\]\[a\]: Invalid value: "b\*": a valid label must be an empty string/);
  assert.throws(() => LabelSelector.parse('=b'), { message: "found '=', expected: !, identifier, or 'end of string'" });
});

// --- URL queries (agent identifiers) ---

test('Go url.ParseQuery', () => {
  const { values, error } = parseGoUrlQuery('host=node1&ipv4=10.0.0.5&ipv4=10.0.0.6&default-route=true&x+y=a%20b+c&flag');
  assert.equal(error, undefined);
  assert.deepEqual([...values.entries()], [
    ['host', ['node1']],
    ['ipv4', ['10.0.0.5', '10.0.0.6']],
    ['default-route', ['true']],
    ['x y', ['a b c']],
    ['flag', ['']],
  ]);
  assert.equal(parseGoUrlQuery('').values.size, 0);
  assert.equal(parseGoUrlQuery('a=1&&b=2').values.size, 2);
  assert.equal(parseGoUrlQuery('a=%zz').error, 'invalid URL escape "%zz"');
  assert.equal(parseGoUrlQuery('a=%4').error, 'invalid URL escape "%4"');
  assert.equal(parseGoUrlQuery('a=1;b=2').error, 'invalid semicolon separator in query');
  assert.deepEqual(parseGoUrlQuery('ipv6=fd00%3A%3A1').values.get('ipv6'), ['fd00::1']);
});
