/**
 * Interop: OUR agent against a python grpcio "proxy-server" implementing
 * /AgentService/Connect over TLS (test/interop/agent_server.py), which
 * drives the agent through DIAL_REQ/DATA/CLOSE flows against real local
 * destinations.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KonnectivityAgent } from '../src/agent/konnectivity-agent.ts';
import type { AgentConfig } from '../src/agent/agent-config.ts';
import { createAgentMetrics } from '../src/observability/agent-metrics.ts';
import { createDevPki, type DevPki } from '../src/dev/pki.ts';
import { closedPort, startEchoDestination, startGreeter, until, type EchoDestination } from './interop/net-fixtures.ts';
import { expectedBytes, metadataValues, prepareInterop, PythonPeer, str, type InteropEnv, type PeerEvent } from './interop/python-peer.ts';

// The randoms agent_server.py uses.
const ECHO_RANDOM = (1n << 62n) + (1n << 53n) + 1n;
const REFUSED_RANDOM = (1n << 63n) - 1n;
const SIZE = 3 * 1024 * 1024 + 1;
const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJrb25uIn0.c2lnbmF0dXJl';
const GREETING = 'hello from the greeter, then EOF\n';

let env: InteropEnv;
let dir: string;
let pki: DevPki;
let echo: EchoDestination;
let greeter: { address: string; close(): Promise<void> };
let refusedPort: number;
let server: PythonPeer;
let serverPort: number;

before(async () => {
  env = prepareInterop();
  dir = mkdtempSync(path.join(tmpdir(), 'konn-interop-agent-server-'));
  pki = await createDevPki(path.join(dir, 'pki'));
  echo = await startEchoDestination();
  greeter = await startGreeter(Buffer.from(GREETING));
  refusedPort = await closedPort();
  server = new PythonPeer(
    env,
    'agent_server.py',
    ['--cert', pki.server.certPath, '--key', pki.server.keyPath, '--echo', echo.address, '--greeter', greeter.address, '--closed-port', String(refusedPort), '--size', String(SIZE), '--server-id', 'py-server-1'],
    { traceHeaders: true },
  );
  serverPort = Number((await server.next('listening')).port);
});

after(async () => {
  await server?.stop();
  await echo?.close();
  await greeter?.close();
  env?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function runAgent(overrides: Partial<AgentConfig>): Promise<KonnectivityAgent> {
  const agent = new KonnectivityAgent(
    {
      proxyServerHost: '127.0.0.1',
      proxyServerPort: serverPort,
      caCertPath: pki.ca.certPath,
      agentID: 'unset',
      syncIntervalMs: 200,
      syncIntervalCapMs: 1_000,
      probeIntervalMs: 500,
      ...overrides,
    },
    { metrics: createAgentMetrics({ processMetrics: false }) },
  );
  await agent.start();
  return agent;
}

const sub = (e: PeerEvent, key: string): PeerEvent => e[key] as PeerEvent;

test('our agent → python server: metadata with token, headers, echo 3 MiB, CLOSE, Go dial error, remote close, DIAL_CLS ignored', async () => {
  const tokenPath = path.join(dir, 'token');
  writeFileSync(tokenPath, TOKEN);
  const agent = await runAgent({ agentID: 'ts-agent-1', agentIdentifiers: '', serviceAccountTokenPath: tokenPath });
  let n: unknown;
  try {
    const call = await server.next('call', (e) => metadataValues(e, 'agentid')[0] === 'ts-agent-1');
    n = call.call;
    assert.equal(call.method, '/AgentService/Connect');
    assert.deepEqual(metadataValues(call, 'agentid'), ['ts-agent-1']);
    assert.deepEqual(metadataValues(call, 'agentidentifiers'), [''], 'agentidentifiers is sent even when empty');
    assert.deepEqual(metadataValues(call, 'authorization'), [`Bearer ${TOKEN}`], 'Bearer + the token file bytes');

    // The trace comes on stderr, the event on stdout: separate pipes, read in either order.
    const traced = (): Map<string, string[]> | undefined => server.headerBlocks('SVR', 'HDR').find((h) => h.get('agentid')?.[0] === 'ts-agent-1');
    await until(() => traced() !== undefined, 'python to trace the request headers');
    const request = traced();
    assert.ok(request, 'python traced the request headers');
    assert.deepEqual(request.get(':method'), ['POST']);
    assert.deepEqual(request.get(':scheme'), ['https']);
    assert.deepEqual(request.get(':path'), ['/AgentService/Connect']);
    assert.deepEqual(request.get('content-type'), ['application/grpc']);
    assert.deepEqual(request.get('te'), ['trailers']);

    const ofCall = (e: PeerEvent): boolean => e.call === n;
    const echoed = await server.next('echo', ofCall);
    const dial = sub(echoed, 'dialResponse');
    assert.equal(dial.type, 'DIAL_RSP');
    assert.equal(dial.error, '');
    assert.equal(dial.random, String(ECHO_RANDOM), 'random > 2^53 copied exactly');
    assert.equal(dial.connectID, '1', "the first connectID on a stream is 1, as upstream's agent counter");
    assert.equal(dial.hasTypeField, true);
    assert.equal(dial.raw, expectedBytes.dialResponse(ECHO_RANDOM, 1n), 'exact DIAL_RSP bytes');
    assert.equal(echoed.bytes, SIZE);
    assert.equal(echoed.sha256, echoed.sentSha256, 'python got back what it sent');
    assert.deepEqual(echoed.dataConnectIDs, ['1']);
    const atEcho = echo.received.at(-1)!;
    assert.equal(atEcho.bytes, SIZE);
    assert.equal(atEcho.sha256(), echoed.sentSha256, 'the destination got exactly what python sent');

    const closed = await server.next('closed', ofCall);
    assert.equal(closed.type, 'CLOSE_RSP');
    assert.equal(closed.connectID, '1');
    assert.equal(closed.error, '');
    assert.equal(closed.raw, expectedBytes.closeResponse(1n));

    const refused = await server.next('refused', ofCall);
    const refusedText = `dial tcp 127.0.0.1:${refusedPort}: connect: connection refused`;
    assert.equal(refused.error, refusedText, 'Go-style dial error');
    assert.equal(refused.random, String(REFUSED_RANDOM));
    assert.equal(refused.connectID, '0', 'no connectID on a failed dial');
    assert.equal(refused.raw, expectedBytes.dialResponse(REFUSED_RANDOM, 0n, refusedText));

    const remote = await server.next('remote_close', ofCall);
    const greeterID = str(sub(remote, 'dialResponse'), 'connectID');
    assert.notEqual(greeterID, '0');
    assert.notEqual(greeterID, '1');
    assert.equal(remote.greeting, GREETING);
    const closeRsp = sub(remote, 'closeResponse');
    assert.equal(closeRsp.connectID, greeterID, 'unsolicited CLOSE_RSP for the connection the destination closed');
    assert.equal(closeRsp.error, '');

    await server.next('done', ofCall);
    assert.ok(agent.isReady, 'the agent took serverid/servercount from the python headers');
    assert.deepEqual(
      server.events.filter((e) => e.event === 'unexpected' && ofCall(e)),
      [],
      'the agent sent nothing outside the script (the stray DIAL_CLS was ignored)',
    );
  } finally {
    await agent.stop();
  }
  await server.next('call_end', (e) => e.call === n); // python saw the stream end when the agent stopped
});

test('our agent → python server: identifiers as given, no authorization header without a token path', async () => {
  const agent = await runAgent({ agentID: 'ts-agent-2', agentIdentifiers: 'host=node-2.example&ipv4=10.0.0.8' });
  try {
    const call = await server.next('call', (e) => metadataValues(e, 'agentid')[0] === 'ts-agent-2');
    assert.deepEqual(metadataValues(call, 'agentidentifiers'), ['host=node-2.example&ipv4=10.0.0.8']);
    assert.deepEqual(metadataValues(call, 'authorization'), []);
    await server.next('done', (e) => e.call === call.call);
    await until(() => agent.isReady, 'the agent to be ready');
  } finally {
    await agent.stop();
  }
  assert.deepEqual(server.coreErrors.filter((l) => /hpack|metadata/i.test(l)), [], 'python parsed every header our agent sent');
});
