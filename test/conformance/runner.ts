/**
 * Runs the conformance cases of cases.ts against one implementation:
 * `ServerHarness` puts our `WebSocketServer` (an echo app) under test with
 * the fuzzing peer as its client; `ClientHarness` puts our `WebSocket`
 * client (an echo app too) under test with the fuzzing peer as its server.
 * `runConformanceSuite` makes one node:test test per case id, named
 * `<role> <id> <title>`.
 */
import { createHash } from 'node:crypto';
import { after, test } from 'node:test';
import { WebSocket, WebSocketServer, type ClientOptions, type PerMessageDeflateOptions } from '../../src/index.js';
import { CASES, type ConformanceCase, type ExpectedEvent, type Role, type Step } from './cases.js';
import { connectPeer, FuzzServer, type FrameSpec, type FuzzPeer, type PeerEvent } from './peer.js';
import { sleep, within } from '../support/wait.js';

/** Default bound of every wait in a case, in ms (loopback answers in well under a millisecond). */
export const WAIT = 2000;
/**
 * How long the peer playing the server waits after the closing handshake
 * before it closes the TCP connection: a client that closes first in that
 * time breaks RFC 6455 §7.1.1 ("the server closes first").
 */
const CLIENT_GRACE_MS = 15;

// ---------------------------------------------------------------------------
// The implementations under test

interface Subject {
  peer: FuzzPeer;
  impl: WebSocket;
  /** Resolves when the implementation's WebSocket emitted 'close'. */
  implClosed: Promise<void>;
}

export interface Harness {
  readonly role: Role;
  open(kase: ConformanceCase): Promise<Subject>;
  close(): Promise<void>;
}

/** The application of both implementations: text echoed as text, binary as binary. */
export function echoApp(ws: WebSocket): Promise<void> {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  // Errors are only emitted to listeners; the peer sees the close frame anyway.
  ws.on('error', () => {});
  return new Promise((resolve) => ws.once('close', () => resolve()));
}

export class ServerHarness implements Harness {
  readonly role = 'server';
  private readonly servers = new Map<string, Promise<{ wss: WebSocketServer; port: number }>>();

  async open(kase: ConformanceCase): Promise<Subject> {
    const { wss, port } = await this.server(kase.deflate?.server ?? null);
    let implClosed: Promise<void> = Promise.resolve();
    const connected = new Promise<WebSocket>((resolve) =>
      wss.once('connection', (ws: WebSocket) => {
        implClosed = echoApp(ws);
        resolve(ws);
      }),
    );
    const peer = await connectPeer(port, kase.deflate?.offer);
    const impl = await within(connected, WAIT, "the server's 'connection' event");
    return { peer, impl, implClosed };
  }

  /** One echo server per permessage-deflate configuration, started on first use. */
  private server(deflate: PerMessageDeflateOptions | null): Promise<{ wss: WebSocketServer; port: number }> {
    const key = JSON.stringify(deflate);
    let entry = this.servers.get(key);
    if (!entry) {
      entry = new Promise((resolve, reject) => {
        const wss: WebSocketServer = new WebSocketServer(
          { port: 0, host: '127.0.0.1', perMessageDeflate: deflate ?? false },
          () => resolve({ wss, port: (wss.address() as { port: number }).port }),
        );
        wss.once('error', reject);
      });
      this.servers.set(key, entry);
    }
    return entry;
  }

  async close(): Promise<void> {
    for (const entry of this.servers.values()) {
      const { wss } = await entry;
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
  }
}

/** Where the peer plays the server for our client: one handshake answered per `accept()`, in order. */
export interface PeerServer {
  /** The URL our client connects to. */
  readonly url: string;
  /**
   * Answer the next handshake: `respond` sees the client's
   * Sec-WebSocket-Extensions offer and returns the value to answer with (null:
   * decline); `early` frames go out right behind the answer.
   */
  accept(respond: (offer: string | undefined) => string | null, early?: FrameSpec[]): Promise<FuzzPeer>;
  close(): Promise<void>;
}

export class ClientHarness implements Harness {
  readonly role = 'client';
  private server: Promise<PeerServer> | null = null;

  /**
   * @param start The peer's server (default: HTTP/1.1 over TCP, `FuzzServer`).
   * @param options More options for our client (e.g. `http2`, `ca`).
   */
  constructor(
    private readonly start: () => Promise<PeerServer> = () => FuzzServer.start(),
    private readonly options: ClientOptions = {},
  ) {}

  async open(kase: ConformanceCase): Promise<Subject> {
    this.server ??= this.start();
    const server = await this.server;
    const variant = kase.deflate;
    let offered: string | undefined;
    const accepted = server.accept((offer) => {
      offered = offer;
      return variant && offer?.startsWith('permessage-deflate') ? variant.response : null;
    }, kase.early);
    // Without a variant the client offers permessage-deflate as usual and the peer declines it.
    const impl = new WebSocket(server.url, { ...this.options, perMessageDeflate: variant ? variant.client : true });
    const implClosed = echoApp(impl);
    const opened = new Promise<void>((resolve, reject) => {
      impl.once('open', resolve);
      impl.once('close', () => reject(new Error('the client closed during the opening handshake')));
    });
    const peer = await accepted;
    await within(opened, WAIT, "the client's 'open' event");
    if (variant && !offered) throw new Error('the client offered no permessage-deflate');
    return { peer, impl, implClosed };
  }

  async close(): Promise<void> {
    if (this.server) await (await this.server).close();
  }
}

// ---------------------------------------------------------------------------
// Describing events for readable diffs

function preview(data: Buffer, isText: boolean): string {
  if (data.length <= 48) return isText ? JSON.stringify(data.toString()) : `<${data.toString('hex')}>`;
  return `sha1:${createHash('sha1').update(data).digest('hex').slice(0, 12)}`;
}

function describeEvent(e: PeerEvent | ExpectedEvent, withCompressed: boolean): string {
  if (e.type === 'message') {
    const flag = withCompressed ? ((e as { compressed?: boolean }).compressed ? ' compressed' : ' uncompressed') : '';
    return `${e.binary ? 'binary' : 'text'}${flag} ${e.data.length}B ${preview(e.data, !e.binary)}`;
  }
  return `${e.type} ${e.data.length}B ${preview(e.data, true)}`;
}

// ---------------------------------------------------------------------------
// Running one case

class CaseFailure extends Error {}

/** Execute the steps; returns early (the rest unsent) after a successful `expectClose`. */
async function runSteps(peer: FuzzPeer, steps: Step[], wait: number): Promise<void> {
  for (const step of steps) {
    switch (step.kind) {
      case 'frame':
        await peer.sendFrame(step.frame, { chop: step.chop });
        break;
      case 'frames':
        await peer.sendFrames(step.frames, { chop: step.chop });
        break;
      case 'message': {
        const before = peer.eventCount;
        await peer.sendMessage(step.data, step.binary, step);
        if (step.awaitEcho) {
          const echoed = await peer.waitFor(() => peer.eventCount > before || peer.closeFrame !== null, wait);
          if (!echoed || peer.closeFrame !== null) {
            throw new CaseFailure(
              `no echo of message #${before + 1} within ${wait} ms` +
                (peer.closeFrame ? ` (closed with ${peer.closeFrame.code})` : '') +
                violations(peer),
            );
          }
        }
        break;
      }
      case 'beginFrame':
        await peer.beginFrame(step.frame);
        break;
      case 'framePayload':
        await peer.sendFramePayload(step.end);
        break;
      case 'sleep':
        await sleep(step.ms);
        break;
      case 'expectOpen':
        await peer.waitFor(() => peer.closeFrame !== null || peer.remoteEnded, step.ms);
        if (peer.closeFrame !== null || peer.remoteEnded) {
          throw new CaseFailure(
            `failed too early: ${step.why}, yet the implementation closed` +
              (peer.closeFrame ? ` with ${peer.closeFrame.code}` : ' the TCP connection'),
          );
        }
        break;
      case 'expectClose':
        await peer.waitFor(() => peer.closeFrame !== null || peer.remoteEnded, step.ms);
        if (peer.closeFrame === null) {
          throw new CaseFailure(
            `not failed fast (Autobahn: NON-STRICT): ${step.why}, yet no close frame arrived within ${step.ms} ms` +
              (peer.remoteEnded ? ' (the TCP connection ended without one)' : ''),
          );
        }
        return;
      case 'awaitEvents':
        if (!(await peer.waitFor(() => peer.eventCount >= step.count, step.ms))) {
          throw new CaseFailure(`${step.why}: ${peer.eventCount} of ${step.count} events within ${step.ms} ms`);
        }
        break;
    }
  }
}

function violations(peer: FuzzPeer): string {
  return peer.violations.length > 0 ? `; wire violations: ${peer.violations.join('; ')}` : '';
}

export async function runCase(harness: Harness, kase: ConformanceCase): Promise<void> {
  const { peer, impl, implClosed } = await harness.open(kase);
  const wait = kase.wait ?? WAIT;
  const { events: expected, close } = kase.expect;
  const problems: string[] = [];
  try {
    if (kase.deflate) {
      const got = peer.negotiatedDeflate;
      if (JSON.stringify(got) !== JSON.stringify(kase.deflate.params)) {
        throw new CaseFailure(
          `permessage-deflate negotiated ${JSON.stringify(got)}, expected ${JSON.stringify(kase.deflate.params)}`,
        );
      }
    }
    await runSteps(peer, kase.steps, wait);

    // The closing handshake.
    if (close.by === 'peer') {
      await peer.waitFor(() => peer.eventCount >= expected.length || peer.closeFrame !== null, wait);
      if (!peer.closeSent) await peer.sendClose(1000);
    }
    await peer.waitFor(() => peer.closeFrame !== null || peer.remoteEnded, wait);
    // A close frame behind a message still being inflated is recorded after it.
    await peer.drained();

    const withCompressed = expected.map((e) => e.type === 'message' && e.compressed !== undefined);
    const got = peer.events.map((e, i) => describeEvent(e, withCompressed[i] ?? false));
    const want = expected.map((e, i) => describeEvent(e, withCompressed[i]!));
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      problems.push(`events differ:\n    expected: ${JSON.stringify(want)}\n    actual:   ${JSON.stringify(got)}`);
    } else {
      // The previews of long payloads are hashes; compare the bytes too.
      expected.forEach((e, i) => {
        if (!e.data.equals(peer.events[i]!.data)) problems.push(`event #${i + 1}: payload differs`);
      });
    }

    const frame = peer.closeFrame;
    if (frame === null) {
      problems.push(
        close.by === 'impl'
          ? `the implementation did not fail the connection (expected a close frame with ${close.codes.join(' or ')})`
          : `no close frame answered ours within ${wait} ms`,
      );
    } else {
      if (close.by === 'peer' && peer.implClosedFirst) {
        problems.push(`the implementation closed the connection (${frame.code}) before the peer did`);
      } else if (close.by === 'impl' && !peer.implClosedFirst) {
        problems.push('the implementation only answered the close frame of the peer; it should have failed the connection');
      }
      if (!close.codes.includes(frame.code)) {
        problems.push(`close code ${frame.code}, expected ${close.codes.join(' or ')} (reason: ${JSON.stringify(frame.reason.toString())})`);
      }
      // Echo the implementation's close frame, as an endpoint must (RFC 6455 §5.5.1).
      if (!peer.closeSent) await peer.sendClose(frame.code === 1005 ? undefined : frame.code);
    }

    // The TCP connection: the server closes it first (RFC 6455 §5.5.1, §7.1.1).
    if (harness.role === 'server') {
      if (!(await peer.waitFor(() => peer.remoteEnded, wait))) {
        problems.push('the server did not close the TCP connection after the closing handshake');
      }
    } else {
      await sleep(CLIENT_GRACE_MS);
      if (peer.remoteEnded) problems.push('the client closed the TCP connection before the server did');
    }
    peer.end();
    if (!(await peer.waitFor(() => peer.socketClosed, wait))) {
      problems.push('the TCP connection was not closed after both sides ended it');
    }
    if (peer.socketError) problems.push(`the TCP connection broke instead of closing: ${peer.socketError.message}`);
    await within(implClosed, wait, "the implementation's 'close' event").catch((err: Error) => problems.push(err.message));

    if (peer.violations.length > 0) problems.push(`wire violations by the implementation: ${peer.violations.join('; ')}`);
  } catch (err) {
    if (!(err instanceof CaseFailure)) throw err;
    problems.unshift(err.message);
  } finally {
    peer.destroy();
    impl.terminate();
  }
  if (problems.length > 0) {
    throw new CaseFailure(`${harness.role} ${kase.id} (${kase.title}):\n  - ${problems.join('\n  - ')}`);
  }
}

// ---------------------------------------------------------------------------

/** One test per case that applies to the harness's role. */
export function runConformanceSuite(harness: Harness): void {
  after(() => harness.close());
  for (const kase of CASES) {
    if (kase.roles && !kase.roles.includes(harness.role)) continue;
    const name = `${harness.role} ${kase.id} ${kase.title}${kase.extra ? ' (extra)' : ''}`;
    const timeout = Math.max(10_000, (kase.wait ?? WAIT) * 3);
    test(name, { timeout, todo: kase.todo }, () => runCase(harness, kase));
  }
}
