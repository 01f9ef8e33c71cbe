/**
 * Certificate rotation without restarts (konnectivity-ts; upstream loads its
 * TLS files once: ANP#801, the Kamaji CA-rotation outage). Files live in
 * kubelet-style secret volumes (`..data` symlink swapped atomically), on
 * real sockets:
 *  - a rotation to a new CA in the middle of a sha256-checked transfer
 *    drops no established tunnel; new connections use the new material; a
 *    frontend client certificate from the old CA is refused afterwards;
 *  - an agent that trusts only the old CA cannot reconnect after the server
 *    rotated, and reconnects by itself once its own CA file rotates (#801);
 *  - the carrying agent's own ca.crt / tls.crt / tls.key rotating in the
 *    middle of a sha256-checked transfer (with and without agent mTLS) drops
 *    no tunnel, and its next connection uses the new files;
 *  - a bad swap (key not matching the certificate, truncated CA) keeps the
 *    previous material serving, is logged and counted once;
 *  - polling picks changes up with no explicit trigger, and logs them;
 *  - --tls-min-version survives a reload; a TLS session from before a CA
 *    rotation cannot be resumed to skip the new client-CA check.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { createHash, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Registry } from 'prom-client';
import { createDevPki, type DevPki, type PemPair } from '../src/dev/pki.ts';
import { KonnectivityServer, type ServerConfig } from '../src/server/konnectivity-server.ts';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { createTunnel } from '../src/client/create-tunnel.ts';
import { KonnectivityDialError } from '../src/client/dial-error.ts';
import type { Tunnel, TunnelConnection, TunnelMode } from '../src/client/tunnel-options.ts';
import { createLogger, silentLogger, type Logger } from '../src/observability/logger.ts';
import { SecretVolume } from '../src/tls/secret-volume.ts';
import { randomPayload, readExactly, sha256 } from './helpers/payload.ts';
import { TcpTarget, echo } from './helpers/targets.ts';
import { deferred, waitFor } from './helpers/wait.ts';

const HOUR = 3_600_000;
/** How an agent's failed verification of the server certificate reads. */
const CERT_ERROR = /certificate|self.signed|verify/i;
const SERVER_NS = 'konnectivity_network_proxy_server_ts_';
const AGENT_NS = 'konnectivity_network_proxy_agent_ts_';

interface Pkis {
  dir: string;
  /** The CA in use before the rotation. */
  a: DevPki;
  /** The CA rotated to. */
  b: DevPki;
  apiserverA: PemPair;
  apiserverB: PemPair;
  agentA: PemPair;
  agentB: PemPair;
}

let pkisPromise: Promise<Pkis> | null = null;
function pkis(): Promise<Pkis> {
  pkisPromise ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'konnectivity-tls-reload-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const [a, b] = await Promise.all([createDevPki(path.join(dir, 'pki-a')), createDevPki(path.join(dir, 'pki-b'))]);
    return {
      dir,
      a,
      b,
      apiserverA: await a.client('system:kube-apiserver'),
      apiserverB: await b.client('system:kube-apiserver'),
      agentA: await a.client('konnectivity-agent'),
      agentB: await b.client('konnectivity-agent'),
    };
  })();
  return pkisPromise;
}

/** PEM certificates joined into one bundle (the dev PKI writes no final newline). */
function bundle(...pems: string[]): string {
  return pems.map((p) => p.trimEnd() + '\n').join('');
}

let volumeCount = 0;
async function volume(files: Record<string, string>): Promise<SecretVolume> {
  const { dir } = await pkis();
  return SecretVolume.create(path.join(dir, `volume-${++volumeCount}`), files);
}

/** The server's secret: serving cert/key for both listeners, and the CA for frontend (and optionally agent) client certs. */
function serverSecret(pki: DevPki): Record<string, string> {
  return { 'tls.crt': pki.server.cert, 'tls.key': pki.server.key, 'ca.crt': pki.ca.cert };
}

interface ServerSetup {
  mode?: TunnelMode;
  vol: SecretVolume;
  agentPort?: number;
  /** Require agent client certificates signed by the volume's ca.crt (--cluster-ca-cert). */
  agentMtls?: boolean;
  intervalMs?: number;
  logger?: Logger;
  minVersion?: tls.SecureVersion;
}

async function startServer(t: TestContext, s: ServerSetup): Promise<{ server: KonnectivityServer; frontendPort: number; agentPort: number }> {
  const loopback = { host: '127.0.0.1', port: 0 };
  const knobs = s.minVersion ? { minVersion: s.minVersion } : {};
  const servingFiles = { certPath: s.vol.path('tls.crt'), keyPath: s.vol.path('tls.key'), ...knobs };
  const config: ServerConfig = {
    mode: s.mode ?? 'grpc',
    frontend: { transport: 'tcp', ...loopback, tls: { ...servingFiles, clientCaPath: s.vol.path('ca.crt') } },
    agent: { host: '127.0.0.1', port: s.agentPort ?? 0, tls: { ...servingFiles, ...(s.agentMtls ? { clientCaPath: s.vol.path('ca.crt') } : {}) } },
    health: loopback,
    admin: loopback,
    serverId: randomUUID(),
    serverCount: 1,
    strategies: ['default'],
    keepaliveTimeMs: HOUR,
    frontendKeepaliveTimeMs: HOUR,
    backendDialTimeoutMs: 0,
    gracefulShutdownTimeoutMs: 0,
    tlsReloadIntervalMs: s.intervalMs ?? HOUR,
    logger: s.logger ?? silentLogger,
  };
  const server = new KonnectivityServer(config);
  const bound = await server.start();
  t.after(() => server.stop(0));
  return { server, frontendPort: Number(bound.frontend.split(':').at(-1)), agentPort: bound.agentPort };
}

interface AgentSetup {
  port: number;
  /** ca.crt, and tls.crt/tls.key when the agent presents a client certificate. */
  vol: SecretVolume;
  clientCert?: boolean;
  intervalMs?: number;
  logger?: Logger;
}

interface AgentHandle {
  agent: KonnectivityAgent;
  failures: () => number;
  lastError: () => Error | undefined;
}

async function startAgent(t: TestContext, a: AgentSetup): Promise<AgentHandle> {
  const agent = new KonnectivityAgent(
    {
      proxyServerHost: '127.0.0.1',
      proxyServerPort: a.port,
      caCertPath: a.vol.path('ca.crt'),
      ...(a.clientCert ? { agentCertPath: a.vol.path('tls.crt'), agentKeyPath: a.vol.path('tls.key') } : {}),
      agentID: randomUUID(),
      syncIntervalMs: 100,
      syncIntervalCapMs: 500,
      probeIntervalMs: 200,
      tlsReloadIntervalMs: a.intervalMs ?? HOUR,
    },
    { logger: a.logger ?? silentLogger },
  );
  let failures = 0;
  let lastError: Error | undefined;
  agent.onSync = (outcome, err) => {
    if (outcome === 'failed') {
      failures++;
      lastError = err;
    }
  };
  await agent.start();
  t.after(() => agent.stop());
  return { agent, failures: () => failures, lastError: () => lastError };
}

function tunnelTo(t: TestContext, mode: TunnelMode, port: number, trust: string, client: PemPair): Tunnel {
  const tunnel = createTunnel({ mode, transport: { host: '127.0.0.1', port, tls: { ca: trust, cert: client.cert, key: client.key } }, dialTimeoutMs: 10_000 });
  t.after(() => tunnel.close());
  return tunnel;
}

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const m = registry.getSingleMetric(name);
  if (!m) return undefined;
  const { values } = await m.get();
  return values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value;
}

async function echoes(socket: NodeJS.ReadWriteStream & { write(b: string): boolean }, text: string): Promise<void> {
  socket.write(text);
  assert.equal((await readExactly(socket as never, text.length)).toString(), text);
}

/** Raw TLS to the frontend as `client`; resolves with the bytes the server sent back before closing (0 = refused). */
function rawFrontendAttempt(port: number, trust: string, client: PemPair, first: string | Buffer, alpn: string, extra: tls.ConnectionOptions = {}): Promise<{ bytes: number; resumed: boolean; session?: Buffer }> {
  return new Promise((resolve) => {
    let bytes = 0;
    let resumed = false;
    let saved: Buffer | undefined;
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: trust, cert: client.cert, key: client.key, ALPNProtocols: [alpn], ...extra });
    socket.on('session', (s: Buffer) => (saved = s));
    socket.on('secureConnect', () => {
      resumed = socket.isSessionReused();
      socket.write(first);
    });
    socket.on('data', (c: Buffer) => {
      bytes += c.length;
      socket.end();
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve({ bytes, resumed, ...(saved ? { session: saved } : {}) }));
  });
}

/**
 * After a swap and `reloadTls()`, every listener uses the new files. The
 * directory watch may have reloaded them a moment earlier, so a check can
 * find them `unchanged` already; the reload counters tell how often.
 */
function assertRotated(outcome: Partial<Record<'agent' | 'frontend', string>>, listeners: Array<'agent' | 'frontend'> = ['agent', 'frontend']): void {
  for (const l of listeners) assert.match(String(outcome[l]), /^(reloaded|unchanged)$/, `${l}: ${outcome[l]}`);
}

interface HalfDoneTransfer {
  /** The download: 3 MiB of part 1 have arrived, part 2 is held back by the target. */
  download: TunnelConnection;
  /** An echo tunnel beside the download, checked once already. */
  interactive: TunnelConnection;
  echoTarget: TcpTarget;
  /** Lets the target send part 2, waits for the download to end, and checks every byte of both parts arrived in order. */
  finish(): Promise<void>;
}

/**
 * A transfer that is half done when a rotation happens, with an interactive
 * tunnel beside it, both over one tunnel: the target sends part 1 and holds
 * part 2 back until `finish()`, so the rotation lands mid-download and a
 * dropped or corrupted tunnel shows in the byte count and digest.
 * `rotation` names it in the messages ("before …", "across …").
 */
async function halfDoneTransfer(
  t: TestContext,
  via: { mode: TunnelMode; port: number; trust: string; client: PemPair },
  part2Bytes: number,
  rotation: string,
): Promise<HalfDoneTransfer> {
  const part1 = randomPayload(3 * 1024 * 1024);
  const part2 = Buffer.from(randomPayload(5 * 1024 * 1024).subarray(0, part2Bytes));
  const release = deferred();
  const transfer = await TcpTarget.start((c) => {
    c.socket.write(part1);
    void release.promise.then(() => c.socket.end(part2));
  });
  const echoTarget = await TcpTarget.start(echo);
  t.after(() => Promise.all([transfer.close(), echoTarget.close()]));
  const tunnel = tunnelTo(t, via.mode, via.port, via.trust, via.client);
  const download = await tunnel.dial('tcp', transfer.address);
  const interactive = await tunnel.dial('tcp', echoTarget.address);
  await echoes(interactive, `before ${rotation}`);
  const hash = createHash('sha256');
  let received = 0;
  const ended = deferred();
  download.on('data', (c: Buffer) => {
    hash.update(c);
    received += c.length;
  });
  download.once('end', () => ended.resolve());
  download.once('close', () => ended.resolve());
  await waitFor(() => received >= part1.length, 'part 1 of the transfer arrives');
  return {
    download,
    interactive,
    echoTarget,
    async finish() {
      release.resolve();
      await ended.promise;
      assert.equal(received, part1.length + part2.length, `bytes lost across ${rotation}`);
      assert.equal(hash.digest('hex'), sha256(Buffer.concat([part1, part2])), `transfer corrupted across ${rotation}`);
    },
  };
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: rotating to a new CA mid-transfer drops no established tunnel; new connections need the new CA`, async (t) => {
    const { a, b, apiserverA, apiserverB } = await pkis();
    const serverVol = await volume(serverSecret(a));
    const { server, frontendPort, agentPort } = await startServer(t, { mode, vol: serverVol });
    const agentVol = await volume({ 'ca.crt': a.ca.cert });
    const first = await startAgent(t, { port: agentPort, vol: agentVol });
    await waitFor(() => server.router.backendList.length === 1, 'the first agent connects');

    // A transfer that is half done when the rotation happens, over a tunnel from the old CA.
    const { download, interactive, echoTarget, finish } = await halfDoneTransfer(t, { mode, port: frontendPort, trust: a.ca.cert, client: apiserverA }, 2 * 1024 * 1024 + 17, 'the rotation');

    // Rotate the server's secret to CA B (serving cert, key and client CA) in one atomic swap.
    await serverVol.update(serverSecret(b));
    assertRotated(await server.reloadTls());
    assert.deepEqual(await server.reloadTls(), { agent: 'unchanged', frontend: 'unchanged' });

    await finish();
    await echoes(interactive, 'after the rotation');
    assert.equal(server.router.backendList.length, 1, 'the established agent connection was dropped');
    assert.equal(first.agent.isReady, true);

    // The frontend now refuses client certificates from the old CA, even for a client that trusts both CAs…
    const first_bytes = mode === 'grpc' ? H2_PREFACE : `CONNECT ${echoTarget.address} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const alpn = mode === 'grpc' ? 'h2' : 'http/1.1';
    assert.equal((await rawFrontendAttempt(frontendPort, bundle(a.ca.cert, b.ca.cert), apiserverA, first_bytes, alpn)).bytes, 0, 'old-CA client served after the rotation');
    await assert.rejects(tunnelTo(t, mode, frontendPort, bundle(a.ca.cert, b.ca.cert), apiserverA).dial('tcp', echoTarget.address), (err: unknown) => err instanceof KonnectivityDialError);
    // …and a client that trusts only the old CA cannot verify the new serving certificate.
    await assert.rejects(tunnelTo(t, mode, frontendPort, a.ca.cert, apiserverA).dial('tcp', echoTarget.address), (err: unknown) => err instanceof KonnectivityDialError);
    // A client of the new CA gets through, over the agent connection made before the rotation.
    const fresh = await tunnelTo(t, mode, frontendPort, b.ca.cert, apiserverB).dial('tcp', echoTarget.address);
    await echoes(fresh, 'new CA, old agent link');
    fresh.destroy();

    // ANP#801 without a restart: a new agent that trusts only the old CA fails…
    const lateVol = await volume({ 'ca.crt': a.ca.cert });
    const late = await startAgent(t, { port: agentPort, vol: lateVol });
    await waitFor(() => late.failures() >= 2, 'the old-CA agent fails to connect twice');
    assert.match(String(late.lastError()?.message), CERT_ERROR);
    assert.equal(server.router.backendList.length, 1);
    // …and connects by itself once its CA file rotates (no restart, no explicit reload).
    await lateVol.update({ 'ca.crt': b.ca.cert });
    await waitFor(() => server.router.backendList.length === 2, 'the agent connects with its rotated CA');
    assert.equal(await metric(late.agent.metrics.registry, AGENT_NS + 'tls_reloads_total', { tls_config: 'proxy-server', result: 'success' }), 1);

    const registry = server.metrics.registry;
    for (const listener of ['frontend', 'agent']) {
      assert.equal(await metric(registry, SERVER_NS + 'tls_reloads_total', { tls_config: listener, result: 'success' }), 1, listener);
      assert.equal(await metric(registry, SERVER_NS + 'tls_files_rejected', { tls_config: listener }), 0, listener);
      const expiry = await metric(registry, SERVER_NS + 'tls_certificate_expiry_timestamp_seconds', { tls_config: listener, certificate: 'serving' });
      assert.equal(expiry, new X509Certificate(b.server.cert).validToDate.getTime() / 1000, listener);
    }
    interactive.destroy();
    download.destroy();
  });
}

for (const agentMtls of [false, true]) {
  test(`the carrying agent's ca.crt, tls.crt and tls.key rotate mid-transfer${agentMtls ? ' (agent mTLS: --cluster-ca-cert)' : ''}: no tunnel dropped, the next connection uses the new files`, async (t) => {
    const { a, b, agentA, agentB, apiserverA } = await pkis();
    const serverVol = await volume(serverSecret(a));
    const first = await startServer(t, { vol: serverVol, agentMtls });
    const agentVol = await volume({ 'ca.crt': a.ca.cert, 'tls.crt': agentA.cert, 'tls.key': agentA.key });
    const carrier = await startAgent(t, { port: first.agentPort, vol: agentVol, clientCert: true, intervalMs: 50 });
    await waitFor(() => first.server.router.backendList.length === 1 && carrier.agent.connectedServerIDs.length === 1, 'the agent connects');
    const backendSerial = first.server.router.backendList[0]!.serial;

    // A transfer half done when the agent's secret rotates, and an interactive tunnel beside it.
    const { download, interactive, echoTarget, finish } = await halfDoneTransfer(t, { mode: 'grpc', port: first.frontendPort, trust: a.ca.cert, client: apiserverA }, 2 * 1024 * 1024 + 29, 'the agent rotation');

    // Kubernetes-style: one atomic ..data swap to CA B's bundle and a certificate and key from CA B.
    await agentVol.update({ 'ca.crt': b.ca.cert, 'tls.crt': agentB.cert, 'tls.key': agentB.key });
    const registry = carrier.agent.metrics.registry;
    for (let i = 0; (await metric(registry, AGENT_NS + 'tls_reloads_total', { tls_config: 'proxy-server', result: 'success' })) !== 1; i++) {
      if (i > 2000) assert.fail('the agent never reloaded its rotated files');
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(
      await metric(registry, AGENT_NS + 'tls_certificate_expiry_timestamp_seconds', { tls_config: 'proxy-server', certificate: 'client' }),
      new X509Certificate(agentB.cert).validToDate.getTime() / 1000,
      'the agent holds the new client certificate',
    );

    await finish();
    await echoes(interactive, 'after the agent rotation');
    // The same agent stream carried everything: no reconnect, no failure, 0 tunnels dropped.
    assert.deepEqual(first.server.router.backendList.map((x) => x.serial), [backendSerial]);
    assert.equal(carrier.failures(), 0);
    assert.equal(first.server.router.establishedCount, 1, 'the interactive tunnel is still established');
    interactive.destroy();
    download.destroy();

    // The next connection: the server moves to CA B only (serving certificate and agent client CA) and
    // restarts on the same port, so only the agent's new CA and new certificate can get it back.
    const reconnectErrors: string[] = [];
    const countFailure = carrier.agent.onSync;
    carrier.agent.onSync = (outcome, err) => {
      countFailure(outcome, err);
      if (err) reconnectErrors.push(err.message);
    };
    await serverVol.update(serverSecret(b));
    await first.server.stop(0);
    const second = await startServer(t, { vol: serverVol, agentMtls, agentPort: first.agentPort });
    await waitFor(() => second.server.router.backendList.length === 1, 'the agent reconnects with its rotated files');
    assert.equal(second.server.router.backendList[0]?.agentId, carrier.agent.config.agentID);
    // Attempts while the port was closed may fail with ECONNREFUSED; none may fail on TLS.
    for (const message of reconnectErrors) assert.match(message, /ECONNREFUSED/, 'a reconnect attempt failed on TLS');
    const fresh = await tunnelTo(t, 'grpc', second.frontendPort, b.ca.cert, (await pkis()).apiserverB).dial('tcp', echoTarget.address);
    await echoes(fresh, 'through the reconnected agent');
    fresh.destroy();
  });
}

test('ANP#801: an agent trusting only the old CA cannot reconnect after the server rotated, and reconnects once its CA and client certificate rotate', async (t) => {
  const { a, b, agentA, agentB } = await pkis();
  const serverVol = await volume(serverSecret(a));
  const first = await startServer(t, { vol: serverVol, agentMtls: true });
  const agentVol = await volume({ 'ca.crt': a.ca.cert, 'tls.crt': agentA.cert, 'tls.key': agentA.key });
  const { agent, failures, lastError } = await startAgent(t, { port: first.agentPort, vol: agentVol, clientCert: true });
  await waitFor(() => first.server.router.backendList.length === 1, 'the agent connects');
  const agentID = agent.config.agentID;

  // The server rotates (serving certificate and the CA for agent certificates): the established link stays.
  await serverVol.update(serverSecret(b));
  assertRotated(await first.server.reloadTls());
  assert.equal(first.server.router.backendList.length, 1);

  // The connection is lost (here: the server restarts on the same port with the rotated files).
  const before = failures();
  await first.server.stop(0);
  const second = await startServer(t, { vol: serverVol, agentMtls: true, agentPort: first.agentPort });
  // (Attempts while the port was closed fail with ECONNREFUSED; wait for the verification failure.)
  await waitFor(() => failures() >= before + 2 && CERT_ERROR.test(String(lastError()?.message)), 'the agent fails to reconnect with its old CA');
  assert.equal(second.server.router.backendList.length, 0);

  // Its secret rotates (CA bundle and client certificate): the same agent reconnects, no restart.
  await agentVol.update({ 'ca.crt': b.ca.cert, 'tls.crt': agentB.cert, 'tls.key': agentB.key });
  await waitFor(() => second.server.router.backendList.length === 1, 'the agent reconnects after its files rotated');
  // The server registers the stream when it sends its headers; the agent records it when they arrive.
  await waitFor(() => agent.connectedServerIDs.length === 1, 'the agent records the new server');
  assert.deepEqual(agent.connectedServerIDs, [second.server.config.serverId]);
  assert.equal(second.server.router.backendList[0]?.agentId, agentID);
});

test('a bad swap keeps the previous material serving: mismatched key, then a truncated CA; reported once each', async (t) => {
  const { a, b, apiserverA } = await pkis();
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ verbosity: 0, format: 'json', write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const serverVol = await volume(serverSecret(a));
  const { server, frontendPort, agentPort } = await startServer(t, { vol: serverVol, logger, mode: 'http-connect' });
  const echoTarget = await TcpTarget.start(echo);
  t.after(() => echoTarget.close());
  const registry = server.metrics.registry;

  // New certificate, old key: what a reader sees if cert and key are swapped one after the other.
  await serverVol.update({ 'tls.crt': b.server.cert, 'tls.key': a.server.key, 'ca.crt': b.ca.cert });
  assert.deepEqual(await server.reloadTls(), { agent: 'rejected', frontend: 'rejected' });
  assert.deepEqual(await server.reloadTls(), { agent: 'rejected', frontend: 'rejected' });
  const errors = lines.filter((l) => l['level'] === 'error');
  assert.equal(errors.length, 2, 'one error per listener, not one per check');
  for (const e of errors) assert.match(String(e['error']), /does not match the certificate/);
  for (const listener of ['frontend', 'agent']) {
    assert.equal(await metric(registry, SERVER_NS + 'tls_reloads_total', { tls_config: listener, result: 'failure' }), 1);
    assert.equal(await metric(registry, SERVER_NS + 'tls_files_rejected', { tls_config: listener }), 1);
  }

  // The old context still serves both listeners: an old-CA agent connects, an old-CA client tunnels through it.
  const agentVol = await volume({ 'ca.crt': a.ca.cert });
  await startAgent(t, { port: agentPort, vol: agentVol });
  await waitFor(() => server.router.backendList.length === 1, 'an old-CA agent connects while the bad files are on disk');
  const socket = await tunnelTo(t, 'http-connect', frontendPort, a.ca.cert, apiserverA).dial('tcp', echoTarget.address);
  await echoes(socket, 'still served by the previous context');
  socket.destroy();

  // A CA file cut short (a non-atomic write caught half-way) is refused too.
  const caText = b.ca.cert;
  await serverVol.update({ 'tls.crt': b.server.cert, 'tls.key': b.server.key, 'ca.crt': caText.slice(0, Math.floor(caText.length / 2)) });
  const partial = await server.reloadTls();
  assert.equal(partial.frontend, 'rejected');
  assertRotated(partial, ['agent']); // the agent listener does not read ca.crt here
  assert.match(String(lines.filter((l) => l['level'] === 'error').at(-1)?.['error']), /no END line|no PEM certificate/);

  // Finished writing: the next check loads it.
  const writer = await serverVol.writeInPlace('ca.crt', caText.slice(0, 10));
  await writer.finish(caText);
  assertRotated(await server.reloadTls());
  assert.equal(await metric(registry, SERVER_NS + 'tls_files_rejected', { tls_config: 'frontend' }), 0);
  // 2, or 3 when the directory watch caught the file half-written.
  assert.ok((await metric(registry, SERVER_NS + 'tls_reloads_total', { tls_config: 'frontend', result: 'failure' }))! >= 2);
  assert.equal(await metric(registry, SERVER_NS + 'tls_reloads_total', { tls_config: 'frontend', result: 'success' }), 1);
});

test('polling picks a swap up without any trigger, on the server and the agent, and logs the new certificate', async (t) => {
  const { a, b } = await pkis();
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ verbosity: 0, format: 'json', write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  const serverVol = await volume(serverSecret(a));
  const { server, agentPort } = await startServer(t, { vol: serverVol, intervalMs: 50, logger: logger.child({ component: 'server' }) });
  const agentVol = await volume({ 'ca.crt': a.ca.cert });
  const { agent } = await startAgent(t, { port: agentPort, vol: agentVol, intervalMs: 50, logger: logger.child({ component: 'agent' }) });
  await waitFor(() => server.router.backendList.length === 1, 'the agent connects');

  await serverVol.update(serverSecret(b));
  await agentVol.update({ 'ca.crt': bundle(a.ca.cert, b.ca.cert) });
  const reloaded = (component: string, config: string): Record<string, unknown> | undefined =>
    lines.find((l) => l['component'] === component && l['tls_config'] === config && String(l['msg']).startsWith('TLS material reloaded'));
  await waitFor(() => reloaded('server', 'frontend') !== undefined && reloaded('server', 'agent') !== undefined && reloaded('agent', 'proxy-server') !== undefined, 'all three reloads are logged');

  const serving = new X509Certificate(b.server.cert);
  const line = reloaded('server', 'agent')!;
  assert.equal(line['level'], 'info');
  assert.equal(line['subject'], 'CN=konnectivity-server');
  assert.equal(line['notAfter'], serving.validToDate.toISOString());
  assert.deepEqual(reloaded('agent', 'proxy-server')!['caSubjects'], ['CN=konnectivity-ts dev CA', 'CN=konnectivity-ts dev CA']);
  assert.equal(await metric(agent.metrics.registry, AGENT_NS + 'tls_reloads_total', { tls_config: 'proxy-server', result: 'success' }), 1);
  assert.equal(server.router.backendList.length, 1, 'the agent link survived both reloads');
});

test('--tls-min-version still applies after a reload', async (t) => {
  const { a, b, apiserverB } = await pkis();
  const serverVol = await volume(serverSecret(a));
  const { server, frontendPort, agentPort } = await startServer(t, { vol: serverVol, minVersion: 'TLSv1.3' });
  await serverVol.update(serverSecret(b));
  assertRotated(await server.reloadTls());
  for (const port of [frontendPort, agentPort]) {
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: b.ca.cert, cert: apiserverB.cert, key: apiserverB.key, maxVersion: 'TLSv1.2', ALPNProtocols: ['h2'] });
      s.once('secureConnect', () => {
        resolve(`connected with ${s.getProtocol()}`);
        s.destroy();
      });
      s.once('error', () => resolve('refused'));
    });
    assert.equal(outcome, 'refused', `port ${port}`);
  }
});

test('a TLS 1.2 session from before a client-CA rotation cannot be resumed to skip the new CA check', async (t) => {
  const { a, b, apiserverA } = await pkis();
  const serverVol = await volume(serverSecret(a));
  const { server, frontendPort } = await startServer(t, { vol: serverVol, mode: 'http-connect' });
  const echoTarget = await TcpTarget.start(echo);
  t.after(() => echoTarget.close());
  const head = `CONNECT ${echoTarget.address} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const trustBoth = bundle(a.ca.cert, b.ca.cert);

  const v12 = { maxVersion: 'TLSv1.2' } as const;
  const initial = await rawFrontendAttempt(frontendPort, trustBoth, apiserverA, head, 'http/1.1', v12);
  assert.ok(initial.bytes > 0 && initial.session, 'no session to resume');
  // Control: resumption works while nothing changed.
  const resumedBefore = await rawFrontendAttempt(frontendPort, trustBoth, apiserverA, head, 'http/1.1', { ...v12, session: initial.session! });
  assert.deepEqual([resumedBefore.resumed, resumedBefore.bytes > 0], [true, true]);

  await serverVol.update(serverSecret(b));
  assertRotated(await server.reloadTls());
  const resumedAfter = await rawFrontendAttempt(frontendPort, trustBoth, apiserverA, head, 'http/1.1', { ...v12, session: initial.session! });
  assert.deepEqual([resumedAfter.resumed, resumedAfter.bytes], [false, 0], 'an old-CA client got in by resuming a session');
});
