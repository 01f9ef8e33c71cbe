/**
 * Reading kubeconfig files as clientcmd does: the current context's cluster
 * and user, relative paths, inline data, and the combinations client-go
 * refuses or this client does not support, each with a message that names
 * the file and the problem. Also the watch stream's line splitter.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseKubeconfig, readKubeconfig } from '../src/kube/kubeconfig-file.ts';
import { parseExecCredential } from '../src/kube/exec-credential-plugin.ts';
import { WatchLineSplitter } from '../src/kube/watch-lines.ts';

let dir: string;

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'kubeconfig-'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** A kubeconfig with one context `c` joining cluster `k` and user `u`. */
function kubeconfig(cluster: string[], user: string[], extra: string[] = []): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: other',
    '  cluster: {server: "https://wrong:1"}',
    '- name: k',
    '  cluster:',
    ...cluster.map((l) => `    ${l}`),
    'users:',
    '- name: u',
    '  user:',
    ...(user.length > 0 ? user.map((l) => `    ${l}`) : ['    {}']),
    'contexts:',
    '- name: c',
    '  context: {cluster: k, user: u, namespace: ignored}',
    '- name: d',
    '  context: {cluster: other, user: nobody}',
    'current-context: c',
    ...extra,
    '',
  ].join('\n');
}

const file = (): string => path.join(dir, 'sub', 'config');

test('the current context picks the cluster and user; relative paths are against the file; -data is base64', () => {
  const cfg = parseKubeconfig(
    kubeconfig(['server: https://api.example:6443/', 'certificate-authority: ca.crt', 'tls-server-name: kubernetes'], ['client-certificate-data: ' + Buffer.from('CERT').toString('base64'), 'client-key: /abs/key.pem', 'token: t0k', 'tokenFile: token']),
    file(),
  );
  assert.equal(cfg.server, 'https://api.example:6443', 'a trailing slash is dropped so paths can be appended');
  assert.deepEqual(cfg.ca, { file: path.join(dir, 'sub', 'ca.crt') });
  assert.equal(cfg.tlsServerName, 'kubernetes');
  assert.equal(cfg.insecureSkipTlsVerify, false);
  assert.deepEqual(cfg.clientCertificate, { data: Buffer.from('CERT') });
  assert.deepEqual(cfg.clientKey, { file: '/abs/key.pem' });
  assert.deepEqual(cfg.credentials, { kind: 'token', token: 't0k', tokenFile: path.join(dir, 'sub', 'token') });
  assert.equal(cfg.source, file());
});

test('users: none, basic, token file, exec, impersonation; a context naming a user the file lacks is anonymous', () => {
  const server = ['server: https://h:1'];
  assert.deepEqual(parseKubeconfig(kubeconfig(server, []), file()).credentials, { kind: 'none' });
  assert.deepEqual(parseKubeconfig(kubeconfig(server, ['username: admin', 'password: secret']), file()).credentials, { kind: 'basic', username: 'admin', password: 'secret' });
  assert.deepEqual(parseKubeconfig(kubeconfig(server, ['tokenFile: /var/run/t']), file()).credentials, { kind: 'tokenFile', tokenFile: '/var/run/t' });
  const exec = parseKubeconfig(
    kubeconfig(server, ['exec:', '  apiVersion: client.authentication.k8s.io/v1', '  command: ./bin/plugin', '  args: [get-token, --x]', '  env: [{name: A, value: b}]', '  provideClusterInfo: true', '  interactiveMode: Never']),
    file(),
  ).credentials;
  assert.equal(exec.kind, 'exec');
  if (exec.kind === 'exec') {
    assert.equal(exec.exec.command, './bin/plugin');
    assert.equal(exec.exec.baseDir, path.join(dir, 'sub'));
    assert.deepEqual(exec.exec.args, ['get-token', '--x']);
    assert.deepEqual(exec.exec.env, [{ name: 'A', value: 'b' }]);
    assert.equal(exec.exec.provideClusterInfo, true);
  }
  const imp = parseKubeconfig(kubeconfig(server, ['token: t', 'as: jane', 'as-groups: [g1, g2]', 'as-user-extra: {scopes: [view]}']), file()).impersonate;
  assert.deepEqual(imp, { user: 'jane', uid: '', groups: ['g1', 'g2'], extra: { scopes: ['view'] } });
  const anonymous = parseKubeconfig(kubeconfig(server, ['token: t'], ['current-context: d']).replace('current-context: c\n', ''), file());
  assert.equal(anonymous.server, 'https://wrong:1');
  assert.deepEqual(anonymous.credentials, { kind: 'none' });
});

test('refused, each with the file and the reason', () => {
  const f = file();
  const bad = (text: string, pattern: RegExp): void => {
    assert.throws(() => parseKubeconfig(text, f), (err: unknown) => err instanceof Error && err.message.startsWith(`invalid kubeconfig ${f}: `) && pattern.test(err.message));
  };
  const server = ['server: https://h:1'];
  bad('{{{', /not YAML/);
  bad('- a\n- b\n', /must be a map/);
  bad(kubeconfig(server, []).replace('current-context: c', 'current-context: nope'), /no current context: context "nope" is not defined/);
  bad(kubeconfig(server, []).replace('current-context: c', ''), /no current context is set/);
  bad(kubeconfig(['insecure-skip-tls-verify: true'], []), /cluster k has no server/);
  bad(kubeconfig(['server: ftp://h'], []), /must be an https:\/\//);
  bad(kubeconfig(['server: not a url'], []), /is not a URL/);
  bad(kubeconfig([...server, 'proxy-url: http://proxy:3128'], []), /proxy-url is not supported/);
  bad(kubeconfig([...server, 'certificate-authority: a', 'certificate-authority-data: YQ=='], []), /certificate-authority-data and certificate-authority are both specified/);
  bad(kubeconfig([...server, 'certificate-authority: a', 'insecure-skip-tls-verify: true'], []), /root certificates file with the insecure flag is not allowed/);
  bad(kubeconfig([...server, 'insecure-skip-tls-verify: "yes"'], []), /insecure-skip-tls-verify must be true or false/);
  bad(kubeconfig(server, ['client-certificate: c']), /client-certificate and client-key must be set together/);
  bad(kubeconfig(server, ['token: t', 'username: u']), /username\/password or bearer token may be set, but not both/);
  bad(kubeconfig(server, ['auth-provider: {name: oidc}']), /auth-provider "oidc" is not supported; use an exec credential plugin/);
  bad(kubeconfig(server, ['token: t', 'exec: {apiVersion: client.authentication.k8s.io/v1, command: x}']), /exec and token may not both be set/);
  bad(kubeconfig(server, ['exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: x}']), /apiVersion "client\.authentication\.k8s\.io\/v1alpha1" is not supported/);
  bad(kubeconfig(server, ['exec: {apiVersion: client.authentication.k8s.io/v1}']), /exec\.command must be set/);
  bad(kubeconfig(server, ['exec: {apiVersion: client.authentication.k8s.io/v1, command: x, interactiveMode: Always}']), /interactiveMode Always needs a terminal/);
  bad(kubeconfig(server, ['as-groups: notalist']), /as-groups must be a list of strings/);
  assert.throws(() => readKubeconfig(path.join(dir, 'missing')), /invalid kubeconfig .*missing: ENOENT/);
  writeFileSync(path.join(dir, 'json.kubeconfig'), JSON.stringify({ 'current-context': 'c', contexts: [{ name: 'c', context: { cluster: 'k' } }], clusters: [{ name: 'k', cluster: { server: 'https://j:2' } }] }));
  assert.equal(readKubeconfig(path.join(dir, 'json.kubeconfig')).server, 'https://j:2', 'JSON is YAML too');
});

test('ExecCredential output: token or certificate pair, expiry, and what is refused', () => {
  const v1 = 'client.authentication.k8s.io/v1';
  const doc = (status: unknown, apiVersion = v1): string => JSON.stringify({ apiVersion, kind: 'ExecCredential', status });
  assert.deepEqual(parseExecCredential(doc({ token: 'abc', expirationTimestamp: '2030-01-01T00:00:00Z' }), v1), { token: 'abc', expiresAtMs: Date.parse('2030-01-01T00:00:00Z') });
  assert.deepEqual(parseExecCredential(doc({ clientCertificateData: 'C', clientKeyData: 'K' }), v1), { clientCertificateData: 'C', clientKeyData: 'K' });
  assert.throws(() => parseExecCredential('nope', v1), /not an ExecCredential/);
  assert.throws(() => parseExecCredential(doc({ token: 'a' }, 'client.authentication.k8s.io/v1beta1'), v1), /returned apiVersion "client\.authentication\.k8s\.io\/v1beta1", the kubeconfig asks for client\.authentication\.k8s\.io\/v1/);
  assert.throws(() => parseExecCredential(doc(undefined), v1), /has no status/);
  assert.throws(() => parseExecCredential(doc({}), v1), /neither status\.token nor status\.clientCertificateData/);
  assert.throws(() => parseExecCredential(doc({ clientCertificateData: 'C' }), v1), /must be set together/);
  assert.throws(() => parseExecCredential(doc({ token: 'a', expirationTimestamp: 'soon' }), v1), /"soon" is not a time/);
  assert.throws(() => parseExecCredential(doc({ token: 7 }), v1), /status\.token must be a string/);
});

test('watch lines: split across chunks, blank lines skipped, a line over the bound refused', () => {
  const s = new WatchLineSplitter(16);
  assert.deepEqual(s.push(Buffer.from('{"a":1}\n{"b"')), ['{"a":1}']);
  assert.deepEqual(s.push(Buffer.from(':2}\n\n')), ['{"b":2}']);
  assert.deepEqual(s.push(Buffer.from([0xc3])), []);
  assert.deepEqual(s.push(Buffer.from([0xa9, 0x0a])), ['é'], 'a character split across chunks is joined before decoding');
  assert.throws(() => s.push(Buffer.from('x'.repeat(17))), /longer than 16 bytes/);
  const t = new WatchLineSplitter(16);
  t.push(Buffer.from('x'.repeat(10)));
  assert.throws(() => t.push(Buffer.from('y'.repeat(7))), /longer than 16 bytes/, 'the bound counts the held part too');
});
