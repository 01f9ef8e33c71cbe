/**
 * A frontend for ProxyRouter tests driven in memory: records every call the
 * router makes, and whether it asked the frontend to stop reading.
 */
import type { Data } from '../../src/protocol/packet.ts';
import type { FrontendPeer } from '../../src/server/proxy-router.ts';

export type FrontendEvent = ['dialResponse', bigint, bigint, string] | ['data', bigint, string] | ['closeResponse', bigint, string] | ['dialClosed', bigint];

export class RecordingFrontend implements FrontendPeer {
  events: FrontendEvent[] = [];
  bufferedBytes = 0;
  paused = false;
  dialResponse(random: bigint, connectID: bigint, error: string): void {
    this.events.push(['dialResponse', random, connectID, error]);
  }
  data(connectID: bigint, payload: Data): void {
    this.events.push(['data', connectID, Buffer.from(payload.data).toString()]);
  }
  closeResponse(connectID: bigint, error: string): void {
    this.events.push(['closeResponse', connectID, error]);
  }
  dialClosed(random: bigint): void {
    this.events.push(['dialClosed', random]);
  }
  pauseReading(): void {
    this.paused = true;
  }
  resumeReading(): void {
    this.paused = false;
  }
}
