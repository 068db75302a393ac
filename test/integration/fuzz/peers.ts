/**
 * What the process-level fuzz test (serve-fuzz.test.ts) talks to and with:
 * `switchboard serve` as a child process, WebSocket peers (the `ws`
 * package, so the server is checked against a client that is not ours),
 * SSE / long-polling sessions over plain `node:http`, and HS256 tokens
 * signed by hand (so their claims can be anything, deep or odd).
 *
 * Every wait is bounded; every peer records what it received, in order,
 * and how it ended.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { jsonCodec, msgpackCodec } from '../../../src/wire/codec.js';
import { Wakeup, within } from '../../support/wait.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = new URL('../../../src/cli/main.ts', import.meta.url).href;
/** tsx compiles on start. */
const START_MS = 20_000;

// ---------------------------------------------------------------------------
// The server process

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  base: string;
  url: string;
  /** JSON log lines (pino, stdout); lines that are not JSON as `{ text }`. */
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  exit: { code: number | null; signal: NodeJS.Signals | null; at: number } | null;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What says the process is broken: an exit, an uncaught exception on stderr, an error or fatal log line. */
  trouble(): string | null;
}

/** `switchboard serve --config <config> --snapshot-file <snapshot> --port 0` from source, through tsx, without the environment's SWITCHBOARD_* variables. */
export async function startServe(config: string, snapshot: string): Promise<ServeProcess> {
  const argv = ['serve', '--config', config, '--snapshot-file', snapshot, '--port', '0'];
  const code = `import(${JSON.stringify(MAIN)}).then(async (m) => { process.exitCode = await m.main(${JSON.stringify(argv)}); })`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_')));
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const wake = new Wakeup();
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const proc: Partial<ServeProcess> & { exit: ServeProcess['exit'] } = { child, pid: child.pid!, logs, stderr, exit: null };
  proc.exited = new Promise((resolve) =>
    child.on('exit', (c, signal) => {
      proc.exit = { code: c, signal, at: Date.now() };
      wake.wake();
      resolve({ code: c, signal });
    }),
  );
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      logs.push({ text: line });
    }
    wake.wake();
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    wake.wake();
  });
  proc.trouble = () => {
    const problems: string[] = [];
    if (proc.exit) problems.push(`the process exited (code ${proc.exit.code}, signal ${proc.exit.signal})`);
    // The one line serve writes to stderr is its banner; anything else is Node's report of an uncaught exception.
    const other = stderr.filter((l) => !l.startsWith('switchboard: http://'));
    if (other.length > 0) problems.push(`stderr:\n    ${other.slice(0, 40).join('\n    ')}`);
    const bad = logs.filter((l) => typeof l.level === 'number' && l.level >= 50);
    if (bad.length > 0) problems.push(`error log lines:\n    ${bad.slice(0, 10).map((l) => JSON.stringify(l).slice(0, 600)).join('\n    ')}`);
    return problems.length > 0 ? problems.join('\n  ') : null;
  };
  let listening: Record<string, unknown>;
  try {
    listening = await wake.until(
      () => {
        if (proc.exit) throw new Error(`switchboard serve exited (${proc.exit.code ?? proc.exit.signal}) before listening; stderr: ${stderr.join(' | ')}`);
        return logs.find((l) => l.msg === 'listening' && typeof l.port === 'number');
      },
      START_MS,
      `switchboard serve to listen (stderr: ${stderr.join(' | ')})`,
    );
  } catch (err) {
    if (!proc.exit) child.kill('SIGKILL');
    throw err;
  }
  const port = listening.port as number;
  return Object.assign(proc, { port, base: `http://127.0.0.1:${port}`, url: `ws://127.0.0.1:${port}/rt` }) as ServeProcess;
}

/** SIGKILL by PID, if it still runs. */
export function killServe(p: ServeProcess | undefined): void {
  if (p && !p.exit) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

// ---------------------------------------------------------------------------
// Tokens

function b64url(s: string | Buffer): string {
  return Buffer.from(s).toString('base64url');
}

/** An HS256 JWT over an arbitrary payload text (which need not be what JSON.stringify would write). */
export function signRaw(payloadJson: string, secret: string, header = '{"alg":"HS256","typ":"JWT"}'): string {
  const input = `${b64url(header)}.${b64url(payloadJson)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

export function signToken(user: string, secret: string, extra: Record<string, unknown> = {}, ttlS = 3600): string {
  return signRaw(JSON.stringify({ sub: user, exp: Math.floor(Date.now() / 1000) + ttlS, ...extra }), secret);
}

// ---------------------------------------------------------------------------
// Server messages

export type ServerMessage = Record<string, unknown> & { op?: unknown };
/** Pushes: not replies to a request. */
export const PUSH_OPS = new Set(['msg', 'join', 'leave', 'count', 'refresh', 'closing', 'ping']);

export interface Ended {
  code: number;
  reason: string;
  at: number;
}

/** What every peer has: what it received (decoded), how it ended, and a wake-up for waits. */
export interface Peer {
  readonly name: string;
  readonly inbox: ServerMessage[];
  readonly undecodable: string[];
  ended: Ended | null;
  readonly wake: Wakeup;
}

// ---------------------------------------------------------------------------
// WebSocket

export type Encoding = 'json' | 'msgpack';
export const SUBPROTOCOL: Record<Encoding, string> = { json: 'switchboard.v1.json', msgpack: 'switchboard.v1.msgpack' };

export class WsPeer implements Peer {
  readonly inbox: ServerMessage[] = [];
  readonly undecodable: string[] = [];
  readonly wake = new Wakeup();
  ended: Ended | null = null;
  /** HTTP status of a refused upgrade. */
  refused: number | null = null;
  /** The socket failed (ECONNRESET, ...) rather than closing. */
  error: string | null = null;
  readonly ws: WebSocket;

  constructor(
    readonly name: string,
    url: string,
    readonly encoding: Encoding,
    headers: Record<string, string> = {},
  ) {
    this.ws = new WebSocket(url, [SUBPROTOCOL[encoding]], { headers, perMessageDeflate: false, maxPayload: 512 * 1024 * 1024, handshakeTimeout: 5000 });
    this.ws.on('message', (data: Buffer, isBinary: boolean) => {
      let msg: unknown;
      try {
        // The SDK's own codecs: what the server sends must be readable by our client.
        msg = encoding === 'msgpack' ? msgpackCodec.decode(isBinary ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : data.toString()) : jsonCodec.decode(isBinary ? new Uint8Array(data) : data.toString());
      } catch (err) {
        this.undecodable.push(`${(err as Error).message} (${isBinary ? 'binary' : 'text'} frame, ${data.length} B, starts ${data.subarray(0, 48).toString('hex')})`);
        this.wake.wake();
        return;
      }
      this.inbox.push(msg as ServerMessage);
      this.wake.wake();
    });
    this.ws.on('open', () => this.wake.wake());
    this.ws.on('unexpected-response', (_req, res) => {
      this.refused = res.statusCode ?? 0;
      res.resume();
      this.ended = { code: -1, reason: `HTTP ${res.statusCode}`, at: Date.now() };
      this.ws.terminate();
      this.wake.wake();
    });
    this.ws.on('error', (err) => {
      this.error ??= err.message;
      this.wake.wake();
    });
    this.ws.on('close', (code, reason) => {
      this.ended ??= { code, reason: reason.toString(), at: Date.now() };
      this.wake.wake();
    });
  }

  /** Resolves once open; rejects when the upgrade is refused or fails. */
  async opened(ms = 5000): Promise<void> {
    await this.wake.until(
      () => {
        if (this.ws.readyState === WebSocket.OPEN) return true;
        if (this.ended || this.ws.readyState === WebSocket.CLOSED) throw new Error(`${this.name}: the upgrade failed (${this.ended?.reason ?? this.error ?? 'closed'})`);
        return undefined;
      },
      ms,
      `${this.name} to open`,
    );
  }

  /** Resolves with the HTTP status of a refused upgrade, or 101 once open. */
  async outcome(ms = 5000): Promise<number> {
    return this.wake.until(
      () => {
        if (this.ws.readyState === WebSocket.OPEN) return 101;
        if (this.refused !== null) return this.refused;
        if (this.ended || this.ws.readyState === WebSocket.CLOSED) return 0;
        return undefined;
      },
      ms,
      `${this.name}: the upgrade's answer`,
    );
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(payload: string | Uint8Array, binary: boolean): void {
    if (!this.open) return;
    this.ws.send(payload, { binary });
  }

  /** Bytes straight onto the TCP connection, under the framing. */
  writeRaw(bytes: Uint8Array): void {
    const socket = (this.ws as unknown as { _socket?: { write(b: Uint8Array): void } })._socket;
    socket?.write(bytes);
  }

  request(msg: Record<string, unknown>): void {
    if (this.encoding === 'msgpack') this.send(msgpackCodec.encode(msg) as Uint8Array, true);
    else this.send(JSON.stringify(msg), false);
  }

  /** Close (1000) and wait for the end; terminate when the server does not finish the handshake. */
  async close(ms = 3000): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    try {
      await this.wake.until(() => (this.ws.readyState === WebSocket.CLOSED ? true : undefined), ms, `${this.name} to close`);
    } catch {
      this.ws.terminate();
    }
  }

  terminate(): void {
    this.ws.terminate();
  }
}

// ---------------------------------------------------------------------------
// HTTP

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** One request on its own connection; the answer read whole. `ms` bounds all of it. */
export function httpRequest(
  base: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array; ms?: number } = {},
): Promise<HttpAnswer> {
  const { method = options.body === undefined ? 'GET' : 'POST', ms = 10_000 } = options;
  let req: http.ClientRequest | undefined;
  return within(
    new Promise<HttpAnswer>((resolve, reject) => {
      let answered = false;
      req = http.request(new URL(path, base), { method, headers: options.headers, agent: false }, (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      });
      // A server may answer (413) and close before the whole body is written: the write
      // fails (EPIPE, ECONNRESET) but the answer may still arrive; wait a moment for it.
      req.on('error', (err) => {
        if (!answered) setTimeout(() => reject(err), 300);
      });
      req.end(options.body);
    }),
    ms,
    `${method} ${path.slice(0, 120)}`,
  ).finally(() => req?.destroy());
}

// ---------------------------------------------------------------------------
// Fallback sessions

export class FallbackPeer implements Peer {
  readonly inbox: ServerMessage[] = [];
  readonly undecodable: string[] = [];
  readonly wake = new Wakeup();
  ended: Ended | null = null;
  /** A receiver request failed in a way the protocol does not describe. */
  readonly receiverErrors: string[] = [];
  private last = 0;
  private stopped = false;
  private current: http.ClientRequest | null = null;
  private loop: Promise<void> = Promise.resolve();

  private constructor(
    readonly name: string,
    readonly base: string,
    readonly session: string,
    readonly kind: 'sse' | 'poll',
  ) {}

  /** `POST /rt/session`; the peer, with its receiver running, or the refusal. */
  static async open(name: string, base: string, kind: 'sse' | 'poll', headers: Record<string, string>): Promise<FallbackPeer | HttpAnswer> {
    const res = await httpRequest(base, '/rt/session', { body: JSON.stringify({ transport: kind }), headers: { 'Content-Type': 'application/json', ...headers } });
    if (res.status !== 201) return res;
    const { session } = JSON.parse(res.text) as { session: string };
    const peer = new FallbackPeer(name, base, session, kind);
    peer.loop = kind === 'poll' ? peer.pollLoop() : peer.sseStream();
    return peer;
  }

  private take(raw: string, seq: number): void {
    let msg: ServerMessage;
    try {
      msg = JSON.parse(raw) as ServerMessage;
    } catch (err) {
      this.undecodable.push(`${(err as Error).message}: ${raw.slice(0, 100)}`);
      return;
    }
    this.last = Math.max(this.last, seq);
    if (msg.op === 'close') this.ended = { code: Number(msg.code), reason: String(msg.reason), at: Date.now() };
    else this.inbox.push(msg);
    this.wake.wake();
  }

  private async pollLoop(): Promise<void> {
    // Bounded: the server answers within pollTimeoutMs; the loop ends with the session or stop().
    for (let i = 0; i < 100_000 && !this.stopped && !this.ended; i++) {
      let res: HttpAnswer;
      try {
        res = await new Promise<HttpAnswer>((resolve, reject) => {
          const req = http.get(new URL(`/rt/session/${this.session}/poll?ack=${this.last}`, this.base), { agent: false, timeout: 15_000 }, (r) => {
            const chunks: Buffer[] = [];
            r.on('data', (c: Buffer) => chunks.push(c));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, text: Buffer.concat(chunks).toString() }));
            r.on('error', reject);
          });
          req.on('timeout', () => req.destroy(new Error('poll timed out')));
          req.on('error', reject);
          this.current = req;
        });
      } catch (err) {
        if (!this.stopped) this.receiverErrors.push(`poll: ${(err as Error).message}`);
        break;
      } finally {
        this.current = null;
      }
      if (res.status === 404 && this.ended) break;
      if (res.status !== 200) {
        if (!this.stopped) this.receiverErrors.push(`poll answered ${res.status} ${res.text.slice(0, 200)}`);
        this.wake.wake();
        break;
      }
      let body: { messages: Array<{ id: number; msg: unknown }> };
      try {
        body = JSON.parse(res.text) as typeof body;
      } catch (err) {
        this.undecodable.push(`poll answer: ${(err as Error).message}`);
        break;
      }
      for (const m of body.messages) this.take(JSON.stringify(m.msg), m.id);
    }
  }

  private sseStream(): Promise<void> {
    return new Promise<void>((resolve) => {
      const req = http.get(new URL(`/rt/session/${this.session}/events`, this.base), { agent: false, headers: { Accept: 'text/event-stream' } }, (res) => {
        if (res.statusCode !== 200) {
          this.receiverErrors.push(`events answered ${res.statusCode}`);
          res.resume();
          resolve();
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) !== -1) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let id = 0;
            const data: string[] = [];
            for (const line of event.split('\n')) {
              if (line.startsWith('id: ')) id = Number(line.slice(4));
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (data.length > 0) this.take(data.join('\n'), id);
          }
        });
        res.on('end', resolve);
        res.on('error', () => resolve());
        res.on('close', resolve);
      });
      req.on('error', (err) => {
        if (!this.stopped) this.receiverErrors.push(`events: ${err.message}`);
        resolve();
      });
      this.current = req;
    }).finally(() => {
      this.current = null;
      this.wake.wake();
    });
  }

  /** `POST /rt/session/<id>` with a body as given. */
  post(body: string, contentType = 'application/json'): Promise<HttpAnswer> {
    const headers: Record<string, string> = {};
    if (contentType) headers['Content-Type'] = contentType;
    return httpRequest(this.base, `/rt/session/${this.session}`, { body, headers });
  }

  request(msg: Record<string, unknown>): Promise<HttpAnswer> {
    return this.post(JSON.stringify([msg]));
  }

  /** DELETE the session and stop the receiver. */
  async close(): Promise<void> {
    this.stopped = true;
    if (!this.ended) await httpRequest(this.base, `/rt/session/${this.session}`, { method: 'DELETE' }).catch(() => undefined);
    this.current?.destroy();
    await within(this.loop, 5000, `${this.name}'s receiver to stop`).catch(() => undefined);
  }

  terminate(): void {
    this.stopped = true;
    this.current?.destroy();
  }
}
