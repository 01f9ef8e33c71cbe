/**
 * Files that only need to exist (option parsers check paths, not contents),
 * in a fresh temp dir.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function placeholderFiles(prefix: string): { dir: string; file(name: string): string } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return {
    dir,
    file(name: string): string {
      const p = path.join(dir, name);
      mkdirSync(path.dirname(p), { recursive: true });
      writeFileSync(p, 'x');
      return p;
    },
  };
}
