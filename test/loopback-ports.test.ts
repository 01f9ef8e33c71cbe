/**
 * Ports for daemon flags that refuse 0 (`unusedLoopbackPort`, behind the tests'
 * `freePort`): below the kernel's ephemeral range, so no outgoing connection
 * can take one before the daemon binds it, and never the same port for two
 * test processes running side by side.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const module = fileURLToPath(new URL('../src/dev/loopback-ports.ts', import.meta.url));

function pickInChild(count: number): Promise<number[]> {
  const script = `import { unusedLoopbackPort } from ${JSON.stringify(module)};
const ports = [];
for (let i = 0; i < ${count}; i++) ports.push(await unusedLoopbackPort());
process.stdout.write(JSON.stringify(ports));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as number[]) : reject(new Error(`picker exited ${code}: ${err}`))));
  });
}

test('two processes picking 300 ports each at once never get the same port, and every port is below the ephemeral range and free', async () => {
  // Without the cross-process claims, 300 random picks each from 16,384 ports overlap about 5.5 times on average.
  const [a, b] = await Promise.all([pickInChild(300), pickInChild(300)]);
  assert.equal(new Set(a).size, 300, 'one process handed out a port twice');
  assert.equal(new Set(b).size, 300, 'one process handed out a port twice');
  const shared = a.filter((p) => b.includes(p));
  assert.deepEqual(shared, [], 'both processes got these ports');
  let ephemeralStart = 32768;
  try {
    ephemeralStart = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // not Linux: the default range
  }
  for (const port of [...a, ...b]) {
    assert.ok(port >= 1024 && port < ephemeralStart, `port ${port} is outside 1024..${ephemeralStart - 1}`);
  }
  // Free means a daemon can bind it now: try a sample.
  for (const port of a.slice(0, 20)) {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: '127.0.0.1', exclusive: true }, () => resolve());
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
