/**
 * Node's own options as V8 applies them: NODE_OPTIONS first, then the
 * command line (a shebang's options included), so a later one wins; V8
 * treats `-` and `_` in a flag's name alike.
 */

/** Every value given to `--name` (in that order; '' for a bare `--name`). */
export function nodeFlagValues(name: string, execArgv: readonly string[], nodeOptions: string): string[] {
  const pattern = new RegExp(`^--${name.replace(/[-_]/g, '[-_]')}(?:=(.*))?$`);
  const values: string[] = [];
  for (const arg of [...nodeOptions.split(/\s+/), ...execArgv]) {
    const match = pattern.exec(arg);
    if (match) values.push(match[1] ?? '');
  }
  return values;
}
