/**
 * coordination.k8s.io/v1 Leases as the proxy-server publishes and the agent
 * counts them, and upstream's validity rule (pkg/util/leases.go).
 */
import { V1MicroTime, type V1Lease } from '@kubernetes/client-node';

export interface Lease {
  readonly name: string;
  readonly namespace: string;
  readonly resourceVersion: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: Date;
  readonly renewTime?: Date;
  /** The object as the API returned it, for read-modify-write updates that keep fields this code does not know. */
  readonly raw: V1Lease;
}

/**
 * The client library types MicroTime fields as Date but hands back the
 * apiserver's string; accept both (and reject garbage as absent).
 */
function toDate(value: unknown): Date | undefined {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? undefined : value;
  if (typeof value === 'string' && value !== '') {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? undefined : d;
  }
  return undefined;
}

/** A Lease from the typed client or from a raw watch event object. */
export function leaseFromApi(obj: V1Lease): Lease {
  const meta = obj.metadata ?? {};
  const spec = obj.spec ?? {};
  const acquireTime = toDate(spec.acquireTime);
  const renewTime = toDate(spec.renewTime);
  return {
    name: meta.name ?? '',
    namespace: meta.namespace ?? '',
    resourceVersion: meta.resourceVersion ?? '',
    labels: { ...(meta.labels ?? {}) },
    ...(spec.holderIdentity !== undefined ? { holderIdentity: spec.holderIdentity } : {}),
    ...(typeof spec.leaseDurationSeconds === 'number' ? { leaseDurationSeconds: spec.leaseDurationSeconds } : {}),
    ...(acquireTime ? { acquireTime } : {}),
    ...(renewTime ? { renewTime } : {}),
    raw: obj,
  };
}

/** A MicroTime the apiserver accepts: RFC 3339 with exactly six fractional digits (metav1.RFC3339Micro). */
export function microTime(ms: number): V1MicroTime {
  return new V1MicroTime(ms);
}

/**
 * Valid while renewTime (or acquireTime when there is no renewTime) plus
 * leaseDurationSeconds is after `nowMs`. Neither time set: expired.
 */
export function isLeaseValid(lease: Pick<Lease, 'renewTime' | 'acquireTime' | 'leaseDurationSeconds'>, nowMs: number): boolean {
  const last = lease.renewTime ?? lease.acquireTime;
  if (!last) return false;
  return last.getTime() + (lease.leaseDurationSeconds ?? 0) * 1000 > nowMs;
}

/** labels.FormatLabels: `k=v` pairs sorted by key, comma-separated (the GC's label selector). */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k] ?? ''}`)
    .join(',');
}
