/** Destination policy: entry parsing, the matcher as tables, and the policy-enforcing dialer. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import fc from 'fast-check';
import {
  DestinationPolicy,
  createPolicyEndpointDialer,
  formatIp,
  parseDestinationRule,
  parseIp,
  policyDenialError,
  type PolicyDenial,
} from '../src/agent/destination-policy.ts';
import { EndpointDialError } from '../src/agent/go-dial-error.ts';
import { mapDialErrorToHTTPStatus } from '../src/server/http-connect/dial-error-status.ts';
import { waitFor } from './helpers/wait.ts';

const policy = (allowed: string[] | null, denied: string[] = []): DestinationPolicy => DestinationPolicy.fromEntries(allowed, denied);

/** host, port, resolved addresses (for names), expected outcome. */
type Row = [host: string, port: number, resolved: string[], expected: 'allow' | 'denied' | 'not_allowed'];

function runTable(p: DestinationPolicy, rows: Row[]): void {
  for (const [host, port, resolved, expected] of rows) {
    const d = p.check(host, port, resolved);
    assert.equal(d === null ? 'allow' : d.reason, expected, `${host}:${port} → ${JSON.stringify(resolved)}`);
  }
}

describe('parsing entries', () => {
  const good: Array<[string, string]> = [
    ['10.0.0.0/8', 'cidr'],
    ['10.0.0.5', 'cidr'],
    ['10.0.0.5:10250', 'cidr'],
    ['10.0.0.0/8:8000-9000', 'cidr'],
    ['fd00::/8', 'cidr'],
    ['fd00::1', 'cidr'],
    ['[fd00::1]:443', 'cidr'],
    ['[fd00::/64]:1-1024', 'cidr'],
    ['[::ffff:10.0.0.1]', 'cidr'],
    ['kubernetes.default.svc', 'host'],
    ['Kubelet.Internal.:10250', 'host'],
    ['*.svc.cluster.local', 'suffix'],
    ['*.svc.cluster.local:443', 'suffix'],
    ['*', 'any'],
    ['*:10250', 'any'],
    ['  metrics-server  ', 'host'],
  ];
  for (const [entry, kind] of good) {
    test(`${JSON.stringify(entry)} is a ${kind} entry`, () => assert.equal(parseDestinationRule(entry).kind, kind));
  }

  const bad: Array<[string, RegExp]> = [
    ['10.0.0.5/8', /host bits set.*did you mean 10\.0\.0\.0\/8/],
    ['10.0.0.0/33', /prefix length/],
    ['10.0.0.256', /not a valid IPv4/],
    ['10.1', /not a valid IPv4/],
    ['10.0.0.1:0', /ports are 1-65535/],
    ['10.0.0.1:70000', /ports are 1-65535/],
    ['10.0.0.1:9-2', /low before high/],
    ['10.0.0.1:http', /invalid port/],
    ['fd00::1:443:x', /not an address|brackets/],
    ['[10.0.0.1]:443', /brackets are for IPv6/],
    ['[fd00::1', /missing "]"/],
    ['[fd00::1]443', /unexpected text/],
    ['foo*.example.com', /wildcard/],
    ['*.', /not an address/],
    ['exa mple.com', /not an address/],
    ['-bad.example', /not an address/],
    ['fe80::1%eth0', /zones/],
  ];
  for (const [entry, message] of bad) {
    test(`${JSON.stringify(entry)} is refused`, () => assert.throws(() => parseDestinationRule(entry), message));
  }

  test('flag errors name the flag; blank entries (a trailing comma) are skipped', () => {
    assert.throws(() => policy(['10.0.0.0/8', 'x y']), /^Error: --allowed-destinations: invalid destination "x y"/);
    assert.throws(() => policy(null, ['10.0.0.0/40']), /^Error: --denied-destinations: /);
    assert.equal(policy(['10.0.0.0/8', ' ', '']).allowed!.length, 1);
  });
});

describe('matcher', () => {
  test('no lists: everything is allowed (upstream behaviour)', () => {
    const p = policy(null);
    assert.equal(p.allowsEverything, true);
    runTable(p, [
      ['10.0.0.5', 22, [], 'allow'],
      ['example.com', 443, ['93.184.216.34'], 'allow'],
      ['', 80, [], 'allow'],
    ]);
  });

  test('allow list of CIDRs and ports', () => {
    const p = policy(['10.0.0.0/8:10250', '192.168.1.7', '[fd00::/8]:443']);
    runTable(p, [
      ['10.1.2.3', 10250, [], 'allow'],
      ['10.1.2.3', 22, [], 'not_allowed'],
      ['11.0.0.1', 10250, [], 'not_allowed'],
      ['192.168.1.7', 1, [], 'allow'],
      ['192.168.1.7', 65535, [], 'allow'],
      ['192.168.1.8', 80, [], 'not_allowed'],
      ['fd12:3456::1', 443, [], 'allow'],
      ['fd12:3456::1', 80, [], 'not_allowed'],
      ['fe80::1', 443, [], 'not_allowed'],
      ['fd00::1%eth0', 443, [], 'allow'],
      // IPv4-mapped IPv6 is checked as its IPv4 address too, and must pass as that.
      ['::ffff:10.0.0.9', 10250, [], 'allow'],
      ['::ffff:11.0.0.9', 10250, [], 'not_allowed'],
      // A name passes when every address it resolves to is allowed.
      ['node-a.internal', 10250, ['10.0.0.7'], 'allow'],
      ['node-a.internal', 10250, ['10.0.0.7', '11.0.0.7'], 'not_allowed'],
      ['node-a.internal', 10250, ['10.0.0.7', 'fd00::7'], 'not_allowed'], // fd00::/8 only on 443
    ]);
  });

  test('deny list wins over the allow list, for names and for every resolved address', () => {
    const p = policy(['*'], ['169.254.169.254', '127.0.0.0/8', '[::1]', '*.internal.example', 'metadata.google.internal', '10.0.0.0/8:22']);
    runTable(p, [
      ['169.254.169.254', 80, [], 'denied'],
      ['127.0.0.1', 8080, [], 'denied'],
      ['127.9.9.9', 8080, [], 'denied'],
      ['::1', 8080, [], 'denied'],
      ['10.0.0.5', 22, [], 'denied'],
      ['10.0.0.5', 10250, [], 'allow'],
      ['a.internal.example', 443, ['8.8.8.8'], 'denied'],
      ['A.B.Internal.Example.', 443, ['8.8.8.8'], 'denied'],
      ['internal.example', 443, ['8.8.8.8'], 'allow'], // *.x does not match the apex
      ['metadata.google.internal', 80, ['8.8.8.8'], 'denied'],
      // DNS answers that point into a denied range are denied, whatever the name.
      ['rebind.attacker.example', 80, ['8.8.8.8', '127.0.0.1'], 'denied'],
      ['rebind.attacker.example', 80, ['169.254.169.254'], 'denied'],
      ['ok.example', 80, ['8.8.8.8', '2001:db8::1'], 'allow'],
    ]);
  });

  test('aliases of loopback: 0.0.0.0, ::, the empty host and IPv4-mapped forms are caught by a loopback deny', () => {
    const p = policy(null, ['127.0.0.0/8', '[::1]']);
    runTable(p, [
      ['0.0.0.0', 80, [], 'denied'],
      ['', 80, [], 'denied'],
      ['::', 80, [], 'denied'],
      ['::ffff:127.0.0.1', 80, [], 'denied'],
      ['::ffff:0.0.0.0', 80, [], 'denied'],
      ['0:0:0:0:0:ffff:7f00:1', 80, [], 'denied'],
      ['sneaky.example', 80, ['0.0.0.0'], 'denied'],
      ['sneaky.example', 80, ['::ffff:7f00:1'], 'denied'],
      ['10.0.0.1', 80, [], 'allow'],
    ]);
  });

  test('name entries match the host text; an IP literal never matches a name entry', () => {
    const p = policy(['kubernetes.default.svc:443', '*.svc.cluster.local'], ['secret.svc.cluster.local']);
    runTable(p, [
      ['kubernetes.default.svc', 443, ['10.96.0.1'], 'allow'],
      ['KUBERNETES.default.svc.', 443, ['10.96.0.1'], 'allow'],
      ['kubernetes.default.svc', 80, ['10.96.0.1'], 'not_allowed'],
      ['web.ns.svc.cluster.local', 8080, ['10.1.0.1'], 'allow'],
      ['secret.svc.cluster.local', 8080, ['10.1.0.1'], 'denied'],
      ['10.96.0.1', 443, [], 'not_allowed'],
      ['evil-svc.cluster.local', 80, ['10.1.0.1'], 'not_allowed'],
      ['svc.cluster.local.evil.example', 80, ['10.1.0.1'], 'not_allowed'],
    ]);
  });

  test('port ranges are inclusive at both ends', () => {
    const p = policy(['*:8000-8002']);
    runTable(p, [
      ['h.example', 7999, ['10.0.0.1'], 'not_allowed'],
      ['h.example', 8000, ['10.0.0.1'], 'allow'],
      ['10.0.0.1', 8002, [], 'allow'],
      ['10.0.0.1', 8003, [], 'not_allowed'],
    ]);
  });

  test('a denial records the entry that matched and the resolved address that decided it', () => {
    const p = policy(null, ['10.0.0.0/8']);
    assert.deepEqual(p.check('db.example', 5432, ['8.8.8.8', '10.1.1.1']), { reason: 'denied', rule: '10.0.0.0/8', address: '10.1.1.1' } satisfies PolicyDenial);
    assert.deepEqual(p.check('10.1.1.1', 5432, []), { reason: 'denied', rule: '10.0.0.0/8', address: null } satisfies PolicyDenial);
  });

  test('property: CIDR matching agrees with node:net BlockList', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
    const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((w) => w.map((x) => x.toString(16)).join(':'));
    const caseArb = fc.oneof(
      fc.tuple(fc.constant(4 as const), v4, fc.nat(32), v4),
      fc.tuple(fc.constant(6 as const), v6, fc.nat(128), v6),
    );
    fc.assert(
      fc.property(caseArb, fc.boolean(), ([family, base, prefix, probe], sameNet) => {
        const bits = family === 4 ? 32 : 128;
        const baseIp = parseIp(base)!;
        const mask = ((1n << BigInt(bits)) - 1n) ^ ((1n << BigInt(bits - prefix)) - 1n);
        const network = formatIp({ family, value: baseIp.value & mask });
        // Half the time probe inside the network, to exercise both outcomes.
        const probeIp = sameNet ? formatIp({ family, value: (baseIp.value & mask) | (parseIp(probe)!.value & ~mask & ((1n << BigInt(bits)) - 1n)) }) : probe;
        const entry = family === 4 ? `${network}/${prefix}` : `[${network}/${prefix}]`;
        const ours = policy([entry]).check(probeIp, 1, []) === null;
        const list = new net.BlockList();
        list.addSubnet(network, prefix, family === 4 ? 'ipv4' : 'ipv6');
        assert.equal(ours, list.check(probeIp, family === 4 ? 'ipv4' : 'ipv6'), `${probeIp} in ${entry}`);
      }),
      { numRuns: 3000 },
    );
  });

  test('property: formatIp and parseIp round-trip, and agree with net.isIP', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (text) => {
        const ip = parseIp(text);
        assert.ok(ip, text);
        assert.equal(ip.family, net.isIP(text));
        assert.deepEqual(parseIp(formatIp(ip)), ip);
      }),
      { numRuns: 3000 },
    );
    for (const junk of ['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '::1::', '1:2:3:4:5:6:7:8:9', 'g::1', 'example.com']) assert.equal(parseIp(junk), null, junk);
  });
});

describe('denial text on the wire', () => {
  test('Go dial-error shape, names the flag, and maps to 502 on an upstream HTTP-CONNECT server', () => {
    const notAllowed = policyDenialError('10.0.0.5', 22, { reason: 'not_allowed', rule: null, address: null });
    assert.equal(notAllowed.message, 'dial tcp 10.0.0.5:22: konnectivity-agent: destination denied by policy (--allowed-destinations)');
    const denied = policyDenialError('db.example', 5432, { reason: 'denied', rule: '10.0.0.0/8', address: '10.1.1.1' });
    assert.equal(denied.message, 'dial tcp db.example:5432: konnectivity-agent: destination denied by policy (--denied-destinations) (db.example resolves to 10.1.1.1)');
    const v6 = policyDenialError('fd00::1', 443, { reason: 'denied', rule: 'x', address: null });
    assert.equal(v6.message, 'dial tcp [fd00::1]:443: konnectivity-agent: destination denied by policy (--denied-destinations)');
    for (const e of [notAllowed, denied, v6]) assert.equal(mapDialErrorToHTTPStatus(e.message), 502);
  });
});

describe('policy dialer', () => {
  async function listener(): Promise<{ port: number; accepted: () => number; close: () => Promise<void> }> {
    let n = 0;
    const server = net.createServer((s) => {
      n++;
      s.destroy();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { port: (server.address() as net.AddressInfo).port, accepted: () => n, close: () => new Promise((r) => server.close(() => r())) };
  }

  test('connects to exactly the addresses it checked: one lookup, no second answer can slip in', async () => {
    const target = await listener();
    let lookups = 0;
    // A rebinding resolver: harmless the first time, loopback-denied afterwards... and vice versa.
    const answers = [['127.0.0.1'], ['169.254.169.254']];
    const dial = createPolicyEndpointDialer({
      policy: policy(null, ['169.254.0.0/16']),
      resolve: async () => answers[Math.min(lookups++, 1)]!,
    });
    try {
      const socket = await dial(`rebind.example:${target.port}`, new AbortController().signal);
      assert.equal(socket.remoteAddress, '127.0.0.1');
      socket.destroy();
      assert.equal(lookups, 1);
      await assert.rejects(dial(`rebind.example:${target.port}`, new AbortController().signal), /destination denied by policy \(--denied-destinations\) \(rebind\.example resolves to 169\.254\.169\.254\)/);
      assert.equal(lookups, 2);
    } finally {
      await target.close();
    }
  });

  test('refusals are EndpointDialErrors, reported once each, and never reach the network', async () => {
    const target = await listener();
    const denials: Array<[string, PolicyDenial]> = [];
    let lookups = 0;
    const dial = createPolicyEndpointDialer({
      policy: policy([`127.0.0.1:${target.port + 1}`, '*.allowed.example'], ['*.blocked.example']),
      resolve: async (h) => {
        lookups++;
        return h.endsWith('allowed.example') ? ['127.0.0.1'] : ['127.0.0.1'];
      },
      onDenied: (address, d) => denials.push([address, d]),
    });
    try {
      const signal = new AbortController().signal;
      const err = await dial(`127.0.0.1:${target.port}`, signal).catch((e: unknown) => e);
      assert.ok(err instanceof EndpointDialError);
      assert.equal(err.reason, 'unknown');
      assert.equal(err.message, `dial tcp 127.0.0.1:${target.port}: konnectivity-agent: destination denied by policy (--allowed-destinations)`);
      // A denied name needs no DNS query.
      await assert.rejects(dial(`x.blocked.example:${target.port}`, signal), /--denied-destinations/);
      assert.equal(lookups, 0);
      // An allowed name resolves and connects.
      const ok = await dial(`svc.allowed.example:${target.port}`, signal);
      ok.destroy();
      assert.deepEqual(
        denials.map(([a, d]) => [a, d.reason]),
        [
          [`127.0.0.1:${target.port}`, 'not_allowed'],
          [`x.blocked.example:${target.port}`, 'denied'],
        ],
      );
      // The dial resolved on the client side; the listener accepts in its own callback.
      // (A denied dial that had connected would have been accepted before this one.)
      await waitFor(() => target.accepted() >= 1, 'the allowed dial to be accepted');
      assert.equal(target.accepted(), 1);
    } finally {
      await target.close();
    }
  });

  test('Go address errors and lookup failures keep their upstream texts', async () => {
    const dial = createPolicyEndpointDialer({
      policy: policy(['*']),
      resolve: async () => {
        throw Object.assign(new Error('nope'), { code: 'ENOTFOUND' });
      },
    });
    const signal = new AbortController().signal;
    await assert.rejects(dial('no-port', signal), { message: 'dial tcp: address no-port: missing port in address' });
    await assert.rejects(dial('nosuch.invalid:80', signal), { message: 'dial tcp: lookup nosuch.invalid: no such host' });
  });
});
