/**
 * Negotiation of the konnectivity-ts "server drain notice" extension
 * (docs/design.md, "Server drain notice"): a proxy-server that begins a
 * graceful shutdown tells the agents that asked for it, so they connect to
 * another server before this one goes.
 *
 * The agent offers it in request metadata on /AgentService/Connect; the
 * server answers with the same response header only when offered. Only then
 * may the server send DRAIN (PacketType 6, empty DrainRequest) to the agent.
 * That packet already exists in upstream's protocol in the agent → server
 * direction, and upstream agents ignore it from a server (spec §4.10), so
 * even a mistaken send could not hurt an upstream peer; but it is never sent
 * without the header anyway.
 */

/** Request metadata (agent → server) and response header (server → agent). */
export const SERVER_DRAIN_NOTICE_HEADER = 'konnectivity-ts-server-drain';
export const SERVER_DRAIN_NOTICE_VERSION = 'v1';

/** True when a metadata value offers (or accepts) version v1; anything else is ignored. */
export function acceptsServerDrainNotice(value: string | readonly string[] | undefined): boolean {
  if (value === undefined) return false;
  const text = Array.isArray(value) ? (value.length === 1 ? value[0]! : '') : (value as string);
  return text.trim() === SERVER_DRAIN_NOTICE_VERSION;
}
