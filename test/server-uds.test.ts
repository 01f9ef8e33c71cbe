/**
 * The unix socket frontend as the real konnectivity-server binary creates it
 * (--uds-name): mode 0770 (srwxrwx---, what upstream's umask 0007 gives, so
 * only owner and group can connect), and --delete-existing-uds-file: a
 * socket file left by a killed server is replaced by default, and with
 * =false startup fails with a message naming the file and the flag.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPki } from './helpers/cluster.ts';
import { spawnBin, type BinProcess } from './helpers/processes.ts';
import { freePort } from './helpers/targets.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kts-uds-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function serverArgs(uds: string, extra: string[] = []): Promise<string[]> {
  const pki = await sharedPki();
  return [
    `--uds-name=${uds}`,
    '--server-port=0',
    '--mode=http-connect',
    `--cluster-cert=${pki.server.certPath}`,
    `--cluster-key=${pki.server.keyPath}`,
    `--agent-port=${await freePort()}`,
    '--agent-bind-address=127.0.0.1',
    `--admin-port=${await freePort()}`,
    `--health-port=${await freePort()}`,
    '--health-bind-address=127.0.0.1',
    ...extra,
  ];
}

async function startServer(t: TestContext, uds: string, extra: string[] = []): Promise<BinProcess> {
  const server = spawnBin(t, 'konnectivity-server', await serverArgs(uds, extra));
  await server.waitForOutput('konnectivity-server started');
  return server;
}

/** A CONNECT through the socket; with no agent the server answers upstream's 500. */
async function connectStatusLine(uds: string): Promise<string> {
  const socket = net.connect(uds);
  await once(socket, 'connect');
  socket.write('CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  let text = '';
  socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
  await once(socket, 'close');
  return text.split('\r\n')[0]!;
}

/** The error code of a connection attempt, or '' if it connected. */
async function connectError(uds: string): Promise<string> {
  const socket = net.connect(uds);
  try {
    await once(socket, 'connect');
    return '';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  } finally {
    socket.destroy();
  }
}

/** Leaves the socket file behind, as a crashed or OOM-killed server does. */
async function kill(server: BinProcess): Promise<void> {
  server.child.kill('SIGKILL');
  await server.exited;
}

test('--uds-name: the frontend socket is created with mode 0770 (srwxrwx---) and serves', async (t) => {
  const uds = path.join(tempDir(t), 'konnectivity-server.socket');
  await startServer(t, uds);
  const st = statSync(uds);
  assert.ok(st.isSocket(), 'a unix socket');
  assert.equal((st.mode & 0o777).toString(8), '770');
  assert.equal(await connectStatusLine(uds), 'HTTP/1.1 500 Internal Server Error');
});

test('--delete-existing-uds-file: a stale socket file is replaced by default; with =false startup fails naming the file and the flag, and the file is left alone', async (t) => {
  const uds = path.join(tempDir(t), 'konnectivity-server.socket');
  await kill(await startServer(t, uds));
  assert.ok(existsSync(uds), 'the killed server left its socket file');
  assert.equal(await connectError(uds), 'ECONNREFUSED', 'nobody listens on the stale file');

  // Default (true): replaced by a live socket with the same mode.
  const second = await startServer(t, uds);
  assert.equal((statSync(uds).mode & 0o777).toString(8), '770');
  assert.equal(await connectStatusLine(uds), 'HTTP/1.1 500 Internal Server Error');
  await kill(second);
  const left = statSync(uds);

  const refused = spawnBin(t, 'konnectivity-server', await serverArgs(uds, ['--delete-existing-uds-file=false']));
  await refused.waitForOutput(/server failed to start|konnectivity-server started/);
  assert.ok(!refused.stderr().includes('konnectivity-server started'), `started over the existing file:\n${refused.stderr()}`);
  assert.equal((await refused.exited).code, 1, refused.stderr());
  assert.ok(refused.stderr().includes(`unix socket ${uds} already exists and --delete-existing-uds-file=false`), refused.stderr());
  const after = statSync(uds);
  assert.deepEqual([after.ino, after.ctimeMs], [left.ino, left.ctimeMs], 'the existing file was not touched');
  assert.equal(await connectError(uds), 'ECONNREFUSED');
});
