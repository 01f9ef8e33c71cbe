import assert from 'node:assert/strict';
import { KonnectivityDialError } from '../../src/client/dial-error.ts';

/** The KonnectivityDialError a dial rejects with; fails the test if it succeeds or rejects with anything else. */
export async function rejectsDial(p: Promise<unknown>): Promise<KonnectivityDialError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KonnectivityDialError, `expected a KonnectivityDialError, got ${String(err)}`);
    return err;
  }
  assert.fail('dial succeeded');
}
