/**
 * Test support for the client tests: a throwaway PKI, a scripted gRPC proxy
 * server (real GrpcServer on a unix socket or mTLS TCP) whose per-stream
 * behaviour each test writes, a scripted HTTP-CONNECT server on net/tls, and
 * stock scripts (echo, relay to a real TCP endpoint).
 */
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { GrpcServer, type GrpcServerCall } from '../src/grpc/grpc-server.ts';
import { GrpcCode } from '../src/grpc/status.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import type { ProxyTransport } from '../src/client/tunnel-options.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'kts-client-'));
}

// --- PKI ----------------------------------------------------------------------

export interface ClientTestPki {
  dir: string;
  caPem: string;
  caPath: string;
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  clientCertPath: string;
  clientKeyPath: string;
  /** A CA that signed nothing we serve. */
  otherCaPem: string;
}

const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
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
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  return { keys, cert };
}

async function makeLeaf(ca: Awaited<ReturnType<typeof makeCa>>, cn: string, serial: string, sans: x509.JsonGeneralName[], usage: x509.ExtendedKeyUsage) {
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
    extensions: [new x509.SubjectAlternativeNameExtension(sans), new x509.ExtendedKeyUsageExtension([usage])],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

let cachedPki: Promise<ClientTestPki> | null = null;

/** One PKI per test process. The server certificate names localhost, 127.0.0.1 and proxy.test. */
export function clientTestPki(): Promise<ClientTestPki> {
  cachedPki ??= (async () => {
    const dir = tempDir();
    const ca = await makeCa('konnectivity-ts client test CA');
    const other = await makeCa('unrelated CA');
    const server = await makeLeaf(ca, 'proxy-server', '02', [
      { type: 'dns', value: 'localhost' },
      { type: 'dns', value: 'proxy.test' },
      { type: 'ip', value: '127.0.0.1' },
    ], x509.ExtendedKeyUsage.serverAuth);
    const client = await makeLeaf(ca, 'kube-apiserver', '03', [{ type: 'dns', value: 'kube-apiserver' }], x509.ExtendedKeyUsage.clientAuth);
    const caPem = ca.cert.toString('pem');
    const caPath = path.join(dir, 'ca.crt');
    const clientCertPath = path.join(dir, 'client.crt');
    const clientKeyPath = path.join(dir, 'client.key');
    writeFileSync(caPath, caPem);
    writeFileSync(clientCertPath, client.certPem);
    writeFileSync(clientKeyPath, client.keyPem);
    return {
      dir,
      caPem,
      caPath,
      serverCertPem: server.certPem,
      serverKeyPem: server.keyPem,
      clientCertPem: client.certPem,
      clientKeyPem: client.keyPem,
      clientCertPath,
      clientKeyPath,
      otherCaPem: other.cert.toString('pem'),
    };
  })();
  return cachedPki;
}

function serverTls(pki: ClientTestPki) {
  return { ca: pki.caPem, cert: pki.serverCertPem, key: pki.serverKeyPem, requestCert: true, rejectUnauthorized: true };
}

// --- async inbox ----------------------------------------------------------------

/**
 * Items in arrival order. `next()` reads through them once; `cursor()` gives
 * an independent reader, so a fake server's script and the test can both
 * follow the same packets.
 */
export class Inbox<T> {
  readonly all: T[] = [];
  private readonly main: InboxCursor<T>;
  private waiters: Array<() => void> = [];

  constructor() {
    this.main = this.cursor();
  }

  push(item: T): void {
    this.all.push(item);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  next(): Promise<T> {
    return this.main.next();
  }

  /** Next item satisfying `pred`, skipping (and consuming) others. */
  nextMatching(pred: (item: T) => boolean): Promise<T> {
    return this.main.nextMatching(pred);
  }

  cursor(): InboxCursor<T> {
    let index = 0;
    const next = async (): Promise<T> => {
      while (index >= this.all.length) await new Promise<void>((resolve) => this.waiters.push(resolve));
      return this.all[index++]!;
    };
    return {
      next,
      async nextMatching(pred) {
        for (;;) {
          const item = await next();
          if (pred(item)) return item;
        }
      },
    };
  }
}

export interface InboxCursor<T> {
  next(): Promise<T>;
  nextMatching(pred: (item: T) => boolean): Promise<T>;
}

// --- scripted gRPC proxy server ----------------------------------------------------

export interface ProxyStreamHandle {
  call: GrpcServerCall;
  /** Packets the client sent on this stream. */
  inbox: Inbox<Packet>;
  /** Resolves when the client half-closed (END_STREAM). */
  remoteEnded: Promise<void>;
  /** Resolves when the HTTP/2 stream is gone. */
  closed: Promise<void>;
  /** Sends a packet (response headers go out first); returns false on backpressure. */
  send(packet: Packet): boolean;
}

export type ProxyScript = (stream: ProxyStreamHandle) => void;

export interface FakeProxy {
  transport: ProxyTransport;
  /** Every Proxy stream, in the order they were opened. */
  streams: Inbox<ProxyStreamHandle>;
  server: GrpcServer;
  close(): Promise<void>;
}

export interface FakeProxyOptions {
  /** 'unix' (default) or mTLS TCP on 127.0.0.1. */
  transport?: 'unix' | 'tls';
  /** TLS mode: the servername the client should verify (the server certificate names proxy.test). */
  servername?: string;
}

export async function startFakeProxy(script: ProxyScript, options: FakeProxyOptions = {}): Promise<FakeProxy> {
  const streams = new Inbox<ProxyStreamHandle>();
  const pki = options.transport === 'tls' ? await clientTestPki() : null;
  const server = new GrpcServer({
    keepaliveTimeMs: 0,
    ...(pki ? { tls: serverTls(pki) } : {}),
    handlers: {
      '/ProxyService/Proxy': (call) => {
        const inbox = new Inbox<Packet>();
        call.stream.onPacket = (p) => inbox.push(p);
        const remoteEnded = new Promise<void>((resolve) => {
          call.stream.onRemoteEnd = () => resolve();
        });
        const closed = new Promise<void>((resolve) => {
          call.stream.onClose = () => resolve();
        });
        const handle: ProxyStreamHandle = {
          call,
          inbox,
          remoteEnded,
          closed,
          send(packet) {
            call.sendHeaders();
            return call.stream.send(packet);
          },
        };
        // Like upstream: when the frontend stops sending, the handler returns with OK.
        void remoteEnded.then(() => call.finish(GrpcCode.OK));
        streams.push(handle);
        script(handle);
      },
    },
  });
  // GrpcServer reads its sockets eagerly (see src/grpc/eager-reading-socket.ts), like a Go server.
  const listener = server.listener;
  let transport: ProxyTransport;
  if (pki) {
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const port = (listener.address() as AddressInfo).port;
    transport = {
      host: '127.0.0.1',
      port,
      tls: { ca: pki.caPem, cert: pki.clientCertPem, key: pki.clientKeyPem, ...(options.servername ? { servername: options.servername } : {}) },
    };
  } else {
    const sock = path.join(tempDir(), 'proxy.sock');
    listener.listen(sock);
    await once(listener, 'listening');
    transport = { unix: sock };
  }
  return {
    transport,
    streams,
    server,
    async close() {
      server.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

/**
 * Stock agent behaviour on one stream: DIAL_RSP success with `connectID`,
 * echo every DATA (respecting backpressure), CLOSE_RSP on CLOSE_REQ.
 */
export function echoScript(connectID = 7n): ProxyScript {
  return (s) => {
    let random = 0n;
    const pending: Packet[] = [];
    let blocked = false;
    const flush = (): void => {
      while (pending.length > 0 && !blocked) {
        if (!s.send(pending.shift()!)) blocked = true;
      }
      if (blocked) s.call.stream.pauseReceive();
    };
    s.call.stream.onDrain = () => {
      blocked = false;
      flush();
      if (!blocked) s.call.stream.resumeReceive();
    };
    s.call.stream.onPacket = (p) => {
      s.inbox.push(p);
      switch (p.type) {
        case PacketType.DIAL_REQ:
          random = p.dialRequest.random;
          s.send(packets.dialResponse(random, connectID));
          return;
        case PacketType.DATA:
          pending.push(packets.data(p.data.connectID, p.data.data));
          flush();
          return;
        case PacketType.CLOSE_REQ:
          pending.push(packets.closeResponse(p.closeRequest.connectID));
          flush();
          return;
      }
    };
  };
}

/**
 * Stock agent that really dials: DIAL_REQ opens a TCP connection to the
 * requested address and relays bytes both ways, like proxy-server + agent.
 */
export function relayScript(): ProxyScript {
  let nextConnectID = 1n;
  return (s) => {
    let socket: net.Socket | null = null;
    let connectID = 0n;
    s.call.stream.onPacket = (p) => {
      s.inbox.push(p);
      if (p.type === PacketType.DIAL_REQ) {
        const random = p.dialRequest.random;
        const [host, port] = splitHostPort(p.dialRequest.address);
        const conn = net.connect(port, host);
        conn.once('connect', () => {
          socket = conn;
          connectID = nextConnectID++;
          s.send(packets.dialResponse(random, connectID));
          conn.on('data', (chunk: Buffer) => {
            if (!s.send(packets.data(connectID, chunk))) {
              conn.pause();
              s.call.stream.onDrain = () => conn.resume();
            }
          });
          conn.once('end', () => s.send(packets.closeResponse(connectID)));
        });
        conn.once('error', (err) => {
          if (!socket) s.send(packets.dialResponse(random, 0n, `dial tcp ${p.dialRequest.address}: ${err.message}`));
        });
      } else if (p.type === PacketType.DATA && socket) {
        socket.write(p.data.data);
      } else if (p.type === PacketType.CLOSE_REQ && socket) {
        const conn = socket;
        socket = null;
        conn.destroy();
        s.send(packets.closeResponse(p.closeRequest.connectID));
      }
    };
  };
}

export function splitHostPort(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[(.*)\]$/, '$1'), Number(address.slice(i + 1))];
}

// --- scripted HTTP-CONNECT server ----------------------------------------------------

export interface ConnectExchange {
  /** The request head exactly as received, up to and including the blank line. */
  requestHead: Buffer;
  /** The request-target of the CONNECT line. */
  target: string;
  socket: net.Socket;
  /** Bytes the client sent after the head in the same read(s). */
  rest: Buffer;
}

export interface FakeConnectServer {
  transport: ProxyTransport;
  exchanges: Inbox<ConnectExchange>;
  close(): Promise<void>;
}

export async function startFakeConnectServer(script: (x: ConnectExchange) => void, options: { transport?: 'unix' | 'tls' } = {}): Promise<FakeConnectServer> {
  const exchanges = new Inbox<ConnectExchange>();
  const sockets = new Set<net.Socket>();
  const onConnection = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const requestHead = buffered.subarray(0, end + 4);
      const target = requestHead.toString('latin1').split(' ')[1] ?? '';
      const x = { requestHead, target, socket, rest: buffered.subarray(end + 4) };
      exchanges.push(x);
      script(x);
    };
    socket.on('data', onData);
  };
  let server: net.Server;
  let transport: ProxyTransport;
  if (options.transport === 'tls') {
    const pki = await clientTestPki();
    server = tls.createServer({ ...serverTls(pki), ALPNProtocols: ['http/1.1'] }, onConnection);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    transport = { host: '127.0.0.1', port: (server.address() as AddressInfo).port, tls: { ca: pki.caPem, cert: pki.clientCertPem, key: pki.clientKeyPem } };
  } else {
    server = net.createServer(onConnection);
    const sock = path.join(tempDir(), 'connect.sock');
    server.listen(sock);
    await once(server, 'listening');
    transport = { unix: sock };
  }
  return {
    transport,
    exchanges,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Answers 200 (alone in its write, as upstream does) and then echoes. */
export function connectEchoScript(x: ConnectExchange): void {
  x.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (x.rest.length > 0) x.socket.write(x.rest);
  x.socket.pipe(x.socket);
  x.socket.resume();
}

/** Dials the CONNECT target for real and relays, like proxy-server + agent. */
export function connectRelayScript(x: ConnectExchange): void {
  const [host, port] = splitHostPort(x.target);
  const upstream = net.connect(port, host);
  upstream.once('connect', () => {
    x.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (x.rest.length > 0) upstream.write(x.rest);
    x.socket.pipe(upstream).pipe(x.socket);
    x.socket.resume();
  });
  upstream.once('error', (err) => {
    x.socket.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\ndial tcp ${x.target}: ${err.message}`);
  });
}

// --- data helpers ------------------------------------------------------------------

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function randomPayload(bytes: number): Buffer {
  return randomBytes(bytes);
}

/**
 * Reads a stream, hashing and counting, until it ends or (with `expectBytes`)
 * until that many bytes arrived; the stream is left open and paused then.
 */
export function drain(stream: Duplex, expectBytes?: number): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    const finish = (): void => {
      stream.off('data', onData);
      stream.off('end', finish);
      stream.off('error', onError);
      stream.pause();
      resolve({ bytes, sha256: hash.digest('hex') });
    };
    const onData = (chunk: Buffer): void => {
      hash.update(chunk);
      bytes += chunk.length;
      if (expectBytes !== undefined && bytes >= expectBytes) finish();
    };
    const onError = (err: Error): void => {
      stream.off('data', onData);
      stream.off('end', finish);
      reject(err);
    };
    stream.on('data', onData);
    stream.once('end', finish);
    stream.once('error', onError);
    stream.resume();
  });
}

/** Reads exactly `n` bytes without ending the stream. */
export function readExactly(stream: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= n) {
        cleanup();
        const all = Buffer.concat(chunks);
        if (all.length > n) stream.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`stream ended after ${got} of ${n} bytes`));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.pause();
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.resume(); // an earlier read may have left it explicitly paused
  });
}

/** Writes all of `data` in `chunkBytes` pieces, honouring backpressure, then ends. */
export async function writeAll(stream: Duplex, data: Buffer, chunkBytes: number): Promise<void> {
  for (let off = 0; off < data.length; off += chunkBytes) {
    if (!stream.write(data.subarray(off, off + chunkBytes))) await once(stream, 'drain');
  }
}
