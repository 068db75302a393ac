/**
 * The package as an app gets it: `npm pack` in a copy of this checkout
 * (without dist/, so `prepack` builds it from the sources, as `npm publish`
 * does), the tarball installed into a fresh app in a temporary directory, and
 * there the README's snippets — the blocks after a `<!-- snippet: name -->`
 * comment, so the README and this test cannot drift:
 *
 * - type-checked as strict TypeScript: the Node ones with `module` and
 *   `moduleResolution` `nodenext` (no DOM types, `skipLibCheck: false`, so the
 *   package's own `.d.ts` are checked too), the browser one with the DOM and
 *   `moduleResolution: bundler`;
 * - run with Node: `library-echo` alone, `realtime-server` in the background
 *   with `sdk-node` against it, then SIGTERM (port 8080 replaced by a free one,
 *   the only edit); `backend-token` (a backend signing with `jose`), whose
 *   token the installed `switchboard token --check` must accept;
 * - `sdk-browser` bundled with esbuild for `platform: 'browser'` (and once
 *   more without the `browser` condition, as a bundler that ignores it would):
 *   nothing may stay external and no `node:` module may appear.
 *
 * The tarball's dependencies come from npm's cache when it has them
 * (`--prefer-offline`) and from the registry otherwise; every npm step is
 * bounded. TypeScript, `@types/node` and esbuild are this checkout's.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE_MODULES = realpathSync(join(ROOT, 'node_modules'));
const TSC = join(NODE_MODULES, 'typescript', 'bin', 'tsc');
const JWT_SECRET = 'a test secret of at least 32 bytes, for HS256';

/** What `npm pack --json` says of the tarball. */
interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}

/** The environment for npm and the snippets: without what the `npm test` around us set for its own script. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_(lifecycle_|package_|config_local_prefix|config_prefix|command|execpath|node_execpath)/i.test(k)) continue;
    if (k === 'INIT_CWD' || k === 'NODE_OPTIONS') continue; // NODE_OPTIONS may load tsx: the app runs plain Node
    env[k] = v;
  }
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], options: { cwd: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: options.cwd, env: options.env ?? childEnv(), timeout: options.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const why = err.killed ? `killed after ${options.timeoutMs} ms` : `exit ${String(err.code)}`;
        reject(new Error(`${cmd} ${args.join(' ')} (in ${options.cwd}): ${why}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
      } else resolve({ stdout, stderr });
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** The README's marked snippets by name. */
function readmeSnippets(): Map<string, string> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const snippets = new Map<string, string>();
  for (const m of readme.matchAll(/<!-- snippet: ([a-z0-9-]+) -->\r?\n```(?:js|javascript)\r?\n([\s\S]*?)```/g)) {
    assert.ok(!snippets.has(m[1]!), `README.md: two snippets named ${m[1]}`);
    snippets.set(m[1]!, m[2]!);
  }
  return snippets;
}

/** Every file an `exports` entry points at (all conditions). */
function exportTargets(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object') return [];
  return Object.values(value).flatMap(exportTargets);
}

describe('the package, installed into a fresh app', { timeout: 600_000 }, () => {
  let work = '';
  let app = '';
  let pack: PackResult;
  let port = 0;
  const snippets = readmeSnippets();
  const timings: string[] = [];
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      timings.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'sb-pack-'));
    // A copy of the checkout as a fresh clone has it: no dist/ (prepack must build it), no test output.
    const copy = join(work, 'switchboard');
    const skip = new Set(['.git', 'node_modules', 'dist', 'test-output', join('bench', 'results')]);
    cpSync(ROOT, copy, {
      recursive: true,
      filter: (src) => {
        const rel = relative(ROOT, src);
        return !skip.has(rel) && !(rel.split(sep).length === 1 && rel.endsWith('.tgz'));
      },
    });
    symlinkSync(NODE_MODULES, join(copy, 'node_modules'), 'dir');

    const packed = await timed('npm pack (prepack: build)', () =>
      run('npm', ['pack', '--json', '--pack-destination', work], { cwd: copy, timeoutMs: 240_000 }),
    );
    // The build's own output comes first on stdout, then the JSON.
    const json = packed.stdout.slice(packed.stdout.search(/^\[/m));
    pack = (JSON.parse(json) as PackResult[])[0]!;

    app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'sb-pack-app', private: true, type: 'module' }, null, 2));
    // jose for the sdk-node and backend-token snippets, at the version this checkout uses (so npm's cache has it).
    const jose = (JSON.parse(readFileSync(join(NODE_MODULES, 'jose', 'package.json'), 'utf8')) as { version: string }).version;
    await timed('npm install (tarball + jose)', () =>
      run('npm', ['install', join(work, pack.filename), `jose@${jose}`, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
        cwd: app,
        timeoutMs: 180_000,
      }),
    );

    port = await freePort();
    for (const [name, code] of snippets) {
      const source = code.replace(/\b8080\b/g, String(port));
      writeFileSync(join(app, `${name}.mjs`), source);
      writeFileSync(join(app, `${name}.ts`), source);
    }
    const common = { strict: true, target: 'es2022', noEmit: true, skipLibCheck: false };
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { ...common, module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022'], types: ['node'], typeRoots: [join(NODE_MODULES, '@types')] },
        files: ['library-echo.ts', 'realtime-server.ts', 'sdk-node.ts'],
      }),
    );
    writeFileSync(
      join(app, 'tsconfig.browser.json'),
      JSON.stringify({ compilerOptions: { ...common, module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom'], types: [] }, files: ['sdk-browser.ts'] }),
    );
  });

  after(() => {
    if (timings.length > 0) console.log(`pack test: ${timings.join(', ')}`);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the README marks the snippets this test runs', () => {
    assert.deepEqual([...snippets.keys()].sort(), ['backend-token', 'library-echo', 'realtime-server', 'sdk-browser', 'sdk-node']);
    for (const [name, code] of snippets) if (name !== 'sdk-browser' && name !== 'backend-token') assert.match(code, /\b8080\b/, `${name} listens on or connects to 8080`);
  });

  test('the tarball: dist without source maps, bin, web, user docs; no tests, no sources, no install script', () => {
    const paths = pack.files.map((f) => f.path);
    console.log(`tarball ${pack.filename}: ${pack.entryCount} files, ${(pack.size / 1024).toFixed(0)} KiB packed, ${(pack.unpackedSize / 1024).toFixed(0)} KiB unpacked`);
    for (const p of paths) {
      assert.match(p, /^(package\.json|README\.md|LICENSE[^/]*|bin\/[^/]+\.js|dist\/.+\.(js|d\.ts)|web\/(admin\/)?[^/]+|docs\/[a-z-]+\.md)$/, `unexpected file in the tarball: ${p}`);
      assert.doesNotMatch(p, /\.map$|(^|\/)test\/|^src\/|\.test\.|(?<!\.d)\.ts$/, p);
    }
    for (const p of ['bin/switchboard.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'dist/client.js', 'web/index.html', 'docs/configuration.md']) {
      assert.ok(paths.includes(p), `${p} is in the tarball`);
    }
    const installed = join(app, 'node_modules', 'switchboard');
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { scripts?: Record<string, string>; exports: unknown; types: string; main: string };
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(pkg.scripts?.[s], undefined, `no ${s} script runs in a consumer's install`);
    for (const target of [...exportTargets(pkg.exports), pkg.types, pkg.main]) {
      assert.ok(existsSync(join(installed, target)), `package.json points at ${target}, which the package has`);
    }
  });

  test('the README snippets type-check under strict TypeScript (nodenext; and the browser one with the DOM)', async () => {
    await timed('tsc', () =>
      Promise.all([
        run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: app, timeoutMs: 120_000 }),
        run(process.execPath, [TSC, '-p', 'tsconfig.browser.json'], { cwd: app, timeoutMs: 120_000 }),
      ]),
    );
  });

  test('the bin: switchboard --help from the installed package', async () => {
    const { stdout } = await run(join(app, 'node_modules', '.bin', 'switchboard'), ['--help'], { cwd: app, timeoutMs: 30_000 });
    assert.match(stdout, /serve/);
  });

  test('library-echo: a WebSocket server and client echo hello, then the process exits', async () => {
    const { stdout } = await run(process.execPath, ['library-echo.mjs'], { cwd: app, timeoutMs: 20_000 });
    assert.equal(stdout.trim(), 'hello');
  });

  test('realtime-server serves sdk-node (token, rpc, publish, message), then stops on SIGTERM', async () => {
    const env = childEnv({ JWT_SECRET });
    const server: ChildProcess = spawn(process.execPath, ['realtime-server.mjs'], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    server.stdout!.on('data', (b: Buffer) => (output += b.toString()));
    server.stderr!.on('data', (b: Buffer) => (output += b.toString()));
    const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
    try {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
        if (ok) break;
        if (server.exitCode !== null || Date.now() > deadline) assert.fail(`realtime-server did not answer /healthz:\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const notFound = await fetch(`http://127.0.0.1:${port}/elsewhere`);
      assert.equal(notFound.status, 404, "other paths reach the app's own handler");

      const { stdout } = await run(process.execPath, ['sdk-node.mjs'], { cwd: app, env, timeoutMs: 20_000 });
      assert.match(stdout, /^server time \d{13}$/m);
      assert.match(stdout, /^received \{ title: 'hello' \}$/m);

      server.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 15_000))]);
      assert.equal(code, 0, `realtime-server exits 0 after SIGTERM:\n${output}`);
    } finally {
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    }
  });

  test('backend-token: the token the README\'s jose example signs is accepted by switchboard token --check (and a wrong key is refused)', async () => {
    const env = childEnv({ SWITCHBOARD_JWT_SECRET: JWT_SECRET });
    const { stdout } = await run(process.execPath, ['backend-token.mjs'], { cwd: app, env, timeoutMs: 20_000 });
    const token = stdout.trim();
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, `a JWT on stdout: ${stdout}`);
    const bin = join(app, 'node_modules', '.bin', 'switchboard');
    const checked = await run(bin, ['token', '--check', token], { cwd: app, env, timeoutMs: 30_000 });
    assert.match(checked.stdout, /^valid: the server accepts this token/m, checked.stdout);
    assert.match(checked.stdout, /alice/, 'the user is the sub the example set');
    const wrongKey = childEnv({ SWITCHBOARD_JWT_SECRET: `${JWT_SECRET} but another one` });
    await assert.rejects(run(bin, ['token', '--check', token], { cwd: app, env: wrongKey, timeoutMs: 30_000 }), /refused/);
  });

  test('sdk-browser bundles for the browser with esbuild: nothing external, no node: module', async () => {
    for (const variant of ['browser', 'no browser condition'] as const) {
      const result = await build({
        entryPoints: [join(app, 'sdk-browser.mjs')],
        absWorkingDir: app,
        bundle: true,
        format: 'esm',
        target: 'es2022',
        write: false,
        metafile: true,
        logLevel: 'silent',
        ...(variant === 'browser' ? { platform: 'browser' as const } : { platform: 'neutral' as const, mainFields: ['module', 'main'], conditions: [] }),
      });
      const inputs = Object.keys(result.metafile.inputs);
      // Under `browser`, switchboard/client is the one-file build; otherwise the SDK's modules (browser-safe too).
      const expected = variant === 'browser' ? 'node_modules/switchboard/dist/client.js' : 'node_modules/switchboard/dist/client/index.js';
      assert.ok(inputs.includes(expected), `${variant}: bundled from ${expected} (inputs: ${inputs.join(', ')})`);
      const externals = Object.values(result.metafile.outputs).flatMap((o) => o.imports).filter((i) => i.external);
      assert.deepEqual(externals, [], `${variant}: nothing left to import`);
      const text = result.outputFiles[0]!.text;
      assert.doesNotMatch(text, /\bnode:[a-z_]/, `${variant}: no node: module`);
      assert.match(text, /wss:\/\/rt\.example\.com\/rt/);
    }
  });
});
