import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { createDevPki, type DevPki, type PemPair } from '../src/dev/pki.ts';

let dir: string;
let pki: DevPki;
let creationMs: number;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'konnectivity-pki-'));
  const started = performance.now();
  pki = await createDevPki(path.join(dir, 'pki'), { serverHosts: ['proxy.example', '10.1.2.3', 'localhost'] });
  creationMs = performance.now() - started;
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface MtlsServer {
  port: number;
  host: string;
  /** CN of each client the server accepted. */
  accepted: string[];
  close(): Promise<void>;
}

/** A TLS echo server requiring client certificates from the dev CA, like the frontend listener. */
async function startMtlsServer(host = '127.0.0.1'): Promise<MtlsServer> {
  const accepted: string[] = [];
  const server = tls.createServer({ key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (socket) => {
    accepted.push(socket.getPeerCertificate().subject.CN as string);
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  server.on('tlsClientError', () => {});
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return { port, host, accepted, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

/**
 * Why a server trusting the dev CA would refuse this client certificate
 * (null if it would not). Node's server just drops refused clients, so the
 * reason is read from a server that does not reject.
 */
async function clientAuthorizationError(pair: PemPair): Promise<string | null> {
  const server = tls.createServer({ key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: false });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const secured = once(server, 'secureConnection') as Promise<[tls.TLSSocket]>;
    const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ca: pki.ca.cert, servername: 'localhost', ...clientOptions(pair) });
    client.on('error', () => {});
    const [socket] = await secured;
    client.destroy();
    socket.destroy();
    return socket.authorized ? null : String(socket.authorizationError);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Connects, sends a line, and resolves with the echo or rejects with the TLS error either side raised. */
async function echoOverTls(server: MtlsServer, options: tls.ConnectionOptions): Promise<string> {
  const socket = tls.connect({ host: server.host, port: server.port, ca: pki.ca.cert, ...options });
  return new Promise((resolve, reject) => {
    let received = '';
    socket.on('secureConnect', () => socket.write('ping\n'));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      if (received.endsWith('\n')) {
        socket.end();
        resolve(received);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed without echo (got ${JSON.stringify(received)})`)));
  });
}

function clientOptions(pair: PemPair): tls.ConnectionOptions {
  return { key: pair.key, cert: pair.cert };
}

describe('dev PKI material', () => {
  test('is generated well under a second', () => {
    assert.ok(creationMs < 1000, `took ${creationMs.toFixed(0)} ms`);
  });

  test('writes PEM files, keys readable by the owner only', async () => {
    for (const file of [pki.ca.certPath, pki.server.certPath, pki.otherCa.certPath]) {
      assert.match(file, /\.crt$/);
      assert.equal(path.dirname(file), pki.dir);
    }
    assert.match(pki.server.cert, /^-----BEGIN CERTIFICATE-----\n/);
    assert.match(pki.server.key, /^-----BEGIN PRIVATE KEY-----\n/);
    for (const keyPath of [pki.ca.keyPath, pki.server.keyPath, pki.otherCa.keyPath]) {
      assert.equal((await stat(keyPath)).mode & 0o777, 0o600, keyPath);
    }
  });

  test('the CA is a CA and signed the server certificate; the other CA did not', () => {
    const ca = new X509Certificate(pki.ca.cert);
    const otherCa = new X509Certificate(pki.otherCa.cert);
    const server = new X509Certificate(pki.server.cert);
    assert.equal(ca.ca, true);
    assert.equal(server.ca, false);
    assert.ok(server.checkIssued(ca));
    assert.ok(server.verify(ca.publicKey));
    assert.equal(server.checkIssued(otherCa), false);
    assert.notEqual(ca.subject, otherCa.subject);
    assert.equal(server.publicKey.asymmetricKeyType, 'ec');
  });

  test('the server certificate names localhost, 127.0.0.1, ::1 and the extra hosts once each', () => {
    const server = new X509Certificate(pki.server.cert);
    assert.equal(server.checkHost('localhost'), 'localhost');
    assert.equal(server.checkHost('proxy.example'), 'proxy.example');
    assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(server.checkIP('::1'), '::1');
    assert.equal(server.checkIP('10.1.2.3'), '10.1.2.3');
    assert.equal(server.checkHost('example.com'), undefined);
    assert.equal(server.subjectAltName?.split('localhost').length, 2, server.subjectAltName);
  });

  test('client certificates carry the CN and organizations asked for; file names are sanitised and unique', async () => {
    const first = await pki.client('system:konnectivity-server', { organizations: ['system:masters', 'a, "quoted" org'] });
    const second = await pki.client('system:konnectivity-server');
    const parsed = new X509Certificate(first.cert);
    assert.match(parsed.subject, /CN=system:konnectivity-server/);
    assert.match(parsed.subject, /O=system:masters/);
    assert.ok(parsed.checkIssued(new X509Certificate(pki.ca.cert)));
    assert.notEqual(first.certPath, second.certPath);
    assert.match(path.basename(first.certPath), /^[A-Za-z0-9._-]+\.crt$/);
  });
});

describe('dev PKI with real TLS on loopback', () => {
  test('mTLS with a client from the dev CA is accepted, verifying the server as localhost', async () => {
    const server = await startMtlsServer();
    try {
      const client = await pki.client('kube-apiserver');
      assert.equal(await echoOverTls(server, { ...clientOptions(client), servername: 'localhost' }), 'ping\n');
      assert.deepEqual(server.accepted, ['kube-apiserver']);
    } finally {
      await server.close();
    }
  });

  test('hostname verification passes for 127.0.0.1 (IP SAN) and an extra DNS SAN, fails for other names', async () => {
    const server = await startMtlsServer();
    try {
      const agent = clientOptions(await pki.client('konnectivity-agent'));
      assert.equal(await echoOverTls(server, agent), 'ping\n');
      assert.equal(await echoOverTls(server, { ...agent, servername: 'proxy.example' }), 'ping\n');
      await assert.rejects(echoOverTls(server, { ...agent, servername: 'example.com' }), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    } finally {
      await server.close();
    }
  });

  test('hostname verification passes for ::1 when IPv6 loopback exists', async (t) => {
    let server: MtlsServer;
    try {
      server = await startMtlsServer('::1');
    } catch {
      t.skip('no IPv6 loopback here');
      return;
    }
    try {
      assert.equal(await echoOverTls(server, clientOptions(await pki.client('v6'))), 'ping\n');
    } finally {
      await server.close();
    }
  });

  test('a client certificate from the unrelated CA is refused', async () => {
    const server = await startMtlsServer();
    try {
      const stranger = await pki.otherClient('kube-apiserver');
      await assert.rejects(echoOverTls(server, { ...clientOptions(stranger), servername: 'localhost' }));
      assert.deepEqual(server.accepted, []);
      assert.equal(await clientAuthorizationError(stranger), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
      assert.equal(await clientAuthorizationError(await pki.client('trusted')), null);
    } finally {
      await server.close();
    }
  });

  test('no client certificate and an expired client certificate are refused', async () => {
    const server = await startMtlsServer();
    try {
      await assert.rejects(echoOverTls(server, { servername: 'localhost' }));
      const expired = await pki.client('expired-agent', { expired: true });
      assert.ok(Date.parse(new X509Certificate(expired.cert).validTo) < Date.now());
      await assert.rejects(echoOverTls(server, { ...clientOptions(expired), servername: 'localhost' }));
      assert.deepEqual(server.accepted, []);
      assert.equal(await clientAuthorizationError(expired), 'CERT_HAS_EXPIRED');
    } finally {
      await server.close();
    }
  });

  test('a client trusting only the unrelated CA refuses the server; an expired server certificate is refused', async () => {
    const server = await startMtlsServer();
    try {
      const agent = clientOptions(await pki.client('agent'));
      // OpenSSL sends the CA from the server's trust store along, hence "self-signed in chain".
      await assert.rejects(echoOverTls(server, { ...agent, ca: pki.otherCa.cert }), (err: NodeJS.ErrnoException) =>
        /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/.test(String(err.code)),
      );
      assert.deepEqual(server.accepted, []);
    } finally {
      await server.close();
    }
    const expiredServer = await pki.serverCert({ expired: true });
    const plain = tls.createServer({ key: expiredServer.key, cert: expiredServer.cert }, (s) => s.end());
    plain.on('tlsClientError', () => {});
    plain.listen(0, '127.0.0.1');
    await once(plain, 'listening');
    try {
      const socket = tls.connect({ host: '127.0.0.1', port: (plain.address() as net.AddressInfo).port, ca: pki.ca.cert });
      const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
      assert.equal(err.code, 'CERT_HAS_EXPIRED');
    } finally {
      await new Promise<void>((resolve) => plain.close(() => resolve()));
    }
  });

  test('works with http2.createSecureServer and client certificates (ALPN h2)', async () => {
    const server = http2.createSecureServer({ key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true });
    server.on('stream', (stream) => {
      const peer = (stream.session?.socket as tls.TLSSocket).getPeerCertificate();
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`hello ${peer.subject.CN}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = await pki.client('grpc-frontend');
    const session = http2.connect(`https://127.0.0.1:${(server.address() as net.AddressInfo).port}`, {
      ca: pki.ca.cert,
      key: client.key,
      cert: client.cert,
      servername: 'localhost',
    });
    try {
      const request = session.request({ ':path': '/' });
      const [headers] = (await once(request, 'response')) as [http2.IncomingHttpHeaders];
      let body = '';
      request.setEncoding('utf8');
      for await (const chunk of request) body += chunk as string;
      assert.equal(headers[':status'], 200);
      assert.equal(body, 'hello grpc-frontend');
      assert.equal((session.socket as tls.TLSSocket).alpnProtocol, 'h2');
    } finally {
      session.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
