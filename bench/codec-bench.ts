/**
 * Packet codec throughput: our hand-written codec against protobufjs
 * (reflection, which code-generates its encoder/decoder at load time) and
 * @bufbuild/protobuf v2 (protoc-gen-es output in bench/gen; v2 codegen emits
 * only descriptors, so (de)serialisation is the library's reflection path).
 *
 * Each library is measured twice: "raw" works on the library's own message
 * objects; "as Packet" includes converting from/to our Packet type with
 * bigint IDs, which is what the proxy would actually pay.
 *
 *   node bench/codec-bench.ts            full run (~40 s on 2 cores)
 *   node bench/codec-bench.ts --quick    short CI-friendly run (~6 s)
 */
import assert from 'node:assert/strict';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { decodePacket, encodePacket } from '../src/protocol/codec.ts';
import { PacketType, packets, type Packet } from '../src/protocol/packet.ts';
import * as es from './gen/konnectivity_pb.js';

const quick = process.argv.includes('--quick');
const warmupMs = quick ? 30 : 150;
const sampleMs = quick ? 40 : 200;
const rounds = quick ? 3 : 5;

// --- workloads ---------------------------------------------------------------

function payload(size: number): Uint8Array {
  return Uint8Array.from({ length: size }, (_, i) => (i * 7) & 0xff);
}

const workloads: ReadonlyArray<{ name: string; packet: Packet }> = [
  { name: 'DATA 4 KiB', packet: packets.data(12_345n, payload(4096)) },
  { name: 'DATA 64 KiB', packet: packets.data(12_345n, payload(65_536)) },
  // A rand.Int63()-sized dial ID: above 2^53, so a number would corrupt it.
  { name: 'DIAL_REQ', packet: packets.dialRequest('10.96.0.1:443', 8_674_665_223_082_153_551n) },
];

// --- codecs under test ----------------------------------------------------------

interface Codec<M> {
  name: string;
  /** Turns a Packet into whatever `encode` takes (done outside the timed loop for "raw"). */
  prepare(p: Packet): M;
  encode(m: M): Uint8Array;
  decode(bytes: Uint8Array): unknown;
  /** Converts a decode result back to a Packet, for the correctness check only. */
  toPacket(decoded: unknown): Packet;
}

const ours: Codec<Packet> = {
  name: 'ours (hand-written)',
  prepare: (p) => p,
  encode: encodePacket,
  decode: decodePacket,
  toPacket: (d) => d as Packet,
};

// protobufjs ---------------------------------------------------------------------

const pbRoot = protobuf.loadSync(fileURLToPath(new URL('../proto/konnectivity.proto', import.meta.url)));
const PbPacket = pbRoot.lookupType('Packet');
const PbDialRequest = pbRoot.lookupType('DialRequest');
const PbDialResponse = pbRoot.lookupType('DialResponse');
const PbCloseRequest = pbRoot.lookupType('CloseRequest');
const PbCloseResponse = pbRoot.lookupType('CloseResponse');
const PbData = pbRoot.lookupType('Data');
const PbCloseDial = pbRoot.lookupType('CloseDial');
const PbDrain = pbRoot.lookupType('Drain');

/** What protobufjs takes for int64 (long.js Long or any {low, high}), and what it returns (Long). */
interface LongValue {
  low: number;
  high: number;
  unsigned?: boolean;
}
interface PbMessage {
  type?: number;
  [field: string]: unknown;
}

function bigintToLong(v: bigint): LongValue {
  return { low: Number(BigInt.asIntN(32, v)), high: Number(BigInt.asIntN(32, v >> 32n)), unsigned: false };
}
function longToBigint(v: LongValue | number): bigint {
  if (typeof v === 'number') return BigInt(v);
  return (BigInt(v.high) << 32n) | BigInt(v.low >>> 0);
}

function pbCreate(type: protobuf.Type, fields: Record<string, unknown>): PbMessage {
  return type.create(fields) as unknown as PbMessage;
}

/** Our Packet as a protobufjs message, proto3 defaults left unset as protobufjs expects. */
function packetToProtobufjs(p: Packet): PbMessage {
  switch (p.type) {
    case PacketType.DIAL_REQ: {
      const m = p.dialRequest;
      return pbCreate(PbPacket, { dialRequest: pbCreate(PbDialRequest, { protocol: m.protocol, address: m.address, random: bigintToLong(m.random) }) });
    }
    case PacketType.DIAL_RSP: {
      const m = p.dialResponse;
      return pbCreate(PbPacket, { type: p.type, dialResponse: pbCreate(PbDialResponse, { error: m.error, connectID: bigintToLong(m.connectID), random: bigintToLong(m.random) }) });
    }
    case PacketType.CLOSE_REQ:
      return pbCreate(PbPacket, { type: p.type, closeRequest: pbCreate(PbCloseRequest, { connectID: bigintToLong(p.closeRequest.connectID) }) });
    case PacketType.CLOSE_RSP: {
      const m = p.closeResponse;
      return pbCreate(PbPacket, { type: p.type, closeResponse: pbCreate(PbCloseResponse, { error: m.error, connectID: bigintToLong(m.connectID) }) });
    }
    case PacketType.DATA:
      return pbCreate(PbPacket, { type: p.type, data: pbCreate(PbData, { connectID: bigintToLong(p.data.connectID), data: p.data.data }) });
    case PacketType.DIAL_CLS:
      return pbCreate(PbPacket, { type: p.type, closeDial: pbCreate(PbCloseDial, { random: bigintToLong(p.closeDial.random) }) });
    case PacketType.DRAIN:
      return pbCreate(PbPacket, { type: p.type, drain: pbCreate(PbDrain, {}) });
    case PacketType.FLOW_CREDIT:
      throw new Error('FLOW_CREDIT is not benchmarked');
  }
}

function protobufjsToPacket(m: PbMessage): Packet {
  const type = m.type ?? 0;
  switch (type) {
    case PacketType.DIAL_REQ: {
      const b = m['dialRequest'] as { protocol: string; address: string; random: LongValue };
      return { type, dialRequest: { protocol: b.protocol, address: b.address, random: longToBigint(b.random) } };
    }
    case PacketType.DATA: {
      const b = m['data'] as { connectID: LongValue; error: string; data: Uint8Array };
      return { type, data: { connectID: longToBigint(b.connectID), error: b.error, data: b.data } };
    }
    default:
      throw new Error(`bench converts only the packet types it measures, not ${type}`);
  }
}

const protobufjsRaw: Codec<PbMessage> = {
  name: 'protobufjs raw',
  prepare: packetToProtobufjs,
  encode: (m) => PbPacket.encode(m as unknown as protobuf.Message).finish(),
  decode: (b) => PbPacket.decode(b),
  toPacket: (d) => protobufjsToPacket(d as PbMessage),
};
const protobufjsAsPacket: Codec<Packet> = {
  name: 'protobufjs as Packet',
  prepare: (p) => p,
  encode: (p) => PbPacket.encode(packetToProtobufjs(p)).finish(),
  decode: (b) => protobufjsToPacket(PbPacket.decode(b) as unknown as PbMessage),
  toPacket: (d) => d as Packet,
};

// @bufbuild/protobuf -------------------------------------------------------------

function packetToEs(p: Packet): es.Packet {
  switch (p.type) {
    case PacketType.DIAL_REQ:
      return create(es.PacketSchema, { payload: { case: 'dialRequest', value: create(es.DialRequestSchema, p.dialRequest) } });
    case PacketType.DATA:
      return create(es.PacketSchema, { type: p.type, payload: { case: 'data', value: create(es.DataSchema, p.data) } });
    default:
      throw new Error(`bench converts only the packet types it measures, not ${p.type}`);
  }
}

function esToPacket(m: es.Packet): Packet {
  switch (m.payload.case) {
    case 'dialRequest': {
      const b = m.payload.value;
      return { type: PacketType.DIAL_REQ, dialRequest: { protocol: b.protocol, address: b.address, random: b.random } };
    }
    case 'data': {
      const b = m.payload.value;
      return { type: PacketType.DATA, data: { connectID: b.connectID, error: b.error, data: b.data } };
    }
    default:
      throw new Error(`bench converts only the packet types it measures, not ${String(m.payload.case)}`);
  }
}

const bufbuildRaw: Codec<es.Packet> = {
  name: '@bufbuild/protobuf raw',
  prepare: packetToEs,
  encode: (m) => toBinary(es.PacketSchema, m),
  decode: (b) => fromBinary(es.PacketSchema, b),
  toPacket: (d) => esToPacket(d as es.Packet),
};
const bufbuildAsPacket: Codec<Packet> = {
  name: '@bufbuild/protobuf as Packet',
  prepare: (p) => p,
  encode: (p) => toBinary(es.PacketSchema, packetToEs(p)),
  decode: (b) => esToPacket(fromBinary(es.PacketSchema, b)),
  toPacket: (d) => d as Packet,
};

const codecs: ReadonlyArray<Codec<never>> = [ours, protobufjsRaw, protobufjsAsPacket, bufbuildRaw, bufbuildAsPacket] as ReadonlyArray<Codec<unknown>> as ReadonlyArray<Codec<never>>;

// --- measurement ------------------------------------------------------------------

let sink = 0;

/** Runs `op` in batches for about `ms` and returns nanoseconds per call. */
function timeOp(op: () => Uint8Array | unknown, ms: number): number {
  const budget = BigInt(Math.round(ms * 1e6));
  let batch = 1;
  let calls = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < batch; i++) {
      const r = op();
      if (r === null) sink++;
    }
    calls += batch;
    elapsed = process.hrtime.bigint() - start;
    // Grow batches so the clock is read roughly every 0.5 ms.
    if (elapsed < budget / 64n && batch < 1 << 16) batch *= 2;
  }
  return Number(elapsed) / calls;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Times the ops in interleaved rounds (A B C, A B C, ...) and returns each
 * op's median ns/call. On a shared 2-core machine the load drifts during a
 * run; interleaving makes the drift hit every codec alike, so the ratios
 * stay meaningful even when the absolute numbers move.
 */
function measureInterleaved(ops: ReadonlyArray<() => unknown>): number[] {
  for (const op of ops) timeOp(op, warmupMs);
  const runs: number[][] = ops.map(() => []);
  for (let r = 0; r < rounds; r++) ops.forEach((op, i) => runs[i]!.push(timeOp(op, sampleMs)));
  return runs.map(median);
}

/** Decoded DATA bytes may be Buffers or views; compare contents. */
function sameContents(a: Packet, b: Packet): void {
  const plain = (p: Packet): Packet => (p.type === PacketType.DATA ? { type: p.type, data: { ...p.data, data: Uint8Array.from(p.data.data) } } : p);
  assert.deepEqual(plain(a), plain(b));
}

interface Row {
  workload: string;
  codec: string;
  encodedBytes: number;
  encodeNs: number;
  decodeNs: number;
}

const rows: Row[] = [];
for (const w of workloads) {
  const reference = encodePacket(w.packet);
  const encoders: Array<() => unknown> = [];
  const decoders: Array<() => unknown> = [];
  for (const c of codecs) {
    const codec = c as Codec<unknown>;
    const input = codec.prepare(w.packet);
    const encoded = codec.encode(input);
    // Every codec must agree on the bytes and on what they mean before its speed counts.
    assert.equal(Buffer.compare(Buffer.from(encoded), reference), 0, `${codec.name} encodes ${w.name} differently`);
    sameContents(codec.toPacket(codec.decode(reference)), w.packet);
    encoders.push(() => codec.encode(input));
    decoders.push(() => codec.decode(reference));
  }
  const encodeNs = measureInterleaved(encoders);
  process.stderr.write('.');
  const decodeNs = measureInterleaved(decoders);
  process.stderr.write('.');
  codecs.forEach((c, i) => rows.push({ workload: w.name, codec: c.name, encodedBytes: reference.length, encodeNs: encodeNs[i]!, decodeNs: decodeNs[i]! }));
}
process.stderr.write('\n');

// --- report ---------------------------------------------------------------------

function fmtNs(ns: number): string {
  return ns >= 100 ? ns.toFixed(0) : ns.toFixed(1);
}
function fmtRate(perSec: number): string {
  if (perSec >= 1e6) return `${(perSec / 1e6).toFixed(2)}M`;
  if (perSec >= 1e3) return `${(perSec / 1e3).toFixed(1)}k`;
  return perSec.toFixed(0);
}
function fmtMBps(bytes: number, ns: number): string {
  return ((bytes / ns) * 1e3).toFixed(0); // bytes/ns * 1e9 / 1e6
}

const header = ['workload', 'codec', 'enc ns/pkt', 'enc pkt/s', 'enc MB/s', 'enc ×ours', 'dec ns/pkt', 'dec pkt/s', 'dec MB/s', 'dec ×ours'];
const table: string[][] = [];
for (const r of rows) {
  const base = rows.find((x) => x.workload === r.workload && x.codec === ours.name)!;
  table.push([
    `${r.workload} (${r.encodedBytes} B)`,
    r.codec,
    fmtNs(r.encodeNs),
    fmtRate(1e9 / r.encodeNs),
    fmtMBps(r.encodedBytes, r.encodeNs),
    (r.encodeNs / base.encodeNs).toFixed(2),
    fmtNs(r.decodeNs),
    fmtRate(1e9 / r.decodeNs),
    fmtMBps(r.encodedBytes, r.decodeNs),
    (r.decodeNs / base.decodeNs).toFixed(2),
  ]);
}
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]): string => '| ' + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';

console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} × ${cpus().length}, ${quick ? 'quick' : 'full'} run (median of ${rounds} interleaved ${sampleMs} ms samples per cell)`);
console.log('×ours = time relative to our codec (higher is slower). MB/s counts encoded packet bytes.');
console.log(line(header));
console.log('|' + widths.map((w, i) => (i < 2 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|');
for (const row of table) console.log(line(row));
if (sink < 0) console.log(sink);
