/**
 * The server's admin-port status: /api/v1/status (everything), with
 * /api/v1/agents and /api/v1/connections as slices of it. Read-only views
 * of the router's state; nothing here changes routing.
 */
import type http from 'node:http';
import type { ProxyRouter } from '../server/proxy-router.ts';
import { jsonRoute, secondsSince } from './admin-json.ts';
import { MAX_LISTED_CONNECTIONS, STATUS_PATH, type ServerAgentStatus, type ServerConnectionStatus, type ServerStatus } from './status-types.ts';

/** What the status needs from a KonnectivityServer (kept structural to avoid an import cycle). */
export interface ServerStatusSource {
  readonly config: { serverId: string; mode: string; serverCount: number; strategies: readonly string[] };
  readonly router: ProxyRouter;
}

export function collectServerStatus(server: ServerStatusSource, startedAt: number, now = Date.now(), maxConnections = MAX_LISTED_CONNECTIONS): ServerStatus {
  const router = server.router;
  const agents: ServerAgentStatus[] = [];
  const items: ServerConnectionStatus[] = [];
  let total = 0;
  for (const b of router.backendList) {
    agents.push({
      agentID: b.agentId,
      serial: b.serial,
      identifiers: { host: [...b.identifiers.host], ipv4: [...b.identifiers.ipv4], ipv6: [...b.identifiers.ipv6], cidr: [...b.identifiers.cidr], defaultRoute: b.identifiers.defaultRoute },
      draining: b.draining,
      flowControl: b.flow ? { agentWindow: b.flow.agentWindow, ourWindow: b.flow.ourWindow } : null,
      connectedAt: new Date(b.connectedAt).toISOString(),
      ageSeconds: secondsSince(b.connectedAt, now),
      connections: b.connections.size,
      pendingDials: b.pendingDials,
    });
    for (const c of b.connections.values()) {
      total++;
      if (items.length >= maxConnections) continue;
      items.push({
        agentID: b.agentId,
        connectID: c.connectID.toString(),
        bytesFromAgent: c.bytesFromAgent,
        bytesToAgent: c.bytesToAgent,
        ageSeconds: secondsSince(c.startedAt, now),
        frontendAttached: c.frontend !== null,
      });
    }
  }
  return {
    kind: 'server',
    serverID: server.config.serverId,
    mode: server.config.mode,
    serverCount: server.config.serverCount,
    strategies: [...server.config.strategies],
    uptimeSeconds: secondsSince(startedAt, now),
    ready: router.registry.ready,
    pendingDials: router.pendingDialCount,
    agents,
    connections: { total, truncated: total > items.length, items },
  };
}

/** Admin routes for a server; `startedAt` defaults to now (the admin server is built with the server). */
export function serverStatusRoutes(server: ServerStatusSource, startedAt = Date.now()): Record<string, http.RequestListener> {
  const status = (): ServerStatus => collectServerStatus(server, startedAt);
  return {
    [STATUS_PATH]: jsonRoute(status),
    '/api/v1/agents': jsonRoute(() => {
      const s = status();
      return { kind: 'server', serverID: s.serverID, ready: s.ready, agents: s.agents };
    }),
    '/api/v1/connections': jsonRoute(() => {
      const s = status();
      return { kind: 'server', serverID: s.serverID, pendingDials: s.pendingDials, connections: s.connections };
    }),
  };
}
