export type ProtocolErrorCode =
  | 'truncated'
  | 'bad_wire_type'
  | 'bad_varint'
  | 'bad_utf8'
  | 'unknown_packet_type'
  | 'payload_mismatch'
  | 'message_too_large'
  | 'bad_frame';

/** A malformed message from a peer. Carries a stable code for callers and metrics. */
export class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  constructor(code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}
