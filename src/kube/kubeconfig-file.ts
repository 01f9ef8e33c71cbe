/**
 * A kubeconfig file read the way client-go's clientcmd reads it for
 * `BuildConfigFromFlags("", path)`: the current context's cluster and user,
 * relative file paths resolved against the file's directory, and the same
 * conflicts rejected (both a file and inline data for one credential, a
 * token together with a username, a CA together with
 * insecure-skip-tls-verify).
 *
 * What client-go supports and this does not is refused with a message that
 * says so (auth-provider plugins, proxy-url), rather than connecting in some
 * other way than the operator configured.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { load as parseYaml } from 'js-yaml';
import { isMap, type JsonMap } from './json-map.ts';

/** Bytes from a file (read when needed, so rotation is seen) or inline in the kubeconfig. */
export type PemSource = { readonly file: string } | { readonly data: Buffer };

export interface ExecEnvVar {
  readonly name: string;
  readonly value: string;
}

/** users[].user.exec: a credential plugin (client.authentication.k8s.io). */
export interface ExecPluginConfig {
  readonly apiVersion: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: readonly ExecEnvVar[];
  readonly provideClusterInfo: boolean;
  readonly installHint: string;
  /** Directory relative commands are resolved against (the kubeconfig's). */
  readonly baseDir: string;
}

export type KubeCredentials =
  | { readonly kind: 'none' }
  | { readonly kind: 'token'; readonly token: string; readonly tokenFile?: string }
  | { readonly kind: 'tokenFile'; readonly tokenFile: string }
  | { readonly kind: 'basic'; readonly username: string; readonly password: string }
  | { readonly kind: 'exec'; readonly exec: ExecPluginConfig };

export interface Impersonation {
  readonly user: string;
  readonly uid: string;
  readonly groups: readonly string[];
  readonly extra: Readonly<Record<string, readonly string[]>>;
}

/** Where to connect and how to authenticate: one resolved context. */
export interface KubeConnectionConfig {
  /** The API server's URL (https://host:port[/prefix]). */
  readonly server: string;
  /** Where this came from, for messages: the kubeconfig path or 'in-cluster'. */
  readonly source: string;
  readonly ca?: PemSource;
  readonly insecureSkipTlsVerify: boolean;
  /** Name to verify the server's certificate against (and to send as SNI) instead of the URL's host. */
  readonly tlsServerName?: string;
  readonly clientCertificate?: PemSource;
  readonly clientKey?: PemSource;
  readonly credentials: KubeCredentials;
  readonly impersonate?: Impersonation;
}

export const EXEC_API_VERSIONS: readonly string[] = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'];



class KubeconfigError extends Error {}

function str(obj: JsonMap, key: string, where: string): string | undefined {
  const value = obj[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new KubeconfigError(`${where}.${key} must be a string`);
}

function bool(obj: JsonMap, key: string, where: string): boolean {
  const value = obj[key];
  if (value === undefined || value === null) return false;
  if (typeof value === 'boolean') return value;
  throw new KubeconfigError(`${where}.${key} must be true or false`);
}

function strList(obj: JsonMap, key: string, where: string): string[] {
  const value = obj[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) throw new KubeconfigError(`${where}.${key} must be a list of strings`);
  return value as string[];
}

/** The `name`d entry of a kubeconfig list (clusters, users, contexts), or undefined. */
function namedEntry(root: JsonMap, list: 'clusters' | 'users' | 'contexts', field: 'cluster' | 'user' | 'context', name: string): JsonMap | undefined {
  const entries = root[list];
  if (entries === undefined || entries === null) return undefined;
  if (!Array.isArray(entries)) throw new KubeconfigError(`${list} must be a list`);
  for (const entry of entries) {
    if (isMap(entry) && entry['name'] === name) {
      const body = entry[field] ?? {};
      if (!isMap(body)) throw new KubeconfigError(`${list}[${name}].${field} must be a map`);
      return body;
    }
  }
  return undefined;
}

function resolvePath(baseDir: string, file: string): string {
  return path.isAbsolute(file) ? file : path.join(baseDir, file);
}

/** `X` (a file) or `X-data` (base64), never both, as clientcmd validates. */
function pemSource(obj: JsonMap, key: string, where: string, baseDir: string): PemSource | undefined {
  const file = str(obj, key, where);
  const data = str(obj, `${key}-data`, where);
  if (file && data) throw new KubeconfigError(`${where}: ${key}-data and ${key} are both specified; only one is allowed`);
  if (data) return { data: Buffer.from(data, 'base64') };
  if (file) return { file: resolvePath(baseDir, file) };
  return undefined;
}

function execConfig(raw: unknown, where: string, baseDir: string): ExecPluginConfig {
  if (!isMap(raw)) throw new KubeconfigError(`${where}.exec must be a map`);
  const w = `${where}.exec`;
  const apiVersion = str(raw, 'apiVersion', w) ?? '';
  if (!EXEC_API_VERSIONS.includes(apiVersion)) {
    throw new KubeconfigError(`${w}.apiVersion ${JSON.stringify(apiVersion)} is not supported (supported: ${EXEC_API_VERSIONS.join(', ')})`);
  }
  const command = str(raw, 'command', w) ?? '';
  if (command === '') throw new KubeconfigError(`${w}.command must be set`);
  // A daemon has no terminal: a plugin that requires one can never succeed (client-go refuses it the same way).
  if (str(raw, 'interactiveMode', w) === 'Always') throw new KubeconfigError(`${w}: interactiveMode Always needs a terminal, which konnectivity never has`);
  const envRaw = raw['env'] ?? [];
  if (!Array.isArray(envRaw)) throw new KubeconfigError(`${w}.env must be a list`);
  const env = envRaw.map((e, i): ExecEnvVar => {
    if (!isMap(e)) throw new KubeconfigError(`${w}.env[${i}] must be a map`);
    return { name: str(e, 'name', `${w}.env[${i}]`) ?? '', value: str(e, 'value', `${w}.env[${i}]`) ?? '' };
  });
  return {
    apiVersion,
    command,
    args: strList(raw, 'args', w),
    env,
    provideClusterInfo: bool(raw, 'provideClusterInfo', w),
    installHint: str(raw, 'installHint', w) ?? '',
    baseDir,
  };
}

function credentials(user: JsonMap, where: string, baseDir: string): KubeCredentials {
  const token = str(user, 'token', where) ?? '';
  const tokenFileRaw = str(user, 'tokenFile', where) ?? '';
  const username = str(user, 'username', where) ?? '';
  const password = str(user, 'password', where) ?? '';
  if (user['auth-provider'] !== undefined && user['auth-provider'] !== null) {
    const name = isMap(user['auth-provider']) ? String(user['auth-provider']['name'] ?? '') : '';
    throw new KubeconfigError(`${where}: auth-provider ${JSON.stringify(name)} is not supported; use an exec credential plugin (client.authentication.k8s.io/v1) instead`);
  }
  const hasExec = user['exec'] !== undefined && user['exec'] !== null;
  const kinds = [token !== '' || tokenFileRaw !== '' ? 'token' : '', username !== '' || password !== '' ? 'username/password' : '', hasExec ? 'exec' : ''].filter((k) => k !== '');
  if (kinds.includes('token') && kinds.includes('username/password')) throw new KubeconfigError(`${where}: username/password or bearer token may be set, but not both`);
  if (hasExec && kinds.length > 1) throw new KubeconfigError(`${where}: exec and ${kinds.filter((k) => k !== 'exec').join(', ')} may not both be set`);
  if (hasExec) return { kind: 'exec', exec: execConfig(user['exec'], where, baseDir) };
  const tokenFile = tokenFileRaw === '' ? undefined : resolvePath(baseDir, tokenFileRaw);
  if (token !== '') return { kind: 'token', token, ...(tokenFile ? { tokenFile } : {}) };
  if (tokenFile) return { kind: 'tokenFile', tokenFile };
  if (username !== '' || password !== '') return { kind: 'basic', username, password };
  return { kind: 'none' };
}

function impersonation(user: JsonMap, where: string): Impersonation | undefined {
  const as = str(user, 'as', where) ?? '';
  const uid = str(user, 'as-uid', where) ?? '';
  const groups = strList(user, 'as-groups', where);
  const extraRaw = user['as-user-extra'] ?? {};
  if (!isMap(extraRaw)) throw new KubeconfigError(`${where}.as-user-extra must be a map`);
  const extra: Record<string, string[]> = {};
  for (const key of Object.keys(extraRaw)) extra[key] = strList(extraRaw, key, `${where}.as-user-extra`);
  if (as === '' && uid === '' && groups.length === 0 && Object.keys(extra).length === 0) return undefined;
  return { user: as, uid, groups, extra };
}

/** Parses kubeconfig text; `file` is its path (for relative paths and messages). */
export function parseKubeconfig(text: string, file: string): KubeConnectionConfig {
  const baseDir = path.dirname(path.resolve(file));
  try {
    let root: unknown;
    try {
      root = parseYaml(text);
    } catch (err) {
      throw new KubeconfigError(`not YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
    if (root === undefined || root === null) root = {};
    if (!isMap(root)) throw new KubeconfigError('the document must be a map');
    const contextName = str(root, 'current-context', 'kubeconfig') ?? '';
    if (contextName === '') throw new KubeconfigError('no current context is set');
    const context = namedEntry(root, 'contexts', 'context', contextName);
    if (!context) throw new KubeconfigError(`no current context: context ${JSON.stringify(contextName)} is not defined`);
    const clusterName = str(context, 'cluster', `context ${contextName}`) ?? '';
    const cluster = namedEntry(root, 'clusters', 'cluster', clusterName);
    if (!cluster) throw new KubeconfigError(`no current context or its cluster is missing: cluster ${JSON.stringify(clusterName)} of context ${JSON.stringify(contextName)} is not defined`);
    const cw = `cluster ${clusterName}`;
    const server = str(cluster, 'server', cw) ?? '';
    if (server === '') throw new KubeconfigError(`cluster ${clusterName} has no server`);
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new KubeconfigError(`${cw}: server ${JSON.stringify(server)} is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new KubeconfigError(`${cw}: server ${server} must be an https:// (or http://) URL`);
    if (str(cluster, 'proxy-url', cw)) throw new KubeconfigError(`${cw}: proxy-url is not supported; reach the API server directly`);
    const ca = pemSource(cluster, 'certificate-authority', cw, baseDir);
    const insecureSkipTlsVerify = bool(cluster, 'insecure-skip-tls-verify', cw);
    if (insecureSkipTlsVerify && ca) throw new KubeconfigError(`${cw}: specifying a root certificates file with the insecure flag is not allowed`);
    const tlsServerName = str(cluster, 'tls-server-name', cw);

    const userName = str(context, 'user', `context ${contextName}`) ?? '';
    // clientcmd treats a user the context names but the file lacks as empty (anonymous).
    const user = userName === '' ? {} : (namedEntry(root, 'users', 'user', userName) ?? {});
    const uw = `user ${userName}`;
    const clientCertificate = pemSource(user, 'client-certificate', uw, baseDir);
    const clientKey = pemSource(user, 'client-key', uw, baseDir);
    if ((clientCertificate === undefined) !== (clientKey === undefined)) throw new KubeconfigError(`${uw}: client-certificate and client-key must be set together`);
    const impersonate = impersonation(user, uw);
    return {
      server: server.replace(/\/+$/, ''),
      source: file,
      ...(ca ? { ca } : {}),
      insecureSkipTlsVerify,
      ...(tlsServerName ? { tlsServerName } : {}),
      ...(clientCertificate ? { clientCertificate } : {}),
      ...(clientKey ? { clientKey } : {}),
      credentials: credentials(user, uw, baseDir),
      ...(impersonate ? { impersonate } : {}),
    };
  } catch (err) {
    if (err instanceof KubeconfigError) throw new Error(`invalid kubeconfig ${file}: ${err.message}`);
    throw err;
  }
}

/** Reads and parses a kubeconfig file. */
export function readKubeconfig(file: string): KubeConnectionConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`invalid kubeconfig ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return parseKubeconfig(text, file);
}
