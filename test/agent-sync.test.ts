/**
 * The HA sync loop: one connection per distinct serverID up to the server
 * count, duplicates closed, backoff timing, drain, lease-count hook.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { effectiveServerCount } from '../src/agent/server-count.ts';
import type { SyncOutcome } from '../src/agent/server-link-set.ts';
import { SyncBackoff, jitter } from '../src/agent/sync-backoff.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';
import { PacketType } from '../src/protocol/packet.ts';
import { FakeProxyServer, testAgentConfig, testPki, until } from './agent-fixtures.ts';

function recordSyncs(agent: KonnectivityAgent): SyncOutcome[] {
  const log: SyncOutcome[] = [];
  agent.onSync = (outcome) => log.push(outcome);
  return log;
}

test('backoff: starts at sync-interval, ×1.5 per failure up to the cap, jitter only adds up to 10 %', () => {
  const low = new SyncBackoff(1000, 10_000, () => 0);
  assert.deepEqual([low.step(), low.step(), low.step(), low.step()], [1000, 1500, 2250, 3375]);
  for (let i = 0; i < 10; i++) low.step();
  assert.equal(low.step(), 10_000);
  assert.equal(low.steady(), 1000);
  assert.equal(low.step(), 1000, 'a success restarts the backoff');
  const high = new SyncBackoff(1000, 10_000, () => 1);
  assert.equal(high.step(), 1100);
  assert.equal(high.steady(), 1100);
  assert.equal(jitter(2000, 0.1, () => 0.5), 2100);
});

test('server count: response header by default, lease count with a counter, max with source=max, never below 1', () => {
  assert.equal(effectiveServerCount(0, undefined, 'default'), 1);
  assert.equal(effectiveServerCount(3, undefined, 'default'), 3);
  assert.equal(effectiveServerCount(3, { count: () => 2 }, 'default'), 2);
  assert.equal(effectiveServerCount(3, { count: () => 2 }, 'max'), 3);
  assert.equal(effectiveServerCount(1, { count: () => 4 }, 'max'), 4);
  assert.equal(effectiveServerCount(0, { count: () => 0 }, 'default'), 1);
});

test('two servers with distinct serverIDs and servercount 2: one connection each, then the loop idles', async () => {
  const pki = await testPki();
  const a = await FakeProxyServer.start({ serverID: 'server-a', serverCount: 2 });
  const b = await FakeProxyServer.start({ serverID: 'server-b', serverCount: 2 });
  const metrics = createAgentMetrics({ processMetrics: false });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [a, b]), { metrics });
  const syncs = recordSyncs(agent);
  try {
    await agent.start();
    await until(() => agent.connectedServerIDs.length === 2);
    assert.deepEqual(agent.connectedServerIDs.sort(), ['server-a', 'server-b']);
    assert.equal(agent.targetServerCount, 2);
    assert.equal((await metrics.knownServerCount.get()).values[0]?.value, 2);
    assert.equal((await metrics.openServerConnections.get()).values[0]?.value, 2);
    const attempts = a.attempts + b.attempts;
    const seen = syncs.length;
    await until(() => syncs.length >= seen + 3);
    assert.ok(syncs.slice(seen).every((s) => s === 'skipped'));
    assert.equal(a.attempts + b.attempts, attempts, 'no new connections once the count is reached');
  } finally {
    await agent.stop();
    await a.close();
    await b.close();
  }
});

test('duplicate serverIDs are closed; the count is never met so the loop keeps looking', async () => {
  const pki = await testPki();
  const a = await FakeProxyServer.start({ serverID: 'same', serverCount: 2 });
  const b = await FakeProxyServer.start({ serverID: 'same', serverCount: 2 });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [a, b]), { metrics: createAgentMetrics({ processMetrics: false }) });
  const syncs = recordSyncs(agent);
  try {
    await agent.start();
    await until(() => syncs.filter((s) => s === 'duplicate').length >= 3);
    assert.deepEqual(agent.connectedServerIDs, ['same']);
    assert.equal(syncs.filter((s) => s === 'connected').length, 1);
    // Every duplicate stream was closed by the agent; only the kept one stays open.
    const all = [...a.streams, ...b.streams];
    await until(() => all.filter((s) => !s.closed).length === 1);
  } finally {
    await agent.stop();
    await a.close();
    await b.close();
  }
});

test('--sync-forever keeps dialing after the count is reached; a new server is found', async () => {
  const pki = await testPki();
  // servercount 1: without sync-forever the agent would stop after the first.
  const a = await FakeProxyServer.start({ serverID: 'server-a', serverCount: 1 });
  const b = await FakeProxyServer.start({ serverID: 'server-b', serverCount: 1 });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [a, b], { syncForever: true }), { metrics: createAgentMetrics({ processMetrics: false }) });
  const syncs = recordSyncs(agent);
  try {
    await agent.start();
    await until(() => agent.connectedServerIDs.length === 2);
    await until(() => syncs.filter((s) => s === 'duplicate').length >= 2);
    assert.equal(syncs.includes('skipped'), false);
  } finally {
    await agent.stop();
    await a.close();
    await b.close();
  }
});

test('a lease counter overrides the header count (hook for --count-server-leases)', async () => {
  const pki = await testPki();
  const a = await FakeProxyServer.start({ serverID: 'server-a', serverCount: 1 });
  const b = await FakeProxyServer.start({ serverID: 'server-b', serverCount: 1 });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [a, b]), { metrics: createAgentMetrics({ processMetrics: false }), leaseCounter: { count: () => 2 } });
  try {
    await agent.start();
    await until(() => agent.connectedServerIDs.length === 2);
    assert.equal(agent.targetServerCount, 2);
  } finally {
    await agent.stop();
    await a.close();
    await b.close();
  }
});

test('after drain() no new server connections are made, existing ones got DRAIN', async () => {
  const pki = await testPki();
  let bAccepts = false;
  const a = await FakeProxyServer.start({ serverID: 'server-a', serverCount: 2 });
  const b = await FakeProxyServer.start({ serverID: 'server-b', serverCount: 2, headers: () => (bAccepts ? { serverid: 'server-b', servercount: '2' } : null) });
  const agent = new KonnectivityAgent(testAgentConfig(pki, [a, b]), { metrics: createAgentMetrics({ processMetrics: false }) });
  const syncs = recordSyncs(agent);
  try {
    await agent.start();
    const streamA = await a.stream(0);
    await until(() => b.attempts >= 1 && agent.isReady);
    agent.drain();
    await streamA.waitFor((p) => p.type === PacketType.DRAIN);
    bAccepts = true;
    const seen = syncs.length;
    await until(() => syncs.length >= seen + 3);
    // An attempt already in flight when drain began may still land; it is kept
    // (as upstream does) and told DRAIN at once. Nothing new is started.
    assert.ok(syncs.slice(seen + 1).every((s) => s === 'skipped'), syncs.join(','));
    assert.ok(b.streams.length <= 1);
    if (b.streams.length === 1) await b.streams[0]!.waitFor((p) => p.type === PacketType.DRAIN);
    assert.ok(agent.connectedServerIDs.includes('server-a'));
  } finally {
    await agent.stop();
    await a.close();
    await b.close();
  }
});
