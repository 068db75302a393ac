/**
 * The operator's commands of `switchboard`, as child processes (through tsx):
 * `--version`, `init` (a config that `serve --config` loads), `token` (signs
 * tokens the running server accepts; `--check` says why one is refused, in
 * the server's words), and what `serve` says when it cannot start (no key
 * off loopback, a busy port, a YAML mistake), its banner for IPv6 hosts, and
 * the 404 of a WebSocket upgrade to the wrong path.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import { parse as parseYaml } from 'yaml';
import { connect, upgrade, within } from '../realtime/helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = new URL('../../../src/cli/main.ts', import.meta.url).href;
/** tsx compiles on start: give the child time (the machine may be busy). */
const START = 60_000;
/** tsx by its path: some commands run in a temporary directory, where `--import tsx` would not resolve. */
const TSX = import.meta.resolve('tsx');
const SECRET = 'ops-test-secret-0123456789abcdefghijkl';

/** The environment of the test run without SWITCHBOARD_* (no configuration from outside). */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_'))), ...extra };
}

function spawnCli(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): ChildProcess {
  const code = `import(${JSON.stringify(MAIN)}).then(async (m) => { process.exitCode = await m.main(${JSON.stringify(args)}); })`;
  return spawn(process.execPath, ['--import', TSX, '-e', code], { cwd: options.cwd ?? ROOT, env: cleanEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to its end. */
function run(args: string[], options: { env?: Record<string, string>; cwd?: string; input?: string } = {}): Promise<Ran> {
  const child = spawnCli(args, options);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  child.stdin!.end(options.input ?? '');
  return within(
    new Promise<Ran>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr }))),
    START,
    `switchboard ${args.join(' ')}`,
  ).catch((err: Error) => {
    child.kill('SIGKILL');
    throw err;
  });
}

interface Serve {
  child: ChildProcess;
  stderr: string[];
  logs: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** The first stderr line matching `re` (rejects when the process exits first). */
  line(re: RegExp, what: string): Promise<string>;
}

/** Several {@link run}s, two at a time (each child compiles with tsx: all at once would only queue for the CPU). */
async function runAll(list: Array<Parameters<typeof run>>): Promise<Ran[]> {
  const results: Ran[] = new Array(list.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const i = next++;
      results[i] = await run(...list[i]!);
    }
  };
  await Promise.all([worker(), worker()]);
  return results;
}

/** `switchboard serve ARGS`, killed after the test. */
function serve(t: TestContext, args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Serve {
  const child = spawnCli(['serve', ...args], options);
  child.stdin!.end();
  const stderr: string[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  const wake = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      logs.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      logs.push({ text: l });
    }
    wake();
  });
  createInterface({ input: child.stderr! }).on('line', (l) => {
    stderr.push(l);
    wake();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      wake();
      resolve(code);
    }),
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    stderr,
    logs,
    exited,
    line(re, what) {
      return within(
        new Promise<string>((resolve, reject) => {
          const check = (): void => {
            const found = stderr.find((l) => re.test(l));
            if (found !== undefined) resolve(found);
            else if (child.exitCode !== null) reject(new Error(`exited (${child.exitCode}) before ${what}; stderr: ${stderr.join(' | ')}`));
            else waiters.push(check);
          };
          check();
        }),
        START,
        `${what} (stderr: ${stderr.join(' | ')})`,
      );
    },
  };
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'sb-cli-ops-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function stop(s: Serve): Promise<void> {
  s.child.kill('SIGTERM');
  assert.equal(await within(s.exited, 10_000, 'serve to exit'), 0);
}

test('token --check refuses in words, with the server\'s reason, exit 1; token - reads stdin', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'c.yaml');
  writeFileSync(file, `auth:\n  hmacSecret: ${SECRET}\n  issuer: https://auth.example.com\n  audience: switchboard\n`);
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, options: { secret?: string; iss?: string | null; aud?: string | null; sub?: string | null; exp?: number | null } = {}) => {
    let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now - 7200);
    if (options.sub !== null) jwt = jwt.setSubject(options.sub ?? 'bob');
    if (options.exp !== null) jwt = jwt.setExpirationTime(options.exp ?? now + 600);
    if (options.iss !== null) jwt = jwt.setIssuer(options.iss ?? 'https://auth.example.com');
    if (options.aud !== null) jwt = jwt.setAudience(options.aud ?? 'switchboard');
    return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
  };
  let deep: unknown = 'x';
  for (let i = 0; i < 40; i++) deep = [deep];
  const cases: Array<[string, string, RegExp[]]> = [
    ['expired', await sign({}, { exp: now - 3600 }), [/^refused: token expired/, /expired \d{4}-.*\(6\d min ago\)/, /4002/]],
    ['wrong key', await sign({}, { secret: 'another-secret-0123456789abcdefghijklmn' }), [/^refused: invalid token signature/, /another key/, /4500/]],
    ['wrong audience', await sign({}, { aud: 'other-app' }), [/^refused: token audience mismatch/, /aud is "other-app".*requires "switchboard"/]],
    ['wrong issuer', await sign({}, { iss: 'https://evil.example' }), [/^refused: token issuer mismatch/, /iss is "https:\/\/evil\.example".*requires "https:\/\/auth\.example\.com"/]],
    ['no sub', await sign({}, { sub: null }), [/^refused: token has no sub claim/, /sub must be the user id/]],
    ['no exp', await sign({}, { exp: null }), [/^refused: token has no exp claim/, /exp .* is required/]],
    ['bad channels', await sign({ channels: { subscribe: 'chat/#' } }), [/^refused: invalid channels claim: subscribe is not an array/, /each a list of channel names/]],
    ['deep info', await sign({ info: deep }), [/^refused: the info claim is nested deeper than 32 levels/]],
    ['not a JWT', 'hello', [/^refused: malformed token/, /three base64url parts/]],
  ];
  const results = await runAll(cases.map(([, token]) => [['token', '--check', token, '--config', file]]));
  results.forEach((r, i) => {
    const [name, , patterns] = cases[i]!;
    assert.equal(r.code, 1, `${name}: exit 1 (stdout ${r.stdout}, stderr ${r.stderr})`);
    for (const re of patterns) assert.match(r.stdout, re, name);
  });

  const good = await sign({ channels: { publish: ['chat/lobby'] } });
  const viaStdin = await run(['token', '--check', '-', '--config', file], { input: `${good}\n` });
  assert.equal(viaStdin.code, 0, viaStdin.stdout);
  assert.match(viaStdin.stdout, /user: bob/);
  assert.match(viaStdin.stdout, /permissions: publish chat\/lobby/);
});

test('token: signs with SWITCHBOARD_JWT_SECRET and the configured iss/aud; cannot sign with a public key (exit 2); no key says how to set one', async (t) => {
  const dir = tempDir(t);
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pubFile = join(dir, 'pub.pem');
  writeFileSync(pubFile, publicKey.export({ type: 'spki', format: 'pem' }));
  const pubConfig = join(dir, 'pub.yaml');
  writeFileSync(pubConfig, 'auth:\n  publicKey: ./pub.pem\n');
  const issConfig = join(dir, 'iss.yaml');
  writeFileSync(issConfig, 'auth:\n  issuer: me\n  audience: you\n');
  let deep: unknown = 1;
  for (let i = 0; i < 40; i++) deep = { a: deep };

  const env = { SWITCHBOARD_JWT_SECRET: SECRET };
  const [fromEnv, pub, none, tooDeep, badChannels, badTtl] = await runAll([
    [['token', '--user', 'carol', '--config', issConfig], { env }],
    [['token', '--user', 'carol', '--config', pubConfig]],
    [['token', '--user', 'carol']],
    [['token', '--user', 'carol', '--info', JSON.stringify(deep)], { env }],
    [['token', '--user', 'carol', '--channels', 'subscribe=chat/a#'], { env }],
    [['token', '--user', 'carol', '--ttl', 'soon'], { env }],
  ]);
  assert.equal(fromEnv.code, 0, fromEnv.stderr);
  const check = await run(['token', '--check', fromEnv.stdout.trim(), '--config', issConfig], { env: { SWITCHBOARD_JWT_SECRET: SECRET } });
  assert.equal(check.code, 0, check.stdout);
  assert.match(check.stdout, /user: carol/);
  assert.match(check.stdout, /expires: .*\(in 60 min\)/, 'one hour by default');

  assert.equal(pub.code, 2);
  assert.equal(pub.stdout, '', 'no token');
  assert.match(pub.stderr, /cannot sign: this configuration verifies tokens with a public key \(auth\.publicKey, ES256\)/);
  assert.match(pub.stderr, /private key/);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no key configured.*SWITCHBOARD_JWT_SECRET \(at least 32 bytes\).*switchboard init/);
  assert.equal(tooDeep.code, 2);
  assert.match(tooDeep.stderr, /the server would refuse this token: the info claim is nested deeper than 32 levels/);
  assert.equal(badChannels.code, 2);
  assert.match(badChannels.stderr, /--channels: invalid channels claim: subscribe has an invalid channel/);
  assert.equal(badTtl.code, 2);
  assert.match(badTtl.stderr, /invalid --ttl 'soon'/);
});

test('--version prints the version of package.json; help lists token and init; their --help, and a bad option exits 2', async () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const [v, help, tokenHelp, initHelp, bogus] = await runAll([[['--version']], [['help']], [['token', '--help']], [['init', '-h']], [['init', '--bogus']]]);
  assert.deepEqual(v, { code: 0, stdout: `switchboard ${version}\n`, stderr: '' });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^ {2}token +--user U/m);
  assert.match(help.stdout, /^ {2}init +\[FILE\] \[--force\]/m);
  assert.match(help.stdout, /--version/);
  assert.equal(tokenHelp.code, 0);
  assert.match(tokenHelp.stdout, /^Usage: switchboard token --user U .* --check TOKEN/);
  assert.match(tokenHelp.stdout, /cannot sign/, 'says what a public-key configuration does');
  assert.equal(initHelp.code, 0);
  assert.match(initHelp.stdout, /^Usage: switchboard init \[FILE\] \[--force\]/);
  assert.equal(bogus.code, 2);
  assert.match(bogus.stderr, /^switchboard init: Unknown option '--bogus'[^]*Usage: switchboard init /);
});

test('init writes a commented config with fresh secrets that serve --config runs; tokens from token --config are accepted there', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'switchboard.yaml');
  const made = await run(['init'], { cwd: dir });
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /wrote switchboard\.yaml/);
  const text = readFileSync(file, 'utf8');
  assert.match(text, /^# /m, 'commented');
  assert.equal(statSync(file).mode & 0o777, 0o600, 'it holds secrets: owner only');
  const config = parseYaml(text) as { auth: { hmacSecret: string }; apiKey: string };
  assert.ok(Buffer.byteLength(config.auth.hmacSecret) >= 32, 'hmacSecret of at least 32 bytes');
  assert.ok(config.apiKey.length >= 16);

  // An existing file is kept; --force replaces it with new secrets.
  const again = await run(['init', file]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /exists.*--force/);
  assert.equal(readFileSync(file, 'utf8'), text, 'the file was changed');
  const forced = await run(['init', file, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  const replaced = parseYaml(readFileSync(file, 'utf8')) as { auth: { hmacSecret: string } };
  assert.notEqual(replaced.auth.hmacSecret, config.auth.hmacSecret, 'a fresh secret each time');

  const s = serve(t, ['--config', file, '--port', '0']);
  const banner = await s.line(/^switchboard: http:/, 'the banner');
  const port = Number(/:(\d+)\//.exec(banner)![1]);
  assert.equal(s.logs.find((l) => /development mode/.test(String(l.msg))), undefined, 'a key is configured: no development mode');

  const signed = await run(['token', '--user', 'alice', '--ttl', '10m', '--channels', 'subscribe=chat/#', '--info', '{"name":"Alice"}', '--config', file]);
  assert.equal(signed.code, 0, signed.stderr);
  const token = signed.stdout.trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'stdout is the token alone');
  const client = await connect(t, `ws://127.0.0.1:${port}/rt`);
  const auth = await client.ok('auth', { token });
  assert.equal(auth.user, 'alice');
  await client.ok('sub', { channel: 'chat/lobby' });
  assert.equal((await client.request('sub', { channel: 'news/today' })).op, 'error', 'the channels claim is in the token');

  const checked = await run(['token', '--check', token, '--config', file]);
  assert.equal(checked.code, 0, checked.stdout + checked.stderr);
  assert.match(checked.stdout, /^valid/);
  assert.match(checked.stdout, /user: alice/);
  assert.match(checked.stdout, /expires: \d{4}-\d\d-\d\dT.*\(in (9|10) min\)/);
  assert.match(checked.stdout, /permissions: subscribe chat\/#/);
  assert.match(checked.stdout, /info: \{"name":"Alice"\}/);
  await stop(s);
});

test('serve: no key off loopback says how to set one; a busy port says so without a stack trace; [::1] in the banner; YAML errors keep their code frame; a wrong WebSocket path hints at /rt', async (t) => {
  const dir = tempDir(t);
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.after(() => busy.close());
  const busyPort = (busy.address() as net.AddressInfo).port;
  const badYaml = join(dir, 'bad.yaml');
  writeFileSync(badYaml, `port: 8080\nauth:\n  hmacSecret: "${SECRET}" trailing\n`);

  const v6 = serve(t, ['--host', '::1', '--port', '0']);
  const [wide, inUse, yamlError] = await runAll([
    [['serve', '--host', '0.0.0.0', '--port', '0']],
    [['serve', '--port', String(busyPort)]],
    [['serve', '--config', badYaml]],
  ]);

  assert.equal(wide.code, 2);
  assert.match(wide.stderr, /auth: set hmacSecret/);
  assert.match(wide.stderr, /host 0\.0\.0\.0 is not a loopback address/);
  assert.match(wide.stderr, /only on loopback/);
  assert.match(wide.stderr, /SWITCHBOARD_JWT_SECRET/);
  assert.match(wide.stderr, /at least 32 bytes/);
  assert.match(wide.stderr, /switchboard init/);

  assert.equal(inUse.code, 2);
  assert.match(inUse.stderr, new RegExp(`port ${busyPort} is in use`));
  assert.match(inUse.stderr, /--port/);
  assert.doesNotMatch(inUse.stderr, /^\s+at /m, 'a stack trace');

  assert.equal(yamlError.code, 2);
  assert.match(yamlError.stderr, /bad\.yaml: invalid YAML: .* at line 3, column \d+:/);
  assert.match(yamlError.stderr, /^ {4} {2}hmacSecret: \*+$/m, 'the snippet, with the secret masked');
  assert.match(yamlError.stderr, /^ {4} *\^+$/m, 'the caret');
  assert.doesNotMatch(yamlError.stderr, new RegExp(SECRET), 'the secret itself');

  const banner = await v6.line(/^switchboard: http:/, 'the banner');
  assert.match(banner, /^switchboard: http:\/\/\[::1\]:\d+\/ /);
  // A WebSocket upgrade to another path: 404, and the body names the endpoint.
  const wrong = await upgrade(/http:\/\/\[::1\]:\d+/.exec(banner)![0], '/');
  assert.equal(wrong.status, 404);
  assert.match(wrong.text, /no WebSocket endpoint here: connect to \/rt/);
  await stop(v6);
});
