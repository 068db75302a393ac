#!/usr/bin/env node
/**
 * Build the browser bundle of the client SDK: src/client/index.ts → one ESM
 * file, minified, target es2020, platform browser (@msgpack/msgpack resolves to its
 * browser build). `npm run build` runs it after tsc.
 *
 *   node scripts/build-client.mjs [--outfile dist/client.js] [--no-minify]
 *
 * Fails when the bundle would import anything (a `node:` module, a bare
 * package): a browser has nothing to resolve it with.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : process.argv[i + 1];
}

const outfile = resolve(root, arg('--outfile', 'dist/client.js'));
const minify = !process.argv.includes('--no-minify');

const result = await build({
  entryPoints: [resolve(root, 'src/client/index.ts')],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify,
  sourcemap: 'external',
  outfile,
  write: false,
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});

const code = result.outputFiles.find((f) => f.path.endsWith('.js'));
const map = result.outputFiles.find((f) => f.path.endsWith('.js.map'));
// Every import must have been bundled: nothing may stay external.
const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports ?? []).filter((i) => i.external);
if (imports.length > 0) {
  console.error(`build-client: the bundle would import ${imports.map((i) => i.path).join(', ')}`);
  process.exit(1);
}
if (/\bnode:[a-z_]/.test(code.text)) {
  console.error('build-client: the bundle mentions a node: module');
  process.exit(1);
}
mkdirSync(dirname(outfile), { recursive: true });
writeFileSync(outfile, code.text);
if (map) writeFileSync(`${outfile}.map`, map.text);
console.log(`build-client: ${outfile} (${(code.contents.byteLength / 1024).toFixed(1)} KiB)`);
