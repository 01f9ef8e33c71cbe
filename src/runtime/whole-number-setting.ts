/**
 * A daemon setting read from the environment as a whole number of 0 or
 * more. Anything else keeps the fallback and is named in `ignored`, which
 * the daemon logs as a warning once its logger exists.
 */
export function wholeNumberSetting(env: NodeJS.ProcessEnv, name: string, fallback: number, ignored: string[]): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (Number.isInteger(value) && value >= 0) return value;
  ignored.push(`${name}=${raw}`);
  return fallback;
}
