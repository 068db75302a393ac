/**
 * A raw node:http2 client for the RFC 8441 tests: any request headers
 * (pseudo-headers included) on a fresh session, the answer read back.
 * Refusals and odd requests are built with it; WebSockets use our client.
 */
import http2 from 'node:http2';
import { waitEvent, within, WAIT } from './wait.js';

export interface RawH2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  /** The body up to END_STREAM (empty for an accepted CONNECT, whose stream stays open). */
  body: string;
  stream: http2.ClientHttp2Stream;
  session: http2.ClientHttp2Session;
}

/** Open a session to `origin` (`https://localhost:port`) trusting `ca`; the caller destroys it (see `answer.session`). */
export async function rawH2Session(origin: string, ca: Buffer): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(origin, { ca });
  session.on('error', () => {});
  await waitEvent(session, 'remoteSettings');
  return session;
}

/** Send `headers` on a new stream of `session` (or of a fresh one) and read the answer (bounded). */
export async function rawH2Request(
  target: { origin: string; ca: Buffer } | http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
): Promise<RawH2Answer> {
  const session = 'origin' in target && typeof target.origin === 'string' ? await rawH2Session(target.origin, target.ca) : (target as http2.ClientHttp2Session);
  const stream = session.request(headers, { endStream: headers[':method'] !== 'CONNECT' });
  stream.on('error', () => {});
  const [answer] = await waitEvent<[http2.IncomingHttpHeaders]>(stream, 'response');
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const status = Number(answer[':status']);
  if (status !== 200 || headers[':method'] !== 'CONNECT') await within(new Promise((r) => stream.once('close', r)), WAIT, 'the answer to end');
  return { status, headers: answer, body: Buffer.concat(chunks).toString(), stream, session };
}

/** The headers of an extended CONNECT for a WebSocket (RFC 8441 §5) to `authority`, with `extra` over them. */
export function connectHeaders(authority: string, extra: http2.OutgoingHttpHeaders = {}): http2.OutgoingHttpHeaders {
  return {
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': '/',
    ':authority': authority,
    'sec-websocket-version': '13',
    ...extra,
  };
}
