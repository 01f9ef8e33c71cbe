import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { OptionsError } from '../src/flags/options-error.ts';
import { placeholderFiles } from './helpers/placeholder-files.ts';
import { parseServerOptions, serverUsage, type ServerOptions } from '../src/server/server-options.ts';
import { acceptedGoCipherSuites, nodeMinTlsVersion, opensslCipherList } from '../src/server/tls-names.ts';

const { dir, file } = placeholderFiles('kts-server-options-');
const cert = file('tls.crt');
const key = file('tls.key');
const ca = file('ca.crt');
const kubeconfig = file('kubeconfig');
const missing = path.join(dir, 'missing');

/** Minimal valid command line: UDS frontend, everything else default. */
const uds = ['--uds-name=/tmp/kts.sock', '--server-port=0'];
const env = {};

function parse(argv: string[], environment: Record<string, string | undefined> = env): ServerOptions {
  return parseServerOptions(argv, environment);
}

function failure(argv: string[], environment: Record<string, string | undefined> = env): OptionsError {
  try {
    parse(argv, environment);
  } catch (err) {
    assert.ok(err instanceof OptionsError, String(err));
    return err;
  }
  assert.fail(`expected ${argv.join(' ')} to fail`);
}

test('server defaults match upstream NewProxyRunOptions', () => {
  const o = parse(uds);
  const expected: Partial<ServerOptions> = {
    serverCert: '',
    serverKey: '',
    serverCaCert: '',
    clusterCert: '',
    clusterKey: '',
    clusterCaCert: '',
    mode: 'grpc',
    deleteExistingUdsFile: true,
    serverBindAddress: '',
    agentPort: 8091,
    agentBindAddress: '',
    adminPort: 8095,
    adminBindAddress: '127.0.0.1',
    healthPort: 8092,
    healthBindAddress: '',
    keepaliveTimeMs: 3_600_000,
    frontendKeepaliveTimeMs: 3_600_000,
    enableProfiling: false,
    enableContentionProfiling: false,
    serverCount: 1,
    agentNamespace: '',
    agentServiceAccount: '',
    authenticationAudience: '',
    kubeconfig: '',
    kubeconfigQps: 0,
    kubeconfigBurst: 0,
    kubeApiContentType: 'application/vnd.kubernetes.protobuf',
    proxyStrategies: ['default'],
    cipherSuites: [],
    tlsMinVersion: '',
    xfrChannelSize: 10,
    frontendWriteChannelSize: 10,
    enableLeaseController: false,
    leaseNamespace: 'kube-system',
    leaseLabel: 'k8s-app=konnectivity-server',
    leaseLabels: { 'k8s-app': 'konnectivity-server' },
    gracefulShutdownTimeoutMs: 0,
    backendDialTimeoutMs: 0,
    warnOnChannelLimit: true,
    tokenAuthEnabled: false,
    needsKubernetesClient: false,
    v: 4,
    vmodule: [],
    logtostderr: true,
    alsologtostderr: false,
    logDir: '',
    logFile: '',
    logFileMaxSizeMb: 1800,
    stderrthreshold: 2,
    addDirHeader: false,
    skipHeaders: false,
    skipLogHeaders: false,
    oneOutput: false,
    logBacktraceAt: '',
    warnings: [],
  };
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(o[k as keyof ServerOptions], v, k);
  assert.match(o.serverId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  // TCP defaults: port 8090 (needs the CA that TCP mode requires).
  const tcp = parse([`--server-ca-cert=${ca}`]);
  assert.equal(tcp.serverPort, 8090);
  assert.equal(tcp.udsName, '');
});

test('server id: flag, then PROXY_SERVER_ID, then a fresh UUID', () => {
  assert.equal(parse(uds, { PROXY_SERVER_ID: 'from-env' }).serverId, 'from-env');
  assert.equal(parse([...uds, '--server-id=from-flag'], { PROXY_SERVER_ID: 'from-env' }).serverId, 'from-flag');
  assert.notEqual(parse(uds, { PROXY_SERVER_ID: '' }).serverId, '');
  assert.notEqual(parse(uds).serverId, parse(uds).serverId);
});

test('server flags: every value is carried into the options', () => {
  const o = parse([
    `--cluster-cert=${cert}`, `--cluster-key=${key}`, `--cluster-ca-cert=${ca}`,
    `--server-cert=${cert}`, `--server-key=${key}`, `--server-ca-cert=${ca}`,
    '--mode=http-connect', '--delete-existing-uds-file=false', '--server-port=8443', '--server-bind-address=10.0.0.1',
    '--agent-port=8132', '--agent-bind-address=10.0.0.2', '--admin-port=8133', '--admin-bind-address=0.0.0.0',
    '--health-port=8134', '--health-bind-address=10.0.0.3', '--keepalive-time=30s', '--frontend-keepalive-time=1m30s',
    '--enable-profiling', '--enable-contention-profiling', '--server-count=3',
    `--kubeconfig=${kubeconfig}`, '--kubeconfig-qps=50.5', '--kubeconfig-burst=100', '--kube-api-content-type=application/json',
    '--proxy-strategies=destHost,defaultRoute,default', '--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
    '--cipher-suites', 'TLS_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', '--tls-min-version=VersionTLS13',
    '--xfr-channel-size=20', '--frontend-write-channel-size=30', '--enable-lease-controller', '--lease-namespace=konn',
    '--lease-label=app=a, tier = b', '--graceful-shutdown-timeout=15s', '--backend-dial-timeout=500ms', '-v=2',
  ]);
  assert.equal(o.mode, 'http-connect');
  assert.equal(o.deleteExistingUdsFile, false);
  assert.equal(o.serverPort, 8443);
  assert.equal(o.serverBindAddress, '10.0.0.1');
  assert.equal(o.agentPort, 8132);
  assert.equal(o.agentBindAddress, '10.0.0.2');
  assert.equal(o.adminPort, 8133);
  assert.equal(o.adminBindAddress, '0.0.0.0');
  assert.equal(o.healthPort, 8134);
  assert.equal(o.healthBindAddress, '10.0.0.3');
  assert.equal(o.keepaliveTimeMs, 30_000);
  assert.equal(o.frontendKeepaliveTimeMs, 90_000);
  assert.equal(o.enableProfiling, true);
  assert.equal(o.enableContentionProfiling, true);
  assert.equal(o.serverCount, 3);
  assert.equal(o.kubeconfig, kubeconfig);
  assert.equal(o.kubeconfigQps, 50.5);
  assert.equal(o.kubeconfigBurst, 100);
  assert.equal(o.kubeApiContentType, 'application/json');
  assert.deepEqual(o.proxyStrategies, ['destHost', 'defaultRoute', 'default']);
  assert.deepEqual(o.cipherSuites, [
    'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
    'TLS_AES_128_GCM_SHA256',
    'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  ]);
  assert.equal(o.tlsMinVersion, 'VersionTLS13');
  assert.equal(o.xfrChannelSize, 20);
  assert.equal(o.frontendWriteChannelSize, 30);
  assert.equal(o.enableLeaseController, true);
  assert.equal(o.leaseNamespace, 'konn');
  assert.deepEqual(o.leaseLabels, { app: 'a', tier: 'b' });
  assert.equal(o.gracefulShutdownTimeoutMs, 15_000);
  assert.equal(o.backendDialTimeoutMs, 500);
  assert.equal(o.needsKubernetesClient, true);
  assert.equal(o.tokenAuthEnabled, false);
  assert.equal(o.v, 2);
});

test('server validation errors carry upstream wording', () => {
  const cases: [string[], string][] = [
    [[...uds, `--server-key=${missing}`], `error checking server key ${missing}, got stat ${missing}: no such file or directory`],
    [[`--server-ca-cert=${ca}`, `--server-key=${key}`], `cannot have server cert empty when server key is set to "${key}"`],
    [[`--server-ca-cert=${ca}`, `--server-cert=${missing}`], `error checking server cert ${missing}, got stat ${missing}: no such file or directory`],
    [[`--server-ca-cert=${ca}`, `--server-cert=${cert}`], `cannot have server key empty when server cert is set to "${cert}"`],
    [[`--server-ca-cert=${missing}`], `error checking server CA cert ${missing}, got stat ${missing}: no such file or directory`],
    [[...uds, `--cluster-key=${missing}`], `error checking cluster key ${missing}, got stat ${missing}: no such file or directory`],
    [[...uds, `--cluster-key=${key}`], `cannot have cluster cert empty when cluster key is set to "${key}"`],
    [[...uds, `--cluster-cert=${missing}`], `error checking cluster cert ${missing}, got stat ${missing}: no such file or directory`],
    [[...uds, `--cluster-cert=${cert}`], `cannot have cluster key empty when cluster cert is set to "${cert}"`],
    [[...uds, `--cluster-ca-cert=${missing}`], `error checking cluster CA cert ${missing}, got stat ${missing}: no such file or directory`],
    [[...uds, '--mode=socks'], `mode must be set to either 'grpc' or 'http-connect' not "socks"`],
    [['--uds-name=/tmp/x.sock'], 'server port should be set to 0 not 8090 for UDS'],
    [[...uds, `--server-cert=${cert}`, `--server-key=${key}`], 'server key should not be set for UDS'],
    [[...uds, `--server-ca-cert=${ca}`], 'server ca cert should not be set for UDS'],
    [[], 'server ca cert must be set when in TCP mode (uds-name is empty)'],
    [[`--server-ca-cert=${ca}`, '--server-port=49152'], 'please do not try to use ephemeral port 49152 for the server port'],
    [[...uds, '--agent-port=49152'], 'please do not try to use ephemeral port 49152 for the agent port'],
    [[...uds, '--admin-port=65535'], 'please do not try to use ephemeral port 65535 for the admin port'],
    [[...uds, '--health-port=50000'], 'please do not try to use ephemeral port 50000 for the health port'],
    [[`--server-ca-cert=${ca}`, '--server-port=1023'], 'please do not try to use reserved port 1023 for the server port'],
    [[`--server-ca-cert=${ca}`, '--server-port=0'], 'please do not try to use reserved port 0 for the server port'],
    [[...uds, '--agent-port=80'], 'please do not try to use reserved port 80 for the agent port'],
    [[...uds, '--admin-port=0'], 'please do not try to use reserved port 0 for the admin port'],
    [[...uds, '--health-port=-1'], 'please do not try to use reserved port -1 for the health port'],
    [[...uds, '--enable-contention-profiling'], 'if --enable-contention-profiling is set, --enable-profiling must also be set'],
    [[...uds, '--agent-namespace=kube-system', '--agent-service-account=a', '--authentication-audience=b', `--cluster-ca-cert=${ca}`],
      '--cluster-ca-cert can not be used when agent authentication is enabled'],
    [[...uds, '--agent-service-account=a', '--authentication-audience=b'], '--agent-namespace cannot be empty when agent authentication is enabled'],
    [[...uds, '--agent-namespace=kube-system', '--authentication-audience=b'], '--agent-service-account cannot be empty when agent authentication is enabled'],
    [[...uds, '--agent-namespace=kube-system', '--agent-service-account=a'], '--authentication-audience cannot be empty when agent authentication is enabled'],
    [[...uds, `--kubeconfig=${missing}`], `checking KubeconfigPath "${missing}", got stat ${missing}: no such file or directory`],
    [[...uds, '--proxy-strategies='], 'ProxyStrategies cannot be empty'],
    [[...uds, '--proxy-strategies=,'], 'invalid proxy strategies: proxy strategies cannot be empty'],
    [[...uds, '--proxy-strategies=invalid'], 'invalid proxy strategies: unknown proxy strategy: invalid'],
    [[...uds, '--proxy-strategies=destHost, default'], 'invalid proxy strategies: unknown proxy strategy:  default'],
    [[...uds, '--proxy-strategies=desthost'], 'invalid proxy strategies: unknown proxy strategy: desthost'],
    [[...uds, '--xfr-channel-size=0'], 'channel size 0 must be greater than 0'],
    [[...uds, '--xfr-channel-size=-10'], 'channel size -10 must be greater than 0'],
    [[...uds, '--frontend-write-channel-size=0'], 'frontend write channel size 0 must be greater than 0'],
    [[...uds, '--tls-min-version=VersionTLS14'],
      'unknown tls version "VersionTLS14", accepted values are: VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13'],
    [[...uds, '--cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA'], "cipher suite TLS_RSA_WITH_AES_128_CBC_SHA not supported, doesn't exist or considered as insecure"],
    [[...uds, '--cipher-suites=ECDHE-RSA-AES128-GCM-SHA256'], "cipher suite ECDHE-RSA-AES128-GCM-SHA256 not supported, doesn't exist or considered as insecure"],
    [[...uds, '--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256'], "cipher suite TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256 not supported, doesn't exist or considered as insecure"],
    [[...uds, '--enable-lease-controller', '--lease-label='], 'empty string provided'],
    [[...uds, '--enable-lease-controller', '--lease-label=app'], 'invalid label format: app'],
    [[...uds, '--enable-lease-controller', '--lease-label=a=b,c=d=e'], 'invalid label format: c=d=e'],
    [[...uds, '--graceful-shutdown-timeout=-1s'], 'graceful-shutdown-timeout must be >= 0, got -1s'],
    [[...uds, '--backend-dial-timeout=-1m30s'], 'backend-dial-timeout must be >= 0, got -1m30s'],
  ];
  for (const [argv, reason] of cases) {
    const err = failure(argv);
    assert.equal(err.kind, 'validation', argv.join(' '));
    assert.equal(err.reason, reason, argv.join(' '));
    assert.equal(err.message, `failed to validate server options with ${reason}`);
    assert.equal(err.usage, true);
  }
});

test('server validation accepts the boundary values upstream accepts', () => {
  assert.equal(parse([`--server-ca-cert=${ca}`, '--server-port=1024']).serverPort, 1024);
  assert.equal(parse([`--server-ca-cert=${ca}`, '--server-port=49151']).serverPort, 49151);
  assert.equal(parse([...uds, '--agent-port=1024', '--admin-port=49151', '--health-port=1024']).adminPort, 49151);
  // An invalid lease label only matters with the lease controller on.
  assert.deepEqual(parse([...uds, '--lease-label=garbage']).leaseLabels, {});
  // The kubeconfig file must exist, but token auth is independent of it.
  assert.equal(parse([...uds, `--kubeconfig=${kubeconfig}`]).needsKubernetesClient, false);
  assert.equal(parse([...uds, '--graceful-shutdown-timeout=0s', '--backend-dial-timeout=0']).gracefulShutdownTimeoutMs, 0);
  assert.deepEqual(parse([...uds, '--proxy-strategies=destHost,,default,']).proxyStrategies, ['destHost', 'default']);
  assert.deepEqual(parse([...uds, '--proxy-strategies=default,default']).proxyStrategies, ['default', 'default']);
  for (const name of acceptedGoCipherSuites) assert.deepEqual(parse([...uds, `--cipher-suites=${name}`]).cipherSuites, [name]);
  for (const version of ['VersionTLS12', 'VersionTLS13', '']) assert.deepEqual(parse([...uds, `--tls-min-version=${version}`]).warnings, []);
});

test('server warnings: deprecated --warn-on-channel-limit, TLS below 1.2', () => {
  const o = parse([...uds, '--warn-on-channel-limit=false', '--tls-min-version=VersionTLS10']);
  assert.equal(o.warnOnChannelLimit, false);
  assert.equal(o.warnings.length, 2);
  assert.match(o.warnings[0] ?? '', /^Flag --warn-on-channel-limit has been deprecated, /);
  assert.equal(o.warnings[1], '--tls-min-version=VersionTLS10 is below TLS 1.2 and is considered insecure (RFC 8996)');
  assert.equal(parse([...uds, '--tls-min-version=VersionTLS11']).warnings.length, 1);
});

test('server parse errors: unknown flags, bad values, positional arguments', () => {
  const cases: [string[], string][] = [
    [['--foo'], 'unknown flag: --foo'],
    [['--agent-port=abc'], 'invalid argument "abc" for "--agent-port" flag: strconv.ParseInt: parsing "abc": invalid syntax'],
    [['--keepalive-time=1'], 'invalid argument "1" for "--keepalive-time" flag: time: missing unit in duration "1"'],
    [['--kubeconfig-qps=x'], 'invalid argument "x" for "--kubeconfig-qps" flag: strconv.ParseFloat: parsing "x": invalid syntax'],
    [['--enable-profiling=maybe'], 'invalid argument "maybe" for "--enable-profiling" flag: strconv.ParseBool: parsing "maybe": invalid syntax'],
    [['-logtostderr'], "unknown shorthand flag: 'l' in -logtostderr"],
    [['--uds-name'], 'flag needs an argument: --uds-name'],
    [[...uds, 'extra'], 'unexpected argument "extra": konnectivity-server takes no positional arguments'],
    [[...uds, '--', '--agent-port=1'], 'unexpected argument "--agent-port=1": konnectivity-server takes no positional arguments'],
  ];
  for (const [argv, message] of cases) {
    const err = failure(argv);
    assert.equal(err.kind, 'parse', argv.join(' '));
    assert.equal(err.message, message, argv.join(' '));
    assert.equal(err.usage, true);
  }
});

test('server -v forms and klog flags', () => {
  for (const argv of [['-v=8'], ['-v', '8'], ['-v8'], ['--v=8'], ['--v', '8']]) assert.equal(parse([...uds, ...argv]).v, 8, argv.join(' '));
  const o = parse([...uds, '--logtostderr=false', '--log-file=/tmp/k.log', '--alsologtostderr=true', '--vmodule=proxy*=6']);
  assert.equal(o.logtostderr, false);
  assert.equal(o.logFile, '/tmp/k.log');
  assert.equal(o.alsologtostderr, true);
  assert.deepEqual(o.vmodule, [{ pattern: 'proxy*', level: 6 }]);
});

test('server --help and usage text', () => {
  for (const argv of [['--help'], ['-h'], [...uds, '--help']]) {
    const err = failure(argv);
    assert.equal(err.kind, 'help');
  }
  // A flag error before --help still wins, as in pflag.
  assert.equal(failure(['--nope', '--help']).kind, 'parse');
  const usage = serverUsage({ PROXY_SERVER_ID: 'fixed-id' });
  const flags = [
    ['server-cert', 'string', ''], ['server-key', 'string', ''], ['server-ca-cert', 'string', ''], ['cluster-cert', 'string', ''],
    ['cluster-key', 'string', ''], ['cluster-ca-cert', 'string', ''], ['mode', 'string', '(default "grpc")'],
    ['uds-name', 'string', ''], ['delete-existing-uds-file', '', '(default true)'], ['server-port', 'int', '(default 8090)'],
    ['server-bind-address', 'string', ''], ['agent-port', 'int', '(default 8091)'], ['agent-bind-address', 'string', ''],
    ['admin-port', 'int', '(default 8095)'], ['admin-bind-address', 'string', '(default "127.0.0.1")'],
    ['health-port', 'int', '(default 8092)'], ['health-bind-address', 'string', ''],
    ['keepalive-time', 'duration', '(default 1h0m0s)'], ['frontend-keepalive-time', 'duration', '(default 1h0m0s)'],
    ['enable-profiling', '', ''], ['enable-contention-profiling', '', ''], ['server-id', 'string', '(default "fixed-id")'],
    ['server-count', 'int', '(default 1)'], ['agent-namespace', 'string', ''], ['agent-service-account', 'string', ''],
    ['kubeconfig', 'string', ''], ['kubeconfig-qps', 'float32', ''], ['kubeconfig-burst', 'int', ''],
    ['kube-api-content-type', 'string', '(default "application/vnd.kubernetes.protobuf")'],
    ['authentication-audience', 'string', ''], ['proxy-strategies', 'string', '(default "default")'],
    ['cipher-suites', 'strings', ''], ['tls-min-version', 'string', ''], ['xfr-channel-size', 'int', '(default 10)'],
    ['frontend-write-channel-size', 'int', '(default 10)'], ['enable-lease-controller', '', ''],
    ['lease-namespace', 'string', '(default "kube-system")'], ['lease-label', 'string', '(default "k8s-app=konnectivity-server")'],
    ['graceful-shutdown-timeout', 'duration', ''], ['backend-dial-timeout', 'duration', ''],
    ['v', 'Level', '(default 4)'], ['vmodule', 'moduleSpec', ''], ['logtostderr', '', '(default true)'], ['log-file', 'string', ''],
    ['log-file-max-size', 'uint', '(default 1800)'], ['alsologtostderr', '', ''], ['log-dir', 'string', ''],
    ['stderrthreshold', 'severity', '(default 2)'], ['help', '', ''],
  ];
  const lines = usage.split('\n');
  for (const [name, type, dflt] of flags) {
    const line = lines.find((l) => new RegExp(`^ +(-\\w, )?--${name}( |$)`).test(l));
    assert.ok(line, `usage lists --${name}`);
    if (type) assert.ok(line.includes(`--${name} ${type} `), `--${name} shows type ${type}: ${line}`);
    if (dflt) assert.ok(line.endsWith(dflt), `--${name} shows ${dflt}: ${line}`);
    else assert.ok(!line.includes('(default'), `--${name} has a zero default: ${line}`);
  }
  assert.ok(!usage.includes('--warn-on-channel-limit'), 'deprecated flags are hidden');
  assert.match(usage, /^konnectivity-server .*\n\nUsage:\n {2}konnectivity-server \[flags\]\n\nFlags:\n/);
});

test('Kamaji server sidecar args (spec §14.2) parse without error', () => {
  const root = path.join(dir, 'kamaji');
  const apiserverCrt = file('kamaji/etc/kubernetes/pki/apiserver.crt');
  const apiserverKey = file('kamaji/etc/kubernetes/pki/apiserver.key');
  const conf = file('kamaji/etc/kubernetes/konnectivity-server.conf');
  assert.ok(apiserverCrt.startsWith(root));
  const o = parse([
    '--admin-port=8133',
    '--agent-namespace=kube-system',
    '--agent-port=8132',
    '--agent-service-account=konnectivity-agent',
    '--authentication-audience=system:konnectivity-server',
    `--cluster-cert=${apiserverCrt}`,
    `--cluster-key=${apiserverKey}`,
    '--health-port=8134',
    `--kubeconfig=${conf}`,
    '--mode=grpc',
    '--server-count=2',
    '--server-port=0',
    '--uds-name=/run/konnectivity/konnectivity-server.socket',
  ]);
  assert.equal(o.agentPort, 8132);
  assert.equal(o.adminPort, 8133);
  assert.equal(o.healthPort, 8134);
  assert.equal(o.serverCount, 2);
  assert.equal(o.udsName, '/run/konnectivity/konnectivity-server.socket');
  assert.equal(o.tokenAuthEnabled, true);
  assert.equal(o.needsKubernetesClient, true);
  assert.deepEqual(o.proxyStrategies, ['default']);
  assert.equal(o.clusterCaCert, '');
});

test('kubernetes.io example konnectivity-server.yaml args parse without error', () => {
  const crt = file('k8sio/etc/kubernetes/pki/apiserver.crt');
  const k = file('k8sio/etc/kubernetes/pki/apiserver.key');
  const conf = file('k8sio/etc/kubernetes/konnectivity-server.conf');
  const o = parse([
    '--logtostderr=true',
    '--uds-name=/etc/kubernetes/konnectivity-server/konnectivity-server.socket',
    `--cluster-cert=${crt}`,
    `--cluster-key=${k}`,
    '--mode=grpc',
    '--server-port=0',
    '--agent-port=8132',
    '--admin-port=8133',
    '--health-port=8134',
    '--agent-namespace=kube-system',
    '--agent-service-account=konnectivity-agent',
    `--kubeconfig=${conf}`,
    '--authentication-audience=system:konnectivity-server',
  ]);
  assert.equal(o.logtostderr, true);
  assert.equal(o.serverPort, 0);
  assert.equal(o.authenticationAudience, 'system:konnectivity-server');
});

test('TLS name mapping for Node', () => {
  assert.equal(acceptedGoCipherSuites.size, 13);
  assert.equal(opensslCipherList([]), undefined);
  assert.equal(
    opensslCipherList(['TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA']),
    'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256',
  );
  assert.equal(opensslCipherList(['TLS_AES_128_GCM_SHA256']), 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256');
  assert.throws(() => opensslCipherList(['TLS_RSA_WITH_RC4_128_SHA']), /not supported/);
  assert.equal(nodeMinTlsVersion(''), 'TLSv1.2');
  assert.equal(nodeMinTlsVersion('VersionTLS10'), 'TLSv1');
  assert.equal(nodeMinTlsVersion('VersionTLS11'), 'TLSv1.1');
  assert.equal(nodeMinTlsVersion('VersionTLS12'), 'TLSv1.2');
  assert.equal(nodeMinTlsVersion('VersionTLS13'), 'TLSv1.3');
});

test('--http2-implementation: builtin by default, node accepted, anything else refused by name', () => {
  assert.equal(parse(uds).http2Implementation, 'builtin');
  assert.equal(parse([...uds, '--http2-implementation=node']).http2Implementation, 'node');
  assert.match(failure([...uds, '--http2-implementation=nghttp2']).message, /--http2-implementation "nghttp2" must be builtin or node/);
});
