/** Builds Node TLS server options from PEM file paths, with upstream's TLS knobs. */
import type { SecureVersion, TlsOptions } from 'node:tls';
import { loadServerTlsOptions } from '../tls/server-tls.ts';

export interface TlsFiles {
  certPath: string;
  keyPath: string;
  /** When set, clients must present a certificate chaining to this CA. */
  clientCaPath?: string;
  minVersion?: SecureVersion;
  /** OpenSSL cipher list for TLS ≤1.2 (already mapped from Go names). */
  ciphers?: string;
}

/**
 * Server options for files read now. The material is validated first
 * (complete PEM blocks, the key matching the certificate, a parseable CA
 * bundle); invalid material throws a TlsMaterialError. KonnectivityServer
 * uses src/tls/server-tls.ts directly, which also hot-reloads the files.
 */
export function serverTlsOptions(files: TlsFiles): TlsOptions {
  return loadServerTlsOptions(files);
}
