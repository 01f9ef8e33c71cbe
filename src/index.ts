/**
 * konnectivity-ts: the client library (what kube-apiserver embeds) plus the
 * pieces an embedding program needs to observe it.
 */
export * from './client/index.ts';
export { createClientMetrics, type ClientMetrics, type ClientDialFailureReason } from './observability/client-metrics.ts';
export { createLogger, silentLogger, type Logger, type LoggerOptions, type LogFields } from './observability/logger.ts';
