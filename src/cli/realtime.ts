/**
 * `switchboard sub` and `switchboard pub`: the realtime protocol from the
 * command line, through the SDK (`src/client`), so they reconnect, resume
 * with positions and retry publications exactly as an application does.
 *
 * Credentials, in order: `--token`, `SWITCHBOARD_TOKEN`, else a development
 * token from `POST /dev/token` on the server's origin (what the demo pages
 * do: a `switchboard serve` without a key, on loopback), fetched again for
 * every connection because a restarted dev server signs with a new secret;
 * a server with no `/dev/token` (404) is connected to anonymously.
 */
import { createInterface } from 'node:readline';
import { Client } from '../client/client.js';
import { closeMeaning } from '../client/close-codes.js';
import type { ClientError } from '../client/errors.js';
import type { ClientOptions } from '../client/options.js';
import type { SubscribedEvent } from '../client/subscription.js';
import type { WebSocketConstructor } from '../client/transports/transport.js';
import type { Publication, StreamPosition } from '../wire/messages.js';
import { WebSocket } from '../transport/websocket.js';
import { HELP, parseCommandArgs, UsageError } from './args.js';

/** The realtime endpoint of a local `switchboard serve` (and `SWITCHBOARD_URL`). */
export const DEFAULT_REALTIME_URL = 'ws://127.0.0.1:8080/rt';

/** The options `sub`, `pub` and `bench fanout` share. */
export const REALTIME_OPTIONS = {
  url: { type: 'string', short: 'u' },
  token: { type: 'string', short: 't' },
  user: { type: 'string' },
  timeout: { type: 'string' },
} as const;

/** How a client authenticates: a fixed token, a token per connection (dev), or none. */
export interface Credentials {
  token?: string;
  getToken?: () => Promise<string>;
  /** In words, for messages: "--token", "a development token for cli (POST /dev/token)", "anonymous". */
  source: string;
}

/** The realtime URL, checked: `--url`, `SWITCHBOARD_URL`, else {@link DEFAULT_REALTIME_URL}. */
export function realtimeUrl(value: string | undefined): string {
  const text = value ?? process.env['SWITCHBOARD_URL'] ?? DEFAULT_REALTIME_URL;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`invalid --url '${text}' (e.g. ${DEFAULT_REALTIME_URL})`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new UsageError(`--url must be ws:// or wss:// (got ${url.protocol}//)`);
  return url.href;
}

/** http(s)://host:port of a ws(s):// URL: where `/dev/token` and `/api/*` are. */
export function httpOrigin(wsUrl: string): string {
  const url = new URL(wsUrl);
  return `${url.protocol === 'wss:' ? 'https:' : 'http:'}//${url.host}`;
}

/** A token from `POST /dev/token` of the server at `origin`, or null when the server has none (404: a key is configured). */
export async function fetchDevToken(origin: string, user: string, timeoutMs = 10_000): Promise<string | null> {
  let response: Response;
  try {
    response = await fetch(`${origin}/dev/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot reach ${origin} for a development token (${cause?.code ?? cause?.message ?? (err as Error).message})`);
  }
  if (response.status === 404) return null;
  const body = (await response.json().catch(() => null)) as { token?: unknown; error?: unknown } | null;
  if (!response.ok) throw new Error(`POST ${origin}/dev/token answered ${response.status}${typeof body?.error === 'string' ? `: ${body.error}` : ''}`);
  if (typeof body?.token !== 'string') throw new Error(`POST ${origin}/dev/token gave no token`);
  return body.token;
}

/**
 * The credentials for `url`: `token` (from `--token`), `SWITCHBOARD_TOKEN`,
 * else development tokens for `user` when the server issues them, else none.
 */
export async function resolveCredentials(url: string, token: string | undefined, user: string): Promise<Credentials> {
  const fixed = token ?? process.env['SWITCHBOARD_TOKEN'];
  if (fixed !== undefined && fixed !== '') return { token: fixed, source: token !== undefined ? '--token' : 'SWITCHBOARD_TOKEN' };
  const origin = httpOrigin(url);
  const first = await fetchDevToken(origin, user);
  if (first === null) return { source: 'anonymous (no --token, and the server issues no development tokens)' };
  let next: string | null = first;
  return {
    // The first from the probe above; then a new one per connection (a restarted dev server has a new secret).
    getToken: async () => {
      const t = next ?? (await fetchDevToken(origin, user));
      next = null;
      if (t === null) throw new Error('the server no longer issues development tokens (POST /dev/token answered 404): pass --token');
      return t;
    },
    source: `development tokens for ${user} (POST ${origin}/dev/token)`,
  };
}

/** An SDK client over our WebSocket (no SSE or polling from the command line). */
export function createCliClient(url: string, credentials: Credentials, options: ClientOptions = {}): Client {
  return new Client(url, {
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    transports: ['websocket'],
    network: null,
    token: credentials.token,
    getToken: credentials.getToken,
    ...options,
  });
}

/** `--timeout` in seconds (default 10), in ms. */
export function parseTimeout(value: string | undefined, fallbackS = 10): number {
  if (value === undefined) return fallbackS * 1000;
  const s = Number(value);
  if (!(s > 0) || !Number.isFinite(s)) throw new UsageError(`invalid --timeout '${value}' (seconds, > 0)`);
  return s * 1000;
}

/** A positive integer option (`--count`, `--since`). */
export function parseCount(value: string | undefined, name: string, min = 1): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`invalid --${name} '${value}' (an integer >= ${min})`);
  return n;
}

/** The words of an SDK error: its message and the server's code when there is one. */
export function describeClientError(err: unknown): string {
  const e = err as ClientError;
  if (e?.serverCode !== undefined) return e.message.includes(String(e.serverCode)) ? e.message : `${e.serverCode} ${e.message}`;
  if (e?.closeCode !== undefined) return `${e.message} (close code ${e.closeCode}: ${closeMeaning(e.closeCode)})`;
  return (err as Error)?.message ?? String(err);
}

/** Resolves on SIGINT/SIGTERM; `off()` removes the handlers. */
function onSignal(): { signalled: Promise<string>; off(): void } {
  let handler: (signal: string) => void = () => {};
  const signalled = new Promise<string>((resolve) => (handler = resolve));
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return {
    signalled,
    off() {
      process.removeListener('SIGINT', handler);
      process.removeListener('SIGTERM', handler);
    },
  };
}

/**
 * Connect `client` within `timeoutMs`; rejects with the words of the last
 * failure (the SDK keeps retrying otherwise).
 */
export async function connectWithin(client: Client, timeoutMs: number): Promise<void> {
  let last = '';
  const offError = client.on('error', (e) => (last = describeClientError(e)));
  const offDown = client.on('disconnected', (e) => (last = `closed ${e.code} (${e.meaning})${e.reason ? `: ${e.reason}` : ''}`));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not connected within ${timeoutMs / 1000} s${last ? `: ${last}` : ''}`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    client.close();
    throw new Error(`cannot connect to ${client.url}: ${describeClientError(err)}${last && !String((err as Error).message).includes(last) ? ` (last: ${last})` : ''}`);
  } finally {
    clearTimeout(timer);
    offError();
    offDown();
  }
}

/** One line for a publication: the data as JSON; `-v` adds the position; `--json` the whole publication. */
function formatPublication(pub: Publication, mode: 'data' | 'verbose' | 'json'): string {
  if (mode === 'json') {
    const { channel, offset, epoch, data, time, from } = pub as Publication & { time?: number; from?: unknown };
    return JSON.stringify({ channel, offset, epoch, data, ...(time !== undefined ? { time } : {}), ...(from !== undefined ? { from } : {}) });
  }
  const data = JSON.stringify(pub.data);
  return mode === 'verbose' ? `${pub.channel} #${pub.offset} (epoch ${pub.epoch}): ${data}` : data;
}

function describePosition(p: StreamPosition | null): string {
  return p ? `offset ${p.offset} (epoch ${p.epoch})` : 'no position';
}

/** What a confirmation of the subscription means, in words (stderr). */
function describeSubscribed(e: SubscribedEvent, since: StreamPosition | undefined): string {
  if (!e.resumed) return `subscribed to ${e.channel} at ${describePosition(e.position)}`;
  if (e.recovered) return `recovered: resumed ${e.channel} after ${since ? describePosition(since) : 'the last publication'}, nothing missed`;
  return (
    `NOT recovered: publications on ${e.channel} after ${since ? describePosition(since) : 'the last one received'} may be lost ` +
    `(the history no longer reaches back, or its epoch changed); continuing from ${describePosition(e.position)}`
  );
}

export async function sub(args: string[]): Promise<number> {
  const parsed = parseCommandArgs('sub', {
    args,
    allowPositionals: true,
    options: {
      ...HELP,
      ...REALTIME_OPTIONS,
      since: { type: 'string' },
      epoch: { type: 'string' },
      json: { type: 'boolean', default: false },
      verbose: { type: 'boolean', short: 'v', default: false },
      count: { type: 'string', short: 'n' },
    },
  });
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  const channel = positionals[0];
  if (!channel) throw new UsageError('a CHANNEL is required, e.g. switchboard sub chat/lobby');
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}' (one channel)`);
  const url = realtimeUrl(values.url);
  const count = parseCount(values.count, 'count');
  const sinceOffset = parseCount(values.since, 'since', 0);
  if (values.epoch !== undefined && sinceOffset === undefined) throw new UsageError('--epoch goes with --since OFFSET');
  const timeoutMs = parseTimeout(values.timeout);
  const mode = values.json ? 'json' : values.verbose ? 'verbose' : 'data';
  const credentials = await resolveCredentials(url, values.token, values.user ?? 'cli');
  const client = createCliClient(url, credentials);
  const status = (line: string): void => void process.stderr.write(`${line}\n`);
  if (values.verbose) status(`connecting to ${url} (${credentials.source})`);
  const signal = onSignal();
  let done = false;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((resolve) => (finish = resolve)).finally(() => (done = true));
  let received = 0;
  let since: StreamPosition | undefined;
  try {
    await connectWithin(client, timeoutMs);
    if (sinceOffset !== undefined) {
      // Without --epoch: the channel's current epoch (offsets count within one).
      const epoch = values.epoch ?? (await client.history(channel, { limit: 0 })).position.epoch;
      since = { offset: sinceOffset, epoch };
    }
  } catch (err) {
    signal.off();
    client.close();
    process.stderr.write(`switchboard sub: ${describeClientError(err)}\n`);
    return 1;
  }
  let lastPosition: StreamPosition | null = since ?? null;
  client.on('disconnected', (e) => {
    if (done) return;
    status(`connection lost: ${e.code} ${e.meaning}${e.reason ? ` (${e.reason})` : ''}${e.willReconnect ? '; reconnecting' : '; giving up'}`);
    if (!e.willReconnect) finish(1);
  });
  client.on('reconnecting', (e) => {
    if (values.verbose) status(`reconnecting in ${(e.inMs / 1000).toFixed(1)} s (attempt ${e.attempt})`);
  });
  client.on('error', (e) => status(`error: ${describeClientError(e)}`));
  const subscription = client.subscribe(channel, {
    since,
    onMessage(pub) {
      lastPosition = { offset: pub.offset, epoch: pub.epoch };
      process.stdout.write(`${formatPublication(pub, mode)}\n`);
      if (count !== undefined && ++received >= count) finish(0);
    },
    onSubscribed(e) {
      status(describeSubscribed(e, e.resumed ? (lastPosition ?? undefined) : undefined));
      if (e.position) lastPosition = lastPosition ?? e.position;
    },
    onError(err) {
      status(`subscription to ${channel} refused: ${describeClientError(err)}`);
      finish(1);
    },
  });
  const code = await Promise.race([finished, signal.signalled.then(() => 0)]);
  done = true;
  signal.off();
  void subscription;
  client.close();
  return code;
}

/** DATA as the publication's data: JSON when it parses (`{"a":1}`, `42`, `"text"`), else the text itself; `--string` always the text. */
function parseData(text: string, asString: boolean): unknown {
  if (asString) return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

export async function pub(args: string[]): Promise<number> {
  const parsed = parseCommandArgs('pub', {
    args,
    allowPositionals: true,
    options: {
      ...HELP,
      ...REALTIME_OPTIONS,
      'api-key': { type: 'string' },
      string: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  if (!parsed) return 0;
  const { values, positionals } = parsed;
  const [channel, data] = positionals;
  if (!channel || data === undefined) throw new UsageError('CHANNEL and DATA are required, e.g. switchboard pub chat/lobby \'{"text":"hi"}\' (DATA - reads lines from stdin)');
  if (positionals.length > 2) throw new UsageError(`unexpected argument '${positionals[2]}' (quote DATA: one argument)`);
  const url = realtimeUrl(values.url);
  const timeoutMs = parseTimeout(values.timeout);
  const apiKey = values['api-key'] ?? process.env['SWITCHBOARD_API_KEY'];
  const print = (r: { offset: number; epoch: string; duplicate: boolean }): void => {
    process.stdout.write(
      values.json
        ? `${JSON.stringify({ channel, offset: r.offset, epoch: r.epoch, duplicate: r.duplicate })}\n`
        : `published to ${channel}: offset ${r.offset}, epoch ${r.epoch}${r.duplicate ? ' (duplicate: the server had this key)' : ''}\n`,
    );
  };
  // Read stdin only once the loop below runs: lines a readline interface emitted before would be lost.
  const items = (): AsyncIterable<string> | string[] => (data === '-' ? createInterface({ input: process.stdin, terminal: false }) : [data]);

  if (apiKey !== undefined && apiKey !== '') {
    for await (const line of items()) {
      if (data === '-' && line === '') continue;
      const result = await publishOverApi(httpOrigin(url), apiKey, channel, parseData(line, values.string), timeoutMs);
      if ('error' in result) {
        process.stderr.write(`switchboard pub: refused: ${result.error}\n`);
        return 1;
      }
      print(result);
    }
    return 0;
  }

  let client: Client | undefined;
  try {
    const credentials = await resolveCredentials(url, values.token, values.user ?? 'cli');
    client = createCliClient(url, credentials, { requestTimeoutMs: timeoutMs, reconnect: { maxAttempts: 3 } });
    await connectWithin(client, timeoutMs);
    for await (const line of items()) {
      if (data === '-' && line === '') continue;
      print(await client.publish(channel, parseData(line, values.string)));
    }
    return 0;
  } catch (err) {
    process.stderr.write(`switchboard pub: ${(err as ClientError).code === 'RT_CLIENT_SERVER_ERROR' ? 'refused: ' : ''}${describeClientError(err)}\n`);
    return 1;
  } finally {
    client?.close();
    if (data === '-') process.stdin.destroy();
  }
}

/** `POST /api/publish` with the API key: the ack, or the server's refusal in words. */
async function publishOverApi(
  origin: string,
  apiKey: string,
  channel: string,
  data: unknown,
  timeoutMs: number,
): Promise<{ offset: number; epoch: string; duplicate: boolean } | { error: string }> {
  let response: Response;
  try {
    response = await fetch(`${origin}/api/publish`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({ channel, data }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return { error: `cannot reach ${origin} (${cause?.code ?? (err as Error).message})` };
  }
  const body = (await response.json().catch(() => null)) as Record<string, unknown> | null;
  if (!response.ok) return { error: `HTTP ${response.status} ${typeof body?.['error'] === 'string' ? body['error'] : ''}`.trim() };
  return { offset: Number(body?.['offset']), epoch: String(body?.['epoch']), duplicate: body?.['duplicate'] === true };
}
