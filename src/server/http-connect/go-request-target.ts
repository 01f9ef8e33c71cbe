/**
 * The request-target rules of Go's net/http readRequest: for CONNECT an
 * authority-form target is parsed as "http://" + target, anything else goes
 * through url.ParseRequestURI as is. The resulting URL host becomes r.Host,
 * which upstream uses as the dial address.
 *
 * Modelled on Go 1.24/1.25 net/url (parse, parseAuthority, parseHost,
 * unescape). Two newer-Go details are included because they only reject
 * hosts nobody can dial: a '[' anywhere but first is invalid, and a
 * bracketed host must be an IPv6 address. The Go 1.26 "strict colons" rule
 * for http URLs (GODEBUG urlstrictcolons) is not applied: like older Go,
 * the port is taken after the last ':' of an unbracketed host.
 *
 * Works on byte strings (one char per byte). The returned host has its
 * %-escapes decoded into bytes, still as a byte string.
 */
import { isIP } from 'node:net';
import { containsControlByte, isHexByte, isUrlHostByte, isUserinfoByte } from './http-tokens.ts';

export type RequestTargetResult = { ok: true; host: string } | { ok: false; reason: string };

const fail = (reason: string): RequestTargetResult => ({ ok: false, reason });

/** Host (possibly "") that Go's request parsing derives from the request-target. */
export function parseRequestTarget(method: string, target: string): RequestTargetResult {
  const authorityForm = method === 'CONNECT' && !target.startsWith('/');
  return parseRequestUri(authorityForm ? `http://${target}` : target);
}

/** url.ParseRequestURI, reduced to validation plus the host it yields. */
function parseRequestUri(raw: string): RequestTargetResult {
  if (containsControlByte(raw)) return fail('net/url: invalid control character in URL');
  if (raw === '') return fail('empty url');
  if (raw === '*') return { ok: true, host: '' };

  const scheme = splitScheme(raw);
  if (scheme === null) return fail('missing protocol scheme');
  let rest = scheme.rest;
  // Query is cut off before the authority is looked at; it is not validated.
  const q = rest.indexOf('?');
  if (q >= 0) rest = rest.slice(0, q);

  if (!rest.startsWith('/')) {
    // A rootless path after a scheme is an opaque URL; without a scheme it is invalid in a request.
    return scheme.name !== '' ? { ok: true, host: '' } : fail('invalid URI for request');
  }
  let host = '';
  if (scheme.name !== '' && rest.startsWith('//')) {
    let authority = rest.slice(2);
    rest = '';
    const slash = authority.indexOf('/');
    if (slash >= 0) {
      rest = authority.slice(slash);
      authority = authority.slice(0, slash);
    }
    const parsed = parseAuthority(authority);
    if (!parsed.ok) return parsed;
    host = parsed.host;
  }
  // setPath: only the %-escapes of the path can make it invalid.
  const path = unescape(rest, 'path');
  if (path === null) return fail('invalid URL escape in path');
  return { ok: true, host };
}

/** url.getScheme; null stands for Go's "missing protocol scheme" error. */
function splitScheme(raw: string): { name: string; rest: string } | null {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    const letter = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    const schemeChar = (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e;
    if (letter) continue;
    if (schemeChar) {
      if (i === 0) return { name: '', rest: raw };
      continue;
    }
    if (c === 0x3a) {
      if (i === 0) return null;
      return { name: raw.slice(0, i).toLowerCase(), rest: raw.slice(i + 1) };
    }
    return { name: '', rest: raw };
  }
  return { name: '', rest: raw };
}

function parseAuthority(authority: string): RequestTargetResult {
  const at = authority.lastIndexOf('@');
  const host = parseHost(at < 0 ? authority : authority.slice(at + 1));
  if (!host.ok || at < 0) return host;
  const userinfo = authority.slice(0, at);
  for (let i = 0; i < userinfo.length; i++) {
    if (!isUserinfoByte(userinfo.charCodeAt(i))) return fail('net/url: invalid userinfo');
  }
  const colon = userinfo.indexOf(':');
  const parts = colon < 0 ? [userinfo] : [userinfo.slice(0, colon), userinfo.slice(colon + 1)];
  for (const part of parts) {
    if (unescape(part, 'userinfo') === null) return fail('invalid URL escape in userinfo');
  }
  return host;
}

function validOptionalPort(colonPort: string): boolean {
  if (colonPort === '') return true;
  if (colonPort[0] !== ':') return false;
  return /^[0-9]*$/.test(colonPort.slice(1));
}

function parseHost(host: string): RequestTargetResult {
  const open = host.lastIndexOf('[');
  if (open > 0) return fail('invalid IP-literal');
  if (open === 0) {
    const close = host.lastIndexOf(']');
    if (close < 0) return fail("missing ']' in host");
    const colonPort = host.slice(close + 1);
    if (!validOptionalPort(colonPort)) return fail('invalid port after host');
    const literal = host.slice(1, close);
    // RFC 6874: "%25" starts the zone, which may %-encode more than a host may.
    const zoneAt = literal.indexOf('%25');
    const address = unescape(zoneAt >= 0 ? literal.slice(0, zoneAt) : literal, 'host');
    const zone = zoneAt >= 0 ? unescape(literal.slice(zoneAt), 'zone') : '';
    if (address === null || zone === null) return fail('invalid URL escape in host');
    // netip.ParseAddr: an IPv6 address, optionally with a non-empty zone.
    if (zoneAt >= 0 && zone === '%') return fail('invalid host: empty zone');
    if (isIP(address) !== 6) return fail('invalid IP-literal');
    return { ok: true, host: `[${address}${zone}]${colonPort}` };
  }
  const colon = host.lastIndexOf(':');
  if (colon >= 0 && !validOptionalPort(host.slice(colon))) return fail('invalid port after host');
  const unescaped = unescape(host, 'host');
  if (unescaped === null) return fail('invalid character in host name');
  return { ok: true, host: unescaped };
}

type EscapeMode = 'host' | 'zone' | 'path' | 'userinfo';

/** url.unescape: decodes %XX into bytes, or null where Go returns an error. */
function unescape(value: string, mode: EscapeMode): string | null {
  let out = '';
  for (let i = 0; i < value.length; ) {
    const c = value.charCodeAt(i);
    if (c === 0x25) {
      if (i + 2 >= value.length || !isHexByte(value.charCodeAt(i + 1)) || !isHexByte(value.charCodeAt(i + 2))) return null;
      const decoded = Number.parseInt(value.slice(i + 1, i + 3), 16);
      // In a host only non-ASCII bytes may be %-encoded, plus "%25" (RFC 6874).
      if (mode === 'host' && decoded < 0x80 && value.slice(i, i + 3) !== '%25') return null;
      // A zone may escape only what a host could hold literally, plus space.
      if (mode === 'zone' && value.slice(i, i + 3) !== '%25' && decoded !== 0x20 && (decoded >= 0x80 || !isUrlHostByte(decoded))) return null;
      out += String.fromCharCode(decoded);
      i += 3;
      continue;
    }
    if ((mode === 'host' || mode === 'zone') && c < 0x80 && !isUrlHostByte(c)) return null;
    out += value[i];
    i++;
  }
  return out;
}
