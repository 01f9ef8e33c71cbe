/**
 * gRPC-mode tunnel, shaped like upstream's CreateGRPCTunnel (what current
 * kube-apiserver uses): one HTTP/2 connection to the proxy server, one
 * `/ProxyService/Proxy` stream per dial, each stream carrying exactly one
 * DIAL_REQ. The connection is opened on the first dial and opened again on
 * the next dial after it is lost.
 */
import { GrpcChannel } from '../grpc/grpc-client.ts';
import type { H2ClientSession } from '../grpc/h2-client-session.ts';
import type { ClientMetrics } from '../observability/client-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { ConnectionStatusGauge } from './client-instrumentation.ts';
import { DialDeadline } from './dial-deadline.ts';
import { KonnectivityDialError } from './dial-error.ts';
import { newDialID } from './dial-id.ts';
import { describeTransport, grpcTarget } from './proxy-transport.ts';
import { dialOverProxyStream } from './proxy-stream-dial.ts';
import type { ProxyStreamSocket } from './proxy-stream-socket.ts';
import { PROXY_METHOD, type ProxyCall } from './proxy-stream.ts';
import { TunnelBase } from './tunnel-base.ts';
import { CLOSE_TIMEOUT_MS, type DialOptions, type ProxyTransport } from './tunnel-options.ts';

export interface GrpcTunnelOptions {
  transport: ProxyTransport;
  logger: Logger;
  metrics: ClientMetrics;
  dialTimeoutMs: number;
  userAgent: string;
  keepaliveTimeMs: number;
}

interface OpenStream {
  call: ProxyCall;
  socket: ProxyStreamSocket | null;
}

/** How long `close()` lets the HTTP/2 connection finish after its streams are done. */
const SESSION_CLOSE_GRACE_MS = 1_000;

export class GrpcTunnel extends TunnelBase<GrpcTunnelOptions> {
  readonly mode = 'grpc' as const;
  private readonly streams = new Set<OpenStream>();
  private channel: GrpcChannel<H2ClientSession> | null = null;
  private connecting: Promise<GrpcChannel<H2ClientSession>> | null = null;

  protected async open(network: string, address: string, options: DialOptions): Promise<ProxyStreamSocket> {
    if (this.closed) throw new KonnectivityDialError('tunnelclosed', 'tunnel is closed', { address });
    if (network !== 'tcp') throw new KonnectivityDialError('unknown', 'protocol not supported', { address });
    const deadline = new DialDeadline({
      timeoutMs: options.timeoutMs ?? this.options.dialTimeoutMs,
      signal: options.signal,
      closeSignal: this.closeController.signal,
    });
    try {
      const call = await this.openStream(deadline, address);
      const entry: OpenStream = { call, socket: null };
      this.streams.add(entry);
      const status = new ConnectionStatusGauge(this.options.metrics, 'created');
      void call.status.then(() => {
        this.streams.delete(entry);
        status.clear();
      });
      const socket = await dialOverProxyStream({
        call,
        address,
        dialID: newDialID(),
        deadline,
        logger: this.options.logger,
        metrics: this.options.metrics,
        status,
      });
      entry.socket = socket;
      return socket;
    } finally {
      deadline.dispose();
    }
  }

  private async openStream(deadline: DialDeadline, address: string): Promise<ProxyCall> {
    // A connection that got GOAWAY between our check and the request refuses
    // new streams; one fresh connection is worth a retry.
    for (let attempt = 0; ; attempt++) {
      const channel = await this.connectedChannel(deadline, address);
      if (deadline.fired) throw deadline.failure(address);
      try {
        return channel.openStream(PROXY_METHOD);
      } catch (err) {
        if (this.channel === channel) this.channel = null;
        channel.close();
        if (attempt > 0) {
          throw new KonnectivityDialError('streamsetup', `cannot open a Proxy stream to ${describeTransport(this.options.transport)}: ${errorText(err)}`, { address, cause: err });
        }
      }
    }
  }

  private connectedChannel(deadline: DialDeadline, address: string): Promise<GrpcChannel<H2ClientSession>> {
    if (this.channel && !this.channel.isClosed) return Promise.resolve(this.channel);
    const connecting = (this.connecting ??= this.connect());
    return new Promise((resolve, reject) => {
      const onDeadline = (): void => reject(deadline.failure(address));
      if (deadline.fired) {
        onDeadline();
        return;
      }
      deadline.signal.addEventListener('abort', onDeadline, { once: true });
      connecting.then(
        (channel) => {
          deadline.signal.removeEventListener('abort', onDeadline);
          resolve(channel);
        },
        (err: unknown) => {
          deadline.signal.removeEventListener('abort', onDeadline);
          reject(new KonnectivityDialError('streamsetup', `cannot connect to proxy server ${describeTransport(this.options.transport)}: ${errorText(err)}`, { address, cause: err }));
        },
      );
    });
  }

  private async connect(): Promise<GrpcChannel<H2ClientSession>> {
    try {
      const channel = await GrpcChannel.connectBuiltin(grpcTarget(this.options.transport), {
        connectTimeoutMs: this.options.dialTimeoutMs,
        keepaliveTimeMs: this.options.keepaliveTimeMs,
        userAgent: this.options.userAgent,
        signal: this.closeController.signal,
      });
      if (this.closed) {
        channel.destroy();
        throw new Error('tunnel closed');
      }
      this.channel = channel;
      channel.onClose(() => {
        if (this.channel === channel) this.channel = null;
        this.options.logger.v(2, 'connection to proxy server closed', { proxy: describeTransport(this.options.transport) });
      });
      this.options.logger.v(2, 'connected to proxy server', { proxy: describeTransport(this.options.transport) });
      return channel;
    } finally {
      this.connecting = null;
    }
  }

  protected async shutdown(): Promise<void> {
    this.closeController.abort(); // fails pending dials with `tunnelclosed`, after DIAL_CLS
    for (const { socket } of this.streams) {
      if (socket && !socket.destroyed && !socket.writableEnded) socket.end();
    }
    const streamsDone = Promise.all([...this.streams].map((s) => s.call.status));
    await raceTimeout(streamsDone, CLOSE_TIMEOUT_MS + SESSION_CLOSE_GRACE_MS);
    await this.connecting?.catch(() => {});
    const channel = this.channel;
    this.channel = null;
    if (!channel || channel.isClosed) return;
    const sessionClosed = new Promise<void>((resolve) => channel.onClose(resolve));
    channel.close();
    if (!(await raceTimeout(sessionClosed, SESSION_CLOSE_GRACE_MS))) channel.destroy();
  }
}

/** Resolves true when `p` settled first, false on timeout. */
async function raceTimeout(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
