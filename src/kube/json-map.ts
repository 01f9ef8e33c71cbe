/**
 * Decoded JSON or YAML from outside (kubeconfigs, plugin output, API
 * answers) is checked field by field; this is the one test for "an object
 * with named fields" those checks start from.
 */
export type JsonMap = Record<string, unknown>;

/** A non-null object that is not an array. */
export function isMap(value: unknown): value is JsonMap {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
