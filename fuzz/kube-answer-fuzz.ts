/**
 * What the Kubernetes client reads from outside, under the fuzzer: kubeconfig
 * files, an exec plugin's ExecCredential, the API server's Lease objects and
 * its watch stream. The properties:
 * - a kubeconfig either parses or fails with an Error whose message starts
 *   with `invalid kubeconfig <file>: `, never another exception;
 * - ExecCredential output either parses to a token or a certificate pair
 *   with a finite expiry, or fails with an Error;
 * - any JSON value as a Lease gives a Lease whose fields have their types;
 * - the watch line splitter gives the same lines however the bytes are
 *   chunked, never holds more than its bound, and fails only by the bound.
 */
import { parseExecCredential } from '../src/kube/exec-credential-plugin.ts';
import { isMap } from '../src/kube/json-map.ts';
import { parseKubeconfig } from '../src/kube/kubeconfig-file.ts';
import { leaseFromApi, type LeaseObject } from '../src/kube/lease.ts';
import { WatchLineSplitter } from '../src/kube/watch-lines.ts';
import { Rng } from './prng.ts';
import { FuzzViolation } from './router-fuzz.ts';

const KUBECONFIG_FRAGMENTS = [
  'apiVersion: v1\n', 'kind: Config\n', 'current-context: c\n', 'current-context: \n', 'current-context: [x]\n', 'clusters:\n', 'users:\n', 'contexts:\n',
  '- name: c\n  context: {cluster: k, user: u}\n', '- name: c\n  context: [1]\n', '- name: k\n  cluster:\n    server: https://h:1\n', '- name: k\n  cluster: {server: 7}\n',
  '    certificate-authority: ca\n', '    certificate-authority-data: "!!"\n', '    insecure-skip-tls-verify: true\n', '    insecure-skip-tls-verify: 1\n', '    tls-server-name: n\n',
  '    proxy-url: http://p\n', '- name: u\n  user:\n', '    token: t\n', '    tokenFile: f\n', '    username: a\n', '    password: b\n', '    client-certificate: c\n',
  '    client-key: k\n', '    client-key-data: AAAA\n', '    as: x\n', '    as-groups: [a, 1]\n', '    as-user-extra: {k: [v]}\n', '    as-user-extra: 3\n',
  '    auth-provider: {name: gcp}\n', '    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: p\n', '      args: [a]\n', '      env: [{name: N}]\n',
  '      env: 5\n', '      interactiveMode: Always\n', '    exec: null\n', '{', '}', '[', ']', ': ', '- ', '&a ', '*a ', '!!binary ', '"', "'", '#', '\t', '\n', ' ', '~', 'null',
];

const OPTIONAL_CLUSTER = ['certificate-authority: ca.crt', 'certificate-authority-data: Y2E=', 'insecure-skip-tls-verify: true', 'tls-server-name: kubernetes', 'proxy-url: http://p:1', 'disable-compression: true'];
const OPTIONAL_USER = [
  'token: t',
  'tokenFile: /t',
  'username: a',
  'password: b',
  'client-certificate: c.crt',
  'client-key: c.key',
  'client-certificate-data: Yw==',
  'client-key-data: aw==',
  'as: jane',
  'as-groups: [g]',
  'as-user-extra: {k: [v]}',
  'auth-provider: {name: oidc}',
  'exec: {apiVersion: client.authentication.k8s.io/v1, command: plugin, args: [a], env: [{name: A, value: b}]}',
  'exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: ./p, interactiveMode: Never}',
];

const JSON_KEYS = ['metadata', 'spec', 'name', 'namespace', 'resourceVersion', 'labels', 'holderIdentity', 'leaseDurationSeconds', 'acquireTime', 'renewTime', 'status', 'token', 'clientCertificateData', 'clientKeyData', 'expirationTimestamp', 'kind', 'apiVersion', '__proto__', 'constructor'];

function randomJson(rng: Rng, depth: number): unknown {
  const kind = rng.int(depth > 3 ? 5 : 8);
  switch (kind) {
    case 0:
      return null;
    case 1:
      return rng.bool();
    case 2:
      return rng.pick([0, -1, 1.5, 1e308, 30, Number.MAX_SAFE_INTEGER]);
    case 3:
      return rng.pick(['', 'x', '2030-01-01T00:00:00.000000Z', 'garbage', 'client.authentication.k8s.io/v1', 'ExecCredential', '\u0000']);
    case 4:
      return rng.pick(['a', 'b']);
    case 5:
    case 6: {
      const obj: Record<string, unknown> = {};
      for (let n = rng.int(5); n > 0; n--) obj[rng.pick(JSON_KEYS)] = randomJson(rng, depth + 1);
      return obj;
    }
    default:
      return Array.from({ length: rng.int(4) }, () => randomJson(rng, depth + 1));
  }
}

export function runKubeAnswerCase(seed: number): void {
  const rng = new Rng(seed);
  const fail = (msg: string): never => {
    throw new FuzzViolation(`${msg} (seed ${seed})`);
  };

  // Kubeconfig text: a valid one with random optional fields, then maybe mutated; or fragments; or bytes.
  let text = '';
  const style = rng.int(10);
  if (style < 6) {
    const clusterLines = ['server: https://h:1', ...OPTIONAL_CLUSTER.filter(() => rng.bool(0.25))];
    const userLines = OPTIONAL_USER.filter(() => rng.bool(0.2));
    text = [
      'apiVersion: v1',
      'clusters:',
      '- name: k',
      '  cluster:',
      ...clusterLines.map((l) => `    ${l}`),
      'users:',
      '- name: u',
      '  user:',
      ...(userLines.length > 0 ? userLines.map((l) => `    ${l}`) : ['    {}']),
      'contexts:',
      '- name: c',
      '  context: {cluster: k, user: u}',
      'current-context: c',
      '',
    ].join('\n');
    if (style >= 3) {
      for (let n = rng.range(1, 3); n > 0; n--) {
        const at = rng.int(text.length + 1);
        const op = rng.int(3);
        if (op === 0) text = text.slice(0, at) + rng.pick(KUBECONFIG_FRAGMENTS) + text.slice(at);
        else if (op === 1) text = text.slice(0, at) + text.slice(at + rng.range(1, 20));
        else text = text.slice(0, at) + String.fromCharCode(rng.int(128)) + text.slice(at + 1);
      }
    }
  } else if (style < 9) {
    for (let n = rng.int(25); n > 0; n--) text += rng.pick(KUBECONFIG_FRAGMENTS);
  } else {
    text = Buffer.from(rng.bytes(rng.int(80))).toString('latin1');
  }
  const file = '/fuzz/kubeconfig';
  try {
    const cfg = parseKubeconfig(text, file);
    if (typeof cfg.server !== 'string' || cfg.server === '') fail('parsed a kubeconfig without a server');
  } catch (err) {
    if (!(err instanceof Error) || err.constructor !== Error || !err.message.startsWith(`invalid kubeconfig ${file}: `)) {
      fail(`kubeconfig: unexpected failure ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
    }
  }

  // ExecCredential output: JSON that is mostly shaped right, or bytes.
  const v1 = 'client.authentication.k8s.io/v1';
  const status = rng.bool(0.5)
    ? {
        ...(rng.bool(0.6) ? { token: rng.pick(['t', '', 7]) } : {}),
        ...(rng.bool(0.4) ? { clientCertificateData: rng.pick(['C', '', null]) } : {}),
        ...(rng.bool(0.4) ? { clientKeyData: rng.pick(['K', '']) } : {}),
        ...(rng.bool(0.4) ? { expirationTimestamp: rng.pick(['2030-01-01T00:00:00Z', 'soon', '', 5]) } : {}),
      }
    : randomJson(rng, 1);
  const doc = rng.bool(0.7) ? { apiVersion: rng.bool(0.8) ? v1 : 'v2', kind: 'ExecCredential', status } : randomJson(rng, 0);
  const output = rng.bool(0.9) ? JSON.stringify(doc) ?? '' : Buffer.from(rng.bytes(rng.int(40))).toString('latin1');
  try {
    const cred = parseExecCredential(output, v1);
    if (cred.token === undefined && cred.clientCertificateData === undefined) fail('ExecCredential without token or certificate accepted');
    if ((cred.clientCertificateData === undefined) !== (cred.clientKeyData === undefined)) fail('ExecCredential with half a certificate pair accepted');
    if (cred.expiresAtMs !== undefined && !Number.isFinite(cred.expiresAtMs)) fail('ExecCredential expiry is not finite');
  } catch (err) {
    if (!(err instanceof Error) || err.name !== 'Error') fail(`ExecCredential: unexpected failure ${String(err)}`);
  }

  // A Lease from any JSON object.
  const obj = randomJson(rng, 0);
  if (isMap(obj)) {
    let lease;
    try {
      lease = leaseFromApi(obj as LeaseObject);
    } catch (err) {
      return fail(`leaseFromApi threw ${String(err)}`);
    }
    if (typeof lease.name !== 'string' || typeof lease.namespace !== 'string' || typeof lease.resourceVersion !== 'string') fail('lease metadata not strings');
    if (Object.values(lease.labels).some((v) => typeof v !== 'string')) fail('lease label not a string');
    if (lease.holderIdentity !== undefined && typeof lease.holderIdentity !== 'string') fail('holderIdentity not a string');
    if (lease.leaseDurationSeconds !== undefined && typeof lease.leaseDurationSeconds !== 'number') fail('leaseDurationSeconds not a number');
    for (const t of [lease.renewTime, lease.acquireTime]) if (t !== undefined && Number.isNaN(t.getTime())) fail('invalid Date kept');
  }

  // Watch stream: the same lines whatever the chunking; only the bound fails it.
  const bound = rng.pick([4, 16, 64, 1024]);
  const parts: Buffer[] = [];
  for (let n = rng.int(12); n > 0; n--) parts.push(rng.bool(0.3) ? Buffer.from('\n') : Buffer.from(rng.bytes(rng.int(bound + 4))));
  const stream = Buffer.concat(parts);
  const split = (chunks: Buffer[]): { lines: string[]; error?: string } => {
    const s = new WatchLineSplitter(bound);
    const lines: string[] = [];
    try {
      for (const c of chunks) lines.push(...s.push(c));
    } catch (err) {
      return { lines, error: err instanceof Error ? err.message : String(err) };
    }
    return { lines };
  };
  const whole = split([stream]);
  const chunks: Buffer[] = [];
  for (let pos = 0; pos < stream.length; ) {
    const n = rng.range(1, 8);
    chunks.push(stream.subarray(pos, pos + n));
    pos += n;
  }
  const pieces = split(chunks);
  if ((whole.error === undefined) !== (pieces.error === undefined)) fail(`watch lines: chunking changed the outcome (${whole.error ?? 'ok'} / ${pieces.error ?? 'ok'})`);
  if (whole.error !== undefined && !/^a watch event is longer than \d+ bytes$/.test(whole.error)) fail(`watch lines: unexpected failure ${whole.error}`);
  if (whole.error === undefined && JSON.stringify(whole.lines) !== JSON.stringify(pieces.lines)) fail('watch lines: chunking changed the lines');
  if (whole.lines.some((l) => Buffer.byteLength(l) > bound * 3)) fail('watch lines: a line beyond the bound was returned');
}
