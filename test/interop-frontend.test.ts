/**
 * Interop: a python grpcio frontend (test/interop/frontend_client.py, in the
 * role of kube-apiserver's konnectivity-client) against OUR server's
 * /ProxyService/Proxy, over a unix socket and over mTLS TCP, through OUR
 * agent to a real TCP destination.
 */
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startLocalCluster, type LocalCluster } from '../src/dev/local-cluster.ts';
import { closedPort, startEchoDestination, until, type EchoDestination } from './interop/net-fixtures.ts';
import { expectedBytes, prepareInterop, PythonPeer, str, type InteropEnv, type PeerEvent } from './interop/python-peer.ts';

const MiB = 1024 * 1024;
const BIG_RANDOM = (1n << 62n) + (1n << 53n) + 12_345n; // > 2^53: a JS number would round it
const MAX_INT64 = (1n << 63n) - 1n;

let env: InteropEnv;
before(() => {
  env = prepareInterop();
});
after(() => env?.cleanup());

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => v as Obj;

for (const transport of ['unix', 'tcp'] as const) {
  suite(`python frontend → our server over ${transport === 'unix' ? 'a unix socket' : 'mTLS TCP'}`, () => {
    let cluster: LocalCluster;
    let destination: EchoDestination;
    let frontend: PythonPeer;
    let nextId = 0;

    const run = async (cmd: Obj): Promise<PeerEvent> => {
      const id = ++nextId;
      frontend.command(JSON.stringify({ ...cmd, id }));
      return frontend.next('result', (e) => e.id === id);
    };

    before(async () => {
      cluster = await startLocalCluster({ mode: 'grpc', frontendTransport: transport, agents: 1 });
      destination = await startEchoDestination();
      const fe = cluster.server.addresses.frontend;
      const args =
        transport === 'unix'
          ? [`unix://${fe}`]
          : [`127.0.0.1:${fe.split(':').at(-1)}`, '--ca', cluster.pki.ca.certPath, '--cert', cluster.frontendClient.certPath, '--key', cluster.frontendClient.keyPath];
      frontend = new PythonPeer(env, 'frontend_client.py', args, { traceHeaders: true });
      await frontend.next('ready');
    });

    after(async () => {
      await frontend?.stop();
      await destination?.close();
      await cluster?.close();
    });

    test('DIAL_REQ random > 2^53 is echoed exactly; 4 MiB DATA both ways, sha256-checked at both ends; CLOSE_REQ → CLOSE_RSP', async () => {
      const size = 4 * MiB + 3;
      const r = await run({ op: 'echo', address: destination.address, random: String(BIG_RANDOM), size, seed: 7 });
      const dial = obj(r.dialResponse);
      assert.equal(dial.type, 'DIAL_RSP');
      assert.equal(dial.error, '');
      assert.equal(dial.random, String(BIG_RANDOM), 'DIAL_RSP random is the DIAL_REQ random, all 64 bits');
      const connectID = BigInt(str(dial as PeerEvent, 'connectID'));
      assert.ok(connectID > 0n, 'a connectID was assigned');
      assert.equal(dial.raw, expectedBytes.dialResponse(BIG_RANDOM, connectID), 'exact DIAL_RSP bytes');

      assert.equal(r.receivedBytes, size);
      assert.equal(r.receivedSha256, r.sentSha256, 'python got back exactly what it sent');
      assert.deepEqual(r.dataConnectIDs, [String(connectID)], 'every DATA to the frontend carries the dial connectID');
      const atDestination = destination.received.at(-1)!;
      assert.equal(atDestination.bytes, size);
      assert.equal(atDestination.sha256(), r.sentSha256, 'the destination received exactly what python sent');

      const close = obj(r.closeResponse);
      assert.equal(close.type, 'CLOSE_RSP');
      assert.equal(close.connectID, String(connectID));
      assert.equal(close.error, '');
      assert.equal(close.raw, expectedBytes.closeResponse(connectID));
      assert.equal(obj(r.end).status, 'OK', `the call ended cleanly: ${JSON.stringify(r.end)}`);
    });

    test('one frontend channel, four concurrent Proxy streams; 3 MiB DATA packets (below the 4 MiB gRPC limit)', async () => {
      const echoes: Array<{ address: string; random: string; size: number; seed: number; chunk?: number }> = [0, 1, 2, 3].map((i) => ({
        address: destination.address,
        random: String(BIG_RANDOM + 100n + BigInt(i)),
        size: MiB + i,
        seed: 100 + i,
      }));
      echoes.push({ address: destination.address, random: String(BIG_RANDOM + 200n), size: 6 * MiB, seed: 200, chunk: 3 * MiB });
      const before = destination.received.length;
      const r = await run({ op: 'echo_many', echoes });
      const results = r.results as Obj[];
      assert.equal(results.length, echoes.length);
      const connectIDs = new Set<unknown>();
      results.forEach((res, i) => {
        const dial = obj(res.dialResponse);
        assert.equal(dial.error, '', `stream ${i} dialed`);
        assert.equal(dial.random, echoes[i]!.random, `stream ${i} got its own DIAL_RSP`);
        connectIDs.add(dial.connectID);
        assert.equal(res.receivedBytes, echoes[i]!.size);
        assert.equal(res.receivedSha256, res.sentSha256, `stream ${i} echo intact`);
        assert.deepEqual(res.dataConnectIDs, [dial.connectID], `stream ${i} only got its own DATA`);
        assert.equal(obj(res.closeResponse).connectID, dial.connectID);
        assert.equal(obj(res.end).status, 'OK');
      });
      assert.equal(connectIDs.size, echoes.length, 'distinct connectIDs');
      const fresh = destination.received.slice(before).map((x) => x.sha256()).sort();
      assert.deepEqual(fresh, results.map((res) => String(res.sentSha256)).sort(), 'the destination saw each stream once, intact');
    });

    test('dial to a closed port → DIAL_RSP with the Go dial error text, random echoed, no connectID', async () => {
      const port = await closedPort();
      const r = await run({ op: 'dial', address: `127.0.0.1:${port}`, random: String(MAX_INT64) });
      const first = obj(r.first);
      assert.equal(first.type, 'DIAL_RSP');
      assert.equal(first.error, `dial tcp 127.0.0.1:${port}: connect: connection refused`);
      assert.equal(first.random, String(MAX_INT64));
      assert.equal(first.connectID, '0');
      assert.equal(first.raw, expectedBytes.dialResponse(MAX_INT64, 0n, `dial tcp 127.0.0.1:${port}: connect: connection refused`));
    });

    // kube-apiserver's reusable tunnel cancels each Proxy stream after its CLOSE_RSP (one RST_STREAM per dial).
    // nghttp2, and our server before, counted those as rapid resets and cut the connection (GOAWAY
    // ENHANCE_YOUR_CALM) after about 1,000 at more than 33 a second, and with it every tunnel on it.
    test('the reusable-tunnel pattern: 1,500 dials on one channel, each stream cancelled after CLOSE_RSP; the connection and a tunnel opened before them survive', { timeout: 120_000 }, async () => {
      const r = await run({ op: 'dial_and_cancel', address: destination.address, count: 1_500 });
      // grpcio redials by itself after a GOAWAY, so the dials alone would pass; the early tunnel would not.
      assert.deepEqual({ done: r.done, failure: r.failure, earlyTunnel: r.earlyTunnel }, { done: 1_500, failure: undefined, earlyTunnel: { echoed: 'still there?' } });
    });

    test('a method path with a package (/pkg.ProxyService/Proxy) → UNIMPLEMENTED', async () => {
      const r = await run({ op: 'call', method: '/pkg.ProxyService/Proxy' });
      assert.equal(obj(r.end).status, 'error');
      assert.equal(obj(r.end).code, 'UNIMPLEMENTED', JSON.stringify(r.end));
    });

    if (transport === 'tcp') {
      test('mTLS: a frontend without a client certificate is refused', async () => {
        const r = await run({ op: 'no_client_cert', address: destination.address, random: '1' });
        assert.equal(obj(r.end).status, 'error');
        assert.equal(obj(r.end).code, 'UNAVAILABLE', JSON.stringify(r.end));
        // stderr and stdout are separate pipes: wait for the log line rather than expect it already read.
        await until(() => frontend.coreErrors.some((l) => /certificate required/.test(l)), 'python to log the TLS alert "certificate required"');
      });
    }

    test('the headers python decoded from our server: :status 200, content-type application/grpc, grpc-status in trailers', async () => {
      // The trace is on stderr, the results on stdout: the last response's trace (UNIMPLEMENTED, traced
      // after every earlier one on the same pipe) may not have been read when the previous test ended.
      await until(() => frontend.headerBlocks('CLI', 'TRL').some((h) => h.get('grpc-status')?.[0] === '12'), 'python to trace the UNIMPLEMENTED trailers');
      // A trailers-only response (the UNIMPLEMENTED one) is traced as one TRL block that also holds :status.
      const headers = frontend.headerBlocks('CLI', 'HDR');
      const trailers = frontend.headerBlocks('CLI', 'TRL');
      const responses = [...headers, ...trailers].filter((h) => h.has(':status'));
      assert.ok(responses.length >= 3, `python traced our response headers (got ${responses.length} blocks)`);
      for (const h of responses) {
        assert.deepEqual(h.get(':status'), ['200']);
        assert.deepEqual(h.get('content-type'), ['application/grpc']);
      }
      const statuses = trailers.flatMap((h) => h.get('grpc-status') ?? []);
      assert.ok(statuses.includes('0'), `an OK status was seen: ${statuses.join(',')}`);
      const unimplemented = trailers.find((h) => h.get('grpc-status')?.[0] === '12');
      assert.ok(unimplemented, `UNIMPLEMENTED (12) was seen: ${statuses.join(',')}`);
      assert.deepEqual(unimplemented.get('grpc-message'), ['unknown service pkg.ProxyService'], "grpc-go's text for an unknown service");
      assert.deepEqual(frontend.coreErrors.filter((l) => /hpack|metadata/i.test(l)), [], 'grpc C-core found no metadata it could not parse');
    });

    test('no agent connected → DIAL_RSP error "No agent available" with the random echoed', async () => {
      await Promise.all(cluster.agents.map((a) => a.stop()));
      await until(() => cluster.server.router.backendList.length === 0, 'the agent to disconnect');
      const r = await run({ op: 'dial', address: destination.address, random: String(BIG_RANDOM + 1n) });
      const first = obj(r.first);
      assert.equal(first.type, 'DIAL_RSP');
      assert.equal(first.error, 'No agent available');
      assert.equal(first.random, String(BIG_RANDOM + 1n));
      assert.equal(first.raw, expectedBytes.dialResponse(BIG_RANDOM + 1n, 0n, 'No agent available'));
    });
  });
}
