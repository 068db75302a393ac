/**
 * `switchboard connect URL`: an interactive WebSocket client, for what
 * wscat and websocat are used for. Lines from stdin are sent as text
 * messages; slash commands send control frames; `-x` sends messages
 * non-interactively. Payloads go to stdout (prefixed and coloured on a
 * terminal, raw when piped), everything else to stderr.
 *
 * Exit status: 0 after a normal close (1000 or 1005, a close this side
 * started and the server answered, or `--count` reached), 1 otherwise (a
 * refused or failed handshake, a dropped connection, any other close code),
 * 2 for a usage error.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { createInterface, type Interface } from 'node:readline';
import { closeCodeMeaning, isValidCloseCode, MAX_CLOSE_REASON_BYTES } from '../protocol/close-code.js';
import { HandshakeError, MAX_REFUSAL_BODY_BYTES } from '../protocol/errors.js';
import { realtimeCloseCode } from '../wire/close-codes.js';
import { WebSocket, type ClientOptions } from '../transport/websocket.js';
import { HELP, parseCommandArgs, UsageError } from './args.js';
import {
  binaryLine,
  COLOURS,
  decodeBinary,
  NO_COLOURS,
  parseJson,
  prettyJson,
  readFileArg,
  traceRequests,
  type BinaryEncoding,
  type Palette,
} from './connect-output.js';
import { CERTIFICATE_ERRORS, parseProxyUrl, proxyDialer } from './proxy.js';

/** A message to send: text, or binary bytes. */
interface Outgoing {
  data: string | Buffer;
  binary: boolean;
}

/** Everything the command line asked for, checked. */
interface Settings {
  url: string;
  protocols: string[];
  options: ClientOptions;
  execute: Outgoing[];
  /** Close this long after the connection opens (and `-x` is sent), in ms; null: no such timer. */
  waitMs: number | null;
  /** With `-x` or `-w`, the end of stdin does not close the connection (the wait does). */
  waitMode: boolean;
  count: number | null;
  encoding: BinaryEncoding | null;
  showPingPong: boolean;
  pingIntervalMs: number | null;
  pingTimeoutMs: number;
  slash: boolean | null;
  json: boolean;
  closeCode: number;
  closeReason: string;
  reconnect: boolean;
  verbose: boolean;
  http2: boolean;
  colour: boolean;
}

/** The slash commands, for `/help`. */
const SLASH_HELP = [
  '/ping [data]            send a ping (the pong is shown with its round-trip time)',
  '/pong [data]            send an unsolicited pong',
  '/close [CODE [REASON]]  start the closing handshake (default: --close-code, 1000)',
  '/binary HEX|BASE64|@F   send a binary message (hex, base64, or file F\'s bytes)',
  '/json [VALUE]           send VALUE if it is JSON; alone: toggle --json',
  '/quit                   close (--close-code) and exit',
  '/help                   this list; a line starting with // is sent as text, minus one /',
];

/** Backoff of `--reconnect`: 500 ms doubled per attempt, at most 30 s, with "equal jitter" (half fixed, half random). */
const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 30_000;
/** A connection open this long resets the backoff. */
const RECONNECT_RESET_MS = 5000;

/** The delay before reconnect attempt `attempt` (0-based), in ms. */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** Math.min(attempt, 16));
  return ceiling / 2 + random() * (ceiling / 2);
}

function seconds(name: string, value: string | undefined, { positive = false } = {}): number | null {
  if (value === undefined) return null;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || (positive && n === 0)) {
    throw new UsageError(`invalid ${name} '${value}' (seconds, ${positive ? 'more than 0' : '0 or more'}, e.g. 1.5)`);
  }
  return n;
}

function integer(name: string, value: string | undefined, min: number): number | null {
  if (value === undefined) return null;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min) throw new UsageError(`invalid ${name} '${value}' (a whole number, at least ${min})`);
  return n;
}

/** `-x` values: text, or `@path` (the file's bytes, binary); `@@…` is text starting with `@`. */
function executeMessage(value: string, encoding: BinaryEncoding | null): Outgoing {
  if (value.startsWith('@@')) return { data: value.slice(1), binary: false };
  try {
    if (value.startsWith('@')) return { data: readFileArg(value.slice(1)), binary: true };
    if (encoding) return { data: decodeBinary(value, encoding), binary: true };
  } catch (err) {
    throw new UsageError(`-x: ${(err as Error).message}`);
  }
  return { data: value, binary: false };
}

/** The flags of `connect` (each listed by `connect --help`: COMMANDS.connect.options in args.ts). */
export const CONNECT_OPTIONS = {
  ...HELP,
  header: { type: 'string', short: 'H', multiple: true },
  subprotocol: { type: 'string', short: 's', multiple: true },
  protocol: { type: 'string', multiple: true },
  origin: { type: 'string', short: 'o' },
  insecure: { type: 'boolean', short: 'k', default: false },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  passphrase: { type: 'string' },
  auth: { type: 'string' },
  token: { type: 'string' },
  execute: { type: 'string', short: 'x', multiple: true },
  wait: { type: 'string', short: 'w' },
  count: { type: 'string' },
  base64: { type: 'boolean', default: false },
  hex: { type: 'boolean', default: false },
  'show-ping-pong': { type: 'boolean', short: 'P', default: false },
  'ping-interval': { type: 'string' },
  'ping-timeout': { type: 'string' },
  slash: { type: 'boolean', default: false },
  json: { type: 'boolean', default: false },
  'close-code': { type: 'string' },
  'close-reason': { type: 'string' },
  location: { type: 'boolean', short: 'L', default: false },
  'max-redirects': { type: 'string' },
  proxy: { type: 'string' },
  'proxy-ca': { type: 'string' },
  'proxy-insecure': { type: 'boolean', default: false },
  reconnect: { type: 'boolean', default: false },
  verbose: { type: 'boolean', short: 'v', default: false },
  http2: { type: 'boolean', default: false },
  'no-deflate': { type: 'boolean', default: false },
  'no-color': { type: 'boolean', default: false },
} as const;

function parse(args: string[]): Settings | null {
  const parsed = parseCommandArgs('connect', {
    args,
    allowPositionals: true,
    options: CONNECT_OPTIONS,
  });
  if (!parsed) return null;
  const { values, positionals } = parsed;
  const url = positionals[0];
  if (!url) throw new UsageError('a URL is required, e.g. switchboard connect ws://127.0.0.1:8080/ws');
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (one URL)`);
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new UsageError(`invalid URL '${url}' (e.g. ws://127.0.0.1:8080/ws)`);
  }
  if (!/^(wss?|https?):$/.test(target.protocol)) throw new UsageError(`invalid URL '${url}': ws://, wss://, http:// or https://`);
  if (values.hex && values.base64) throw new UsageError('--hex and --base64: choose one');
  const encoding: BinaryEncoding | null = values.hex ? 'hex' : values.base64 ? 'base64' : null;

  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new UsageError(`invalid --header '${h}' (expected "Name: value")`);
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
  }
  if (values.auth !== undefined && values.token !== undefined) throw new UsageError('--auth and --token both set the Authorization header: choose one');
  if (values.auth !== undefined) {
    if (!values.auth.includes(':')) throw new UsageError(`invalid --auth '${values.auth}' (expected user:password)`);
    headers['Authorization'] = `Basic ${Buffer.from(values.auth).toString('base64')}`;
  }
  // The realtime server takes a token as `Authorization: Bearer` (never in the URL: URLs end up in logs).
  if (values.token !== undefined) headers['Authorization'] = `Bearer ${values.token.trim()}`;

  const options: ClientOptions = {
    headers,
    perMessageDeflate: !values['no-deflate'],
    rejectUnauthorized: !values.insecure,
    handshakeTimeout: 10_000,
    closeTimeout: 5000,
  };
  if (values.origin !== undefined) options.origin = values.origin;
  const readOption = (name: 'ca' | 'cert' | 'key' | 'proxy-ca'): Buffer | undefined => {
    const file = values[name];
    if (file === undefined) return undefined;
    try {
      return readFileArg(file);
    } catch (err) {
      throw new UsageError(`--${name}: ${(err as Error).message}`);
    }
  };
  const ca = readOption('ca');
  const cert = readOption('cert');
  const key = readOption('key');
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--cert and --key go together (a client certificate and its private key)');
  if (ca) options.ca = ca;
  if (cert) options.cert = cert;
  if (key) options.key = key;
  if (values.passphrase !== undefined) options.passphrase = values.passphrase;
  const maxRedirects = integer('--max-redirects', values['max-redirects'], 0);
  if (values.location || maxRedirects !== null) {
    options.followRedirects = true;
    if (maxRedirects !== null) options.maxRedirects = maxRedirects;
  }
  if (values.proxy !== undefined) {
    try {
      parseProxyUrl(values.proxy);
    } catch (err) {
      throw new UsageError(`--proxy: ${(err as Error).message}`);
    }
  }
  // A proxy from --proxy or the environment: every request of the handshake (redirects too) is dialled through it.
  // An https:// proxy's certificate is checked with --proxy-ca / --proxy-insecure (-k and --ca: the server's only).
  const proxyCa = readOption('proxy-ca');
  if (values.proxy !== undefined || hasProxyVariable(process.env)) {
    const proxyTls = { ca: proxyCa, rejectUnauthorized: !values['proxy-insecure'] };
    options.createConnection = proxyDialer(values.proxy, process.env, proxyTls) as unknown as ClientOptions['createConnection'];
  }
  // The RFC 8441 client dials its h2 session with the same createConnection: through the proxy's tunnel too.
  if (values.http2) Object.assign(options as ClientOptions & { http2?: boolean }, { http2: true });

  const closeCode = integer('--close-code', values['close-code'], 0) ?? 1000;
  if (!isValidCloseCode(closeCode) || (closeCode >= 1004 && closeCode <= 1006) || closeCode === 1015) {
    throw new UsageError(`invalid --close-code ${closeCode} (1000-1003, 1007-1014 or 3000-4999)`);
  }
  const closeReason = values['close-reason'] ?? '';
  if (Buffer.byteLength(closeReason) > MAX_CLOSE_REASON_BYTES) throw new UsageError(`--close-reason is over ${MAX_CLOSE_REASON_BYTES} bytes of UTF-8`);

  const execute = (values.execute ?? []).map((x) => executeMessage(x, encoding));
  const wait = seconds('--wait', values.wait);
  const count = integer('--count', values.count, 1);
  const pingInterval = seconds('--ping-interval', values['ping-interval'], { positive: true });
  const pingTimeout = seconds('--ping-timeout', values['ping-timeout'], { positive: true });
  if (pingTimeout !== null && pingInterval === null) throw new UsageError('--ping-timeout needs --ping-interval');
  const waitMode = execute.length > 0 || wait !== null;
  return {
    url,
    protocols: [...(values.subprotocol ?? []), ...(values.protocol ?? [])],
    options,
    execute,
    // As wscat: -x closes 2 s after sending, unless -w says otherwise or --count ends it.
    waitMs: wait !== null ? wait * 1000 : execute.length > 0 && count === null ? 2000 : null,
    waitMode,
    count,
    encoding,
    showPingPong: values['show-ping-pong'],
    pingIntervalMs: pingInterval === null ? null : pingInterval * 1000,
    pingTimeoutMs: (pingTimeout ?? pingInterval ?? 0) * 1000,
    slash: values.slash ? true : null,
    json: values.json,
    closeCode,
    closeReason,
    reconnect: values.reconnect,
    verbose: values.verbose,
    http2: values.http2,
    colour: Boolean(process.stdout.isTTY) && !values['no-color'] && !process.env.NO_COLOR,
  };
}

function hasProxyVariable(env: NodeJS.ProcessEnv): boolean {
  return ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'].some((name) => Boolean(env[name]));
}

export async function connect(args: string[]): Promise<number> {
  const settings = parse(args);
  if (!settings) return 0;
  const untrace = settings.verbose ? traceRequests((line) => process.stderr.write(`${line}\n`)) : null;
  try {
    return await new ConnectSession(settings).run();
  } finally {
    untrace?.();
  }
}

/** A pending ping: when it left, and whether a person asked for it (its pong is always shown). */
interface PendingPing {
  at: number;
  asked: boolean;
  timer: NodeJS.Timeout | null;
}

/** One run of `connect`: the connection (and each reconnection), stdin, and the output. */
class ConnectSession {
  private readonly s: Settings;
  private readonly palette: Palette;
  /** stdout is a terminal: prefixed, coloured output. Else raw payloads. */
  private readonly tty = Boolean(process.stdout.isTTY);
  /** stdin and stdout are terminals: a prompt, and output written above it. */
  private readonly interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  private readonly slash: boolean;
  private json: boolean;
  private ws: WebSocket | null = null;
  private rl: Interface | null = null;
  /** Messages read while no connection is open: sent, in order, once one is. */
  private queue: Outgoing[] = [];
  private inputEnded = false;
  /** This side decided to end (end of input, /quit, --count, -w, Ctrl-C): no reconnect; a clean close exits 0. */
  private stopping = false;
  private received = 0;
  private attempt = 0;
  private openedAt = 0;
  private waitTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private pingSeq = 0;
  private readonly pings = new Map<string, PendingPing>();
  /** The HTTP version of the last handshake's answer ('2.0' over RFC 8441). */
  private httpVersion = '1.1';
  /** The last handshake's refusal, if any (a 4xx is not retried). */
  private refusedStatus = 0;
  private resolve: (code: number) => void = () => {};

  constructor(settings: Settings) {
    this.s = settings;
    this.palette = settings.colour ? COLOURS : NO_COLOURS;
    this.slash = settings.slash ?? Boolean(process.stdin.isTTY);
    this.json = settings.json;
  }

  run(): Promise<number> {
    return new Promise<number>((resolve) => {
      this.resolve = resolve;
      // An invalid URL or subprotocol: the client refuses it before any I/O; a usage error (exit 2).
      try {
        this.open();
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      this.readInput();
      process.on('SIGINT', this.onInterrupt);
      process.stdout.on('error', this.onOutputError);
    });
  }

  // ---- output ------------------------------------------------------------------

  /** Write above the prompt (and put it back) on a terminal; as is otherwise. */
  private write(stream: NodeJS.WriteStream, text: string): void {
    if (this.interactive && this.rl && !this.stopping) {
      process.stdout.write('\r\x1b[K');
      stream.write(text);
      this.rl.prompt(true);
    } else {
      stream.write(text);
    }
  }

  /** A status line (connected, closed, errors, pings) on stderr. */
  private status(line: string): void {
    this.write(process.stderr, `${line}\n`);
  }

  private error(line: string): void {
    this.status(this.palette.red(line));
  }

  private printMessage(data: Buffer, isBinary: boolean): void {
    const p = this.palette;
    if (isBinary) {
      if (!this.tty) {
        // Piped: the bytes as they came (no separator), or one encoded line per message.
        if (this.s.encoding) process.stdout.write(`${data.toString(this.s.encoding)}\n`);
        else process.stdout.write(data);
        return;
      }
      this.write(process.stdout, `${p.cyan('<')} ${p.dim(`[binary ${data.length} bytes]`)} ${binaryLine(data, this.s.encoding)}\n`);
      return;
    }
    let text = data.toString();
    if (this.json) {
      const parsed = parseJson(text);
      if (parsed.ok) text = prettyJson(parsed.value, p);
    }
    if (!this.tty) {
      process.stdout.write(`${text}\n`);
      return;
    }
    this.write(process.stdout, `${p.cyan('<')} ${text.split('\n').join('\n  ')}\n`);
  }

  // ---- input -------------------------------------------------------------------

  private readInput(): void {
    const rl = createInterface({
      input: process.stdin,
      output: this.interactive ? process.stdout : undefined,
      terminal: this.interactive,
      prompt: this.interactive ? '> ' : '',
    });
    this.rl = rl;
    rl.on('line', (line) => {
      this.onLine(line);
      if (this.interactive && !this.stopping) rl.prompt();
    });
    rl.on('close', () => {
      this.inputEnded = true;
      if (this.s.waitMode || this.stopping) return;
      if (this.ws?.readyState === WebSocket.OPEN) this.closeNormally();
      // Still connecting (or waiting to reconnect): the lines read go out once open, then the close.
    });
    // Ctrl-C on a terminal (readline takes it from the process).
    rl.on('SIGINT', this.onInterrupt);
  }

  /** stdout closed by its reader (`connect … | head -1`): nothing more can be shown, so close (normally). */
  private readonly onOutputError = (err: NodeJS.ErrnoException): void => {
    if (this.stopping) return;
    this.status(`stdout: ${err.code ?? err.message}: closing`);
    this.stop();
  };

  private readonly onInterrupt = (): void => {
    if (this.stopping) {
      // A second Ctrl-C: the server does not answer the close; stop waiting.
      this.ws?.terminate();
      this.finish(130);
      return;
    }
    this.stop();
  };

  private onLine(line: string): void {
    if (this.slash && line.startsWith('/')) {
      if (line.startsWith('//')) this.sendText(line.slice(1));
      else this.command(line);
      return;
    }
    if (this.s.encoding) {
      try {
        this.enqueue({ data: decodeBinary(line, this.s.encoding), binary: true });
      } catch (err) {
        this.error(`${(err as Error).message}: not sent`);
      }
      return;
    }
    this.sendText(line);
  }

  /** A line of text: checked as JSON first under --json. */
  private sendText(text: string): void {
    if (this.json) {
      const parsed = parseJson(text);
      if (!parsed.ok) {
        this.error(`not JSON (${parsed.error}): not sent`);
        return;
      }
    }
    this.enqueue({ data: text, binary: false });
  }

  private enqueue(message: Outgoing): void {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN && this.queue.length === 0) this.sendNow(ws, message);
    else this.queue.push(message);
  }

  private sendNow(ws: WebSocket, message: Outgoing): void {
    ws.send(message.data, { binary: message.binary });
  }

  private command(line: string): void {
    const space = line.indexOf(' ');
    const name = space === -1 ? line.slice(1) : line.slice(1, space);
    const rest = space === -1 ? '' : line.slice(space + 1);
    const ws = this.ws;
    const open = ws !== null && ws.readyState === WebSocket.OPEN;
    const needOpen = (): boolean => {
      if (!open) this.error(`/${name}: not connected`);
      return open;
    };
    try {
      switch (name) {
        case 'ping':
          if (needOpen()) this.ping(ws!, rest, true);
          return;
        case 'pong':
          if (needOpen()) ws!.pong(rest);
          return;
        case 'close': {
          if (!needOpen()) return;
          const m = /^\s*(\d+)?\s*(.*)$/.exec(rest)!;
          const code = m[1] === undefined ? this.s.closeCode : Number(m[1]);
          const reason = m[1] === undefined ? this.s.closeReason : m[2]!;
          if (!isValidCloseCode(code) || (code >= 1004 && code <= 1006) || code === 1015) {
            this.error(`/close: ${code} cannot be sent (1000-1003, 1007-1014 or 3000-4999)`);
            return;
          }
          if (Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) {
            this.error(`/close: the reason is over ${MAX_CLOSE_REASON_BYTES} bytes`);
            return;
          }
          this.stopping = true;
          ws!.close(code, reason);
          return;
        }
        case 'binary':
          if (rest.trim() === '') {
            this.error('/binary: give the bytes as hex (0102ff), base64 (AQL/) or @file');
            return;
          }
          this.enqueue({ data: decodeBinary(rest, this.s.encoding), binary: true });
          return;
        case 'json':
          if (rest.trim() === '') {
            this.json = !this.json;
            this.status(`--json ${this.json ? 'on: incoming JSON pretty-printed, outgoing lines checked' : 'off'}`);
            return;
          }
          {
            const parsed = parseJson(rest);
            if (!parsed.ok) {
              this.error(`/json: not JSON (${parsed.error}): not sent`);
              return;
            }
            this.enqueue({ data: JSON.stringify(parsed.value), binary: false });
          }
          return;
        case 'quit':
        case 'exit':
          this.stop();
          return;
        case 'help':
          this.status(SLASH_HELP.join('\n'));
          return;
        default:
          this.error(`unknown command /${name} (/help lists them; start the line with // to send it as text)`);
      }
    } catch (err) {
      this.error(`/${name}: ${(err as Error).message}`);
    }
  }

  private ping(ws: WebSocket, data: string, asked: boolean): void {
    ws.ping(data);
    const old = this.pings.get(data);
    if (old?.timer) clearTimeout(old.timer);
    const pending: PendingPing = { at: performance.now(), asked, timer: null };
    if (!asked && this.s.pingTimeoutMs > 0) {
      pending.timer = setTimeout(() => {
        if (this.pings.get(data) !== pending || ws.readyState !== WebSocket.OPEN) return;
        this.error(`no pong within ${this.s.pingTimeoutMs / 1000} s (--ping-timeout): dropping the connection`);
        ws.terminate();
      }, this.s.pingTimeoutMs);
    }
    this.pings.set(data, pending);
  }

  // ---- the connection ----------------------------------------------------------------

  private open(): void {
    this.refusedStatus = 0;
    const ws = new WebSocket(this.s.url, this.s.protocols, this.s.options);
    this.ws = ws;
    ws.on('redirect', (url: string) => this.status(`redirected to ${url}`));
    ws.on('upgrade', (response: http.IncomingMessage) => (this.httpVersion = response.httpVersion));
    ws.on('open', () => this.onOpen(ws));
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('ping', (data: Buffer) => {
      if (this.s.showPingPong) this.status(`${this.palette.magenta('< ping')}${data.length ? ` ${data}` : ''}`);
    });
    ws.on('pong', (data: Buffer) => this.onPong(data));
    ws.on('error', (err: Error) => {
      if (err instanceof HandshakeError) this.refusedStatus = err.statusCode;
      this.error(`error: ${describeConnectError(err)}`);
    });
    ws.on('close', (code: number, reason: Buffer) => this.onClose(ws, code, reason));
  }

  private onOpen(ws: WebSocket): void {
    this.openedAt = performance.now();
    const redirected = ws.url !== this.s.url ? ` at ${ws.url}` : '';
    // With --http2, which protocol carries it (RFC 8441 or the HTTP/1.1 fallback).
    const carrier = this.s.http2 ? `, over HTTP/${this.httpVersion === '2.0' ? '2' : this.httpVersion}` : '';
    this.status(`connected${redirected} (protocol: ${ws.protocol || 'none'}, extensions: ${ws.extensions || 'none'}${carrier})`);
    for (const message of this.s.execute) this.sendNow(ws, message);
    const queued = this.queue;
    this.queue = [];
    for (const message of queued) this.sendNow(ws, message);
    if (this.s.waitMs !== null) this.waitTimer = setTimeout(() => this.stop(), this.s.waitMs);
    if (this.s.pingIntervalMs !== null) {
      this.pingTimer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) this.ping(ws, String(++this.pingSeq), false);
      }, this.s.pingIntervalMs);
    }
    if ((this.inputEnded && !this.s.waitMode) || this.stopping) this.closeNormally();
    if (this.interactive) this.rl?.prompt();
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (this.s.count !== null && this.received >= this.s.count) return;
    this.received++;
    this.printMessage(data, isBinary);
    if (this.s.count !== null && this.received >= this.s.count) this.stop();
  }

  private onPong(data: Buffer): void {
    const key = data.toString();
    const pending = this.pings.get(key);
    if (pending) {
      this.pings.delete(key);
      if (pending.timer) clearTimeout(pending.timer);
      if (pending.asked || this.s.showPingPong) {
        this.status(`${this.palette.magenta('< pong')}${key ? ` ${key}` : ''} (rtt ${(performance.now() - pending.at).toFixed(1)} ms)`);
      }
    } else if (this.s.showPingPong) {
      this.status(`${this.palette.magenta('< pong')}${key ? ` ${key}` : ''} (unsolicited)`);
    }
  }

  /** Close with --close-code / --close-reason (the end of input, -w, --count, /quit). */
  private closeNormally(): void {
    this.stopping = true;
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.close(this.s.closeCode, this.s.closeReason);
  }

  /** End the run: close the connection if there is one, stop a pending reconnect. */
  private stop(): void {
    this.stopping = true;
    if (this.reconnectTimer) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      this.stopInput();
      this.finish(1);
      return;
    }
    const ws = this.ws;
    if (ws?.readyState === WebSocket.OPEN) this.closeNormally();
    else if (ws?.readyState === WebSocket.CONNECTING) ws.close();
  }

  private clearTimers(): void {
    if (this.waitTimer) clearTimeout(this.waitTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.waitTimer = this.pingTimer = null;
    for (const pending of this.pings.values()) if (pending.timer) clearTimeout(pending.timer);
    this.pings.clear();
  }

  private onClose(ws: WebSocket, code: number, reason: Buffer): void {
    this.clearTimers();
    const countReached = this.s.count !== null && this.received >= this.s.count;
    this.status(`closed: ${code} ${describeCloseCode(code)}${reason.length ? ` reason: ${reason}` : ''}`);
    const normal = code === 1000 || code === 1005 || (this.stopping && ws.wasClean) || countReached;
    const rt = realtimeCloseCode(code);
    const giveUp =
      (rt !== undefined && rt.advice.startsWith('do not')) ||
      (this.refusedStatus >= 400 && this.refusedStatus < 500 && this.refusedStatus !== 408 && this.refusedStatus !== 429);
    if (this.s.reconnect && !this.stopping) {
      if (giveUp) {
        this.status(this.refusedStatus ? `not reconnecting: the server refused with HTTP ${this.refusedStatus}` : `not reconnecting: ${rt!.advice}`);
      } else {
        if (this.openedAt > 0 && performance.now() - this.openedAt >= RECONNECT_RESET_MS) this.attempt = 0;
        this.openedAt = 0;
        const delay = reconnectDelay(this.attempt++);
        this.status(`reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${this.attempt})`);
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = null;
          this.open();
        }, delay);
        return;
      }
    }
    this.stopInput();
    this.finish(normal ? 0 : 1);
  }

  private stopInput(): void {
    this.queue = [];
    this.rl?.close();
    // Stop reading stdin (a terminal or a pipe that stays open must not keep the process alive).
    process.stdin.destroy();
  }

  private finish(code: number): void {
    process.removeListener('SIGINT', this.onInterrupt);
    process.stdout.removeListener('error', this.onOutputError);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.resolve(code);
  }
}

/**
 * A close code's meaning for `connect`: the realtime layer's codes
 * (4000-4999, docs/close-codes.md) by its table, whatever the URL (a 4xxx
 * code from another application is application-defined), else RFC 6455's.
 */
function describeCloseCode(code: number): string {
  const rt = realtimeCloseCode(code);
  if (rt) return `(${rt.meaning}; ${rt.advice}) (switchboard realtime protocol: ${rt.name})`;
  return `(${closeCodeMeaning(code)})`;
}

/** An error of `connect`: a refused handshake with its HTTP status and the start of the body the server sent. */
function describeConnectError(err: Error): string {
  if (err instanceof HandshakeError && err.code === 'WS_ERR_UNEXPECTED_STATUS') {
    const status = `${err.statusCode}${http.STATUS_CODES[err.statusCode] ? ` ${http.STATUS_CODES[err.statusCode]}` : ''}`;
    const body = (err.body ?? '').trim();
    const cut = Buffer.byteLength(err.body ?? '') >= MAX_REFUSAL_BODY_BYTES - 3 ? ' (first 1 KiB)' : '';
    const location = err.statusCode >= 300 && err.statusCode < 400 && err.headers.location ? `\n  Location: ${err.headers.location} (-L follows redirects)` : '';
    return `the server refused the WebSocket upgrade: HTTP ${status}${location}${body ? `\n  ${body.split(/\r?\n/).join('\n  ')}${cut}` : location ? '' : ' (no body)'}`;
  }
  if (err instanceof HandshakeError && err.code === 'WS_ERR_MAX_REDIRECTS') return `${err.message}: more redirects than --max-redirects allows`;
  const code = String((err as NodeJS.ErrnoException).code ?? '');
  if (CERTIFICATE_ERRORS.has(code)) return `${err.message} (${code}): --ca FILE trusts a CA, -k skips the check`;
  return err.message;
}
