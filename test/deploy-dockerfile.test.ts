// Static checks of the Dockerfile (no Docker engine here): what it copies
// exists, the entrypoints it creates point at real launchers, it runs as
// uid 65532, and the launchers find the compiled entry modules the build emits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));

test('Dockerfile: COPY sources from the build context exist and are not .dockerignored', () => {
  const copies = [...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].map((m) => m[1]!.trim().split(/\s+/).slice(0, -1));
  assert.ok(copies.length > 0);
  for (const sources of copies) {
    for (const src of sources) {
      assert.ok(existsSync(path.join(ROOT, src)), `COPY ${src}: missing in the build context`);
      assert.ok(!dockerignore.includes(src), `COPY ${src}: excluded by .dockerignore`);
    }
  }
});

test('Dockerfile: multi-stage, Node LTS base, npm ci, non-root 65532, upstream entrypoints', () => {
  assert.ok((dockerfile.match(/^FROM /gm) ?? []).length >= 2, 'multi-stage');
  assert.match(dockerfile, /ARG NODE_IMAGE=node:(2[02468])-[a-z]+-slim/);
  assert.match(dockerfile, /npm ci --ignore-scripts/);
  assert.match(dockerfile, /npm ci --omit=dev --ignore-scripts/);
  assert.match(dockerfile, /^USER 65532:65532$/m);
  assert.match(dockerfile, /^ENTRYPOINT \["\/proxy-server"\]$/m);
  const links = Object.fromEntries([...dockerfile.matchAll(/ln -s \/app\/(\S+) (\/\S+)/g)].map((m) => [m[2]!, m[1]!]));
  assert.deepEqual(links, {
    '/proxy-server': 'bin/konnectivity-server',
    '/proxy-agent': 'bin/konnectivity-agent',
    '/konnectivity': 'bin/konnectivity',
  });
  for (const target of Object.values(links)) assert.ok(existsSync(path.join(ROOT, target)), `${target} missing`);
});

test('Dockerfile: each launcher loads a dist/ module that the build (tsconfig.build.json, src -> dist) emits', () => {
  const build = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.build.json'), 'utf8'));
  assert.equal(build.compilerOptions.rootDir, 'src');
  assert.equal(build.compilerOptions.outDir, 'dist');
  for (const bin of ['konnectivity-server', 'konnectivity-agent', 'konnectivity']) {
    const text = readFileSync(path.join(ROOT, 'bin', bin), 'utf8');
    // `env -S` (coreutils 8.30+, Debian bookworm has 9.1) passes the daemons' Node options.
    assert.match(text, /^#!\/usr\/bin\/env (-S )?node[ \n]/);
    const compiled = /'\.\.\/dist\/([^']+)\.js'/.exec(text);
    assert.ok(compiled, `bin/${bin} names no dist/ module`);
    assert.ok(existsSync(path.join(ROOT, 'src', `${compiled[1]}.ts`)), `bin/${bin}: src/${compiled[1]}.ts missing`);
  }
});
