/**
 * Forward proxies for the `connect --proxy` tests, on free loopback ports:
 *
 * - {@link MicroSocks}: Debian's `microsocks` (a real SOCKS5 server,
 *   RFC 1928 + RFC 1929), run in the foreground as a child, stopped by PID.
 *   It logs each tunnel as `client[N] IP: connected to HOST:PORT`, with the
 *   name as the client sent it (so a test tells socks5h:// from socks5://).
 * - {@link httpConnectProxy}: an HTTP CONNECT proxy on node:http, or on
 *   node:https (an `https://` proxy: TLS to the proxy, CONNECT inside it).
 * - {@link scriptedSocks5}: a SOCKS5 peer that answers the greeting and the
 *   request with the bytes a test asks for (a reply code, a wrong version,
 *   a method not offered, a close in the middle): the bad answers a real
 *   proxy gives only when misconfigured.
 *
 * Free of node:test: each returns a `close()`/`dispose()` for the test's `after`.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { ChildServer, freePort } from './child-server.js';

export const MICROSOCKS = process.env.SWITCHBOARD_MICROSOCKS ?? '/usr/bin/microsocks';

export interface MicroSocksOptions {
  /** Require RFC 1929 username/password authentication with these. */
  user?: string;
  password?: string;
}

/** `microsocks -i 127.0.0.1 -p PORT [-u USER -P PASSWORD]`, in the foreground. */
export class MicroSocks extends ChildServer {
  private constructor(port: number) {
    super(port, 'microsocks', 20_000, 3000);
  }

  /** Start on a free port; resolves once it accepts connections. */
  static async start(options: MicroSocksOptions = {}): Promise<MicroSocks> {
    const server = new MicroSocks(await freePort());
    const auth = options.user !== undefined ? ['-u', options.user, '-P', options.password ?? ''] : [];
    await server.launch(MICROSOCKS, ['-i', '127.0.0.1', '-p', String(server.port), ...auth], 10_000);
    return server;
  }

  /** The HOST:PORT of each tunnel it opened, as the client named it (from its log). */
  get tunnels(): string[] {
    return [...this.log.matchAll(/connected to (\S+)/g)].map((m) => m[1]!);
  }
}

export interface ConnectProxy {
  /** `http://127.0.0.1:PORT` or `https://localhost:PORT`. */
  url: string;
  port: number;
  /** Each CONNECT's target (host:port). */
  targets: string[];
  /** Each CONNECT's Proxy-Authorization. */
  auth: Array<string | undefined>;
  close(): Promise<void>;
}

/**
 * A real HTTP CONNECT proxy (node:http, or node:https with `tls`): records
 * each CONNECT target and Proxy-Authorization; `refuse` answers that status
 * instead of opening the tunnel.
 */
export async function httpConnectProxy(options: { refuse?: number; tls?: { cert: Buffer; key: Buffer } } = {}): Promise<ConnectProxy> {
  const targets: string[] = [];
  const auth: Array<string | undefined> = [];
  const sockets = new Set<net.Socket>();
  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }) : http.createServer();
  server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(405).end());
  // A client that gives up on the proxy's certificate: not this server's problem.
  server.on('tlsClientError', () => {});
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    targets.push(req.url ?? '');
    auth.push(req.headers['proxy-authorization']);
    sockets.add(socket);
    socket.on('error', () => {});
    if (options.refuse) {
      socket.end(`HTTP/1.1 ${options.refuse} ${http.STATUS_CODES[options.refuse]}\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(req.url ?? '')!;
    const upstream = net.connect(Number(m[2]), m[1], () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: options.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`,
    port,
    targets,
    auth,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

/** How {@link scriptedSocks5} answers. Unset steps answer as a well-behaved proxy would (and it refuses with 0x05 in the end: no relay). */
export interface Socks5Script {
  /** The whole answer to the greeting (VER METHOD), e.g. `[0x05, 0x03]`, `[0x04, 0x00]`, or 'HTTP/1.1 400 …'. Default: 05 00. */
  greeting?: Buffer | number[] | string;
  /** The reply code (REP) to the CONNECT; default 0x05. */
  reply?: number;
  /** Close the connection after this many bytes of the reply (a truncated answer). */
  cutReplyAfter?: number;
}

/** A SOCKS5 peer that answers per `script` and records each CONNECT's address type and destination. */
export async function scriptedSocks5(script: Socks5Script): Promise<{ url: string; requests: Array<{ atyp: number; host: string; port: number }>; close(): Promise<void> }> {
  const requests: Array<{ atyp: number; host: string; port: number }> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    let step: 'greeting' | 'request' | 'done' = 'greeting';
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (step === 'greeting' && buffered.length >= 2 && buffered.length >= 2 + buffered[1]!) {
        buffered = buffered.subarray(2 + buffered[1]!);
        const answer = script.greeting ?? [0x05, 0x00];
        socket.write(typeof answer === 'string' ? answer : Buffer.from(answer));
        step = 'request';
        return;
      }
      if (step === 'request' && buffered.length >= 5) {
        const atyp = buffered[3]!;
        const length = atyp === 0x01 ? 4 : atyp === 0x04 ? 16 : 1 + buffered[4]!;
        if (buffered.length < 4 + length + 2) return;
        const addr = buffered.subarray(4, 4 + length);
        const host = atyp === 0x01 ? [...addr].join('.') : atyp === 0x04 ? addr.toString('hex') : addr.subarray(1).toString();
        requests.push({ atyp, host, port: buffered.readUInt16BE(4 + length) });
        step = 'done';
        const reply = Buffer.from([0x05, script.reply ?? 0x05, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
        if (script.cutReplyAfter !== undefined) socket.end(reply.subarray(0, script.cutReplyAfter));
        else socket.end(reply);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `socks5://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
