/**
 * Pre-bound `stream_packets_total` children, one per (segment, packet type).
 * Resolving labels on every packet costs a hash per call on the hot path;
 * binding once costs nothing per packet.
 */
import type { Counter } from 'prom-client';
import { PacketType, packetTypeName } from '../protocol/packet.ts';

export type PacketCounter = (packetType: number) => void;

export function bindPacketCounter<L extends string>(counter: Counter<L>, segment: string): PacketCounter {
  const children = Array.from({ length: 7 }, (_, t) => counter.labels({ segment, packet_type: packetTypeName(t) } as Record<L, string>));
  const flowCredit = counter.labels({ segment, packet_type: packetTypeName(PacketType.FLOW_CREDIT) } as Record<L, string>);
  return (packetType: number) => {
    const child = packetType === PacketType.FLOW_CREDIT ? flowCredit : children[packetType];
    if (child) child.inc();
    else counter.inc({ segment, packet_type: 'Unknown' } as Record<L, string>);
  };
}
