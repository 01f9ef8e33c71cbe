/**
 * Diagnostic: what calling the Kubernetes API costs a server and an agent
 * in resident memory: `npm run bench:kube-memory [-- --reps N] [-- --code DIR]…`.
 *
 * Why: token authentication (TokenReview), the lease controller and
 * `--count-server-leases` are the only features that talk to the
 * Kubernetes API, and a client library can cost more memory than the whole
 * proxy. Kamaji runs one server per tenant, so this is multiplied.
 *
 * For each build (this checkout compiled, plus each `--code DIR`, e.g. a
 * `git worktree` of an older commit with `npm ci --omit=dev` run in it) and
 * each scenario, a fresh server and agent are started from the build's bin/
 * with upstream flags, against the test suite's fake apiserver (HTTPS on
 * loopback, the real API paths and JSON):
 *   - plain: no Kubernetes flags (the baseline of the same run);
 *   - token-auth: the server reviews the agent's token (--authentication-audience …);
 *   - leases: token-auth plus --enable-lease-controller on the server and
 *     --count-server-leases on the agent.
 * Five seconds after the agent started, VmRSS and RssAnon (private memory)
 * of both are read from /proc. The API calls the fake received are counted
 * and shown, so a scenario whose calls did not happen cannot pass for one
 * that did. Medians of --reps runs (default 3), runs interleaved.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createDevPki } from '../../src/dev/pki.ts';
import { FakeApiServer } from '../../test/helpers/fake-apiserver.ts';
import { checkoutProblem, compiledLayout, loopbackAgentFlags, loopbackDaemonPorts, loopbackServerFlags, type CodeLayout } from '../lib/cluster.ts';
import { median } from '../lib/stats.ts';
import { shebangNodeArgs } from '../lib/shebang-node-args.ts';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '3' },
    code: { type: 'string', multiple: true, default: [] },
    'settle-ms': { type: 'string', default: '5000' },
  },
});
const reps = Number(args.reps);
const settleMs = Number(args['settle-ms']);
if (!Number.isInteger(reps) || reps < 1 || !Number.isFinite(settleMs) || settleMs < 0) {
  process.stderr.write('usage: kube-client-memory.ts [--reps N] [--settle-ms MS] [--code DIR]…\n');
  process.exit(2);
}
for (const dir of args.code) {
  const problem = checkoutProblem(path.resolve(dir));
  if (problem) {
    process.stderr.write(`--code: ${problem}\n`);
    process.exit(2);
  }
}

const scenarios = ['plain', 'token-auth', 'leases'] as const;
type Scenario = (typeof scenarios)[number];

interface Sample {
  serverRss: number;
  serverAnon: number;
  agentRss: number;
  agentAnon: number;
  tokenReviews: number;
  leaseCalls: number;
}

const AUDIENCE = 'system:konnectivity-server';
const work = mkdtempSync(path.join(os.tmpdir(), 'kube-memory-'));
const pki = await createDevPki(path.join(work, 'pki'));
const api = await FakeApiServer.start({ pki, dir: work });
api.addToken('bench-agent-token', 'system:serviceaccount:kube-system:konnectivity-agent', [AUDIENCE]);
const tokenPath = path.join(work, 'agent-token');
writeFileSync(tokenPath, 'bench-agent-token');

const builds: Array<{ name: string; layout: CodeLayout }> = [{ name: 'this checkout', layout: compiledLayout(path.join(work, 'build-0')) }];
args.code.forEach((dir, i) => builds.push({ name: path.resolve(dir), layout: compiledLayout(path.join(work, `build-${i + 1}`), path.resolve(dir)) }));

/** VmRSS and RssAnon in MB from /proc/<pid>/status. */
function memory(pid: number): { rss: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, anon: kb('RssAnon') / 1024 };
}

function start(layout: CodeLayout, binary: string, flags: string[], log: string): ChildProcess {
  const env = { ...process.env };
  delete env['KONNECTIVITY_TS_FROM_SOURCE'];
  const out = path.join(work, log);
  writeFileSync(out, '');
  const script = path.join(layout.binDir, binary);
  const child = spawn(process.execPath, [...shebangNodeArgs(script), script, ...flags], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr?.on('data', (c: Buffer) => writeFileSync(out, c, { flag: 'a' }));
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

async function measure(layout: CodeLayout, scenario: Scenario, tag: string): Promise<Sample> {
  const ports = await loopbackDaemonPorts();
  const kube = scenario !== 'plain';
  const leases = scenario === 'leases';
  const pkiPaths = { caCertPath: pki.ca.certPath, serverCertPath: pki.server.certPath, serverKeyPath: pki.server.keyPath };
  const serverFlags = [
    ...loopbackServerFlags('grpc', path.join(work, `${tag}.socket`), ports, pkiPaths),
    ...(kube ? [`--kubeconfig=${api.kubeconfigPath}`, `--authentication-audience=${AUDIENCE}`, '--agent-namespace=kube-system', '--agent-service-account=konnectivity-agent'] : []),
    ...(leases ? ['--enable-lease-controller', `--lease-namespace=${tag}`] : []),
  ];
  const agentFlags = [
    ...loopbackAgentFlags(ports, pkiPaths),
    ...(kube ? [`--service-account-token-path=${tokenPath}`] : []),
    ...(leases ? ['--count-server-leases', `--kubeconfig=${api.kubeconfigPath}`, `--lease-namespace=${tag}`] : []),
  ];
  const before = api.requests.length;
  const server = start(layout, 'konnectivity-server', serverFlags, `${tag}-server.log`);
  let agent: ChildProcess | undefined;
  try {
    await new Promise((r) => setTimeout(r, 1500));
    agent = start(layout, 'konnectivity-agent', agentFlags, `${tag}-agent.log`);
    await new Promise((r) => setTimeout(r, settleMs));
    for (const [name, child] of [['server', server], ['agent', agent]] as const) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}); see ${path.join(work, `${tag}-${name}.log`)}`);
    }
    const s = memory(server.pid!);
    const a = memory(agent.pid!);
    const calls = api.requests.slice(before);
    return {
      serverRss: s.rss,
      serverAnon: s.anon,
      agentRss: a.rss,
      agentAnon: a.anon,
      tokenReviews: calls.filter((r) => r.path.endsWith('/tokenreviews')).length,
      leaseCalls: calls.filter((r) => r.path.includes('/leases')).length,
    };
  } finally {
    await stop(server);
    if (agent) await stop(agent);
  }
}

const samples = new Map<string, Sample[]>();
let done = 0;
const total = reps * builds.length * scenarios.length;
try {
  for (let rep = 0; rep < reps; rep++) {
    for (const [b, build] of builds.entries()) {
      for (const scenario of scenarios) {
        const key = `${b}/${scenario}`;
        const sample = await measure(build.layout, scenario, `b${b}-${scenario}-${rep}`);
        if (scenario !== 'plain' && sample.tokenReviews === 0) throw new Error(`${build.name}, ${scenario}: the server made no TokenReview; the agent never authenticated`);
        if (scenario === 'leases' && sample.leaseCalls === 0) throw new Error(`${build.name}, ${scenario}: no Lease calls reached the fake apiserver`);
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        done++;
        process.stderr.write(`[${done}/${total}] ${build.name}, ${scenario}: server ${sample.serverRss.toFixed(1)} MB (anon ${sample.serverAnon.toFixed(1)}), agent ${sample.agentRss.toFixed(1)} MB (anon ${sample.agentAnon.toFixed(1)})\n`);
      }
    }
  }
} finally {
  await api.close();
}

const mb = (values: number[]): string => median(values).toFixed(1);
process.stdout.write(`\nResident memory 5 s after the agent started, medians of ${reps} (MB; "anon" = RssAnon, private memory)\n`);
const header = ['build', 'scenario', 'server RSS', 'server anon', 'agent RSS', 'agent anon', 'TokenReviews', 'Lease calls'];
const rows: string[][] = [];
for (const [b, build] of builds.entries()) {
  for (const scenario of scenarios) {
    const list = samples.get(`${b}/${scenario}`) ?? [];
    rows.push([
      b === 0 ? 'this' : `code-${b}`,
      scenario,
      mb(list.map((s) => s.serverRss)),
      mb(list.map((s) => s.serverAnon)),
      mb(list.map((s) => s.agentRss)),
      mb(list.map((s) => s.agentAnon)),
      String(median(list.map((s) => s.tokenReviews))),
      String(median(list.map((s) => s.leaseCalls))),
    ]);
  }
}
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
for (const line of [header, ...rows]) process.stdout.write(line.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ') + '\n');
for (const [b, build] of builds.entries()) if (b > 0) process.stdout.write(`code-${b}: ${build.layout.description}\n`);
rmSync(work, { recursive: true, force: true });
