/**
 * Opens one `/AgentService/Connect` stream to a proxy-server: a fresh HTTP/2
 * connection per attempt (so an L4 load balancer spreads the agent over its
 * servers, as upstream's grpc.Dial per client does), the agent metadata, and
 * the wait for the `serverid`/`servercount` response headers.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import tls, { type ConnectionOptions } from 'node:tls';
import { GrpcChannel, type GrpcClientCall } from '../grpc/grpc-client.ts';
import type { H2ClientSession, H2ClientStream, H2Headers } from '../grpc/h2-client-session.ts';
import type { PacketStreamOptions } from '../grpc/packet-stream.ts';
import { FLOW_CONTROL_HEADER, formatFlowControlHeader, parseFlowControlHeader } from '../protocol/flow-control.ts';
import { acceptsServerDrainNotice, SERVER_DRAIN_NOTICE_HEADER, SERVER_DRAIN_NOTICE_VERSION } from '../protocol/server-drain-notice.ts';

export const AGENT_CONNECT_METHOD = '/AgentService/Connect';

export interface ProxyServerAddress {
  host: string;
  port: number;
}

/** The agent's TLS material (upstream loads it once; see src/tls/agent-tls.ts for reloading). */
export interface AgentTlsMaterial {
  /** PEM CA bundle that must have signed the server certificate. */
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Offered before `h2`, for SNI/ALPN routing on a shared port. */
  alpnProtocols: readonly string[];
}

export interface ServerDialerOptions {
  /** Fixed material, or a source asked before every connection attempt (hot reload). */
  tls: AgentTlsMaterial | (() => Promise<AgentTlsMaterial>);
  agentID: string;
  agentIdentifiers: string;
  /** Re-read on every attempt so projected-token rotation works. */
  serviceAccountTokenPath?: string;
  keepaliveTimeMs: number;
  /** Unanswered-ping bound (default: grpc-go's 20 s). */
  keepaliveTimeoutMs?: number;
  /** Bound on TCP+TLS setup and, separately, on the wait for response headers. */
  connectTimeoutMs: number;
  stream?: PacketStreamOptions;
  /** Per-connection window we offer for the konnectivity-ts flow-control extension; 0 = don't offer. */
  flowWindowBytes?: number;
  /** Offer the konnectivity-ts server drain notice (default true). */
  serverDrainNotice?: boolean;
}

/** A Connect stream whose headers arrived and were valid. Packets are held back until the owner resumes the stream. */
export interface ServerSession {
  address: ProxyServerAddress;
  channel: GrpcChannel<H2ClientSession>;
  call: GrpcClientCall<H2ClientStream>;
  serverID: string;
  serverCount: number;
  /** Set when the server accepted the flow-control extension (a konnectivity-ts server). */
  flowControl: { serverWindow: number; ourWindow: number } | null;
  /** Set when the server accepted the drain-notice extension: it may send DRAIN before a graceful shutdown. */
  serverDrainNotice?: boolean;
}

export type ServerDialer = (address: ProxyServerAddress, signal: AbortSignal) => Promise<ServerSession>;

/** The request metadata upstream's agent sends (header names are lowercase on the wire). */
export async function buildAgentMetadata(options: Pick<ServerDialerOptions, 'agentID' | 'agentIdentifiers' | 'serviceAccountTokenPath'>): Promise<Record<string, string>> {
  const metadata: Record<string, string> = {
    agentid: options.agentID,
    agentidentifiers: options.agentIdentifiers,
  };
  if (options.serviceAccountTokenPath) {
    // Raw bytes, untrimmed, as upstream. grpc-go refuses metadata values
    // outside printable ASCII, and Node's HTTP/2 would silently drop the
    // header instead, so fail the attempt with a clear reason.
    const token = await readFile(options.serviceAccountTokenPath);
    const bad = token.findIndex((b) => b < 0x20 || b > 0x7e);
    if (bad >= 0) {
      throw new Error(
        `service account token file ${options.serviceAccountTokenPath} contains a non-printable byte 0x${token[bad]!.toString(16).padStart(2, '0')} at offset ${bad} (a trailing newline?); it cannot be sent as an authorization header`,
      );
    }
    metadata['authorization'] = `Bearer ${token.toString('latin1')}`;
  }
  return metadata;
}

function countRawHeader(raw: readonly string[], name: string): { count: number; value: string | undefined } {
  let count = 0;
  let value: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === name) {
      count++;
      value ??= raw[i + 1];
    }
  }
  return { count, value };
}

/** Checks the response headers as upstream does; throws with upstream's wording. */
export function readServerHeaders(raw: readonly string[]): { serverID: string; serverCount: number } {
  const id = countRawHeader(raw, 'serverid');
  if (id.count !== 1) throw new Error(`expected one server ID in metadata, got ${id.count}`);
  const count = countRawHeader(raw, 'servercount');
  if (count.count !== 1) throw new Error(`expected one server count, got ${count.count}`);
  const text = count.value!;
  // strconv.Atoi accepts an optional sign and decimal digits only.
  if (!/^[+-]?[0-9]+$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new Error(`invalid server count ${JSON.stringify(text)}: strconv.Atoi: parsing ${JSON.stringify(text)}: invalid syntax`);
  }
  return { serverID: id.value!, serverCount: Number(text) };
}

function headersWithin<T>(work: Promise<T>, ms: number, signal: AbortSignal, onGiveUp: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const fail = (err: Error): void => {
      cleanup();
      onGiveUp();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`timed out after ${ms}ms waiting for proxy-server response headers`)), ms);
    const onAbort = (): void => fail(new Error('connect aborted'));
    const cleanup = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        cleanup();
        resolve(v);
      },
      (err: unknown) => {
        cleanup();
        onGiveUp();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/**
 * Client TLS settings as upstream's GetClientTLSConfig: TLS ≥ 1.2, the CA
 * bundle as the only roots, the client certificate when given, server name =
 * the proxy-server host (Node checks an IP host against IP SANs instead),
 * ALPN = the extra protocols, then h2.
 */
export function agentTlsOptions(address: ProxyServerAddress, material: AgentTlsMaterial): ConnectionOptions {
  return {
    host: address.host,
    port: address.port,
    ca: material.ca,
    cert: material.cert,
    key: material.key,
    minVersion: 'TLSv1.2',
    servername: net.isIP(address.host) === 0 ? address.host : undefined,
    ALPNProtocols: [...material.alpnProtocols, 'h2'],
  };
}

export function createServerDialer(options: ServerDialerOptions): ServerDialer {
  return async (address, signal) => {
    const metadata = await buildAgentMetadata(options);
    const ourWindow = options.flowWindowBytes ?? 0;
    // Upstream servers ignore unknown metadata, so offering the extension is always safe.
    if (ourWindow > 0) metadata[FLOW_CONTROL_HEADER] = formatFlowControlHeader(ourWindow);
    const offerDrainNotice = options.serverDrainNotice ?? true;
    if (offerDrainNotice) metadata[SERVER_DRAIN_NOTICE_HEADER] = SERVER_DRAIN_NOTICE_VERSION;
    const material = typeof options.tls === 'function' ? await options.tls() : options.tls;
    const tlsOptions = agentTlsOptions(address, material);
    const channel = await GrpcChannel.connectBuiltin(
      { transport: 'tls', host: address.host, port: address.port, tls: tlsOptions },
      { keepaliveTimeMs: options.keepaliveTimeMs, keepaliveTimeoutMs: options.keepaliveTimeoutMs, connectTimeoutMs: options.connectTimeoutMs, signal, stream: options.stream, userAgent: 'konnectivity-ts-agent' },
    );
    let call: GrpcClientCall<H2ClientStream>;
    try {
      call = channel.openStream(AGENT_CONNECT_METHOD, metadata);
    } catch (err) {
      channel.destroy();
      throw err;
    }
    // Hold packets back until the owner has wired its handlers: DATA may
    // follow the headers in the same read.
    call.stream.pauseReceive();
    const rawHeaders = new Promise<readonly string[]>((resolve) => {
      call.stream.h2.once('response', (_headers: H2Headers, _flags: number, raw: string[]) => resolve(raw));
    });
    try {
      await headersWithin(call.headers, options.connectTimeoutMs, signal, () => {
        call.cancel();
        channel.destroy();
      });
      const raw = await rawHeaders;
      const { serverID, serverCount } = readServerHeaders(raw);
      const serverWindow = ourWindow > 0 ? parseFlowControlHeader(countRawHeader(raw, FLOW_CONTROL_HEADER).value) : null;
      const flowControl = serverWindow === null ? null : { serverWindow, ourWindow };
      const serverDrainNotice = offerDrainNotice && acceptsServerDrainNotice(countRawHeader(raw, SERVER_DRAIN_NOTICE_HEADER).value);
      return { address, channel, call, serverID, serverCount, flowControl, serverDrainNotice };
    } catch (err) {
      call.cancel();
      channel.destroy();
      throw err;
    }
  };
}
