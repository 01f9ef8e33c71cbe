/**
 * konnectivity-server command line: upstream's flags (cmd/server/app/options),
 * their defaults and Validate() rules with upstream's error texts, klog's
 * flags, and a separate group for konnectivity-ts extensions.
 */
import { randomUUID } from 'node:crypto';
import { FlagSet } from '../flags/flag-set.ts';
import { formatGoDurationMs } from '../flags/go-duration.ts';
import { missingFileError } from '../flags/go-stat.ts';
import { goQuote } from '../flags/go-strconv.ts';
import { registerKlogFlags, type KlogOptions } from '../flags/klog-flags.ts';
import { OptionsError } from '../flags/options-error.ts';
import { acceptedGoCipherSuites, goTlsVersionToNode } from './tls-names.ts';
import { SERVER_LIMIT_DEFAULTS, type ServerLimits } from './limits.ts';
import { STALL_POLICIES, type StallPolicy } from '../protocol/stall-policy.ts';

export type ProxyStrategy = 'default' | 'destHost' | 'defaultRoute';
export type ServerMode = 'grpc' | 'http-connect';

export interface ServerOptions extends KlogOptions, ServerExtensionOptions {
  /** Frontend (kube-apiserver side) TLS certificate file. */
  readonly serverCert: string;
  readonly serverKey: string;
  /** CA that frontend clients' certificates must chain to; required for the TCP frontend. */
  readonly serverCaCert: string;
  /** Agent-listener TLS certificate file. */
  readonly clusterCert: string;
  readonly clusterKey: string;
  /** When set, agents must present a client certificate signed by this CA. */
  readonly clusterCaCert: string;
  readonly mode: ServerMode;
  /** Frontend unix socket path; empty means TCP frontend. */
  readonly udsName: string;
  readonly deleteExistingUdsFile: boolean;
  readonly serverPort: number;
  readonly serverBindAddress: string;
  readonly agentPort: number;
  readonly agentBindAddress: string;
  readonly adminPort: number;
  readonly adminBindAddress: string;
  readonly healthPort: number;
  readonly healthBindAddress: string;
  /** gRPC keepalive ping interval on the agent listener. */
  readonly keepaliveTimeMs: number;
  /** gRPC keepalive ping interval on the frontend listener. */
  readonly frontendKeepaliveTimeMs: number;
  readonly enableProfiling: boolean;
  readonly enableContentionProfiling: boolean;
  /** `--server-id`, else env PROXY_SERVER_ID, else a random UUID. */
  readonly serverId: string;
  readonly serverCount: number;
  readonly agentNamespace: string;
  readonly agentServiceAccount: string;
  readonly authenticationAudience: string;
  /** Path to a kubeconfig; empty means in-cluster configuration. */
  readonly kubeconfig: string;
  /** 0 means the Kubernetes client's default. */
  readonly kubeconfigQps: number;
  /** 0 means the Kubernetes client's default. */
  readonly kubeconfigBurst: number;
  readonly kubeApiContentType: string;
  /** In order of preference; duplicates kept, as upstream does. */
  readonly proxyStrategies: readonly ProxyStrategy[];
  /** Go cipher-suite names (see tls-names.ts for the OpenSSL mapping). */
  readonly cipherSuites: readonly string[];
  /** Go version name (`VersionTLS12`…) or "" for the default, TLS 1.2. */
  readonly tlsMinVersion: string;
  readonly xfrChannelSize: number;
  readonly frontendWriteChannelSize: number;
  readonly enableLeaseController: boolean;
  readonly leaseNamespace: string;
  /** Raw `--lease-label` (`k=v,k2=v2`). */
  readonly leaseLabel: string;
  /** `--lease-label` parsed; empty when it does not parse (only validated with the lease controller on). */
  readonly leaseLabels: Readonly<Record<string, string>>;
  /** 0: stop immediately. */
  readonly gracefulShutdownTimeoutMs: number;
  /** 0: no timeout. */
  readonly backendDialTimeoutMs: number;
  /** Deprecated upstream no-op. */
  readonly warnOnChannelLimit: boolean;
  /** Any of the token-auth trio was given: agents authenticate with a bearer token (TokenReview). */
  readonly tokenAuthEnabled: boolean;
  /** Token auth or the lease controller needs a Kubernetes client. */
  readonly needsKubernetesClient: boolean;
  /** Notices for stderr: deprecated flags used, insecure TLS minimum. */
  readonly warnings: readonly string[];
}

const COMMAND = 'konnectivity-server';
const DESCRIPTION =
  'konnectivity-server relays connections from kube-apiserver (gRPC or HTTP CONNECT frontend, over a unix socket or mTLS TCP) to konnectivity agents connected over gRPC.';

/** Upstream flag values as given, before the typed/derived fields are computed. */
type RawServerFlags = Omit<
  ServerOptions,
  keyof KlogOptions | keyof ServerExtensionOptions | 'warnings' | 'mode' | 'proxyStrategies' | 'leaseLabels' | 'tokenAuthEnabled' | 'needsKubernetesClient'
> & { readonly mode: string; readonly proxyStrategies: string };

function registerUpstreamServerFlags(flags: FlagSet, env: Record<string, string | undefined>): () => RawServerFlags {
  const serverCert = flags.string('server-cert', '', 'Frontend TLS certificate file; when set, --server-key is required too.');
  const serverKey = flags.string('server-key', '', 'Frontend TLS private key file; when set, --server-cert is required too.');
  const serverCaCert = flags.string('server-ca-cert', '', 'CA bundle used to verify kube-apiserver client certificates on the TCP frontend.');
  const clusterCert = flags.string('cluster-cert', '', 'TLS certificate file for the agent listener.');
  const clusterKey = flags.string('cluster-key', '', 'TLS private key file for the agent listener.');
  const clusterCaCert = flags.string('cluster-ca-cert', '', 'If set, agents must present a client certificate signed by this CA.');
  const mode = flags.string('mode', 'grpc', "Frontend protocol: 'grpc' or 'http-connect'.");
  const udsName = flags.string('uds-name', '', 'Serve the frontend on this unix socket path instead of TCP (then --server-port must be 0).');
  const deleteExistingUdsFile = flags.bool('delete-existing-uds-file', true, 'Remove an existing file at --uds-name before listening.');
  const serverPort = flags.int('server-port', 8090, 'Frontend TCP port; 0 when serving on a unix socket.');
  const serverBindAddress = flags.string('server-bind-address', '', 'Frontend bind address; empty means all interfaces.');
  const agentPort = flags.int('agent-port', 8091, 'Port agents connect to.');
  const agentBindAddress = flags.string('agent-bind-address', '', 'Agent listener bind address; empty means all interfaces.');
  const adminPort = flags.int('admin-port', 8095, 'Admin HTTP port (metrics, profiling).');
  const adminBindAddress = flags.string('admin-bind-address', '127.0.0.1', 'Admin listener bind address.');
  const healthPort = flags.int('health-port', 8092, 'Health HTTP port (/healthz, /readyz, /metrics).');
  const healthBindAddress = flags.string('health-bind-address', '', 'Health listener bind address; empty means all interfaces.');
  const keepaliveTime = flags.duration('keepalive-time', '1h', 'Interval of gRPC keepalive pings on the agent listener.');
  const frontendKeepaliveTime = flags.duration('frontend-keepalive-time', '1h', 'Interval of gRPC keepalive pings on the frontend listener.');
  const enableProfiling = flags.bool('enable-profiling', false, 'Serve profiling endpoints under /debug/pprof on the admin port.');
  const enableContentionProfiling = flags.bool('enable-contention-profiling', false, 'Also record lock contention; requires --enable-profiling.');
  const serverId = flags.string(
    'server-id',
    env['PROXY_SERVER_ID'] || randomUUID(),
    'Unique ID of this server; defaults to $PROXY_SERVER_ID or a random UUID.',
  );
  const serverCount = flags.int('server-count', 1, 'Number of server replicas agents should connect to (1 unless running HA).');
  const agentNamespace = flags.string('agent-namespace', '', 'Token auth: namespace of the agent service account.');
  const agentServiceAccount = flags.string('agent-service-account', '', 'Token auth: name of the agent service account.');
  const kubeconfig = flags.string('kubeconfig', '', 'kubeconfig file for token reviews and leases; empty means in-cluster configuration.');
  const kubeconfigQps = flags.float32('kubeconfig-qps', 0, 'Kubernetes client QPS limit; 0 keeps the client default.');
  const kubeconfigBurst = flags.int('kubeconfig-burst', 0, 'Kubernetes client burst limit; 0 keeps the client default.');
  const kubeApiContentType = flags.string('kube-api-content-type', 'application/vnd.kubernetes.protobuf', 'Content type of requests to the Kubernetes API.');
  const authenticationAudience = flags.string('authentication-audience', '', 'Token auth: audience the agent tokens must carry.');
  const proxyStrategies = flags.string(
    'proxy-strategies',
    'default',
    'Comma-separated agent selection strategies, tried in order: default, destHost, defaultRoute.',
  );
  const cipherSuites = flags.stringSlice('cipher-suites', [], 'Comma-separated allowed TLS 1.2 cipher suites (Go names); empty means defaults. No effect on TLS 1.3.');
  const tlsMinVersion = flags.string('tls-min-version', '', 'Minimum TLS version: VersionTLS10, VersionTLS11, VersionTLS12 or VersionTLS13; empty means VersionTLS12.');
  const xfrChannelSize = flags.int('xfr-channel-size', 10, 'Capacity of the per-stream receive queues (frontend and agent side).');
  // (inferred) Present in a later upstream snapshot than the one the spec was written
  // from; accepted so manifests for newer images keep working.
  const frontendWriteChannelSize = flags.int('frontend-write-channel-size', 10, 'Packets buffered per HTTP CONNECT frontend before agent-side processing blocks.');
  const enableLeaseController = flags.bool('enable-lease-controller', false, "Publish this server's Lease and delete expired ones.");
  const leaseNamespace = flags.string('lease-namespace', 'kube-system', 'Namespace of the server Leases.');
  const leaseLabel = flags.string('lease-label', 'k8s-app=konnectivity-server', 'Labels of the server Leases, as k=v[,k=v].');
  const gracefulShutdownTimeout = flags.duration('graceful-shutdown-timeout', '0', 'How long shutdown waits for connections to finish; 0 stops immediately.');
  const backendDialTimeout = flags.duration('backend-dial-timeout', '0', 'Timeout for sending a dial request to an agent and getting its answer; 0 disables it.');
  const warnOnChannelLimit = flags.bool('warn-on-channel-limit', true, 'No effect.', {
    deprecated: 'it no longer has any effect (the behaviour is always on) and will be removed',
  });

  return () => ({
    serverCert: serverCert.value,
    serverKey: serverKey.value,
    serverCaCert: serverCaCert.value,
    clusterCert: clusterCert.value,
    clusterKey: clusterKey.value,
    clusterCaCert: clusterCaCert.value,
    mode: mode.value,
    udsName: udsName.value,
    deleteExistingUdsFile: deleteExistingUdsFile.value,
    serverPort: serverPort.value,
    serverBindAddress: serverBindAddress.value,
    agentPort: agentPort.value,
    agentBindAddress: agentBindAddress.value,
    adminPort: adminPort.value,
    adminBindAddress: adminBindAddress.value,
    healthPort: healthPort.value,
    healthBindAddress: healthBindAddress.value,
    keepaliveTimeMs: keepaliveTime.milliseconds,
    frontendKeepaliveTimeMs: frontendKeepaliveTime.milliseconds,
    enableProfiling: enableProfiling.value,
    enableContentionProfiling: enableContentionProfiling.value,
    serverId: serverId.value,
    serverCount: serverCount.value,
    agentNamespace: agentNamespace.value,
    agentServiceAccount: agentServiceAccount.value,
    authenticationAudience: authenticationAudience.value,
    kubeconfig: kubeconfig.value,
    kubeconfigQps: kubeconfigQps.value,
    kubeconfigBurst: kubeconfigBurst.value,
    kubeApiContentType: kubeApiContentType.value,
    proxyStrategies: proxyStrategies.value,
    cipherSuites: cipherSuites.value,
    tlsMinVersion: tlsMinVersion.value,
    xfrChannelSize: xfrChannelSize.value,
    frontendWriteChannelSize: frontendWriteChannelSize.value,
    enableLeaseController: enableLeaseController.value,
    leaseNamespace: leaseNamespace.value,
    leaseLabel: leaseLabel.value,
    gracefulShutdownTimeoutMs: gracefulShutdownTimeout.milliseconds,
    backendDialTimeoutMs: backendDialTimeout.milliseconds,
    warnOnChannelLimit: warnOnChannelLimit.value,
  });
}


const knownStrategies: ReadonlySet<string> = new Set<ProxyStrategy>(['default', 'destHost', 'defaultRoute']);

/** Upstream ParseProxyStrategies: comma-separated, empty items skipped, no trimming. */
export function parseProxyStrategies(text: string): ProxyStrategy[] {
  const strategies: ProxyStrategy[] = [];
  for (const item of text.split(',')) {
    if (item === '') continue;
    if (!knownStrategies.has(item)) throw new Error(`unknown proxy strategy: ${item}`);
    strategies.push(item as ProxyStrategy);
  }
  if (strategies.length === 0) throw new Error('proxy strategies cannot be empty');
  return strategies;
}

/** Upstream util.ParseLabels for `--lease-label`: `k=v` pairs, split on ",", each on exactly one "=". */
export function parseLeaseLabels(text: string): Record<string, string> {
  if (text === '') throw new Error('empty string provided');
  const labels: Record<string, string> = {};
  for (const pair of text.split(',')) {
    const kv = pair.split('=');
    if (kv.length !== 2) throw new Error(`invalid label format: ${pair}`);
    labels[(kv[0] ?? '').trim()] = (kv[1] ?? '').trim();
  }
  return labels;
}

/** (inferred) Error wording of upstream's GetTLSVersion for an unknown name. */
function tlsVersionError(name: string): string {
  return `unknown tls version ${goQuote(name)}, accepted values are: VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13`;
}

/**
 * Upstream Validate(), in upstream's order; returns the first failure's text.
 * `warnings` receives upstream's non-fatal notices.
 */
function validateUpstreamServerOptions(o: RawServerFlags, warnings: string[]): string | undefined {
  let missing: string | undefined;
  if (o.serverKey !== '') {
    if ((missing = missingFileError(o.serverKey))) return `error checking server key ${o.serverKey}, got ${missing}`;
    if (o.serverCert === '') return `cannot have server cert empty when server key is set to ${goQuote(o.serverKey)}`;
  }
  if (o.serverCert !== '') {
    if ((missing = missingFileError(o.serverCert))) return `error checking server cert ${o.serverCert}, got ${missing}`;
    if (o.serverKey === '') return `cannot have server key empty when server cert is set to ${goQuote(o.serverCert)}`;
  }
  if (o.serverCaCert !== '' && (missing = missingFileError(o.serverCaCert))) {
    return `error checking server CA cert ${o.serverCaCert}, got ${missing}`;
  }
  if (o.clusterKey !== '') {
    if ((missing = missingFileError(o.clusterKey))) return `error checking cluster key ${o.clusterKey}, got ${missing}`;
    if (o.clusterCert === '') return `cannot have cluster cert empty when cluster key is set to ${goQuote(o.clusterKey)}`;
  }
  if (o.clusterCert !== '') {
    if ((missing = missingFileError(o.clusterCert))) return `error checking cluster cert ${o.clusterCert}, got ${missing}`;
    if (o.clusterKey === '') return `cannot have cluster key empty when cluster cert is set to ${goQuote(o.clusterCert)}`;
  }
  if (o.clusterCaCert !== '' && (missing = missingFileError(o.clusterCaCert))) {
    return `error checking cluster CA cert ${o.clusterCaCert}, got ${missing}`;
  }
  if (o.mode !== 'grpc' && o.mode !== 'http-connect') {
    return `mode must be set to either 'grpc' or 'http-connect' not ${goQuote(o.mode)}`;
  }
  if (o.udsName !== '') {
    if (o.serverPort !== 0) return `server port should be set to 0 not ${o.serverPort} for UDS`;
    if (o.serverKey !== '') return 'server key should not be set for UDS';
    if (o.serverCert !== '') return 'server cert should not be set for UDS';
    if (o.serverCaCert !== '') return 'server ca cert should not be set for UDS';
  } else if (o.serverCaCert === '') {
    return 'server ca cert must be set when in TCP mode (uds-name is empty)';
  }
  const ports: [number, string][] = [
    [o.serverPort, 'server'],
    [o.agentPort, 'agent'],
    [o.adminPort, 'admin'],
    [o.healthPort, 'health'],
  ];
  for (const [port, name] of ports) {
    if (port > 49151) return `please do not try to use ephemeral port ${port} for the ${name} port`;
  }
  for (const [port, name] of ports) {
    if (port < 1024 && !(name === 'server' && o.udsName !== '')) {
      return `please do not try to use reserved port ${port} for the ${name} port`;
    }
  }
  if (o.enableContentionProfiling && !o.enableProfiling) {
    return 'if --enable-contention-profiling is set, --enable-profiling must also be set';
  }
  if (o.agentNamespace !== '' || o.agentServiceAccount !== '' || o.authenticationAudience !== '') {
    if (o.clusterCaCert !== '') return '--cluster-ca-cert can not be used when agent authentication is enabled';
    if (o.agentNamespace === '') return '--agent-namespace cannot be empty when agent authentication is enabled';
    if (o.agentServiceAccount === '') return '--agent-service-account cannot be empty when agent authentication is enabled';
    if (o.authenticationAudience === '') return '--authentication-audience cannot be empty when agent authentication is enabled';
  }
  if (o.kubeconfig !== '' && (missing = missingFileError(o.kubeconfig))) {
    return `checking KubeconfigPath ${goQuote(o.kubeconfig)}, got ${missing}`;
  }
  if (o.proxyStrategies === '') return 'ProxyStrategies cannot be empty';
  try {
    parseProxyStrategies(o.proxyStrategies);
  } catch (err) {
    return `invalid proxy strategies: ${(err as Error).message}`;
  }
  if (o.xfrChannelSize <= 0) return `channel size ${o.xfrChannelSize} must be greater than 0`;
  if (o.frontendWriteChannelSize <= 0) {
    return `frontend write channel size ${o.frontendWriteChannelSize} must be greater than 0`;
  }
  if (o.tlsMinVersion !== '') {
    if (!goTlsVersionToNode.has(o.tlsMinVersion)) return tlsVersionError(o.tlsMinVersion);
    if (o.tlsMinVersion === 'VersionTLS10' || o.tlsMinVersion === 'VersionTLS11') {
      warnings.push(`--tls-min-version=${o.tlsMinVersion} is below TLS 1.2 and is considered insecure (RFC 8996)`);
    }
  }
  for (const cipher of o.cipherSuites) {
    if (!acceptedGoCipherSuites.has(cipher)) return `cipher suite ${cipher} not supported, doesn't exist or considered as insecure`;
  }
  if (o.enableLeaseController) {
    try {
      parseLeaseLabels(o.leaseLabel);
    } catch (err) {
      return (err as Error).message;
    }
  }
  if (o.gracefulShutdownTimeoutMs < 0) return `graceful-shutdown-timeout must be >= 0, got ${formatGoDurationMs(o.gracefulShutdownTimeoutMs)}`;
  if (o.backendDialTimeoutMs < 0) return `backend-dial-timeout must be >= 0, got ${formatGoDurationMs(o.backendDialTimeoutMs)}`;
  return undefined;
}

// ---------------------------------------------------------------------------
// konnectivity-ts extensions: flags upstream does not have. Register them in
// registerServerExtensionFlags (they are listed under their own heading in
// --help), add their fields to ServerExtensionOptions, and validate them in
// validateServerExtensionOptions. Names must not collide with upstream flags.
// ---------------------------------------------------------------------------

export const SERVER_EXTENSIONS_GROUP = 'konnectivity-ts extensions';

export interface ServerExtensionOptions {
  /** Exhaustion bounds (limits.ts); each 0 = unlimited/off except the two byte sizes, which must be > 0. */
  readonly limits: ServerLimits;
  /** `--tls-reload-interval`: how often the listeners' TLS files are checked and hot-reloaded; 0 = load once (upstream). */
  readonly tlsReloadIntervalMs: number;
  /** `--frontend-stall-timeout`: agents without flow control; 0 = close at the buffer bound. */
  readonly frontendStallTimeoutMs: number;
  /** `--frontend-stall-policy`: agents without flow control; 'close' never pauses an agent stream, 'pause' does as upstream. */
  readonly frontendStallPolicy: StallPolicy;
  /** `--authentication-cache-ttl`: accepted agent tokens are accepted again without a TokenReview for this long; 0 = never. */
  readonly authenticationCacheTtlMs: number;
  /** `--http2-implementation`: which HTTP/2 server the gRPC listeners use. */
  readonly http2Implementation: 'builtin' | 'node';
}

function registerServerExtensionFlags(flags: FlagSet): () => ServerExtensionOptions {
  const group = { group: SERVER_EXTENSIONS_GROUP };
  const d = SERVER_LIMIT_DEFAULTS;
  const perFrontend = flags.int('max-pending-dials-per-frontend', d.maxPendingDialsPerFrontend, 'Dials awaiting an agent answer on one frontend stream (kube-apiserver sends one); further dials on it are refused. 0 = unlimited.', group);
  const perAgentPending = flags.int('max-pending-dials-per-agent', d.maxPendingDialsPerAgent, 'Dials awaiting an answer from one agent; further dials routed to it are refused. 0 = unlimited.', group);
  const perAgentConnections = flags.int('max-connections-per-agent', d.maxConnectionsPerAgent, 'Connections open or pending through one agent; further dials routed to it are refused. 0 = unlimited.', group);
  const idleTimeout = flags.duration('idle-connection-timeout', '0', 'Close a tunnelled connection after this long without data in either direction. 0 = never (exec, logs -f and watches may idle for hours).', group);
  const headerBytes = flags.int('http-connect-max-header-bytes', d.httpConnectMaxHeaderBytes, 'Largest CONNECT request head accepted (HTTP-CONNECT mode), answered with 431 beyond; kube-apiserver sends about 60 bytes.', group);
  const headerTimeout = flags.duration('http-connect-header-timeout', '60s', 'Time a client has to send its CONNECT request head (HTTP-CONNECT mode) before the connection is closed. 0 = no limit.', group);
  const tlsReloadInterval = flags.duration(
    'tls-reload-interval',
    '2s',
    'How often the --server-*/--cluster-* certificate, key and CA files are checked for changes; changed files that validate are used for new connections, established ones are kept. 0 = load once at startup (upstream behaviour).',
    group,
  );
  const grpcMessage = flags.int('max-grpc-receive-message-bytes', d.maxGrpcReceiveMessageBytes, 'Largest gRPC message accepted from a frontend or agent; the stream fails with RESOURCE_EXHAUSTED beyond (grpc-go default 4 MiB).', group);
  const pendingAuth = flags.int(
    'max-pending-agent-authentications',
    d.maxPendingAgentAuthentications,
    'With token authentication: agent connections awaiting their TokenReview at once; further Connect streams are refused with RESOURCE_EXHAUSTED (the agent retries) until reviews finish. Bounds what unauthenticated peers of the agent port can make the server hold and ask the apiserver. 0 = unlimited.',
    group,
  );
  const authCacheTtl = flags.duration(
    'authentication-cache-ttl',
    '1m',
    "With token authentication: how long an agent token the TokenReview accepted is accepted again without another review (never past the token's own expiry; refusals are not remembered). 0 = review every Connect, as upstream.",
    group,
  );
  const frontendStall = flags.duration(
    'frontend-stall-timeout',
    '30s',
    'Agents without per-connection flow control (upstream agents): once 16 MiB are queued for a frontend that is not reading, its connection is closed if that frontend takes no byte for this long (see --frontend-stall-policy for what happens meanwhile). 0 = close as soon as 16 MiB are queued.',
    group,
  );
  const frontendStallPolicy = flags.string(
    'frontend-stall-policy',
    'close',
    "Agents without per-connection flow control (upstream agents), while 16 MiB are queued for one frontend: 'close' (the default) never pauses the agent's stream, so other connections on that agent keep flowing; the queue may grow to 32 MiB while the frontend keeps taking bytes, and past that its connection alone is closed. 'pause' stops reading the agent's whole stream until the frontend drains, as upstream does (every connection on that agent waits; a slow reader loses nothing).",
    group,
  );
  const http2Implementation = flags.string(
    'http2-implementation',
    'builtin',
    "HTTP/2 server of the gRPC listeners (the agent port, and the frontend in grpc mode): 'builtin' (konnectivity-ts's own, the default) or 'node' (Node's nghttp2, which konnectivity-ts used before it had its own; a fallback: it counts every stream a client cancels as a rapid reset and closes the connection after 1,000 at more than 33 a second, which a kube-apiserver with a reusable gRPC tunnel does once per dial).",
    group,
  );
  return () => ({
    authenticationCacheTtlMs: authCacheTtl.milliseconds,
    http2Implementation: http2Implementation.value as 'builtin' | 'node',
    frontendStallTimeoutMs: frontendStall.milliseconds,
    frontendStallPolicy: frontendStallPolicy.value as StallPolicy,
    limits: {
      maxPendingDialsPerFrontend: perFrontend.value,
      maxPendingDialsPerAgent: perAgentPending.value,
      maxConnectionsPerAgent: perAgentConnections.value,
      idleConnectionTimeoutMs: idleTimeout.milliseconds,
      httpConnectMaxHeaderBytes: headerBytes.value,
      httpConnectHeaderTimeoutMs: headerTimeout.milliseconds,
      maxGrpcReceiveMessageBytes: grpcMessage.value,
      maxPendingAgentAuthentications: pendingAuth.value,
    },
    tlsReloadIntervalMs: tlsReloadInterval.milliseconds,
  });
}

function validateServerExtensionOptions(options: ServerOptions): string | undefined {
  const l = options.limits;
  const atLeastZero: Array<[string, number]> = [
    ['--max-pending-dials-per-frontend', l.maxPendingDialsPerFrontend],
    ['--max-pending-dials-per-agent', l.maxPendingDialsPerAgent],
    ['--max-connections-per-agent', l.maxConnectionsPerAgent],
    ['--idle-connection-timeout', l.idleConnectionTimeoutMs],
    ['--http-connect-header-timeout', l.httpConnectHeaderTimeoutMs],
    ['--max-pending-agent-authentications', l.maxPendingAgentAuthentications],
  ];
  for (const [flag, v] of atLeastZero) if (v < 0) return `${flag} ${v} must be 0 (no limit) or more`;
  if (options.tlsReloadIntervalMs < 0) return `--tls-reload-interval must be 0 (disabled) or more`;
  if (options.frontendStallTimeoutMs < 0) return `--frontend-stall-timeout must be 0 (close at once) or more`;
  if (!STALL_POLICIES.includes(options.frontendStallPolicy)) return `--frontend-stall-policy ${JSON.stringify(options.frontendStallPolicy)} must be close or pause`;
  if (options.http2Implementation !== 'builtin' && options.http2Implementation !== 'node') return `--http2-implementation ${JSON.stringify(options.http2Implementation)} must be builtin or node`;
  if (options.authenticationCacheTtlMs < 0) return `--authentication-cache-ttl must be 0 (review every connect) or more`;
  if (l.httpConnectMaxHeaderBytes <= 0) return `--http-connect-max-header-bytes ${l.httpConnectMaxHeaderBytes} must be greater than 0`;
  if (l.maxGrpcReceiveMessageBytes <= 0 || l.maxGrpcReceiveMessageBytes > 2 ** 31 - 1) {
    return `--max-grpc-receive-message-bytes ${l.maxGrpcReceiveMessageBytes} must be between 1 and 2147483647`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------

function buildServerFlagSet(env: Record<string, string | undefined>) {
  const flags = new FlagSet(COMMAND);
  const readUpstream = registerUpstreamServerFlags(flags, env);
  const readKlog = registerKlogFlags(flags);
  const readExtensions = registerServerExtensionFlags(flags);
  return { flags, readUpstream, readKlog, readExtensions };
}

/**
 * Parses and validates a konnectivity-server command line (without the
 * program name). Throws OptionsError: kind `help` for --help/-h, `parse` for
 * flag syntax errors and positional arguments, `validation` for rule
 * violations (message wrapped as upstream does).
 */
export function parseServerOptions(argv: readonly string[], env: Record<string, string | undefined> = process.env): ServerOptions {
  const { flags, readUpstream, readKlog, readExtensions } = buildServerFlagSet(env);
  const parsed = flags.parse(argv);
  if (parsed.helpRequested) throw new OptionsError('help', 'help requested');
  if (parsed.args.length > 0) {
    // Upstream's cobra command silently ignores positional arguments; rejecting
    // them catches typos such as a missing "--".
    throw new OptionsError('parse', `unexpected argument ${goQuote(parsed.args[0] ?? '')}: ${COMMAND} takes no positional arguments`);
  }
  const upstream = readUpstream();
  const warnings = [...parsed.warnings];
  const fail = (reason: string) =>
    new OptionsError('validation', `failed to validate server options with ${reason}`, { reason });
  const reason = validateUpstreamServerOptions(upstream, warnings);
  if (reason !== undefined) throw fail(reason);

  const tokenAuthEnabled = upstream.agentNamespace !== '' || upstream.agentServiceAccount !== '' || upstream.authenticationAudience !== '';
  let leaseLabels: Record<string, string> = {};
  try {
    leaseLabels = parseLeaseLabels(upstream.leaseLabel);
  } catch {
    // Only an error with the lease controller on, which validation has already rejected.
  }
  const options: ServerOptions = {
    ...upstream,
    mode: upstream.mode as ServerMode,
    proxyStrategies: parseProxyStrategies(upstream.proxyStrategies),
    leaseLabels,
    tokenAuthEnabled,
    needsKubernetesClient: tokenAuthEnabled || upstream.enableLeaseController,
    ...readKlog(),
    ...readExtensions(),
    warnings,
  };
  const extensionReason = validateServerExtensionOptions(options);
  if (extensionReason !== undefined) throw fail(extensionReason);
  return options;
}

/** The --help text: description, usage line, upstream and klog flags, then extensions. */
export function serverUsage(env: Record<string, string | undefined> = process.env): string {
  return buildServerFlagSet(env).flags.usage(DESCRIPTION);
}
