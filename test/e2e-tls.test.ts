/**
 * TLS and mTLS refusals on real sockets: the frontend's TCP listener (both
 * modes) refuses clients without a certificate or with one from another CA
 * before any tunnel exists; agents refuse a server they cannot verify; and
 * with a cluster CA configured, the agent listener refuses agents without a
 * valid client certificate. Each refusal is explained on both sides: the
 * agent's error names the TLS failure it saw (not just "stream closed"), the
 * server logs the peer and the reason at -v=2 and counts it in
 * konnectivity_network_proxy_server_ts_tls_handshake_failures_total.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import type { TestContext } from 'node:test';
import type { LocalCluster } from '../src/dev/local-cluster.ts';
import { createTunnel } from '../src/client/create-tunnel.ts';
import { KonnectivityDialError } from '../src/client/dial-error.ts';
import type { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import type { PemPair } from '../src/dev/pki.ts';
import { createLogger, type Logger } from '../src/observability/logger.ts';
import { connectHead, openTunnel, sharedPki, startCluster } from './helpers/cluster.ts';
import { readExactly } from './helpers/payload.ts';
import { connectFakeAgent } from './helpers/raw-grpc.ts';
import { TcpTarget, echo } from './helpers/targets.ts';
import { waitFor } from './helpers/wait.ts';

function frontendPort(cluster: LocalCluster): number {
  return Number(cluster.server.addresses.frontend.split(':').at(-1));
}

interface RawTlsOutcome {
  handshakeCompleted: boolean;
  bytesReceived: number;
  error: (Error & { code?: string }) | null;
}

/**
 * Connects with raw TLS, sends what a real client would send first, and
 * reports what came back before the connection closed.
 */
function rawTlsAttempt(port: number, options: tls.ConnectionOptions, firstBytes: string | Buffer): Promise<RawTlsOutcome> {
  return new Promise((resolve) => {
    const outcome: RawTlsOutcome = { handshakeCompleted: false, bytesReceived: 0, error: null };
    const socket = tls.connect({ host: '127.0.0.1', port, ...options });
    socket.on('secureConnect', () => {
      outcome.handshakeCompleted = true;
      socket.write(firstBytes);
    });
    socket.on('data', (c: Buffer) => (outcome.bytesReceived += c.length));
    socket.on('error', (err: Error) => (outcome.error ??= err));
    socket.on('close', () => resolve(outcome));
  });
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

type LogLine = Record<string, unknown>;

/** A -v=2 logger that keeps every line, for the server's side of a refusal. */
function recordingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { logger: createLogger({ verbosity: 2, format: 'json', write: (line) => lines.push(JSON.parse(line) as LogLine) }), lines };
}

async function handshakeFailures(cluster: LocalCluster, listener: 'agent' | 'frontend'): Promise<number | undefined> {
  const { values } = await cluster.server.metrics.tlsHandshakeFailures.get();
  return values.find((v) => v.labels.listener === listener)?.value;
}

/** waitFor for conditions that need a metric read (prom-client's get() is async). */
async function eventually(condition: () => Promise<boolean>, what: string, deadlineMs = 20_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function handshakeLogLines(lines: readonly LogLine[], listener: 'agent' | 'frontend'): LogLine[] {
  return lines.filter((l) => l['msg'] === `${listener} TLS handshake failed`);
}

for (const mode of ['grpc', 'http-connect'] as const) {
  const alpn = mode === 'grpc' ? ['h2'] : ['http/1.1'];

  for (const [what, cert] of [
    ['no client certificate', async () => undefined],
    ['a client certificate from another CA', async () => (await sharedPki()).otherClient('system:kube-apiserver')],
  ] as const satisfies ReadonlyArray<readonly [string, () => Promise<PemPair | undefined>]>) {
    test(`${mode} frontend over TCP refuses ${what}: the TLS handshake fails, is logged and counted, and no tunnel is made`, async (t) => {
      const { logger, lines } = recordingLogger();
      const cluster = await startCluster(t, { mode, frontendTransport: 'tcp', logger });
      assert.equal(await handshakeFailures(cluster, 'frontend'), 0);
      const dest = await TcpTarget.start(echo);
      t.after(() => dest.close());
      const pem = await cert();
      const outcome = await rawTlsAttempt(
        frontendPort(cluster),
        { ca: cluster.pki.ca.cert, ALPNProtocols: alpn, ...(pem ? { cert: pem.cert, key: pem.key } : {}) },
        mode === 'grpc' ? H2_PREFACE : connectHead(dest.address),
      );
      // TLS 1.3: the client's side of the handshake completes first; the server then
      // refuses (an alert for a missing certificate, a plain close for an unknown CA).
      assert.equal(outcome.bytesReceived, 0, 'the server answered a client it should have refused');
      if (outcome.error) assert.match(String(outcome.error.code ?? outcome.error.message), /CERTIFICATE_REQUIRED|UNKNOWN_CA|BAD_CERTIFICATE|ALERT|ECONNRESET/i);
      else assert.ok(pem, 'a client without a certificate should get the certificate_required alert');
      await eventually(async () => (await handshakeFailures(cluster, 'frontend')) === 1, 'the refused handshake is counted');
      // The server says why: OpenSSL's reason for a missing certificate, Node's verification result for a foreign one.
      const serverReason = pem ? /unable to verify the first certificate \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/ : /peer did not return a certificate/;
      // Both frontends: one line, with the peer's address and the reason.
      const [line, ...more] = handshakeLogLines(lines, 'frontend');
      assert.equal(more.length, 0);
      assert.equal(line?.['v'], 2);
      assert.match(String(line?.['remoteAddress']), /^127\.0\.0\.1:\d+$/);
      assert.match(String(line?.['reason']), serverReason);

      if (pem) {
        // The client library reports it as a failed dial.
        const tunnel = createTunnel({
          mode,
          transport: { host: '127.0.0.1', port: frontendPort(cluster), tls: { ca: cluster.pki.ca.cert, cert: pem.cert, key: pem.key } },
          dialTimeoutMs: 10_000,
        });
        t.after(() => tunnel.close());
        await assert.rejects(tunnel.dial('tcp', dest.address), (err: unknown) => {
          assert.ok(err instanceof KonnectivityDialError);
          // gRPC: the client's error says the server closed on it right after the handshake, and names its certificate.
          if (mode === 'grpc') assert.match(err.message, /error reading server preface: EOF \(the server closed the connection right after the TLS handshake, as a server does that rejects the client certificate; ours is CN=system:kube-apiserver, issued by CN=konnectivity-ts unrelated dev CA\)/);
          return true;
        });
      }
      assert.equal(dest.connections.all.length, 0);
      assert.equal(cluster.server.router.pendingDialCount, 0);
      assert.equal(cluster.server.router.establishedCount, 0);

      // A properly certified client is still served.
      const socket = await openTunnel(t, cluster).dial('tcp', dest.address);
      socket.write('ok');
      assert.equal((await readExactly(socket, 2)).toString(), 'ok');
      socket.destroy();
    });
  }

  test(`${mode} client refuses a frontend whose certificate it cannot verify`, async (t) => {
    const cluster = await startCluster(t, { mode, frontendTransport: 'tcp' });
    const tunnel = createTunnel({
      mode,
      transport: { host: '127.0.0.1', port: frontendPort(cluster), tls: { ca: cluster.pki.otherCa.cert, cert: cluster.frontendClient.cert, key: cluster.frontendClient.key } },
      dialTimeoutMs: 10_000,
    });
    t.after(() => tunnel.close());
    await assert.rejects(tunnel.dial('tcp', '127.0.0.1:9'), (err: unknown) => err instanceof KonnectivityDialError);
    assert.equal(cluster.server.router.pendingDialCount, 0);
  });
}

/** Counts an agent's failed sync attempts (the agent keeps retrying). */
function countFailures(agent: KonnectivityAgent): { failures: () => number; lastError: () => Error | undefined } {
  let failures = 0;
  let lastError: Error | undefined;
  agent.onSync = (outcome, err) => {
    if (outcome === 'failed') {
      failures++;
      lastError = err;
    }
  };
  return { failures: () => failures, lastError: () => lastError };
}

interface Refusal {
  /** The agent's whole error text. */
  agentError: RegExp;
  /** The server's log line; absent when the server never sees a failed handshake of its own making. */
  serverReason?: RegExp;
}

/**
 * Two failed attempts, each explained: the agent's error carries the TLS
 * failure, and the server logged the peer and reason at -v=2 and counted it.
 */
async function expectRefused(cluster: LocalCluster, lines: LogLine[], agent: KonnectivityAgent, what: string, refusal: Refusal): Promise<void> {
  const seen = countFailures(agent);
  const linesBefore = handshakeLogLines(lines, 'agent').length;
  const countBefore = (await handshakeFailures(cluster, 'agent')) ?? 0;
  await waitFor(() => seen.failures() >= 2, `${what}: two failed connection attempts`);
  assert.equal(cluster.server.router.backendList.length, 0, `${what}: the server registered the agent`);
  assert.equal(agent.isReady, false);
  await agent.stop();
  assert.match(String(seen.lastError()?.message), refusal.agentError, `${what}: agent error`);
  if (refusal.serverReason) {
    // The agent can see its failure before the server has noticed the aborted handshake.
    await waitFor(() => handshakeLogLines(lines, 'agent').length - linesBefore >= 2, `${what}: two server log lines`);
    const logged = handshakeLogLines(lines, 'agent').slice(linesBefore);
    for (const line of logged) {
      assert.equal(line['v'], 2);
      assert.match(String(line['remoteAddress']), /^127\.0\.0\.1:\d+$/, `${what}: remote address`);
      assert.match(String(line['reason']), refusal.serverReason, `${what}: server reason`);
    }
    assert.ok((await handshakeFailures(cluster, 'agent'))! >= countBefore + 2, `${what}: counted`);
  }
}

/** grpc-go's wording for a transport that failed under the Connect stream. */
const unavailable = (desc: string): RegExp => new RegExp(`^rpc error: code = Unavailable desc = connection error: desc = "${desc}"$`);

test('an agent that does not trust the server\'s CA never connects, and says why; the server logs the aborted handshake', async (t: TestContext) => {
  const { logger, lines } = recordingLogger();
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0, logger });
  const agent = await cluster.startAgent({ caCertPath: cluster.pki.otherCa.certPath });
  await expectRefused(cluster, lines, agent, 'wrong CA', {
    agentError: unavailable('transport: authentication handshake failed: (self-signed certificate in certificate chain|unable to verify the first certificate)'),
    serverReason: /^client closed the connection during the handshake \(.*\), as one does that does not trust the server certificate$/,
  });
});

test('with a cluster CA on the agent listener, only agents with a valid client certificate are accepted; each refusal is explained on both sides', async (t) => {
  const pki = await sharedPki();
  const { logger, lines } = recordingLogger();
  const cluster = await startCluster(t, {
    mode: 'grpc',
    agents: 0,
    logger,
    server: { agent: { host: '127.0.0.1', port: 0, tls: { certPath: pki.server.certPath, keyPath: pki.server.keyPath, clientCaPath: pki.ca.certPath } } },
  });
  assert.equal(await handshakeFailures(cluster, 'agent'), 0);
  // TLS 1.3: the agent's handshake completes before the server checks its certificate, so the refusal is the first read.
  await expectRefused(cluster, lines, await cluster.startAgent(), 'no client certificate', {
    agentError: unavailable('error reading server preface: tlsv13 alert certificate required'),
    serverReason: /^peer did not return a certificate$/,
  });
  // Node refuses an unverifiable certificate by closing without an alert: the agent sees EOF and names its certificate.
  const foreign = await pki.otherClient('konnectivity-agent');
  await expectRefused(cluster, lines, await cluster.startAgent({ agentCertPath: foreign.certPath, agentKeyPath: foreign.keyPath }), 'certificate from another CA', {
    agentError: unavailable(
      String.raw`error reading server preface: EOF \(the server closed the connection right after the TLS handshake, as a server does that rejects the client certificate; ours is CN=konnectivity-agent, issued by CN=konnectivity-ts unrelated dev CA\)`,
    ),
    serverReason: /^client certificate rejected: unable to verify the first certificate \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)$/,
  });
  await assert.rejects(connectFakeAgent(cluster, { agentId: 'raw-no-cert' }), /tlsv13 alert certificate required/);
  const expired = await pki.client('konnectivity-agent', { expired: true });
  await expectRefused(cluster, lines, await cluster.startAgent({ agentCertPath: expired.certPath, agentKeyPath: expired.keyPath }), 'expired client certificate', {
    agentError: unavailable(String.raw`error reading server preface: EOF \(.*; ours is CN=konnectivity-agent, issued by CN=konnectivity-ts dev CA; it expired at [0-9T:.-]+Z\)`),
    serverReason: /^client certificate rejected: certificate has expired \(CERT_HAS_EXPIRED\)$/,
  });

  const good = await pki.client('konnectivity-agent');
  await cluster.startAgent({ agentCertPath: good.certPath, agentKeyPath: good.keyPath });
  await cluster.waitForAgents(1);
  const dest = await TcpTarget.start(echo);
  t.after(() => dest.close());
  const socket = await openTunnel(t, cluster).dial('tcp', dest.address);
  socket.write('via an mTLS agent');
  assert.equal((await readExactly(socket, 17)).toString(), 'via an mTLS agent');
  socket.destroy();
  const failures = (await handshakeFailures(cluster, 'agent'))!;
  assert.equal(failures, handshakeLogLines(lines, 'agent').length, 'one count per logged failure');
});

test('a bare TCP connection (a balancer health check) is neither counted nor logged as a failed handshake', async (t) => {
  const { logger, lines } = recordingLogger();
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0, logger });
  const { connect } = await import('node:net');
  for (let i = 0; i < 3; i++) {
    const probe = connect(cluster.server.addresses.agentPort, '127.0.0.1');
    probe.on('error', () => {});
    await new Promise<void>((resolve) => probe.once('connect', () => resolve()));
    probe.end();
    await new Promise<void>((resolve) => probe.once('close', () => resolve()));
  }
  // A real TLS client that gives up mid-handshake is counted, so the metric is live.
  await new Promise<void>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port: cluster.server.addresses.agentPort, ca: cluster.pki.otherCa.cert, ALPNProtocols: ['h2'] });
    s.on('error', () => {});
    s.on('close', () => resolve());
  });
  await eventually(async () => (await handshakeFailures(cluster, 'agent')) === 1, 'the TLS client that gave up is counted');
  assert.equal(handshakeLogLines(lines, 'agent').length, 1);
});
