/**
 * The Node options a bin/ script's first line starts it with
 * (`#!/usr/bin/env -S node --max-semi-space-size=4`), so that a harness
 * spawning `node <script>` runs the daemon as executing the script, or the
 * image's /proxy-server, does. A script with a plain `#!/usr/bin/env node`
 * line, or none, gives no options; so does one that cannot be read, whose
 * spawn then reports the error as it did before.
 */
import { readFileSync } from 'node:fs';

export function shebangNodeArgs(scriptPath: string): string[] {
  let firstLine: string;
  try {
    firstLine = readFileSync(scriptPath, 'utf8').split('\n', 1)[0] ?? '';
  } catch {
    return [];
  }
  const match = /^#!\s*\S*\/env\s+-S\s+node(?:\s+(.*))?$/.exec(firstLine.trimEnd());
  return match?.[1] ? match[1].split(/\s+/) : [];
}
