/**
 * The JSON served on the admin ports at /api/v1/status (server and agent)
 * and read back by `konnectivity status`. `kind` tells the two apart.
 */

export const STATUS_PATH = '/api/v1/status';
/** At most this many connections are listed; `total` still counts them all. */
export const MAX_LISTED_CONNECTIONS = 1000;

export interface ServerAgentStatus {
  agentID: string;
  /** Router-local stream serial (an agent reconnecting gets a new one). */
  serial: number;
  identifiers: { host: string[]; ipv4: string[]; ipv6: string[]; cidr: string[]; defaultRoute: boolean };
  draining: boolean;
  /** konnectivity-ts flow control: the windows negotiated on this stream, or null (upstream agent). */
  flowControl: { agentWindow: number; ourWindow: number } | null;
  connectedAt: string;
  ageSeconds: number;
  connections: number;
  pendingDials: number;
}

export interface ServerConnectionStatus {
  agentID: string;
  connectID: string;
  bytesFromAgent: number;
  bytesToAgent: number;
  ageSeconds: number;
  /** False once the frontend went away and the agent's CLOSE_RSP is awaited. */
  frontendAttached: boolean;
}

export interface ServerStatus {
  kind: 'server';
  serverID: string;
  mode: string;
  serverCount: number;
  strategies: string[];
  uptimeSeconds: number;
  ready: boolean;
  pendingDials: number;
  agents: ServerAgentStatus[];
  connections: { total: number; truncated: boolean; items: ServerConnectionStatus[] };
}

export interface AgentServerStatus {
  serverID: string;
  address: string;
  /** The `servercount` header that server sent. */
  serverCount: number;
  healthy: boolean;
  /** Seconds since the agent first saw this connection (null when unknown). */
  ageSeconds: number | null;
  endpointConnections: number;
}

export interface AgentEndpointStatus {
  serverID: string;
  connectID: string;
  address: string;
  /** Seconds since the status endpoint first saw this connection (a lower bound of its age). */
  ageSeconds: number | null;
}

export interface AgentStatus {
  kind: 'agent';
  agentID: string;
  identifiers: string;
  uptimeSeconds: number;
  ready: boolean;
  draining: boolean;
  targetServerCount: number;
  servers: AgentServerStatus[];
  endpointConnections: { total: number; truncated: boolean; items: AgentEndpointStatus[] };
}

export type AnyStatus = ServerStatus | AgentStatus;
