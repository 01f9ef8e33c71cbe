/**
 * How the Kubernetes client authenticates, against the fake apiserver over
 * real HTTPS: client certificates from files (and their rotation), server
 * name and verification settings, token files that rotate, exec credential
 * plugins (token and certificate, caching, expiry, 401, failures), basic
 * auth and impersonation headers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDevPki, type DevPki } from '../src/dev/pki.ts';
import { KubeClient } from '../src/kube/kube-client.ts';
import { loadKubeConfig } from '../src/kube/kube-config.ts';
import { KubeApiError, isNotFound } from '../src/kube/kube-errors.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';

let dir: string;
let pki: DevPki;
let api: FakeApiServer;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-auth-'));
  pki = await createDevPki(path.join(dir, 'pki'));
  api = await FakeApiServer.start({ pki, dir });
});

after(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

let configs = 0;

/** Writes a kubeconfig into its own directory (so relative paths can be tested) and returns its path. */
function writeConfig(cluster: string[], user: string[]): string {
  const sub = path.join(dir, `cfg-${++configs}`);
  mkdirSync(sub, { recursive: true });
  return api.writeKubeconfig(path.join(sub, 'kubeconfig'), { cluster, user });
}

const trusted = (): string[] => [`server: ${api.url}`, `certificate-authority: ${pki.ca.certPath}`];

/** A request that reaches the API: 404 for a lease that does not exist means it was authenticated. */
async function authenticated(kc: KubeClient): Promise<void> {
  await assert.rejects(kc.getLease('auth-tests', 'absent'), (err: unknown) => isNotFound(err));
}

async function status(kc: KubeClient): Promise<number> {
  try {
    await kc.getLease('auth-tests', 'absent');
    return 200;
  } catch (err) {
    assert.ok(err instanceof KubeApiError, String(err));
    return err.code;
  }
}

test('client certificate from files (relative to the kubeconfig), re-read after a minute: a rotated certificate is used', async () => {
  const first = await pki.client('cert-user-1');
  const second = await pki.client('cert-user-2');
  api.clientCertUsers.add('cert-user-1');
  api.clientCertUsers.add('cert-user-2');
  const file = writeConfig(trusted(), ['client-certificate: tls.crt', 'client-key: tls.key']);
  copyFileSync(first.certPath, path.join(path.dirname(file), 'tls.crt'));
  copyFileSync(first.keyPath, path.join(path.dirname(file), 'tls.key'));
  let now = 1_000_000;
  const kc = new KubeClient(loadKubeConfig({ kubeconfigPath: file }), { now: () => now });
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.clientCertCN, 'cert-user-1');
  assert.equal(api.requests.at(-1)?.headers.authorization, undefined);

  copyFileSync(second.certPath, path.join(path.dirname(file), 'tls.crt'));
  copyFileSync(second.keyPath, path.join(path.dirname(file), 'tls.key'));
  now += 30_000;
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.clientCertCN, 'cert-user-1', 'within the minute, the loaded certificate stays');
  now += 31_000;
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.clientCertCN, 'cert-user-2', 'after a minute, the new certificate is presented on a new connection');

  api.clientCertUsers.delete('cert-user-2');
  assert.equal(await status(kc), 401, 'a certificate the apiserver does not accept is a 401, not a crash');
  kc.close();
});

test('inline certificate data; a certificate the CA did not sign is not a client identity', async () => {
  const pair = await pki.client('inline-user');
  const foreign = await pki.otherClient('inline-user');
  api.clientCertUsers.add('inline-user');
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const ok = KubeClient.fromFlags({ kubeconfigPath: writeConfig([`server: ${api.url}`, `certificate-authority-data: ${b64(pki.ca.cert)}`], [`client-certificate-data: ${b64(pair.cert)}`, `client-key-data: ${b64(pair.key)}`]) });
  await authenticated(ok);
  assert.equal(api.requests.at(-1)?.clientCertCN, 'inline-user');
  const bad = KubeClient.fromFlags({ kubeconfigPath: writeConfig(trusted(), [`client-certificate-data: ${b64(foreign.cert)}`, `client-key-data: ${b64(foreign.key)}`]) });
  assert.equal(await status(bad), 401);
  assert.equal(api.requests.at(-1)?.clientCertCN, undefined);
  ok.close();
  bad.close();
});

test('server verification: tls-server-name is what the certificate must match; insecure-skip-tls-verify; an untrusted server is refused', async () => {
  const token = [`token: ${[...api.clientTokens][0]}`];
  await authenticated(KubeClient.fromFlags({ kubeconfigPath: writeConfig([...trusted(), 'tls-server-name: localhost'], token) }));
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: writeConfig([...trusted(), 'tls-server-name: wrong.example'], token) }).getLease('auth-tests', 'x'), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.code, 0);
    assert.match(err.message, /cannot reach the Kubernetes API: .*wrong\.example/);
    return true;
  });
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: writeConfig([`server: ${api.url}`], token) }).getLease('auth-tests', 'x'), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.match(err.message, /cannot reach the Kubernetes API: .*certificate/i);
    return true;
  });
  await authenticated(KubeClient.fromFlags({ kubeconfigPath: writeConfig([`server: ${api.url}`, 'insecure-skip-tls-verify: true'], token) }));
});

test('a kubeconfig tokenFile is re-read after a minute; a failed re-read keeps the last token', async () => {
  const file = writeConfig(trusted(), ['tokenFile: token']);
  const tokenPath = path.join(path.dirname(file), 'token');
  writeFileSync(tokenPath, 'rotating-1\n');
  api.clientTokens.add('rotating-1');
  api.clientTokens.add('rotating-2');
  let now = 5_000_000;
  const kc = new KubeClient(loadKubeConfig({ kubeconfigPath: file }), { now: () => now });
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer rotating-1');
  writeFileSync(tokenPath, 'rotating-2\n');
  now += 59_000;
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer rotating-1');
  now += 2_000;
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer rotating-2');
  rmSync(tokenPath);
  now += 61_000;
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer rotating-2');

  const missing = writeConfig(trusted(), ['tokenFile: nowhere']);
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: missing }).getLease('auth-tests', 'x'), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.code, 0);
    assert.match(err.message, /^get lease auth-tests\/x: cannot read .*nowhere: ENOENT/);
    return true;
  });
});

test('basic auth and impersonation headers are sent as client-go sends them', async () => {
  const basic = KubeClient.fromFlags({ kubeconfigPath: writeConfig(trusted(), ['username: admin', 'password: s3cret']) });
  assert.equal(await status(basic), 401);
  assert.equal(api.requests.at(-1)?.headers.authorization, `Basic ${Buffer.from('admin:s3cret').toString('base64')}`);
  const imp = KubeClient.fromFlags({
    kubeconfigPath: writeConfig(trusted(), [`token: ${[...api.clientTokens][0]}`, 'as: jane', 'as-uid: "42"', 'as-groups: [g1, g2]', 'as-user-extra: {"acme.io/scope": [a, b]}']),
  });
  await authenticated(imp);
  const headers = api.requests.at(-1)?.headers ?? {};
  assert.equal(headers['impersonate-user'], 'jane');
  assert.equal(headers['impersonate-uid'], '42');
  assert.equal(headers['impersonate-group'], 'g1, g2');
  assert.equal(headers['impersonate-extra-acme.io%2fscope'], 'a, b');
  assert.equal(headers['accept'], 'application/json');
});

/** An exec plugin: a Node script that logs KUBERNETES_EXEC_INFO and prints what `answer.json` holds. */
function writePlugin(): { dir: string; setAnswer: (status: unknown, exitCode?: number, apiVersion?: string, holdUntilReleased?: boolean) => void; release: () => void; answered: () => boolean; calls: () => Array<Record<string, unknown>> } {
  const pluginDir = mkdtempSync(path.join(dir, 'plugin-'));
  const script = path.join(pluginDir, 'plugin.cjs');
  writeFileSync(
    script,
    `const fs = require('node:fs');
const here = ${JSON.stringify(pluginDir)};
fs.appendFileSync(here + '/calls.log', JSON.stringify({ info: JSON.parse(process.env.KUBERNETES_EXEC_INFO), extra: process.env.PLUGIN_EXTRA, args: process.argv.slice(2) }) + '\\n');
const answer = JSON.parse(fs.readFileSync(here + '/answer.json', 'utf8'));
// With holdUntilReleased, the plugin answers only once the test creates the release file (or after 10 s), and says when it did.
for (let i = 0; answer.holdUntilReleased && !fs.existsSync(here + '/release') && i < 500; i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
if (answer.holdUntilReleased) fs.writeFileSync(here + '/answered', '');
if (answer.exitCode) { process.stderr.write('plugin says no\\n'); process.exit(answer.exitCode); }
process.stdout.write(JSON.stringify({ apiVersion: answer.apiVersion, kind: 'ExecCredential', status: answer.status }));
`,
  );
  chmodSync(script, 0o755);
  return {
    dir: pluginDir,
    setAnswer: (statusValue, exitCode = 0, apiVersion = 'client.authentication.k8s.io/v1', holdUntilReleased = false) =>
      writeFileSync(path.join(pluginDir, 'answer.json'), JSON.stringify({ status: statusValue, exitCode, apiVersion, holdUntilReleased })),
    release: () => writeFileSync(path.join(pluginDir, 'release'), ''),
    answered: () => existsSync(path.join(pluginDir, 'answered')),
    calls: () =>
      readFileSync(path.join(pluginDir, 'calls.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function execUser(pluginDir: string, extra: string[] = []): string[] {
  return [
    'exec:',
    '  apiVersion: client.authentication.k8s.io/v1',
    `  command: ${process.execPath}`,
    `  args: [${path.join(pluginDir, 'plugin.cjs')}, get-token]`,
    '  env: [{name: PLUGIN_EXTRA, value: from-kubeconfig}]',
    '  interactiveMode: Never',
    ...extra.map((l) => `  ${l}`),
  ];
}

test('exec plugin token: run once and cached, re-run after a 401 and after expiry; KUBERNETES_EXEC_INFO and env as client-go passes them', async () => {
  const plugin = writePlugin();
  plugin.setAnswer({ token: 'exec-token-1' });
  api.clientTokens.add('exec-token-1');
  const kc = KubeClient.fromFlags({ kubeconfigPath: writeConfig(trusted(), execUser(plugin.dir, ['provideClusterInfo: true'])) });
  await authenticated(kc);
  await authenticated(kc);
  assert.equal(kc.execPluginRuns, 1, 'a credential without expiry is reused');
  assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer exec-token-1');
  const [call] = plugin.calls();
  assert.deepEqual(call?.['args'], ['get-token']);
  assert.equal(call?.['extra'], 'from-kubeconfig');
  assert.deepEqual(call?.['info'], {
    kind: 'ExecCredential',
    apiVersion: 'client.authentication.k8s.io/v1',
    spec: { interactive: false, cluster: { server: api.url } },
  });

  // The apiserver stops accepting the token: that request fails with 401, the next one asks the plugin again.
  api.clientTokens.delete('exec-token-1');
  api.clientTokens.add('exec-token-2');
  plugin.setAnswer({ token: 'exec-token-2', expirationTimestamp: new Date(Date.now() - 1000).toISOString() });
  assert.equal(await status(kc), 401);
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer exec-token-2');
  assert.equal(kc.execPluginRuns, 2);
  // That credential has already expired: every request runs the plugin.
  await authenticated(kc);
  assert.equal(kc.execPluginRuns, 3);
});

test('exec plugin client certificate; a failing, missing or confused plugin fails the request with its reason', async () => {
  const pair = await pki.client('exec-cert-user');
  api.clientCertUsers.add('exec-cert-user');
  const plugin = writePlugin();
  plugin.setAnswer({ clientCertificateData: pair.cert, clientKeyData: pair.key });
  const kc = KubeClient.fromFlags({ kubeconfigPath: writeConfig(trusted(), execUser(plugin.dir)) });
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.clientCertCN, 'exec-cert-user');
  assert.equal(api.requests.at(-1)?.headers.authorization, undefined);
  assert.deepEqual(plugin.calls()[0]?.['info'], { kind: 'ExecCredential', apiVersion: 'client.authentication.k8s.io/v1', spec: { interactive: false } }, 'no cluster info unless provideClusterInfo');

  const failing = writePlugin();
  failing.setAnswer(undefined, 3);
  const before = api.requests.length;
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: writeConfig(trusted(), execUser(failing.dir)) }).getLease('auth-tests', 'x'), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.equal(err.code, 0);
    assert.match(err.message, /^get lease auth-tests\/x: exec credential plugin .*: failed \(.*\): plugin says no$/);
    return true;
  });
  assert.equal(api.requests.length, before, 'no request is sent without a credential');

  const confused = writePlugin();
  confused.setAnswer({ token: 't' }, 0, 'client.authentication.k8s.io/v1beta1');
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: writeConfig(trusted(), execUser(confused.dir)) }).getLease('auth-tests', 'x'), /returned apiVersion "client\.authentication\.k8s\.io\/v1beta1"/);

  const missing = writeConfig(trusted(), ['exec:', '  apiVersion: client.authentication.k8s.io/v1beta1', '  command: ./no-such-plugin', '  installHint: install it from example.com']);
  await assert.rejects(KubeClient.fromFlags({ kubeconfigPath: missing }).getLease('auth-tests', 'x'), (err: unknown) => {
    assert.ok(err instanceof KubeApiError);
    assert.match(err.message, new RegExp(`exec credential plugin ${path.dirname(missing).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/no-such-plugin: executable not found \\(install it from example\\.com\\)`));
    return true;
  });
});

test('a slow exec plugin does not hold a request past its deadline; its credential is used once it arrives', async () => {
  const plugin = writePlugin();
  plugin.setAnswer({ token: 'slow-token' }, 0, 'client.authentication.k8s.io/v1', true);
  api.clientTokens.add('slow-token');
  const kc = KubeClient.fromFlags({ kubeconfigPath: writeConfig(trusted(), execUser(plugin.dir)) });
  // The plugin cannot answer before it is released, so this deadline can only pass while it still runs.
  await assert.rejects(kc.getLease('auth-tests', 'x', { timeoutMs: 200 }), (err: unknown) => err instanceof KubeApiError && err.timedOut && /within 200 ms/.test(err.message));
  assert.equal(plugin.answered(), false, 'the request failed at its deadline, not once the plugin had answered');
  plugin.release();
  await authenticated(kc);
  assert.equal(api.requests.at(-1)?.headers.authorization, 'Bearer slow-token');
  assert.equal(kc.execPluginRuns, 1, 'the run the timed-out request started is the one the next request used');
});
