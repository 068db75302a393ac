#!/usr/bin/env node
// Runs the CLI from dist/: in the package it is there (`npm pack` builds it through `prepack`); in a
// checkout, `npm start` builds it when missing or stale, or run `npm run build`.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('switchboard: dist/ is missing; run `npm run build` first.');
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
