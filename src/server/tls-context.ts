/** Builds Node TLS server options from PEM file paths, with upstream's TLS knobs. */
import { readFileSync } from 'node:fs';
import type { SecureVersion, TlsOptions } from 'node:tls';

export interface TlsFiles {
  certPath: string;
  keyPath: string;
  /** When set, clients must present a certificate chaining to this CA. */
  clientCaPath?: string;
  minVersion?: SecureVersion;
  /** OpenSSL cipher list for TLS ≤1.2 (already mapped from Go names). */
  ciphers?: string;
}

export function serverTlsOptions(files: TlsFiles): TlsOptions {
  const opts: TlsOptions = {
    cert: readFileSync(files.certPath),
    key: readFileSync(files.keyPath),
    minVersion: files.minVersion ?? 'TLSv1.2',
  };
  if (files.ciphers) opts.ciphers = files.ciphers;
  if (files.clientCaPath) {
    opts.ca = readFileSync(files.clientCaPath);
    opts.requestCert = true;
    opts.rejectUnauthorized = true;
  }
  return opts;
}
