/**
 * Strict PEM handling for TLS material that may be read while it is being
 * replaced: every certificate block must be complete and must parse, and a
 * key must match its certificate. What passes is re-encoded, so OpenSSL
 * loads exactly what was validated (a bundle made with `cat a.crt b.crt`
 * from files without a final newline glues `-----END…----------BEGIN…`
 * together, which Go accepts and OpenSSL silently truncates).
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';

/** Material that must not be served: malformed, truncated, or a key that does not match its certificate. */
export class TlsMaterialError extends Error {
  override readonly name = 'TlsMaterialError';
}

interface PemBlock {
  type: string;
  body: string;
}

const BEGIN = /-----BEGIN ([A-Z0-9 ]+)-----/g;

/**
 * The PEM blocks of a file, in order. Text between blocks is ignored (as
 * Go's pem.Decode does); a BEGIN line without its END line is an error,
 * since that is what a half-written file looks like.
 */
function pemBlocks(text: string, what: string): PemBlock[] {
  const blocks: PemBlock[] = [];
  BEGIN.lastIndex = 0;
  for (let m = BEGIN.exec(text); m !== null; m = BEGIN.exec(text)) {
    const type = m[1]!;
    const end = `-----END ${type}-----`;
    const endAt = text.indexOf(end, BEGIN.lastIndex);
    if (endAt < 0) throw new TlsMaterialError(`${what}: PEM block "${type}" has no END line (truncated or half-written file?)`);
    blocks.push({ type, body: text.slice(BEGIN.lastIndex, endAt) });
    BEGIN.lastIndex = endAt + end.length;
  }
  return blocks;
}

/**
 * Every CERTIFICATE block of a PEM file, parsed. Other block types are
 * skipped, as Go's AppendCertsFromPEM does; a file without any certificate,
 * or with a certificate block that does not parse, is an error (upstream
 * rejects malformed CA blocks since ANP#902).
 */
export function parseCertificates(data: Buffer | string, what: string): X509Certificate[] {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  const certs: X509Certificate[] = [];
  for (const block of pemBlocks(text, what)) {
    if (block.type !== 'CERTIFICATE') continue;
    // Headers (RFC 1421 "Proc-Type: …") make Go skip the block; they never appear in certificates we could use.
    if (block.body.includes(':')) continue;
    const der = Buffer.from(block.body.replace(/\s+/g, ''), 'base64');
    try {
      certs.push(new X509Certificate(der));
    } catch (err) {
      throw new TlsMaterialError(`${what}: certificate #${certs.length + 1} does not parse: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (certs.length === 0) throw new TlsMaterialError(`${what}: no PEM certificate found`);
  return certs;
}

/** A private key from PEM (PKCS#8, PKCS#1 or SEC1), unencrypted as upstream requires. */
export function parsePrivateKey(data: Buffer, what: string): KeyObject {
  const text = data.toString('latin1');
  const keyBlocks = pemBlocks(text, what).filter((b) => b.type.endsWith('PRIVATE KEY'));
  if (keyBlocks.length === 0) throw new TlsMaterialError(`${what}: no PEM private key found`);
  try {
    return createPrivateKey({ key: data, format: 'pem' });
  } catch (err) {
    throw new TlsMaterialError(`${what}: private key does not parse: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A certificate chain (leaf first) and the key for its leaf. */
export interface KeyPair {
  chain: X509Certificate[];
  /** Re-encoded chain PEM, one block per certificate. */
  certPem: string;
  /** The key file's bytes, as read. */
  keyPem: Buffer;
}

/** Parses a cert/key pair and checks that the key belongs to the leaf certificate. */
export function parseKeyPair(cert: Buffer, key: Buffer, certWhat: string, keyWhat: string): KeyPair {
  const chain = parseCertificates(cert, certWhat);
  const privateKey = parsePrivateKey(key, keyWhat);
  const leaf = chain[0]!;
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsMaterialError(`${keyWhat} does not match the certificate in ${certWhat} (subject ${oneLine(leaf.subject)}); cert and key must be replaced together`);
  }
  return { chain, certPem: encodeCertificates(chain), keyPem: key };
}

export function encodeCertificates(certs: readonly X509Certificate[]): string {
  return certs.map((c) => c.toString()).join('');
}

/** "CN=a\nO=b" → "CN=a, O=b". */
export function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

/** Log fields describing a certificate. */
export function describeCertificate(cert: X509Certificate): { subject: string; issuer: string; notAfter: string; serial: string } {
  return { subject: oneLine(cert.subject), issuer: oneLine(cert.issuer), notAfter: cert.validToDate.toISOString(), serial: cert.serialNumber };
}

/** The earliest expiry among certificates, in seconds since the epoch. */
export function earliestExpirySeconds(certs: readonly X509Certificate[]): number {
  return Math.min(...certs.map((c) => c.validToDate.getTime())) / 1000;
}
