/**
 * One live connection to one proxy-server (upstream's agent "Client"): the
 * Connect stream, its EndpointRelay, and the rules for when it is dead.
 */
import type { GrpcStatus } from '../grpc/grpc-client.ts';
import { grpcCodeName, GrpcCode } from '../grpc/status.ts';
import type { AgentMetrics } from '../observability/agent-metrics.ts';
import type { Logger } from '../observability/logger.ts';
import { PacketType, packetTypeName, packets, type Packet } from '../protocol/packet.ts';
import type { ProtocolError } from '../protocol/protocol-error.ts';
import type { AgentTsMetrics } from './agent-ts-metrics.ts';
import type { EndpointDialer } from './endpoint-dialer.ts';
import { EndpointRelay } from './endpoint-relay.ts';
import type { StallPolicy } from '../protocol/stall-policy.ts';
import type { ProxyServerAddress, ServerSession } from './server-dialer.ts';

export interface ServerLinkOptions {
  dialEndpoint: EndpointDialer;
  maxEndpointBufferedBytes: number;
  endpointCloseLingerMs: number;
  endpointStallTimeoutMs: number;
  endpointStallPolicy: StallPolicy;
  metrics: AgentMetrics;
  tsMetrics: AgentTsMetrics;
  logger: Logger;
}

export class ServerLink {
  readonly serverID: string;
  /** The `servercount` header this server sent. */
  readonly serverCount: number;
  readonly address: ProxyServerAddress;
  /** Called once when the link is closed, for whatever reason. */
  onClosed: (link: ServerLink) => void = () => {};
  /** Called once when the server announces its graceful shutdown (drain-notice extension). */
  onServerDraining: (link: ServerLink) => void = () => {};
  /** The server said it is shutting down; its tunnels keep working until it goes. */
  serverDraining = false;

  private readonly session: ServerSession;
  private readonly relay: EndpointRelay;
  private readonly metrics: AgentMetrics;
  private readonly logger: Logger;
  private closed = false;

  constructor(session: ServerSession, options: ServerLinkOptions) {
    this.session = session;
    this.serverID = session.serverID;
    this.serverCount = session.serverCount;
    this.address = session.address;
    this.metrics = options.metrics;
    this.logger = options.logger.child({ serverID: session.serverID });
    const stream = session.call.stream;
    this.relay = new EndpointRelay({
      pipe: stream,
      dial: options.dialEndpoint,
      maxEndpointBufferedBytes: options.maxEndpointBufferedBytes,
      endpointCloseLingerMs: options.endpointCloseLingerMs,
      endpointStallTimeoutMs: options.endpointStallTimeoutMs,
      endpointStallPolicy: options.endpointStallPolicy,
      metrics: options.metrics,
      tsMetrics: options.tsMetrics,
      logger: this.logger,
      onSendFailure: (packet) => this.sendFailed(packet),
      flowControl: session.flowControl ?? null,
    });
  }

  /** Wires the stream to the relay and lets held-back packets through. */
  start(): void {
    const { call, channel } = this.session;
    const stream = call.stream;
    stream.onPacket = (packet) => {
      this.relay.handlePacket(packet);
      // DRAIN from a server means something only once the extension was
      // negotiated; otherwise it is ignored, as upstream agents ignore it.
      if (packet.type === PacketType.DRAIN && this.session.serverDrainNotice && !this.serverDraining && !this.closed) {
        this.serverDraining = true;
        this.logger.info('proxy-server is shutting down; its tunnels continue, new streams go elsewhere');
        this.onServerDraining(this);
      }
    };
    stream.onProtocolError = (err) => this.protocolError(err);
    stream.onDrain = () => this.relay.handlePipeDrain();
    stream.onRemoteEnd = () => this.close('proxy-server ended the stream');
    stream.onClose = () => this.close('stream closed');
    void call.status.then((status) => this.observeStatus(status));
    channel.onClose(() => this.close('connection to proxy-server closed'));
    if (stream.isClosed) {
      this.close('stream closed');
      return;
    }
    stream.resumeReceive();
  }

  /** Upstream's probe: the connection must still be usable (gRPC state READY). */
  get isHealthy(): boolean {
    return !this.closed && !this.session.channel.isClosed && !this.session.call.stream.isClosed;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get endpointConnectionCount(): number {
    return this.relay.connectionCount;
  }

  /** Tells the server this agent is going away; existing tunnels keep working. */
  sendDrain(): void {
    if (this.closed) return;
    this.relay.sendPacket(packets.drain());
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.relay.close();
    const { call, channel } = this.session;
    call.cancel();
    channel.destroy();
    if (this.logger.enabled(2)) this.logger.v(2, 'proxy-server connection closed', { reason });
    this.onClosed(this);
  }

  private sendFailed(packet: Packet): void {
    this.metrics.serverConnectionFailures.labels('to_server').inc();
    this.metrics.streamErrors.labels('from_agent', grpcCodeName(GrpcCode.UNAVAILABLE), packetTypeName(packet.type)).inc();
    this.close(`sending ${packetTypeName(packet.type)} failed: stream is gone`);
  }

  private protocolError(err: ProtocolError): void {
    // Broken framing leaves no way to find the next message; anything else
    // spoils only the one packet.
    if (err.code === 'bad_frame' || err.code === 'message_too_large') {
      this.logger.warn('proxy-server stream framing is broken; reconnecting', { error: err.message });
      this.close(`protocol error: ${err.message}`);
      return;
    }
    this.relay.handleUndecodable(err);
  }

  private observeStatus(status: GrpcStatus): void {
    if (status.code === GrpcCode.OK || status.code === GrpcCode.CANCELLED) return;
    this.metrics.serverConnectionFailures.labels('from_server').inc();
    this.metrics.streamErrors.labels('to_agent', grpcCodeName(status.code), 'Unknown').inc();
  }
}
