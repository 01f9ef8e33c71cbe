/**
 * Agent token authentication end to end: a real server with the
 * TokenReview authenticator, the fake apiserver deciding the reviews, and
 * real agents presenting the token file. A rejected agent gets
 * UNAUTHENTICATED with the reason, is never registered as a backend, and
 * no DIAL_REQ reaches it; nothing a rejected stream sends is relayed. An
 * agent whose review is still running is not routable either, and
 * --max-pending-agent-authentications bounds how many Connect streams may
 * wait for a review at once.
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import { createTcpEndpointDialer, type EndpointDialer } from '../src/agent/endpoint-dialer.ts';
import type { SyncOutcome } from '../src/agent/server-link-set.ts';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { createDevPki, type DevPki } from '../src/dev/pki.ts';
import { GrpcChannel } from '../src/grpc/grpc-client.ts';
import { GrpcCode, GrpcStatusError } from '../src/grpc/status.ts';
import type { GrpcClientCall } from '../src/grpc/grpc-client.ts';
import { Registry } from 'prom-client';
import { KubeClient } from '../src/kube/kube-client.ts';
import { packets } from '../src/protocol/packet.ts';
import { TokenReviewAuthenticator, type TokenAuthenticatorOptions } from '../src/server/token-authenticator.ts';
import type { ServerLimits } from '../src/server/limits.ts';
import { FakeApiServer } from './helpers/fake-apiserver.ts';

const AUDIENCE = 'system:konnectivity-server';
const NAMESPACE = 'kube-system';
const SERVICE_ACCOUNT = 'konnectivity-agent';
const AGENT_USER = `system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`;
const PYTHON = process.env['KONN_INTEROP_PYTHON'] ?? '/usr/bin/python3';

let dir: string;
let pki: DevPki;
let api: FakeApiServer;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'kube-token-auth-'));
  pki = await createDevPki(path.join(dir, 'pki'));
  api = await FakeApiServer.start({ pki, dir });
  api.addToken('good-token', AGENT_USER, [AUDIENCE]);
  api.addToken('other-audience-token', AGENT_USER, ['some-other-audience']);
  api.addToken('wrong-sa-token', `system:serviceaccount:${NAMESPACE}:default`, [AUDIENCE]);
  api.addToken('wrong-ns-token', `system:serviceaccount:default:${SERVICE_ACCOUNT}`, [AUDIENCE]);
  api.addToken('three-part-token', `system:serviceaccount:${NAMESPACE}`, [AUDIENCE]);
  api.addToken('five-part-token', `${AGENT_USER}:extra`, [AUDIENCE]);
  api.addToken('not-sa-token', `system:node:${NAMESPACE}:${SERVICE_ACCOUNT}`, [AUDIENCE]);
  api.addToken('rotated-token', AGENT_USER, [AUDIENCE]);
});

after(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

function authenticator(overrides: Partial<TokenAuthenticatorOptions> & { kubeconfig?: string } = {}): TokenReviewAuthenticator {
  const { kubeconfig, ...rest } = overrides;
  return new TokenReviewAuthenticator({
    reviewer: KubeClient.fromFlags({ kubeconfigPath: kubeconfig ?? api.kubeconfigPath }),
    namespace: NAMESPACE,
    serviceAccount: SERVICE_ACCOUNT,
    audience: AUDIENCE,
    ...rest,
  });
}

async function cluster(t: TestContext, auth: TokenReviewAuthenticator, limits: Partial<ServerLimits> = {}): Promise<LocalCluster> {
  const c = await startLocalCluster({ mode: 'grpc', agents: 0, pki, server: { authenticator: auth, limits } });
  t.after(() => c.close());
  return c;
}

function tokenFile(content: string): string {
  const file = path.join(dir, `token-${randomUUID()}`);
  writeFileSync(file, content);
  return file;
}

interface WatchedAgent {
  agent: KonnectivityAgent;
  /** Every endpoint dial the agent was asked to make (i.e. DIAL_REQs that reached it). */
  dials: string[];
  outcomes: Array<{ outcome: SyncOutcome; error?: Error }>;
  firstFailure(): Promise<Error>;
}

async function startAgent(t: TestContext, c: LocalCluster, serviceAccountTokenPath?: string): Promise<WatchedAgent> {
  const dials: string[] = [];
  const tcp = createTcpEndpointDialer({ timeoutMs: 5_000 });
  const dialEndpoint: EndpointDialer = (address, signal) => {
    dials.push(address);
    return tcp(address, signal);
  };
  const agent = new KonnectivityAgent(
    {
      proxyServerHost: '127.0.0.1',
      proxyServerPort: c.server.addresses.agentPort,
      caCertPath: pki.ca.certPath,
      agentID: randomUUID(),
      syncIntervalMs: 100,
      syncIntervalCapMs: 300,
      probeIntervalMs: 200,
      ...(serviceAccountTokenPath ? { serviceAccountTokenPath } : {}),
    },
    { dialEndpoint },
  );
  const outcomes: WatchedAgent['outcomes'] = [];
  agent.onSync = (outcome, error) => outcomes.push({ outcome, ...(error ? { error } : {}) });
  await agent.start();
  t.after(() => agent.stop());
  return {
    agent,
    dials,
    outcomes,
    async firstFailure() {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const failed = outcomes.find((o) => o.error);
        if (failed?.error) return failed.error;
        if (Date.now() > deadline) throw new Error('agent never failed to connect');
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

/** The status a call was refused with (a trailers-only response); the call is then cancelled. */
async function refusal(call: GrpcClientCall): Promise<{ code: number; message: string }> {
  try {
    await call.headers;
  } catch (err) {
    assert.ok(err instanceof GrpcStatusError);
    return { code: err.code, message: err.details };
  } finally {
    call.cancel();
  }
  assert.fail('the server sent response headers: the call was accepted');
}

async function limitRejections(c: LocalCluster, limit: string): Promise<number> {
  const { values } = await c.server.router.limitMetrics.rejections.get();
  return values.find((v) => v.labels['limit'] === limit)?.value ?? 0;
}

async function waitUntil(condition: () => boolean, what: string, deadlineMs = 15_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function fromAgentPackets(c: LocalCluster): Promise<number> {
  const metric = await c.server.metrics.streamPackets.get();
  return metric.values.filter((v) => v.labels['segment'] === 'from_agent').reduce((sum, v) => sum + v.value, 0);
}

/** One HTTP/1.0 GET to the demo target through the tunnel. */
async function getThroughTunnel(c: LocalCluster): Promise<string> {
  const tunnel = c.openTunnel();
  try {
    const conn = await tunnel.dial('tcp', `127.0.0.1:${c.demo.port}`, { timeoutMs: 5_000 });
    conn.write('GET /via-tunnel HTTP/1.0\r\nHost: demo\r\n\r\n');
    const chunks: Buffer[] = [];
    conn.on('data', (d: Buffer) => chunks.push(d));
    await once(conn, 'end');
    conn.destroy();
    return Buffer.concat(chunks).toString();
  } finally {
    await tunnel.close();
  }
}

/** Asserts the agent was turned away before anything was relayed. */
async function assertRejected(c: LocalCluster, watched: WatchedAgent, reason: RegExp): Promise<void> {
  const err = await watched.firstFailure();
  assert.match(err.message, /^rpc error: code = Unauthenticated desc = /);
  assert.match(err.message, reason);
  assert.equal(watched.agent.connectedServerIDs.length, 0);
  assert.equal(c.server.router.backendList.length, 0, 'no backend registered');
  const tunnel = c.openTunnel();
  try {
    await assert.rejects(tunnel.dial('tcp', `127.0.0.1:${c.demo.port}`, { timeoutMs: 5_000 }), /No agent available|no agent/i);
  } finally {
    await tunnel.close();
  }
  assert.deepEqual(watched.dials, [], 'no DIAL_REQ reached the agent');
  assert.equal(await fromAgentPackets(c), 0, 'nothing from the agent was relayed');
}

test('a valid service-account token: one TokenReview with the audience, then the agent serves tunnels', async (t) => {
  const c = await cluster(t, authenticator());
  const reviewsBefore = api.tokenReviews().length;
  const watched = await startAgent(t, c, tokenFile('good-token'));
  await c.waitForAgents(1);
  const reviews = api.tokenReviews().slice(reviewsBefore);
  assert.deepEqual(reviews, [{ token: 'good-token', audiences: [AUDIENCE] }]);
  assert.match(await getThroughTunnel(c), /hello from the demo target behind konnectivity: GET \/via-tunnel/);
  assert.equal(watched.dials.length, 1);
});

test('an unknown token is rejected with the apiserver error', async (t) => {
  const c = await cluster(t, authenticator());
  const watched = await startAgent(t, c, tokenFile('unknown-token'));
  await assertRejected(c, watched, /Failed to validate authentication token, err:lookup failed: \[invalid bearer token/);
});

test('an expired token is rejected with the apiserver error and relays nothing', async (t) => {
  const c = await cluster(t, authenticator());
  api.addToken('expired-token', AGENT_USER, [AUDIENCE]);
  api.expiredTokens.add('expired-token');
  const watched = await startAgent(t, c, tokenFile('expired-token'));
  await assertRejected(c, watched, /token is expired/);
});

test('a token for another audience: the apiserver decides by the audience it receives', async (t) => {
  const c = await cluster(t, authenticator());
  const reviewsBefore = api.tokenReviews().length;
  const watched = await startAgent(t, c, tokenFile('other-audience-token'));
  await assertRejected(c, watched, /token audiences \["some-other-audience"\] is invalid for the target audiences \["system:konnectivity-server"\]/);
  assert.deepEqual(api.tokenReviews()[reviewsBefore], { token: 'other-audience-token', audiences: [AUDIENCE] });

  // The same token is fine for a server configured with that audience.
  const other = await cluster(t, authenticator({ audience: 'some-other-audience' }));
  await startAgent(t, other, tokenFile('other-audience-token'));
  await other.waitForAgents(1);
});

test('authenticated but not the expected identity: wrong service account, wrong namespace, malformed usernames', async (t) => {
  const c = await cluster(t, authenticator());
  const cases: Array<[string, RegExp]> = [
    ['wrong-sa-token', /lookup failed: incoming request from "default" service account\. Expected "konnectivity-agent"/],
    ['wrong-ns-token', /lookup failed: incoming request from "default" namespace\. Expected "kube-system"/],
    ['three-part-token', /lookup failed: unexpected username format "system:serviceaccount:kube-system"/],
    ['five-part-token', /lookup failed: unexpected username format/],
    ['not-sa-token', /lookup failed: username returned is not a service account/],
  ];
  for (const [token, reason] of cases) {
    const watched = await startAgent(t, c, tokenFile(token));
    await assertRejected(c, watched, reason);
    await watched.agent.stop();
  }
});

test('no authorization header: rejected without a TokenReview', async (t) => {
  const c = await cluster(t, authenticator());
  const reviewsBefore = api.tokenReviews().length;
  const watched = await startAgent(t, c);
  await assertRejected(c, watched, /Authentication context was not found in metadata/);
  assert.equal(api.tokenReviews().length, reviewsBefore);
});

test('a non-Bearer authorization value is rejected; so is a stream that sends packets before it is authenticated', async (t) => {
  const c = await cluster(t, authenticator());
  const channel = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: c.server.addresses.agentPort, tls: { ca: pki.ca.cert, servername: 'localhost' } });
  t.after(() => channel.destroy());
  const reviewsBefore = api.tokenReviews().length;
  const sendEagerly = (call: GrpcClientCall): void => {
    // What a misbehaving agent sends without waiting for the server's headers:
    // answers to dials nobody made, and data for them.
    call.stream.send(packets.dialResponse(1n, 7n));
    call.stream.send(packets.data(7n, Buffer.from('pre-auth bytes')));
    call.stream.send(packets.closeResponse(7n));
  };
  const basic = channel.openStream('/AgentService/Connect', { agentid: 'raw-basic', agentidentifiers: '', authorization: 'Basic Z29vZC10b2tlbg==' });
  sendEagerly(basic);
  assert.deepEqual(await refusal(basic), { code: GrpcCode.UNAUTHENTICATED, message: 'received token does not have "Bearer " prefix' });
  const lower = channel.openStream('/AgentService/Connect', { agentid: 'raw-lower', agentidentifiers: '', authorization: 'bearer good-token' });
  sendEagerly(lower);
  assert.equal((await refusal(lower)).code, GrpcCode.UNAUTHENTICATED);
  assert.equal(api.tokenReviews().length, reviewsBefore);
  assert.equal(await fromAgentPackets(c), 0, 'packets of a rejected stream were relayed');
  assert.equal(c.server.router.backendList.length, 0);
});

test('two authorization values (even two valid ones) are rejected, as upstream', { skip: spawnSync(PYTHON, ['-c', 'import grpc']).status !== 0 ? `needs python3-grpcio (${PYTHON})` : false }, async (t) => {
  const c = await cluster(t, authenticator());
  const script = `
import grpc, json, sys
ca = open(sys.argv[2], 'rb').read()
ch = grpc.secure_channel('127.0.0.1:' + sys.argv[1], grpc.ssl_channel_credentials(ca), options=[('grpc.ssl_target_name_override', 'localhost')])
call = ch.stream_stream('/AgentService/Connect', request_serializer=None, response_deserializer=None)
md = [('agentid', 'dup-agent'), ('agentidentifiers', ''), ('authorization', 'Bearer good-token'), ('authorization', 'Bearer good-token')]
try:
    for _ in call(iter([]), metadata=md, timeout=10):
        pass
    print(json.dumps({'code': 'OK'}))
except grpc.RpcError as e:
    print(json.dumps({'code': e.code().name, 'details': e.details()}))
`;
  const reviewsBefore = api.tokenReviews().length;
  const { spawn } = await import('node:child_process');
  const child = spawn(PYTHON, ['-c', script, String(c.server.addresses.agentPort), pki.ca.certPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await once(child, 'close');
  assert.deepEqual(JSON.parse(out.trim()), { code: 'UNAUTHENTICATED', details: 'too many (2) tokens are received' });
  assert.equal(api.tokenReviews().length, reviewsBefore);
  assert.equal(c.server.router.backendList.length, 0);
});

test('apiserver down (connection refused): rejected with the cause', async (t) => {
  const probe = net.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const kubeconfig = api.writeKubeconfig(path.join(dir, 'down.kubeconfig'), { server: `https://127.0.0.1:${port}` });
  const c = await cluster(t, authenticator({ kubeconfig }));
  const watched = await startAgent(t, c, tokenFile('good-token'));
  await assertRejected(c, watched, /Failed to authenticate request\. err:create TokenReview: cannot reach the Kubernetes API: .*ECONNREFUSED/);
});

test('a slow apiserver: the TokenReview times out, the stream is rejected, and packets sent meanwhile are never relayed', async (t) => {
  api.delay({ method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews' }, 60_000);
  t.after(() => api.clearFaults());
  const c = await cluster(t, authenticator({ timeoutMs: 300 }));
  const channel = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: c.server.addresses.agentPort, tls: { ca: pki.ca.cert, servername: 'localhost' } });
  t.after(() => channel.destroy());
  const call = channel.openStream('/AgentService/Connect', { agentid: 'eager-agent', agentidentifiers: '', authorization: 'Bearer good-token' });
  // A misbehaving agent that does not wait for the server's headers.
  call.stream.send(packets.dialResponse(1n, 7n));
  call.stream.send(packets.data(7n, Buffer.from('pre-auth bytes')));
  call.stream.send(packets.closeResponse(7n));
  const status = await refusal(call);
  assert.equal(status.code, GrpcCode.UNAUTHENTICATED);
  assert.match(status.message, /Failed to validate authentication token, err:Failed to authenticate request\. err:create TokenReview: no response from the Kubernetes API within 300 ms/);
  assert.equal(await fromAgentPackets(c), 0, 'nothing relayed');
  assert.equal(c.server.router.backendList.length, 0);

  const watched = await startAgent(t, c, tokenFile('good-token'));
  await assertRejected(c, watched, /no response from the Kubernetes API within 300 ms/);
});

test('the token file is re-read on every connect: a rotated token is used by the next attempt', async (t) => {
  const c = await cluster(t, authenticator());
  const file = tokenFile('stale-token');
  const reviewsBefore = api.tokenReviews().length;
  const watched = await startAgent(t, c, file);
  await watched.firstFailure();
  assert.equal(c.server.router.backendList.length, 0);
  writeFileSync(file, 'rotated-token');
  await c.waitForAgents(1, 15_000);
  const tokens = api.tokenReviews().slice(reviewsBefore).map((r) => r.token);
  assert.equal(tokens[0], 'stale-token');
  assert.equal(tokens.at(-1), 'rotated-token');
  assert.ok(tokens.every((tk) => tk === 'stale-token' || tk === 'rotated-token'));
  assert.match(await getThroughTunnel(c), /hello from the demo target/);
});

test('an agent whose TokenReview is still running gets no dial: frontends get "No agent available" until it is authenticated', async (t) => {
  const reviewDelayMs = 2_000;
  api.delay({ method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews' }, reviewDelayMs);
  t.after(() => api.clearFaults());
  const c = await cluster(t, authenticator());
  const reviewsBefore = api.tokenReviews().length;
  const watched = await startAgent(t, c, tokenFile('good-token'));
  // The agent's Connect stream is open and its review is at the apiserver.
  await waitUntil(() => api.tokenReviews().length > reviewsBefore, 'the TokenReview reaches the apiserver');
  const reviewArrived = performance.now();
  const tunnel = c.openTunnel();
  t.after(() => tunnel.close());
  await assert.rejects(tunnel.dial('tcp', `127.0.0.1:${c.demo.port}`, { timeoutMs: 5_000 }), /No agent available/);
  const dialed = performance.now();
  assert.ok(dialed - reviewArrived < reviewDelayMs, `the dial took too long to prove anything (${Math.round(dialed - reviewArrived)} ms)`);
  assert.equal(c.server.router.backendList.length, 0, 'the pending agent is a backend');
  assert.equal(watched.agent.connectedServerIDs.length, 0);
  assert.deepEqual(watched.dials, [], 'a DIAL_REQ reached the agent before it was authenticated');

  // The review answers: the same agent is routable, and dials work.
  await c.waitForAgents(1, 15_000);
  assert.deepEqual(api.tokenReviews().slice(reviewsBefore).map((r) => r.token), ['good-token']);
  assert.match(await getThroughTunnel(c), /hello from the demo target behind konnectivity: GET \/via-tunnel/);
  assert.deepEqual(watched.dials, [`127.0.0.1:${c.demo.port}`]);
});

test('--max-pending-agent-authentications: a flood of Connect streams with junk tokens holds at most that many TokenReviews; the rest are refused at once', async (t) => {
  api.delay({ method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews' }, 60_000);
  let cleared = false;
  const clear = (): void => {
    if (!cleared) api.clearFaults();
    cleared = true;
  };
  t.after(clear);
  const MAX = 3;
  const c = await cluster(t, authenticator({ timeoutMs: 1_500 }), { maxPendingAgentAuthentications: MAX });
  const channel = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: c.server.addresses.agentPort, tls: { ca: pki.ca.cert, servername: 'localhost' } });
  t.after(() => channel.destroy());
  const reviewsBefore = api.tokenReviews().length;
  const connect = (i: number): GrpcClientCall => channel.openStream('/AgentService/Connect', { agentid: `flood-${i}`, agentidentifiers: '', authorization: `Bearer junk-${i}` });

  const waiting = Array.from({ length: MAX }, (_, i) => connect(i));
  await waitUntil(() => api.tokenReviews().length - reviewsBefore === MAX, `${MAX} TokenReviews at the apiserver`);
  const refused: Array<{ code: number; message: string }> = [];
  for (let i = MAX; i < MAX + 5; i++) refused.push(await refusal(connect(i)));
  for (const r of refused) {
    assert.deepEqual(r, {
      code: GrpcCode.RESOURCE_EXHAUSTED,
      message: `konnectivity-server: limit reached: ${MAX} agent connections already awaiting authentication (--max-pending-agent-authentications); retry later`,
    });
  }
  assert.equal(api.tokenReviews().length - reviewsBefore, MAX, 'a refused stream caused a TokenReview');
  assert.equal(await limitRejections(c, 'pending_agent_authentications'), 5);
  assert.equal(c.server.router.backendList.length, 0);

  // The held streams end when their reviews time out; then the slots are free again.
  for (const call of waiting) assert.equal((await refusal(call)).code, GrpcCode.UNAUTHENTICATED);
  clear();
  const watched = await startAgent(t, c, tokenFile('good-token'));
  await c.waitForAgents(1, 15_000);
  assert.match(await getThroughTunnel(c), /hello from the demo target/);
  assert.equal(watched.dials.length, 1);
  assert.equal(await limitRejections(c, 'pending_agent_authentications'), 5);
});

test('--max-pending-agent-authentications=0 is unlimited', async (t) => {
  api.delay({ method: 'POST', path: '/apis/authentication.k8s.io/v1/tokenreviews' }, 60_000);
  t.after(() => api.clearFaults());
  const c = await cluster(t, authenticator({ timeoutMs: 1_000 }), { maxPendingAgentAuthentications: 0 });
  const channel = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: c.server.addresses.agentPort, tls: { ca: pki.ca.cert, servername: 'localhost' } });
  t.after(() => channel.destroy());
  const calls = Array.from({ length: 120 }, (_, i) => channel.openStream('/AgentService/Connect', { agentid: `many-${i}`, agentidentifiers: '', authorization: `Bearer junk-${i}` }));
  for (const call of calls) assert.equal((await refusal(call)).code, GrpcCode.UNAUTHENTICATED);
  assert.equal(await limitRejections(c, 'pending_agent_authentications'), 0);
});

async function validations(registry: Registry): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const metric = registry.getSingleMetric('konnectivity_network_proxy_server_ts_agent_token_validations_total');
  for (const v of (await metric?.get())?.values ?? []) out[`${v.labels['result']}/${v.labels['source']}`] = v.value;
  return out;
}

/** An agent connects with the token in `file`, leaves, and a new agent connects with the same token. */
async function connectTwice(t: TestContext, c: LocalCluster, file: string): Promise<void> {
  const first = await startAgent(t, c, file);
  await c.waitForAgents(1, 15_000);
  await first.agent.stop();
  await waitUntil(() => c.server.router.backendList.length === 0, 'the first agent is gone');
  await startAgent(t, c, file);
  await c.waitForAgents(1, 15_000);
}

test('--authentication-cache-ttl: an agent reconnecting with an accepted token is not reviewed again; a refused token is, every time; 0 reviews every connect', async (t) => {
  api.addToken('cached-token', AGENT_USER, [AUDIENCE]);
  const registry = new Registry();
  const c = await cluster(t, authenticator({ registry }));
  const reviewsOf = (token: string): number => api.tokenReviews().filter((r) => r.token === token).length;
  await connectTwice(t, c, tokenFile('cached-token'));
  assert.equal(reviewsOf('cached-token'), 1, 'the second connection was accepted from the cache');
  assert.deepEqual(await validations(registry), { 'accepted/review': 1, 'accepted/cache': 1 });
  assert.match(await getThroughTunnel(c), /hello from the demo target/);

  // A refused token is never remembered: each attempt is a review.
  const refused = await startAgent(t, c, tokenFile('never-issued-token'));
  await refused.firstFailure();
  await waitUntil(() => reviewsOf('never-issued-token') >= 3, 'the refused agent retries and is reviewed each time');
  // The apiserver records a review when it arrives; the server counts it once the answer is back.
  const deadline = Date.now() + 15_000;
  while (((await validations(registry))['refused/review'] ?? 0) < 3) {
    assert.ok(Date.now() < deadline, `refusals counted: ${JSON.stringify(await validations(registry))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal((await validations(registry))['refused/cache'], undefined, 'a refusal never comes from the cache');

  // 0: upstream's behaviour, a review per connect.
  api.addToken('uncached-token', AGENT_USER, [AUDIENCE]);
  const c0 = await cluster(t, authenticator({ cacheTtlMs: 0 }));
  await connectTwice(t, c0, tokenFile('uncached-token'));
  assert.equal(reviewsOf('uncached-token'), 2);
});
