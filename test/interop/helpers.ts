/**
 * Shared helpers of the interop tests (Switchboard against the `ws` package
 * and Python's `websockets`): bounded waits, an event recorder that works on
 * both WebSocket implementations, a loopback TCP proxy that records the
 * frames going through it (to see RSV1, fragmentation and close payloads on
 * the wire), a `Sec-WebSocket-Extensions` parser, and the Python child
 * process plumbing.
 *
 * Every wait is bounded: a broken peer fails the test, it never hangs it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

export { WAIT, within } from '../support/wait.js';
import { CHILD_WAIT, WAIT, within } from '../support/wait.js';

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Whatever a 'message' listener got (Buffer, Buffer[], ArrayBuffer), as one Buffer. */
export function toBuffer(data: unknown): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data as Buffer[]);
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (typeof data === 'string') return Buffer.from(data);
  throw new TypeError(`unexpected message data: ${Object.prototype.toString.call(data)}`);
}

// ---------------------------------------------------------------------------
// A recorder of WebSocket events, for Switchboard's and ws's sockets alike

/** The common surface of Switchboard's and `ws`'s WebSocket that the tests use. */
export interface Endpoint extends EventEmitter {
  readonly readyState: number;
  readonly protocol: string;
  readonly extensions: string;
  send(data: unknown, options: { binary?: boolean; fin?: boolean; compress?: boolean }, cb?: (err?: Error | null) => void): unknown;
  ping(data?: unknown): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
}

export interface Received {
  data: Buffer;
  isBinary: boolean;
}

/**
 * Records messages, pings, pongs, errors and the close event of one socket,
 * from the moment it is attached, with bounded waits on each. It attaches an
 * 'error' listener: `ws` would crash the process without one, and a test
 * wants to see errors rather than die of them.
 */
export class Recorder {
  readonly messages: Received[] = [];
  readonly pings: Buffer[] = [];
  readonly pongs: Buffer[] = [];
  readonly errors: Error[] = [];
  closeEvent: { code: number; reason: string } | null = null;
  private waiters: Array<() => void> = [];

  constructor(readonly ws: Endpoint) {
    ws.on('message', (data: unknown, isBinary: boolean) => {
      this.messages.push({ data: toBuffer(data), isBinary });
      this.wake();
    });
    ws.on('ping', (data: Buffer) => {
      this.pings.push(Buffer.from(data));
      this.wake();
    });
    ws.on('pong', (data: Buffer) => {
      this.pongs.push(Buffer.from(data));
      this.wake();
    });
    ws.on('error', (err: Error) => {
      this.errors.push(err);
      this.wake();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeEvent = { code, reason: reason.toString() };
      this.wake();
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolve once `predicate()` holds; reject after `ms` with `what` and what was seen. */
  async until(predicate: () => boolean, what: string, ms = WAIT): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `timed out after ${ms} ms waiting for ${what} (messages: ${this.messages.length}, pings: ${this.pings.length}, ` +
            `pongs: ${this.pongs.length}, errors: [${this.errors.map((e) => e.message).join('; ')}], ` +
            `close: ${this.closeEvent ? `${this.closeEvent.code} ${JSON.stringify(this.closeEvent.reason)}` : 'none'})`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The first `n` messages, once they arrived. */
  async waitMessages(n: number, ms = WAIT): Promise<Received[]> {
    await this.until(() => this.messages.length >= n, `${n} messages`, ms);
    return this.messages.slice(0, n);
  }

  async waitClose(ms = WAIT): Promise<{ code: number; reason: string }> {
    await this.until(() => this.closeEvent !== null, "the 'close' event", ms);
    return this.closeEvent!;
  }
}

/** Resolve on 'open'; reject on 'close' or 'error' before it, or after `ms`. */
export function opened(ws: Endpoint, ms = WAIT): Promise<void> {
  return within(
    new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        ws.removeListener('open', onOpen);
        ws.removeListener('close', onClose);
        ws.removeListener('error', onError);
      };
      const onOpen = (): void => {
        cleanup();
        resolve();
      };
      const onClose = (code: number): void => {
        cleanup();
        reject(new Error(`closed with ${code} before 'open'`));
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(err);
      };
      ws.on('open', onOpen);
      ws.on('close', onClose);
      ws.on('error', onError);
    }),
    ms,
    "'open'",
  );
}

// ---------------------------------------------------------------------------
// Sec-WebSocket-Extensions

export interface ParsedExtension {
  name: string;
  params: Record<string, string | true>;
}

/** A small, independent parser of `Sec-WebSocket-Extensions` values (no quoted commas in practice). */
export function parseExtensions(header: string | undefined): ParsedExtension[] {
  if (header === undefined || header.trim() === '') return [];
  return header
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((element) => {
      const [name, ...rest] = element.split(';').map((s) => s.trim());
      const params: Record<string, string | true> = {};
      for (const p of rest) {
        const eq = p.indexOf('=');
        if (eq === -1) params[p] = true;
        else params[p.slice(0, eq).trim()] = p.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
      }
      return { name: name!, params };
    });
}

/** The value of a header in a raw HTTP head (`Name: value` lines), case-insensitively; joined with ', ' if repeated. */
export function headerIn(head: string, name: string): string | undefined {
  const values: string[] = [];
  for (const line of head.split('\r\n').slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name.toLowerCase()) values.push(line.slice(colon + 1).trim());
  }
  return values.length === 0 ? undefined : values.join(', ');
}

// ---------------------------------------------------------------------------
// A frame-sniffing TCP proxy

export interface WireFrame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  masked: boolean;
  /** Payload length on the wire (compressed, when RSV1 is set). */
  length: number;
  /** Unmasked payload, for control frames only. */
  payload?: Buffer;
}

/**
 * Reads one direction of a WebSocket connection: the HTTP head, then frame
 * headers. Data frame payloads are skipped without being buffered, so a
 * 1 MiB message costs nothing; control frame payloads are kept.
 */
export class Sniffer {
  head: string | null = null;
  readonly frames: WireFrame[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private skip = 0;

  feed(chunk: Buffer): void {
    if (this.skip > 0) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      chunk = chunk.subarray(n);
      if (chunk.length === 0) return;
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.head === null) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      this.head = this.buf.subarray(0, end).toString('latin1');
      this.buf = this.buf.subarray(end + 4);
    }
    for (;;) {
      const buf = this.buf;
      if (buf.length < 2) return;
      let at = 2;
      let length = buf[1]! & 0x7f;
      if (length === 126) {
        if (buf.length < 4) return;
        length = buf.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (buf.length < 10) return;
        length = Number(buf.readBigUInt64BE(2));
        at = 10;
      }
      const masked = (buf[1]! & 0x80) !== 0;
      if (masked) at += 4;
      if (buf.length < at) return;
      const opcode = buf[0]! & 0x0f;
      const frame: WireFrame = { fin: (buf[0]! & 0x80) !== 0, rsv1: (buf[0]! & 0x40) !== 0, opcode, masked, length };
      const total = at + length;
      if (opcode >= 8) {
        if (buf.length < total) return;
        const payload = Buffer.from(buf.subarray(at, total));
        if (masked) {
          const key = buf.subarray(at - 4, at);
          for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
        }
        frame.payload = payload;
        this.frames.push(frame);
        this.buf = buf.subarray(total);
        continue;
      }
      this.frames.push(frame);
      if (buf.length >= total) {
        this.buf = buf.subarray(total);
      } else {
        this.skip = total - buf.length;
        this.buf = Buffer.alloc(0);
        return;
      }
    }
  }

  /** Data frames only (text, binary, continuation). */
  get dataFrames(): WireFrame[] {
    return this.frames.filter((f) => f.opcode < 8);
  }

  /** Close frames as `{ code, reason }` (code 1005 for an empty payload). */
  get closeFrames(): Array<{ code: number; reason: string }> {
    return this.frames
      .filter((f) => f.opcode === 8)
      .map((f) => (f.payload!.length >= 2 ? { code: f.payload!.readUInt16BE(0), reason: f.payload!.subarray(2).toString() } : { code: 1005, reason: '' }));
  }
}

export interface SniffedConnection {
  /** Client to server: the request head and the client's frames. */
  up: Sniffer;
  /** Server to client: the response head and the server's frames. */
  down: Sniffer;
}

/**
 * A loopback TCP proxy to `targetPort` that records what goes through each
 * connection, both ways. Half-closes are forwarded, so the closing handshake
 * and its TCP teardown happen as they would without the proxy.
 */
export class SniffProxy {
  readonly connections: SniffedConnection[] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  private constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(targetPort, '127.0.0.1');
      const record: SniffedConnection = { up: new Sniffer(), down: new Sniffer() };
      this.connections.push(record);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.setNoDelay(true);
        s.on('close', () => this.sockets.delete(s));
      }
      client.on('data', (chunk: Buffer) => record.up.feed(chunk));
      upstream.on('data', (chunk: Buffer) => record.down.feed(chunk));
      client.pipe(upstream);
      upstream.pipe(client);
      // A reset on one side resets the other; a clean close lets the other finish writing.
      const link = (a: net.Socket, b: net.Socket): void => {
        a.on('error', () => b.destroy());
        a.on('close', (hadError) => {
          if (hadError) b.destroy();
          else b.end();
        });
      };
      link(client, upstream);
      link(upstream, client);
    });
  }

  static async start(targetPort: number): Promise<SniffProxy> {
    const proxy = new SniffProxy(targetPort);
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject);
      proxy.server.listen(0, '127.0.0.1', () => resolve());
    });
    proxy.port = (proxy.server.address() as net.AddressInfo).port;
    return proxy;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** The only connection made through the proxy so far. */
  get only(): SniffedConnection {
    assert.equal(this.connections.length, 1, 'expected exactly one connection through the proxy');
    return this.connections[0]!;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// ---------------------------------------------------------------------------
// Python's websockets

/**
 * Debian's Python, which has python3-websockets; `python3` on PATH may be
 * another interpreter without it.
 */
export const PYTHON = '/usr/bin/python3';
export const PY_DIR = fileURLToPath(new URL('./py/', import.meta.url));

let pythonCheck: { ok: true; version: string } | { ok: false; message: string } | null = null;

/**
 * Throws a clear error when Python's `websockets` cannot be imported: the
 * Python tests fail (never skip) without their peer. CI installs it (.ci/run).
 */
export function requirePythonWebsockets(): string {
  if (pythonCheck === null) {
    const r = spawnSync(PYTHON, ['-c', 'import websockets, sys; print(websockets.version.version)'], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    if (r.status === 0) {
      pythonCheck = { ok: true, version: r.stdout.trim() };
    } else {
      const why = r.error ? r.error.message : (r.stderr || r.stdout).trim().split('\n').pop() ?? `exit status ${r.status}`;
      pythonCheck = {
        ok: false,
        message:
          `Python's websockets library is not available: \`${PYTHON} -c 'import websockets'\` failed (${why}). ` +
          'The interop tests need it as a peer: install it with `apt-get install python3-websockets` (.ci/run does).',
      };
    }
  }
  if (!pythonCheck.ok) throw new Error(pythonCheck.message);
  return pythonCheck.version;
}

let h2Check: string | null | undefined;

/**
 * Throws a clear error when Python's `h2` and `wsproto` cannot be imported
 * (the RFC 8441 interop test's peer): it fails, never skips. CI installs
 * python3-h2 and python3-wsproto (.ci/run).
 */
export function requirePythonH2(): void {
  if (h2Check === undefined) {
    const r = spawnSync(PYTHON, ['-c', 'import h2, wsproto'], { encoding: 'utf8', timeout: 10_000 });
    h2Check = r.status === 0 ? null : (r.error?.message ?? (r.stderr || r.stdout).trim().split('\n').pop() ?? `exit status ${r.status}`);
  }
  if (h2Check !== null) {
    throw new Error(`Python's h2/wsproto are not available (${h2Check}): install them with \`apt-get install python3-h2 python3-wsproto\` (.ci/run does).`);
  }
}

/**
 * A Python script run as a child process, stdout read line by line. Kill it
 * with `kill()` (by PID) in an `after` hook or a `finally`; it also exits by
 * itself when its stdin closes (the test process went away).
 */
export class PythonProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly lines: string[] = [];
  stderr = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private partial = '';
  private waiters: Array<() => void> = [];
  private readonly exited: Promise<void>;

  /** `requires` checks the Python libraries the script needs (default: websockets); it throws with how to install them. */
  constructor(script: string, args: string[], requires: () => unknown = requirePythonWebsockets) {
    requires();
    this.child = spawn(PYTHON, ['-u', `${PY_DIR}${script}`, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', PYTHONIOENCODING: 'utf-8' },
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop()!;
      this.lines.push(...parts);
      this.wake();
    });
    this.child.stderr.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise<void>((resolve) => {
      this.child.on('close', (code, signal) => {
        if (this.partial !== '') this.lines.push(this.partial);
        this.partial = '';
        this.exit = { code, signal };
        this.wake();
        resolve();
      });
    });
    // Spawn failures (ENOENT...) arrive as 'error' and then 'close'.
    this.child.on('error', (err) => {
      this.stderr += `\nspawn error: ${err.message}`;
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private describe(): string {
    return `stdout: ${JSON.stringify(this.lines.join('\n'))}; stderr: ${this.stderr.trim() || '(empty)'}` +
      (this.exit ? `; exited with ${this.exit.code ?? this.exit.signal}` : '');
  }

  /** The `n`th line (0-based) of stdout, once written; reject if the process exits first or after `ms`. */
  async line(n: number, ms = CHILD_WAIT): Promise<string> {
    const deadline = Date.now() + ms;
    while (this.lines.length <= n) {
      if (this.exit) throw new Error(`python ${this.child.spawnargs.slice(2).join(' ')} exited before line ${n + 1}: ${this.describe()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for line ${n + 1} from python: ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.lines[n]!;
  }

  /** Line `n` parsed as JSON. */
  async json<T = any>(n: number, ms = CHILD_WAIT): Promise<T> {
    const line = await this.line(n, ms);
    try {
      return JSON.parse(line) as T;
    } catch {
      throw new Error(`python line ${n + 1} is not JSON: ${this.describe()}`);
    }
  }

  /** Wait for the process to exit by itself; reject (and kill it) after `ms`. */
  async waitExit(ms = CHILD_WAIT): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    try {
      await within(this.exited, ms, `python ${this.child.spawnargs.slice(2).join(' ')} to exit (${this.describe()})`);
    } catch (err) {
      this.kill();
      throw err;
    }
    return this.exit!;
  }

  /** Assert a clean exit (status 0), showing stdout and stderr otherwise. */
  async expectSuccess(ms = CHILD_WAIT): Promise<void> {
    const exit = await this.waitExit(ms);
    assert.equal(exit.code, 0, `python exited with ${exit.code ?? exit.signal}: ${this.describe()}`);
  }

  /** SIGKILL by PID, if still running. Idempotent. */
  kill(): void {
    if (this.exit === null && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** Kill and wait for the exit (bounded). */
  async stop(): Promise<void> {
    this.kill();
    await within(this.exited, WAIT, 'python to exit after SIGKILL').catch(() => {});
  }
}
