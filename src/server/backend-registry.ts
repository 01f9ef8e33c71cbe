/**
 * Agent streams ("backends") indexed by each proxy strategy, and the pick
 * rules of upstream's backend managers: ordered fall-through across
 * strategies, random start, draining backends only as a last resort.
 */
import { destHostOf, type AgentIdentifiers } from './agent-identifiers.ts';

export type ProxyStrategyName = 'default' | 'destHost' | 'defaultRoute';

export interface RoutableBackend {
  readonly agentId: string;
  readonly identifiers: AgentIdentifiers;
  readonly draining: boolean;
}

class StrategyIndex<B extends RoutableBackend> {
  private readonly byKey = new Map<string, B[]>();
  private keys: string[] = [];

  add(key: string, b: B): void {
    const list = this.byKey.get(key);
    if (list) list.push(b);
    else {
      this.byKey.set(key, [b]);
      this.keys.push(key);
    }
  }

  remove(key: string, b: B): void {
    const list = this.byKey.get(key);
    if (!list) return;
    const i = list.indexOf(b);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) {
      this.byKey.delete(key);
      this.keys = this.keys.filter((k) => k !== key);
    }
  }

  get size(): number {
    return this.keys.length;
  }

  /** Random start, walk in a circle, first key whose first stream is not draining. */
  pickAny(random: () => number): B | null {
    const n = this.keys.length;
    if (n === 0) return null;
    const start = Math.floor(random() * n);
    let fallback: B | null = null;
    for (let i = 0; i < n; i++) {
      const first = this.byKey.get(this.keys[(start + i) % n]!)![0]!;
      if (!first.draining) return first;
      fallback ??= first;
    }
    return fallback;
  }

  pickKey(key: string): B | null {
    const list = this.byKey.get(key);
    if (!list) return null;
    return list.find((b) => !b.draining) ?? list[0] ?? null;
  }
}

export class BackendRegistry<B extends RoutableBackend> {
  readonly strategies: readonly ProxyStrategyName[];
  private readonly indexes = new Map<ProxyStrategyName, StrategyIndex<B>>();
  private readonly random: () => number;

  constructor(strategies: readonly ProxyStrategyName[], random: () => number = Math.random) {
    if (strategies.length === 0) throw new Error('at least one proxy strategy is required');
    this.strategies = strategies;
    this.random = random;
    for (const s of strategies) this.indexes.set(s, new StrategyIndex<B>());
  }

  private keysFor(strategy: ProxyStrategyName, b: B): string[] {
    switch (strategy) {
      case 'default':
        return [b.agentId];
      case 'defaultRoute':
        return b.identifiers.defaultRoute ? [b.agentId] : [];
      case 'destHost':
        return [...b.identifiers.ipv4, ...b.identifiers.ipv6, ...b.identifiers.host];
    }
  }

  add(b: B): void {
    for (const [s, idx] of this.indexes) for (const k of this.keysFor(s, b)) idx.add(k, b);
  }

  remove(b: B): void {
    for (const [s, idx] of this.indexes) for (const k of this.keysFor(s, b)) idx.remove(k, b);
  }

  /** Keys registered for a strategy (upstream's ready_backends gauge). */
  count(strategy: ProxyStrategyName): number {
    return this.indexes.get(strategy)?.size ?? 0;
  }

  /** Readiness follows the first configured strategy only, as upstream. */
  get ready(): boolean {
    return this.count(this.strategies[0]!) > 0;
  }

  pick(address: string): B | null {
    for (const s of this.strategies) {
      const idx = this.indexes.get(s)!;
      const b = s === 'destHost' ? idx.pickKey(destHostOf(address)) : idx.pickAny(this.random);
      if (b) return b;
    }
    return null;
  }
}
