/**
 * Every flag named in the documentation's flag tables is one the binaries
 * accept: README.md's server, agent, shared and extension tables, and the flag
 * tables in docs/operations.md and docs/migration-from-upstream.md. Each flag
 * is put through the real parser (parseServerOptions / parseAgentOptions):
 * validation errors are fine (no certificates are given), "unknown flag" is
 * not. It must also be listed in that binary's --help.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { OptionsError } from '../src/flags/options-error.ts';
import { parseServerOptions, serverUsage } from '../src/server/server-options.ts';
import { parseAgentOptions, agentUsage } from '../src/agent/agent-options.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
type Binary = 'server' | 'agent';

interface DocFlag {
  readonly file: string;
  readonly line: number;
  readonly flag: string;
  readonly binaries: readonly Binary[];
}

function binariesOf(text: string): Binary[] | undefined {
  const t = text.toLowerCase();
  if (/\bboth\b/.test(t) || (t.includes('server') && t.includes('agent'))) return ['server', 'agent'];
  if (t.includes('server')) return ['server'];
  if (t.includes('agent')) return ['agent'];
  return undefined;
}

/** Markdown tables with a flag column and a way to tell which binary: a "server flag"-style header or a binary/component column. */
export function docFlags(file: string, text: string): { flags: DocFlag[]; tables: number } {
  const lines = text.split('\n');
  const flags: DocFlag[] = [];
  let tables = 0;
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('|') || !/^\|[-| :]+\|$/.test(lines[i + 1] ?? '')) continue;
    const header = lines[i]!.split('|').slice(1, -1).map((c) => c.trim());
    const flagCol = header.findIndex((h) => /flag/i.test(h));
    const binCol = header.findIndex((h) => /^(binary|component)$/i.test(h));
    const headerBinaries = flagCol >= 0 ? binariesOf(header[flagCol]!) : undefined;
    let j = i + 2;
    if (flagCol >= 0 && (binCol >= 0 || headerBinaries)) {
      tables++;
      for (; j < lines.length && lines[j]!.startsWith('|'); j++) {
        const cells = lines[j]!.split('|').slice(1, -1).map((c) => c.trim());
        const binaries = binCol >= 0 ? binariesOf(cells[binCol] ?? '') : headerBinaries;
        assert.ok(binaries, `${file}:${j + 1}: cannot tell which binary: ${lines[j]}`);
        // `--max-…` stands for a family; every other --name is one flag.
        for (const m of (cells[flagCol] ?? '').matchAll(/(--?)([a-z][a-z0-9-]*)(…)?/g)) {
          if (m[3]) continue;
          if (m[1] === '-' && m[2] !== 'v') continue;
          flags.push({ file, line: j + 1, flag: m[2]!, binaries });
        }
      }
    }
    i = j - 1;
  }
  return { flags, tables };
}

function accepted(binary: Binary, flag: string): string | undefined {
  // A bare flag: bools take it, others ask for an argument. Either way the flag is known.
  try {
    if (binary === 'server') parseServerOptions([`--${flag}`], {});
    else parseAgentOptions([`--${flag}`], {});
  } catch (err) {
    if (!(err instanceof OptionsError)) throw err;
    if (/unknown (shorthand )?flag/.test(err.message)) return err.message;
  }
  return undefined;
}

const DOCS = ['README.md', 'docs/operations.md', 'docs/migration-from-upstream.md'];

test('the unknown-flag check bites', () => {
  assert.match(accepted('server', 'no-such-flag') ?? '', /unknown flag: --no-such-flag/);
  assert.match(accepted('agent', 'uds-name') ?? '', /unknown flag: --uds-name/);
  assert.equal(accepted('agent', 'sync-forever'), undefined);
  assert.equal(accepted('server', 'mode'), undefined);
  const { flags } = docFlags('x.md', '| agent flag | default |\n|---|---|\n| `--a-b`, `--max-…` / `-v` | 1 |\n');
  assert.deepEqual(flags.map((f) => f.flag), ['a-b', 'v']);
});

for (const file of DOCS) {
  test(`${file}: every flag in its flag tables is accepted by the binary the table names and listed in its --help`, () => {
    const { flags, tables } = docFlags(file, readFileSync(path.join(ROOT, file), 'utf8'));
    assert.ok(tables > 0 && flags.length > 0, `${file}: no flag tables found`);
    const usage = { server: serverUsage({}), agent: agentUsage({}) };
    const problems: string[] = [];
    for (const f of flags) {
      for (const b of f.binaries) {
        const err = accepted(b, f.flag);
        if (err) problems.push(`${f.file}:${f.line}: --${f.flag} (${b}): ${err}`);
        else if (!new RegExp(`(^|\\s)(-v, )?--${f.flag}\\b`, 'm').test(usage[b])) problems.push(`${f.file}:${f.line}: --${f.flag} is not in the ${b}'s --help`);
      }
    }
    assert.deepEqual(problems, []);
  });
}

test('README.md has the server, agent, shared and extension flag tables', () => {
  const { flags, tables } = docFlags('README.md', readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
  assert.ok(tables >= 4, `${tables} tables`);
  const names = new Set(flags.map((f) => f.flag));
  for (const f of ['mode', 'uds-name', 'proxy-server-host', 'service-account-token-path', 'v', 'logtostderr', 'log-file', 'tls-reload-interval', 'flow-control-window']) {
    assert.ok(names.has(f), `README flag tables lack --${f}`);
  }
});
