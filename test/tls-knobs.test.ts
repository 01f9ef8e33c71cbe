/**
 * --tls-min-version and --cipher-suites as a Go server applies them: to both
 * TLS listeners (the TCP frontend in either mode and the agent listener),
 * with the cipher list restricting TLS 1.2 only. Servers are built through
 * the CLI's flag → config mapping, on real sockets. Also: the TCP frontend
 * cannot be built without a client CA (ANP#853); --tls-reload-interval parses.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDevPki, type DevPki, type PemPair } from '../src/dev/pki.ts';
import { KonnectivityServer, type ServerConfig } from '../src/server/konnectivity-server.ts';
import { parseServerOptions } from '../src/server/server-options.ts';
import { serverConfigFromOptions } from '../src/cli/server-main.ts';
import { parseAgentOptions } from '../src/agent/agent-options.ts';
import { agentConfigFromOptions } from '../src/cli/agent-main.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { TlsMaterialError } from '../src/tls/pem.ts';

let pkiPromise: Promise<{ pki: DevPki; client: PemPair }> | null = null;
function sharedPki(): Promise<{ pki: DevPki; client: PemPair }> {
  pkiPromise ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'konnectivity-tls-knobs-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const pki = await createDevPki(dir);
    return { pki, client: await pki.client('system:kube-apiserver') };
  })();
  return pkiPromise;
}

interface Listeners {
  server: KonnectivityServer;
  frontendPort: number;
  agentPort: number;
}

/** A server from command-line flags (upstream's names), on loopback with ephemeral ports. */
async function serverFromFlags(t: TestContext, mode: 'grpc' | 'http-connect', flags: string[]): Promise<Listeners> {
  const { pki } = await sharedPki();
  const options = parseServerOptions(
    [
      `--mode=${mode}`,
      `--server-cert=${pki.server.certPath}`,
      `--server-key=${pki.server.keyPath}`,
      `--server-ca-cert=${pki.ca.certPath}`,
      `--cluster-cert=${pki.server.certPath}`,
      `--cluster-key=${pki.server.keyPath}`,
      ...flags,
    ],
    {},
  );
  const config = serverConfigFromOptions(options, silentLogger);
  assert.equal(config.frontend.transport, 'tcp');
  const loopback = { host: '127.0.0.1', port: 0 };
  const server = new KonnectivityServer({
    ...config,
    frontend: config.frontend.transport === 'tcp' ? { ...config.frontend, ...loopback } : config.frontend,
    agent: { ...config.agent, ...loopback },
    health: loopback,
    admin: loopback,
  } satisfies ServerConfig);
  const bound = await server.start();
  t.after(() => server.stop(0));
  return { server, frontendPort: Number(bound.frontend.split(':').at(-1)), agentPort: bound.agentPort };
}

interface Handshake {
  ok: boolean;
  version?: string | null;
  cipher?: string;
  error?: string;
}

/** One TLS handshake as a properly certified client; only version and cipher vary. */
async function handshake(port: number, alpn: string, options: tls.ConnectionOptions): Promise<Handshake> {
  const { pki, client } = await sharedPki();
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: client.cert, key: client.key, ALPNProtocols: [alpn], ...options });
    socket.once('secureConnect', () => {
      resolve({ ok: true, version: socket.getProtocol(), cipher: socket.getCipher().standardName });
      socket.destroy();
    });
    socket.once('error', (err: Error & { code?: string }) => resolve({ ok: false, error: `${err.code ?? ''} ${err.message}` }));
    socket.once('close', () => resolve({ ok: false, error: 'closed before the handshake completed' }));
  });
}

function listenersOf(mode: 'grpc' | 'http-connect', l: Listeners): Array<[string, number, string]> {
  return [
    [`${mode} frontend`, l.frontendPort, mode === 'grpc' ? 'h2' : 'http/1.1'],
    ['agent listener', l.agentPort, 'h2'],
  ];
}

for (const mode of ['grpc', 'http-connect'] as const) {
  test(`${mode}: --tls-min-version=VersionTLS13 refuses TLS 1.2-only clients on both listeners`, async (t) => {
    const l = await serverFromFlags(t, mode, ['--tls-min-version=VersionTLS13']);
    for (const [name, port, alpn] of listenersOf(mode, l)) {
      const old = await handshake(port, alpn, { maxVersion: 'TLSv1.2' });
      assert.equal(old.ok, false, `${name} accepted a TLS 1.2 client`);
      assert.match(old.error ?? '', /protocol version|unsupported protocol|ALERT/i, name);
      const modern = await handshake(port, alpn, {});
      assert.deepEqual([modern.ok, modern.version], [true, 'TLSv1.3'], `${name}: ${modern.error}`);
    }
  });

  test(`${mode}: without --tls-min-version both listeners take TLS 1.2 (upstream default) and refuse TLS 1.1`, async (t) => {
    const l = await serverFromFlags(t, mode, []);
    for (const [name, port, alpn] of listenersOf(mode, l)) {
      const v12 = await handshake(port, alpn, { maxVersion: 'TLSv1.2' });
      assert.deepEqual([v12.ok, v12.version], [true, 'TLSv1.2'], `${name}: ${v12.error}`);
      const v11 = await handshake(port, alpn, { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' });
      assert.equal(v11.ok, false, `${name} accepted a TLS 1.1 client`);
    }
  });

  test(`${mode}: --cipher-suites restricts TLS 1.2 on both listeners and leaves TLS 1.3 alone, as Go`, async (t) => {
    // The dev PKI is ECDSA, so only ECDHE-ECDSA suites can be negotiated at all.
    const l = await serverFromFlags(t, mode, ['--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384']);
    for (const [name, port, alpn] of listenersOf(mode, l)) {
      const outside = await handshake(port, alpn, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305' });
      assert.equal(outside.ok, false, `${name} negotiated a suite that is not in --cipher-suites: ${outside.cipher}`);
      assert.match(outside.error ?? '', /handshake failure|no shared cipher|ALERT/i, name);

      const offered = await handshake(port, alpn, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384' });
      assert.deepEqual([offered.ok, offered.cipher], [true, 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384'], `${name}: ${offered.error}`);

      // Go's list does not apply to TLS 1.3: any of its suites still works.
      const v13 = await handshake(port, alpn, { minVersion: 'TLSv1.3', ciphers: 'TLS_CHACHA20_POLY1305_SHA256' });
      assert.deepEqual([v13.ok, v13.version, v13.cipher], [true, 'TLSv1.3', 'TLS_CHACHA20_POLY1305_SHA256'], `${name}: ${v13.error}`);
    }
  });
}

test('--tls-min-version and --cipher-suites together: TLS 1.3 only, the list then has nothing to restrict', async (t) => {
  const l = await serverFromFlags(t, 'grpc', ['--tls-min-version=VersionTLS13', '--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384']);
  for (const [name, port, alpn] of listenersOf('grpc', l)) {
    assert.equal((await handshake(port, alpn, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' })).ok, false, name);
    assert.equal((await handshake(port, alpn, {})).version, 'TLSv1.3', name);
  }
});

test('the TCP frontend cannot be built without a client CA: it is always mTLS (ANP#853)', async () => {
  const { pki } = await sharedPki();
  const loopback = { host: '127.0.0.1', port: 0 };
  for (const mode of ['grpc', 'http-connect'] as const) {
    assert.throws(
      () =>
        new KonnectivityServer({
          mode,
          frontend: { transport: 'tcp', ...loopback, tls: { certPath: pki.server.certPath, keyPath: pki.server.keyPath } },
          agent: { ...loopback, tls: { certPath: pki.server.certPath, keyPath: pki.server.keyPath } },
          health: loopback,
          admin: loopback,
          serverId: 's',
          serverCount: 1,
          strategies: ['default'],
          keepaliveTimeMs: 3_600_000,
          frontendKeepaliveTimeMs: 3_600_000,
          backendDialTimeoutMs: 0,
          gracefulShutdownTimeoutMs: 0,
        }),
      (err: unknown) => err instanceof TlsMaterialError && /requires a client CA/.test(err.message),
    );
  }
});

test('a handshake that completed is not affected by a failing one on the same listener', async (t) => {
  // Sanity check of the probe itself: refusals are per connection.
  const l = await serverFromFlags(t, 'http-connect', ['--tls-min-version=VersionTLS13']);
  const { pki, client } = await sharedPki();
  const kept = tls.connect({ host: '127.0.0.1', port: l.frontendPort, servername: 'localhost', ca: pki.ca.cert, cert: client.cert, key: client.key });
  t.after(() => kept.destroy());
  await once(kept, 'secureConnect');
  assert.equal((await handshake(l.frontendPort, 'http/1.1', { maxVersion: 'TLSv1.2' })).ok, false);
  assert.equal(kept.destroyed, false);
});

test('--tls-reload-interval: default 2s, 0 disables, negative refused (server and agent)', async () => {
  const { pki } = await sharedPki();
  const serverArgs = [`--server-cert=${pki.server.certPath}`, `--server-key=${pki.server.keyPath}`, `--server-ca-cert=${pki.ca.certPath}`, `--cluster-cert=${pki.server.certPath}`, `--cluster-key=${pki.server.keyPath}`];
  assert.equal(parseServerOptions(serverArgs, {}).tlsReloadIntervalMs, 2_000);
  assert.equal(parseServerOptions([...serverArgs, '--tls-reload-interval=0'], {}).tlsReloadIntervalMs, 0);
  assert.equal(serverConfigFromOptions(parseServerOptions([...serverArgs, '--tls-reload-interval=1m30s'], {}), silentLogger).tlsReloadIntervalMs, 90_000);
  assert.throws(() => parseServerOptions([...serverArgs, '--tls-reload-interval=-1s'], {}), /--tls-reload-interval must be 0 \(disabled\) or more/);

  const agentArgs = [`--ca-cert=${pki.ca.certPath}`];
  assert.equal(parseAgentOptions(agentArgs, {}).tlsReloadIntervalMs, 2_000);
  assert.equal(agentConfigFromOptions(parseAgentOptions([...agentArgs, '--tls-reload-interval=0'], {})).tlsReloadIntervalMs, 0);
  assert.throws(() => parseAgentOptions([...agentArgs, '--tls-reload-interval=-5s'], {}), /--tls-reload-interval must be 0 \(disabled\) or more/);
});
