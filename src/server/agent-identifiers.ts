/**
 * Server-side parsing of the `agentidentifiers` metadata (a URL query), as
 * upstream does it: repeated keys accumulate, only the first
 * `default-route` value counts, unknown keys are ignored (fail open).
 */
export interface AgentIdentifiers {
  host: string[];
  ipv4: string[];
  ipv6: string[];
  /** Parsed but, as upstream, used by no strategy. */
  cidr: string[];
  defaultRoute: boolean;
}

/** Go strconv.ParseBool. */
export function parseGoBool(s: string): boolean | null {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return null;
}

export function parseAgentIdentifiers(query: string): AgentIdentifiers {
  const ids: AgentIdentifiers = { host: [], ipv4: [], ipv6: [], cidr: [], defaultRoute: false };
  const params = new URLSearchParams(query);
  let sawDefaultRoute = false;
  for (const [key, value] of params) {
    if (key === 'host' || key === 'ipv4' || key === 'ipv6' || key === 'cidr') ids[key].push(value);
    else if (key === 'default-route' && !sawDefaultRoute) {
      sawDefaultRoute = true;
      ids.defaultRoute = parseGoBool(value) === true;
    }
  }
  return ids;
}

/**
 * The host part of a dial address, as upstream strips it for destHost: at
 * most one colon → cut at the first colon; more (IPv6) → cut after the last
 * colon, then trim brackets. No IP normalisation (upstream does none).
 */
export function destHostOf(address: string): string {
  const colons = address.split(':').length - 1;
  if (colons <= 1) {
    const i = address.indexOf(':');
    return i < 0 ? address : address.slice(0, i);
  }
  const last = address.lastIndexOf(':');
  let host = address.slice(0, last);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return host;
}
