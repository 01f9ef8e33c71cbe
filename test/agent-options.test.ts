import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { OptionsError } from '../src/flags/options-error.ts';
import { placeholderFiles } from './helpers/placeholder-files.ts';
import { agentUsage, parseAgentOptions, type AgentOptions } from '../src/agent/agent-options.ts';

const { dir, file } = placeholderFiles('kts-agent-options-');
const cert = file('tls.crt');
const key = file('tls.key');
const ca = file('ca.crt');
const token = file('token');
const missing = path.join(dir, 'missing');
const env = {};

function parse(argv: string[], environment: Record<string, string | undefined> = env): AgentOptions {
  return parseAgentOptions(argv, environment);
}

function failure(argv: string[]): OptionsError {
  try {
    parse(argv);
  } catch (err) {
    assert.ok(err instanceof OptionsError, String(err));
    return err;
  }
  assert.fail(`expected ${argv.join(' ')} to fail`);
}

test('agent defaults match upstream NewGrpcProxyAgentOptions', () => {
  const o = parse([]);
  const expected: Partial<AgentOptions> = {
    agentCert: '',
    agentKey: '',
    caCert: '',
    proxyServerHost: '127.0.0.1',
    proxyServerPort: 8091,
    alpnProtos: [],
    healthServerHost: '',
    healthServerPort: 8093,
    adminServerPort: 8094,
    adminBindAddress: '127.0.0.1',
    enableProfiling: false,
    enableContentionProfiling: false,
    agentIdentifiers: '',
    syncIntervalMs: 1000,
    probeIntervalMs: 1000,
    syncIntervalCapMs: 10_000,
    keepaliveTimeMs: 3_600_000,
    serviceAccountTokenPath: '',
    warnOnChannelLimit: false,
    syncForever: false,
    xfrChannelSize: 150,
    countServerLeases: false,
    leaseNamespace: 'kube-system',
    serverCountSource: 'default',
    kubeconfig: '',
    kubeApiContentType: 'application/vnd.kubernetes.protobuf',
    v: 4,
    logtostderr: true,
    alsologtostderr: false,
    logFile: '',
    logFileMaxSizeMb: 1800,
    stderrthreshold: 2,
    warnings: [],
  };
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(o[k as keyof AgentOptions], v, k);
  assert.equal(o.leaseLabelSelector.toString(), 'k8s-app=konnectivity-server');
  assert.equal(o.leaseLabelSelector.matches({ 'k8s-app': 'konnectivity-server' }), true);
  assert.match(o.agentId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});

test('agent id: flag, then PROXY_AGENT_ID, then a fresh UUID', () => {
  assert.equal(parse([], { PROXY_AGENT_ID: 'node-1' }).agentId, 'node-1');
  assert.equal(parse(['--agent-id=flag-id'], { PROXY_AGENT_ID: 'node-1' }).agentId, 'flag-id');
  assert.notEqual(parse([], { PROXY_AGENT_ID: '' }).agentId, '');
  assert.notEqual(parse([]).agentId, parse([]).agentId);
});

test('agent flags: every value is carried into the options', () => {
  const o = parse([
    `--agent-cert=${cert}`, `--agent-key=${key}`, `--ca-cert=${ca}`, '--proxy-server-host=konnectivity.example.com',
    '--proxy-server-port=8132', '--alpn-proto=konnectivity', '--alpn-proto', 'x,y', '--health-server-host=0.0.0.0',
    '--health-server-port=8134', '--admin-server-port=8133', '--admin-bind-address=', '--enable-profiling',
    '--enable-contention-profiling', '--agent-identifiers=host=node1&ipv4=10.0.0.5&default-route=true',
    '--sync-interval=250ms', '--probe-interval=2s', '--sync-interval-cap=2s', '--keepalive-time=30s',
    `--service-account-token-path=${token}`, '--warn-on-channel-limit', '--sync-forever', '--xfr-channel-size=300',
    '--count-server-leases=true', '--lease-namespace=konn', '--lease-label-selector=app in (konn, proxy),tier!=old',
    '--server-count-source=max', `--kubeconfig=${missing}`, '--kube-api-content-type=application/json', '-v', '6',
  ]);
  assert.equal(o.agentCert, cert);
  assert.equal(o.agentKey, key);
  assert.equal(o.caCert, ca);
  assert.equal(o.proxyServerHost, 'konnectivity.example.com');
  assert.equal(o.proxyServerPort, 8132);
  assert.deepEqual(o.alpnProtos, ['konnectivity', 'x', 'y']);
  assert.equal(o.healthServerHost, '0.0.0.0');
  assert.equal(o.healthServerPort, 8134);
  assert.equal(o.adminServerPort, 8133);
  assert.equal(o.adminBindAddress, '');
  assert.equal(o.enableProfiling, true);
  assert.equal(o.enableContentionProfiling, true);
  assert.equal(o.agentIdentifiers, 'host=node1&ipv4=10.0.0.5&default-route=true');
  assert.equal(o.syncIntervalMs, 250);
  assert.equal(o.probeIntervalMs, 2000);
  assert.equal(o.syncIntervalCapMs, 2000);
  assert.equal(o.keepaliveTimeMs, 30_000);
  assert.equal(o.serviceAccountTokenPath, token);
  assert.equal(o.warnOnChannelLimit, true);
  assert.equal(o.syncForever, true);
  assert.equal(o.xfrChannelSize, 300);
  assert.equal(o.countServerLeases, true);
  assert.equal(o.leaseNamespace, 'konn');
  assert.equal(o.leaseLabelSelector.toString(), 'app in (konn,proxy),tier!=old');
  assert.equal(o.serverCountSource, 'max');
  assert.equal(o.kubeconfig, missing, 'the agent does not check the kubeconfig path up front');
  assert.equal(o.kubeApiContentType, 'application/json');
  assert.equal(o.v, 6);
  assert.equal(parse(['--server-count-source=']).serverCountSource, '');
});

test('agent --lease-label: hidden deprecated alias of --lease-label-selector', () => {
  const o = parse(['--lease-label=k8s-app=konnectivity-server,component=proxy']);
  assert.equal(o.leaseLabelSelector.toString(), 'component=proxy,k8s-app=konnectivity-server');
  assert.deepEqual(o.warnings, ['Flag --lease-label has been deprecated, use --lease-label-selector instead']);
  assert.equal(parse(['--lease-label=']).leaseLabelSelector.toString(), '');
  assert.equal(parse(['--lease-label-selector=']).leaseLabelSelector.requirements.length, 0);
  assert.ok(!agentUsage().includes('--lease-label '), 'alias is hidden from --help');
  for (const flag of ['lease-label', 'lease-label-selector']) {
    const err = failure([`--${flag}=*notavalidlabel*`]);
    assert.equal(err.kind, 'parse');
    assert.ok(err.message.startsWith(`invalid argument "*notavalidlabel*" for "--${flag}" flag: unable to parse requirement: `), err.message);
  }
});

test('agent validation errors carry upstream wording', () => {
  const cases: [string[], string][] = [
    [[`--agent-key=${missing}`], `error checking agent key ${missing}, got stat ${missing}: no such file or directory`],
    [[`--agent-key=${key}`], `cannot have agent cert empty when agent key is set to "${key}"`],
    [[`--agent-cert=${missing}`], `error checking agent cert ${missing}, got stat ${missing}: no such file or directory`],
    [[`--agent-cert=${cert}`], `cannot have agent key empty when agent cert is set to "${cert}"`],
    [[`--ca-cert=${missing}`], `error checking agent CA cert ${missing}, got stat ${missing}: no such file or directory`],
    [['--proxy-server-port=0'], 'proxy server port 0 must be greater than 0'],
    [['--proxy-server-port=-1'], 'proxy server port -1 must be greater than 0'],
    [['--health-server-port=0'], 'health server port 0 must be greater than 0'],
    [['--health-server-port=-1'], 'health server port -1 must be greater than 0'],
    [['--admin-server-port=0'], 'admin server port 0 must be greater than 0'],
    [['--admin-server-port=-1'], 'admin server port -1 must be greater than 0'],
    [['--enable-contention-profiling'], 'if --enable-contention-profiling is set, --enable-profiling must also be set'],
    [['--enable-contention-profiling=true', '--enable-profiling=false'], 'if --enable-contention-profiling is set, --enable-profiling must also be set'],
    [['--sync-interval=11s'], 'sync interval 11s must be less than sync interval cap 10s'],
    [['--sync-interval=1m30s', '--sync-interval-cap=1m'], 'sync interval 1m30s must be less than sync interval cap 1m0s'],
    [[`--service-account-token-path=${missing}`], `error checking service account token path ${missing}, got stat ${missing}: no such file or directory`],
    [['--agent-identifiers=hostname=node1'], 'agent address is invalid: unknown address type: hostname'],
    [['--agent-identifiers=host=a&zone=b'], 'agent address is invalid: unknown address type: zone'],
    [['--agent-identifiers=host=%zz'], 'agent address is invalid: invalid URL escape "%zz"'],
    [['--agent-identifiers=host=a;ipv4=1.2.3.4'], 'agent address is invalid: invalid semicolon separator in query'],
    [['--xfr-channel-size=0'], 'channel size 0 must be greater than 0'],
    [['--xfr-channel-size=-10'], 'channel size -10 must be greater than 0'],
    [['--server-count-source=foobar'], "--server-count-source must be one of '', 'default', 'max', got foobar"],
  ];
  for (const [argv, reason] of cases) {
    const err = failure(argv);
    assert.equal(err.kind, 'validation', argv.join(' '));
    assert.equal(err.reason, reason, argv.join(' '));
    assert.equal(err.message, `failed to validate agent options with ${reason}`);
  }
});

test('agent validation accepts what upstream accepts', () => {
  // Upstream leaves reserved/ephemeral agent ports alone.
  assert.equal(parse(['--proxy-server-port=443', '--health-server-port=49152', '--admin-server-port=1']).proxyServerPort, 443);
  assert.equal(parse(['--sync-interval=10s']).syncIntervalMs, 10_000);
  assert.equal(
    parse(['--agent-identifiers=host=localhost&host=node1.mydomain.com&cidr=127.0.0.1/16&ipv4=1.2.3.4&ipv4=5.6.7.8&ipv6=:::::&default-route=true']).agentIdentifiers,
    'host=localhost&host=node1.mydomain.com&cidr=127.0.0.1/16&ipv4=1.2.3.4&ipv4=5.6.7.8&ipv6=:::::&default-route=true',
  );
  assert.equal(parse(['--agent-identifiers=ipv4=${HOST_IP}']).agentIdentifiers, 'ipv4=${HOST_IP}');
  assert.equal(parse([`--agent-cert=${cert}`, `--agent-key=${key}`]).agentKey, key);
});

test('agent parse errors and positional arguments', () => {
  const cases: [string[], string][] = [
    [['--foo'], 'unknown flag: --foo'],
    [['--proxy-server-port=abc'], 'invalid argument "abc" for "--proxy-server-port" flag: strconv.ParseInt: parsing "abc": invalid syntax'],
    [['--sync-interval=fast'], 'invalid argument "fast" for "--sync-interval" flag: time: invalid duration "fast"'],
    [['--sync-forever=yes'], 'invalid argument "yes" for "--sync-forever" flag: strconv.ParseBool: parsing "yes": invalid syntax'],
    [['-v'], "flag needs an argument: 'v' in -v"],
    [['run'], 'unexpected argument "run": konnectivity-agent takes no positional arguments'],
  ];
  for (const [argv, message] of cases) {
    const err = failure(argv);
    assert.equal(err.kind, 'parse', argv.join(' '));
    assert.equal(err.message, message);
  }
  // A bool never takes the next word, which then is a (rejected) positional.
  assert.equal(failure(['--sync-forever', 'true']).message, 'unexpected argument "true": konnectivity-agent takes no positional arguments');
});

test('agent --help and usage text', () => {
  assert.equal(failure(['--help']).kind, 'help');
  assert.equal(failure(['-h']).kind, 'help');
  const usage = agentUsage({ PROXY_AGENT_ID: 'fixed' });
  const flags = [
    ['agent-cert', 'string', ''], ['agent-key', 'string', ''], ['ca-cert', 'string', ''],
    ['proxy-server-host', 'string', '(default "127.0.0.1")'], ['proxy-server-port', 'int', '(default 8091)'],
    ['alpn-proto', 'strings', ''], ['health-server-host', 'string', ''], ['health-server-port', 'int', '(default 8093)'],
    ['admin-server-port', 'int', '(default 8094)'], ['admin-bind-address', 'string', '(default "127.0.0.1")'],
    ['enable-profiling', '', ''], ['enable-contention-profiling', '', ''], ['agent-id', 'string', '(default "fixed")'],
    ['agent-identifiers', 'string', ''], ['sync-interval', 'duration', '(default 1s)'], ['probe-interval', 'duration', '(default 1s)'],
    ['sync-interval-cap', 'duration', '(default 10s)'], ['keepalive-time', 'duration', '(default 1h0m0s)'],
    ['service-account-token-path', 'string', ''], ['warn-on-channel-limit', '', ''], ['sync-forever', '', ''],
    ['xfr-channel-size', 'int', '(default 150)'], ['count-server-leases', '', ''], ['lease-namespace', 'string', '(default "kube-system")'],
    ['lease-label-selector', 'labelSelector', '(default k8s-app=konnectivity-server)'],
    ['server-count-source', 'string', '(default "default")'], ['kubeconfig', 'string', ''],
    ['kube-api-content-type', 'string', '(default "application/vnd.kubernetes.protobuf")'],
    ['v', 'Level', '(default 4)'], ['logtostderr', '', '(default true)'], ['help', '', ''],
  ];
  const lines = usage.split('\n');
  for (const [name, type, dflt] of flags) {
    const line = lines.find((l) => new RegExp(`^ +(-\\w, )?--${name}( |$)`).test(l));
    assert.ok(line, `usage lists --${name}`);
    if (type) assert.ok(line.includes(`--${name} ${type} `), `--${name} shows type ${type}: ${line}`);
    if (dflt) assert.ok(line.endsWith(dflt), `--${name} shows ${dflt}: ${line}`);
    else assert.ok(!line.includes('(default'), `--${name} has a zero default: ${line}`);
  }
});

test('Kamaji agent args (spec §14.4) parse without error', () => {
  const saCa = file('kamaji/var/run/secrets/kubernetes.io/serviceaccount/ca.crt');
  const saToken = file('kamaji/var/run/secrets/tokens/konnectivity-agent-token');
  const o = parse([
    '--admin-server-port=8133',
    `--ca-cert=${saCa}`,
    '--health-server-port=8134',
    '--logtostderr=true',
    '--proxy-server-host=tcp.example.com',
    '--proxy-server-port=8132',
    `--service-account-token-path=${saToken}`,
    '-v=8',
  ]);
  assert.equal(o.v, 8);
  assert.equal(o.adminServerPort, 8133);
  assert.equal(o.healthServerPort, 8134);
  assert.equal(o.proxyServerPort, 8132);
  assert.equal(o.logtostderr, true);
  assert.equal(o.agentCert, '');
});

test('kubernetes.io example konnectivity-agent.yaml args parse without error', () => {
  const saCa = file('k8sio/var/run/secrets/kubernetes.io/serviceaccount/ca.crt');
  const saToken = file('k8sio/var/run/secrets/tokens/konnectivity-agent-token');
  const o = parse([
    '--logtostderr=true',
    `--ca-cert=${saCa}`,
    '--proxy-server-host=35.225.206.7',
    '--proxy-server-port=8132',
    '--admin-server-port=8133',
    '--health-server-port=8134',
    `--service-account-token-path=${saToken}`,
  ]);
  assert.equal(o.proxyServerHost, '35.225.206.7');
  assert.equal(o.serviceAccountTokenPath, saToken);
});
