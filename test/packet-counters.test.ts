/**
 * stream_packets_total counts in plain numbers on the packet path and moves
 * them into prom-client at collect time: a scrape must see every packet,
 * under the right labels, exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { bindPacketCounter } from '../src/observability/packet-counters.ts';
import { PacketType } from '../src/protocol/packet.ts';

function counterIn(registry: Registry): Counter<'segment' | 'packet_type'> {
  return new Counter({ name: 'stream_packets_total', help: 'h', labelNames: ['segment', 'packet_type'] as const, registers: [registry] });
}

async function values(c: Counter<'segment' | 'packet_type'>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await c.get()).values) out[`${v.labels.segment}/${v.labels.packet_type}`] = v.value;
  return out;
}

test('counts reach the metric on collect, once, by segment and type', async () => {
  const registry = new Registry();
  const c = counterIn(registry);
  const fromAgent = bindPacketCounter(c, 'from_agent');
  const toAgent = bindPacketCounter(c, 'to_agent');
  const fromAgentAgain = bindPacketCounter(c, 'from_agent');
  for (let i = 0; i < 5; i++) fromAgent(PacketType.DATA);
  fromAgentAgain(PacketType.DATA);
  fromAgent(PacketType.DIAL_RSP);
  toAgent(PacketType.FLOW_CREDIT);
  toAgent(99);
  assert.deepEqual(await values(c), { 'from_agent/DATA': 6, 'from_agent/DIAL_RSP': 1, 'to_agent/FLOW_CREDIT': 1, 'to_agent/Unknown': 1 });
  assert.deepEqual(await values(c), { 'from_agent/DATA': 6, 'from_agent/DIAL_RSP': 1, 'to_agent/FLOW_CREDIT': 1, 'to_agent/Unknown': 1 }, 'a second collect adds nothing');
  fromAgent(PacketType.DATA);
  const text = await registry.metrics();
  assert.match(text, /stream_packets_total\{segment="from_agent",packet_type="DATA"\} 7/);
});

test('a counter with its own collect hook keeps it', async () => {
  const registry = new Registry();
  let collected = 0;
  const c = new Counter({ name: 'x_total', help: 'h', labelNames: ['segment', 'packet_type'] as const, registers: [registry], collect() { collected++; } });
  const count = bindPacketCounter(c, 'to_client');
  count(PacketType.CLOSE_RSP);
  assert.deepEqual(await values(c), { 'to_client/CLOSE_RSP': 1 });
  assert.equal(collected, 1);
});
