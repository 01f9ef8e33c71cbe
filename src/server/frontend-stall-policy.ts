/**
 * `--frontend-stall-policy`: what the server does, with an agent that has no
 * per-connection flow control (an upstream agent), while one frontend has
 * more than its bound queued. 'close' (the default) never pauses the agent's
 * stream: that frontend's queue may grow to twice the bound while it keeps
 * taking bytes, and the connection alone is closed past that, or after the
 * stall timeout without progress. 'pause' stops reading the agent's whole
 * stream until the frontend drains, as upstream does (every connection on
 * that agent waits), and closes the connection after the stall timeout
 * without progress. docs/design/flow-control.md has the trade-off.
 */
export type FrontendStallPolicy = 'close' | 'pause';

export const FRONTEND_STALL_POLICIES: readonly FrontendStallPolicy[] = ['close', 'pause'];
