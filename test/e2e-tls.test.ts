/**
 * TLS and mTLS refusals on real sockets: the frontend's TCP listener (both
 * modes) refuses clients without a certificate or with one from another CA
 * before any tunnel exists; agents refuse a server they cannot verify; and
 * with a cluster CA configured, the agent listener refuses agents without a
 * valid client certificate.
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

for (const mode of ['grpc', 'http-connect'] as const) {
  const alpn = mode === 'grpc' ? ['h2'] : ['http/1.1'];

  for (const [what, cert] of [
    ['no client certificate', async () => undefined],
    ['a client certificate from another CA', async () => (await sharedPki()).otherClient('system:kube-apiserver')],
  ] as const satisfies ReadonlyArray<readonly [string, () => Promise<PemPair | undefined>]>) {
    test(`${mode} frontend over TCP refuses ${what}: the TLS handshake fails and no tunnel is made`, async (t) => {
      const cluster = await startCluster(t, { mode, frontendTransport: 'tcp' });
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

      if (pem) {
        // The client library reports it as a failed dial.
        const tunnel = createTunnel({
          mode,
          transport: { host: '127.0.0.1', port: frontendPort(cluster), tls: { ca: cluster.pki.ca.cert, cert: pem.cert, key: pem.key } },
          dialTimeoutMs: 10_000,
        });
        t.after(() => tunnel.close());
        await assert.rejects(tunnel.dial('tcp', dest.address), (err: unknown) => err instanceof KonnectivityDialError);
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

async function expectRefused(cluster: LocalCluster, agent: KonnectivityAgent, what: string): Promise<void> {
  const seen = countFailures(agent);
  await waitFor(() => seen.failures() >= 2, `${what}: two failed connection attempts`);
  assert.equal(cluster.server.router.backendList.length, 0, `${what}: the server registered the agent`);
  assert.equal(agent.isReady, false);
  await agent.stop();
}

test('an agent that does not trust the server\'s CA never connects', async (t: TestContext) => {
  const cluster = await startCluster(t, { mode: 'grpc', agents: 0 });
  const agent = await cluster.startAgent({ caCertPath: cluster.pki.otherCa.certPath });
  await expectRefused(cluster, agent, 'wrong CA');
});

test('with a cluster CA on the agent listener, only agents with a valid client certificate are accepted', async (t) => {
  const pki = await sharedPki();
  const cluster = await startCluster(t, {
    mode: 'grpc',
    agents: 0,
    server: { agent: { host: '127.0.0.1', port: 0, tls: { certPath: pki.server.certPath, keyPath: pki.server.keyPath, clientCaPath: pki.ca.certPath } } },
  });
  await expectRefused(cluster, await cluster.startAgent(), 'no client certificate');
  const foreign = await pki.otherClient('konnectivity-agent');
  await expectRefused(cluster, await cluster.startAgent({ agentCertPath: foreign.certPath, agentKeyPath: foreign.keyPath }), 'certificate from another CA');
  await assert.rejects(connectFakeAgent(cluster, { agentId: 'raw-no-cert' }));
  const expired = await pki.client('konnectivity-agent', { expired: true });
  await expectRefused(cluster, await cluster.startAgent({ agentCertPath: expired.certPath, agentKeyPath: expired.keyPath }), 'expired client certificate');

  const good = await pki.client('konnectivity-agent');
  await cluster.startAgent({ agentCertPath: good.certPath, agentKeyPath: good.keyPath });
  await cluster.waitForAgents(1);
  const dest = await TcpTarget.start(echo);
  t.after(() => dest.close());
  const socket = await openTunnel(t, cluster).dial('tcp', dest.address);
  socket.write('via an mTLS agent');
  assert.equal((await readExactly(socket, 17)).toString(), 'via an mTLS agent');
  socket.destroy();
});
