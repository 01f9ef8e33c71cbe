/**
 * Interop: a python grpcio agent (test/interop/agent_peer.py, in the role of
 * upstream's proxy-agent) against OUR server's /AgentService/Connect over TLS
 * with the dev CA. Frontends are our TS client (createTunnel) and the python
 * frontend (frontend_client.py).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import type { Tunnel } from '../src/client/tunnel-options.ts';
import { until } from './interop/net-fixtures.ts';
import { expectedBytes, metadataValues, prepareInterop, PythonPeer, str, type InteropEnv } from './interop/python-peer.ts';

const AGENT_ID = 'py-agent-1';
const IDENTIFIERS = 'host=node-1.example&ipv4=10.0.0.7&default-route=true';

let env: InteropEnv;
let cluster: LocalCluster;
let agentTarget: string;

before(async () => {
  env = prepareInterop();
  cluster = await startLocalCluster({ mode: 'grpc', frontendTransport: 'unix', agents: 0 });
  agentTarget = `127.0.0.1:${cluster.server.addresses.agentPort}`;
});

after(async () => {
  await cluster?.close();
  env?.cleanup();
});

const backend = (agentId: string) => cluster.server.router.describeBackends().find((b) => b.agentId === agentId);

test('python agent without agentid metadata: the RPC fails with Unknown before any response headers', async () => {
  const agent = new PythonPeer(env, 'agent_peer.py', [agentTarget, '--ca', cluster.pki.ca.certPath], { traceHeaders: true });
  try {
    const rejected = await agent.next('rejected');
    assert.equal(rejected.code, 'UNKNOWN');
    assert.match(str(rejected, 'details'), /agent ID/);
    assert.deepEqual(metadataValues(rejected, 'serverid', 'initialMetadata'), [], 'no serverid header');
    assert.deepEqual(metadataValues(rejected, 'serverid', 'trailingMetadata'), [], 'no serverid trailer either');
    // On the wire: one trailers-only block (HEADERS with END_STREAM), no separate response headers.
    // (The trace comes on stderr, the event on stdout: separate pipes, read in either order.)
    await until(() => agent.headerBlocks('CLI', 'TRL').length > 0, 'python to trace the trailers');
    assert.deepEqual(agent.headerBlocks('CLI', 'HDR'), [], 'python decoded no response-headers block');
    const [only, ...rest] = agent.headerBlocks('CLI', 'TRL');
    assert.deepEqual(rest, []);
    assert.deepEqual(only?.get('grpc-status'), ['2']);
    assert.equal(only?.has('serverid'), false);
    assert.equal(cluster.server.router.backendList.length, 0, 'no backend was registered');
  } finally {
    await agent.stop();
  }
});

test('python agent: headers first, DIAL_REQ bytes, DATA echo, DRAIN marks the backend, CLOSE_REQ/CLOSE_RSP; python frontend through it', async () => {
  const agent = new PythonPeer(env, 'agent_peer.py', [agentTarget, '--ca', cluster.pki.ca.certPath, '--agent-id', AGENT_ID, '--identifiers', IDENTIFIERS], {
    traceHeaders: true,
  });
  let tunnel: Tunnel | undefined;
  let frontend: PythonPeer | undefined;
  try {
    // 1. serverid/servercount arrive as response headers while python has sent no message.
    const headers = await agent.next('headers');
    assert.equal(headers.packetsBeforeHeaders, 0, 'no message came before the headers');
    assert.deepEqual(metadataValues(headers, 'serverid'), [cluster.server.config.serverId]);
    assert.deepEqual(metadataValues(headers, 'servercount'), ['1']);
    // (The trace comes on stderr, the event on stdout: separate pipes, read in either order.)
    await until(() => agent.headerBlocks('CLI', 'HDR').some((h) => h.has('serverid')), 'python to trace the response headers');
    const hdr = agent.headerBlocks('CLI', 'HDR').find((h) => h.has('serverid'));
    assert.ok(hdr, 'serverid came in a response-headers block, not in trailers');
    assert.deepEqual(hdr.get(':status'), ['200']);
    assert.deepEqual(hdr.get('content-type'), ['application/grpc']);
    await until(() => backend(AGENT_ID) !== undefined, 'the python agent to be registered');
    assert.deepEqual(backend(AGENT_ID)!.identifiers, { host: ['node-1.example'], ipv4: ['10.0.0.7'], ipv6: [], cidr: [], defaultRoute: true });
    assert.equal(backend(AGENT_ID)!.draining, false);

    // 2. Our TS client dials through the python agent.
    tunnel = cluster.openTunnel('grpc');
    const address = '10.20.30.40:8443';
    const socket = await tunnel.dial('tcp', address);
    const dialReq = await agent.next('dial_req');
    assert.equal(dialReq.type, 'DIAL_REQ', 'a packet without a type field decodes as DIAL_REQ');
    assert.equal(dialReq.hasTypeField, false, 'DIAL_REQ carries no type field on the wire');
    assert.equal(dialReq.payload, 'dialRequest');
    assert.equal(dialReq.protocol, 'tcp');
    assert.equal(dialReq.address, address);
    const random = BigInt(str(dialReq, 'random'));
    assert.ok(random >= 0n && random < 1n << 63n);
    assert.equal(dialReq.raw, expectedBytes.dialRequest('tcp', address, random), 'exact DIAL_REQ bytes');
    assert.equal(dialReq.connectID, '1', 'python answered with connectID 1');

    // 3. DATA both ways (python echoes).
    const data = randomBytes(1024 * 1024 + 5);
    const chunks: Buffer[] = [];
    let got = 0;
    const echoed = new Promise<void>((resolve) => {
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got === data.length) resolve();
      });
    });
    socket.write(data);
    await echoed;
    const sha = createHash('sha256').update(data).digest('hex');
    assert.equal(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'), sha);

    // 4. DRAIN: the server marks the backend draining; existing connections go on.
    agent.command('drain');
    await agent.next('drain_sent');
    await until(() => backend(AGENT_ID)?.draining === true, 'the server to mark the python agent draining');
    socket.write('after drain');
    await new Promise<void>((resolve) => {
      const check = (): void => void (got >= data.length + 11 && resolve());
      socket.on('data', check);
      check();
    });

    // 5. Closing the socket: CLOSE_REQ{1} reaches python, its CLOSE_RSP closes our socket.
    const closed = once(socket, 'close');
    socket.end();
    const closeReq = await agent.next('close_req');
    assert.equal(closeReq.connectID, '1');
    assert.equal(closeReq.raw, expectedBytes.closeRequest(1n));
    assert.equal(closeReq.bytes, data.length + 11);
    await closed;

    // 6. A python frontend through the (draining, but only) python agent: the DIAL_REQ is forwarded unchanged.
    frontend = new PythonPeer(env, 'frontend_client.py', [`unix://${cluster.server.addresses.frontend}`]);
    await frontend.next('ready');
    const bigRandom = (1n << 63n) - 2n;
    frontend.command(JSON.stringify({ op: 'dial', id: 1, address: 'py.example:1', random: String(bigRandom) }));
    const forwarded = await agent.next('dial_req');
    assert.equal(forwarded.random, String(bigRandom));
    assert.equal(forwarded.raw, expectedBytes.dialRequest('tcp', 'py.example:1', bigRandom), 'forwarded byte for byte');
    const result = await frontend.next('result', (e) => e.id === 1);
    const first = result.first as Record<string, unknown>;
    assert.equal(first.type, 'DIAL_RSP');
    assert.equal(first.random, String(bigRandom));
    assert.equal(first.connectID, '2');
    assert.equal(first.raw, expectedBytes.dialResponse(bigRandom, 2n));
    // The frontend half-closed its stream: the server closes the stream's connection at the agent.
    const cleanup = await agent.next('close_req');
    assert.equal(cleanup.connectID, '2');

    // 7. The agent's destination hangs up: an unsolicited CLOSE_RSP ends our TS socket.
    const third = await tunnel.dial('tcp', '10.20.30.40:8444');
    assert.equal((await agent.next('dial_req')).connectID, '3');
    const thirdClosed = once(third, 'close');
    third.resume();
    agent.command('close 3');
    await agent.next('closed');
    await thirdClosed;

    // 8. A connection still open when the agent leaves is closed for the frontend too.
    const fourth = await tunnel.dial('tcp', '10.20.30.40:8445');
    assert.equal((await agent.next('dial_req')).connectID, '4');
    const fourthClosed = once(fourth, 'close');
    fourth.resume();
    await agent.stop();
    await fourthClosed;

    assert.deepEqual(agent.events.filter((e) => e.event === 'packet'), [], 'python got no unexpected packets');
    assert.deepEqual(agent.coreErrors.filter((l) => /hpack|metadata/i.test(l)), []);
  } finally {
    await tunnel?.close();
    await frontend?.stop();
    await agent.stop();
  }
  const finished = agent.events.find((e) => e.event === 'finished');
  assert.equal(finished?.code, 'OK', `python's half-close ended the call with OK: ${JSON.stringify(finished)}`);
  await until(() => backend(AGENT_ID) === undefined, 'the backend to be removed after the agent left');
});

test('python agent (no flow control, as upstream) floods a connection whose client never reads: our server never pauses the agent stream, closes that connection alone at twice its bound (counted), and another connection through the same agent echoes meanwhile', async () => {
  const agentId = 'py-flood-agent';
  const agent = new PythonPeer(env, 'agent_peer.py', [agentTarget, '--ca', cluster.pki.ca.certPath, '--agent-id', agentId]);
  const tunnel = cluster.openTunnel('grpc');
  const stallCloses = async (reason: string): Promise<number> =>
    (await cluster.server.metrics.connectionStallCloses.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  const closesBefore = await stallCloses('frontend_buffer_full');
  const pausesBefore = cluster.server.router.frontendBoundPauses;
  try {
    await agent.next('headers');
    await until(() => backend(agentId) !== undefined, 'the python agent to be registered');
    assert.equal(cluster.server.router.describeBackends().length, 1, 'the python agent is the only agent');

    // A: the client never reads; python sends on it as fast as the stream takes bytes.
    const stalled = await tunnel.dial('tcp', '10.20.30.40:9000');
    stalled.pause();
    stalled.on('error', () => {});
    const stalledClosed = new Promise<void>((resolve) => stalled.on('close', () => resolve()));
    const aID = str(await agent.next('dial_req'), 'connectID');
    agent.command(`flood ${aID}`);

    // B, through the same agent stream while A floods: 2 MiB echoed back in full.
    const echo = await tunnel.dial('tcp', '10.20.30.40:9001');
    await agent.next('dial_req');
    const data = randomBytes(2 * 1024 * 1024);
    const chunks: Buffer[] = [];
    let got = 0;
    const echoed = new Promise<void>((resolve) => {
      echo.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (got === data.length) resolve();
      });
    });
    echo.write(data);
    await echoed;
    assert.equal(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'), createHash('sha256').update(data).digest('hex'));

    // A alone is closed: CLOSE_REQ to python, the reason counted, the agent stream never paused.
    const stopped = await agent.next('flood_stopped');
    assert.equal(stopped.connectID, aID);
    // A paused socket cannot see its end: reading again, the client gets what was queued, then the close.
    stalled.resume();
    await stalledClosed;
    assert.equal((await stallCloses('frontend_buffer_full')) - closesBefore, 1);
    assert.equal(cluster.server.router.frontendBoundPauses - pausesBefore, 0, 'the agent stream was never paused');
    // Bounded: twice the 16 MiB bound plus what the transports in between hold.
    assert.ok(Number(stopped.bytes) < 64 * 1024 * 1024, `python sent ${String(stopped.bytes)} bytes before the server closed the connection`);
    echo.end();
    await agent.next('close_req');
  } finally {
    await tunnel.close();
    await agent.stop();
  }
  await until(() => backend(agentId) === undefined, 'the backend to be removed after the agent left');
});
