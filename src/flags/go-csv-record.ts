/**
 * The first record of Go's `encoding/csv` reader, which is how pflag splits a
 * `[]string` flag value: commas separate, double quotes may wrap a field
 * (`""` is a literal quote), and stray quotes are errors with Go's wording.
 */

export class GoCsvError extends Error {
  constructor(line: number, column: number, reason: string) {
    super(`parse error on line ${line}, column ${column}: ${reason}`);
    this.name = 'GoCsvError';
  }
}

const bareQuote = 'bare " in non-quoted-field';
const badQuote = 'extraneous or missing " in quoted-field';

export function readGoCsvRecord(input: string): string[] {
  // Go's reader normalises \r\n and gives the last line a trailing newline.
  const text = input.replaceAll('\r\n', '\n');
  const fields: string[] = [];
  let pos = 0;
  let line = 1;
  let col = 1;
  for (;;) {
    if (text[pos] !== '"') {
      let end = pos;
      while (end < text.length && text[end] !== ',' && text[end] !== '\n') end++;
      const field = text.slice(pos, end);
      const q = field.indexOf('"');
      if (q >= 0) throw new GoCsvError(line, col + q, bareQuote);
      fields.push(field);
      if (text[end] === ',') {
        col += end - pos + 1;
        pos = end + 1;
        continue;
      }
      return fields;
    }
    // Quoted field: may span newlines.
    pos++;
    col++;
    let value = '';
    for (;;) {
      const close = text.indexOf('"', pos);
      if (close < 0) {
        const rest = text.slice(pos);
        for (const ch of rest) {
          if (ch === '\n') { line++; col = 1; } else col += Buffer.byteLength(ch);
        }
        // Go counts the newline it appends to an unterminated last line.
        if (!rest.endsWith('\n')) col++;
        throw new GoCsvError(line, col, badQuote);
      }
      const chunk = text.slice(pos, close);
      value += chunk;
      for (const ch of chunk) {
        if (ch === '\n') { line++; col = 1; } else col += Buffer.byteLength(ch);
      }
      pos = close + 1;
      col++;
      const next = text[pos];
      if (next === '"') {
        value += '"';
        pos++;
        col++;
        continue;
      }
      if (next === ',') {
        fields.push(value);
        pos++;
        col++;
        break;
      }
      if (next === undefined || next === '\n') {
        fields.push(value);
        return fields;
      }
      throw new GoCsvError(line, col - 1, badQuote);
    }
  }
}

/** pflag's writeAsCSV, used to print a []string value: "[a,b]". */
export function formatGoStringSlice(values: readonly string[]): string {
  const quoted = values.map((v) =>
    v !== '' && (v === '\\.' || /[",\r\n]/.test(v) || /^\s/u.test(v)) ? `"${v.replaceAll('"', '""')}"` : v,
  );
  return `[${quoted.join(',')}]`;
}
