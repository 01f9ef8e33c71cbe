import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  ConnectRequestParser,
  DEFAULT_MAX_HEADER_BYTES,
  HEADER_READ_SLACK_BYTES,
  type ConnectRequestParseResult,
  type ParsedConnectRequest,
} from '../src/server/http-connect/connect-request-parser.ts';

const KUBE_APISERVER_CONNECT = 'CONNECT 10.0.0.5:10250 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';

function latin1(text: string): Uint8Array {
  return Buffer.from(text, 'latin1');
}

function parseWhole(input: string | Uint8Array, maxHeaderBytes?: number): ConnectRequestParseResult {
  const parser = new ConnectRequestParser(maxHeaderBytes === undefined ? {} : { maxHeaderBytes });
  return parser.push(typeof input === 'string' ? latin1(input) : input);
}

/** Feeds one byte at a time; returns the outcome and the bytes after the head in later pushes. */
function parseByteByByte(input: Uint8Array, maxHeaderBytes?: number): { result: ConnectRequestParseResult; pushes: number } {
  const parser = new ConnectRequestParser(maxHeaderBytes === undefined ? {} : { maxHeaderBytes });
  let result: ConnectRequestParseResult = { kind: 'need-more' };
  let pushes = 0;
  for (let i = 0; i < input.length && result.kind === 'need-more'; i++) {
    result = parser.push(input.subarray(i, i + 1));
    pushes++;
  }
  return { result, pushes };
}

function expectRequest(result: ConnectRequestParseResult): ParsedConnectRequest {
  if (result.kind !== 'request') assert.fail(`expected a request, got ${JSON.stringify(result)}`);
  return result.request;
}

function expectError(result: ConnectRequestParseResult, status: number, publicText: string | null = null): void {
  if (result.kind !== 'error') assert.fail(`expected error ${status}, got ${JSON.stringify(result.kind === 'request' ? { ...result.request, rest: undefined } : result)}`);
  assert.equal(result.status, status, result.reason);
  assert.equal(result.publicText, publicText);
}

describe('ConnectRequestParser: requests Go accepts', () => {
  test('the exact request kube-apiserver sends, in one chunk', () => {
    const request = expectRequest(parseWhole(KUBE_APISERVER_CONNECT));
    assert.equal(request.method, 'CONNECT');
    assert.equal(request.target, '10.0.0.5:10250');
    assert.equal(request.version, 'HTTP/1.1');
    assert.equal(request.protoMajor, 1);
    assert.equal(request.protoMinor, 1);
    assert.equal(request.host, '10.0.0.5:10250', 'dial address is the request-target, not the Host header');
    assert.deepEqual([...request.headers], [['host', ['127.0.0.1']]]);
    assert.equal(request.rest.length, 0);
    assert.equal(request.headBytes, KUBE_APISERVER_CONNECT.length);
    assert.equal(request.closeRequested, false);
    assert.equal(request.hasBody, false);
  });

  test('byte by byte gives the same request, completed by the final LF', () => {
    const { result, pushes } = parseByteByByte(latin1(KUBE_APISERVER_CONNECT));
    assert.equal(pushes, KUBE_APISERVER_CONNECT.length);
    const request = expectRequest(result);
    assert.equal(request.host, '10.0.0.5:10250');
    assert.equal(request.rest.length, 0);
  });

  test('bytes pipelined after the head are kept, whatever the chunking', () => {
    const tunnelled = Buffer.concat([latin1(KUBE_APISERVER_CONNECT), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x0d, 0x0a, 0x0d, 0x0a])]);
    for (let split = 1; split < tunnelled.length; split++) {
      const parser = new ConnectRequestParser();
      const first = parser.push(tunnelled.subarray(0, split));
      const result = first.kind === 'need-more' ? parser.push(tunnelled.subarray(split)) : first;
      const request = expectRequest(result);
      const deliveredLater = first.kind === 'need-more' ? Buffer.alloc(0) : tunnelled.subarray(split);
      assert.deepEqual(Buffer.concat([request.rest, deliveredLater]), tunnelled.subarray(KUBE_APISERVER_CONNECT.length), `split at ${split}`);
    }
  });

  test('pipelined bytes are a copy: reusing the read buffer afterwards does not change them', () => {
    // A whole head in the first read is scanned in place (no copy of the head); `rest` must still own its bytes.
    for (const splitHead of [false, true]) {
      const read = Buffer.from(`${KUBE_APISERVER_CONNECT}hello`, 'latin1');
      const parser = new ConnectRequestParser();
      if (splitHead) assert.deepEqual(parser.push(read.subarray(0, 10)), { kind: 'need-more' });
      const request = expectRequest(parser.push(splitHead ? read.subarray(10) : read));
      read.fill(0x58);
      assert.equal(Buffer.from(request.rest).toString('latin1'), 'hello', `head split: ${splitHead}`);
      assert.equal(request.host, '10.0.0.5:10250');
    }
  });

  test('the request is returned with the chunk that completes the head, not later', () => {
    const parser = new ConnectRequestParser();
    assert.deepEqual(parser.push(latin1('CONNECT a:1 HTTP/1.1\r\nHost: x\r\n\r')), { kind: 'need-more' });
    expectRequest(parser.push(latin1('\nhello')));
    assert.equal(parser.done, true);
  });

  test('bare LF line endings, as Go textproto accepts', () => {
    const request = expectRequest(parseWhole('CONNECT example.com:443 HTTP/1.1\nHost: 127.0.0.1\n\nxyz'));
    assert.equal(request.host, 'example.com:443');
    assert.equal(Buffer.from(request.rest).toString(), 'xyz');
    expectRequest(parseWhole('CONNECT example.com:443 HTTP/1.1\r\nHost: 127.0.0.1\n\r\n'));
  });

  test('no headers at all is fine for CONNECT', () => {
    const request = expectRequest(parseWhole('CONNECT a:1 HTTP/1.1\r\n\r\n'));
    assert.equal(request.host, 'a:1');
    assert.equal(request.headers.size, 0);
  });

  test('IPv6, zone and hostname targets keep their exact text as the dial address', () => {
    const cases: Array<[string, string]> = [
      ['[::1]:443', '[::1]:443'],
      ['[2001:db8::5]:10250', '[2001:db8::5]:10250'],
      ['[fe80::1%25eth0]:80', '[fe80::1%eth0]:80'],
      ['[::ffff:10.0.0.1]:22', '[::ffff:10.0.0.1]:22'],
      ['node-1.cluster.local:10250', 'node-1.cluster.local:10250'],
      ['kubernetes.default.svc', 'kubernetes.default.svc'],
      ['a:', 'a:'],
      ['user:pw@host:1', 'host:1'],
      ['host:80/ignored/path', 'host:80'],
      ['host:80?q=1', 'host:80'],
      ['%C3%A9t%C3%A9.example:80', 'été.example:80'],
      ['a::80', 'a::80'],
    ];
    for (const [target, host] of cases) {
      const request = expectRequest(parseWhole(`CONNECT ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`));
      assert.equal(request.host, host, target);
      assert.equal(request.target, target);
    }
  });

  test('an empty authority falls back to the Host header, as Go sets r.Host', () => {
    assert.equal(expectRequest(parseWhole('CONNECT /rpc HTTP/1.1\r\nHost: h:9\r\n\r\n')).host, 'h:9');
    assert.equal(expectRequest(parseWhole('CONNECT ? HTTP/1.1\r\nHost: h:9\r\n\r\n')).host, 'h:9');
    assert.equal(expectRequest(parseWhole('CONNECT  HTTP/1.1\r\nHost: h:9\r\n\r\n')).host, 'h:9');
    assert.equal(expectRequest(parseWhole('CONNECT /rpc HTTP/1.1\r\n\r\n')).host, '');
  });

  test('header names are lowercased, repeated fields keep order, values are trimmed', () => {
    const request = expectRequest(
      parseWhole('CONNECT a:1 HTTP/1.1\r\nHost: x\r\nX-Foo:  one \r\nx-foo:\ttwo\t\r\nUser-Agent: kube-apiserver\r\nEmpty:\r\n\r\n'),
    );
    assert.deepEqual(request.headers.get('x-foo'), ['one', 'two']);
    assert.deepEqual(request.headers.get('user-agent'), ['kube-apiserver']);
    assert.deepEqual(request.headers.get('empty'), ['']);
  });

  test('obs-fold continuation lines are joined with one space, as Go does', () => {
    const request = expectRequest(parseWhole('CONNECT a:1 HTTP/1.1\r\nX-Long: first  \r\n   second\r\n\tthird\r\nHost: x\r\n\r\n'));
    assert.deepEqual(request.headers.get('x-long'), ['first second third']);
  });

  test('obs-text and UTF-8 in values are kept as text', () => {
    const request = expectRequest(parseWhole(Buffer.concat([latin1('CONNECT a:1 HTTP/1.1\r\nX-Name: '), Buffer.from('Zoë'), latin1('\r\n\r\n')])));
    assert.deepEqual(request.headers.get('x-name'), ['Zoë']);
  });

  test('other methods parse, for the frontend to answer 405', () => {
    const get = expectRequest(parseWhole('GET / HTTP/1.1\r\nHost: proxy\r\n\r\n'));
    assert.equal(get.method, 'GET');
    assert.equal(get.host, 'proxy');
    // Go's methods are case-sensitive: "connect" is not CONNECT, and "a:1" is an opaque URI.
    assert.equal(expectRequest(parseWhole('connect a:1 HTTP/1.1\r\nHost: x\r\n\r\n')).method, 'connect');
    assert.equal(expectRequest(parseWhole('GET http://other:8080/x HTTP/1.1\r\nHost: ignored\r\n\r\n')).host, 'other:8080');
    assert.equal(expectRequest(parseWhole('OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n')).host, 'h');
    assert.equal(expectRequest(parseWhole('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')).method, 'PRI');
  });

  test('HTTP/1.0 and connection management flags', () => {
    const http10 = expectRequest(parseWhole('CONNECT a:1 HTTP/1.0\r\n\r\n'));
    assert.equal(http10.protoMinor, 0);
    assert.equal(http10.closeRequested, true);
    assert.equal(http10.http10KeepAlive, false);
    const keepAlive = expectRequest(parseWhole('CONNECT a:1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n'));
    assert.equal(keepAlive.closeRequested, false);
    assert.equal(keepAlive.http10KeepAlive, true);
    assert.equal(expectRequest(parseWhole('CONNECT a:1 HTTP/1.1\r\nConnection: foo, close\r\n\r\n')).closeRequested, true);
    // Go treats HTTP/1.2 as HTTP/1.x.
    assert.equal(expectRequest(parseWhole('CONNECT a:1 HTTP/1.2\r\n\r\n')).protoMinor, 2);
  });

  test('body framing: Content-Length and chunked set hasBody; Transfer-Encoding is ignored on HTTP/1.0', () => {
    assert.equal(expectRequest(parseWhole('CONNECT a:1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n')).hasBody, false);
    assert.equal(expectRequest(parseWhole('CONNECT a:1 HTTP/1.1\r\nContent-Length: 5\r\nContent-Length:  5 \r\n\r\n')).hasBody, true);
    assert.equal(expectRequest(parseWhole('CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: Chunked\r\nContent-Length: x\r\n\r\n')).hasBody, true);
    assert.equal(expectRequest(parseWhole('CONNECT a:1 HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n')).hasBody, false);
    expectRequest(parseWhole('CONNECT a:1 HTTP/1.1\r\nExpect: 100-continue\r\n\r\n'));
  });
});

describe('ConnectRequestParser: heads Go refuses', () => {
  const plain400: string[] = [
    '\r\n',
    '\n',
    'CONNECT\r\n\r\n',
    'CONNECT a:1\r\n\r\n',
    'CONNECT a:1 HTTP/1.1 extra\r\n\r\n',
    'CONNECT  a:1 HTTP/1.1\r\n\r\n',
    ' CONNECT a:1 HTTP/1.1\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\r\n\r\n',
    'CONNECT a:1 http/1.1\r\n\r\n',
    'CONNECT a:1 HTTP/1.10\r\n\r\n',
    'CONNECT a:1 HTTP/1\r\n\r\n',
    'CONNECT a:1 HTTP/a.1\r\n\r\n',
    'CON(NECT a:1 HTTP/1.1\r\n\r\n',
    'CONNECT a:x HTTP/1.1\r\n\r\n',
    'CONNECT a:1:x HTTP/1.1\r\n\r\n',
    'CONNECT [1.2.3.4]:80 HTTP/1.1\r\n\r\n',
    'CONNECT [::1 HTTP/1.1\r\n\r\n',
    'CONNECT [::1]x HTTP/1.1\r\n\r\n',
    'CONNECT [nonsense]:1 HTTP/1.1\r\n\r\n',
    'CONNECT a[::1]:1 HTTP/1.1\r\n\r\n',
    'CONNECT [fe80::1%25]:1 HTTP/1.1\r\n\r\n',
    'CONNECT [fe80::1%eth0]:1 HTTP/1.1\r\n\r\n',
    'CONNECT a%41:80 HTTP/1.1\r\n\r\n',
    'CONNECT a%zz:80 HTTP/1.1\r\n\r\n',
    'CONNECT a^b:80 HTTP/1.1\r\n\r\n',
    'CONNECT a{b}:80 HTTP/1.1\r\n\r\n',
    'CONNECT a\x01b:80 HTTP/1.1\r\n\r\n',
    'CONNECT a\x7fb:80 HTTP/1.1\r\n\r\n',
    'CONNECT us er@a:80 HTTP/1.1\r\n\r\n',
    'CONNECT u^s@a:80 HTTP/1.1\r\n\r\n',
    'CONNECT u%zz@a:80 HTTP/1.1\r\n\r\n',
    'CONNECT a:80/%zz HTTP/1.1\r\n\r\n',
    'GET relative HTTP/1.1\r\nHost: h\r\n\r\n',
    'GET :nope HTTP/1.1\r\nHost: h\r\n\r\n',
    'GET /%g0 HTTP/1.1\r\nHost: h\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nNoColon\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\n Leading: space\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\n\tLeading: tab\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\n: empty name\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nTab\tName: x\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nBad(Name): x\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nX: nul\x00here\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nX: del\x7fhere\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nX: bare\rcr\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nX: a\r\n  b\x01\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nContent-Length: abc\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nContent-Length: -1\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nContent-Length: +1\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nContent-Length: \r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n',
    'CONNECT a:1 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
  ];
  for (const input of plain400) {
    test(`400 for ${JSON.stringify(input)}`, () => {
      expectError(parseWhole(input), 400, null);
      expectError(parseByteByByte(latin1(input)).result, 400, null);
    });
  }

  const withText: Array<[string, number, string | null]> = [
    ['GET / HTTP/1.1\r\n\r\n', 400, 'missing required Host header'],
    ['CONNECT a:1 HTTP/1.1\r\nHost: a b\r\n\r\n', 400, 'malformed Host header'],
    ['CONNECT a:1 HTTP/1.1\r\nHost: a/b\r\n\r\n', 400, 'malformed Host header'],
    ['CONNECT a:1 HTTP/1.1\r\nFoo Bar: x\r\n\r\n', 400, 'invalid header name'],
    ['CONNECT a:1 HTTP/1.1\r\nFoo : x\r\n\r\n', 400, 'invalid header name'],
    ['CONNECT a:1 HTTP/2.0\r\n\r\n', 505, 'unsupported protocol version'],
    ['CONNECT a:1 HTTP/0.9\r\n\r\n', 505, 'unsupported protocol version'],
    ['CONNECT a:1 HTTP/3.0\r\n\r\n', 505, 'unsupported protocol version'],
    ['CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n', 501, null],
    ['CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', 501, null],
    ['CONNECT a:1 HTTP/1.1\r\nExpect: something\r\n\r\n', 417, null],
  ];
  for (const [input, status, publicText] of withText) {
    test(`${status} ${publicText ?? ''} for ${JSON.stringify(input)}`, () => {
      expectError(parseWhole(input), status, publicText);
      expectError(parseByteByByte(latin1(input)).result, status, publicText);
    });
  }

  test('a 417 remembers the request version, for the response line', () => {
    const result = parseWhole('CONNECT a:1 HTTP/1.0\r\nExpect: x\r\n\r\n');
    assert.equal(result.kind, 'error');
    assert.deepEqual(result.kind === 'error' && result.version, { major: 1, minor: 0 });
  });

  test('a TLS ClientHello sent to a plaintext port is refused at its first byte', () => {
    const clientHello = Buffer.from('16030100f8010000f40303' + '00'.repeat(40), 'hex');
    const { result, pushes } = parseByteByByte(clientHello);
    expectError(result, 400);
    assert.equal(pushes, 1);
  });

  test('binary garbage is refused without waiting for a line end', () => {
    expectError(parseWhole(Buffer.from([0x00, 0xff, 0x80, 0x41])), 400);
    expectError(parseWhole('GE\u00ffT / HTTP/1.1'), 400);
  });

  test('a method still being received is not refused early', () => {
    const parser = new ConnectRequestParser();
    assert.equal(parser.push(latin1('CONNE')).kind, 'need-more');
    assert.equal(parser.push(latin1('CT a:1 HTTP/1.1')).kind, 'need-more');
    // Control bytes after the method are judged once the line is complete.
    assert.equal(parser.push(latin1('\x01')).kind, 'need-more');
    expectError(parser.push(latin1('\r\n')), 400);
  });

  test('missing line end: need-more until EOF, then 400; EOF with nothing received is a silent close', () => {
    const parser = new ConnectRequestParser();
    assert.equal(parser.push(latin1('CONNECT a:1 HTTP/1.1')).kind, 'need-more');
    const atEof = parser.end();
    assert.ok(atEof && atEof.kind === 'error');
    assert.equal(atEof.status, 400);
    assert.equal(new ConnectRequestParser().end(), null);
    const headersPending = new ConnectRequestParser();
    headersPending.push(latin1('CONNECT a:1 HTTP/1.1\r\nHost: x\r\n'));
    assert.equal(headersPending.end()?.kind, 'error');
  });

  test('once done, further input is ignored and the outcome repeated', () => {
    const parser = new ConnectRequestParser();
    const error = parser.push(latin1('\x16'));
    assert.equal(parser.push(latin1(KUBE_APISERVER_CONNECT)), error);
    assert.equal(parser.end(), error);
    const ok = new ConnectRequestParser();
    const request = ok.push(latin1(KUBE_APISERVER_CONNECT));
    assert.equal(ok.push(latin1('more tunnel bytes')), request);
  });
});

describe('ConnectRequestParser: head size limit', () => {
  test('the limit is MaxHeaderBytes plus Go bufio slack, default 1 MiB', () => {
    assert.equal(new ConnectRequestParser().headLimit, DEFAULT_MAX_HEADER_BYTES + HEADER_READ_SLACK_BYTES);
    assert.equal(new ConnectRequestParser({ maxHeaderBytes: 100 }).headLimit, 100 + HEADER_READ_SLACK_BYTES);
    assert.throws(() => new ConnectRequestParser({ maxHeaderBytes: 0 }), RangeError);
  });

  function headOfLength(length: number): string {
    const prefix = 'CONNECT a:1 HTTP/1.1\r\nX-Pad: ';
    const suffix = '\r\n\r\n';
    return prefix + 'p'.repeat(length - prefix.length - suffix.length) + suffix;
  }

  test('a head of exactly the limit is accepted; one byte more is 431', () => {
    const limit = 100 + HEADER_READ_SLACK_BYTES;
    const exact = expectRequest(parseWhole(headOfLength(limit) + 'tail', 100));
    assert.equal(exact.headBytes, limit);
    assert.equal(Buffer.from(exact.rest).toString(), 'tail');
    expectError(parseWhole(headOfLength(limit + 1), 100), 431);
    expectError(parseByteByByte(latin1(headOfLength(limit + 1)), 100).result, 431);
  });

  test('an oversized head is refused without buffering more than the limit', () => {
    const parser = new ConnectRequestParser();
    const line = latin1('CONNECT a:1 HTTP/1.1\r\n');
    assert.equal(parser.push(line).kind, 'need-more');
    const chunk = Buffer.alloc(64 * 1024, 'x-header-name-without-colon-'.charCodeAt(0));
    let result: ConnectRequestParseResult = { kind: 'need-more' };
    while (result.kind === 'need-more') {
      result = parser.push(chunk);
      assert.ok(parser.bufferedBytes <= parser.headLimit);
    }
    expectError(result, 431);
    assert.equal(parser.bufferedBytes, 0, 'the buffer is released once done');
  });

  test('a huge request line in one 2 MiB chunk is 431, a huge garbage one is 400', () => {
    expectError(parseWhole(latin1('CONNECT ' + 'a'.repeat(2 * 1024 * 1024))), 431);
    expectError(parseWhole(latin1('GET /' + 'a'.repeat(2 * 1024 * 1024))), 431);
    expectError(parseWhole(latin1('\u00ff'.repeat(2 * 1024 * 1024))), 400);
  });

  test('a malformed line before the limit is 400, as Go reports it before reading further', () => {
    expectError(parseWhole(latin1('CONNECT a:1 HTTP/1.1\r\nbad line\r\n' + 'x'.repeat(2 * 1024 * 1024))), 400);
  });
});

describe('ConnectRequestParser: properties', () => {
  /** Outcome without the fields that legitimately depend on chunking. */
  function summary(result: ConnectRequestParseResult): unknown {
    if (result.kind === 'need-more') return result;
    if (result.kind === 'error') return { kind: 'error', status: result.status, publicText: result.publicText };
    const { rest: _rest, ...request } = result.request;
    return { kind: 'request', ...request, headers: [...request.headers] };
  }

  function feedChunks(input: Uint8Array, cuts: number[], maxHeaderBytes: number) {
    const parser = new ConnectRequestParser({ maxHeaderBytes });
    const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
    let start = 0;
    let result: ConnectRequestParseResult = { kind: 'need-more' };
    let afterHead = Buffer.alloc(0);
    for (const end of [...points, input.length]) {
      if (end <= start) continue;
      const chunk = input.subarray(start, end);
      start = end;
      if (result.kind !== 'need-more') {
        afterHead = Buffer.concat([afterHead, chunk]);
        continue;
      }
      result = parser.push(chunk);
      assert.ok(parser.bufferedBytes <= parser.headLimit, 'buffered beyond the limit');
    }
    return { result, afterHead, parser };
  }

  const fragments = [
    'CONNECT', 'GET', 'PRI', ' ', '  ', 'a:1', '[::1]:443', '[fe80::1%25x]:1', '%41', '%zz', '/', '*', '?', '@',
    'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', '\r\n', '\n', '\r', '\r\n\r\n', 'Host: x', 'Host:', ':', '\t', ' folded',
    'Content-Length: 3', 'Transfer-Encoding: chunked', 'Expect: 100-continue', 'Connection: close', '\x00', '\x16\x03\x01', '\xff',
  ];
  const httpish = fc.array(fc.constantFrom(...fragments), { maxLength: 40 }).map((parts) => latin1(parts.join('')));
  const anyInput = fc.oneof(fc.uint8Array({ maxLength: 600 }), httpish);

  test('never throws, never buffers beyond the limit, and chunking does not change the outcome', () => {
    fc.assert(
      fc.property(anyInput, fc.array(fc.nat(), { maxLength: 12 }), fc.integer({ min: 1, max: 300 }), (input, cuts, maxHeaderBytes) => {
        const whole = new ConnectRequestParser({ maxHeaderBytes });
        const expected = whole.push(input);
        assert.ok(whole.bufferedBytes <= whole.headLimit);
        const { result, afterHead, parser } = feedChunks(input, cuts, maxHeaderBytes);
        assert.deepEqual(summary(result), summary(expected));
        if (result.kind === 'request' && expected.kind === 'request') {
          assert.deepEqual(Buffer.concat([result.request.rest, afterHead]), Buffer.from(expected.request.rest));
        }
        if (result.kind === 'need-more') {
          const atEof = parser.end();
          assert.ok(atEof === null || atEof.kind === 'error');
        }
      }),
      { numRuns: 3000 },
    );
  });

  test('limit holds for large random input with a small maximum', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 20_000 }), fc.array(fc.integer({ min: 1, max: 20_000 }), { maxLength: 6 }), (input, cuts) => {
        const { result, parser } = feedChunks(input, cuts, 64);
        assert.ok(parser.bufferedBytes <= parser.headLimit);
        assert.ok(result.kind !== 'request' || result.request.headBytes <= parser.headLimit);
      }),
      { numRuns: 300 },
    );
  });
});
