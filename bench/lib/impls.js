// The implementations under test, and how a child process loads one.
//
// `ws` decides at require time whether to use the `bufferutil` addon (it
// reads WS_NO_BUFFER_UTIL / WS_NO_UTF_8_VALIDATE then), so every
// implementation runs in a child process started with its own environment.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIST_ENTRY = path.join(ROOT, 'dist', 'index.js');

const WS_ENV_KEYS = ['WS_NO_BUFFER_UTIL', 'WS_NO_UTF_8_VALIDATE'];

/**
 * @typedef {object} ImplSpec
 * @property {string} name         label in the report
 * @property {string} specifier    what the child passes to import()
 * @property {Record<string,string>} env  extra environment for the child
 * @property {'none'|'bufferutil'|'any'} native  addons the child must (not) load
 * @property {string|null} unavailable  why it cannot run, or null
 * @property {string|null} note     shown in the report header
 */

function resolveSpecifier(spec) {
  if (spec.startsWith('.') || path.isAbsolute(spec)) return pathToFileURL(path.resolve(spec)).href;
  return spec;
}

/** @returns {Record<string, ImplSpec>} */
export function implementations(env = process.env) {
  const override = env.BENCH_SWITCHBOARD_MODULE;
  const sbSpecifier = override ? resolveSpecifier(override) : pathToFileURL(DIST_ENTRY).href;
  const sbMissing =
    !override && !existsSync(DIST_ENTRY)
      ? `dist/index.js not found (${DIST_ENTRY}): build first with \`npm run build\` (\`npm run bench\` does it for you)`
      : null;
  return {
    switchboard: {
      name: 'switchboard',
      specifier: sbSpecifier,
      env: {},
      native: 'any',
      unavailable: sbMissing,
      note: override ? `the "switchboard" slot is loaded from \`${override}\` (BENCH_SWITCHBOARD_MODULE), not dist/` : null,
    },
    ws: {
      name: 'ws',
      specifier: 'ws',
      env: { WS_NO_BUFFER_UTIL: '1', WS_NO_UTF_8_VALIDATE: '1' },
      native: 'none',
      unavailable: null,
      note: null,
    },
    'ws+native': {
      name: 'ws+native',
      specifier: 'ws',
      env: {},
      native: 'bufferutil',
      unavailable: null,
      note: null,
    },
  };
}

/** Environment for a child running `impl`: the parent's, minus ws switches, plus the impl's. */
export function childEnv(impl, base = process.env) {
  const env = { ...base };
  for (const k of WS_ENV_KEYS) delete env[k];
  return { ...env, ...impl.env };
}

/** Basenames of the native addons (.node files) loaded so far in this process. */
export function loadedNativeAddons() {
  const cache = createRequire(import.meta.url).cache;
  return Object.keys(cache)
    .filter((k) => k.endsWith('.node'))
    .map((k) => path.basename(k, '.node'))
    .sort();
}

/**
 * Called inside a child: import the implementation and check that the native
 * addons it was meant to use are (or are not) loaded.
 * @param {Pick<ImplSpec,'name'|'specifier'|'native'>} impl
 */
export async function loadImplementation(impl) {
  const mod = await import(impl.specifier);
  const WebSocket = mod.WebSocket ?? mod.default?.WebSocket;
  const WebSocketServer = mod.WebSocketServer ?? mod.default?.WebSocketServer ?? mod.default?.Server;
  if (typeof WebSocket !== 'function' || typeof WebSocketServer !== 'function') {
    throw new Error(`${impl.specifier} does not export WebSocket and WebSocketServer classes`);
  }
  const native = loadedNativeAddons();
  if (impl.native === 'bufferutil' && !native.includes('bufferutil')) {
    throw new Error(
      `${impl.name}: the bufferutil native addon did not load (run \`npm install\`; check node_modules/bufferutil/prebuilds)`,
    );
  }
  if (impl.native === 'none' && native.includes('bufferutil')) {
    throw new Error(`${impl.name}: bufferutil loaded although WS_NO_BUFFER_UTIL=1 was set`);
  }
  return { WebSocket, WebSocketServer, native };
}
