/**
 * `switchboard <command>`: serve (the realtime server with the chat demo and
 * the dashboard pages), token (sign and check tokens), init (write a config
 * file), echo (a plain echo server), connect (a wscat-like client), cert (a
 * development TLS certificate), sub and pub (the realtime protocol), doctor
 * (diagnose an endpoint), bench (a load generator). Each
 * command's table entry is in args.ts.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { extname } from 'node:path';
import { ConfigError, loadConfig } from '../server/config/index.js';
import type { AuthConfig } from '../realtime/auth.js';
import { COMMANDS, commandUsage, HELP, parseCommandArgs, USAGE, UsageError, type Command } from './args.js';
import { cert } from './cert.js';
import { bench } from './bench.js';
import { connect } from './connect.js';
import { doctor } from './doctor.js';
import { echo } from './echo.js';
import { configTemplate } from './init.js';
import { pub, sub } from './realtime.js';
import { isMissingAuthKey, serve } from './serve.js';
import { checkToken, HOW_TO_SET_A_KEY, parseChannelsOption, parseTtl, signToken } from './tokens.js';

export { DEV_NAMESPACES } from './serve.js';

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'echo':
        return await echo(rest);
      case 'serve':
        return await serve(rest);
      case 'connect':
        return await connect(rest);
      case 'sub':
        return await sub(rest);
      case 'pub':
        return await pub(rest);
      case 'doctor':
        return await doctor(rest);
      case 'bench':
        return await bench(rest);
      case 'token':
        return await token(rest);
      case 'init':
        return init(rest);
      case 'cert':
        return cert(rest);
      case '--version':
      case '-v':
      case 'version':
        process.stdout.write(`switchboard ${packageVersion()}\n`);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return command === undefined ? 1 : 0;
      default:
        process.stderr.write(`switchboard: unknown command '${command}'\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    process.stderr.write(`switchboard ${command}: ${(err as Error).message}\n`);
    if (err instanceof UsageError && command in COMMANDS) process.stderr.write(`\n${commandUsage(command as Command)}`);
    return 2;
  }
}
/** The version in package.json (two levels up from src/cli/ and from dist/cli/). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return String(pkg.version);
}

async function token(args: string[]): Promise<number> {
  const parsed = parseCommandArgs('token', {
    args,
    options: {
      ...HELP,
      config: { type: 'string', short: 'c' },
      user: { type: 'string', short: 'u' },
      ttl: { type: 'string' },
      channels: { type: 'string', multiple: true },
      info: { type: 'string' },
      check: { type: 'string' },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  if (values.check !== undefined) {
    const extra = (['user', 'ttl', 'channels', 'info'] as const).find((k) => values[k] !== undefined);
    if (extra) throw new UsageError(`--check takes no --${extra} (only --config)`);
    const text = (values.check === '-' ? readFileSync(0, 'utf8') : values.check).trim();
    const result = await checkToken(tokenAuthConfig(values.config), text);
    process.stdout.write(`${result.lines.join('\n')}\n`);
    return result.valid ? 0 : 1;
  }
  if (values.user === undefined || values.user === '') throw new UsageError('--user is required (or --check TOKEN)');
  const ttlS = parseTtl(values.ttl ?? '1h');
  const channels = values.channels === undefined ? undefined : parseChannelsOption(values.channels);
  let info: unknown;
  if (values.info !== undefined) {
    try {
      info = JSON.parse(values.info);
    } catch (err) {
      throw new UsageError(`--info: not JSON (${(err as Error).message})`);
    }
  }
  const signed = await signToken(tokenAuthConfig(values.config), { user: values.user, ttlS, channels, info });
  process.stdout.write(`${signed.token}\n`);
  process.stderr.write(`token for ${signed.identity.user}, HS256, expires ${new Date(signed.identity.expiresAt).toISOString()}\n`);
  return 0;
}

/** The `auth` section of the configuration (file, environment), validated as `serve` would; no key is an error that says how to set one. */
function tokenAuthConfig(file: string | undefined): AuthConfig {
  try {
    return loadConfig({ file }).auth;
  } catch (err) {
    if (err instanceof ConfigError && err.issues.length > 0 && err.issues.every(isMissingAuthKey)) {
      throw new Error(
        `no key configured to sign or check tokens with: ${HOW_TO_SET_A_KEY}. ` +
          '(A server in development mode signs with a secret made at each start: its tokens come from POST /dev/token.)',
      );
    }
    throw err;
  }
}

function init(args: string[]): number {
  const parsed = parseCommandArgs('init', {
    args,
    allowPositionals: true,
    options: { ...HELP, force: { type: 'boolean', default: false } },
  });
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (one file)`);
  const file = positionals[0] ?? 'switchboard.yaml';
  const ext = extname(file).toLowerCase();
  if (ext !== '.yaml' && ext !== '.yml') throw new UsageError(`${file}: init writes YAML: name the file .yaml or .yml`);
  try {
    // 'wx': never replace a file that appeared meanwhile; 0600: it holds secrets.
    writeFileSync(file, configTemplate(), { flag: values.force ? 'w' : 'wx', mode: 0o600 });
    if (values.force) chmodSync(file, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new Error(`${file} exists: left as it is (--force replaces it, with new secrets)`);
    throw new Error(`cannot write ${file} (${code ?? (err as Error).message})`);
  }
  process.stdout.write(
    `wrote ${file}: a new hmacSecret and apiKey (keep the file private). Next:\n` +
      `  switchboard serve --config ${file}\n` +
      `  switchboard token --user alice --config ${file}\n`,
  );
  return 0;
}
