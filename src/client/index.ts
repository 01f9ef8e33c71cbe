export { createTunnel } from './create-tunnel.ts';
export { KonnectivityDialError, dialFailureCodes, dialFailureReason, type DialFailureCode } from './dial-error.ts';
export { TunnelHttpAgent, TunnelHttpsAgent, type TunnelAgentOptions } from './tunnel-agent.ts';
export { ProxyStreamSocket, MAX_DATA_PAYLOAD_BYTES } from './proxy-stream-socket.ts';
export {
  CLOSE_TIMEOUT_MS,
  DEFAULT_DIAL_TIMEOUT_MS,
  type DialOptions,
  type PemInput,
  type ProxyTlsOptions,
  type ProxyTransport,
  type SocketLike,
  type Tunnel,
  type TunnelConnection,
  type TunnelMode,
  type TunnelOptions,
} from './tunnel-options.ts';
