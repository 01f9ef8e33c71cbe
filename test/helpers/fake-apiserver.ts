/**
 * A small Kubernetes API server for tests: HTTPS on loopback (port 0) with a
 * certificate from the dev PKI, the real paths and JSON of the two APIs
 * konnectivity uses, bearer-token client authentication, a record of every
 * request, and injectable failures and latency.
 *
 *   POST   /apis/authentication.k8s.io/v1/tokenreviews
 *   POST   /apis/coordination.k8s.io/v1/namespaces/{ns}/leases
 *   GET    /apis/coordination.k8s.io/v1/namespaces/{ns}/leases[?labelSelector=…][&watch=true…]
 *   GET    /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}
 *   PUT    /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}
 *   DELETE /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}   (DeleteOptions preconditions honoured)
 *
 * Clients authenticate with a bearer token from `clientTokens`, or with a
 * client certificate signed by the dev CA whose common name is in
 * `clientCertUsers` (as the apiserver's x509 authenticator maps CN to user).
 *
 * TokenReviews are decided as the apiserver's service-account authenticator
 * does: the token must be known, and one of its audiences must be among the
 * audiences the review asks for (the apiserver's own when none are given).
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import type tls from 'node:tls';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createDevPki, type DevPki } from '../../src/dev/pki.ts';
import { LabelSelector } from '../../src/flags/label-selector.ts';

export const FAKE_APISERVER_AUDIENCE = 'https://kubernetes.default.svc.cluster.local';
export const DEFAULT_CLIENT_TOKEN = 'fake-apiserver-client-token';

export interface RecordedRequest {
  method: string;
  /** Path without the query. */
  path: string;
  query: Record<string, string>;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body, when there was one. */
  body: unknown;
  /** The common name of the client certificate the connection presented and the CA verified. */
  clientCertCN?: string;
  /** Whether the request was answered normally (not failed by injection). */
  injected?: 'failure' | 'destroy' | 'raw';
}

export interface RequestFilter {
  method?: string;
  /** Exact path, or a pattern over the path (without query). */
  path?: string | RegExp;
  /** Only watch requests (true) or only non-watch requests (false). */
  watch?: boolean;
}

export interface InjectedFailure {
  code: number;
  reason?: string;
  message?: string;
}

/** A response written as given, not as an apiserver would (garbage, oversized, a broken watch stream). */
export interface RawAnswer {
  code: number;
  /** Written in this order, each as its own chunk; the response then ends unless `keepOpen`. */
  chunks: ReadonlyArray<string | Buffer>;
  keepOpen?: boolean;
}

export interface TokenIdentity {
  username: string;
  audiences: readonly string[];
  uid?: string;
  groups?: readonly string[];
}

type Json = Record<string, unknown>;

interface StoredLease {
  key: string;
  namespace: string;
  object: Json;
}

interface WatchEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  namespace: string;
  object: Json;
  /** The object before the change (for label-selector transitions). */
  previous?: Json;
}

interface ActiveWatch {
  namespace: string;
  selector: LabelSelector;
  res: http.ServerResponse;
  bookmarks: boolean;
}

const LEASES = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/;
const TOKEN_REVIEWS = '/apis/authentication.k8s.io/v1/tokenreviews';
/** metav1.RFC3339Micro as the apiserver parses it. */
const MICRO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(?:Z|[+-]\d\d:\d\d)$/;

function matches(filter: RequestFilter, method: string, pathname: string, isWatch: boolean): boolean {
  if (filter.method && filter.method.toUpperCase() !== method) return false;
  if (filter.watch !== undefined && filter.watch !== isWatch) return false;
  if (filter.path instanceof RegExp) return filter.path.test(pathname);
  if (typeof filter.path === 'string') return filter.path === pathname;
  return true;
}

function status(code: number, reason: string, message: string, details?: Json): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, ...(details ? { details } : {}), code };
}

function leaseLabels(obj: Json): Record<string, string> {
  const meta = (obj['metadata'] ?? {}) as Json;
  return (meta['labels'] ?? {}) as Record<string, string>;
}

function leaseMeta(obj: Json): Json {
  return (obj['metadata'] ?? {}) as Json;
}

function leaseSpec(obj: Json): Json {
  return (obj['spec'] ?? {}) as Json;
}

export interface FakeApiServerOptions {
  pki: DevPki;
  /** Directory for the kubeconfig file. */
  dir: string;
  /** The bearer token clients must present (default DEFAULT_CLIENT_TOKEN). */
  clientToken?: string;
}

export interface LeaseSeed {
  name: string;
  labels?: Record<string, string>;
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** null or absent: not set. */
  renewTime?: Date | null;
  acquireTime?: Date | null;
}

/** A MicroTime string as the apiserver writes it. */
export function formatMicroTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class FakeApiServer {
  readonly requests: RecordedRequest[] = [];
  readonly tokens = new Map<string, TokenIdentity>();
  /** Bearer tokens the server accepts from its clients. */
  readonly clientTokens = new Set<string>();
  /** Client-certificate common names the server accepts (certificates signed by the dev CA). */
  readonly clientCertUsers = new Set<string>();
  /** The apiserver's own audiences, used when a TokenReview names none. */
  apiAudiences: readonly string[] = [FAKE_APISERVER_AUDIENCE];
  port = 0;
  readonly kubeconfigPath: string;

  private readonly server: https.Server;
  private readonly pki: DevPki;
  private readonly sockets = new Set<net.Socket>();
  private readonly leaseStore = new Map<string, StoredLease>();
  private readonly history: WatchEvent[] = [];
  private readonly watches = new Set<ActiveWatch>();
  private readonly failures: Array<{ filter: RequestFilter; failure: InjectedFailure | 'destroy' | RawAnswer; remaining: number }> = [];
  private readonly delays: Array<{ filter: RequestFilter; ms: number }> = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Raw answers left open (ended at close()). */
  private readonly rawOpen = new Set<http.ServerResponse>();
  private resourceVersion = 1000;
  /** Events with rv ≤ this are gone (a watch from before it gets 410 Expired). */
  private compactedRv = 1000;
  private waiters: Array<() => void> = [];

  private constructor(options: FakeApiServerOptions) {
    this.pki = options.pki;
    this.clientTokens.add(options.clientToken ?? DEFAULT_CLIENT_TOKEN);
    this.kubeconfigPath = path.join(options.dir, 'fake-apiserver.kubeconfig');
    // Client certificates are asked for, not required: token clients present none.
    this.server = https.createServer(
      { cert: options.pki.server.cert, key: options.pki.server.key, ca: options.pki.ca.cert, requestCert: true, rejectUnauthorized: false },
      (req, res) => this.handle(req, res),
    );
    this.server.on('connection', (socket: net.Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  static async start(options: FakeApiServerOptions): Promise<FakeApiServer> {
    const fake = new FakeApiServer(options);
    fake.server.listen(0, '127.0.0.1');
    await once(fake.server, 'listening');
    fake.port = (fake.server.address() as net.AddressInfo).port;
    fake.writeKubeconfig(fake.kubeconfigPath);
    return fake;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /**
   * Writes a kubeconfig for this server (or another URL, e.g. a closed port)
   * trusting the dev CA and presenting a client token; `cluster` and `user`
   * replace those sections' fields (one `key: value` line each).
   */
  writeKubeconfig(file: string, options: { server?: string; token?: string; cluster?: readonly string[]; user?: readonly string[] } = {}): string {
    const token = options.token ?? [...this.clientTokens][0] ?? DEFAULT_CLIENT_TOKEN;
    const cluster = options.cluster ?? [`server: ${options.server ?? this.url}`, `certificate-authority: ${this.pki.ca.certPath}`];
    const user = options.user ?? [`token: ${token}`];
    writeFileSync(
      file,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        '- name: fake',
        '  cluster:',
        ...cluster.map((l) => `    ${l}`),
        'users:',
        '- name: konnectivity',
        '  user:',
        ...(user.length > 0 ? user.map((l) => `    ${l}`) : ['    {}']),
        'contexts:',
        '- name: fake',
        '  context: {cluster: fake, user: konnectivity}',
        'current-context: fake',
        '',
      ].join('\n'),
    );
    return file;
  }

  /** Registers a service-account-like token. */
  /** Tokens the apiserver now reports as expired (as a projected token past its exp). */
  readonly expiredTokens = new Set<string>();

  addToken(token: string, username: string, audiences: readonly string[] = ['system:konnectivity-server']): void {
    this.tokens.set(token, { username, audiences });
  }

  /** Fails the next `count` matching requests with an API Status (or by destroying the connection). */
  failNext(filter: RequestFilter, failure: InjectedFailure | 'destroy', count = 1): void {
    this.failures.push({ filter, failure, remaining: count });
  }

  /** Answers the next `count` matching requests with `answer`, byte for byte. */
  answerNext(filter: RequestFilter, answer: RawAnswer, count = 1): void {
    this.failures.push({ filter, failure: answer, remaining: count });
  }

  /** Delays every matching request by `ms` until clearFaults(). */
  delay(filter: RequestFilter, ms: number): void {
    this.delays.push({ filter, ms });
  }

  clearFaults(): void {
    this.failures.length = 0;
    this.delays.length = 0;
  }

  requestsTo(filter: RequestFilter): RecordedRequest[] {
    return this.requests.filter((r) => matches(filter, r.method, r.path, r.query['watch'] === 'true' || r.query['watch'] === '1'));
  }

  tokenReviews(): Array<{ token: string; audiences: string[] }> {
    return this.requestsTo({ method: 'POST', path: TOKEN_REVIEWS }).map((r) => {
      const spec = ((r.body as Json | undefined)?.['spec'] ?? {}) as Json;
      return { token: String(spec['token'] ?? ''), audiences: (spec['audiences'] as string[] | undefined) ?? [] };
    });
  }

  /** Resolves when a request matching `filter` has been recorded (including already-recorded ones beyond `after`). */
  async waitForRequest(filter: RequestFilter, after = 0, timeoutMs = 10_000): Promise<RecordedRequest> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.requestsTo(filter).slice(after)[0];
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${filter.method ?? ''} ${String(filter.path ?? '')} request within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  // ----- direct access to the lease store (as another client would write it) -----

  /** Creates or replaces a lease, bumping its resourceVersion and notifying watchers. */
  putLease(namespace: string, seed: LeaseSeed): Json {
    const key = `${namespace}/${seed.name}`;
    const existing = this.leaseStore.get(key);
    const spec: Json = {};
    if (seed.holderIdentity !== undefined) spec['holderIdentity'] = seed.holderIdentity;
    if (seed.leaseDurationSeconds !== undefined) spec['leaseDurationSeconds'] = seed.leaseDurationSeconds;
    if (seed.renewTime) spec['renewTime'] = formatMicroTime(seed.renewTime);
    if (seed.acquireTime) spec['acquireTime'] = formatMicroTime(seed.acquireTime);
    const object: Json = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: seed.name, namespace, labels: { ...(seed.labels ?? {}) } },
      spec,
    };
    return existing ? this.storeUpdate(existing, object) : this.storeCreate(namespace, object);
  }

  lease(namespace: string, name: string): Json | undefined {
    return this.leaseStore.get(`${namespace}/${name}`)?.object;
  }

  leaseNames(namespace: string): string[] {
    return [...this.leaseStore.values()].filter((l) => l.namespace === namespace).map((l) => String(leaseMeta(l.object)['name']));
  }

  removeLease(namespace: string, name: string): boolean {
    const stored = this.leaseStore.get(`${namespace}/${name}`);
    if (!stored) return false;
    this.storeDelete(stored);
    return true;
  }

  /** Forgets watch history: watches resuming from an older resourceVersion get 410 Expired. */
  compact(): void {
    this.compactedRv = this.resourceVersion;
    this.history.length = 0;
  }

  /** Ends every open watch (as an apiserver restart would). */
  closeWatches(): void {
    for (const w of this.watches) w.res.end();
    this.watches.clear();
  }

  get openWatches(): number {
    return this.watches.size;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.closeWatches();
    for (const r of this.rawOpen) r.end();
    this.rawOpen.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ----- request handling -----

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://fake');
      const query = Object.fromEntries(url.searchParams.entries());
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: unknown;
      if (raw !== '') {
        try {
          body = JSON.parse(raw);
        } catch {
          body = raw;
        }
      }
      const method = req.method ?? 'GET';
      const isWatch = query['watch'] === 'true' || query['watch'] === '1';
      const tlsSocket = req.socket as tls.TLSSocket;
      const clientCertCN = tlsSocket.authorized ? tlsSocket.getPeerCertificate().subject?.CN : undefined;
      const record: RecordedRequest = { method, path: url.pathname, query, headers: req.headers, body, ...(typeof clientCertCN === 'string' ? { clientCertCN } : {}) };
      this.requests.push(record);
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();

      const failure = this.failures.find((f) => f.remaining > 0 && matches(f.filter, method, url.pathname, isWatch));
      if (failure) {
        failure.remaining--;
        if (failure.failure === 'destroy') {
          record.injected = 'destroy';
          req.socket.destroy();
          return;
        }
        if ('chunks' in failure.failure) {
          record.injected = 'raw';
          const raw = failure.failure;
          res.writeHead(raw.code, { 'content-type': 'application/json' });
          for (const chunk of raw.chunks) res.write(chunk);
          if (raw.keepOpen) this.rawOpen.add(res);
          else res.end();
          return;
        }
        record.injected = 'failure';
        const f = failure.failure;
        this.send(res, f.code, status(f.code, f.reason ?? 'InternalError', f.message ?? `injected failure (HTTP ${f.code})`));
        return;
      }
      const delayMs = this.delays.filter((d) => matches(d.filter, method, url.pathname, isWatch)).reduce((sum, d) => sum + d.ms, 0);
      const respond = (): void => {
        if (res.destroyed) return;
        try {
          this.route(req, res, method, url.pathname, query, body, isWatch);
        } catch (err) {
          this.send(res, 500, status(500, 'InternalError', err instanceof Error ? err.message : String(err)));
        }
      };
      if (delayMs > 0) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          respond();
        }, delayMs);
        this.timers.add(t);
      } else {
        respond();
      }
    });
  }

  private send(res: http.ServerResponse, code: number, body: Json): void {
    if (res.headersSent || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse, method: string, pathname: string, query: Record<string, string>, body: unknown, isWatch: boolean): void {
    const auth = req.headers.authorization ?? '';
    const tlsSocket = req.socket as tls.TLSSocket;
    const cn = tlsSocket.authorized ? tlsSocket.getPeerCertificate().subject?.CN : undefined;
    const byToken = auth.startsWith('Bearer ') && this.clientTokens.has(auth.slice('Bearer '.length));
    const byCert = auth === '' && typeof cn === 'string' && this.clientCertUsers.has(cn);
    if (!byToken && !byCert) {
      this.send(res, 401, status(401, 'Unauthorized', 'Unauthorized'));
      return;
    }
    if (pathname === TOKEN_REVIEWS) {
      if (method !== 'POST') return this.send(res, 405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`));
      return this.tokenReview(res, body);
    }
    const m = LEASES.exec(pathname);
    if (!m) return this.send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'));
    const namespace = decodeURIComponent(m[1] ?? '');
    const name = m[2] !== undefined ? decodeURIComponent(m[2]) : undefined;
    if (name === undefined) {
      if (method === 'POST') return this.createLease(res, namespace, body);
      if (method === 'GET') return isWatch ? this.watchLeases(res, namespace, query) : this.listLeases(res, namespace, query);
      return this.send(res, 405, status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
    }
    if (method === 'GET') return this.getLease(res, namespace, name);
    if (method === 'PUT') return this.updateLease(res, namespace, name, body);
    if (method === 'DELETE') return this.deleteLease(res, namespace, name, body);
    return this.send(res, 405, status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'));
  }

  private tokenReview(res: http.ServerResponse, body: unknown): void {
    const review = (body ?? {}) as Json;
    if (review['kind'] !== 'TokenReview' || review['apiVersion'] !== 'authentication.k8s.io/v1') {
      return this.send(res, 400, status(400, 'BadRequest', 'expected an authentication.k8s.io/v1 TokenReview'));
    }
    const spec = (review['spec'] ?? {}) as Json;
    const token = typeof spec['token'] === 'string' ? spec['token'] : '';
    const requested = Array.isArray(spec['audiences']) && spec['audiences'].length > 0 ? (spec['audiences'] as string[]) : [...this.apiAudiences];
    const identity = this.tokens.get(token);
    let st: Json;
    if (this.expiredTokens.has(token)) {
      st = { user: {}, error: '[invalid bearer token, square/go-jose/jwt: validation failed, token is expired (exp)]' };
    } else if (!identity) {
      st = { user: {}, error: '[invalid bearer token, square/go-jose: error in cryptographic primitive]' };
    } else {
      const common = identity.audiences.filter((a) => requested.includes(a));
      st =
        common.length === 0
          ? { user: {}, error: `[invalid bearer token, token audiences ${JSON.stringify(identity.audiences)} is invalid for the target audiences ${JSON.stringify(requested)}]` }
          : {
              authenticated: true,
              user: { username: identity.username, uid: identity.uid ?? randomUUID(), groups: [...(identity.groups ?? ['system:serviceaccounts', 'system:authenticated'])] },
              audiences: common,
            };
    }
    this.send(res, 201, { kind: 'TokenReview', apiVersion: 'authentication.k8s.io/v1', metadata: { creationTimestamp: null }, spec, status: st });
  }

  private invalidTimes(obj: Json, name: string): string | undefined {
    const spec = leaseSpec(obj);
    for (const field of ['renewTime', 'acquireTime'] as const) {
      const v = spec[field];
      if (v !== undefined && v !== null && (typeof v !== 'string' || !MICRO_TIME.test(v))) {
        return `Lease in version "v1" cannot be handled as a Lease: parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00" failed (lease ${name}, spec.${field})`;
      }
    }
    return undefined;
  }

  private createLease(res: http.ServerResponse, namespace: string, body: unknown): void {
    const obj = (body ?? {}) as Json;
    if (obj['kind'] !== 'Lease' || obj['apiVersion'] !== 'coordination.k8s.io/v1') return this.send(res, 400, status(400, 'BadRequest', 'expected a coordination.k8s.io/v1 Lease'));
    const name = String(leaseMeta(obj)['name'] ?? '');
    if (name === '') return this.send(res, 422, status(422, 'Invalid', 'Lease.coordination.k8s.io "" is invalid: metadata.name: Required value: name or generateName is required'));
    const bad = this.invalidTimes(obj, name);
    if (bad) return this.send(res, 400, status(400, 'BadRequest', bad));
    const metaNs = leaseMeta(obj)['namespace'];
    if (metaNs !== undefined && metaNs !== namespace) return this.send(res, 400, status(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request'));
    if (this.leaseStore.has(`${namespace}/${name}`)) {
      return this.send(res, 409, status(409, 'AlreadyExists', `leases.coordination.k8s.io "${name}" already exists`, { name, group: 'coordination.k8s.io', kind: 'leases' }));
    }
    this.send(res, 201, this.storeCreate(namespace, obj));
  }

  private getLease(res: http.ServerResponse, namespace: string, name: string): void {
    const stored = this.leaseStore.get(`${namespace}/${name}`);
    if (!stored) return this.send(res, 404, this.notFound(name));
    this.send(res, 200, stored.object);
  }

  private notFound(name: string): Json {
    return status(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`, { name, group: 'coordination.k8s.io', kind: 'leases' });
  }

  private conflict(name: string, why: string): Json {
    return status(409, 'Conflict', `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": ${why}`, { name, group: 'coordination.k8s.io', kind: 'leases' });
  }

  private updateLease(res: http.ServerResponse, namespace: string, name: string, body: unknown): void {
    const obj = (body ?? {}) as Json;
    if (obj['kind'] !== 'Lease') return this.send(res, 400, status(400, 'BadRequest', 'expected a coordination.k8s.io/v1 Lease'));
    if (leaseMeta(obj)['name'] !== name) return this.send(res, 400, status(400, 'BadRequest', 'the name of the object does not match the name on the URL'));
    const bad = this.invalidTimes(obj, name);
    if (bad) return this.send(res, 400, status(400, 'BadRequest', bad));
    const stored = this.leaseStore.get(`${namespace}/${name}`);
    if (!stored) return this.send(res, 404, this.notFound(name));
    const rv = leaseMeta(obj)['resourceVersion'];
    if (rv === undefined || rv === '') {
      return this.send(res, 422, status(422, 'Invalid', `Lease.coordination.k8s.io "${name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update`));
    }
    if (rv !== leaseMeta(stored.object)['resourceVersion']) {
      return this.send(res, 409, this.conflict(name, 'the object has been modified; please apply your changes to the latest version and try again'));
    }
    this.send(res, 200, this.storeUpdate(stored, obj));
  }

  private deleteLease(res: http.ServerResponse, namespace: string, name: string, body: unknown): void {
    const stored = this.leaseStore.get(`${namespace}/${name}`);
    if (!stored) return this.send(res, 404, this.notFound(name));
    const preconditions = ((body as Json | undefined)?.['preconditions'] ?? {}) as Json;
    const meta = leaseMeta(stored.object);
    if (typeof preconditions['resourceVersion'] === 'string' && preconditions['resourceVersion'] !== meta['resourceVersion']) {
      return this.send(
        res,
        409,
        this.conflict(name, `Precondition failed: ResourceVersion in precondition: ${preconditions['resourceVersion']}, ResourceVersion in object meta: ${String(meta['resourceVersion'])}`),
      );
    }
    if (typeof preconditions['uid'] === 'string' && preconditions['uid'] !== meta['uid']) {
      return this.send(res, 409, this.conflict(name, `Precondition failed: UID in precondition: ${preconditions['uid']}, UID in object meta: ${String(meta['uid'])}`));
    }
    this.storeDelete(stored);
    this.send(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, group: 'coordination.k8s.io', kind: 'leases', uid: meta['uid'] } });
  }

  private parseSelector(res: http.ServerResponse, query: Record<string, string>): LabelSelector | undefined {
    try {
      return LabelSelector.parse(query['labelSelector'] ?? '');
    } catch (err) {
      this.send(res, 400, status(400, 'BadRequest', `unable to parse requirement: ${err instanceof Error ? err.message : String(err)}`));
      return undefined;
    }
  }

  private listLeases(res: http.ServerResponse, namespace: string, query: Record<string, string>): void {
    const selector = this.parseSelector(res, query);
    if (!selector) return;
    const items = [...this.leaseStore.values()].filter((l) => l.namespace === namespace && selector.matches(leaseLabels(l.object))).map((l) => l.object);
    this.send(res, 200, { kind: 'LeaseList', apiVersion: 'coordination.k8s.io/v1', metadata: { resourceVersion: String(this.resourceVersion) }, items });
  }

  private watchLeases(res: http.ServerResponse, namespace: string, query: Record<string, string>): void {
    const selector = this.parseSelector(res, query);
    if (!selector) return;
    const fromRv = query['resourceVersion'] ?? '';
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const watch: ActiveWatch = { namespace, selector, res, bookmarks: query['allowWatchBookmarks'] === 'true' };
    if (fromRv === '' || fromRv === '0') {
      for (const l of this.leaseStore.values()) {
        if (l.namespace === namespace && selector.matches(leaseLabels(l.object))) this.writeEvent(watch, 'ADDED', l.object);
      }
    } else {
      const rv = Number(fromRv);
      if (!Number.isInteger(rv) || rv < this.compactedRv) {
        res.end(JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${fromRv} (${this.compactedRv})`) }) + '\n');
        return;
      }
      for (const e of this.history) if (e.rv > rv) this.deliver(watch, e);
    }
    this.watches.add(watch);
    const timeoutSeconds = Number(query['timeoutSeconds'] ?? '0');
    let timer: NodeJS.Timeout | undefined;
    if (timeoutSeconds > 0) {
      timer = setTimeout(() => {
        this.timers.delete(timer!);
        this.watches.delete(watch);
        res.end();
      }, timeoutSeconds * 1000);
      this.timers.add(timer);
    }
    res.on('close', () => {
      this.watches.delete(watch);
      if (timer) {
        clearTimeout(timer);
        this.timers.delete(timer);
      }
    });
  }

  private writeEvent(watch: ActiveWatch, type: string, object: Json): void {
    if (!watch.res.destroyed) watch.res.write(JSON.stringify({ type, object }) + '\n');
  }

  /** Sends one change to a watch, turning selector transitions into ADDED/DELETED as the apiserver does. */
  private deliver(watch: ActiveWatch, e: WatchEvent): void {
    if (e.namespace !== watch.namespace) return;
    const now = watch.selector.matches(leaseLabels(e.object));
    const before = e.previous ? watch.selector.matches(leaseLabels(e.previous)) : false;
    if (e.type === 'ADDED') {
      if (now) this.writeEvent(watch, 'ADDED', e.object);
    } else if (e.type === 'DELETED') {
      if (now) this.writeEvent(watch, 'DELETED', e.object);
    } else if (now && before) this.writeEvent(watch, 'MODIFIED', e.object);
    else if (now) this.writeEvent(watch, 'ADDED', e.object);
    else if (before) this.writeEvent(watch, 'DELETED', e.object);
  }

  private record(e: WatchEvent): void {
    this.history.push(e);
    for (const w of this.watches) this.deliver(w, e);
  }

  private storeCreate(namespace: string, obj: Json): Json {
    const rv = ++this.resourceVersion;
    const meta = leaseMeta(obj);
    const object: Json = {
      ...obj,
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...meta, namespace, uid: randomUUID(), resourceVersion: String(rv), creationTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z') },
    };
    const key = `${namespace}/${String(meta['name'])}`;
    this.leaseStore.set(key, { key, namespace, object });
    this.record({ rv, type: 'ADDED', namespace, object });
    return object;
  }

  private storeUpdate(stored: StoredLease, obj: Json): Json {
    const rv = ++this.resourceVersion;
    const previous = stored.object;
    const prevMeta = leaseMeta(previous);
    const meta = leaseMeta(obj);
    const object: Json = {
      ...obj,
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { ...meta, name: prevMeta['name'], namespace: stored.namespace, uid: prevMeta['uid'], creationTimestamp: prevMeta['creationTimestamp'], resourceVersion: String(rv) },
    };
    stored.object = object;
    this.record({ rv, type: 'MODIFIED', namespace: stored.namespace, object, previous });
    return object;
  }

  private storeDelete(stored: StoredLease): void {
    const rv = ++this.resourceVersion;
    this.leaseStore.delete(stored.key);
    const object: Json = { ...stored.object, metadata: { ...leaseMeta(stored.object), resourceVersion: String(rv) } };
    this.record({ rv, type: 'DELETED', namespace: stored.namespace, object });
  }
}

/** A fake apiserver and the throwaway PKI it serves with, in a new temp dir; `close()` stops it and removes the dir. */
export async function startFakeApiServerInTempDir(prefix: string): Promise<{ dir: string; pki: DevPki; api: FakeApiServer; close(): Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  const pki = await createDevPki(path.join(dir, 'pki'));
  const api = await FakeApiServer.start({ pki, dir });
  return {
    dir,
    pki,
    api,
    async close() {
      await api.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
