/**
 * The command table of `switchboard` (synopsis and description of each
 * command, for `help` and `<command> --help`) and the argument parsing every
 * command shares.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
/** Each command's synopsis and description, for `switchboard help` and `switchboard <command> --help`. */
export const COMMANDS = {
  serve: {
    synopsis: '[--config file.yaml] [--port 8080] [--host 127.0.0.1] [--snapshot-file F] [--workers N]',
    description: [
      'the realtime server (WebSocket /rt, /api, /metrics, /healthz, /readyz)',
      'and its pages: chat demo at /, live dashboard at /dashboard;',
      '--snapshot-file keeps the in-memory history across restarts;',
      '--workers N: N processes sharing the port (node:cluster), each a node',
      'on the Redis or NATS broker (config workers, SWITCHBOARD_WORKERS)',
    ],
  },
  token: {
    synopsis: '--user U [--ttl 1h] [--channels C]... [--info JSON] [--config F]  |  --check TOKEN [--config F]',
    description: [
      'sign a token (HS256) with the configured auth.hmacSecret and print it;',
      '--ttl 90s|30m|1h|7d; --channels subscribe=chat/#,news/+ (repeatable) or the claim as JSON;',
      '--check says whether the server accepts a token and why not (- reads it from stdin):',
      'exit 0 valid, 1 refused; 2: no key, a bad configuration, or only a public key',
      '(auth.publicKey/jwksFile verify, they cannot sign: your backend signs with the private key)',
    ],
  },
  init: {
    synopsis: '[FILE] [--force]',
    description: [
      'write a commented YAML configuration (default switchboard.yaml) with a fresh',
      'hmacSecret and apiKey; an existing file is kept unless --force',
    ],
  },
  echo: {
    synopsis: '--port N [--host H] [--deflate] [--tls-cert F --tls-key F] [--max-payload BYTES]',
    description: ['plain WebSocket echo server (any path)'],
  },
  connect: {
    synopsis: 'URL [--protocol P]... [--header "K: V"]... [--no-deflate] [--insecure]',
    description: [
      'interactive client: lines from stdin are sent as text (also those typed before',
      'the connection is open); end of input closes with 1000 and exits 0',
    ],
  },
} as const;
export type Command = keyof typeof COMMANDS;

const COLUMN = ' '.repeat(50);

export const USAGE = `Usage: switchboard <command> [options]

Commands:
${(Object.keys(COMMANDS) as Command[]).map((name) => `  ${name.padEnd(8)} ${COMMANDS[name].synopsis}\n${COMMANDS[name].description.map((d) => `${COLUMN}${d}\n`).join('')}`).join('')}  help${' '.repeat(COLUMN.length - 6)}this text (and switchboard <command> --help)
  --version${' '.repeat(COLUMN.length - 11)}the version of switchboard
`;

export function commandUsage(name: Command): string {
  const { synopsis, description } = COMMANDS[name];
  return `Usage: switchboard ${name} ${synopsis}\n\n${description.map((d) => `  ${d}\n`).join('')}`;
}

/** A mistake in the command line: reported with the command's usage, exit 2. */
export class UsageError extends Error {}

/** Every command takes `--help` / `-h`. */
export const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/**
 * `parseArgs` for a command (whose options include {@link HELP}). Returns
 * null after printing the command's usage for `--help`; an unknown option or
 * a missing value is a {@link UsageError}.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(command: Command, config: T): ReturnType<typeof parseArgs<T>> | null {
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (err) {
    // node:util's own errors (ERR_PARSE_ARGS_*: unknown option, missing value, unexpected argument).
    if (String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS_')) throw new UsageError((err as Error).message);
    throw err;
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(commandUsage(command));
    return null;
  }
  return parsed;
}


export function parsePort(value: string | undefined, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError('--port is required');
    return fallback;
  }
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`invalid port '${value}'`);
  return port;
}
