import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePacket, encodePacket } from '../src/protocol/codec.ts';
import { PacketType, packets, packetTypeName } from '../src/protocol/packet.ts';

test('FLOW_CREDIT extension: exact bytes and round trip', () => {
  const p = packets.flowCredit(3n, 65536n);
  // type=64 (08 40), field 64 length-delimited (tag 514 → 82 04), len 6, connectID 3, bytes 65536
  assert.deepEqual([...encodePacket(p)], [0x08, 0x40, 0x82, 0x04, 0x06, 0x08, 0x03, 0x10, 0x80, 0x80, 0x04]);
  assert.deepEqual(decodePacket(encodePacket(p)), p);
  assert.equal(packetTypeName(PacketType.FLOW_CREDIT), 'FLOW_CREDIT');
});

test('FLOW_CREDIT type with another payload is refused like any mismatch', () => {
  assert.throws(() => decodePacket(Uint8Array.from([0x08, 0x40, 0x42, 0x00])), /payload/);
});

test('encodeDataPacketHeader + payload is byte-identical to encodePacket (zero-copy send path)', async () => {
  const { encodeDataPacketHeader } = await import('../src/protocol/codec.ts');
  for (const id of [0n, 1n, 300n, 1n << 62n, -1n]) {
    for (const n of [0, 1, 127, 128, 2048, 16383, 16384, 70000]) {
      const payload = Buffer.alloc(n, 9);
      assert.deepEqual(Buffer.concat([encodeDataPacketHeader(id, n, 0), payload]), encodePacket(packets.data(id, payload)), `connectID ${id}, ${n} bytes`);
    }
  }
});
