/**
 * `stream_packets_total` counting for the per-packet path. prom-client hashes
 * and validates the label set on every `inc()`, even on a child from
 * `labels()` (about 280 ns, several times per relayed packet). Here a packet
 * bumps a number in a typed array, and the totals move into the prom-client
 * counter when it is collected (scraped or read with `get()`), so readers see
 * the same values as before.
 */
import type { Counter } from 'prom-client';
import { PacketType, packetTypeName } from '../protocol/packet.ts';

export type PacketCounter = (packetType: number) => void;

/** Slots 0..6 are the upstream packet types, slot 7 our FLOW_CREDIT extension. */
const SLOTS = 8;
const FLOW_CREDIT_SLOT = 7;

function slotName(slot: number): string {
  return packetTypeName(slot === FLOW_CREDIT_SLOT ? PacketType.FLOW_CREDIT : slot);
}

interface PendingCounts {
  /** Per segment: packets counted since the last collect, by slot. */
  readonly segments: Map<string, Float64Array>;
}

const pendingByCounter = new WeakMap<object, PendingCounts>();

type Collectable = { collect?: (() => unknown) | undefined };

function pendingFor<L extends string>(counter: Counter<L>): PendingCounts {
  let pending = pendingByCounter.get(counter);
  if (pending) return pending;
  const created: PendingCounts = { segments: new Map() };
  pending = created;
  pendingByCounter.set(counter, created);
  const target = counter as unknown as Collectable;
  const previous = target.collect;
  target.collect = function collectPacketCounts(this: unknown): unknown {
    for (const [segment, counts] of created.segments) {
      for (let slot = 0; slot < SLOTS; slot++) {
        const n = counts[slot]!;
        if (n === 0) continue;
        counts[slot] = 0;
        counter.inc({ segment, packet_type: slotName(slot) } as Record<L, string>, n);
      }
    }
    return previous?.call(this);
  };
  return created;
}

/**
 * A counting function for one segment (`from_agent`, `to_client`, ...).
 * Several bindings of the same counter and segment share one set of counts.
 */
export function bindPacketCounter<L extends string>(counter: Counter<L>, segment: string): PacketCounter {
  const pending = pendingFor(counter);
  let counts = pending.segments.get(segment);
  if (!counts) {
    counts = new Float64Array(SLOTS);
    pending.segments.set(segment, counts);
  }
  const slots = counts;
  return (packetType: number) => {
    if (packetType >= 0 && packetType < FLOW_CREDIT_SLOT) slots[packetType]!++;
    else if (packetType === PacketType.FLOW_CREDIT) slots[FLOW_CREDIT_SLOT]!++;
    else counter.inc({ segment, packet_type: 'Unknown' } as Record<L, string>);
  };
}
