/**
 * Validation of TLS material before it is used, at startup and on reload:
 * PEM bundles (complete blocks, parseable certificates, glued bundles
 * handled), key pairs, the agent's material source, and the startup errors
 * a server or agent gives for bad files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { createDevPki, type DevPki } from '../src/dev/pki.ts';
import { parseCertificates, parseKeyPair, TlsMaterialError } from '../src/tls/pem.ts';
import { AgentTlsSource } from '../src/tls/agent-tls.ts';
import { SecretVolume } from '../src/tls/secret-volume.ts';
import { loadServerTlsOptions } from '../src/tls/server-tls.ts';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { silentLogger } from '../src/observability/logger.ts';

let shared: Promise<{ dir: string; a: DevPki; b: DevPki }> | null = null;
function pkis(): Promise<{ dir: string; a: DevPki; b: DevPki }> {
  shared ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'konnectivity-tls-material-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const [a, b] = await Promise.all([createDevPki(path.join(dir, 'a')), createDevPki(path.join(dir, 'b'))]);
    return { dir, a, b };
  })();
  return shared;
}

const isMaterialError = (pattern: RegExp) => (err: unknown) => err instanceof TlsMaterialError && pattern.test(err.message);

test('a CA bundle glued without a newline (cat of files without one) yields every certificate', async () => {
  const { a, b } = await pkis();
  assert.ok(!a.ca.cert.endsWith('\n'), 'the dev PKI was expected to write no final newline');
  const certs = parseCertificates(a.ca.cert + b.ca.cert, 'ca.crt');
  assert.equal(certs.length, 2);
  assert.notEqual(certs[0]!.fingerprint256, certs[1]!.fingerprint256);
});

test('PEM problems are refused with the file named: truncated, no certificate, undecodable', async () => {
  const { a } = await pkis();
  const pem = a.ca.cert;
  assert.throws(() => parseCertificates(pem.slice(0, pem.length - 30), '/etc/ca.crt'), isMaterialError(/\/etc\/ca\.crt.*no END line/));
  assert.throws(() => parseCertificates('', 'ca.crt'), isMaterialError(/no PEM certificate/));
  assert.throws(() => parseCertificates('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'ca.crt'), isMaterialError(/certificate #1 does not parse/));
  // A second, broken block is not skipped (upstream rejects malformed CA blocks, ANP#902).
  assert.throws(() => parseCertificates(pem + '\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'ca.crt'), isMaterialError(/certificate #2/));
  // Other block types and text around blocks are ignored, as Go's AppendCertsFromPEM does.
  assert.equal(parseCertificates(`# comment\n${a.ca.cert}\n${a.server.key}\n`, 'ca.crt').length, 1);
});

test('a key that does not belong to the certificate is refused; a matching pair passes', async () => {
  const { a, b } = await pkis();
  const pair = parseKeyPair(Buffer.from(a.server.cert), Buffer.from(a.server.key), 'tls.crt', 'tls.key');
  assert.equal(pair.chain.length, 1);
  assert.throws(() => parseKeyPair(Buffer.from(b.server.cert), Buffer.from(a.server.key), 'tls.crt', 'tls.key'), isMaterialError(/tls\.key does not match the certificate in tls\.crt/));
  assert.throws(() => parseKeyPair(Buffer.from(a.server.cert), Buffer.from('not a key'), 'tls.crt', 'tls.key'), isMaterialError(/no PEM private key/));
});

test('server startup refuses a mismatched pair and a malformed client CA', async () => {
  const { a, b } = await pkis();
  assert.throws(() => loadServerTlsOptions({ certPath: b.server.certPath, keyPath: a.server.keyPath }), isMaterialError(/does not match/));
  const vol = await SecretVolume.create(path.join((await pkis()).dir, 'bad-ca'), { 'ca.crt': a.ca.cert.slice(0, 100) });
  assert.throws(() => loadServerTlsOptions({ certPath: a.server.certPath, keyPath: a.server.keyPath, clientCaPath: vol.path('ca.crt') }), isMaterialError(/no END line/));
  const ok = loadServerTlsOptions({ certPath: a.server.certPath, keyPath: a.server.keyPath, clientCaPath: a.ca.certPath, minVersion: 'TLSv1.3' });
  assert.deepEqual([ok.requestCert, ok.rejectUnauthorized, ok.minVersion], [true, true, 'TLSv1.3']);
});

test('agent startup refuses a malformed CA and a missing --ca-cert, as upstream', async () => {
  const { dir, a } = await pkis();
  const vol = await SecretVolume.create(path.join(dir, 'agent-bad'), { 'ca.crt': 'garbage' });
  const base = { proxyServerHost: '127.0.0.1', proxyServerPort: 1, agentID: 'x' };
  await assert.rejects(new KonnectivityAgent({ ...base, caCertPath: vol.path('ca.crt') }).start(), isMaterialError(/no PEM certificate/));
  await assert.rejects(new KonnectivityAgent({ ...base, caCertPath: '' }).start(), /--ca-cert is required/);
  const mismatched = new KonnectivityAgent({ ...base, caCertPath: a.ca.certPath, agentCertPath: a.server.certPath, agentKeyPath: a.ca.keyPath });
  await assert.rejects(mismatched.start(), isMaterialError(/does not match/));
});

test('the agent material source: a bad swap keeps the old material; a good one is used for the next connection', async () => {
  const { dir, a, b } = await pkis();
  const clientA = await a.client('agent-a');
  const clientB = await b.client('agent-b');
  const vol = await SecretVolume.create(path.join(dir, 'agent-source'), { 'ca.crt': a.ca.cert, 'tls.crt': clientA.cert, 'tls.key': clientA.key });
  const registry = new Registry();
  const source = await AgentTlsSource.load(
    { caCertPath: vol.path('ca.crt'), agentCertPath: vol.path('tls.crt'), agentKeyPath: vol.path('tls.key'), alpnProtocols: ['konnectivity'] },
    { intervalMs: 60_000, logger: silentLogger, registry },
  );
  const initial = source.current;
  assert.deepEqual(initial.alpnProtocols, ['konnectivity']);
  assert.equal(await source.reload(), 'unchanged');

  await vol.update({ 'ca.crt': b.ca.cert, 'tls.crt': clientB.cert, 'tls.key': clientA.key });
  assert.equal(await source.reload(), 'rejected');
  assert.equal(await source.forConnection(), initial, 'half-rotated material was handed out');

  await vol.update({ 'ca.crt': b.ca.cert, 'tls.crt': clientB.cert, 'tls.key': clientB.key });
  const next = await source.forConnection();
  assert.notEqual(next, initial);
  assert.equal(parseCertificates(next.ca, 'ca').at(0)!.fingerprint256, parseCertificates(b.ca.cert, 'b').at(0)!.fingerprint256);
  assert.equal(parseCertificates(next.cert!, 'cert').at(0)!.fingerprint256, parseCertificates(clientB.cert, 'b').at(0)!.fingerprint256);
  const text = await registry.metrics();
  assert.match(text, /konnectivity_network_proxy_agent_ts_tls_reloads_total\{tls_config="proxy-server",result="failure"\} 1/);
  assert.match(text, /konnectivity_network_proxy_agent_ts_tls_reloads_total\{tls_config="proxy-server",result="success"\} 1/);
  assert.match(text, /konnectivity_network_proxy_agent_ts_tls_certificate_expiry_timestamp_seconds\{tls_config="proxy-server",certificate="client"\} \d+/);
  source.stop();
});

test('with reloading disabled (0) the agent material is read once, as upstream', async () => {
  const { dir, a, b } = await pkis();
  const vol = await SecretVolume.create(path.join(dir, 'agent-once'), { 'ca.crt': a.ca.cert });
  const source = await AgentTlsSource.load({ caCertPath: vol.path('ca.crt') }, { intervalMs: 0, logger: silentLogger });
  const initial = source.current;
  await vol.update({ 'ca.crt': b.ca.cert });
  assert.equal(await source.forConnection(), initial);
});
