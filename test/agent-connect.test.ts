/**
 * The agent against a fake proxy-server over real TLS: the metadata and
 * header contract, TLS parameters, reconnects.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import type { SyncOutcome } from '../src/agent/server-link-set.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';
import { FakeProxyServer, deferred, tempFile, testAgentConfig, testPki, until } from './agent-fixtures.ts';

function recordSyncs(agent: KonnectivityAgent): Array<{ outcome: SyncOutcome; error?: string }> {
  const log: Array<{ outcome: SyncOutcome; error?: string }> = [];
  agent.onSync = (outcome, error) => log.push({ outcome, error: error?.message });
  return log;
}

test('Connect metadata: agentid, empty agentidentifiers, bearer token re-read per attempt, client cert', async () => {
  const pki = await testPki();
  const server = await FakeProxyServer.start({ serverID: 'server-a', requestClientCert: true });
  const tokenPath = tempFile('token', 'token-one');
  const agent = new KonnectivityAgent(
    testAgentConfig(pki, [server], {
      agentID: 'agent-xyz',
      serviceAccountTokenPath: tokenPath,
      agentCertPath: pki.clientCertPath,
      agentKeyPath: pki.clientKeyPath,
    }),
    { metrics: createAgentMetrics({ processMetrics: false }) },
  );
  try {
    await agent.start();
    const first = await server.stream(0);
    assert.equal(first.metadata('agentid'), 'agent-xyz');
    assert.equal(first.metadata('agentidentifiers'), '');
    assert.equal(first.metadata('authorization'), 'Bearer token-one');
    const peer = (first.call.socket as tls.TLSSocket).getPeerCertificate();
    assert.equal(peer.subject?.CN, 'agent');
    assert.equal((first.call.socket as tls.TLSSocket).getProtocol()?.startsWith('TLSv1.'), true);
    await until(() => agent.isReady);
    assert.deepEqual(agent.connectedServerIDs, ['server-a']);

    // Rotate the token, lose the connection: the reconnect carries the new file content.
    writeFileSync(tokenPath, 'token-two');
    server.dropConnections();
    const second = await server.stream(1);
    assert.equal(second.metadata('authorization'), 'Bearer token-two');
    await until(() => agent.isReady);

    // The content is not trimmed; a newline cannot travel in a header, so the attempt fails clearly.
    const syncs = recordSyncs(agent);
    writeFileSync(tokenPath, 'token-three\n');
    server.dropConnections();
    await until(() => syncs.some((s) => s.outcome === 'failed' && /non-printable byte 0x0a at offset 11/.test(s.error ?? '')));
    writeFileSync(tokenPath, 'token-three');
    const third = await server.stream(2);
    assert.equal(third.metadata('authorization'), 'Bearer token-three');
  } finally {
    await agent.stop();
    await server.close();
  }
});

test('agent identifiers are sent verbatim', async () => {
  const pki = await testPki();
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [server], { agentIdentifiers: 'host=node1&ipv4=10.0.0.5' }), {
    metrics: createAgentMetrics({ processMetrics: false }),
  });
  try {
    await agent.start();
    const s = await server.stream(0);
    assert.equal(s.metadata('agentidentifiers'), 'host=node1&ipv4=10.0.0.5');
    assert.equal(s.metadata('authorization'), undefined);
  } finally {
    await agent.stop();
    await server.close();
  }
});

test('missing or repeated serverid / servercount headers fail the connect, and the agent retries', async () => {
  const pki = await testPki();
  let mode: 'no-id' | 'two-ids' | 'no-count' | 'bad-count' | 'ok' = 'no-id';
  const server = await FakeProxyServer.start({
    serverID: 'server-a',
    headers: (): Record<string, string | string[]> => {
      switch (mode) {
        case 'no-id':
          return { servercount: '1' };
        case 'two-ids':
          return { serverid: ['x', 'y'], servercount: '1' };
        case 'no-count':
          return { serverid: 'server-a' };
        case 'bad-count':
          return { serverid: 'server-a', servercount: 'two' };
        case 'ok':
          return { serverid: 'server-a', servercount: '1' };
      }
    },
  });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [server]), { metrics: createAgentMetrics({ processMetrics: false }) });
  const syncs = recordSyncs(agent);
  const failedWith = async (text: string): Promise<void> => until(() => syncs.some((s) => s.outcome === 'failed' && s.error === text));
  try {
    await agent.start();
    await failedWith('expected one server ID in metadata, got 0');
    mode = 'two-ids';
    await failedWith('expected one server ID in metadata, got 2');
    mode = 'no-count';
    await failedWith('expected one server count, got 0');
    mode = 'bad-count';
    await until(() => syncs.some((s) => s.outcome === 'failed' && /invalid server count "two"/.test(s.error ?? '')));
    assert.equal(agent.isReady, false);
    mode = 'ok';
    await until(() => agent.isReady);
    assert.deepEqual(agent.connectedServerIDs, ['server-a']);
    // Failed attempts left no stream behind on the agent side.
    assert.equal(syncs.filter((s) => s.outcome === 'connected').length, 1);
  } finally {
    await agent.stop();
    await server.close();
  }
});

test('a call rejected before headers (auth failure) is retried', async () => {
  const pki = await testPki();
  let reject = true;
  const server = await FakeProxyServer.start({ serverID: 'server-a', headers: () => (reject ? null : { serverid: 'server-a', servercount: '1' }) });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [server]), { metrics: createAgentMetrics({ processMetrics: false }) });
  const syncs = recordSyncs(agent);
  try {
    await agent.start();
    await until(() => syncs.filter((s) => s.outcome === 'failed').length >= 2);
    assert.match(syncs[0]!.error ?? '', /Unauthenticated/);
    reject = false;
    await until(() => agent.isReady);
  } finally {
    await agent.stop();
    await server.close();
  }
});

test('TLS: server name is the proxy-server host, ALPN offers --alpn-proto values before h2; an untrusted server is refused', async () => {
  const pki = await testPki();
  // A raw TLS listener that only records the ClientHello's SNI and ALPN list.
  const hello = deferred<{ servername: string; protocols: string[] }>();
  const probe = tls.createServer({
    cert: pki.serverCertPem,
    key: pki.serverKeyPem,
    ALPNCallback: ({ servername, protocols }) => {
      hello.resolve({ servername, protocols });
      return 'h2';
    },
  });
  probe.on('secureConnection', (s) => s.destroy());
  probe.on('tlsClientError', () => {});
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  const agent = new KonnectivityAgent(
    { proxyServerHost: 'localhost', proxyServerPort: port, caCertPath: pki.caPath, agentID: 'agent-1', alpnProtocols: ['konnectivity', 'other'] },
    { metrics: createAgentMetrics({ processMetrics: false }) },
  );
  try {
    await agent.start();
    const seen = await hello.promise;
    assert.equal(seen.servername, 'localhost');
    assert.deepEqual(seen.protocols, ['konnectivity', 'other', 'h2']);
  } finally {
    await agent.stop();
    probe.close();
  }

  // A server whose certificate the configured CA did not sign is never used.
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  const untrusting = new KonnectivityAgent(testAgentConfig(pki, [server], { caCertPath: pki.otherCaPath }), {
    metrics: createAgentMetrics({ processMetrics: false }),
  });
  const syncs = recordSyncs(untrusting);
  try {
    await untrusting.start();
    await until(() => syncs.some((s) => s.outcome === 'failed'));
    assert.equal(server.streams.length, 0);
    assert.equal(untrusting.isReady, false);
  } finally {
    await untrusting.stop();
    await server.close();
  }
});

test('start fails fast without a CA file', async () => {
  const pki = await testPki();
  const server = await FakeProxyServer.start({ serverID: 'server-a' });
  try {
    await assert.rejects(new KonnectivityAgent(testAgentConfig(pki, [server], { caCertPath: '' })).start(), /--ca-cert is required/);
    await assert.rejects(new KonnectivityAgent(testAgentConfig(pki, [server], { caCertPath: '/nonexistent/ca.crt' })).start(), /ENOENT/);
  } finally {
    await server.close();
  }
});
