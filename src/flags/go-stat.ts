/**
 * The file checks upstream's Validate() makes: `os.Stat` + `os.IsNotExist`.
 * Only a missing path fails (permission problems surface later, when the
 * file is read), and the text is Go's *PathError.
 */
import { statSync } from 'node:fs';

/** Go's error text when `path` does not exist, else undefined. */
export function missingFileError(path: string): string | undefined {
  try {
    statSync(path);
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? `stat ${path}: no such file or directory` : undefined;
  }
}
