/**
 * Keeps the upstream client metrics the way konnectivity-client does: every
 * tunnelled connection sits in exactly one `client_connections{status}`
 * bucket, and every packet on a Proxy stream is counted by direction.
 */
import type { ClientMetrics } from '../observability/client-metrics.ts';
import { bindPacketCounter, type PacketCounter } from '../observability/packet-counters.ts';
import { grpcCodeName } from '../grpc/status.ts';
import { packetTypeName, type Packet } from '../protocol/packet.ts';
import { dialFailureReason, type DialFailureCode } from './dial-error.ts';
import type { Logger } from '../observability/logger.ts';

export type ConnectionStatus = 'created' | 'dialing' | 'ok' | 'closing';

export class ConnectionStatusGauge {
  private readonly metrics: ClientMetrics;
  private current: ConnectionStatus | null = null;

  constructor(metrics: ClientMetrics, initial: ConnectionStatus) {
    this.metrics = metrics;
    this.set(initial);
  }

  set(status: ConnectionStatus): void {
    if (this.current === status) return;
    if (this.current !== null) this.metrics.clientConnections.dec({ status: this.current });
    this.current = status;
    this.metrics.clientConnections.inc({ status });
  }

  /** The connection is gone; idempotent. */
  clear(): void {
    if (this.current === null) return;
    this.metrics.clientConnections.dec({ status: this.current });
    this.current = null;
  }
}

const packetCounters = new WeakMap<ClientMetrics, { sent: PacketCounter; received: PacketCounter }>();

function packetCountersFor(metrics: ClientMetrics): { sent: PacketCounter; received: PacketCounter } {
  let counters = packetCounters.get(metrics);
  if (!counters) {
    counters = { sent: bindPacketCounter(metrics.streamPackets, 'from_client'), received: bindPacketCounter(metrics.streamPackets, 'to_client') };
    packetCounters.set(metrics, counters);
  }
  return counters;
}

export function countSent(metrics: ClientMetrics, packet: Packet): void {
  packetCountersFor(metrics).sent(packet.type);
}

export function countReceived(metrics: ClientMetrics, packet: Packet): void {
  packetCountersFor(metrics).received(packet.type);
}

export function countStreamError(metrics: ClientMetrics, segment: 'from_client' | 'to_client', grpcCode: number, packetType: number | null): void {
  metrics.streamErrors.inc({ segment, code: grpcCodeName(grpcCode), packet_type: packetType === null ? 'Unknown' : packetTypeName(packetType) });
}

export function countDialFailure(metrics: ClientMetrics, code: DialFailureCode): void {
  metrics.dialFailures.inc({ reason: code });
}

/** What both tunnel modes do with a failed dial: count it under upstream's reason and log it. */
export function recordDialFailure(metrics: ClientMetrics, logger: Logger, address: string, err: unknown): void {
  const reason = dialFailureReason(err);
  countDialFailure(metrics, reason);
  logger.v(2, 'dial failed', { address, reason, error: err });
}
