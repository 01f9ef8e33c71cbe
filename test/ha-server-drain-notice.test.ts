/**
 * Beyond upstream (issue #5, drain and shutdown): a server starting a
 * graceful shutdown tells OUR agents, and only agents that negotiated it
 * (`konnectivity-ts-server-drain: v1` request metadata, echoed by the server),
 * by sending DRAIN on their stream. Such an agent stops counting that server
 * toward the server count and connects to another one while its tunnels
 * through the old server finish. An upstream-style peer (no metadata) gets no
 * header and never a DRAIN: its stream simply ends when the server goes, as
 * with an upstream server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { echoThroughTunnel, findHaproxy, HAPROXY_INSTALL_HINT, startHaCluster } from '../src/dev/ha-cluster.ts';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { PacketType } from '../src/protocol/packet.ts';
import { SERVER_DRAIN_NOTICE_HEADER } from '../src/protocol/server-drain-notice.ts';
import type { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { FakeAgent } from './helpers/raw-grpc.ts';
import { sleep } from './helpers/wait.ts';

const GRACE_MS = 30_000;
const WAIT_MS = 30_000;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function until(what: string, cond: () => boolean, describe: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!cond()) {
    assert.ok(Date.now() < deadline, `gave up waiting for ${what}\n${describe()}`);
    await sleep(10);
  }
}

async function receivedDrains(agent: KonnectivityAgent): Promise<number> {
  const values = (await agent.metrics.streamPackets.get()).values;
  return values.find((v) => v.labels['segment'] === 'to_agent' && v.labels['packet_type'] === 'DRAIN')?.value ?? 0;
}

test('wire: only a peer that offered the extension gets the header and, on graceful shutdown, a DRAIN; an upstream-style peer sees neither', { timeout: 60_000 }, async (t) => {
  const cluster = await startHaCluster({ servers: 1, agents: 0, loadBalancer: false });
  t.after(() => cluster.close());
  const server = cluster.servers[0]!;
  const connect = async (agentId: string, extra: Record<string, string>): Promise<FakeAgent> => {
    const channel = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: server.agentPort, tls: { ca: cluster.pki.ca.cert } });
    const call = channel.openStream('/AgentService/Connect', { agentid: agentId, agentidentifiers: '', ...extra });
    const agent = new FakeAgent(channel, call);
    agent.headers = await call.headers;
    t.after(() => agent.close());
    return agent;
  };
  const upstreamStyle = await connect('upstream-style', {});
  const ours = await connect('ours', { [SERVER_DRAIN_NOTICE_HEADER]: 'v1' });
  const otherVersion = await connect('other-version', { [SERVER_DRAIN_NOTICE_HEADER]: 'v2' });
  assert.equal(upstreamStyle.headers[SERVER_DRAIN_NOTICE_HEADER], undefined);
  assert.equal(otherVersion.headers[SERVER_DRAIN_NOTICE_HEADER], undefined, 'an unknown version is not accepted');
  assert.equal(ours.headers[SERVER_DRAIN_NOTICE_HEADER], 'v1');
  for (const a of [upstreamStyle, ours, otherVersion]) a.serveEcho();
  await until('3 agents registered', () => server.agentIds.length === 3);

  // An open tunnel keeps the server in its grace period (whichever agent serves it).
  const tunnel = cluster.openTunnel(0);
  const socket = (await tunnel.dial('tcp', cluster.echo.address)) as unknown as Socket;
  const stopped = cluster.stopServer(0, GRACE_MS);
  await ours.packets.nextMatching((p) => p.type === PacketType.DRAIN);
  assert.equal(server.stopping, true, 'the notice comes at the start of the grace period');
  // End the grace period; after the streams have ended every packet the
  // server ever sent them has arrived (one HTTP/2 stream is ordered).
  socket.destroy();
  await stopped;
  await Promise.all([upstreamStyle.closed, otherVersion.closed, ours.closed]);
  const drains = (a: FakeAgent): number => a.packets.all.filter((p) => p.type === PacketType.DRAIN).length;
  assert.equal(drains(upstreamStyle), 0, 'an upstream-style agent never sees a DRAIN from the server');
  assert.equal(drains(otherVersion), 0);
  assert.equal(drains(ours), 1, 'exactly one notice');
});

test('behind haproxy: our agent hears the draining server and connects to the new replica while tunnels finish; an agent without the extension stays until the server is gone', { timeout: 120_000 }, async (t) => {
  assert.ok(findHaproxy(), HAPROXY_INSTALL_HINT);
  // s0, s1 up; s2 is the replacement, configured in haproxy but not started yet. servercount 2.
  const cluster = await startHaCluster({ servers: 3, agents: 0, loadBalancer: true, balance: 'random', server: { serverCount: 2 } });
  t.after(() => cluster.close());
  await cluster.stopServer(2);
  const ours = await cluster.startAgent({});
  const plain = await cluster.startAgent({ serverDrainNotice: false });
  const [s0, s1, s2] = cluster.servers as [(typeof cluster.servers)[0], (typeof cluster.servers)[0], (typeof cluster.servers)[0]];
  const ids = (...s: Array<{ serverId: string }>): string[] => s.map((x) => x.serverId).sort();
  const on = (a: KonnectivityAgent): string[] => [...a.connectedServerIDs].sort();
  await until('both agents on s0 and s1', () => [ours, plain].every((a) => JSON.stringify(on(a)) === JSON.stringify(ids(s0, s1))), () => cluster.describe());

  // The replacement comes up; nobody needs it yet (both agents hold 2 of 2).
  await cluster.startServer(2);
  // A tunnel through s0 keeps it in its grace period.
  const tunnel = cluster.openTunnel(0);
  const socket = (await tunnel.dial('tcp', cluster.echo.address)) as unknown as Socket;
  socket.on('error', () => {});
  const payload = randomBytes(16 * 1024);
  const stopped = cluster.stopServer(0, GRACE_MS);

  await until('our agent on the replacement while s0 is still in its grace period', () => ours.connectedServerIDs.includes(s2.serverId) && s2.agentIds.includes(ours.config.agentID), () => cluster.describe());
  assert.equal(s0.stopping, true, 's0 is still draining');
  // The draining server's agent port is closed (a balancer health check takes it out).
  const refused = await new Promise<string>((resolve) => {
    const probe = netConnect(s0.agentPort, '127.0.0.1');
    probe.once('connect', () => {
      probe.destroy();
      resolve('connected');
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  assert.equal(refused, 'ECONNREFUSED');
  assert.deepEqual(ours.drainingServerIDs, [s0.serverId]);
  assert.deepEqual(on(ours), ids(s0, s1, s2), 'the draining server stays connected for its tunnels');
  assert.equal(await receivedDrains(ours), 1);
  // The agent without the extension never got the packet and, holding 2 of 2, does not look further.
  assert.equal(await receivedDrains(plain), 0);
  assert.deepEqual(plain.drainingServerIDs, []);
  assert.deepEqual(on(plain), ids(s0, s1));
  // The tunnel through the draining server still works.
  const back = await new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      got += d.length;
      if (got >= payload.length) resolve(Buffer.concat(parts, got));
    });
    socket.once('close', () => reject(new Error(`tunnel through the draining server closed after ${got} bytes`)));
    socket.write(payload);
  });
  assert.equal(sha(back), sha(payload));
  // Dials through the replacement reach our agent already.
  assert.equal(sha(await echoThroughTunnel(cluster.openTunnel(2), cluster.echo.address, payload)), sha(payload));

  // The tunnel ends, s0 goes; the other agent only now finds the replacement.
  socket.destroy();
  await stopped;
  await until('both agents on s1 and s2', () => [ours, plain].every((a) => JSON.stringify(on(a)) === JSON.stringify(ids(s1, s2))), () => cluster.describe());
  assert.deepEqual(ours.drainingServerIDs, []);
});
