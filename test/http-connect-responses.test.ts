import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import * as responses from '../src/server/http-connect/connect-responses.ts';
import { mapDialErrorToHTTPStatus } from '../src/server/http-connect/dial-error-status.ts';
import { formatHttpDate } from '../src/server/http-connect/http-date.ts';
import { looksLikePlaintextHttp, plaintextHttpOnTlsPort } from '../src/server/http-connect/plaintext-on-tls-port.ts';
import { ConnectRequestParser, type ConnectRequestParseError } from '../src/server/http-connect/connect-request-parser.ts';

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1');
const DATE = new Date(Date.UTC(2006, 0, 2, 15, 4, 5, 678));
const DATE_TEXT = 'Mon, 02 Jan 2006 15:04:05 GMT';

function parseErrorOf(input: string): ConnectRequestParseError {
  const result = new ConnectRequestParser().push(Buffer.from(input, 'latin1'));
  if (result.kind !== 'error') assert.fail(`expected a parse error for ${JSON.stringify(input)}`);
  return result;
}

describe('mapDialErrorToHTTPStatus', () => {
  const table: Array<[string, number]> = [
    ['dial tcp 10.0.0.5:10250: i/o timeout', 504],
    ['context deadline exceeded', 504],
    ['rpc error: DEADLINE EXCEEDED', 504],
    ['dial timeout', 504],
    ['Backend dial timeout: timed out waiting for backend dial', 504],
    ['dial tcp: lookup x: i/o timeout while connection refused', 504],
    ['socket: too many open files', 503],
    ['accept4: Too Many Open Files', 503],
    ['dial tcp 10.0.0.5:10250: connect: connection refused', 502],
    ['read tcp 10.0.0.1:1->10.0.0.5:2: read: connection reset by peer', 502],
    ['write: broken pipe', 502],
    ['dial tcp 10.9.9.9:443: connect: network is unreachable', 502],
    ['dial tcp 10.9.9.9:443: connect: no route to host', 502],
    ['host is unreachable', 502],
    ['network is down', 502],
    ['dial tcp: lookup nosuchhost on 10.96.0.10:53: no such host', 502],
    ['temporary failure in name resolution', 502],
    ['remote error: tls: bad certificate', 502],
    ['SSL routines', 502],
    ['x509: certificate signed by unknown authority', 502],
    ['something unexpected', 502],
    ['', 502],
    // First rule wins: "timeout" beats "too many open files".
    ['too many open files (timeout)', 504],
    // "timed out" alone matches no rule in upstream's list (HEAD per the spec).
    ['operation timed out', 502],
  ];
  for (const [error, status] of table) {
    test(`${JSON.stringify(error)} -> ${status}`, () => assert.equal(mapDialErrorToHTTPStatus(error), status));
  }
});

describe('HTTP-CONNECT responses, byte for byte', () => {
  test('200 Connection Established has no headers', () => {
    assert.equal(text(responses.connectionEstablished()), 'HTTP/1.1 200 Connection Established\r\n\r\n');
  });

  test('HTTP date is IMF-fixdate at whole seconds', () => {
    assert.equal(formatHttpDate(DATE), DATE_TEXT);
    assert.equal(formatHttpDate(new Date(Date.UTC(2024, 1, 9, 1, 2, 3))), 'Fri, 09 Feb 2024 01:02:03 GMT');
  });

  const plain11 = { method: 'GET', protoMajor: 1, protoMinor: 1, closeRequested: false, http10KeepAlive: false, hasBody: false };
  const head405 = (version: string, connection: string | null): string =>
    `${version} 405 Method Not Allowed\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    'X-Content-Type-Options: nosniff\r\n' +
    `Date: ${DATE_TEXT}\r\n` +
    'Content-Length: 45\r\n' +
    (connection ? `Connection: ${connection}\r\n` : '') +
    '\r\n';
  const body405 = 'this proxy only supports CONNECT passthrough\n';

  test('405 for an HTTP/1.1 request: Go keeps the connection, so no Connection header', () => {
    assert.equal(text(responses.methodNotAllowed(plain11, DATE)), head405('HTTP/1.1', null) + body405);
    assert.equal(responses.closesAfterMethodNotAllowed(plain11), false);
    assert.equal(text(responses.methodNotAllowed(undefined, DATE)), head405('HTTP/1.1', null) + body405);
  });

  test('405 variants: Connection: close, HTTP/1.0, HTTP/1.0 keep-alive, HEAD, request with a body', () => {
    const close = { ...plain11, closeRequested: true };
    assert.equal(text(responses.methodNotAllowed(close, DATE)), head405('HTTP/1.1', 'close') + body405);
    assert.equal(responses.closesAfterMethodNotAllowed(close), true);

    const http10 = { ...plain11, protoMinor: 0, closeRequested: true };
    assert.equal(text(responses.methodNotAllowed(http10, DATE)), head405('HTTP/1.0', null) + body405);
    assert.equal(responses.closesAfterMethodNotAllowed(http10), true);

    const http10KeepAlive = { ...plain11, protoMinor: 0, http10KeepAlive: true };
    assert.equal(text(responses.methodNotAllowed(http10KeepAlive, DATE)), head405('HTTP/1.0', 'keep-alive') + body405);
    assert.equal(responses.closesAfterMethodNotAllowed(http10KeepAlive), false);

    assert.equal(text(responses.methodNotAllowed({ ...plain11, method: 'HEAD' }, DATE)), head405('HTTP/1.1', null));

    const withBody = { ...plain11, method: 'POST', hasBody: true };
    assert.equal(text(responses.methodNotAllowed(withBody, DATE)), head405('HTTP/1.1', 'close') + body405);
    assert.equal(responses.closesAfterMethodNotAllowed(withBody), true);
  });

  test('500 when no agent is available: no Content-Length, body runs to the close', () => {
    assert.equal(
      text(responses.noTunnelsAvailable()),
      'HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\ncurrently no tunnels available: No agent available',
    );
    assert.equal(
      text(responses.noTunnelsAvailable('other')),
      'HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\ncurrently no tunnels available: other',
    );
  });

  test('502/504 when sending the DIAL_REQ failed', () => {
    assert.equal(
      text(responses.dialRequestSendFailed('rpc error: code = Unavailable desc = transport is closing')),
      'HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFailed to tunnel dial request: rpc error: code = Unavailable desc = transport is closing\r\n',
    );
    assert.equal(
      text(responses.dialRequestSendFailed(responses.BACKEND_DIAL_TIMEOUT_TEXT, { timedOut: true })),
      'HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nFailed to tunnel dial request: timed out waiting for backend dial\r\n',
    );
  });

  test('502 when the agent stream died and 504 when the backend dial timeout fired while pending', () => {
    assert.equal(
      text(responses.backendContextError('context canceled')),
      'HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBackend context error: context canceled\r\n',
    );
    assert.equal(
      text(responses.backendDialTimeout()),
      'HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBackend dial timeout: timed out waiting for backend dial\r\n',
    );
  });

  test('agent DIAL_RSP error: mapped status, Connection: close before the sorted headers, raw body', () => {
    assert.equal(
      text(responses.dialFailed('dial tcp 10.0.0.5:10250: connect: connection refused')),
      'HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ndial tcp 10.0.0.5:10250: connect: connection refused',
    );
    assert.equal(
      text(responses.dialFailed('dial tcp 10.0.0.5:10250: i/o timeout')),
      'HTTP/1.1 504 Gateway Timeout\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ndial tcp 10.0.0.5:10250: i/o timeout',
    );
    assert.equal(
      text(responses.dialFailed('socket: too many open files')),
      'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsocket: too many open files',
    );
    assert.equal(text(responses.dialFailed('')), 'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n');
    const utf8Body = Buffer.from('lookup é: no such host');
    assert.deepEqual(Buffer.from(responses.dialFailed('dial tcp: lookup é: no such host')).subarray(-utf8Body.length), utf8Body);
  });

  const errorHeaders = '\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n';
  test('Go server errors for refused heads: 400 bare, 400 with text, 431, 501, 505', () => {
    assert.equal(text(responses.parseError(parseErrorOf('\x16\x03\x01'))), `HTTP/1.1 400 Bad Request${errorHeaders}400 Bad Request`);
    assert.equal(
      text(responses.parseError(parseErrorOf('GET / HTTP/1.1\r\n\r\n'))),
      `HTTP/1.1 400 Bad Request: missing required Host header${errorHeaders}400 Bad Request: missing required Host header`,
    );
    assert.equal(
      text(responses.parseError(parseErrorOf('CONNECT a:1 HTTP/1.1\r\nHost: a b\r\n\r\n'))),
      `HTTP/1.1 400 Bad Request: malformed Host header${errorHeaders}400 Bad Request: malformed Host header`,
    );
    assert.equal(
      text(responses.parseError(parseErrorOf('CONNECT a:1 HTTP/1.1\r\nA B: c\r\n\r\n'))),
      `HTTP/1.1 400 Bad Request: invalid header name${errorHeaders}400 Bad Request: invalid header name`,
    );
    const oversized = new ConnectRequestParser({ maxHeaderBytes: 10 }).push(Buffer.alloc(5000, 0x41));
    assert.equal(oversized.kind, 'error');
    if (oversized.kind === 'error') {
      assert.equal(text(responses.parseError(oversized)), `HTTP/1.1 431 Request Header Fields Too Large${errorHeaders}431 Request Header Fields Too Large`);
    }
    assert.equal(
      text(responses.parseError(parseErrorOf('CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n'))),
      `HTTP/1.1 501 Not Implemented${errorHeaders}Unsupported transfer encoding`,
    );
    assert.equal(
      text(responses.parseError(parseErrorOf('CONNECT a:1 HTTP/2.0\r\n\r\n'))),
      `HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version${errorHeaders}505 HTTP Version Not Supported: unsupported protocol version`,
    );
  });

  test('417 for an unknown Expect goes through the ResponseWriter: Date, zero length, request version', () => {
    assert.equal(
      text(responses.parseError(parseErrorOf('CONNECT a:1 HTTP/1.1\r\nExpect: x\r\n\r\n'), DATE)),
      `HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: ${DATE_TEXT}\r\nContent-Length: 0\r\n\r\n`,
    );
    assert.equal(
      text(responses.parseError(parseErrorOf('CONNECT a:1 HTTP/1.0\r\nExpect: x\r\n\r\n'), DATE)),
      `HTTP/1.0 417 Expectation Failed\r\nConnection: close\r\nDate: ${DATE_TEXT}\r\nContent-Length: 0\r\n\r\n`,
    );
  });

  test('plaintext HTTP on the TLS port, answered only for the methods Go recognises', () => {
    assert.equal(text(plaintextHttpOnTlsPort()), 'HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n');
    assert.equal(looksLikePlaintextHttp(Buffer.from('GET / HTTP/1.1')), true);
    assert.equal(looksLikePlaintextHttp(Buffer.from('OPTIONS * HTTP/1.1')), true);
    assert.equal(looksLikePlaintextHttp(Buffer.from('CONNECT a:1 HTTP/1.1')), false);
    assert.equal(looksLikePlaintextHttp(Buffer.from('GET')), false);
    assert.equal(looksLikePlaintextHttp(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xf8])), false);
  });
});

describe('HTTP-CONNECT responses read by a real HTTP client over loopback', () => {
  /** A raw server that answers whatever head arrives with `respond(...)`, then closes. */
  async function rawServer(respond: () => Uint8Array): Promise<{ port: number; close: () => Promise<void> }> {
    const server = net.createServer((socket) => {
      const parser = new ConnectRequestParser();
      socket.on('data', (chunk) => {
        if (parser.done) return;
        if (parser.push(chunk).kind === 'need-more') return;
        socket.end(respond());
      });
      socket.on('error', () => {});
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as net.AddressInfo;
    return { port, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  async function connectVia(port: number): Promise<{ statusCode: number; body: string; headers: http.IncomingHttpHeaders }> {
    const request = http.request({ host: '127.0.0.1', port, method: 'CONNECT', path: '10.0.0.5:10250', agent: false });
    request.end();
    const [response, socket, head] = (await once(request, 'connect')) as [http.IncomingMessage, net.Socket, Buffer];
    const chunks: Buffer[] = [head];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(socket, 'close');
    return { statusCode: response.statusCode!, body: Buffer.concat(chunks).toString(), headers: response.headers };
  }

  test('an agent dial error reaches the client as the mapped status with its text as the body', async () => {
    const server = await rawServer(() => responses.dialFailed('dial tcp 10.0.0.5:10250: connect: connection refused'));
    try {
      const got = await connectVia(server.port);
      assert.equal(got.statusCode, 502);
      assert.equal(got.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(got.body, 'dial tcp 10.0.0.5:10250: connect: connection refused');
    } finally {
      await server.close();
    }
  });

  test('the 200 is a complete response with nothing after it', async () => {
    const server = await rawServer(() => responses.connectionEstablished());
    try {
      const got = await connectVia(server.port);
      assert.equal(got.statusCode, 200);
      assert.equal(got.body, '');
    } finally {
      await server.close();
    }
  });

  test('the 405 is a well-framed response a keep-alive client reads fully', async () => {
    const server = await rawServer(() => responses.methodNotAllowed());
    try {
      const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: server.port, path: '/', agent: false }, resolve).on('error', reject);
      });
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk as Buffer);
      assert.equal(response.statusCode, 405);
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.equal(Number.isNaN(Date.parse(response.headers.date!)), false);
      assert.equal(Buffer.concat(chunks).toString(), 'this proxy only supports CONNECT passthrough\n');
    } finally {
      await server.close();
    }
  });
});
