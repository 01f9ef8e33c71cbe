/**
 * Go TLS names used by `--cipher-suites` and `--tls-min-version`, and their
 * Node/OpenSSL equivalents.
 *
 * Upstream accepts exactly the names of Go's `tls.CipherSuites()` (the
 * "secure" list of current Go releases, where RSA-key-exchange, 3DES, RC4 and
 * CBC-SHA256 suites live in `InsecureCipherSuites()` and are rejected). Every
 * accepted name has an OpenSSL equivalent, so no accepted suite is lost in
 * translation. The one semantic gap: Go ignores the list for TLS 1.3 (its
 * 1.3 suites are not configurable), whereas OpenSSL would restrict 1.3 too if
 * 1.3 names were passed in `ciphers`. See `opensslCipherList`.
 */
import type { SecureVersion } from 'node:tls';

/** Go cipher-suite name → OpenSSL name (TLS 1.3 names are the same in both). */
export const goCipherSuiteToOpenssl: ReadonlyMap<string, string> = new Map([
  // TLS 1.3 (validated, but ignored by Go when building the config).
  ['TLS_AES_128_GCM_SHA256', 'TLS_AES_128_GCM_SHA256'],
  ['TLS_AES_256_GCM_SHA384', 'TLS_AES_256_GCM_SHA384'],
  ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_CHACHA20_POLY1305_SHA256'],
  // TLS 1.0–1.2 ECDHE suites.
  ['TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA', 'ECDHE-ECDSA-AES128-SHA'],
  ['TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA', 'ECDHE-ECDSA-AES256-SHA'],
  ['TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA', 'ECDHE-RSA-AES128-SHA'],
  ['TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA', 'ECDHE-RSA-AES256-SHA'],
  ['TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'ECDHE-ECDSA-AES128-GCM-SHA256'],
  ['TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', 'ECDHE-ECDSA-AES256-GCM-SHA384'],
  ['TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'ECDHE-RSA-AES128-GCM-SHA256'],
  ['TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'ECDHE-RSA-AES256-GCM-SHA384'],
  ['TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305'],
  ['TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'ECDHE-RSA-CHACHA20-POLY1305'],
]);

/** The names `--cipher-suites` accepts (Go's `tls.CipherSuites()`). */
export const acceptedGoCipherSuites: ReadonlySet<string> = new Set(goCipherSuiteToOpenssl.keys());

const tls13Suites: ReadonlySet<string> = new Set([
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
]);

/**
 * Go's insecure suites (`tls.InsecureCipherSuites()` plus the RSA key-exchange
 * suites moved there in Go 1.22), for telling operators why a name is rejected.
 * Not accepted by upstream. TLS_ECDHE_*_RC4_128_SHA and 3DES have no usable
 * equivalent in OpenSSL 3 default builds anyway.
 */
export const insecureGoCipherSuites: ReadonlySet<string> = new Set([
  'TLS_RSA_WITH_RC4_128_SHA',
  'TLS_RSA_WITH_3DES_EDE_CBC_SHA',
  'TLS_RSA_WITH_AES_128_CBC_SHA',
  'TLS_RSA_WITH_AES_256_CBC_SHA',
  'TLS_RSA_WITH_AES_128_CBC_SHA256',
  'TLS_RSA_WITH_AES_128_GCM_SHA256',
  'TLS_RSA_WITH_AES_256_GCM_SHA384',
  'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA',
  'TLS_ECDHE_RSA_WITH_RC4_128_SHA',
  'TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA',
  'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256',
  'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256',
]);

/**
 * OpenSSL `ciphers` string for Node from upstream-validated Go names, or
 * undefined for "library defaults" (empty list). TLS 1.3 names in the input
 * are dropped and all of Go's TLS 1.3 suites are appended, so TLS 1.3 stays
 * unrestricted as it is in Go. Throws for names upstream would reject.
 */
export function opensslCipherList(goNames: readonly string[]): string | undefined {
  if (goNames.length === 0) return undefined;
  const tls12: string[] = [];
  for (const name of goNames) {
    const openssl = goCipherSuiteToOpenssl.get(name);
    if (openssl === undefined) throw new Error(`cipher suite ${name} not supported, doesn't exist or considered as insecure`);
    if (!tls13Suites.has(name) && !tls12.includes(openssl)) tls12.push(openssl);
  }
  // With only TLS 1.3 names, Go's list holds no TLS 1.2 suite, so 1.2 handshakes
  // fail while 1.3 works; an OpenSSL list of just the 1.3 suites does the same.
  return [...tls12, ...tls13Suites].join(':');
}

/**
 * Go `--tls-min-version` names → Node's `minVersion`. Node/OpenSSL 3 may still
 * refuse TLS 1.0/1.1 handshakes at its default security level unless the
 * cipher string lowers it (`@SECLEVEL=0`); Go allows them when asked.
 */
export const goTlsVersionToNode: ReadonlyMap<string, SecureVersion> = new Map<string, SecureVersion>([
  ['VersionTLS10', 'TLSv1'],
  ['VersionTLS11', 'TLSv1.1'],
  ['VersionTLS12', 'TLSv1.2'],
  ['VersionTLS13', 'TLSv1.3'],
]);

/** `--tls-min-version` → Node `minVersion`; "" means upstream's default, TLS 1.2. */
export function nodeMinTlsVersion(goName: string): SecureVersion {
  if (goName === '') return 'TLSv1.2';
  const version = goTlsVersionToNode.get(goName);
  if (version === undefined) throw new Error(`unknown TLS version ${goName}`);
  return version;
}
