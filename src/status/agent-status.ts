/**
 * The agent's admin-port status (/api/v1/status). The agent keeps its server
 * links and endpoint connections private; this module reads them through a
 * narrow structural view and treats anything missing as empty, so it can
 * never break the agent. Ages are tracked here: a server link's age starts
 * when the agent reported the sync that connected it (or when first seen).
 */
import type http from 'node:http';
import type { KonnectivityAgent } from '../agent/konnectivity-agent.ts';
import { jsonRoute, secondsSince } from './admin-json.ts';
import { MAX_LISTED_CONNECTIONS, STATUS_PATH, type AgentEndpointStatus, type AgentServerStatus, type AgentStatus } from './status-types.ts';

interface LinkView {
  serverID: string;
  serverCount?: number;
  address?: { host: string; port: number };
  isHealthy?: boolean;
  endpointConnectionCount?: number;
  relay?: { connections?: Map<bigint, { connectID: bigint; address: string }> };
}

function linksOf(agent: KonnectivityAgent): LinkView[] {
  const set = (agent as unknown as { links?: { links?: unknown } | null }).links;
  const map = set?.links;
  if (!(map instanceof Map)) return [];
  return [...(map as Map<string, LinkView>).values()];
}

function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export class AgentStatusTracker {
  private readonly agent: KonnectivityAgent;
  private readonly startedAt = Date.now();
  private readonly firstSeen = new WeakMap<object, number>();

  constructor(agent: KonnectivityAgent) {
    this.agent = agent;
    // Stamp links as they connect (chained: whoever set onSync before keeps being called).
    const previous = agent.onSync;
    agent.onSync = (outcome, error) => {
      if (outcome === 'connected') this.stamp(Date.now());
      previous.call(agent, outcome, error);
    };
  }

  private stamp(now: number): void {
    for (const link of linksOf(this.agent)) if (!this.firstSeen.has(link)) this.firstSeen.set(link, now);
  }

  private age(o: object, now: number): number | null {
    const at = this.firstSeen.get(o);
    return at === undefined ? null : secondsSince(at, now);
  }

  collect(now = Date.now(), maxConnections = MAX_LISTED_CONNECTIONS): AgentStatus {
    const agent = this.agent;
    const links = linksOf(agent);
    const servers: AgentServerStatus[] = [];
    const items: AgentEndpointStatus[] = [];
    let total = 0;
    for (const link of links) {
      const linkAge = this.age(link, now);
      if (linkAge === null) this.firstSeen.set(link, now);
      const conns = link.relay?.connections instanceof Map ? [...link.relay.connections.values()] : [];
      servers.push({
        serverID: link.serverID,
        address: link.address ? joinHostPort(link.address.host, link.address.port) : '',
        serverCount: link.serverCount ?? 0,
        healthy: link.isHealthy ?? false,
        ageSeconds: linkAge,
        endpointConnections: link.endpointConnectionCount ?? conns.length,
      });
      for (const c of conns) {
        total++;
        if (items.length >= maxConnections) continue;
        if (!this.firstSeen.has(c)) this.firstSeen.set(c, now);
        items.push({ serverID: link.serverID, connectID: c.connectID.toString(), address: c.address, ageSeconds: this.age(c, now) });
      }
    }
    const countedByLinks = servers.reduce((n, s) => n + s.endpointConnections, 0);
    total = Math.max(total, countedByLinks);
    return {
      kind: 'agent',
      agentID: agent.config.agentID,
      identifiers: agent.config.agentIdentifiers ?? '',
      uptimeSeconds: secondsSince(this.startedAt, now),
      ready: agent.isReady,
      draining: agent.isDraining,
      targetServerCount: agent.targetServerCount,
      servers,
      endpointConnections: { total, truncated: total > items.length, items },
    };
  }

  routes(): Record<string, http.RequestListener> {
    return {
      [STATUS_PATH]: jsonRoute(() => this.collect()),
      '/api/v1/servers': jsonRoute(() => {
        const s = this.collect();
        return { kind: 'agent', agentID: s.agentID, servers: s.servers };
      }),
      '/api/v1/connections': jsonRoute(() => {
        const s = this.collect();
        return { kind: 'agent', agentID: s.agentID, endpointConnections: s.endpointConnections };
      }),
    };
  }
}

export function agentStatusRoutes(agent: KonnectivityAgent): Record<string, http.RequestListener> {
  return new AgentStatusTracker(agent).routes();
}
