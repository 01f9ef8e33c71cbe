/**
 * konnectivity-agent command line: upstream's flags (cmd/agent/app/options),
 * their defaults and Validate() rules with upstream's error texts, klog's
 * flags, and a separate group for konnectivity-ts extensions.
 */
import { randomUUID } from 'node:crypto';
import { FlagSet } from '../flags/flag-set.ts';
import { LabelSelectorFlagValue } from '../flags/flag-values.ts';
import { formatGoDurationMs } from '../flags/go-duration.ts';
import { missingFileError } from '../flags/go-stat.ts';
import { goQuote } from '../flags/go-strconv.ts';
import { parseGoUrlQuery } from '../flags/go-url-query.ts';
import { registerKlogFlags, type KlogOptions } from '../flags/klog-flags.ts';
import type { LabelSelector } from '../flags/label-selector.ts';
import { OptionsError } from '../flags/options-error.ts';
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES as MAX_GRPC_MESSAGE_BYTES } from '../grpc/packet-stream.ts';
import { ALLOWED_DESTINATIONS_FLAG, DestinationPolicy } from './destination-policy.ts';
import { STALL_POLICIES, type StallPolicy } from '../protocol/stall-policy.ts';

/** How the agent decides how many servers to connect to (see spec §7.3); "" behaves as "default". */
export type ServerCountSource = '' | 'default' | 'max';

export interface AgentOptions extends KlogOptions, AgentExtensionOptions {
  /** Client certificate for mTLS to the server; needs --agent-key. */
  readonly agentCert: string;
  readonly agentKey: string;
  /** CA bundle that verifies the server's certificate. */
  readonly caCert: string;
  readonly proxyServerHost: string;
  readonly proxyServerPort: number;
  /** ALPN protocols offered before gRPC's own `h2`. */
  readonly alpnProtos: readonly string[];
  readonly healthServerHost: string;
  readonly healthServerPort: number;
  readonly adminServerPort: number;
  readonly adminBindAddress: string;
  readonly enableProfiling: boolean;
  readonly enableContentionProfiling: boolean;
  /** `--agent-id`, else env PROXY_AGENT_ID, else a random UUID. */
  readonly agentId: string;
  /** URL-query-encoded identifiers, sent verbatim to the server; keys validated. */
  readonly agentIdentifiers: string;
  readonly syncIntervalMs: number;
  readonly probeIntervalMs: number;
  readonly syncIntervalCapMs: number;
  /** gRPC client keepalive ping interval (pings allowed without streams). */
  readonly keepaliveTimeMs: number;
  /** File whose content is sent as the bearer token; empty means no token. */
  readonly serviceAccountTokenPath: string;
  readonly warnOnChannelLimit: boolean;
  readonly syncForever: boolean;
  readonly xfrChannelSize: number;
  readonly countServerLeases: boolean;
  readonly leaseNamespace: string;
  /** From `--lease-label-selector` (or its deprecated alias `--lease-label`). */
  readonly leaseLabelSelector: LabelSelector;
  readonly serverCountSource: ServerCountSource;
  /** kubeconfig for lease counting; empty means in-cluster configuration. */
  readonly kubeconfig: string;
  readonly kubeApiContentType: string;
  /** Notices for stderr, e.g. use of a deprecated flag. */
  readonly warnings: readonly string[];
}

const COMMAND = 'konnectivity-agent';
const DESCRIPTION =
  'konnectivity-agent connects out to konnectivity-server instances over gRPC and opens the TCP connections they request inside the cluster network.';

/** Upstream flag values as given, before typed/derived fields are computed. */
type RawAgentFlags = Omit<AgentOptions, keyof KlogOptions | keyof AgentExtensionOptions | 'warnings' | 'serverCountSource'> & {
  readonly serverCountSource: string;
};

function registerUpstreamAgentFlags(flags: FlagSet, env: Record<string, string | undefined>): () => RawAgentFlags {
  const agentCert = flags.string('agent-cert', '', 'Client certificate file for mTLS to the server; requires --agent-key.');
  const agentKey = flags.string('agent-key', '', 'Client private key file for mTLS to the server; requires --agent-cert.');
  const caCert = flags.string('ca-cert', '', "CA bundle used to verify the server's certificate.");
  const proxyServerHost = flags.string('proxy-server-host', '127.0.0.1', 'Host name or address of the proxy server.');
  const proxyServerPort = flags.int('proxy-server-port', 8091, 'Port of the proxy server.');
  const alpnProtos = flags.stringSlice('alpn-proto', [], 'Extra ALPN protocols to offer to the server, e.g. to route on a port shared with the apiserver.');
  const healthServerHost = flags.string('health-server-host', '', 'Health listener bind address; empty means all interfaces.');
  const healthServerPort = flags.int('health-server-port', 8093, 'Health HTTP port (/healthz, /readyz, /metrics).');
  const adminServerPort = flags.int('admin-server-port', 8094, 'Admin HTTP port (profiling; /metrics redirects to the health port).');
  const adminBindAddress = flags.string('admin-bind-address', '127.0.0.1', 'Admin listener bind address; empty means all interfaces.');
  const enableProfiling = flags.bool('enable-profiling', false, 'Serve profiling endpoints under /debug/pprof on the admin port.');
  const enableContentionProfiling = flags.bool('enable-contention-profiling', false, 'Also record lock contention; requires --enable-profiling.');
  const agentId = flags.string('agent-id', env['PROXY_AGENT_ID'] || randomUUID(), 'Unique ID of this agent; defaults to $PROXY_AGENT_ID or a random UUID.');
  const agentIdentifiers = flags.string(
    'agent-identifiers',
    '',
    'URL-encoded identifiers the server can route by, e.g. host=node1&ipv4=10.0.0.5&ipv6=fd00::5&cidr=10.0.0.0/24&default-route=true',
  );
  const syncInterval = flags.duration('sync-interval', '1s', 'Base interval of the loop that connects to every server; also the first back-off step.');
  const probeInterval = flags.duration('probe-interval', '1s', 'How often each server connection is checked for readiness.');
  const syncIntervalCap = flags.duration('sync-interval-cap', '10s', 'Upper bound of the connect back-off.');
  const keepaliveTime = flags.duration('keepalive-time', '1h', 'Interval of gRPC keepalive pings to the server (keep it at 30s or more).');
  const serviceAccountTokenPath = flags.string('service-account-token-path', '', 'File holding a service-account token to authenticate to the server with.');
  const warnOnChannelLimit = flags.bool('warn-on-channel-limit', false, 'Log when a transfer queue is full.');
  const syncForever = flags.bool('sync-forever', false, 'Keep looking for new servers after reaching the server count.');
  const xfrChannelSize = flags.int('xfr-channel-size', 150, 'Capacity of the per-connection transfer queues.');
  const countServerLeases = flags.bool('count-server-leases', false, 'Derive the server count from server Leases (needs get/list/watch on leases).');
  const leaseNamespace = flags.string('lease-namespace', 'kube-system', 'Namespace of the server Leases.');
  const leaseLabelSelector = flags.add(
    'lease-label-selector',
    new LabelSelectorFlagValue('k8s-app=konnectivity-server'),
    'Label selector of the server Leases to count.',
  );
  // Older name of the same setting: shares the value, hidden from --help.
  flags.add('lease-label', leaseLabelSelector, 'Label selector of the server Leases to count.', {
    deprecated: 'use --lease-label-selector instead',
  });
  const serverCountSource = flags.string('server-count-source', 'default', "Server count to use with --count-server-leases: 'default' (leases) or 'max' (max of leases and server responses).");
  const kubeconfig = flags.string('kubeconfig', '', 'kubeconfig file for lease counting; empty means in-cluster configuration.');
  const kubeApiContentType = flags.string('kube-api-content-type', 'application/vnd.kubernetes.protobuf', 'Content type of requests to the Kubernetes API.');

  return () => ({
    agentCert: agentCert.value,
    agentKey: agentKey.value,
    caCert: caCert.value,
    proxyServerHost: proxyServerHost.value,
    proxyServerPort: proxyServerPort.value,
    alpnProtos: alpnProtos.value,
    healthServerHost: healthServerHost.value,
    healthServerPort: healthServerPort.value,
    adminServerPort: adminServerPort.value,
    adminBindAddress: adminBindAddress.value,
    enableProfiling: enableProfiling.value,
    enableContentionProfiling: enableContentionProfiling.value,
    agentId: agentId.value,
    agentIdentifiers: agentIdentifiers.value,
    syncIntervalMs: syncInterval.milliseconds,
    probeIntervalMs: probeInterval.milliseconds,
    syncIntervalCapMs: syncIntervalCap.milliseconds,
    keepaliveTimeMs: keepaliveTime.milliseconds,
    serviceAccountTokenPath: serviceAccountTokenPath.value,
    warnOnChannelLimit: warnOnChannelLimit.value,
    syncForever: syncForever.value,
    xfrChannelSize: xfrChannelSize.value,
    countServerLeases: countServerLeases.value,
    leaseNamespace: leaseNamespace.value,
    leaseLabelSelector: leaseLabelSelector.value,
    serverCountSource: serverCountSource.value,
    kubeconfig: kubeconfig.value,
    kubeApiContentType: kubeApiContentType.value,
  });
}


const identifierKeys: ReadonlySet<string> = new Set(['ipv4', 'ipv6', 'host', 'cidr', 'default-route']);

/** Upstream validateAgentIdentifiers: a Go URL query whose keys are all known identifier types. */
export function agentIdentifiersError(text: string): string | undefined {
  const { values, error } = parseGoUrlQuery(text);
  if (error !== undefined) return error;
  for (const key of values.keys()) {
    if (!identifierKeys.has(key)) return `unknown address type: ${key}`;
  }
  return undefined;
}

/** Upstream Validate() plus the checks of the newer flags; returns the first failure's text. */
function validateUpstreamAgentOptions(o: RawAgentFlags): string | undefined {
  let missing: string | undefined;
  if (o.agentKey !== '') {
    if ((missing = missingFileError(o.agentKey))) return `error checking agent key ${o.agentKey}, got ${missing}`;
    if (o.agentCert === '') return `cannot have agent cert empty when agent key is set to "${o.agentKey}"`;
  }
  if (o.agentCert !== '') {
    if ((missing = missingFileError(o.agentCert))) return `error checking agent cert ${o.agentCert}, got ${missing}`;
    if (o.agentKey === '') return `cannot have agent key empty when agent cert is set to "${o.agentCert}"`;
  }
  if (o.caCert !== '' && (missing = missingFileError(o.caCert))) return `error checking agent CA cert ${o.caCert}, got ${missing}`;
  if (o.proxyServerPort <= 0) return `proxy server port ${o.proxyServerPort} must be greater than 0`;
  if (o.healthServerPort <= 0) return `health server port ${o.healthServerPort} must be greater than 0`;
  if (o.adminServerPort <= 0) return `admin server port ${o.adminServerPort} must be greater than 0`;
  if (o.enableContentionProfiling && !o.enableProfiling) {
    return 'if --enable-contention-profiling is set, --enable-profiling must also be set';
  }
  if (o.syncIntervalMs > o.syncIntervalCapMs) {
    return `sync interval ${formatGoDurationMs(o.syncIntervalMs)} must be less than sync interval cap ${formatGoDurationMs(o.syncIntervalCapMs)}`;
  }
  if (o.serviceAccountTokenPath !== '' && (missing = missingFileError(o.serviceAccountTokenPath))) {
    return `error checking service account token path ${o.serviceAccountTokenPath}, got ${missing}`;
  }
  const identifiersError = agentIdentifiersError(o.agentIdentifiers);
  if (identifiersError !== undefined) return `agent address is invalid: ${identifiersError}`;
  // (inferred) The order of the checks below, which came with newer flags, is not pinned by the spec.
  if (o.xfrChannelSize <= 0) return `channel size ${o.xfrChannelSize} must be greater than 0`;
  if (o.serverCountSource !== '' && o.serverCountSource !== 'default' && o.serverCountSource !== 'max') {
    return `--server-count-source must be one of '', 'default', 'max', got ${o.serverCountSource}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// konnectivity-ts extensions: flags upstream does not have. Register them in
// registerAgentExtensionFlags (they are listed under their own heading in
// --help), add their fields to AgentExtensionOptions, and validate them in
// validateAgentExtensionOptions. Names must not collide with upstream flags.
// ---------------------------------------------------------------------------

export const AGENT_EXTENSIONS_GROUP = 'konnectivity-ts extensions';

export interface AgentExtensionOptions {
  /** `--allowed-destinations` entries; null when the flag was not given (every destination allowed). */
  readonly allowedDestinations: readonly string[] | null;
  /** `--denied-destinations` entries, checked before the allow list. */
  readonly deniedDestinations: readonly string[];
  /** `--max-endpoint-connections`; 0 = unlimited. */
  readonly maxEndpointConnections: number;
  /** `--max-pending-endpoint-dials`; 0 = unlimited. */
  readonly maxPendingEndpointDials: number;
  /** `--tls-reload-interval`: how often --ca-cert/--agent-cert/--agent-key are checked for changes; 0 = load once (upstream). */
  readonly tlsReloadIntervalMs: number;
  /** `--flow-control-window`: per-connection credit window offered to konnectivity-ts servers; 0 = never offer. */
  readonly flowControlWindowBytes: number;
  /** `--endpoint-buffer-bytes`: bytes queued toward one destination that is not reading before that connection is closed. */
  readonly endpointBufferBytes: number;
  /** `--endpoint-stall-timeout`: servers without flow control; 0 = close at the buffer bound, never pausing a server stream. */
  readonly endpointStallTimeoutMs: number;
  /** `--endpoint-stall-policy`: servers without flow control; 'close' never pauses a server stream, 'pause' does as upstream. */
  readonly endpointStallPolicy: StallPolicy;
  /** `--proxy-server-addresses`: more `host:port` proxy-servers connected to directly (HA without a load balancer). */
  readonly proxyServerAddresses: readonly string[];
}

function registerAgentExtensionFlags(flags: FlagSet): () => AgentExtensionOptions {
  const group = { group: AGENT_EXTENSIONS_GROUP };
  const allowedDestinations = flags.stringSlice(
    'allowed-destinations',
    [],
    'Destinations DIAL_REQs may reach; unset = any. Entries: CIDR (10.0.0.0/8), address, host name, *.suffix or *, each with optional :port or :low-high (IPv6 in brackets: [fd00::/8]:443). Host names match the dial address text; address entries must match every address a name resolves to.',
    group,
  );
  const deniedDestinations = flags.stringSlice(
    'denied-destinations',
    [],
    'Destinations DIAL_REQs must never reach, checked before --allowed-destinations; same entry syntax. A name is denied if any address it resolves to is.',
    group,
  );
  const maxEndpointConnections = flags.int('max-endpoint-connections', 10_000, 'Endpoint connections open or being dialed, over all servers; further dials are refused. 0 = unlimited.', group);
  const maxPendingEndpointDials = flags.int('max-pending-endpoint-dials', 1_000, 'Endpoint dials in progress (DNS + connect), over all servers; further dials are refused. 0 = unlimited.', group);
  const tlsReloadInterval = flags.duration(
    'tls-reload-interval',
    '2s',
    'How often --ca-cert, --agent-cert and --agent-key are checked for changes (they are also checked before every connection attempt); changed files that validate are used for new connections. 0 = load once at startup (upstream behaviour).',
    group,
  );
  const flowControlWindow = flags.int(
    'flow-control-window',
    1024 * 1024,
    'Per-connection window (bytes) offered to konnectivity-ts servers for per-connection flow control, so one slow reader pauses only its own destination. Upstream servers ignore the offer. 0 = never offer (upstream behaviour).',
    group,
  );
  const endpointBufferBytes = flags.int(
    'endpoint-buffer-bytes',
    8 * 1024 * 1024,
    'Bytes queued toward one destination that is not reading. With konnectivity-ts servers (flow control) the server never sends more; with upstream servers see --endpoint-stall-policy.',
    group,
  );
  const endpointStallTimeout = flags.duration(
    'endpoint-stall-timeout',
    '30s',
    'Servers without per-connection flow control (upstream servers): once --endpoint-buffer-bytes are queued for a destination that is not reading, its connection is closed if that destination takes no byte for this long (see --endpoint-stall-policy for what happens meanwhile). 0 = close as soon as --endpoint-buffer-bytes are queued.',
    group,
  );
  const endpointStallPolicy = flags.string(
    'endpoint-stall-policy',
    'close',
    "Servers without per-connection flow control (upstream servers), while --endpoint-buffer-bytes are queued for one destination: 'close' (the default) never pauses the server's stream, so other connections keep flowing; the queue may grow to twice --endpoint-buffer-bytes while the destination keeps taking bytes, and past that its connection alone is closed. 'pause' stops reading the server's whole stream until the destination drains, as upstream's agent does (every connection on that stream waits; a slow destination loses nothing).",
    group,
  );
  const proxyServerAddresses = flags.stringSlice(
    'proxy-server-addresses',
    [],
    'More proxy-servers (host:port, comma-separated; IPv6 in brackets) tried in turn with --proxy-server-host:--proxy-server-port, so an HA agent reaches every server (--server-count) without a load balancer.',
    group,
  );
  return () => ({
    proxyServerAddresses: proxyServerAddresses.value,
    flowControlWindowBytes: flowControlWindow.value,
    endpointBufferBytes: endpointBufferBytes.value,
    endpointStallTimeoutMs: endpointStallTimeout.milliseconds,
    endpointStallPolicy: endpointStallPolicy.value as StallPolicy,
    tlsReloadIntervalMs: tlsReloadInterval.milliseconds,
    allowedDestinations: flags.changed('allowed-destinations') ? allowedDestinations.value : null,
    deniedDestinations: deniedDestinations.value,
    maxEndpointConnections: maxEndpointConnections.value,
    maxPendingEndpointDials: maxPendingEndpointDials.value,
  });
}

/** The destination policy the options describe (they were validated, so this does not throw). */
export function destinationPolicyFromOptions(options: AgentExtensionOptions): DestinationPolicy {
  return DestinationPolicy.fromEntries(options.allowedDestinations, options.deniedDestinations);
}

/**
 * Parses one `--proxy-server-addresses` entry: `host:port` or `[v6]:port`,
 * port 1-65535. Throws with the reason when the entry is malformed.
 */
export function parseProxyServerAddress(entry: string): { host: string; port: number } {
  const text = entry.trim();
  const m = /^(?:\[([0-9A-Fa-f:.%\w-]+)\]|([^\s:[\]/]+)):(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`--proxy-server-addresses entry ${JSON.stringify(entry)} is not host:port (IPv6 as [addr]:port)`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`--proxy-server-addresses entry ${JSON.stringify(entry)}: port must be 1-65535`);
  return { host: m[1] ?? m[2]!, port };
}

function validateAgentExtensionOptions(options: AgentOptions): string | undefined {
  for (const entry of options.proxyServerAddresses) {
    try {
      parseProxyServerAddress(entry);
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }
  if (options.tlsReloadIntervalMs < 0) return `--tls-reload-interval must be 0 (disabled) or more`;
  if (options.allowedDestinations !== null && options.allowedDestinations.every((e) => e.trim() === '')) {
    return `${ALLOWED_DESTINATIONS_FLAG} is empty: leave it out to allow every destination, or list at least one entry`;
  }
  try {
    destinationPolicyFromOptions(options);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  if (options.maxEndpointConnections < 0) return `--max-endpoint-connections ${options.maxEndpointConnections} must be 0 (unlimited) or more`;
  if (options.flowControlWindowBytes !== 0 && (options.flowControlWindowBytes < 65536 || options.flowControlWindowBytes > 67108864)) {
    return `--flow-control-window ${options.flowControlWindowBytes} must be 0 (off) or between 65536 and 67108864`;
  }
  if (options.endpointBufferBytes < 65536) return `--endpoint-buffer-bytes ${options.endpointBufferBytes} must be at least 65536`;
  // With flow control a slow destination can legitimately have 1.5 windows plus one packet queued
  // (docs/design/flow-control.md, rule 4); a smaller bound would close it as not reading.
  const neededForWindow = options.flowControlWindowBytes * 1.5 + MAX_GRPC_MESSAGE_BYTES;
  if (options.flowControlWindowBytes !== 0 && options.endpointBufferBytes < neededForWindow) {
    return `--endpoint-buffer-bytes ${options.endpointBufferBytes} must be at least 1.5 × --flow-control-window + 4 MiB (${neededForWindow}) while flow control is on, or a slow destination would be closed as not reading`;
  }
  if (options.endpointStallTimeoutMs < 0) return `--endpoint-stall-timeout must be 0 (close at once) or more`;
  if (!STALL_POLICIES.includes(options.endpointStallPolicy)) return `--endpoint-stall-policy ${JSON.stringify(options.endpointStallPolicy)} must be close or pause`;
  if (options.maxPendingEndpointDials < 0) return `--max-pending-endpoint-dials ${options.maxPendingEndpointDials} must be 0 (unlimited) or more`;
  return undefined;
}

// ---------------------------------------------------------------------------

function buildAgentFlagSet(env: Record<string, string | undefined>) {
  const flags = new FlagSet(COMMAND);
  const readUpstream = registerUpstreamAgentFlags(flags, env);
  const readKlog = registerKlogFlags(flags);
  const readExtensions = registerAgentExtensionFlags(flags);
  return { flags, readUpstream, readKlog, readExtensions };
}

/**
 * Parses and validates a konnectivity-agent command line (without the
 * program name). Throws OptionsError: kind `help` for --help/-h, `parse` for
 * flag syntax errors and positional arguments, `validation` for rule
 * violations (message wrapped as upstream does).
 */
export function parseAgentOptions(argv: readonly string[], env: Record<string, string | undefined> = process.env): AgentOptions {
  const { flags, readUpstream, readKlog, readExtensions } = buildAgentFlagSet(env);
  const parsed = flags.parse(argv);
  if (parsed.helpRequested) throw new OptionsError('help', 'help requested');
  if (parsed.args.length > 0) {
    // Upstream's cobra command silently ignores positional arguments; rejecting
    // them catches typos such as a missing "--".
    throw new OptionsError('parse', `unexpected argument ${goQuote(parsed.args[0] ?? '')}: ${COMMAND} takes no positional arguments`);
  }
  const upstream = readUpstream();
  const fail = (reason: string) => new OptionsError('validation', `failed to validate agent options with ${reason}`, { reason });
  const reason = validateUpstreamAgentOptions(upstream);
  if (reason !== undefined) throw fail(reason);
  const options: AgentOptions = {
    ...upstream,
    serverCountSource: upstream.serverCountSource as ServerCountSource,
    ...readKlog(),
    ...readExtensions(),
    warnings: parsed.warnings,
  };
  const extensionReason = validateAgentExtensionOptions(options);
  if (extensionReason !== undefined) throw fail(extensionReason);
  return options;
}

/** The --help text: description, usage line, upstream and klog flags, then extensions. */
export function agentUsage(env: Record<string, string | undefined> = process.env): string {
  return buildAgentFlagSet(env).flags.usage(DESCRIPTION);
}
