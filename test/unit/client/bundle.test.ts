/**
 * The browser bundle of the SDK (scripts/build-client.mjs → dist/client.js):
 * built into a temporary directory, it must be one self-contained ESM file
 * (no `import`, no `require`, no `node:` module), and it must load and work
 * in a fresh `vm` context that has only what a browser page has (no
 * `process`, `Buffer`, `require`, `global`).
 *
 * Also a compile-time check that the browser's own `WebSocket`,
 * `EventSource` and `fetch` types fit the SDK's options.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import vm from 'node:vm';
import { before, after, describe, test } from 'node:test';
import { transform } from 'esbuild';
import type { ClientOptions } from '../../../src/client/index.js';

// Compile-time: the DOM's constructors are accepted as options. This is checked by tsc (`npm test` runs
// `npm run typecheck` first), not at run time: a global that does not fit makes its slot `never`, and the
// assignment below fails to compile.
export type BrowserGlobalsFit = [
  typeof globalThis.WebSocket extends NonNullable<ClientOptions['WebSocket']> ? true : never,
  typeof globalThis.EventSource extends NonNullable<ClientOptions['EventSource']> ? true : never,
  typeof globalThis.fetch extends NonNullable<ClientOptions['fetch']> ? true : never,
];
export const fits: BrowserGlobalsFit = [true, true, true];
// ... and the check can fail: what does not have the shape the SDK uses is refused. (Were the option types
// loosened to `any`, every global would "fit"; then these directives go unused and tsc reports them.)
// @ts-expect-error a constructor without send(), close() and addEventListener() is no WebSocket
export const notAWebSocket: NonNullable<ClientOptions['WebSocket']> = class {
  constructor(readonly url: string) {}
};
// @ts-expect-error an EventSource needs close() and addEventListener()
export const notAnEventSource: NonNullable<ClientOptions['EventSource']> = class {
  readyState = 0;
};
// @ts-expect-error fetch resolves to a response, not a string
export const notAFetch: NonNullable<ClientOptions['fetch']> = async (url: string) => url;

const run = promisify(execFile);

describe('browser bundle', () => {
  let dir = '';
  let code = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-client-bundle-'));
    const { stdout } = await run(process.execPath, ['scripts/build-client.mjs', '--outfile', join(dir, 'client.js')], { cwd: new URL('../../../', import.meta.url) });
    assert.match(stdout, /build-client: .*client\.js/);
    code = await readFile(join(dir, 'client.js'), 'utf8');
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the package exports it as switchboard/client.js (dist/client.js, as built by npm run build)', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { exports: Record<string, unknown> };
    // With the SDK's types, so that `import 'switchboard/client.js'` type-checks under nodenext.
    assert.deepEqual(pkg.exports['./client.js'], { types: './dist/client/index.d.ts', default: './dist/client.js' });
    assert.equal((pkg.exports['./client'] as Record<string, string>).browser, './dist/client.js');
  });

  test('one self-contained ESM file: exports, no imports, no require, no node: modules', () => {
    assert.ok(code.length > 1000);
    assert.match(code, /export\s*\{[^}]*\bas Client\b/);
    assert.doesNotMatch(code, /\bnode:[a-z_]/);
    assert.doesNotMatch(code, /(^|[;}\s])import\s*[{*"'\w]/);
    assert.doesNotMatch(code, /\bimport\s*\(/);
    assert.doesNotMatch(code, /\brequire\s*\(/);
  });

  test('loads and works in a fresh vm context with only browser globals', async () => {
    // ESM → a script that assigns the exports to `SB` (vm.Script runs scripts, not modules).
    const { code: script } = await transform(code, { format: 'iife', globalName: 'SB', target: 'es2020' });
    const page = {
      console,
      setTimeout,
      clearTimeout,
      TextEncoder,
      TextDecoder,
      URL,
      crypto: { getRandomValues: (a: Uint8Array) => globalThis.crypto.getRandomValues(a) },
    };
    const context = vm.createContext(page);
    vm.runInContext(script, context, { filename: 'client.js' });
    vm.runInContext(
      `
      globalThis.nodeGlobals = [typeof process, typeof Buffer, typeof require, typeof global, typeof module].join();
      globalThis.sent = [];
      class FakeWebSocket {
        constructor(url, protocols) { this.url = url; this.protocols = protocols; this.readyState = 0; this.protocol = ''; this.l = {}; globalThis.ws = this; }
        addEventListener(type, fn) { (this.l[type] ||= []).push(fn); }
        emit(type, ev) { for (const fn of this.l[type] || []) fn(ev); }
        send(data) { sent.push(JSON.parse(data)); }
        close(code, reason) { this.readyState = 3; }
      }
      globalThis.client = new SB.Client('wss://rt.example/rt', { WebSocket: FakeWebSocket, token: 'tok' });
      globalThis.states = [];
      client.on('state', (s) => states.push(s));
      globalThis.connecting = client.connect();
      `,
      context,
    );
    const g = context as Record<string, any>;
    assert.equal(g.nodeGlobals, 'undefined,undefined,undefined,undefined,undefined');
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(g.ws.url, 'wss://rt.example/rt');
    assert.deepEqual([...g.ws.protocols], ['switchboard.v1.json']);
    vm.runInContext(`ws.readyState = 1; ws.protocol = 'switchboard.v1.json'; ws.emit('open', {});`, context);
    assert.deepEqual(JSON.parse(JSON.stringify(g.sent)), [{ op: 'auth', id: 1, token: 'tok' }]);
    vm.runInContext(
      `ws.emit('message', { data: JSON.stringify({ op: 'ok', id: 1, client: 'c1', user: 'u', expiresIn: null }) });
       globalThis.acked = client.publish('chat/a', { x: 1 });`,
      context,
    );
    await g.connecting;
    assert.deepEqual([...g.states], ['connecting', 'connected']);
    const pub = g.sent[1];
    assert.equal(pub.op, 'pub');
    assert.match(pub.key, /^[0-9a-f]{32}$/);
    vm.runInContext(`ws.emit('message', { data: JSON.stringify({ op: 'ok', id: ${pub.id}, offset: 1, epoch: 'e' }) });`, context);
    assert.equal((await g.acked).offset, 1);
    vm.runInContext('client.close()', context);
    assert.equal(g.client.state, 'closed');
  });
});
