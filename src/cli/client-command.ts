/**
 * `konnectivity client`: fetches one URL through a proxy server, the job of
 * upstream's proxy-test-client. Accepts upstream's flag names (`--ca-cert`,
 * `--client-cert`, `--client-key`) and the clearer `--proxy-*` ones, plus
 * `--url` as a shortcut for the `--request-*` flags. The body goes to stdout;
 * a failed dial or an HTTP status >= 400 exits 1 with the reason on stderr.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createTunnel } from '../client/create-tunnel.ts';
import { KonnectivityDialError } from '../client/dial-error.ts';
import { TunnelHttpAgent, TunnelHttpsAgent, dialAddress } from '../client/tunnel-agent.ts';
import type { ProxyTransport, Tunnel, TunnelMode } from '../client/tunnel-options.ts';
import { FlagSet } from '../flags/flag-set.ts';
import { OptionsError } from '../flags/options-error.ts';
import { createLogger } from '../observability/logger.ts';
import type { CliIO } from './konnectivity-main.ts';

const DESCRIPTION = 'Fetch a URL through a konnectivity proxy server (gRPC or HTTP-CONNECT frontend) and print the body.';
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

interface ClientCommandOptions {
  mode: TunnelMode;
  transport: ProxyTransport;
  url: URL;
  requestCa: Buffer | undefined;
  requests: number;
  dialTimeoutMs: number;
  userAgent: string;
  verbosity: number;
}

function defineFlags() {
  const fs = new FlagSet('konnectivity client');
  const group = 'Request';
  return {
    fs,
    mode: fs.string('mode', 'grpc', "Proxy server frontend mode: 'grpc' or 'http-connect'."),
    proxyUds: fs.string('proxy-uds', '', 'Unix socket of the proxy server; when set, --proxy-host/--proxy-port and TLS flags are not used.'),
    proxyHost: fs.string('proxy-host', 'localhost', 'Host of the proxy server (TCP with mTLS).'),
    proxyPort: fs.int('proxy-port', 8090, 'Port of the proxy server.'),
    proxyCa: fs.string('proxy-ca-cert', '', 'CA certificate file to verify the proxy server with (system roots when empty).'),
    proxyCert: fs.string('proxy-client-cert', '', 'Client certificate file for mTLS to the proxy server.'),
    proxyKey: fs.string('proxy-client-key', '', 'Client key file for mTLS to the proxy server.'),
    proxyServerName: fs.string('proxy-server-name', '', "Name to verify the proxy server's certificate against, instead of --proxy-host."),
    caCert: fs.string('ca-cert', '', 'Same as --proxy-ca-cert (upstream test-client name).'),
    clientCert: fs.string('client-cert', '', 'Same as --proxy-client-cert (upstream test-client name).'),
    clientKey: fs.string('client-key', '', 'Same as --proxy-client-key (upstream test-client name).'),
    url: fs.string('url', '', 'URL to fetch, e.g. http://10.0.0.5:8000/healthz; replaces the --request-* flags.', { group }),
    requestProto: fs.string('request-proto', 'http', "Protocol of the request: 'http' or 'https'.", { group }),
    requestHost: fs.string('request-host', 'localhost', 'Host of the request server.', { group }),
    requestPort: fs.int('request-port', 8000, 'Port of the request server.', { group }),
    requestPath: fs.string('request-path', 'success', 'Path of the request.', { group }),
    requestCa: fs.string('request-ca-cert', '', 'CA certificate file to verify an https request server with.', { group }),
    testRequests: fs.int('test-requests', 1, 'Number of times to send the request (one after another).', { group }),
    dialTimeout: fs.duration('dial-timeout', '30s', 'How long one dial through the proxy may take.'),
    userAgent: fs.string('user-agent', 'konnectivity-ts-client', 'User agent sent to the proxy server (gRPC) and the request server.'),
    verbosity: fs.int('v', 0, 'Log verbosity on stderr.', { shorthand: 'v' }),
  };
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new OptionsError('validation', `cannot read ${what} ${JSON.stringify(path)}: ${err instanceof Error ? err.message : String(err)}`, { usage: false });
  }
}

function invalid(message: string): OptionsError {
  return new OptionsError('validation', message);
}

function parseOptions(argv: readonly string[]): ClientCommandOptions | 'help' {
  const f = defineFlags();
  const parsed = f.fs.parse(argv);
  if (parsed.helpRequested) return 'help';
  if (parsed.args.length > 0) throw new OptionsError('parse', `unexpected argument ${JSON.stringify(parsed.args[0])}`);

  const mode = f.mode.value;
  if (mode !== 'grpc' && mode !== 'http-connect') throw invalid(`mode must be set to either 'grpc' or 'http-connect' not ${JSON.stringify(mode)}`);
  const ca = f.proxyCa.value || f.caCert.value;
  const cert = f.proxyCert.value || f.clientCert.value;
  const key = f.proxyKey.value || f.clientKey.value;

  let transport: ProxyTransport;
  if (f.proxyUds.value) {
    if (ca || cert || key) throw invalid('please do not set cert materials when using UDS');
    transport = { unix: f.proxyUds.value };
  } else {
    if (!cert || !key) throw invalid('--proxy-client-cert and --proxy-client-key are required for a TCP proxy server (it requires mTLS); use --proxy-uds for a unix socket');
    const port = f.proxyPort.value;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`--proxy-port must be 1-65535, got ${port}`);
    transport = {
      host: f.proxyHost.value,
      port,
      tls: {
        ...(ca ? { ca: readFile(ca, 'CA certificate') } : {}),
        cert: readFile(cert, 'client certificate'),
        key: readFile(key, 'client key'),
        ...(f.proxyServerName.value ? { servername: f.proxyServerName.value } : {}),
      },
    };
  }

  let url: URL;
  if (f.url.value) {
    try {
      url = new URL(f.url.value);
    } catch {
      throw invalid(`--url ${JSON.stringify(f.url.value)} is not a valid URL`);
    }
  } else {
    const proto = f.requestProto.value;
    const path = f.requestPath.value.startsWith('/') ? f.requestPath.value : `/${f.requestPath.value}`;
    try {
      url = new URL(`${proto}://${dialAddress(f.requestHost.value, f.requestPort.value, 80)}${path}`);
    } catch {
      throw invalid(`cannot build a URL from --request-proto/--request-host/--request-port/--request-path`);
    }
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalid(`request protocol must be set to either 'http' or 'https' not ${JSON.stringify(url.protocol.replace(/:$/, ''))}`);
  }
  if (f.testRequests.value < 1) throw invalid(`please do not ask for fewer than 1 test request(${f.testRequests.value})`);
  const dialTimeoutMs = f.dialTimeout.milliseconds;
  if (!(dialTimeoutMs > 0)) throw invalid('--dial-timeout must be positive');

  return {
    mode,
    transport,
    url,
    requestCa: f.requestCa.value ? readFile(f.requestCa.value, 'request CA certificate') : undefined,
    requests: f.testRequests.value,
    dialTimeoutMs,
    userAgent: f.userAgent.value,
    verbosity: f.verbosity.value,
  };
}

interface FetchResult {
  status: number;
  statusMessage: string;
  body: Buffer;
}

function fetchThrough(url: URL, agent: http.Agent, options: ClientCommandOptions): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
    const requestOptions: https.RequestOptions = { agent, headers: { 'user-agent': options.userAgent } };
    if (options.requestCa) requestOptions.ca = options.requestCa;
    const request = (url.protocol === 'https:' ? https : http).request(url, requestOptions, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('error', reject);
      response.once('end', () => {
        if (!response.complete) {
          reject(new Error('connection closed before the response was complete'));
          return;
        }
        resolve({ status: response.statusCode ?? 0, statusMessage: response.statusMessage ?? '', body: Buffer.concat(chunks) });
      });
    });
    request.once('error', reject);
    request.end();
  });
}

function describeFailure(err: unknown, url: URL): string {
  if (err instanceof KonnectivityDialError) {
    return `dial ${err.address ?? url.host} through the proxy failed (${err.code}): ${err.message}`;
  }
  return `GET ${url.href} failed: ${err instanceof Error ? err.message : String(err)}`;
}

export async function runClientCommand(argv: readonly string[], io: CliIO): Promise<number> {
  let options: ClientCommandOptions | 'help';
  try {
    options = parseOptions(argv);
  } catch (err) {
    if (!(err instanceof OptionsError)) throw err;
    io.stderr.write(`Error: ${err.message}\n`);
    if (err.usage) io.stderr.write(`Run "konnectivity client --help" for usage.\n`);
    return EXIT_USAGE;
  }
  if (options === 'help') {
    io.stdout.write(defineFlags().fs.usage(DESCRIPTION));
    return 0;
  }

  const logger = createLogger({ verbosity: options.verbosity, write: (line) => io.stderr.write(line + '\n'), component: 'client' });
  const tunnel: Tunnel = createTunnel({ mode: options.mode, transport: options.transport, logger, dialTimeoutMs: options.dialTimeoutMs, userAgent: options.userAgent });
  const agent = options.url.protocol === 'https:' ? new TunnelHttpsAgent({ tunnel }) : new TunnelHttpAgent({ tunnel });
  try {
    for (let i = 1; i <= options.requests; i++) {
      let result: FetchResult;
      try {
        result = await fetchThrough(options.url, agent, options);
      } catch (err) {
        io.stderr.write(`Error: ${describeFailure(err, options.url)}\n`);
        return EXIT_FAILURE;
      }
      io.stdout.write(result.body);
      if (result.status >= 400) {
        io.stderr.write(`Error: GET ${options.url.href}: HTTP ${result.status} ${result.statusMessage}\n`);
        return EXIT_FAILURE;
      }
      logger.v(1, 'request succeeded', { url: options.url.href, status: result.status, bytes: result.body.length, request: i });
    }
    return 0;
  } finally {
    agent.destroy();
    await tunnel.close();
  }
}
