/**
 * Where the Kubernetes client connects and how it authenticates, read the
 * way client-go's `clientcmd.BuildConfigFromFlags("", --kubeconfig)` does:
 * the kubeconfig file when a path is given, otherwise the in-cluster
 * configuration (KUBERNETES_SERVICE_HOST/PORT and the pod's service-account
 * token and CA under /var/run/secrets/kubernetes.io/serviceaccount).
 */
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { readKubeconfig, type KubeConnectionConfig } from './kubeconfig-file.ts';

export type { KubeConnectionConfig } from './kubeconfig-file.ts';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConfigSource {
  /** `--kubeconfig`; empty means in-cluster configuration. */
  kubeconfigPath: string;
  /** Environment for KUBERNETES_SERVICE_HOST/PORT (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Prefix for the service-account directory (tests: a temp dir standing in for `/`). */
  inClusterRoot?: string;
}

/** client-go's rest.ErrNotInCluster text. */
export const NOT_IN_CLUSTER_MESSAGE = 'unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined';

/** Loads the configuration; throws with a message naming what is missing. */
export function loadKubeConfig(source: KubeConfigSource): KubeConnectionConfig {
  if (source.kubeconfigPath !== '') return readKubeconfig(source.kubeconfigPath);
  const env = source.env ?? process.env;
  const host = env['KUBERNETES_SERVICE_HOST'] ?? '';
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '';
  if (host === '' || port === '') throw new Error(NOT_IN_CLUSTER_MESSAGE);
  const dir = path.join(source.inClusterRoot ?? '/', SERVICE_ACCOUNT_DIR);
  const tokenFile = path.join(dir, 'token');
  const caFile = path.join(dir, 'ca.crt');
  // client-go reads the token once up front (and fails without it), then re-reads it as it rotates.
  let token: string;
  try {
    token = readFileSync(tokenFile, 'utf8').trim();
  } catch (err) {
    throw new Error(`unable to load in-cluster configuration: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const hostPort = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  return {
    server: `https://${hostPort}`,
    source: 'in-cluster',
    // client-go logs and continues without the CA when it cannot be read; the
    // system roots then apply, which is what an absent CA means here too.
    ...(existsSync(caFile) ? { ca: { file: caFile } } : {}),
    insecureSkipTlsVerify: false,
    credentials: { kind: 'token', token, tokenFile },
  };
}
