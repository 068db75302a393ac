/**
 * The conformance cases (cases.ts) against our WebSocket client over HTTP/2:
 * `new WebSocket('wss://…', { http2 })` opens each case's WebSocket on a
 * stream of one shared h2 session (RFC 8441 extended CONNECT) to a scripted
 * peer built on node:http2 with `enableConnectProtocol`. The peer answers
 * the CONNECT with 200 (and the case's permessage-deflate response), then
 * plays the server with the same hand-built frames as over TCP; END_STREAM
 * stands for the FIN.
 *
 * Every client case applies over h2; none is left out. The suite has no case
 * about the HTTP/1.1 handshake itself (Sec-WebSocket-Key/Accept, Upgrade,
 * Connection: h2 has none of them; the h2 handshake's refusals and checks are
 * covered in test/integration/transport/http2.test.ts). Case 1.3.2, "frames
 * in the same TCP segment as the 101 response", becomes DATA frames written
 * right behind the 200 HEADERS, before the client could have read them.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, test } from 'node:test';
import { Http2SessionPool } from '../../src/index.js';
import { makeTestCertificate, type TestCertificate } from '../support/certs.js';
import { within } from '../support/wait.js';
import { CASES } from './cases.js';
import { earlyFrames, serverPeer, type FrameSpec, type FuzzPeer } from './peer.js';
import { ClientHarness, runConformanceSuite, WAIT, type PeerServer } from './runner.js';

interface ConnectStream {
  stream: http2.ServerHttp2Stream;
  headers: http2.IncomingHttpHeaders;
}

/** The scripted peer as an h2 server: one extended CONNECT answered per `accept()`, in order. */
class Http2FuzzServer implements PeerServer {
  private readonly pending: ConnectStream[] = [];
  private readonly waiting: Array<(s: ConnectStream) => void> = [];
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  /** Extended CONNECTs seen, and h2 sessions opened: all cases share one session. */
  connects = 0;
  sessionsOpened = 0;

  private constructor(readonly server: http2.Http2SecureServer) {
    server.on('session', (session) => {
      this.sessionsOpened++;
      this.sessions.add(session);
      session.on('error', () => {});
      session.once('close', () => this.sessions.delete(session));
    });
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      if (headers[':method'] !== 'CONNECT' || headers[':protocol'] !== 'websocket') {
        stream.respond({ ':status': 400 }, { endStream: true });
        return;
      }
      this.connects++;
      const waiter = this.waiting.shift();
      if (waiter) waiter({ stream, headers });
      else this.pending.push({ stream, headers });
    });
  }

  static async start(cert: TestCertificate): Promise<Http2FuzzServer> {
    const server = http2.createSecureServer({ cert: cert.cert, key: cert.key, settings: { enableConnectProtocol: true } });
    await new Promise<void>((resolve) => (server as unknown as net.Server).listen(0, '127.0.0.1', resolve));
    return new Http2FuzzServer(server);
  }

  get url(): string {
    return `wss://localhost:${(this.server.address() as net.AddressInfo).port}/`;
  }

  async accept(respond: (offer: string | undefined) => string | null, early: FrameSpec[] = []): Promise<FuzzPeer> {
    const { stream, headers } =
      this.pending.shift() ?? (await within(new Promise<ConnectStream>((resolve) => this.waiting.push(resolve)), WAIT, 'an extended CONNECT from the client'));
    // RFC 8441 §4: no key on h2; the version is still sent.
    if (headers['sec-websocket-version'] !== '13' || headers['sec-websocket-key'] !== undefined) {
      stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      throw new Error(`not an RFC 8441 WebSocket request: ${JSON.stringify(headers)}`);
    }
    const offer = headers['sec-websocket-extensions'];
    const response = respond(typeof offer === 'string' ? offer : undefined);
    stream.respond({ ':status': 200, ...(response ? { 'sec-websocket-extensions': response } : {}) }, { endStream: false });
    if (early.length > 0) stream.write(earlyFrames(early));
    return serverPeer(stream, response);
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const cert = makeTestCertificate();
/** Our client's own pool: every case's WebSocket on one session, closed after the suite. */
const pool = new Http2SessionPool({ idleTimeout: 60_000 });
let peerServer: Http2FuzzServer | null = null;

runConformanceSuite(
  new ClientHarness(
    async () => (peerServer = await Http2FuzzServer.start(cert)),
    { http2: { pool }, ca: cert.cert },
  ),
);

test('every case went over h2: one extended CONNECT per case, all on one HTTP/2 connection', () => {
  assert.ok(peerServer, 'the peer server started');
  const clientCases = CASES.filter((c) => !c.roles || c.roles.includes('client')).length;
  assert.equal(peerServer.connects, clientCases, 'one extended CONNECT per client case');
  assert.equal(peerServer.sessionsOpened, 1, 'the cases shared one h2 session (the pool)');
});

after(() => {
  pool.close();
  cert.remove();
});
