import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import {
  EndpointDialError,
  canceledDialError,
  connectDialError,
  joinHostPort,
  lookupDialError,
  lookupTimeoutDialError,
  timeoutDialError,
  unsupportedProtocolDialError,
} from '../src/agent/go-dial-error.ts';
import { dialTcpEndpoint, splitDialAddress } from '../src/agent/endpoint-dialer.ts';
import { startEndpoint, unusedPort } from './agent-fixtures.ts';

const errno = (code: string): Error => Object.assign(new Error(`syscall ${code}`), { code });

// The texts an upstream server's mapDialErrorToHTTPStatus substring-matches.
test('connect failures read like Go net.Dial errors', () => {
  const table: Array<[code: string, hostPort: string, message: string, reason: 'timeout' | 'unknown']> = [
    ['ECONNREFUSED', '127.0.0.1:1', 'dial tcp 127.0.0.1:1: connect: connection refused', 'unknown'],
    ['ECONNRESET', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: connect: connection reset by peer', 'unknown'],
    ['ENETUNREACH', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: connect: network is unreachable', 'unknown'],
    ['EHOSTUNREACH', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: connect: no route to host', 'unknown'],
    ['EHOSTDOWN', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: connect: host is down', 'unknown'],
    ['ENETDOWN', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: connect: network is down', 'unknown'],
    ['ETIMEDOUT', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: connect: connection timed out', 'timeout'],
    ['EMFILE', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: socket: too many open files', 'unknown'],
    ['ENFILE', '10.0.0.5:10250', 'dial tcp 10.0.0.5:10250: socket: too many open files in system', 'unknown'],
    ['EADDRNOTAVAIL', '[::1]:80', 'dial tcp [::1]:80: connect: cannot assign requested address', 'unknown'],
    ['EWHATEVER', '10.0.0.5:1', 'dial tcp 10.0.0.5:1: connect: EWHATEVER', 'unknown'],
  ];
  for (const [code, hostPort, message, reason] of table) {
    const err = connectDialError(hostPort, errno(code));
    assert.ok(err instanceof EndpointDialError);
    assert.equal(err.message, message, code);
    assert.equal(err.reason, reason, code);
  }
});

test('lookup, timeout, cancel and protocol failures read like Go', () => {
  assert.equal(lookupDialError('nosuch.invalid', errno('ENOTFOUND')).message, 'dial tcp: lookup nosuch.invalid: no such host');
  assert.equal(lookupDialError('nosuch.invalid', errno('EAI_NONAME')).message, 'dial tcp: lookup nosuch.invalid: no such host');
  assert.equal(lookupDialError('flaky.example', errno('EAI_AGAIN')).message, 'dial tcp: lookup flaky.example: Temporary failure in name resolution');
  assert.equal(timeoutDialError('10.0.0.5:10250').message, 'dial tcp 10.0.0.5:10250: i/o timeout');
  assert.equal(timeoutDialError('10.0.0.5:10250').reason, 'timeout');
  assert.equal(lookupTimeoutDialError('slow.example').message, 'dial tcp: lookup slow.example: i/o timeout');
  assert.equal(lookupTimeoutDialError('slow.example').reason, 'timeout');
  assert.equal(canceledDialError('10.0.0.5:80').message, 'dial tcp 10.0.0.5:80: operation was canceled');
  assert.equal(unsupportedProtocolDialError('udp').message, 'dial udp: unknown network udp');
  assert.equal(joinHostPort('::1', 443), '[::1]:443');
  assert.equal(joinHostPort('kubelet.local', 10250), 'kubelet.local:10250');
});

test('address parsing follows net.SplitHostPort and LookupPort', () => {
  assert.deepEqual(splitDialAddress('10.0.0.5:10250'), { host: '10.0.0.5', port: 10250 });
  assert.deepEqual(splitDialAddress('[::1]:443'), { host: '::1', port: 443 });
  assert.deepEqual(splitDialAddress('node-1:https'), { host: 'node-1', port: 443 });
  assert.deepEqual(splitDialAddress(':80'), { host: '', port: 80 });
  const bad: Array<[string, string]> = [
    ['10.0.0.5', 'dial tcp: address 10.0.0.5: missing port in address'],
    ['::1:80', 'dial tcp: address ::1:80: too many colons in address'],
    ['[::1]', 'dial tcp: address [::1]: missing port in address'],
    ['[::1:80', "dial tcp: address [::1:80: missing ']' in address"],
    ['[::1]:80:1', 'dial tcp: address [::1]:80:1: too many colons in address'],
    ['host:70000', 'dial tcp: address 70000: invalid port'],
    ['host:nosuchservice', 'dial tcp: lookup tcp/nosuchservice: unknown port'],
  ];
  for (const [address, message] of bad) {
    assert.throws(() => splitDialAddress(address), (err: unknown) => err instanceof EndpointDialError && err.message === message, address);
  }
});

test('real dials: success, refused, unresolvable, lookup timeout, cancel', async () => {
  const endpoint = await startEndpoint((s) => s.end('hi'));
  const never = new AbortController().signal;
  try {
    const socket = await dialTcpEndpoint(endpoint.address, never);
    socket.destroy();

    const closedPort = await unusedPort();
    await assert.rejects(dialTcpEndpoint(`127.0.0.1:${closedPort}`, never), {
      message: `dial tcp 127.0.0.1:${closedPort}: connect: connection refused`,
    });

    const notFound = (): Promise<string[]> => Promise.reject(errno('ENOTFOUND'));
    await assert.rejects(dialTcpEndpoint('nosuch.invalid:80', never, { resolve: notFound }), {
      message: 'dial tcp: lookup nosuch.invalid: no such host',
    });

    const hang = (): Promise<string[]> => new Promise(() => {});
    await assert.rejects(dialTcpEndpoint('slow.example:80', never, { resolve: hang, timeoutMs: 20 }), (err: unknown) => {
      return err instanceof EndpointDialError && err.message === 'dial tcp: lookup slow.example: i/o timeout' && err.reason === 'timeout';
    });

    // Resolved names dial the resolved address, and errors name it as Go does.
    const toLoopback = (): Promise<string[]> => Promise.resolve(['127.0.0.1']);
    await assert.rejects(dialTcpEndpoint(`kubelet.local:${closedPort}`, never, { resolve: toLoopback }), {
      message: `dial tcp 127.0.0.1:${closedPort}: connect: connection refused`,
    });

    const abort = new AbortController();
    const pending = dialTcpEndpoint('slow.example:80', abort.signal, { resolve: hang });
    abort.abort();
    await assert.rejects(pending, { message: 'dial tcp slow.example:80: operation was canceled' });
  } finally {
    await endpoint.close();
  }
});

/** The kernel's timer for a local IPv4 socket: `tr` and `tm->when` (clock ticks) of its /proc/net/tcp line. */
function tcpTimerOf(localPort: number, remotePort: number): { timer: number; ticks: number } | undefined {
  const hex = (port: number): string => `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (!fields[1]?.endsWith(hex(localPort)) || !fields[2]?.endsWith(hex(remotePort))) continue;
    const [timer, when] = fields[5]!.split(':');
    return { timer: parseInt(timer!, 16), ticks: parseInt(when!, 16) };
  }
  return undefined;
}

// Upstream's dialer (net.DialTimeout) turns on TCP keepalive with 15 s of idle
// time: a kubelet or pod that vanishes without FIN/RST is noticed. On Linux the
// socket's keepalive timer shows in /proc/net/tcp as timer 2, due in ~15 s.
test('dialed endpoint sockets have TCP keepalive armed at 15 s, as Go dials them', { skip: !existsSync('/proc/net/tcp') && 'no /proc/net/tcp' }, async () => {
  const endpoint = await startEndpoint(() => {});
  const socket = await dialTcpEndpoint(endpoint.address, new AbortController().signal);
  try {
    const kernel = tcpTimerOf(socket.localPort!, endpoint.port);
    assert.ok(kernel, 'the dialed socket is in /proc/net/tcp');
    assert.equal(kernel.timer, 2, 'keepalive timer armed');
    // USER_HZ is 100: 15 s is 1500 ticks, less the moments since the connect.
    assert.ok(kernel.ticks > 1400 && kernel.ticks <= 1500, `keepalive due in ${kernel.ticks} ticks`);
  } finally {
    socket.destroy();
    await endpoint.close();
  }
});
