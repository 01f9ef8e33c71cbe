/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time per function and
 * per source file, heaviest first. Used by `npm run bench -- --profile`.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileLine {
  name: string;
  selfMs: number;
  share: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  idleMs: number;
  functions: ProfileLine[];
  files: ProfileLine[];
}

function shortUrl(url: string, repoRoot: string): string {
  if (!url) return '(native)';
  const p = url.startsWith('file://') ? new URL(url).pathname : url;
  return p.startsWith(repoRoot) ? path.relative(repoRoot, p) : p;
}

export function summariseProfile(file: string, repoRoot: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const { functionName, url, lineNumber } = n.callFrame;
    total += us;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    const where = shortUrl(url, repoRoot);
    const key = url ? `${functionName || '(anonymous)'}  ${where}:${lineNumber + 1}` : functionName;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const fileKey = url ? where : functionName;
    files.set(fileKey, (files.get(fileKey) ?? 0) + us);
  }
  const busy = total - idle || 1;
  const rank = (m: Map<string, number>): ProfileLine[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, selfMs: us / 1000, share: us / busy }));
  return { file, totalMs: total / 1000, idleMs: idle / 1000, functions: rank(fn), files: rank(files) };
}

export function formatSummary(s: ProfileSummary): string {
  const lines = [`${path.basename(s.file)}: ${(s.totalMs / 1000).toFixed(1)} s sampled, ${((s.totalMs - s.idleMs) / 1000).toFixed(1)} s busy`];
  lines.push('  top self time by function:');
  for (const l of s.functions) lines.push(`    ${(100 * l.share).toFixed(1).padStart(5)} %  ${l.selfMs.toFixed(0).padStart(7)} ms  ${l.name}`);
  lines.push('  top self time by file:');
  for (const l of s.files) lines.push(`    ${(100 * l.share).toFixed(1).padStart(5)} %  ${l.selfMs.toFixed(0).padStart(7)} ms  ${l.name}`);
  return lines.join('\n');
}
