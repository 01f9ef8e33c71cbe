/**
 * Throwaway PKI for tests and the quickstart: a CA, a server certificate
 * for both the frontend and the agent listener, client certificates on
 * demand, and a second unrelated CA for "wrong CA" tests. Everything is
 * ECDSA P-256 / SHA-256 made with WebCrypto, so a fresh machine needs no
 * openssl binary, and it takes milliseconds. Output is PEM (certificates,
 * PKCS#8 keys), which Node's tls and Go's crypto/tls both load.
 *
 * Not for production: keys are written unencrypted and certificates last a
 * year.
 */
import * as x509 from '@peculiar/x509';
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export interface PemPair {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

export interface CaMaterial {
  /** The CA certificate, to trust. */
  cert: string;
  certPath: string;
  /** The CA key, for issuing more certificates by other means (e.g. openssl in a demo). */
  keyPath: string;
}

export interface ClientCertOptions {
  /** Subject O= values (Kubernetes reads them as groups). */
  organizations?: readonly string[];
  /** Issue a certificate whose validity ended yesterday. */
  expired?: boolean;
}

export interface ServerCertOptions {
  /** SANs besides localhost, 127.0.0.1 and ::1; IPs are recognised, the rest are DNS names. */
  hosts?: readonly string[];
  commonName?: string;
  expired?: boolean;
}

export interface DevPki {
  dir: string;
  ca: CaMaterial;
  /** Server certificate for localhost, 127.0.0.1, ::1 and the extra hosts given to createDevPki. */
  server: PemPair;
  /** A client certificate signed by `ca`, for kube-apiserver-like frontend clients or agents. */
  client(commonName: string, options?: ClientCertOptions): Promise<PemPair>;
  /** Another server certificate signed by `ca`. */
  serverCert(options?: ServerCertOptions): Promise<PemPair>;
  /** A CA unrelated to `ca`: servers trusting `ca` must refuse what it signs. */
  otherCa: CaMaterial;
  /** A client certificate signed by `otherCa`. */
  otherClient(commonName: string, options?: ClientCertOptions): Promise<PemPair>;
}

export interface DevPkiOptions {
  /** Extra SANs for the server certificate. */
  serverHosts?: readonly string[];
}

const KEY_ALGORITHM: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const ONE_HOUR_MS = 60 * 60 * 1000;
const ONE_DAY_MS = 24 * ONE_HOUR_MS;
const DEFAULT_SERVER_HOSTS = ['localhost', '127.0.0.1', '::1'];

// @peculiar/x509 types its crypto parameter with the DOM Crypto interface, which Node's webcrypto implements.
const crypto = webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1];

interface Validity {
  notBefore: Date;
  notAfter: Date;
}

function validity(expired: boolean | undefined): Validity {
  const now = Date.now();
  // Backdated an hour so that small clock differences between processes do not matter.
  return expired
    ? { notBefore: new Date(now - 2 * ONE_DAY_MS), notAfter: new Date(now - ONE_DAY_MS) }
    : { notBefore: new Date(now - ONE_HOUR_MS), notAfter: new Date(now + 365 * ONE_DAY_MS) };
}

/** A positive 127-bit serial: the top bit clear keeps the DER integer positive, a non-zero first byte keeps it minimal. */
function randomSerial(): string {
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  return serial.toString('hex');
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']);
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

function subjectName(commonName: string, organizations: readonly string[] = []): x509.JsonName {
  // JSON names need no escaping of commas or quotes in the values.
  const name: x509.JsonName = [];
  for (const organization of organizations) name.push({ O: [organization] });
  name.push({ CN: [commonName] });
  return name;
}

function subjectAltNames(hosts: readonly string[]): x509.JsonGeneralName[] {
  const unique = [...new Set(hosts)];
  return unique.map((host) => ({ type: isIP(host) ? 'ip' : 'dns', value: host }));
}

/** Writes PEM files into the PKI directory, keys readable by the owner only. */
class PemFileWriter {
  private readonly dir: string;
  private readonly usedNames = new Set<string>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** A file stem from a label, made unique within this directory. */
  stem(label: string): string {
    const base = label.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'cert';
    let stem = base;
    for (let n = 2; this.usedNames.has(stem); n++) stem = `${base}-${n}`;
    this.usedNames.add(stem);
    return stem;
  }

  async write(stem: string, cert: string, key: string): Promise<PemPair> {
    const certPath = path.join(this.dir, `${stem}.crt`);
    const keyPath = path.join(this.dir, `${stem}.key`);
    await writeFile(certPath, cert, { mode: 0o644 });
    await writeFile(keyPath, key, { mode: 0o600 });
    return { cert, key, certPath, keyPath };
  }
}

class CertificateAuthority {
  readonly material: CaMaterial;
  private readonly keys: CryptoKeyPair;
  private readonly certificate: x509.X509Certificate;
  private readonly files: PemFileWriter;

  private constructor(material: CaMaterial, keys: CryptoKeyPair, certificate: x509.X509Certificate, files: PemFileWriter) {
    this.material = material;
    this.keys = keys;
    this.certificate = certificate;
    this.files = files;
  }

  static async create(commonName: string, files: PemFileWriter, stem: string): Promise<CertificateAuthority> {
    const keys = await generateKeys();
    const certificate = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: randomSerial(),
        name: subjectName(commonName),
        ...validity(false),
        keys,
        signingAlgorithm: KEY_ALGORITHM,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        ],
      },
      crypto,
    );
    const written = await files.write(files.stem(stem), certificate.toString('pem'), await privateKeyPem(keys.privateKey));
    return new CertificateAuthority({ cert: written.cert, certPath: written.certPath, keyPath: written.keyPath }, keys, certificate, files);
  }

  async issue(params: {
    stem: string;
    subject: x509.JsonName;
    usage: 'server' | 'client';
    hosts?: readonly string[];
    expired?: boolean;
  }): Promise<PemPair> {
    const keys = await generateKeys();
    const extendedUsage = params.usage === 'server' ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth];
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(extendedUsage, false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      await x509.AuthorityKeyIdentifierExtension.create(this.certificate.publicKey, false, crypto),
    ];
    if (params.hosts && params.hosts.length > 0) {
      extensions.push(new x509.SubjectAlternativeNameExtension(subjectAltNames(params.hosts), false));
    }
    const certificate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerial(),
        subject: params.subject,
        issuer: this.certificate.subjectName,
        ...validity(params.expired),
        publicKey: keys.publicKey,
        signingKey: this.keys.privateKey,
        signingAlgorithm: KEY_ALGORITHM,
        extensions,
      },
      crypto,
    );
    return this.files.write(this.files.stem(params.stem), certificate.toString('pem'), await privateKeyPem(keys.privateKey));
  }
}

/**
 * Generates the PKI into `dir` (created if missing): ca.crt/ca.key,
 * server.crt/server.key, other-ca.crt/other-ca.key, and one pair per
 * client certificate requested later.
 */
export async function createDevPki(dir: string, options: DevPkiOptions = {}): Promise<DevPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const files = new PemFileWriter(dir);
  const [ca, otherCa] = await Promise.all([
    CertificateAuthority.create('konnectivity-ts dev CA', files, 'ca'),
    CertificateAuthority.create('konnectivity-ts unrelated dev CA', files, 'other-ca'),
  ]);
  const issueServer = (serverOptions: ServerCertOptions = {}, stem = 'server'): Promise<PemPair> =>
    ca.issue({
      stem,
      subject: subjectName(serverOptions.commonName ?? 'konnectivity-server'),
      usage: 'server',
      hosts: [...DEFAULT_SERVER_HOSTS, ...(serverOptions.hosts ?? [])],
      expired: serverOptions.expired,
    });
  const server = await issueServer({ hosts: options.serverHosts });
  const issueClient = (authority: CertificateAuthority, prefix: string, commonName: string, clientOptions: ClientCertOptions = {}): Promise<PemPair> =>
    authority.issue({
      stem: `${prefix}${commonName}${clientOptions.expired ? '-expired' : ''}`,
      subject: subjectName(commonName, clientOptions.organizations),
      usage: 'client',
      expired: clientOptions.expired,
    });

  return {
    dir,
    ca: ca.material,
    server,
    otherCa: otherCa.material,
    client: (commonName, clientOptions) => issueClient(ca, 'client-', commonName, clientOptions),
    otherClient: (commonName, clientOptions) => issueClient(otherCa, 'other-client-', commonName, clientOptions),
    serverCert: (serverOptions) => issueServer(serverOptions, `server-${serverOptions?.commonName ?? 'extra'}${serverOptions?.expired ? '-expired' : ''}`),
  };
}
