// A real Helm for rendering deploy/helm without network access beyond the npm
// registry: the devDependency @aws-cdk/asset-kubectl-v20 ships the official
// helm v3.8.1 linux-amd64 release binary inside its tarball (lib/layer.zip,
// helm/helm), so `npm ci` brings it like any other package; nothing is
// downloaded at install or run time. This module pulls that one file out of
// the zip (CRC-checked) into node_modules/.cache and returns its path.
//
//   node scripts/helm.ts template konnectivity deploy/helm/konnectivity-ts --namespace kube-system ...
//   npm run helm -- lint deploy/helm/konnectivity-ts
//
// KTS_HELM=/path/to/helm overrides the bundled binary (e.g. to render with Helm 4).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { crc32, inflateRawSync } from 'node:zlib';

const PACKAGE = '@aws-cdk/asset-kubectl-v20';
const ENTRY = 'helm/helm';
export const BUNDLED_HELM_VERSION = 'v3.8.1';

const ROOT = path.resolve(import.meta.dirname, '..');

export class HelmUnavailable extends Error {}

/** One file out of a zip archive (stored or deflated; no zip64), checked against its CRC-32. */
export function extractZipEntry(zip: Buffer, name: string): Buffer {
  // End of central directory: 22 bytes plus a comment of up to 65535.
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) throw new Error('not a zip archive (no end of central directory)');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error(`bad central directory header at ${p}`);
    const method = zip.readUInt16LE(p + 10);
    const crc = zip.readUInt32LE(p + 16);
    const compressed = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (entryName !== name) continue;
    if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error(`bad local header for ${name}`);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const raw = zip.subarray(start, start + compressed);
    const data = method === 0 ? Buffer.from(raw) : method === 8 ? inflateRawSync(raw) : undefined;
    if (!data) throw new Error(`${name}: unsupported zip compression method ${method}`);
    if (data.length !== size || crc32(data) !== crc) throw new Error(`${name}: size or CRC-32 mismatch after extraction`);
    return data;
  }
  throw new Error(`${name} not found in the archive`);
}

/** Path of a runnable helm binary; throws HelmUnavailable on a platform the bundled binary does not run on. */
export function helmBinary(): string {
  const override = process.env['KTS_HELM'];
  if (override) return override;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new HelmUnavailable(`the bundled helm (${PACKAGE}) is linux-x64 only; this is ${process.platform}-${process.arch}: set KTS_HELM to a helm binary`);
  }
  const cacheDir = path.join(ROOT, 'node_modules/.cache/konnectivity-ts', `helm-${BUNDLED_HELM_VERSION}`);
  const bin = path.join(cacheDir, 'helm');
  if (existsSync(bin)) return bin;
  let zipPath: string;
  try {
    zipPath = createRequire(path.join(ROOT, 'package.json')).resolve(`${PACKAGE}/lib/layer.zip`);
  } catch {
    // Not HelmUnavailable: on linux-x64 a missing devDependency is a broken install, not a reason to skip.
    throw new Error(`${PACKAGE} is not installed (run npm ci): it carries the helm binary`);
  }
  const data = extractZipEntry(readFileSync(zipPath), ENTRY);
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  chmodSync(tmp, 0o755);
  renameSync(tmp, bin); // atomic: concurrent callers all end with the same complete file
  return bin;
}

if (import.meta.filename === path.resolve(process.argv[1] ?? '')) {
  let bin: string;
  try {
    bin = helmBinary();
  } catch (err) {
    process.stderr.write(`helm: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const r = spawnSync(bin, process.argv.slice(2), { stdio: 'inherit' });
  if (r.error) {
    process.stderr.write(`helm: ${r.error.message}\n`);
    process.exit(2);
  }
  process.exit(r.status ?? 1);
}
