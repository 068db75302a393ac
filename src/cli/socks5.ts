/**
 * A SOCKS5 client for `switchboard connect --proxy socks5://…` (RFC 1928),
 * with username/password authentication (RFC 1929): the CONNECT command
 * only, on a socket already connected to the proxy. Small enough to write
 * here rather than depend on a package; every answer of the proxy is checked
 * and a bad one is an error that says which step, which byte and what it
 * means — never a crash.
 *
 * The socket is read in paused mode (`read(n)`), so no byte past the
 * proxy's reply is taken from it: what the target sends next stays in the
 * socket for TLS or HTTP.
 *
 * @see https://www.rfc-editor.org/rfc/rfc1928
 * @see https://www.rfc-editor.org/rfc/rfc1929
 */
import dns from 'node:dns';
import net from 'node:net';

/** RFC 1928 §3 authentication methods. */
export const Socks5Method = { NoAuthentication: 0x00, UsernamePassword: 0x02, NoAcceptable: 0xff } as const;

/** RFC 1928 §4 address types. */
export const Socks5AddressType = { IPv4: 0x01, DomainName: 0x03, IPv6: 0x04 } as const;

/** RFC 1928 §6 reply codes (REP). */
export const Socks5Reply = {
  Succeeded: 0x00,
  GeneralFailure: 0x01,
  NotAllowedByRuleset: 0x02,
  NetworkUnreachable: 0x03,
  HostUnreachable: 0x04,
  ConnectionRefused: 0x05,
  TtlExpired: 0x06,
  CommandNotSupported: 0x07,
  AddressTypeNotSupported: 0x08,
} as const;

/** The words of RFC 1928 §6 for each reply code. */
const REPLY_MEANING: Record<number, string> = {
  [Socks5Reply.GeneralFailure]: 'general SOCKS server failure',
  [Socks5Reply.NotAllowedByRuleset]: 'connection not allowed by ruleset',
  [Socks5Reply.NetworkUnreachable]: 'network unreachable',
  [Socks5Reply.HostUnreachable]: 'host unreachable',
  [Socks5Reply.ConnectionRefused]: 'connection refused',
  [Socks5Reply.TtlExpired]: 'TTL expired',
  [Socks5Reply.CommandNotSupported]: 'command not supported',
  [Socks5Reply.AddressTypeNotSupported]: 'address type not supported',
};

/** A reply code in words, as RFC 1928 §6 names it. */
export function socks5ReplyMeaning(code: number): string {
  return REPLY_MEANING[code] ?? 'unassigned reply code';
}

const hex = (n: number): string => `0x${n.toString(16).padStart(2, '0')}`;

/** What {@link socks5Connect} needs. */
export interface Socks5Request {
  /** The proxy as `host:port`, for messages. */
  proxy: string;
  /** The target. */
  host: string;
  port: number;
  /** Send the name for the proxy to resolve (`socks5h://`); else resolve it here and send the address (`socks5://`). */
  remoteDns: boolean;
  /** RFC 1929 credentials (from the proxy URL), each 1-255 bytes. */
  username?: string;
  password?: string;
  /** Give up when the proxy has not answered a step within this many ms. Default 10000. */
  timeout?: number;
  /** How to resolve a name for `socks5://` (default `dns.lookup`). */
  lookup?: (host: string) => Promise<string>;
}

/** What the proxy said once the tunnel is up. */
export interface Socks5Tunnel {
  /** What the CONNECT asked for (`host:port`, the name or the address sent). */
  requested: string;
  /** Whether the name went to the proxy (`socks5h://`). */
  remoteDns: boolean;
  /** The proxy's BND.ADDR:BND.PORT (the address it connects from). */
  bound: string;
}

/** A refusal or a protocol error of the proxy; `reply` is the RFC 1928 reply code when the proxy sent one. */
export class Socks5Error extends Error {
  readonly reply: number | undefined;
  constructor(message: string, reply?: number) {
    super(message);
    this.name = 'Socks5Error';
    this.reply = reply;
  }
}

/** `host:port`, IPv6 in brackets. */
function authority(host: string, port: number): string {
  return `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
}

async function defaultLookup(host: string): Promise<string> {
  return (await dns.promises.lookup(host)).address;
}

/** Reads exactly n bytes at a time from a socket in paused mode; rejects when it closes, errs, or stays silent past the timeout. */
class ExactReader {
  private readonly socket: net.Socket;
  private readonly timeout: number;
  private readonly proxy: string;

  constructor(socket: net.Socket, proxy: string, timeout: number) {
    this.socket = socket;
    this.proxy = proxy;
    this.timeout = timeout;
  }

  read(n: number, step: string): Promise<Buffer> {
    const socket = this.socket;
    return new Promise<Buffer>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        socket.removeListener('readable', tryRead);
        socket.removeListener('end', onEnd);
        socket.removeListener('close', onEnd);
        socket.removeListener('error', onError);
      };
      const tryRead = (): void => {
        const chunk = socket.read(n) as Buffer | null;
        if (chunk === null) {
          // Fewer than n bytes, and the stream ended: read() gives what is left, or null.
          if (socket.readableEnded) onEnd();
          return;
        }
        cleanup();
        if (chunk.length < n) reject(new Socks5Error(`SOCKS5 proxy ${this.proxy} closed the connection in the middle of its answer to the ${step}`));
        else resolve(chunk);
      };
      const onEnd = (): void => {
        cleanup();
        reject(new Socks5Error(`SOCKS5 proxy ${this.proxy} closed the connection before answering the ${step}`));
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(new Socks5Error(`SOCKS5 proxy ${this.proxy}: ${err.message} (during the ${step})`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Socks5Error(`SOCKS5 proxy ${this.proxy} did not answer the ${step} within ${this.timeout / 1000} s`));
      }, this.timeout);
      socket.on('readable', tryRead);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
      socket.once('error', onError);
      tryRead();
    });
  }
}

/**
 * Open a tunnel to `request.host:port` through the SOCKS5 proxy at the
 * other end of `socket` (connected). Resolves once the proxy replied
 * "succeeded": from then on the socket carries the target's bytes. Rejects
 * with a {@link Socks5Error} saying what went wrong; the caller destroys
 * the socket.
 */
export async function socks5Connect(socket: net.Socket, request: Socks5Request): Promise<Socks5Tunnel> {
  const { proxy, host, port } = request;
  const reader = new ExactReader(socket, proxy, request.timeout ?? 10_000);
  const withCredentials = request.username !== undefined;

  // RFC 1928 §3: VER 5, NMETHODS, METHODS. Offer username/password only when the URL has credentials.
  const methods = withCredentials ? [Socks5Method.NoAuthentication, Socks5Method.UsernamePassword] : [Socks5Method.NoAuthentication];
  socket.write(Buffer.from([0x05, methods.length, ...methods]));
  const choice = await reader.read(2, 'greeting');
  if (choice[0] !== 0x05) throw notSocks5(proxy, choice, 'greeting');
  const method = choice[1]!;
  if (method === Socks5Method.NoAcceptable) {
    throw new Socks5Error(
      withCredentials
        ? `SOCKS5 proxy ${proxy} accepts none of the offered authentication methods (no authentication, username/password; reply 0xff)`
        : `SOCKS5 proxy ${proxy} requires authentication (it accepts no method offered: no authentication; reply 0xff): put the credentials in the URL, socks5://USER:PASSWORD@host:port`,
    );
  }
  if (!(methods as number[]).includes(method)) {
    throw new Socks5Error(`SOCKS5 proxy ${proxy} chose authentication method ${hex(method)}, which was not offered (a protocol error)`);
  }

  if (method === Socks5Method.UsernamePassword) {
    // RFC 1929 §2: VER 1, ULEN, UNAME, PLEN, PASSWD; the answer is VER 1, STATUS (0 = success).
    const user = Buffer.from(request.username ?? '');
    const pass = Buffer.from(request.password ?? '');
    if (user.length < 1 || user.length > 255 || pass.length > 255) {
      throw new Socks5Error('SOCKS5 username/password: each 255 bytes at most, the username at least 1 (RFC 1929)');
    }
    socket.write(Buffer.concat([Buffer.from([0x01, user.length]), user, Buffer.from([pass.length]), pass]));
    const status = await reader.read(2, 'username/password authentication');
    if (status[0] !== 0x01) {
      throw new Socks5Error(`SOCKS5 proxy ${proxy} answered the username/password authentication with version ${hex(status[0]!)} (RFC 1929 says 0x01)`);
    }
    if (status[1] !== 0x00) {
      throw new Socks5Error(`SOCKS5 proxy ${proxy} refused the username/password of '${request.username}' (RFC 1929 status ${hex(status[1]!)})`);
    }
  }

  // RFC 1928 §4: VER 5, CMD 1 (CONNECT), RSV 0, ATYP, DST.ADDR, DST.PORT.
  let address = host.replace(/^\[|\]$/g, '');
  if (!request.remoteDns && net.isIP(address) === 0) {
    try {
      address = await (request.lookup ?? defaultLookup)(address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new Socks5Error(`cannot resolve ${host} (${code}): socks5:// resolves names here; socks5h:// has the proxy resolve them`);
    }
  }
  let destination: Buffer;
  if (net.isIPv4(address)) destination = Buffer.from([Socks5AddressType.IPv4, ...address.split('.').map(Number)]);
  else if (net.isIPv6(address)) destination = Buffer.concat([Buffer.from([Socks5AddressType.IPv6]), ipv6Bytes(address)]);
  else {
    const name = Buffer.from(address);
    if (name.length > 255) throw new Socks5Error(`the host name ${host.slice(0, 40)}… is over 255 bytes: SOCKS5 cannot carry it`);
    destination = Buffer.concat([Buffer.from([Socks5AddressType.DomainName, name.length]), name]);
  }
  const portBytes = Buffer.alloc(2);
  portBytes.writeUInt16BE(port);
  socket.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00]), destination, portBytes]));
  const requested = authority(address, port);

  // RFC 1928 §6: VER, REP, RSV, ATYP, BND.ADDR, BND.PORT.
  const head = await reader.read(4, `CONNECT ${requested}`);
  if (head[0] !== 0x05) throw notSocks5(proxy, head, `CONNECT ${requested}`);
  const reply = head[1]!;
  if (reply !== Socks5Reply.Succeeded) {
    throw new Socks5Error(`SOCKS5 proxy ${proxy} refused CONNECT ${requested}: ${socks5ReplyMeaning(reply)} (reply ${hex(reply)})`, reply);
  }
  let bound: string;
  const atyp = head[3]!;
  if (atyp === Socks5AddressType.IPv4) {
    const b = await reader.read(6, 'CONNECT (its bound address)');
    bound = `${[...b.subarray(0, 4)].join('.')}:${b.readUInt16BE(4)}`;
  } else if (atyp === Socks5AddressType.IPv6) {
    const b = await reader.read(18, 'CONNECT (its bound address)');
    bound = `[${ipv6Text(b.subarray(0, 16))}]:${b.readUInt16BE(16)}`;
  } else if (atyp === Socks5AddressType.DomainName) {
    const length = (await reader.read(1, 'CONNECT (its bound address)'))[0]!;
    const b = await reader.read(length + 2, 'CONNECT (its bound address)');
    bound = `${b.subarray(0, length).toString()}:${b.readUInt16BE(length)}`;
  } else {
    throw new Socks5Error(`SOCKS5 proxy ${proxy} answered CONNECT ${requested} with address type ${hex(atyp)} (RFC 1928 has 0x01, 0x03, 0x04)`);
  }
  return { requested, remoteDns: !net.isIP(address), bound };
}

/** The error for an answer that is not SOCKS5 (an HTTP proxy answers `HTTP/1.1 400`...). */
function notSocks5(proxy: string, answer: Buffer, step: string): Socks5Error {
  const printable = answer.every((b) => b >= 0x20 && b < 0x7f) ? ` ('${answer.toString('latin1')}'…: an HTTP proxy? use http://)` : '';
  return new Socks5Error(`proxy ${proxy} does not speak SOCKS5: it answered the ${step} with version ${hex(answer[0]!)}${printable}`);
}

function ipv6Bytes(address: string): Buffer {
  // Expand '::' and embedded IPv4 into 8 groups of 16 bits.
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const p = v4[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [left, right] = text.includes('::') ? text.split('::') : [text, undefined];
  const l = left ? left.split(':') : [];
  const r = right ? right.split(':') : [];
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function ipv6Text(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':');
}
