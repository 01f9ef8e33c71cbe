/** Turns scenario results into the console table, docs/benchmarks.md and one SVG bar chart per scenario. */
import type { TunnelMode } from '../../src/client/tunnel-options.ts';
import type { Metric, ScenarioResult } from './scenario.ts';
import { isUpstream, tunnelModes, upstreamName, type TargetName } from './targets.ts';

/** Report order: each of our modes next to upstream's in the same mode. */
export const targetOrder: TargetName[] = ['direct', 'grpc', 'upstream-grpc', 'http-connect', 'upstream-http-connect'];

/** The targets a run had: direct, the selected modes, and upstream's in those modes when measured. */
export function shownTargets(modes: readonly TargetName[], upstream: boolean): TargetName[] {
  return targetOrder.filter((t) => t === 'direct' || modes.includes(t) || (upstream && isUpstream(t) && modes.includes(t.slice('upstream-'.length) as TargetName)));
}

/** Header of the ours-versus-upstream ratio column of a mode (the report text says which way is better). */
export function vsUpstreamHeader(mode: TunnelMode): string {
  return `${mode}÷upstream`;
}

/** Our figure ÷ upstream's in the same mode, from the same run; undefined when either is missing. */
export function oursOverUpstream(m: Metric, mode: TunnelMode, values: Partial<Record<TargetName, number>> = m.values): number | undefined {
  const ours = values[mode];
  const theirs = values[upstreamName(mode)];
  if (ours === undefined || theirs === undefined || !Number.isFinite(ours) || !Number.isFinite(theirs) || !(theirs > 0)) return undefined;
  return ours / theirs;
}

function ratioText(r: number | undefined): string {
  return r === undefined ? '' : `${r < 0.1 ? r.toFixed(3) : r.toFixed(2)}×`;
}

/** Text explaining the ours ÷ upstream column (console and markdown). */
export const VS_UPSTREAM_TEXT =
  '"grpc÷upstream" and "http-connect÷upstream" are ours ÷ upstream: our figure divided by upstream\'s in the same mode, from this run. For higher-is-better metrics (MB/s, req/s, conn/s, %) above 1× means ours is better; for lower-is-better ones (ms, MB, KB, CPU s, CPU µs) below 1× means ours is better.';

export function fmt(v: number | undefined, digits = 1): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function ratio(m: Metric, name: TargetName, values: Partial<Record<TargetName, number>> = m.values): string {
  if (m.ratio === false || name === 'direct') return '';
  const d = values.direct;
  const v = values[name];
  if (d === undefined || v === undefined || !(d > 0)) return '';
  return ratioText(v / d);
}

export function meetsGoal(m: Metric, v: number | undefined): boolean | undefined {
  if (m.goal === undefined || v === undefined || !Number.isFinite(v)) return undefined;
  return m.better === 'higher' ? v >= m.goal : v <= m.goal;
}

function goalText(m: Metric): string {
  if (m.goal === undefined) return '';
  return `${m.better === 'higher' ? '≥' : '≤'} ${fmt(m.goal, m.goal % 1 ? 1 : 0)}`;
}

function mark(m: Metric, name: TargetName): string {
  // The issue's targets are for konnectivity-ts; upstream's figures are what they are compared with.
  if (name === 'direct' || isUpstream(name)) return '';
  const ok = meetsGoal(m, m.values[name]);
  return ok === undefined ? '' : ok ? ' ✓' : ' ✗';
}

// --- console -------------------------------------------------------------------

function padTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...(r[i] ?? '')].length)));
  return rows
    .map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

/** Header cells per target: the figure, its ratio to direct, and after an upstream target ours ÷ upstream. */
function targetHeader(t: TargetName): string[] {
  if (t === 'direct') return [t];
  return isUpstream(t) ? [t, '×direct', vsUpstreamHeader(t.slice('upstream-'.length) as TunnelMode)] : [t, '×direct'];
}

function targetCells(m: Metric, t: TargetName, value: string): string[] {
  if (t === 'direct') return [value];
  if (isUpstream(t)) return [value, ratio(m, t), ratioText(oursOverUpstream(m, t.slice('upstream-'.length) as TunnelMode))];
  return [value, ratio(m, t)];
}

/**
 * The results as console text. `upstreamLegend` replaces the line that says
 * what the upstream-* columns are, for runs that put something else there.
 */
export function consoleTable(results: ScenarioResult[], modes: TargetName[], upstream = false, upstreamLegend?: string): string {
  const targets = shownTargets(modes, upstream);
  const header = ['metric', 'unit', ...targets.flatMap(targetHeader), 'goal'];
  const rows: string[][] = [header];
  for (const r of results) {
    for (const m of r.metrics) {
      if (Object.keys(m.values).length === 0) continue;
      rows.push([m.label, m.unit, ...targets.flatMap((t) => targetCells(m, t, fmt(m.values[t], m.digits) + mark(m, t))), goalText(m)]);
    }
  }
  const lines = [padTable(rows)];
  if (upstream) lines.push('', upstreamLegend ?? `upstream-*: upstream's binaries, measured in this run. ${VS_UPSTREAM_TEXT}`);
  const cpuRows: string[][] = [['CPU s per run (% of one core)', 'target', 'server', 'agent', 'client', 'destination', 'not bench', 'wall s']];
  for (const r of results) {
    for (const t of targets) {
      const c = r.cpu[t];
      if (!c) continue;
      const pct = (s: number | undefined) => (s === undefined ? '—' : `${s.toFixed(2)} (${Math.round((100 * s) / c.wallS)}%)`);
      cpuRows.push([r.title, t, pct(c.server), pct(c.agent), pct(c.client), pct(c.destination), pct(c.foreign), c.wallS.toFixed(2)]);
    }
  }
  if (cpuRows.length > 1) lines.push('', padTable(cpuRows));
  const failures = results.flatMap((r) => Object.entries(r.errors).map(([t, e]) => `FAILED ${r.id} / ${t}: ${e}`));
  if (failures.length) lines.push('', ...failures);
  return lines.join('\n');
}

// --- markdown ------------------------------------------------------------------

function mdRow(cells: string[]): string {
  return `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
}

export interface MarkdownFacts {
  command: string;
  date: string;
  machine: string[];
  setup: string[];
  /** Kept verbatim from the previous file (hand-written analysis). */
  preservedNotes: string;
  modes: TargetName[];
  quick: boolean;
  /** Upstream's binaries ran in this run (their measured figures replace the issue's reference ones). */
  upstream?: boolean;
}

export const NOTES_BEGIN = '<!-- hand-written notes: begin (kept when the file is regenerated) -->';
export const NOTES_END = '<!-- hand-written notes: end -->';

export function markdown(results: ScenarioResult[], facts: MarkdownFacts): string {
  const upstream = facts.upstream ?? false;
  const targets = shownTargets(facts.modes, upstream);
  const out: string[] = [];
  out.push('# konnectivity-ts benchmarks', '');
  out.push(`Generated by \`${facts.command}\` on ${facts.date}${facts.quick ? ' (**quick mode**: small sizes, single runs — not representative)' : ''}. Regenerate with \`npm run bench\`; see \`bench/run.ts\` for options.`, '');
  out.push('## Machine', '', ...facts.machine.map((l) => `- ${l}`), '');
  out.push('## Setup', '', ...facts.setup.map((l) => `- ${l}`), '');
  out.push('## Results', '');
  if (upstream) {
    out.push(
      `Ratios "×direct" are tunnel ÷ direct from the same run (for latencies, above 1× means slower). ✓/✗: meets / misses the target from the performance issue (marked for konnectivity-ts only). **Upstream measured in this run:** the \`upstream-grpc\` and \`upstream-http-connect\` columns are upstream's Go \`proxy-server\` and \`proxy-agent\` (paths and versions under Machine), started with the same upstream flags, driven by the same load generator through the same client library, interleaved with the other targets in every repetition; they replace the issue's reference figures (another machine), which are not shown. ${VS_UPSTREAM_TEXT}`,
      '',
    );
  } else {
    out.push('Ratios are tunnel ÷ direct from the same run (for latencies, above 1× means slower). ✓/✗: meets / misses the target from the performance issue. "Upstream Go" is the issue\'s reference (v0.36.0, another 2-core machine, medians of 3) with its own ratio to its own direct figure; compare ratios rather than absolute numbers across machines. To measure upstream\'s binaries in the same run instead, pass `--upstream-server` and `--upstream-agent`.', '');
  }
  const header = ['Metric', ...targets.flatMap(targetHeader), 'Target', ...(upstream ? [] : ['Upstream Go (grpc / http-connect)'])];
  out.push(mdRow(header), mdRow(header.map((_, i) => (i === 0 ? '---' : '---:'))));
  for (const r of results) {
    for (const m of r.metrics) {
      if (Object.keys(m.values).length === 0 && !Object.keys(r.errors).length) continue;
      const ref = m.reference;
      const sameRef = ref && ref.direct === undefined && ref.grpc !== undefined && ref.grpc === ref['http-connect'];
      const refText = sameRef ? fmt(ref.grpc, 0) : ref ? tunnelModes.map((t) => (ref[t] === undefined ? '—' : `${fmt(ref[t], m.digits)}${ratio(m, t, ref) ? ` (${ratio(m, t, ref)})` : ''}`)).join(' / ') + (ref.direct !== undefined ? `; direct ${fmt(ref.direct, m.digits)}` : '') : '';
      out.push(
        mdRow([
          `${m.label} (${m.unit})`,
          ...targets.flatMap((t) => targetCells(m, t, r.errors[t] && m.values[t] === undefined ? 'failed' : fmt(m.values[t], m.digits) + mark(m, t))),
          goalText(m),
          ...(upstream ? [] : [refText]),
        ]),
      );
    }
  }
  out.push('');
  out.push(NOTES_BEGIN, facts.preservedNotes.trim() ? facts.preservedNotes.trim() : '_No analysis written yet._', NOTES_END, '');
  out.push('## Scenarios', '');
  for (const r of results) {
    out.push(`### ${r.title}`, '', r.method, '');
    if (hasChartData(r)) out.push(`![${r.title}](bench/${r.id}.svg)`, '');
    const runRows = r.metrics.filter((m) => m.runs && Object.keys(m.runs).length);
    if (runRows.length) {
      out.push('Every run:', '');
      for (const m of runRows) {
        out.push(`- ${m.label}: ${targets.filter((t) => m.runs![t]).map((t) => `${t} ${m.runs![t]!.map((v) => fmt(v, m.digits)).join(', ')}`).join('; ')} ${m.unit}`);
      }
      out.push('');
    }
    const cpuTargets = targets.filter((t) => r.cpu[t]);
    if (cpuTargets.length) {
      out.push('CPU seconds per measured run (share of one core during that run; "not bench" is every other process on the machine):', '');
      out.push(mdRow(['Target', 'server', 'agent', 'load generator', 'destination', 'not bench', 'wall s']), mdRow(['---', '---:', '---:', '---:', '---:', '---:', '---:']));
      for (const t of cpuTargets) {
        const c = r.cpu[t]!;
        const pct = (s: number | undefined) => (s === undefined ? '—' : `${s.toFixed(2)} (${Math.round((100 * s) / c.wallS)} %)`);
        out.push(mdRow([t, pct(c.server), pct(c.agent), pct(c.client), pct(c.destination), pct(c.foreign), c.wallS.toFixed(2)]));
      }
      out.push('');
    }
    for (const n of r.notes) out.push(`- ${n}`);
    for (const [t, e] of Object.entries(r.errors)) out.push(`- **${t} failed:** ${e}`);
    if (r.notes.length || Object.keys(r.errors).length) out.push('');
  }
  return out.join('\n');
}

export function preservedNotes(existing: string | null): string {
  if (!existing) return '';
  const b = existing.indexOf(NOTES_BEGIN);
  const e = existing.indexOf(NOTES_END);
  if (b < 0 || e < b) return '';
  const text = existing.slice(b + NOTES_BEGIN.length, e).trim();
  return text === '_No analysis written yet._' ? '' : text;
}

// --- SVG -------------------------------------------------------------------------

const colors: Record<TargetName, string> = { direct: '#8c8c8c', grpc: '#2f6db5', 'upstream-grpc': '#93b4dc', 'http-connect': '#e07b1a', 'upstream-http-connect': '#f0bd8a' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function hasChartData(r: ScenarioResult): boolean {
  return r.metrics.some((m) => Object.values(m.values).some((v) => v !== undefined && Number.isFinite(v))) || Object.keys(r.errors).length > 0;
}

/** Horizontal bar chart: one panel per metric, one bar per target, the goal as a dashed line. */
export function svgChart(r: ScenarioResult, subtitle: string): string {
  const withUpstream = r.metrics.some((m) => Object.keys(m.values).some((t) => isUpstream(t as TargetName))) || Object.keys(r.errors).some((t) => isUpstream(t as TargetName));
  const width = withUpstream ? 880 : 760;
  const labelW = withUpstream ? 170 : 120;
  const valueW = withUpstream ? 250 : 150;
  const plotW = width - labelW - valueW - 20;
  const barH = 20;
  const gap = 6;
  const failedTargets = Object.keys(r.errors).length > 0;
  const panels = r.metrics.filter((m) => failedTargets || Object.values(m.values).some((v) => v !== undefined && Number.isFinite(v)));
  const parts: string[] = [];
  let y = 52;
  for (const m of panels) {
    const names = targetOrder.filter((t) => (m.values[t] !== undefined && Number.isFinite(m.values[t]!)) || (r.errors[t] && m.ratio !== false) || (r.errors[t] && t !== 'direct'));
    const max = Math.max(...names.map((t) => m.values[t] ?? 0), m.goal ?? 0) * 1.05 || 1;
    parts.push(`<text x="10" y="${y + 14}" font-size="14" font-weight="bold">${esc(`${m.label} (${m.unit}, ${m.better} is better)`)}</text>`);
    y += 24;
    const top = y;
    const bottom = top + names.length * (barH + gap) - gap;
    if (m.goal !== undefined) {
      // Drawn first so that bars and labels stay readable on top of it.
      const gx = labelW + (m.goal / max) * plotW;
      parts.push(
        `<line x1="${gx.toFixed(1)}" y1="${top - 4}" x2="${gx.toFixed(1)}" y2="${bottom + 4}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="5,3"/>`,
        `<text x="${gx.toFixed(1)}" y="${bottom + 16}" font-size="11" fill="#c0392b" text-anchor="middle">${esc(`target ${goalText(m)}`)}</text>`,
      );
    }
    for (const t of names) {
      const v = m.values[t];
      parts.push(`<text x="${labelW - 8}" y="${y + barH - 6}" font-size="12" text-anchor="end">${t}</text>`);
      if (v === undefined || !Number.isFinite(v)) {
        parts.push(`<text x="${labelW + 6}" y="${y + barH - 6}" font-size="12" fill="#c0392b">${esc(`failed: ${r.errors[t] ?? 'no figure'}`.slice(0, 90))}</text>`);
      } else {
        const w = Math.max(1, (v / max) * plotW);
        const vsUp = !isUpstream(t) && t !== 'direct' ? ratioText(oursOverUpstream(m, t as TunnelMode)) : '';
        const extra = [ratio(m, t) ? `${ratio(m, t)} direct` : '', vsUp ? `${vsUp} upstream` : ''].filter(Boolean).join(', ');
        parts.push(
          `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${colors[t]}"/>`,
          `<text x="${(labelW + w + 6).toFixed(1)}" y="${y + barH - 6}" font-size="12" paint-order="stroke" stroke="#ffffff" stroke-width="3">${esc(`${fmt(v, m.digits)} ${m.unit}${extra ? ` (${extra})` : ''}`)}</text>`,
        );
      }
      y += barH + gap;
    }
    if (m.goal !== undefined) y += 14;
    y += 18;
  }
  const height = y + 4;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="16" font-weight="bold">${esc(r.title)}</text>`,
    `<text x="10" y="40" font-size="11" fill="#555">${esc(subtitle)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
