/**
 * Destination policy for the agent (a konnectivity-ts extension; upstream's
 * agent dials whatever `host:port` a DIAL_REQ names, spec known-problems 28).
 *
 * Two lists, `--denied-destinations` (checked first) and
 * `--allowed-destinations` (absent = allow everything, as upstream). Entries:
 *
 *   10.0.0.0/8            CIDR            [fd00::/8]:443   IPv6 CIDR with a port
 *   10.0.0.5              one address     fd00::5          IPv6 without a port
 *   kubelet.internal      exact host name *.svc.cluster.local   any subdomain (not the apex)
 *   *                     any destination
 *
 * each optionally followed by `:port` or `:low-high` (IPv6 must then be in
 * brackets). Host-name entries match the host text of the dial address
 * (case-insensitive, one trailing dot ignored); address entries match the
 * addresses the host resolves to, every one of them. The dialer connects
 * only to addresses that were checked, so a DNS answer that changes between
 * the check and the connect (rebinding) cannot slip past.
 *
 * Decision for host text h, port p and effective addresses A:
 *  - denied if a denied name entry matches (h, p), or a denied address entry
 *    matches (a, p) for any a in A;
 *  - otherwise, when an allow list exists, allowed only if an allowed name
 *    entry matches (h, p), or every a in A matches an allowed address entry.
 * Aliases are closed (see addressForms): 0.0.0.0 and :: reach loopback, so
 * they are checked as loopback; an IPv4-mapped IPv6 address is checked as
 * its IPv4 address too.
 */
import net from 'node:net';
import { promises as dns } from 'node:dns';
import { dialTcpEndpoint, splitDialAddress, ENDPOINT_DIAL_TIMEOUT_MS, type EndpointDialer, type HostResolver } from './endpoint-dialer.ts';
import { EndpointDialError, canceledDialError, joinHostPort, lookupDialError, lookupTimeoutDialError } from './go-dial-error.ts';

export const ALLOWED_DESTINATIONS_FLAG = '--allowed-destinations';
export const DENIED_DESTINATIONS_FLAG = '--denied-destinations';

/** Inclusive port range. */
export interface PortRange {
  readonly low: number;
  readonly high: number;
}

export type DestinationRule =
  | { readonly kind: 'any'; readonly ports: PortRange | null; readonly text: string }
  | { readonly kind: 'cidr'; readonly family: 4 | 6; readonly network: bigint; readonly prefix: number; readonly ports: PortRange | null; readonly text: string }
  | { readonly kind: 'host'; readonly name: string; readonly ports: PortRange | null; readonly text: string }
  /** `*.example.com`: `suffix` is `.example.com`. */
  | { readonly kind: 'suffix'; readonly suffix: string; readonly ports: PortRange | null; readonly text: string };

/** Label of `konnectivity_network_proxy_agent_ts_policy_denials_total{reason}`. */
export type PolicyDenialReason = 'denied' | 'not_allowed';

export interface PolicyDenial {
  readonly reason: PolicyDenialReason;
  /** The entry that matched (for `denied`); null for `not_allowed`. */
  readonly rule: string | null;
  /** The resolved address that decided it, when the decision was made on an address of a host name. */
  readonly address: string | null;
}

// ---------------------------------------------------------------------------
// Addresses as numbers

/** An IP address as a 32- or 128-bit number. */
export interface IpNumber {
  readonly family: 4 | 6;
  readonly value: bigint;
}

function parseIPv4(text: string): bigint | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseIPv6(text: string): bigint | null {
  if (net.isIPv6(text) === false) return null;
  let head = text;
  let tailV4: bigint | null = null;
  const lastColon = head.lastIndexOf(':');
  if (head.includes('.', lastColon)) {
    tailV4 = parseIPv4(head.slice(lastColon + 1));
    if (tailV4 === null) return null;
    head = head.slice(0, lastColon + 1) + '0:0';
  }
  const halves = head.split('::');
  if (halves.length > 2) return null;
  const words = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const left = words(halves[0]!);
  const right = halves.length === 2 ? words(halves[1]!) : [];
  const fill = 8 - left.length - right.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const all = [...left, ...Array<string>(halves.length === 2 ? fill : 0).fill('0'), ...right];
  let v = 0n;
  for (const w of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return null;
    v = (v << 16n) | BigInt(parseInt(w, 16));
  }
  if (tailV4 !== null) v = (v & ~0xffffffffn) | tailV4;
  return v;
}

/** Parses a literal IPv4 or IPv6 address (an IPv6 zone is ignored); null for anything else. */
export function parseIp(text: string): IpNumber | null {
  const zone = text.indexOf('%');
  const bare = zone >= 0 && text.includes(':') ? text.slice(0, zone) : text;
  const v4 = parseIPv4(bare);
  if (v4 !== null) return { family: 4, value: v4 };
  const v6 = parseIPv6(bare);
  if (v6 !== null) return { family: 6, value: v6 };
  return null;
}

const V4_LOOPBACK: IpNumber = { family: 4, value: 0x7f000001n };
const V6_LOOPBACK: IpNumber = { family: 6, value: 1n };

/** The forms of one address the policy checks. */
export interface AddressForms {
  /** Every form, including where a connect may land: denied if any form matches a denied entry. */
  readonly deny: readonly IpNumber[];
  /** The destination actually reached, in each of its spellings: allowed if any matches an allowed entry. */
  readonly allow: readonly IpNumber[];
}

/**
 * The forms of `ip` the policy checks. An IPv4-mapped IPv6 address is the
 * IPv4 destination spelled differently; the unspecified address (0.0.0.0,
 * ::) makes a connect land on loopback, so it is allowed only if loopback
 * is, and denied if loopback is.
 */
export function addressForms(ip: IpNumber): AddressForms {
  if (ip.family === 4) return ip.value === 0n ? { deny: [ip, V4_LOOPBACK], allow: [V4_LOOPBACK] } : { deny: [ip], allow: [ip] };
  if (ip.value >> 32n === 0xffffn) {
    const v4: IpNumber = { family: 4, value: ip.value & 0xffffffffn };
    return v4.value === 0n ? { deny: [ip, v4, V4_LOOPBACK], allow: [V4_LOOPBACK] } : { deny: [ip, v4], allow: [ip, v4] };
  }
  // An IPv6 unspecified connect lands on ::1; dual-stack listeners may also answer for 127.0.0.1.
  if (ip.value === 0n) return { deny: [ip, V6_LOOPBACK, V4_LOOPBACK], allow: [V6_LOOPBACK] };
  return { deny: [ip], allow: [ip] };
}

// ---------------------------------------------------------------------------
// Parsing entries

function parsePorts(text: string, entry: string): PortRange {
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(text);
  if (!m) throw new Error(`invalid port ${JSON.stringify(text)} in entry ${JSON.stringify(entry)}: want a port (443) or a range (8000-8999)`);
  const low = Number(m[1]);
  const high = m[2] === undefined ? low : Number(m[2]);
  if (low < 1 || high > 65535 || low > high) throw new Error(`invalid port range ${JSON.stringify(text)} in entry ${JSON.stringify(entry)}: ports are 1-65535, low before high`);
  return { low, high };
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

function normalizeHostName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function checkHostName(name: string, entry: string): string {
  const n = normalizeHostName(name);
  if (n === '' || n.length > 253 || !n.split('.').every((l) => LABEL.test(l))) {
    throw new Error(`invalid destination ${JSON.stringify(entry)}: not an address, CIDR, host name or *.suffix`);
  }
  return n;
}

function parseHostPart(host: string, ports: PortRange | null, entry: string): DestinationRule {
  if (host === '*') return { kind: 'any', ports, text: entry };
  const slash = host.indexOf('/');
  if (slash >= 0) {
    const addrText = host.slice(0, slash);
    const prefixText = host.slice(slash + 1);
    const ip = addrText.includes('%') ? null : parseIp(addrText);
    if (!ip) throw new Error(`invalid CIDR ${JSON.stringify(host)} in entry ${JSON.stringify(entry)}`);
    const bits = ip.family === 4 ? 32 : 128;
    if (!/^[0-9]{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
      throw new Error(`invalid prefix length in CIDR ${JSON.stringify(host)} (entry ${JSON.stringify(entry)}): want 0-${bits}`);
    }
    const prefix = Number(prefixText);
    const hostMask = (1n << BigInt(bits - prefix)) - 1n;
    if ((ip.value & hostMask) !== 0n) {
      const network = ip.value & ~hostMask;
      throw new Error(`CIDR ${JSON.stringify(host)} has host bits set (entry ${JSON.stringify(entry)}); did you mean ${formatIp({ family: ip.family, value: network })}/${prefix}?`);
    }
    return { kind: 'cidr', family: ip.family, network: ip.value, prefix, ports, text: entry };
  }
  if (host.includes('%')) throw new Error(`invalid destination ${JSON.stringify(entry)}: IPv6 zones are not supported in entries`);
  const ip = parseIp(host);
  if (ip) return { kind: 'cidr', family: ip.family, network: ip.value, prefix: ip.family === 4 ? 32 : 128, ports, text: entry };
  if (host.startsWith('*.')) return { kind: 'suffix', suffix: '.' + checkHostName(host.slice(2), entry), ports, text: entry };
  if (host.includes('*')) throw new Error(`invalid destination ${JSON.stringify(entry)}: a wildcard must be "*" or lead a name, as in "*.example.com"`);
  // Something that looks numeric but is no address (10.0.0.256, 10.1) is a typo, not a host name.
  if (/^[0-9.]+$/.test(host)) throw new Error(`invalid destination ${JSON.stringify(entry)}: not a valid IPv4 address`);
  return { kind: 'host', name: checkHostName(host, entry), ports, text: entry };
}

/** Parses one entry; throws an Error whose message names the entry. */
export function parseDestinationRule(raw: string): DestinationRule {
  const entry = raw.trim();
  if (entry === '') throw new Error('empty destination entry');
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    if (close < 0) throw new Error(`invalid destination ${JSON.stringify(entry)}: missing "]"`);
    const inner = entry.slice(1, close);
    const rest = entry.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new Error(`invalid destination ${JSON.stringify(entry)}: unexpected text after "]"`);
    const ports = rest === '' ? null : parsePorts(rest.slice(1), entry);
    const rule = parseHostPart(inner, ports, entry);
    if (rule.kind !== 'cidr' || rule.family !== 6) throw new Error(`invalid destination ${JSON.stringify(entry)}: brackets are for IPv6 addresses and CIDRs`);
    return rule;
  }
  const colons = entry.split(':').length - 1;
  if (colons >= 2) {
    // Unbracketed IPv6 (address or CIDR): no port possible.
    const rule = parseHostPart(entry, null, entry);
    if (rule.kind !== 'cidr' || rule.family !== 6) throw new Error(`invalid destination ${JSON.stringify(entry)}: put IPv6 in brackets to add a port, as in [fd00::1]:443`);
    return rule;
  }
  if (colons === 1) {
    const i = entry.indexOf(':');
    return parseHostPart(entry.slice(0, i), parsePorts(entry.slice(i + 1), entry), entry);
  }
  return parseHostPart(entry, null, entry);
}

/** Parses a flag's entries (already split on commas); throws with the flag name in the message. */
export function parseDestinationRules(entries: readonly string[], flag: string): DestinationRule[] {
  const rules: DestinationRule[] = [];
  for (const e of entries) {
    if (e.trim() === '') continue;
    try {
      rules.push(parseDestinationRule(e));
    } catch (err) {
      throw new Error(`${flag}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return rules;
}

// ---------------------------------------------------------------------------
// Matching

function portMatches(ports: PortRange | null, port: number): boolean {
  return ports === null || (port >= ports.low && port <= ports.high);
}

function ipMatches(rule: DestinationRule, ip: IpNumber, port: number): boolean {
  if (!portMatches(rule.ports, port)) return false;
  if (rule.kind === 'any') return true;
  if (rule.kind !== 'cidr' || rule.family !== ip.family) return false;
  const bits = ip.family === 4 ? 32 : 128;
  return ip.value >> BigInt(bits - rule.prefix) === rule.network >> BigInt(bits - rule.prefix);
}

function nameMatches(rule: DestinationRule, name: string, port: number): boolean {
  if (!portMatches(rule.ports, port)) return false;
  switch (rule.kind) {
    case 'any':
      return true;
    case 'host':
      return rule.name === name;
    case 'suffix':
      return name.length > rule.suffix.length && name.endsWith(rule.suffix);
    default:
      return false;
  }
}

export function formatIp(ip: IpNumber): string {
  if (ip.family === 4) {
    const v = Number(ip.value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const words: string[] = [];
  for (let i = 7; i >= 0; i--) words.push(((ip.value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero words, as RFC 5952.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
}

export class DestinationPolicy {
  /** Null: no allow list, everything not denied is allowed (upstream behaviour). */
  readonly allowed: readonly DestinationRule[] | null;
  readonly denied: readonly DestinationRule[];

  constructor(allowed: readonly DestinationRule[] | null, denied: readonly DestinationRule[] = []) {
    this.allowed = allowed;
    this.denied = denied;
  }

  /** Parses flag entries; `allowed` null means the flag was not given. */
  static fromEntries(allowed: readonly string[] | null, denied: readonly string[]): DestinationPolicy {
    return new DestinationPolicy(
      allowed === null ? null : parseDestinationRules(allowed, ALLOWED_DESTINATIONS_FLAG),
      parseDestinationRules(denied, DENIED_DESTINATIONS_FLAG),
    );
  }

  /** True when no rule can ever refuse a dial. */
  get allowsEverything(): boolean {
    return this.allowed === null && this.denied.length === 0;
  }

  /** Whether the decision for this host could depend on its resolved addresses. */
  get hasAddressRules(): boolean {
    const hasIp = (rules: readonly DestinationRule[]): boolean => rules.some((r) => r.kind === 'cidr');
    return hasIp(this.denied) || (this.allowed !== null && hasIp(this.allowed));
  }

  /**
   * Decides for a dial of `host` (as written in the dial address) on `port`,
   * given the addresses it will connect to: the literal itself, or every
   * resolved address of a name. Null means allowed.
   */
  check(host: string, port: number, addresses: readonly string[]): PolicyDenial | null {
    const literal = host === '' ? { family: 4 as const, value: 0n } : parseIp(host);
    const name = literal ? null : normalizeHostName(host);
    const ips: Array<{ text: string; forms: AddressForms }> = [];
    for (const a of literal ? [host === '' ? '0.0.0.0' : host] : addresses) {
      const ip = parseIp(a);
      // Something the resolver returned that is no address cannot be checked: refuse it.
      if (!ip) return { reason: this.allowed === null ? 'denied' : 'not_allowed', rule: null, address: a };
      ips.push({ text: a, forms: addressForms(ip) });
    }
    if (name !== null) {
      for (const r of this.denied) if (nameMatches(r, name, port)) return { reason: 'denied', rule: r.text, address: null };
    }
    for (const { text, forms } of ips) {
      for (const r of this.denied) {
        if (forms.deny.some((e) => ipMatches(r, e, port))) return { reason: 'denied', rule: r.text, address: literal ? null : text };
      }
    }
    const allowed = this.allowed;
    if (allowed === null) return null;
    if (name !== null && allowed.some((r) => nameMatches(r, name, port))) return null;
    if (ips.length === 0) return { reason: 'not_allowed', rule: null, address: null };
    for (const { text, forms } of ips) {
      if (!forms.allow.some((e) => allowed.some((r) => ipMatches(r, e, port)))) return { reason: 'not_allowed', rule: null, address: literal ? null : text };
    }
    return null;
  }

  /** Name-only pre-check before resolving: a denied name needs no DNS query. */
  checkName(host: string, port: number): PolicyDenial | null {
    if (host === '' || parseIp(host)) return null;
    const name = normalizeHostName(host);
    for (const r of this.denied) if (nameMatches(r, name, port)) return { reason: 'denied', rule: r.text, address: null };
    return null;
  }
}

/**
 * The text of the DIAL_RSP error, in Go's dial-error shape so an upstream
 * HTTP-CONNECT server maps it to 502 (nothing in it matches the timeout or
 * "too many open files" rules of mapDialErrorToHTTPStatus).
 */
export function policyDenialError(host: string, port: number, denial: PolicyDenial): EndpointDialError {
  const flag = denial.reason === 'denied' ? DENIED_DESTINATIONS_FLAG : ALLOWED_DESTINATIONS_FLAG;
  const resolved = denial.address === null ? '' : ` (${host} resolves to ${denial.address})`;
  return new EndpointDialError(`dial tcp ${joinHostPort(host, port)}: konnectivity-agent: destination denied by policy (${flag})${resolved}`, 'unknown');
}

// ---------------------------------------------------------------------------
// The policy-enforcing dialer

export interface PolicyDialerOptions {
  policy: DestinationPolicy;
  timeoutMs?: number;
  resolve?: HostResolver;
  /** Called for every refused dial (metrics, logs). */
  onDenied?: (address: string, denial: PolicyDenial) => void;
}

const systemResolve: HostResolver = async (host) => (await dns.lookup(host, { all: true })).map((r) => r.address);

function withDeadline<T>(work: Promise<T>, ms: number, signal: AbortSignal, onTimeout: () => Error, onAbort: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
    };
    const timer = setTimeout(() => {
      done();
      reject(onTimeout());
    }, Math.max(0, ms));
    const abort = (): void => {
      done();
      reject(onAbort());
    };
    signal.addEventListener('abort', abort, { once: true });
    work.then(
      (v) => {
        done();
        resolve(v);
      },
      (err: unknown) => {
        done();
        reject(err);
      },
    );
  });
}

/**
 * The TCP endpoint dialer with the policy in front: names are resolved
 * here, every address is checked, and the connect goes only to those
 * checked addresses (within the same overall dial timeout as upstream's 5 s).
 */
export function createPolicyEndpointDialer(options: PolicyDialerOptions): EndpointDialer {
  const { policy, onDenied } = options;
  const timeoutMs = options.timeoutMs ?? ENDPOINT_DIAL_TIMEOUT_MS;
  const resolve = options.resolve ?? systemResolve;
  if (policy.allowsEverything) return (address, signal) => dialTcpEndpoint(address, signal, { timeoutMs, resolve });
  const deny = (address: string, host: string, port: number, denial: PolicyDenial): never => {
    onDenied?.(address, denial);
    throw policyDenialError(host, port, denial);
  };
  return async (address, signal) => {
    const deadline = performance.now() + timeoutMs;
    const { host, port } = splitDialAddress(address);
    if (signal.aborted) throw canceledDialError(joinHostPort(host, port));
    if (host === '' || net.isIP(host) !== 0) {
      const denial = policy.check(host, port, []);
      if (denial) deny(address, host, port, denial);
      return dialTcpEndpoint(address, signal, { timeoutMs, resolve });
    }
    const early = policy.checkName(host, port);
    if (early) deny(address, host, port, early);
    const lookup = resolve(host).catch((err: unknown) => {
      throw lookupDialError(host, err);
    });
    lookup.catch(() => {}); // may settle after we gave up on it
    const ips = await withDeadline(lookup, deadline - performance.now(), signal, () => lookupTimeoutDialError(host), () => canceledDialError(joinHostPort(host, port)));
    if (ips.length === 0) throw lookupDialError(host, Object.assign(new Error('no addresses'), { code: 'ENOTFOUND' }));
    const denial = policy.check(host, port, ips);
    if (denial) deny(address, host, port, denial);
    // Connect to exactly the addresses just checked: no second lookup.
    const checked = [...ips];
    return dialTcpEndpoint(address, signal, { timeoutMs: deadline - performance.now(), resolve: async () => checked });
  };
}
