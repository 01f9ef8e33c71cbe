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
import { KubeConfig } from '@kubernetes/client-node';

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
export function loadKubeConfig(source: KubeConfigSource): KubeConfig {
  const kc = new KubeConfig();
  if (source.kubeconfigPath !== '') {
    try {
      kc.loadFromFile(source.kubeconfigPath);
    } catch (err) {
      throw new Error(`invalid kubeconfig ${source.kubeconfigPath}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error(`invalid kubeconfig ${source.kubeconfigPath}: no current context or its cluster is missing`);
    if (!cluster.server) throw new Error(`invalid kubeconfig ${source.kubeconfigPath}: cluster ${cluster.name} has no server`);
    return kc;
  }
  const env = source.env ?? process.env;
  const host = env['KUBERNETES_SERVICE_HOST'] ?? '';
  const port = env['KUBERNETES_SERVICE_PORT'] ?? '';
  if (host === '' || port === '') throw new Error(NOT_IN_CLUSTER_MESSAGE);
  const dir = path.join(source.inClusterRoot ?? '/', SERVICE_ACCOUNT_DIR);
  const tokenFile = path.join(dir, 'token');
  const caFile = path.join(dir, 'ca.crt');
  // client-go reads the token once up front (and fails without it), then re-reads it as it rotates.
  try {
    readFileSync(tokenFile);
  } catch (err) {
    throw new Error(`unable to load in-cluster configuration: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const hostPort = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  kc.loadFromClusterAndUser(
    {
      name: 'inCluster',
      server: `https://${hostPort}`,
      skipTLSVerify: false,
      // client-go logs and continues without the CA when it cannot be read; the
      // system roots then apply, which is what an unset caFile means here too.
      ...(existsSync(caFile) ? { caFile } : {}),
    },
    // The 'tokenFile' auth provider re-reads the file every minute, like client-go's BearerTokenFile.
    { name: 'inClusterUser', authProvider: { name: 'tokenFile', config: { tokenFile } } },
  );
  return kc;
}

/** The API server URL of the current context, for logs. */
export function kubeServerUrl(kc: KubeConfig): string {
  return kc.getCurrentCluster()?.server ?? '';
}
