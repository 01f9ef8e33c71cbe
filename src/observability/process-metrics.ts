/**
 * Node's process metrics (prom-client's defaults: CPU, memory, handles, GC,
 * event-loop delay), registered next to upstream's konnectivity metrics as
 * Go's process and runtime collectors are in upstream's binaries.
 */
import { type Registry, collectDefaultMetrics } from 'prom-client';

/**
 * How often the event-loop delay histogram samples. prom-client's default,
 * 10 ms, is a timer that wakes an idle server or agent a hundred times a
 * second: measured at 0.7 % of a core idle in the server, before any work.
 * At 100 ms a stall of 100 ms or more is still always seen, and an idle
 * process wakes ten times a second for it.
 */
export const EVENT_LOOP_SAMPLE_INTERVAL_MS = 100;

export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_INTERVAL_MS });
}
