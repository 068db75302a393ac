#!/usr/bin/env node
/**
 * `npm start` and `npm test` run this first (prestart, pretest): it runs
 * `npm run build` when dist/ is missing or older than what it is built from,
 * and does nothing otherwise. In a checkout, `npm install` builds nothing (the
 * package has no install-time script: a consumer's `npm install` must not
 * need TypeScript or esbuild); `npm pack` and `npm publish` build through
 * `prepack`.
 *
 * "Older" compares modification times: the oldest of the build's outputs
 * against the newest of its inputs (src/, the build scripts and configs,
 * package.json and the lockfile). A checkout or pull touches what it changes,
 * so a stale dist/ is rebuilt; when in doubt it rebuilds.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outputs = ['dist/index.js', 'dist/index.d.ts', 'dist/server/index.js', 'dist/client/index.js', 'dist/cli/main.js', 'dist/client.js'];
const inputs = ['src', 'scripts/build-client.mjs', 'tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'];

function mtime(path) {
  try {
    return statSync(join(root, path)).mtimeMs;
  } catch {
    return null;
  }
}

function newest(path) {
  const full = join(root, path);
  let st;
  try {
    st = statSync(full);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs; // a deleted file changes its directory
  for (const entry of readdirSync(full)) max = Math.max(max, newest(join(path, entry)));
  return max;
}

const outTimes = outputs.map(mtime);
const missing = outputs.filter((_, i) => outTimes[i] === null);
let reason = null;
if (missing.length > 0) reason = `${missing[0]} is missing`;
else {
  const built = Math.min(...outTimes);
  const changed = inputs.find((p) => newest(p) > built);
  if (changed !== undefined) reason = `${changed} changed since the last build`;
}
if (reason !== null) {
  console.error(`ensure-built: ${reason}: running npm run build`);
  const r = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  process.exit(r.status ?? 1);
}
