/**
 * coordination.k8s.io/v1 Leases as the proxy-server publishes and the agent
 * counts them, and upstream's validity rule (pkg/util/leases.go).
 */
import { isMap } from './json-map.ts';

/** A coordination.k8s.io/v1 Lease as JSON, with the fields this code reads; others are kept as they came. */
export interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    [field: string]: unknown;
  };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

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
  readonly raw: LeaseObject;
}

/** A MicroTime string as a Date; garbage counts as absent. */
function toDate(value: unknown): Date | undefined {
  if (typeof value === 'string' && value !== '') {
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? undefined : d;
  }
  return undefined;
}


const text = (value: unknown): string => (typeof value === 'string' ? value : '');

/** String-valued labels only: an answer that is not JSON of the Lease schema must not put other types where strings are expected. */
function stringLabels(value: unknown): Record<string, string> {
  const labels: Record<string, string> = {};
  if (isMap(value)) for (const [k, v] of Object.entries(value)) if (typeof v === 'string') labels[k] = v;
  return labels;
}

/** A Lease from an API answer or a watch event object (decoded JSON, checked field by field). */
export function leaseFromApi(obj: LeaseObject): Lease {
  const meta: Record<string, unknown> = isMap(obj.metadata) ? obj.metadata : {};
  const spec: Record<string, unknown> = isMap(obj.spec) ? obj.spec : {};
  const acquireTime = toDate(spec['acquireTime']);
  const renewTime = toDate(spec['renewTime']);
  const holderIdentity = spec['holderIdentity'];
  const leaseDurationSeconds = spec['leaseDurationSeconds'];
  return {
    name: text(meta['name']),
    namespace: text(meta['namespace']),
    resourceVersion: text(meta['resourceVersion']),
    labels: stringLabels(meta['labels']),
    ...(typeof holderIdentity === 'string' ? { holderIdentity } : {}),
    ...(typeof leaseDurationSeconds === 'number' ? { leaseDurationSeconds } : {}),
    ...(acquireTime ? { acquireTime } : {}),
    ...(renewTime ? { renewTime } : {}),
    raw: obj,
  };
}

/** A MicroTime the apiserver accepts: RFC 3339 with exactly six fractional digits (metav1.RFC3339Micro). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
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
