/**
 * Issue #5 fault handling: a half-open agent↔server TCP connection (the path
 * goes silent: no FIN, no RST, sockets stay open, e.g. a NAT or balancer that
 * dropped its state) is detected by HTTP/2 PING keepalive on both sides.
 *
 * Upstream's knobs are `--keepalive-time` on agent and server (grpc-go
 * keepalive Time); the unanswered-ping bound is grpc-go's fixed 20 s
 * (keepalive Timeout, no flag). Ours are the same flags plus the config field
 * keepaliveTimeoutMs (default 20 s) so that this test runs in seconds.
 * Detection is bounded by keepalive time + timeout.
 *
 * Between the agents and the server sits a TCP relay that can "freeze" the
 * connections it carries: it stops forwarding in both directions and never
 * closes either socket. Connections made after the freeze are relayed
 * normally, so a reconnecting agent gets through.
 *
 * Agent A pings (1 s, timeout 2 s); agent B does not (`--keepalive-time` 1h,
 * as the default) and is the control: nothing but keepalive could tell it the
 * path is dead. The server pings both (1 s, timeout 2 s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { echoThroughTunnel, startHaCluster } from '../src/dev/ha-cluster.ts';
import { parseAgentOptions } from '../src/agent/agent-options.ts';
import { agentConfigFromOptions } from '../src/cli/agent-main.ts';
import { parseServerOptions } from '../src/server/server-options.ts';
import { serverConfigFromOptions } from '../src/cli/server-main.ts';
import { silentLogger } from '../src/observability/logger.ts';
import { DEFAULT_KEEPALIVE_TIMEOUT_MS } from '../src/grpc/http2-settings.ts';
import { sleep } from './helpers/wait.ts';

const KEEPALIVE_MS = 1_000;
const KEEPALIVE_TIMEOUT_MS = 2_000;
/** Allowance for a loaded 2-core machine on top of keepalive time + timeout. */
const SCHEDULING_SLACK_MS = 5_000;
const BOUND_MS = KEEPALIVE_MS + KEEPALIVE_TIMEOUT_MS + SCHEDULING_SLACK_MS;

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  frozen: boolean;
}

/** A TCP relay to 127.0.0.1:targetPort whose current connections can be made silent. */
class FreezableRelay {
  readonly server: net.Server;
  readonly pairs = new Set<Pair>();
  /** When each connection was accepted (ms since epoch). */
  readonly accepted: number[] = [];

  private constructor(server: net.Server) {
    this.server = server;
  }

  static async start(targetPort: number): Promise<FreezableRelay> {
    const server = net.createServer();
    const relay = new FreezableRelay(server);
    server.on('connection', (client) => {
      relay.accepted.push(Date.now());
      const upstream = net.connect(targetPort, '127.0.0.1');
      const pair: Pair = { client, upstream, frozen: false };
      relay.pairs.add(pair);
      client.pipe(upstream);
      upstream.pipe(client);
      // Until frozen, an end on one side is passed on as usual; frozen pairs say nothing.
      const teardown = (): void => {
        if (pair.frozen) return;
        client.destroy();
        upstream.destroy();
        relay.pairs.delete(pair);
      };
      client.on('error', teardown);
      upstream.on('error', teardown);
      client.on('close', teardown);
      upstream.on('close', teardown);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return relay;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Stops forwarding on every current connection, both ways, without closing anything. */
  freeze(): number {
    let n = 0;
    for (const pair of this.pairs) {
      if (pair.frozen) continue;
      pair.frozen = true;
      pair.client.unpipe(pair.upstream);
      pair.upstream.unpipe(pair.client);
      pair.client.pause();
      pair.upstream.pause();
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

test('keepalive knobs are upstream\'s: --keepalive-time on agent and server (default 1h), timeout grpc-go\'s fixed 20 s', () => {
  const agentDefault = agentConfigFromOptions(parseAgentOptions(['--ca-cert=/dev/null']));
  assert.equal(agentDefault.keepaliveTimeMs, 3_600_000);
  assert.equal(agentDefault.keepaliveTimeoutMs, undefined, 'no flag: the 20 s default applies');
  assert.equal(agentConfigFromOptions(parseAgentOptions(['--ca-cert=/dev/null', '--keepalive-time=1s'])).keepaliveTimeMs, KEEPALIVE_MS);
  const serverArgs = ['--uds-name=/tmp/k.sock', '--server-port=0', '--cluster-cert=/dev/null', '--cluster-key=/dev/null'];
  assert.equal(serverConfigFromOptions(parseServerOptions(serverArgs, {}), silentLogger).keepaliveTimeMs, 3_600_000);
  assert.equal(serverConfigFromOptions(parseServerOptions([...serverArgs, '--keepalive-time=1s'], {}), silentLogger).keepaliveTimeMs, KEEPALIVE_MS);
  assert.equal(DEFAULT_KEEPALIVE_TIMEOUT_MS, 20_000);
});

test('half-open agent↔server connection: detected by keepalive within keepalive time + timeout on both sides; the agent reconnects and dials work again', { timeout: 90_000 }, async (t) => {
  const cluster = await startHaCluster({
    servers: 1,
    agents: 0,
    loadBalancer: false,
    server: { keepaliveTimeMs: KEEPALIVE_MS, keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS },
  });
  t.after(() => cluster.close());
  const server = cluster.servers[0]!;
  const relay = await FreezableRelay.start(server.agentPort);
  t.after(() => relay.close());
  const viaRelay = { proxyServerHost: '127.0.0.1', proxyServerPort: relay.port };
  const agentA = await cluster.startAgent({ ...viaRelay, keepaliveTimeMs: KEEPALIVE_MS, keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS });
  const agentB = await cluster.startAgent({ ...viaRelay, keepaliveTimeMs: 3_600_000 });
  await cluster.waitForFullMesh(30_000);
  assert.equal(relay.pairs.size, 2);
  const router = server.instance!.router;
  const backendOf = (agentID: string): number | undefined => router.backendList.find((b) => b.agentId === agentID)?.serial;
  const oldA = backendOf(agentA.config.agentID)!;
  const oldB = backendOf(agentB.config.agentID)!;
  assert.ok(oldA !== undefined && oldB !== undefined);
  // The tunnel works before the freeze.
  const payload = randomBytes(64 * 1024);
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(await echoThroughTunnel(cluster.openTunnel(0), cluster.echo.address, payload)), sha(payload));

  const acceptedBefore = relay.accepted.length;
  assert.equal(relay.freeze(), 2);
  const frozenAt = Date.now();

  // Server side: both agents' streams are dropped (the server pings both).
  const serverSeen = new Map<string, number>();
  // Agent side: A's link is dropped and it reconnects (a new relay connection).
  let agentAReconnectedAt: number | null = null;
  const deadline = frozenAt + 60_000;
  while (serverSeen.size < 2 || agentAReconnectedAt === null) {
    const now = Date.now();
    if (!serverSeen.has('A') && !router.backendList.some((b) => b.serial === oldA)) serverSeen.set('A', now - frozenAt);
    if (!serverSeen.has('B') && !router.backendList.some((b) => b.serial === oldB)) serverSeen.set('B', now - frozenAt);
    if (agentAReconnectedAt === null && relay.accepted.length > acceptedBefore) agentAReconnectedAt = relay.accepted[acceptedBefore]! - frozenAt;
    assert.ok(now < deadline, `half-open connection not detected within 60 s: server saw ${JSON.stringify([...serverSeen])}, agent A reconnected: ${agentAReconnectedAt}`);
    await sleep(10);
  }
  // Control: B does not ping, so nothing told it; it still lists the server.
  assert.deepEqual(agentB.connectedServerIDs, [server.serverId], 'the agent without keepalive cannot know the path is dead');
  assert.equal(relay.accepted.length, acceptedBefore + 1, 'only the pinging agent reconnected');

  const report = `keepalive ${KEEPALIVE_MS} ms + timeout ${KEEPALIVE_TIMEOUT_MS} ms: agent A detected and reconnected after ${agentAReconnectedAt} ms; server dropped A after ${serverSeen.get('A')} ms, B after ${serverSeen.get('B')} ms (bound checked: ${BOUND_MS} ms incl. ${SCHEDULING_SLACK_MS} ms scheduling slack)`;
  t.diagnostic(report);
  assert.ok(agentAReconnectedAt! <= BOUND_MS, report);
  assert.ok(serverSeen.get('A')! <= BOUND_MS, report);
  assert.ok(serverSeen.get('B')! <= BOUND_MS, report);

  // Recovered: A is on a new stream, the server has it (and only it: B's
  // stream is gone), and dials reach the destination through it.
  const until = Date.now() + 30_000;
  while (backendOf(agentA.config.agentID) === undefined || !agentA.connectedServerIDs.includes(server.serverId)) {
    assert.ok(Date.now() < until, `agent A did not register again:\n${cluster.describe()}`);
    await sleep(10);
  }
  const newA = backendOf(agentA.config.agentID);
  assert.ok(newA !== undefined && newA !== oldA, 'agent A is registered again on a new stream');
  assert.equal(sha(await echoThroughTunnel(cluster.openTunnel(0), cluster.echo.address, payload)), sha(payload));
});
