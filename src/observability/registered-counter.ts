/**
 * A counter that several components may ask one registry for (two servers
 * in one test process, a component built twice): the first call registers
 * it, later calls get the same one instead of prom-client's duplicate-name error.
 */
import { Counter, type Registry } from 'prom-client';

export function registeredCounter<L extends string = string>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing as Counter<L>;
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}
