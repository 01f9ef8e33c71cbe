/**
 * Konnectivity packet model. Numbers match the upstream proto enum exactly;
 * IDs are bigint because upstream's `random` is a 63-bit value.
 */
export const PacketType = {
  DIAL_REQ: 0,
  DIAL_RSP: 1,
  CLOSE_REQ: 2,
  CLOSE_RSP: 3,
  DATA: 4,
  DIAL_CLS: 5,
  DRAIN: 6,
  /**
   * konnectivity-ts extension (docs/design/flow-control.md): per-connection
   * credit. Only sent on a stream where both peers negotiated it in metadata,
   * so upstream peers never see it.
   */
  FLOW_CREDIT: 64,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

const packetTypeNames: readonly string[] = ['DIAL_REQ', 'DIAL_RSP', 'CLOSE_REQ', 'CLOSE_RSP', 'DATA', 'DIAL_CLS', 'DRAIN'];

/** The enum name upstream uses in metric labels (`packet_type`). */
export function packetTypeName(type: number): string {
  if (type === PacketType.FLOW_CREDIT) return 'FLOW_CREDIT';
  return packetTypeNames[type] ?? 'Unknown';
}

export interface DialRequest {
  protocol: string;
  address: string;
  random: bigint;
}
export interface DialResponse {
  error: string;
  connectID: bigint;
  random: bigint;
}
export interface CloseRequest {
  connectID: bigint;
}
export interface CloseResponse {
  error: string;
  connectID: bigint;
}
export interface CloseDial {
  random: bigint;
}
export interface FlowCredit {
  connectID: bigint;
  bytes: bigint;
}
export interface Data {
  connectID: bigint;
  /** Declared upstream but never set by any upstream component. */
  error: string;
  data: Uint8Array;
  /**
   * The payload as it arrived, in order, when it spanned transport reads
   * (see `packets.dataInPieces`). Relays write these as one writev instead
   * of joining them; reading `data` joins them once.
   */
  readonly pieces?: readonly Uint8Array[];
}

/**
 * Hands a DATA payload to `sink` as it is, without joining pieces: one write,
 * or one per piece (a caller that corks gets a single writev). No allocation.
 */
export function writePayload(sink: { write(chunk: Uint8Array): unknown }, d: Data): void {
  if (d.pieces === undefined) sink.write(d.data);
  else for (const piece of d.pieces) sink.write(piece);
}

/** `writePayload` to a socket, with the pieces of a split payload corked into one writev. */
export function writePayloadToSocket(socket: { cork(): void; write(chunk: Uint8Array): unknown; uncork(): void }, d: Data): void {
  if (d.pieces === undefined) {
    socket.write(d.data);
    return;
  }
  socket.cork();
  writePayload(socket, d);
  socket.uncork();
}

/** Payload bytes of a DATA packet, without joining pieces. */
export function payloadLength(d: Data): number {
  return d.pieces === undefined ? d.data.length : (d as PiecewiseData).byteLength;
}

/** A DATA payload kept as the pieces it arrived in; `data` is joined on first use. */
class PiecewiseData implements Data {
  readonly connectID: bigint;
  readonly error = '';
  readonly pieces: readonly Uint8Array[];
  readonly byteLength: number;
  private joined: Uint8Array | null = null;

  constructor(connectID: bigint, pieces: readonly Uint8Array[], byteLength: number) {
    this.connectID = connectID;
    this.pieces = pieces;
    this.byteLength = byteLength;
  }

  get data(): Uint8Array {
    return (this.joined ??= Buffer.concat(this.pieces, this.byteLength));
  }
}

export type DialRequestPacket = { type: typeof PacketType.DIAL_REQ; dialRequest: DialRequest };
export type DialResponsePacket = { type: typeof PacketType.DIAL_RSP; dialResponse: DialResponse };
export type CloseRequestPacket = { type: typeof PacketType.CLOSE_REQ; closeRequest: CloseRequest };
export type CloseResponsePacket = { type: typeof PacketType.CLOSE_RSP; closeResponse: CloseResponse };
export type DataPacket = { type: typeof PacketType.DATA; data: Data };
export type CloseDialPacket = { type: typeof PacketType.DIAL_CLS; closeDial: CloseDial };
export type DrainPacket = { type: typeof PacketType.DRAIN };
export type FlowCreditPacket = { type: typeof PacketType.FLOW_CREDIT; flowCredit: FlowCredit };

export type Packet =
  | DialRequestPacket
  | DialResponsePacket
  | CloseRequestPacket
  | CloseResponsePacket
  | DataPacket
  | CloseDialPacket
  | DrainPacket
  | FlowCreditPacket;

// Constructors keep every sender honest about the type/payload pairing that
// Go peers dereference without nil checks.
export const packets = {
  dialRequest(address: string, random: bigint, protocol = 'tcp'): DialRequestPacket {
    return { type: PacketType.DIAL_REQ, dialRequest: { protocol, address, random } };
  },
  dialResponse(random: bigint, connectID: bigint, error = ''): DialResponsePacket {
    return { type: PacketType.DIAL_RSP, dialResponse: { error, connectID, random } };
  },
  closeRequest(connectID: bigint): CloseRequestPacket {
    return { type: PacketType.CLOSE_REQ, closeRequest: { connectID } };
  },
  closeResponse(connectID: bigint, error = ''): CloseResponsePacket {
    return { type: PacketType.CLOSE_RSP, closeResponse: { error, connectID } };
  },
  data(connectID: bigint, data: Uint8Array): DataPacket {
    return { type: PacketType.DATA, data: { connectID, error: '', data } };
  },
  /** DATA whose payload is `pieces` in order (`byteLength` bytes in all), not copied into one buffer. */
  dataInPieces(connectID: bigint, pieces: readonly Uint8Array[], byteLength: number): DataPacket {
    return { type: PacketType.DATA, data: new PiecewiseData(connectID, pieces, byteLength) };
  },
  closeDial(random: bigint): CloseDialPacket {
    return { type: PacketType.DIAL_CLS, closeDial: { random } };
  },
  drain(): DrainPacket {
    return { type: PacketType.DRAIN };
  },
  flowCredit(connectID: bigint, bytes: bigint): FlowCreditPacket {
    return { type: PacketType.FLOW_CREDIT, flowCredit: { connectID, bytes } };
  },
} as const;
