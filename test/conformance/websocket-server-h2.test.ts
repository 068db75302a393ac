/**
 * The conformance cases (cases.ts) replayed over HTTP/2: our WebSocketServer
 * attached to a node:http2 secure server, the fuzzing peer as its client on
 * an h2 stream opened by an extended CONNECT (RFC 8441) — every case on a
 * stream of its own, all on one HTTP/2 connection per deflate configuration.
 * The frames are the same bytes as over TCP; END_STREAM stands for the FIN.
 */
import http2 from 'node:http2';
import type net from 'node:net';
import { WebSocketServer, type PerMessageDeflateOptions, type WebSocket } from '../../src/index.js';
import { makeTestCertificate } from '../support/certs.js';
import { within } from '../support/wait.js';
import type { ConformanceCase } from './cases.js';
import { deflateParamsFor, FuzzPeer, parseDeflateHeader } from './peer.js';
import { echoApp, runConformanceSuite, WAIT, type Harness } from './runner.js';

interface H2Endpoint {
  server: http2.Http2SecureServer;
  wss: WebSocketServer;
  session: http2.ClientHttp2Session;
  sessions: http2.ServerHttp2Session[];
}

class Http2ServerHarness implements Harness {
  readonly role = 'server';
  private readonly cert = makeTestCertificate();
  private readonly endpoints = new Map<string, Promise<H2Endpoint>>();

  async open(kase: ConformanceCase) {
    const { wss, session } = await this.endpoint(kase.deflate?.server ?? null);
    let implClosed: Promise<void> = Promise.resolve();
    const connected = new Promise<WebSocket>((resolve) =>
      wss.once('connection', (ws: WebSocket) => {
        implClosed = echoApp(ws);
        resolve(ws);
      }),
    );
    const offer = kase.deflate?.offer;
    const stream = session.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':path': '/',
        'sec-websocket-version': '13',
        ...(offer ? { 'sec-websocket-extensions': offer } : {}),
      },
      { endStream: false },
    );
    const [headers] = await within(
      new Promise<[http2.IncomingHttpHeaders]>((resolve, reject) => {
        stream.once('response', (h) => resolve([h]));
        stream.once('error', reject);
      }),
      WAIT,
      'the answer to the extended CONNECT',
    );
    if (Number(headers[':status']) !== 200) throw new Error(`expected 200, got ${headers[':status']}`);
    const ext = headers['sec-websocket-extensions'];
    let deflate = null;
    if (typeof ext === 'string') {
      const params = parseDeflateHeader(ext);
      if (params === null || offer === undefined) throw new Error(`unexpected extensions in the answer: ${ext}`);
      deflate = deflateParamsFor('client', params);
    }
    const peer = new FuzzPeer(stream, 'client', Buffer.alloc(0), deflate);
    const impl = await within(connected, WAIT, "the server's 'connection' event");
    return { peer, impl, implClosed };
  }

  private endpoint(deflate: PerMessageDeflateOptions | null): Promise<H2Endpoint> {
    const key = JSON.stringify(deflate);
    let entry = this.endpoints.get(key);
    if (!entry) {
      entry = (async () => {
        const server = http2.createSecureServer({ cert: this.cert.cert, key: this.cert.key });
        const sessions: http2.ServerHttp2Session[] = [];
        server.on('session', (s) => sessions.push(s));
        const wss = new WebSocketServer({ server, perMessageDeflate: deflate ?? false });
        await new Promise<void>((resolve) => (server as unknown as net.Server).listen(0, '127.0.0.1', resolve));
        const port = (server.address() as net.AddressInfo).port;
        const session = http2.connect(`https://localhost:${port}`, { ca: this.cert.cert });
        session.on('error', () => {});
        await new Promise((resolve) => session.once('remoteSettings', resolve));
        return { server, wss, session, sessions };
      })();
      this.endpoints.set(key, entry);
    }
    return entry;
  }

  async close(): Promise<void> {
    for (const entry of this.endpoints.values()) {
      const { server, wss, session, sessions } = await entry;
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      session.destroy();
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.cert.remove();
  }
}

runConformanceSuite(new Http2ServerHarness());
