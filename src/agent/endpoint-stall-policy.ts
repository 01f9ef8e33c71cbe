/**
 * `--endpoint-stall-policy`: what the agent does, with a server that has no
 * per-connection flow control (an upstream server), while one destination has
 * more than `--endpoint-buffer-bytes` queued. 'close' (the default) never
 * pauses the server's stream: that destination's queue may grow to twice the
 * bound while it keeps taking bytes, and the connection alone is closed past
 * that, or after the stall timeout without progress. 'pause' stops reading the
 * server's whole stream until the destination drains, as upstream's agent does
 * (every connection on that stream waits), and closes the connection after the
 * stall timeout without progress. docs/design/flow-control.md has the trade-off.
 */
export type EndpointStallPolicy = 'close' | 'pause';

export const ENDPOINT_STALL_POLICIES: readonly EndpointStallPolicy[] = ['close', 'pause'];
