/**
 * Kubernetes label selectors (apimachinery `labels.Parse`): the syntax the
 * agent's `--lease-label-selector` accepts, with Kubernetes' key and value
 * validation and error wording, plus matching against a label map.
 *
 *   key, !key, key=v, key==v, key!=v, key in (a,b), key notin (a,b), key>1, key<1
 */

export type LabelOperator = 'exists' | '!' | '=' | '==' | '!=' | 'in' | 'notin' | 'gt' | 'lt';

export interface LabelRequirement {
  readonly key: string;
  readonly operator: LabelOperator;
  /** Sorted and de-duplicated, as Kubernetes stores them. */
  readonly values: readonly string[];
}

export class LabelSelectorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabelSelectorError';
  }
}

type TokenKind =
  | 'error' | 'end' | 'closePar' | 'comma' | 'doesNotExist' | 'doubleEquals' | 'equals'
  | 'greaterThan' | 'identifier' | 'in' | 'lessThan' | 'notEquals' | 'notIn' | 'openPar';

interface Token {
  readonly kind: TokenKind;
  readonly literal: string;
}

const tokenByText: ReadonlyMap<string, TokenKind> = new Map<string, TokenKind>([
  [')', 'closePar'],
  [',', 'comma'],
  ['!', 'doesNotExist'],
  ['==', 'doubleEquals'],
  ['=', 'equals'],
  ['>', 'greaterThan'],
  ['in', 'in'],
  ['<', 'lessThan'],
  ['!=', 'notEquals'],
  ['notin', 'notIn'],
  ['(', 'openPar'],
]);

const isWhitespace = (c: string) => c === ' ' || c === '\t' || c === '\r' || c === '\n';
const isSpecial = (c: string) => '=!(),><'.includes(c);

function lex(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  for (;;) {
    while (i < input.length && isWhitespace(input[i] ?? '')) i++;
    if (i >= input.length) {
      tokens.push({ kind: 'end', literal: '' });
      return tokens;
    }
    const c = input[i] ?? '';
    if (isSpecial(c)) {
      // Longest run of special symbols that still names a token.
      let buffer = '';
      let last: Token | undefined;
      while (i < input.length && isSpecial(input[i] ?? '')) {
        buffer += input[i];
        const kind = tokenByText.get(buffer);
        if (kind !== undefined) last = { kind, literal: buffer };
        else if (last !== undefined) break;
        i++;
      }
      tokens.push(last ?? { kind: 'error', literal: `error expected: keyword found '${buffer}'` });
      if (last === undefined) return [...tokens, { kind: 'end', literal: '' }];
      continue;
    }
    let word = '';
    while (i < input.length && !isSpecial(input[i] ?? '') && !isWhitespace(input[i] ?? '')) word += input[i++];
    tokens.push({ kind: tokenByText.get(word) ?? 'identifier', literal: word });
  }
}

// --- Kubernetes validation messages (k8s.io/apimachinery/pkg/util/validation) ---

function regexError(msg: string, format: string, ...examples: string[]): string {
  if (examples.length === 0) return `${msg} (regex used for validation is '${format}')`;
  let out = msg + ' (e.g. ';
  examples.forEach((example, i) => {
    if (i > 0) out += ' or ';
    out += `'${example}', `;
  });
  return out + `regex used for validation is '${format}')`;
}

const qualifiedNameFmt = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]';
const qualifiedNameRe = new RegExp(`^${qualifiedNameFmt}$`);
const qualifiedNameMsg = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const dns1123LabelFmt = '[a-z0-9]([-a-z0-9]*[a-z0-9])?';
const dns1123SubdomainFmt = `${dns1123LabelFmt}(\\.${dns1123LabelFmt})*`;
const dns1123SubdomainRe = new RegExp(`^${dns1123SubdomainFmt}$`);
const labelValueFmt = `(${qualifiedNameFmt})?`;
const labelValueRe = new RegExp(`^${labelValueFmt}$`);

function qualifiedNameErrors(value: string): string[] {
  const errs: string[] = [];
  const parts = value.split('/');
  let name: string;
  if (parts.length === 1) name = parts[0] ?? '';
  else if (parts.length === 2) {
    const prefix = parts[0] ?? '';
    name = parts[1] ?? '';
    if (prefix === '') errs.push('prefix part must be non-empty');
    else {
      if (prefix.length > 253) errs.push('prefix part must be no more than 253 characters');
      if (!dns1123SubdomainRe.test(prefix)) {
        errs.push(
          'prefix part ' +
            regexError(
              "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
              dns1123SubdomainFmt,
              'example.com',
            ),
        );
      }
    }
  } else {
    return [
      'a qualified name ' + regexError(qualifiedNameMsg, qualifiedNameFmt, 'MyName', 'my.name', '123-abc') +
        " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ];
  }
  if (name === '') errs.push('name part must be non-empty');
  else if (name.length > 63) errs.push('name part must be no more than 63 characters');
  if (!qualifiedNameRe.test(name)) errs.push('name part ' + regexError(qualifiedNameMsg, qualifiedNameFmt, 'MyName', 'my.name', '123-abc'));
  return errs;
}

function labelValueErrors(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 63) errs.push('must be no more than 63 characters');
  if (!labelValueRe.test(value)) {
    errs.push(
      regexError(
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        labelValueFmt,
        'MyValue',
        'my_value',
        '12345',
      ),
    );
  }
  return errs;
}

const quote = (s: string) => JSON.stringify(s);

// --- parser ---

class SelectorParser {
  readonly #tokens: Token[];
  #pos = 0;
  constructor(input: string) {
    this.#tokens = lex(input);
  }

  // In value position the keywords `in`/`notin` are plain identifiers.
  #peek(values: boolean): Token {
    const t = this.#tokens[this.#pos] ?? { kind: 'end', literal: '' };
    return values && (t.kind === 'in' || t.kind === 'notIn') ? { kind: 'identifier', literal: t.literal } : t;
  }

  #next(values: boolean): Token {
    const t = this.#peek(values);
    if (this.#pos < this.#tokens.length - 1) this.#pos++;
    return t;
  }

  parse(): LabelRequirement[] {
    const requirements: LabelRequirement[] = [];
    for (;;) {
      const t = this.#peek(true);
      if (t.kind === 'end') return requirements;
      if (t.kind !== 'identifier' && t.kind !== 'doesNotExist') {
        throw new LabelSelectorError(`found '${t.literal}', expected: !, identifier, or 'end of string'`);
      }
      try {
        requirements.push(this.#requirement());
      } catch (err) {
        throw new LabelSelectorError(`unable to parse requirement: ${(err as Error).message}`);
      }
      const after = this.#next(true);
      if (after.kind === 'end') return requirements;
      if (after.kind !== 'comma') throw new LabelSelectorError(`found '${after.literal}', expected: ',' or 'end of string'`);
      const following = this.#peek(true);
      if (following.kind !== 'identifier' && following.kind !== 'doesNotExist') {
        throw new LabelSelectorError(`found '${following.literal}', expected: identifier after ','`);
      }
    }
  }

  #requirement(): LabelRequirement {
    let t = this.#next(true);
    let operator: LabelOperator | undefined;
    if (t.kind === 'doesNotExist') {
      operator = '!';
      t = this.#next(true);
    }
    if (t.kind !== 'identifier') throw new Error(`found '${t.literal}', expected: identifier`);
    const key = t.literal;
    const keyErrors = qualifiedNameErrors(key);
    if (keyErrors.length > 0) throw new Error(`<nil>: Invalid value: ${quote(key)}: ${keyErrors.join('; ')}`);
    const ahead = this.#peek(true).kind;
    // `!key` never takes an operator; anything after it is the caller's syntax error.
    if (operator === '!' || ahead === 'end' || ahead === 'comma') return { key, operator: operator ?? 'exists', values: [] };
    const op = this.#next(false);
    let values: string[];
    switch (op.kind) {
      case 'in': operator = 'in'; values = this.#setValues(); break;
      case 'notIn': operator = 'notin'; values = this.#setValues(); break;
      case 'equals': operator = '='; values = this.#exactValue(); break;
      case 'doubleEquals': operator = '=='; values = this.#exactValue(); break;
      case 'notEquals': operator = '!='; values = this.#exactValue(); break;
      case 'greaterThan': operator = 'gt'; values = this.#exactValue(); break;
      case 'lessThan': operator = 'lt'; values = this.#exactValue(); break;
      default:
        throw new Error(`found '${op.literal}', expected: in, notin, =, ==, !=, gt, lt`);
    }
    const sorted = [...new Set(values)].sort();
    const errors: string[] = [];
    if (operator === 'gt' || operator === 'lt') {
      if (!/^[+-]?\d+$/.test(sorted[0] ?? '')) {
        errors.push(`values[0]: Invalid value: ${quote(sorted[0] ?? '')}: for 'Gt', 'Lt' operators, the value must be an integer`);
      }
    } else {
      sorted.forEach((v, i) => {
        const errs = labelValueErrors(v);
        if (errs.length > 0) errors.push(`values[${i}][${key}]: Invalid value: ${quote(v)}: ${errs.join('; ')}`);
      });
    }
    if (errors.length === 1) throw new Error(errors[0]);
    if (errors.length > 1) throw new Error(`[${errors.join(', ')}]`);
    return { key, operator, values: sorted };
  }

  #setValues(): string[] {
    const open = this.#next(true);
    if (open.kind !== 'openPar') throw new Error(`found '${open.literal}' expected: '('`);
    const first = this.#peek(true);
    if (first.kind === 'closePar') {
      this.#next(true);
      return [''];
    }
    if (first.kind !== 'identifier' && first.kind !== 'comma') {
      throw new Error(`found '${first.literal}', expected: ',', ')' or identifier`);
    }
    const values = new Set<string>();
    for (;;) {
      const t = this.#next(true);
      if (t.kind === 'identifier') {
        values.add(t.literal);
        const after = this.#peek(true);
        if (after.kind === 'comma') continue;
        if (after.kind === 'closePar') break;
        throw new Error(`found '${after.literal}', expected: ',' or ')'`);
      } else if (t.kind === 'comma') {
        if (values.size === 0) values.add('');
        const after = this.#peek(true);
        if (after.kind === 'closePar') {
          values.add('');
          break;
        }
        if (after.kind === 'comma') {
          this.#next(true);
          values.add('');
        }
      } else {
        throw new Error(`found '${t.literal}', expected: ',', or identifier`);
      }
    }
    const close = this.#next(true);
    if (close.kind !== 'closePar') throw new Error(`found '${first.literal}', expected: ')'`);
    return [...values];
  }

  #exactValue(): string[] {
    const ahead = this.#peek(true);
    if (ahead.kind === 'end' || ahead.kind === 'comma') return [''];
    const t = this.#next(true);
    if (t.kind === 'identifier') return [t.literal];
    throw new Error(`found '${t.literal}', expected: identifier`);
  }
}

function requirementToString(r: LabelRequirement): string {
  switch (r.operator) {
    case 'exists': return r.key;
    case '!': return `!${r.key}`;
    case 'in': return `${r.key} in (${r.values.join(',')})`;
    case 'notin': return `${r.key} notin (${r.values.join(',')})`;
    case 'gt': return `${r.key}>${r.values[0] ?? ''}`;
    case 'lt': return `${r.key}<${r.values[0] ?? ''}`;
    default: return `${r.key}${r.operator}${r.values[0] ?? ''}`;
  }
}

function requirementMatches(r: LabelRequirement, labels: Readonly<Record<string, string>>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const value = labels[r.key];
  switch (r.operator) {
    case 'exists': return has;
    case '!': return !has;
    case '=': case '==': case 'in': return has && r.values.includes(value ?? '');
    case '!=': case 'notin': return !has || !r.values.includes(value ?? '');
    case 'gt': case 'lt': {
      if (!has || !/^[+-]?\d+$/.test(value ?? '')) return false;
      const actual = BigInt(value ?? '0');
      const limit = BigInt(r.values[0] ?? '0');
      return r.operator === 'gt' ? actual > limit : actual < limit;
    }
  }
}

export class LabelSelector {
  /** Sorted by key, as Kubernetes keeps them. An empty list selects everything. */
  readonly requirements: readonly LabelRequirement[];

  constructor(requirements: readonly LabelRequirement[]) {
    this.requirements = [...requirements].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Parses Kubernetes selector syntax; throws LabelSelectorError with apimachinery's wording. */
  static parse(text: string): LabelSelector {
    return new LabelSelector(new SelectorParser(text).parse());
  }

  matches(labels: Readonly<Record<string, string>>): boolean {
    return this.requirements.every((r) => requirementMatches(r, labels));
  }

  toString(): string {
    return this.requirements.map(requirementToString).join(',');
  }
}
