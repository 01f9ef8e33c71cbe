/**
 * The contents of a set of files read together, with one digest over all of
 * them. Paths are followed through symlinks on every read, which is what
 * makes Kubernetes secret and configmap volumes work: the kubelet writes a
 * new `..2026_…` directory and atomically renames the `..data` symlink onto
 * it, and the file names are symlinks through `..data`.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

export interface FileSnapshot {
  /** Path → bytes, for every path asked for. */
  readonly contents: ReadonlyMap<string, Buffer>;
  /** sha256 over every path and its bytes. */
  readonly digest: string;
}

function snapshotOf(paths: readonly string[], buffers: readonly Buffer[]): FileSnapshot {
  const hash = createHash('sha256');
  const contents = new Map<string, Buffer>();
  paths.forEach((p, i) => {
    const data = buffers[i]!;
    contents.set(p, data);
    hash.update(`${p}\0${data.length}\0`);
    hash.update(data);
  });
  return { contents, digest: hash.digest('hex') };
}

/** Reads every file; rejects if one cannot be read. */
export async function readSnapshot(paths: readonly string[]): Promise<FileSnapshot> {
  const buffers = await Promise.all(paths.map((p) => readFile(p)));
  return snapshotOf(paths, buffers);
}

export function readSnapshotSync(paths: readonly string[]): FileSnapshot {
  return snapshotOf(
    paths,
    paths.map((p) => readFileSync(p)),
  );
}

/** The bytes of one path of a snapshot (the path must have been read). */
export function fileOf(snapshot: FileSnapshot, path: string): Buffer {
  const data = snapshot.contents.get(path);
  if (data === undefined) throw new Error(`internal: ${path} not in the snapshot`);
  return data;
}
