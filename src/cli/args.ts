/**
 * The command table of `switchboard` (synopsis and description of each
 * command, for `help` and `<command> --help`) and the argument parsing every
 * command shares.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
/** Each command's synopsis and description, for `switchboard help` and `switchboard <command> --help`. */
export const COMMANDS = {
  serve: {
    synopsis: '[--config file.yaml] [--port 8080] [--host 127.0.0.1] [--snapshot-file F] [--tls-cert F --tls-key F [--tls-ca F]] [--workers N]',
    description: [
      'the realtime server (WebSocket /rt, /api, /metrics, /healthz, /readyz)',
      'and its pages: chat demo at /, live dashboard at /dashboard;',
      '--snapshot-file keeps the in-memory history across restarts;',
      '--tls-cert/--tls-key serve https and wss (reloaded on SIGHUP and when the files change);',
      '--tls-ca: the CA of client certificates (tls.clientCertificates)',
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
    synopsis: 'URL [options]   (ws://, wss://, http://, https://)',
    description: [
      'WebSocket client (as wscat, websocat): stdin lines go out as text,',
      'messages print to stdout (raw when piped); end of input closes; exit 0',
      'on a normal close, 1 otherwise (refused, dropped, other codes), 2 usage',
    ],
    options: [
      '-H, --header "K: V"      add a request header (repeatable)',
      '-s, --subprotocol P      offer a subprotocol (repeatable, in order)',
      '    --protocol P         the same as --subprotocol',
      '-o, --origin O           send Origin: O',
      '-k, --insecure           do not verify the server certificate',
      '    --ca FILE            trust this CA (PEM) for wss://',
      '    --cert FILE          client certificate (PEM), with --key',
      '    --key FILE           its private key (PEM)',
      '    --passphrase P       the passphrase of --key',
      '    --auth USER:PASS     HTTP Basic authentication',
      '    --token JWT          realtime token, sent as Authorization: Bearer',
      '-x, --execute MSG        send MSG once open (repeatable; @file: its bytes, binary)',
      '-w, --wait SECONDS       close SECONDS after open (default 2 with -x)',
      '    --count N            exit 0 after N messages received',
      '    --hex                binary messages shown as hex; stdin lines decoded from hex',
      '    --base64             the same in base64',
      '-P, --show-ping-pong     show pings and pongs (with round-trip times)',
      '    --ping-interval S    ping every S seconds',
      '    --ping-timeout S     drop the connection when a ping has no pong in S seconds',
      '    --slash              slash commands on piped stdin too (always on a terminal)',
      '    --json               pretty-print incoming JSON; send only lines that are JSON',
      '    --close-code N       close code at end of input, -w, --count, /quit (1000)',
      '    --close-reason TEXT  close reason with it (at most 123 bytes)',
      '-L, --location           follow redirects (301, 302, 303, 307, 308)',
      '    --max-redirects N    at most N redirects (default 10; implies -L)',
      '    --proxy URL          proxy: http:// or https:// (HTTP CONNECT), socks5:// (name',
      '                         resolved here) or socks5h:// (by the proxy); user:pass@ in the',
      '                         URL; default HTTPS_PROXY/HTTP_PROXY/ALL_PROXY, minus NO_PROXY',
      '    --proxy-ca FILE      trust this CA (PEM) for an https:// proxy (-k/--ca: server only)',
      '    --proxy-insecure     do not verify an https:// proxy\'s certificate',
      '    --reconnect          reconnect with backoff and jitter, replaying -x',
      '-v, --verbose            request/response headers, TLS, certificate, proxy, timings;',
      '                         with --http2: SETTINGS, the CONNECT\'s :pseudo-headers,',
      '                         :status, or why it fell back to HTTP/1.1',
      '    --http2              WebSocket over HTTP/2 (RFC 8441), HTTP/1.1 when the server',
      '                         does not allow it (and through a proxy)',
      '    --no-deflate         do not offer permessage-deflate',
      '    --no-color           no colours (also NO_COLOR=1)',
      '-h, --help               this text',
      'slash commands: /ping [data] /pong /close [CODE [REASON]] /binary HEX|BASE64|@F',
      '                /json [VALUE] /quit /help',
    ],
  },
  cert: {
    synopsis: '[--out DIR] [--days N] [--host H]...',
    description: [
      'a development certificate (openssl): a local CA and a leaf for localhost,',
      '127.0.0.1 and ::1 (and each --host), written to DIR (default ./certs);',
      'prints how to make browsers trust the CA and the serve command that uses them',
    ],
  },
  sub: {
    synopsis: 'CHANNEL [--since OFFSET [--epoch E]] [--url URL] [--token T] [--json | -v] [--count N]',
    description: [
      'subscribe with the realtime protocol and print each publication\'s data as JSON',
      '(-v: with offset and epoch; --json: the whole publication); reconnects and resumes',
      'like the SDK and says on stderr whether it recovered or may have lost messages;',
      'token: --token, SWITCHBOARD_TOKEN, else POST /dev/token of a dev server, else anonymous',
    ],
  },
  pub: {
    synopsis: 'CHANNEL DATA|- [--url URL] [--token T | --api-key K] [--string] [--json]',
    description: [
      'publish DATA (JSON, else the text; - reads one publication per stdin line) and',
      'print the ack (offset, epoch); a refusal exits 1 with the server\'s words;',
      '--api-key (or SWITCHBOARD_API_KEY) publishes through POST /api/publish instead',
    ],
  },
  doctor: {
    synopsis: 'URL [-k|--insecure] [--ca FILE] [--protocol P]... [--origin O] [--timeout S] [--json]',
    description: [
      'check a WebSocket endpoint step by step: DNS, TCP, TLS (chain, expiry, ALPN),',
      'HTTP/1.1 Upgrade (and a proxy stripping it), RFC 8441 over HTTP/2, compression,',
      'ping RTT; one line each, with what to do; exit 0 when a WebSocket opens, else 1',
    ],
  },
  bench: {
    synopsis: 'connect|echo|fanout URL [--connections N] [--duration S] [--json] ...',
    description: [
      'load generator: connect (handshakes/s, failures, server RSS with --pid),',
      'echo (msgs/s, MB/s, latency percentiles), fanout (realtime: deliveries/s,',
      'publish-to-delivery percentiles, lost and duplicated by offset);',
      'switchboard bench <kind> --help for each one\'s options',
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
  const entry = COMMANDS[name];
  const { synopsis, description } = entry;
  // A command with many flags lists them under its description, in `<command> --help` only.
  const options = 'options' in entry ? `\nOptions:\n${entry.options.map((o) => `  ${o}\n`).join('')}` : '';
  return `Usage: switchboard ${name} ${synopsis}\n\n${description.map((d) => `  ${d}\n`).join('')}${options}`;
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
