/** The message of an Error, or a thrown non-Error value as text, for log fields and error texts. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
