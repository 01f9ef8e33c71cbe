/**
 * Diagnostic stand-in for bin/konnectivity-server, used only with
 * `npm run bench -- --frontend-buffer-limit=BYTES`: the same flag parsing
 * and configuration as the real CLI (src/cli/server-main.ts), plus one
 * setting the CLI has no flag for, `maxFrontendBufferBytes` (how much the
 * server buffers for a frontend that reads slower than the agent sends
 * before it closes that connection).
 *
 * Environment: KONNECTIVITY_BENCH_CODE = directory of the sources (src/) or
 * of the compiled output (dist/); KONNECTIVITY_BENCH_FRONTEND_BUFFER_LIMIT.
 */
const base = process.env.KONNECTIVITY_BENCH_CODE;
const limit = Number(process.env.KONNECTIVITY_BENCH_FRONTEND_BUFFER_LIMIT);
if (!base || !(limit > 0)) {
  process.stderr.write('server-entry: KONNECTIVITY_BENCH_CODE and KONNECTIVITY_BENCH_FRONTEND_BUFFER_LIMIT are required\n');
  process.exit(2);
}
const ext = /[/\\]dist[/\\]?$/.test(base) ? '.js' : '.ts';
const load = (m: string): Promise<Record<string, any>> => import(new URL(`${m}${ext}`, `file://${base.replace(/\/?$/, '/')}`).href);

const { parseServerOptions } = await load('server/server-options');
const { serverConfigFromOptions } = await load('cli/server-main');
const { KonnectivityServer } = await load('server/konnectivity-server');
const { createLogger } = await load('observability/logger');

const options = parseServerOptions(process.argv.slice(2), process.env);
const logger = createLogger({ verbosity: options.v, component: 'konnectivity-server' });
logger.warn('bench diagnostic server: maxFrontendBufferBytes overridden', { maxFrontendBufferBytes: limit });
const server = new KonnectivityServer({ ...serverConfigFromOptions(options, logger), maxFrontendBufferBytes: limit });
await server.start();
let signals = 0;
const onSignal = (): void => {
  if (++signals > 1) process.exit(1);
  server.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);
