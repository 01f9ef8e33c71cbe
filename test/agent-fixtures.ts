/**
 * Test support for the agent tests: throwaway PKI, a fake proxy-server on
 * GrpcServer with real TLS, and small helpers for endpoints and hashes.
 */
import { createHash, webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { ServerHttp2Session } from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { GrpcServer, type GrpcServerCall } from '../src/grpc/grpc-server.ts';
import type { H2ServerSession } from '../src/grpc/h2-server-session.ts';
import type { Packet } from '../src/protocol/packet.ts';
import type { AgentConfig } from '../src/agent/agent-config.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface TestPki {
  dir: string;
  caPath: string;
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPath: string;
  clientKeyPath: string;
  /** A CA that did not sign anything we serve. */
  otherCaPath: string;
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function makeCa(name: string) {
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true)],
  });
  return { keys, cert };
}

async function makeLeaf(ca: Awaited<ReturnType<typeof makeCa>>, cn: string, serial: string) {
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${cn}`,
    issuer: ca.cert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingKey: ca.keys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
      ]),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

let cachedPki: Promise<TestPki> | null = null;

/** One PKI per test process: CA, server cert for localhost/127.0.0.1, client cert. */
export function testPki(): Promise<TestPki> {
  cachedPki ??= (async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kts-agent-pki-'));
    const ca = await makeCa('konnectivity-ts test CA');
    const other = await makeCa('unrelated CA');
    const server = await makeLeaf(ca, 'proxy-server', '02');
    const client = await makeLeaf(ca, 'agent', '03');
    const caPem = ca.cert.toString('pem');
    const write = (name: string, content: string): string => {
      const p = path.join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    return {
      dir,
      caPath: write('ca.crt', caPem),
      caPem,
      serverCertPem: server.certPem,
      serverKeyPem: server.keyPem,
      clientCertPath: write('agent.crt', client.certPem),
      clientKeyPath: write('agent.key', client.keyPem),
      otherCaPath: write('other-ca.crt', other.cert.toString('pem')),
    };
  })();
  return cachedPki;
}

/** One agent stream as the fake server sees it. */
export class FakeAgentStream {
  readonly call: GrpcServerCall;
  readonly received: Packet[] = [];
  /** Raw HTTP/2 DATA bytes from the agent, for byte-level assertions. */
  readonly rawBytes: Buffer[] = [];
  closed = false;
  private waiters: Array<{ match: (p: Packet) => boolean; resolve: (p: Packet) => void; from: number }> = [];
  private closeWaiters: Array<() => void> = [];

  constructor(call: GrpcServerCall) {
    this.call = call;
    call.stream.h2.on('data', (chunk: Buffer) => this.rawBytes.push(chunk));
    call.stream.onPacket = (p) => {
      this.received.push(p);
      const index = this.received.length - 1;
      this.waiters = this.waiters.filter((w) => {
        if (index >= w.from && w.match(p)) {
          w.resolve(p);
          return false;
        }
        return true;
      });
    };
    call.stream.onRemoteEnd = () => call.finish(0);
    call.stream.onClose = () => {
      this.closed = true;
      for (const w of this.closeWaiters) w();
      this.closeWaiters = [];
    };
  }

  metadata(key: string): string | string[] | undefined {
    return this.call.metadata[key];
  }

  send(packet: Packet): boolean {
    return this.call.stream.send(packet);
  }

  /** The first packet (from index `from` on) that matches. */
  waitFor<T extends Packet>(match: (p: Packet) => p is T, from?: number): Promise<T>;
  waitFor(match: (p: Packet) => boolean, from?: number): Promise<Packet>;
  waitFor(match: (p: Packet) => boolean, from = 0): Promise<Packet> {
    for (let i = from; i < this.received.length; i++) {
      if (match(this.received[i]!)) return Promise.resolve(this.received[i]!);
    }
    return new Promise((resolve) => this.waiters.push({ match, resolve, from }));
  }

  waitClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }
}

export interface FakeProxyServerOptions {
  serverID: string;
  serverCount?: number;
  /** Override the response headers; return null to fail the call before headers. */
  headers?: (call: GrpcServerCall) => Record<string, string | string[]> | null;
  requestClientCert?: boolean;
  alpn?: string[];
}

/** A proxy-server stand-in: accepts Connect streams over TLS and records them. */
export class FakeProxyServer {
  readonly server: GrpcServer;
  readonly streams: FakeAgentStream[] = [];
  port = 0;
  private waiters: Array<(s: FakeAgentStream) => void> = [];
  attempts = 0;

  private readonly sessions: Set<ServerHttp2Session | H2ServerSession>;

  private constructor(server: GrpcServer, sessions: Set<ServerHttp2Session | H2ServerSession>) {
    this.server = server;
    this.sessions = sessions;
  }

  static async start(options: FakeProxyServerOptions): Promise<FakeProxyServer> {
    const pki = await testPki();
    let self: FakeProxyServer | null = null;
    const sessions = new Set<ServerHttp2Session | H2ServerSession>();
    const server = new GrpcServer({
      keepaliveTimeMs: 0,
      onSession: (session) => {
        sessions.add(session);
        session.once('close', () => sessions.delete(session));
      },
      tls: {
        cert: pki.serverCertPem,
        key: pki.serverKeyPem,
        ca: pki.caPem,
        requestCert: options.requestClientCert ?? false,
        rejectUnauthorized: options.requestClientCert ?? false,
      },
      handlers: {
        '/AgentService/Connect': (call) => {
          const me = self!;
          me.attempts++;
          const headers = options.headers ? options.headers(call) : { serverid: options.serverID, servercount: String(options.serverCount ?? 1) };
          if (headers === null) {
            call.finish(16, 'rejected by test');
            return;
          }
          // GrpcServerCall.sendHeaders takes strings; arrays reach Node as repeated header fields.
          call.sendHeaders(headers as Record<string, string>);
          const stream = new FakeAgentStream(call);
          me.streams.push(stream);
          const waiters = me.waiters;
          me.waiters = [];
          for (const w of waiters) w(stream);
        },
      },
    });
    self = new FakeProxyServer(server, sessions);
    server.listener.listen(0, '127.0.0.1');
    await once(server.listener, 'listening');
    self.port = (server.listener.address() as AddressInfo).port;
    return self;
  }

  /** The next stream to arrive (or the `index`-th overall when it already has). */
  stream(index: number): Promise<FakeAgentStream> {
    if (this.streams[index]) return Promise.resolve(this.streams[index]);
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.streams[index]) resolve(this.streams[index]);
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  /** Drops every agent connection (like a server restart, without releasing the port). */
  dropConnections(): void {
    for (const s of this.sessions) s.destroy();
  }

  async close(): Promise<void> {
    this.server.destroy();
    await new Promise<void>((resolve) => {
      if (!this.server.listener.listening) resolve();
      else this.server.listener.close(() => resolve());
    });
  }
}

/** A TCP endpoint on loopback that hands each accepted socket to `onSocket`. */
export async function startEndpoint(onSocket: (socket: Socket) => void): Promise<{ server: net.Server; port: number; address: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onSocket(s);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export function sha256(chunks: Iterable<Uint8Array> | Uint8Array): string {
  const h = createHash('sha256');
  if (chunks instanceof Uint8Array) h.update(chunks);
  else for (const c of chunks) h.update(c);
  return h.digest('hex');
}

/** Deterministic pseudo-random bytes (cheap, reproducible). */
export function patternBytes(size: number, seed: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

export function tempFile(name: string, content: string | Buffer): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-agent-'));
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
}

/** Resolves when `predicate` holds, re-checking on each turn of the event loop. No timing thresholds: tests rely on the runner's timeout. */
export async function until(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise((r) => setTimeout(r, 5));
}

/** Promise.withResolvers without needing the es2024 lib. */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** An agent config pointing at fake servers, with fast sync timing for tests. */
export function testAgentConfig(pki: TestPki, servers: readonly FakeProxyServer[], extra: Partial<AgentConfig> = {}): AgentConfig {
  return {
    proxyServerHost: '127.0.0.1',
    proxyServerPort: servers[0]!.port,
    additionalProxyServers: servers.slice(1).map((s) => ({ host: '127.0.0.1', port: s.port })),
    caCertPath: pki.caPath,
    agentID: 'agent-1',
    syncIntervalMs: 10,
    syncIntervalCapMs: 40,
    probeIntervalMs: 10,
    ...extra,
  };
}

/** A loopback port nothing listens on. */
export { closedPort as unusedPort } from '../src/dev/loopback-ports.ts';
