/**
 * Go's answer when a TLS listener receives plaintext HTTP instead of a
 * ClientHello (net/http conn.serve on tls.RecordHeaderError). Go only
 * answers when the first five bytes look like one of a few common methods;
 * a plaintext CONNECT is not among them, so Go just closes on that.
 */

const HTTP_LOOKING_RECORD_HEADERS = new Set(['GET /', 'HEAD ', 'POST ', 'PUT /', 'OPTIO']);

/** Go's tlsRecordHeaderLooksLikeHTTP, on the first five bytes of the connection. */
export function looksLikePlaintextHttp(firstBytes: Uint8Array): boolean {
  if (firstBytes.length < 5) return false;
  return HTTP_LOOKING_RECORD_HEADERS.has(Buffer.from(firstBytes.subarray(0, 5)).toString('latin1'));
}

export function plaintextHttpOnTlsPort(): Uint8Array {
  return Buffer.from('HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n', 'latin1');
}
