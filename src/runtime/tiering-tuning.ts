/**
 * When V8 moves the daemons' per-connection code to its top tier.
 *
 * V8 optimises a function with TurboFan once it has used up a budget of
 * `--invocation-count-for-turbofan` (3000) times its bytecode size; code
 * that returns early or runs from Maglev spends that budget slowly, so code
 * that runs once per dial reached TurboFan only after about 10,000 dials
 * (measured with --trace-opt on server and agent: the agent's
 * handleDialRequest, dialSucceeded, net.Socket and the stream states it
 * allocates were compiled between dials 10,000 and 11,000). Until then a
 * restarted server dials slower than a long-running one: a fresh cluster
 * dialled next to one with 16,000 dials behind it, in alternating blocks of
 * 500 over the same seconds, took 0.9–1.1 ms a dial against 0.8 until it had
 * dialled about 11,000 times (docs/benchmarks.md, session 23). With a budget
 * of 1000 the same functions were compiled within the first 2,000 dials and
 * the dial time reached the long-running level there.
 *
 * KONNECTIVITY_TURBOFAN_INVOCATIONS sets the budget (0 leaves V8's own); a
 * `--invocation-count-for-turbofan` given to Node on its command line or
 * in NODE_OPTIONS wins. Set at startup with v8.setFlagsFromString, before
 * the per-connection code has run: V8 reads the value whenever it gives a
 * function a new budget. V8 before 12 (Node 20) has no such flag and is left
 * alone.
 */
import v8 from 'node:v8';
import { nodeFlagValues } from './node-flags.ts';
import { wholeNumberSetting } from './whole-number-setting.ts';

export const DEFAULT_TURBOFAN_INVOCATIONS = 1000;
export const TURBOFAN_INVOCATIONS_ENV = 'KONNECTIVITY_TURBOFAN_INVOCATIONS';

/** The budget V8 now uses, or why it was left alone. */
export type TurbofanInvocations = number | 'V8 default' | 'command line' | 'unsupported by this V8';

export interface TieringTuning {
  readonly turbofanInvocations: TurbofanInvocations;
  /** `NAME=value` when the setting was not a whole number of 0 or more and the default was used. */
  readonly ignored: readonly string[];
}

/** Whether Node was started with its own `--invocation-count-for-turbofan`. */
export function turbofanFlagGiven(execArgv: readonly string[], nodeOptions: string): boolean {
  return nodeFlagValues('invocation-count-for-turbofan', execArgv, nodeOptions).length > 0;
}

/** What `applyTieringTuning` would set, without setting it. */
export function readTieringTuning(env: NodeJS.ProcessEnv, execArgv: readonly string[], v8Version: string): TieringTuning {
  const ignored: string[] = [];
  const invocations = wholeNumberSetting(env, TURBOFAN_INVOCATIONS_ENV, DEFAULT_TURBOFAN_INVOCATIONS, ignored);
  if (turbofanFlagGiven(execArgv, env.NODE_OPTIONS ?? '')) return { turbofanInvocations: 'command line', ignored };
  if (Number.parseInt(v8Version, 10) < 12) return { turbofanInvocations: 'unsupported by this V8', ignored };
  return { turbofanInvocations: invocations === 0 ? 'V8 default' : invocations, ignored };
}

export function applyTieringTuning(env: NodeJS.ProcessEnv = process.env): TieringTuning {
  const tuning = readTieringTuning(env, process.execArgv, process.versions.v8);
  if (typeof tuning.turbofanInvocations === 'number') v8.setFlagsFromString(`--invocation-count-for-turbofan=${tuning.turbofanInvocations}`);
  return tuning;
}
