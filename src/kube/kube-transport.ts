/**
 * HTTPS to the Kubernetes API server on node:https: keep-alive connections,
 * per-request credentials and abort signals, JSON bodies, and a bound on
 * how much of an answer is held in memory. Failures here are Node's socket
 * and TLS errors, KubeCredentialError and KubeAnswerError; kube-client.ts
 * turns them into KubeApiError.
 */
import http from 'node:http';
import https from 'node:https';
import type { KubeConnectionConfig } from './kubeconfig-file.ts';
import type { KubeCredentials, KubeTlsMaterial } from './kube-credentials.ts';
import { KubeAnswerError } from './kube-errors.ts';

/** An answer bigger than this is refused rather than buffered (a Lease list is kilobytes). */
export const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

export type QueryValue = string | number | boolean | undefined;

export interface KubeHttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** API path, e.g. /apis/coordination.k8s.io/v1/namespaces/x/leases. */
  path: string;
  query?: Readonly<Record<string, QueryValue>>;
  /** Sent as JSON. */
  body?: unknown;
  signal: AbortSignal;
}

export interface KubeHttpResponse {
  status: number;
  body: Buffer;
}

const USER_AGENT = 'konnectivity-ts';
/** Idle kept-alive connections are closed by us before the API server's idle timeout closes them under a request. */
const IDLE_CONNECTION_TIMEOUT_MS = 30_000;

class StaleConnectionError extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
    this.name = 'StaleConnectionError';
  }
}

/** `promise`, or a rejection with the signal's reason once it aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Reads a whole response, refusing more than `limit` bytes. */
export function readBody(res: http.IncomingMessage, limit = MAX_RESPONSE_BYTES): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Rejected first: destroying the response reports a cut-off answer, which is not the reason.
        reject(new KubeAnswerError(`the answer is larger than ${limit} bytes`));
        chunks.length = 0;
        res.destroy();
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
    res.on('aborted', () => reject(new KubeAnswerError('the connection closed before the answer was complete')));
  });
}

export class KubeTransport {
  readonly server: string;
  private readonly config: KubeConnectionConfig;
  private readonly credentials: KubeCredentials;
  private readonly secure: boolean;
  private agent: http.Agent | undefined;
  private agentMaterial: KubeTlsMaterial | undefined;
  private closed = false;

  constructor(config: KubeConnectionConfig, credentials: KubeCredentials) {
    this.config = config;
    this.server = config.server;
    this.credentials = credentials;
    this.secure = new URL(config.server).protocol === 'https:';
  }

  /** Connections for this TLS material; new material (a rotated certificate) closes the old connections, as client-go does. */
  private agentFor(material: KubeTlsMaterial): http.Agent {
    if (this.agent && this.agentMaterial === material) return this.agent;
    this.agent?.destroy();
    this.agentMaterial = material;
    this.agent = this.secure
      ? new https.Agent({
          keepAlive: true,
          timeout: IDLE_CONNECTION_TIMEOUT_MS,
          ...(material.ca ? { ca: material.ca } : {}),
          ...(material.cert ? { cert: material.cert } : {}),
          ...(material.key ? { key: material.key } : {}),
          rejectUnauthorized: material.rejectUnauthorized,
          ...(material.servername ? { servername: material.servername } : {}),
        })
      : new http.Agent({ keepAlive: true, timeout: IDLE_CONNECTION_TIMEOUT_MS });
    return this.agent;
  }

  private url(path: string, query: Readonly<Record<string, QueryValue>> | undefined): URL {
    const url = new URL(this.server + path);
    for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    return url;
  }

  private headers(authorization: string | undefined, body: string | undefined): http.OutgoingHttpHeaders {
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json', 'user-agent': USER_AGENT };
    if (authorization) headers['authorization'] = authorization;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const imp = this.config.impersonate;
    if (imp) {
      if (imp.user) headers['impersonate-user'] = imp.user;
      if (imp.uid) headers['impersonate-uid'] = imp.uid;
      if (imp.groups.length > 0) headers['impersonate-group'] = [...imp.groups];
      for (const [key, values] of Object.entries(imp.extra)) headers[`impersonate-extra-${encodeURIComponent(key)}`] = [...values];
    }
    return headers;
  }

  /** Sends a request and resolves with the response once its headers arrived (the body still to be read). */
  async open(request: KubeHttpRequest): Promise<http.IncomingMessage> {
    if (this.closed) throw new Error('the Kubernetes client is closed');
    request.signal.throwIfAborted();
    // An exec plugin may take a while; the request's deadline still applies to the caller.
    const auth = await untilAborted(this.credentials.forRequest(), request.signal);
    const body = request.body === undefined ? undefined : JSON.stringify(request.body);
    const url = this.url(request.path, request.query);
    const options: https.RequestOptions = { method: request.method, headers: this.headers(auth.authorization, body), agent: this.agentFor(auth.tls), signal: request.signal };
    let res: http.IncomingMessage;
    try {
      res = await this.exchange(url, options, body);
    } catch (err) {
      // A kept-alive connection the API server closed just as it was reused: Node's documented case for one retry.
      if (!(err instanceof StaleConnectionError)) throw err;
      res = await this.exchange(url, options, body);
    }
    if (res.statusCode === 401) auth.rejected();
    return res;
  }

  private exchange(url: URL, options: https.RequestOptions, body: string | undefined): Promise<http.IncomingMessage> {
    const transport = this.secure ? https : http;
    return new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = transport.request(url, options, resolve);
      req.on('error', (err: NodeJS.ErrnoException) => {
        reject(req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE') ? new StaleConnectionError(err) : err);
      });
      req.end(body);
    });
  }

  /** A whole request: status and body. */
  async send(request: KubeHttpRequest): Promise<KubeHttpResponse> {
    const res = await this.open(request);
    const body = await readBody(res);
    return { status: res.statusCode ?? 0, body };
  }

  /** Closes every connection; later requests fail. */
  close(): void {
    this.closed = true;
    this.agent?.destroy();
    this.agent = undefined;
  }
}
