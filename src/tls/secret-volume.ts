/**
 * A directory laid out and updated the way the kubelet writes Secret and
 * ConfigMap volumes (its AtomicWriter), for tests and demos of certificate
 * rotation:
 *
 *     ca.crt  -> ..data/ca.crt
 *     tls.crt -> ..data/tls.crt
 *     ..data  -> ..2026_11_22_20_58_02.000000001
 *     ..2026_11_22_20_58_02.000000001/{ca.crt,tls.crt}
 *
 * An update writes a new timestamped directory, points a `..data_tmp`
 * symlink at it and renames that over `..data` (one atomic step), then
 * removes the old directory. A reader that opens `tls.crt` sees either the
 * whole old set or the whole new set, file by file; two files read one
 * after the other may still come from different sets.
 */
import { mkdir, readlink, rename, rm, symlink, writeFile, lstat } from 'node:fs/promises';
import path from 'node:path';

export type VolumeFiles = Record<string, string | Uint8Array>;

let sequence = 0;

function timestampDirName(): string {
  const d = new Date();
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  sequence++;
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${p(d.getUTCHours())}_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.${p(sequence, 9)}`;
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

export class SecretVolume {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates the volume in `dir` (made if missing) with the given files. */
  static async create(dir: string, files: VolumeFiles): Promise<SecretVolume> {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const volume = new SecretVolume(dir);
    await volume.update(files);
    return volume;
  }

  /** The user-visible path of a file (a symlink through `..data`). */
  path(name: string): string {
    return path.join(this.dir, name);
  }

  /** Replaces the whole file set atomically, as the kubelet does when the Secret changes. */
  async update(files: VolumeFiles): Promise<void> {
    const dataLink = path.join(this.dir, '..data');
    const previous = (await exists(dataLink)) ? await readlink(dataLink) : null;
    const tsDir = timestampDirName();
    await mkdir(path.join(this.dir, tsDir), { mode: 0o755 });
    for (const [name, content] of Object.entries(files)) {
      if (name.includes('/') || name.startsWith('..')) throw new Error(`invalid volume file name ${name}`);
      await writeFile(path.join(this.dir, tsDir, name), content, { mode: 0o644 });
    }
    const tmpLink = path.join(this.dir, '..data_tmp');
    await rm(tmpLink, { force: true });
    await symlink(tsDir, tmpLink);
    await rename(tmpLink, dataLink);
    for (const name of Object.keys(files)) {
      const visible = path.join(this.dir, name);
      if (!(await exists(visible))) await symlink(path.join('..data', name), visible);
    }
    if (previous !== null && previous !== tsDir) await rm(path.join(this.dir, previous), { recursive: true, force: true });
  }

  /**
   * Overwrites one file in place, in two writes, leaving it as `partial`
   * until `finish()` is called: what a non-atomic writer (`cp`, an editor)
   * leaves behind for a moment.
   */
  async writeInPlace(name: string, partial: string | Uint8Array): Promise<{ finish(content: string | Uint8Array): Promise<void> }> {
    const target = this.path(name);
    await writeFile(target, partial);
    return { finish: (content) => writeFile(target, content) };
  }
}
