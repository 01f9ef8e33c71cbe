/**
 * Hand-driven gRPC peers of the server: a frontend stream on
 * `/ProxyService/Proxy` and a fake agent on `/AgentService/Connect`. They
 * send whatever the test wants, including bytes that are not a valid Packet.
 */
import type { IncomingHttpHeaders } from 'node:http2';
import { GrpcChannel, type GrpcClientCall, type GrpcStatus, type GrpcTarget } from '../../src/grpc/grpc-client.ts';
import { GRPC_FRAME_HEADER, writeFrameHeader } from '../../src/protocol/grpc-frame.ts';
import { PacketType, packets, type Packet } from '../../src/protocol/packet.ts';
import type { ProtocolError } from '../../src/protocol/protocol-error.ts';
import type { LocalCluster } from '../../src/dev/local-cluster.ts';
import type { PemPair } from '../../src/dev/pki.ts';
import { KiB, randomPayload } from './payload.ts';
import { Inbox } from './wait.ts';

export class RawCall {
  readonly channel: GrpcChannel;
  readonly call: GrpcClientCall;
  readonly packets = new Inbox<Packet>();
  readonly protocolErrors = new Inbox<ProtocolError>();
  /** The stream's final status (never rejects). */
  readonly status: Promise<GrpcStatus>;
  /** Called for every packet (after it is added to `packets`): scripted replies. */
  onPacket: (p: Packet) => void = () => {};
  private readonly closedPromise: Promise<void>;

  constructor(channel: GrpcChannel, call: GrpcClientCall) {
    this.channel = channel;
    this.call = call;
    this.status = call.status;
    call.stream.onPacket = (p) => {
      this.packets.push(p);
      this.onPacket(p);
    };
    call.stream.onProtocolError = (e) => this.protocolErrors.push(e);
    // Like grpc-go's client: once the server ended the call, stop sending too,
    // so the HTTP/2 stream closes and the status is known.
    call.stream.onRemoteEnd = () => call.closeSend();
    this.closedPromise = new Promise((resolve) => {
      call.stream.onClose = () => resolve();
    });
  }

  send(p: Packet): boolean {
    return this.call.stream.send(p);
  }

  /** One gRPC message whose body is `message` (not necessarily a Packet). */
  sendMessage(message: Uint8Array): void {
    const frame = Buffer.alloc(GRPC_FRAME_HEADER + message.length);
    writeFrameHeader(frame, message.length);
    frame.set(message, GRPC_FRAME_HEADER);
    this.call.stream.h2.write(frame);
  }

  /** Bytes straight into the HTTP/2 stream, framing included. */
  sendRaw(bytes: Uint8Array): void {
    this.call.stream.h2.write(bytes);
  }

  /** Resolves when buffered sends drained (or the stream closed). */
  waitDrain(): Promise<void> {
    const h2 = this.call.stream.h2;
    if (h2.destroyed || h2.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        h2.off('drain', done);
        h2.off('close', done);
        resolve();
      };
      h2.once('drain', done);
      h2.once('close', done);
    });
  }

  /** Stop reading: HTTP/2 flow control then pushes back on the server. */
  stopReading(): void {
    this.call.stream.pauseReceive();
  }

  get closed(): Promise<void> {
    return this.closedPromise;
  }

  close(): void {
    this.channel.destroy();
  }
}

export function frontendTarget(cluster: LocalCluster): GrpcTarget {
  const fe = cluster.server.config.frontend;
  if (fe.transport === 'unix') return { transport: 'unix', path: fe.path };
  const port = Number(cluster.server.addresses.frontend.split(':').at(-1));
  return { transport: 'tls', host: '127.0.0.1', port, tls: { ca: cluster.pki.ca.cert, cert: cluster.frontendClient.cert, key: cluster.frontendClient.key } };
}

/** Opens one `/ProxyService/Proxy` stream on a fresh HTTP/2 connection. */
export async function openRawFrontend(cluster: LocalCluster): Promise<RawCall> {
  const channel = await GrpcChannel.connect(frontendTarget(cluster));
  const call = channel.openStream('/ProxyService/Proxy');
  return new RawCall(channel, call);
}

export interface FakeAgentOptions {
  agentId?: string;
  agentIdentifiers?: string;
  /** Client certificate for servers that require one. */
  clientCert?: PemPair;
  /** CA to verify the server with; the cluster CA by default. */
  ca?: string;
}

export class FakeAgent extends RawCall {
  headers!: IncomingHttpHeaders;
  private nextConnectID = 1n;

  /**
   * Behaves like a minimal agent that echoes: DIAL_REQ gets a successful
   * DIAL_RSP with a fresh connectID, DATA is sent back, CLOSE_REQ gets
   * CLOSE_RSP. `dialed` sees each new connectID first.
   */
  serveEcho(dialed: (connectID: bigint, address: string) => void = () => {}): void {
    this.onPacket = (p) => {
      switch (p.type) {
        case PacketType.DIAL_REQ: {
          const id = this.nextConnectID++;
          this.send(packets.dialResponse(p.dialRequest.random, id));
          dialed(id, p.dialRequest.address);
          return;
        }
        case PacketType.DATA:
          this.send(packets.data(p.data.connectID, p.data.data));
          return;
        case PacketType.CLOSE_REQ:
          this.send(packets.closeResponse(p.closeRequest.connectID));
          return;
        default:
          return;
      }
    };
  }

  /**
   * `serveEcho`, except that the first connection dialed is flooded with
   * 64 KiB DATA packets (waiting for drain when the stream pushes back) until
   * the server sends CLOSE_REQ for it: a destination that never stops
   * sending, behind an agent that has no per-connection credit to hold it.
   * `closeRequested()` turns true with that CLOSE_REQ; `pushedBytes()` is
   * what the agent handed to its stream by then.
   */
  serveEchoFloodingFirst(): { closeRequested: () => boolean; pushedBytes: () => number } {
    let floodID = 0n;
    let pushed = 0;
    let stopFlood = false;
    this.serveEcho((id) => {
      if (floodID !== 0n) return;
      floodID = id;
      const chunk = randomPayload(64 * KiB);
      void (async () => {
        while (!stopFlood && !this.call.stream.isClosed) {
          if (!this.send(packets.data(id, chunk))) await this.waitDrain();
          pushed += chunk.length;
        }
      })();
    });
    const echoing = this.onPacket;
    this.onPacket = (p) => {
      if (p.type === PacketType.CLOSE_REQ && p.closeRequest.connectID === floodID) stopFlood = true;
      echoing(p);
    };
    return { closeRequested: () => stopFlood, pushedBytes: () => pushed };
  }
}

/** Connects to the server's agent port as an agent and waits for its serverid/servercount headers. */
export async function connectFakeAgent(cluster: LocalCluster, options: FakeAgentOptions = {}): Promise<FakeAgent> {
  const tls = {
    ca: options.ca ?? cluster.pki.ca.cert,
    ...(options.clientCert ? { cert: options.clientCert.cert, key: options.clientCert.key } : {}),
  };
  const channel = await GrpcChannel.connect({ transport: 'tls', host: '127.0.0.1', port: cluster.server.addresses.agentPort, tls });
  const call = channel.openStream('/AgentService/Connect', { agentid: options.agentId ?? 'fake-agent', agentidentifiers: options.agentIdentifiers ?? '' });
  const agent = new FakeAgent(channel, call);
  try {
    agent.headers = await call.headers;
  } catch (err) {
    channel.destroy();
    throw err;
  }
  return agent;
}
