/**
 * Upstream's mapDialErrorToHTTPStatus (pkg/server/server.go, ANP >= v0.34):
 * the HTTP status an HTTP-CONNECT client gets when the agent answers a dial
 * with an error. It is a case-insensitive substring match on the agent's
 * error text, first rule wins, so it only works well when agents send
 * Go-style dial errors ("dial tcp 10.0.0.5:10250: connect: connection refused").
 */

export type DialErrorHttpStatus = 502 | 503 | 504;

interface DialErrorRule {
  status: DialErrorHttpStatus;
  fragments: readonly string[];
}

const DIAL_ERROR_RULES: readonly DialErrorRule[] = [
  { status: 504, fragments: ['i/o timeout', 'deadline exceeded', 'context deadline exceeded', 'timeout'] },
  { status: 503, fragments: ['too many open files'] },
  {
    status: 502,
    fragments: [
      'connection refused',
      'connection reset by peer',
      'broken pipe',
      'network is unreachable',
      'no route to host',
      'host is unreachable',
      'network is down',
    ],
  },
  { status: 502, fragments: ['no such host', 'name resolution'] },
  { status: 502, fragments: ['tls', 'ssl', 'certificate'] },
];

export function mapDialErrorToHTTPStatus(errorText: string): DialErrorHttpStatus {
  const lower = errorText.toLowerCase();
  for (const rule of DIAL_ERROR_RULES) {
    if (rule.fragments.some((fragment) => lower.includes(fragment))) return rule.status;
  }
  return 502;
}
