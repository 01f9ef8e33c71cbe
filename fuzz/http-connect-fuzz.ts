/**
 * HTTP-CONNECT request-head parser for the long-run fuzzer (the test suite
 * already has a fast-check property for it in test/http-connect-parser.test.ts;
 * this reuses the idea with mutation on top, at volume): the outcome does
 * not depend on chunking, nothing but a result comes out (no throw), the
 * buffer never exceeds the limit, and bytes after the head are never lost.
 */
import { ConnectRequestParser, type ConnectRequestParseResult } from '../src/server/http-connect/connect-request-parser.ts';
import { Rng } from './prng.ts';
import { FuzzViolation } from './router-fuzz.ts';

const FRAGMENTS = [
  'CONNECT', 'GET', 'PRI', ' ', '  ', 'a:1', '10.0.0.5:10250', '[::1]:443', '[fe80::1%25x]:1', '%41', '%zz', '%0d%0a', '/', '*', '?', '@',
  'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1000', '\r\n', '\n', '\r', '\r\n\r\n', 'Host: 127.0.0.1', 'Host:', ':', '\t', ' folded',
  'Content-Length: 3', 'Content-Length: -1', 'Transfer-Encoding: chunked', 'Expect: 100-continue', 'Connection: close', '\x00', '\x16\x03\x01', '\xff', 'x'.repeat(300),
];

function summary(r: ConnectRequestParseResult): string {
  if (r.kind === 'need-more') return 'need-more';
  if (r.kind === 'error') return `error ${r.status} ${r.publicText}`;
  const q = r.request;
  return `request ${q.method} ${q.target} ${q.version} host=${q.host} close=${q.closeRequested} body=${q.hasBody} head=${q.headBytes}`;
}

export function runHttpConnectCase(seed: number): void {
  const rng = new Rng(seed);
  const fail = (msg: string): never => {
    throw new FuzzViolation(`${msg} (seed ${seed})`);
  };
  let text = '';
  if (rng.bool(0.5)) text = `CONNECT ${rng.pick(['10.0.0.5:10250', '[fd00::1]:443', 'node-a:22'])} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
  for (let n = rng.int(30); n > 0; n--) text += rng.pick(FRAGMENTS);
  let input = Buffer.from(text, 'latin1');
  if (rng.bool(0.3)) {
    input = Buffer.from(input);
    for (let n = rng.range(1, 4); n > 0 && input.length; n--) input[rng.int(input.length)] = rng.next() & 0xff;
  }
  if (rng.bool(0.2)) input = Buffer.concat([input, Buffer.from(rng.bytes(rng.int(40)))]);
  const maxHeaderBytes = rng.pick([1, 16, 64, 300, 4096, 1 << 20]);

  let whole: ConnectRequestParser;
  let expected: ConnectRequestParseResult;
  try {
    whole = new ConnectRequestParser({ maxHeaderBytes });
    expected = whole.push(input);
  } catch (err) {
    return fail(`parser threw ${String(err)}`);
  }
  if (whole.bufferedBytes > whole.headLimit) fail('buffered beyond the limit');

  const parser = new ConnectRequestParser({ maxHeaderBytes });
  let result: ConnectRequestParseResult = { kind: 'need-more' };
  let after = Buffer.alloc(0);
  try {
    for (let pos = 0; pos < input.length; ) {
      const n = rng.bool(0.5) ? rng.range(1, 3) : rng.range(1, 200);
      const chunk = input.subarray(pos, pos + n);
      pos += n;
      if (result.kind !== 'need-more') {
        after = Buffer.concat([after, chunk]);
        continue;
      }
      result = parser.push(chunk);
      if (parser.bufferedBytes > parser.headLimit) fail('buffered beyond the limit while chunked');
    }
    if (result.kind === 'need-more') {
      const atEof = parser.end();
      if (atEof !== null && atEof.kind !== 'error') fail('EOF turned an incomplete head into a request');
    }
  } catch (err) {
    return fail(`parser threw on chunked input: ${String(err)}`);
  }
  if (summary(result) !== summary(expected)) fail(`chunking changed the outcome: ${summary(result)} vs ${summary(expected)}`);
  if (result.kind === 'request' && expected.kind === 'request') {
    if (Buffer.compare(Buffer.concat([result.request.rest, after]), expected.request.rest) !== 0) fail('bytes after the head were lost or changed');
    if (result.request.headBytes + expected.request.rest.length !== input.length) fail('head plus rest is not the input');
  }
}
