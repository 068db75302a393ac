/**
 * Fallback sessions without sticky sessions: a request of an SSE or
 * long-polling session that a load balancer sent to another node is relayed,
 * through the broker's node messages (`NodeBus`, brokers/broker.ts, through
 * the node's one listener, brokers/node-messages.ts), to the
 * node that holds the session, and that node's answer — one JSON answer, or
 * an SSE stream — comes back the same way and is written to the client by
 * the node that took the request (docs/architecture.md, "Fallback sessions
 * across nodes").
 *
 * The owner is named by the session id itself (`<node id>.<22 random
 * base64url characters>`, fallback-router.ts): no directory to write or
 * look up. The broker knows which nodes are alive — a node's inbox
 * subscription lives as long as its connection to Redis or NATS — so a
 * request for a session whose node died is answered at once with the
 * documented "session gone" answer (`404 {"error": "no such session"}`),
 * and the SDK opens a new session and resumes its subscriptions from their
 * positions.
 *
 * The frames, JSON text (`f`: the sending node, `r`: the request's number on
 * the node that took it):
 *
 * | from | frame | means |
 * |---|---|---|
 * | taker → owner | `{t:"op", f, r, s, c, h, o}` | session `s`, credential `c`, CORS headers `h`, the operation `o` |
 * | owner → taker | `{t:"ack", f, r}` | taken (sent at once; the taker waits `timeoutMs` for it) |
 * | owner → taker | `{t:"head", f, r, st, hd}` / `{t:"data", f, r, d}` / `{t:"end", f, r, d?, x?}` | the answer: status and headers, body pieces, the end (`x`: cut off) |
 * | taker → owner | `{t:"cancel", f, r}` | the client went away |
 * | both | `{t:"beat", f}` | every `beatMs` to each node with relayed requests open both ways |
 *
 * Liveness: a node with relayed requests open to or from a peer beats it
 * every `beatMs`; a beat the broker cannot deliver (`sendToNode` false: the
 * peer's process died and the broker saw its connection go) or a peer
 * silent for three beats ends them: the taker answers a waiting request
 * 404 (session gone) or ends a stream (EventSource reconnects, and gets
 * the 404), the owner lets go of its receiver (the session's grace period
 * starts, as when a client's connection drops).
 *
 * Bounds: a frame is at most the broker's `maxNodeMessageBytes` (an answer
 * is cut into pieces that fit; a message batch that does not fit is 413);
 * an answer the client does not read is cut off once `maxBacklogBytes` wait
 * in the taker's socket (the client reconnects and the owner resends what
 * it did not acknowledge).
 */
import { EventEmitter } from 'node:events';
import type { NodeFrame, NodeMessages } from '../brokers/node-messages.js';
import type { Logger } from '../realtime/transport.js';
import { HttpError, sendJson, type ResponseLike } from './http-json.js';

/** One operation on a session, parsed and checked by the node that took the request. */
export type SessionOp =
  | { op: 'post'; messages: object[] }
  | { op: 'delete' }
  | { op: 'events'; last: number }
  | { op: 'poll'; ack: number };

/** A request on a session, as the node holding the session runs it. */
export interface SessionRequest {
  session: string;
  /** The credential the request carried (`Authorization: Bearer` or the auth cookie), unverified. */
  credential: string | null;
  /** Headers of the answer decided by the node that took the request (CORS). */
  headers: Record<string, string>;
  op: SessionOp;
}

export interface SessionRelayOptions {
  /** The node's one listener on the broker's node messages, shared with the other parts that use them. */
  messages: NodeMessages;
  logger: Logger;
  /** How long the node holding a session has to take a relayed request, in ms. Default 5000. */
  timeoutMs?: number;
  /** Beat interval between nodes with relayed requests open, in ms; a peer silent for three beats is gone. Default 5000. */
  beatMs?: number;
  /** Bytes of a relayed answer waiting in the client's socket before it is cut off. Default 4 MiB. */
  maxBacklogBytes?: number;
}

/** Runs a relayed request on the node that holds the session (the fallback router). */
export type RelayedRequestRunner = (request: SessionRequest, res: ResponseLike) => void;

/** The kinds of node message the relay sends and takes (node-messages.ts routes them here). */
const RELAY_KINDS = ['op', 'ack', 'head', 'data', 'end', 'cancel', 'beat'] as const;

/** Frames carry at most this many characters of body (so that the frame fits in any broker's message). */
const FRAME_OVERHEAD = 1024;

interface Frame {
  t: string;
  f: string;
  r?: number;
  s?: string;
  c?: string | null;
  h?: Record<string, string>;
  o?: SessionOp;
  st?: number;
  hd?: Record<string, string | number>;
  d?: string;
  x?: boolean;
}

/** A request this node took for a session on another node: waits for the answer and writes it to the client. */
class OutgoingRelay {
  acked = false;
  done = false;
  timer: NodeJS.Timeout | null = null;

  constructor(
    readonly id: number,
    readonly owner: string,
    readonly res: ResponseLike,
  ) {}
}

/**
 * The answer of a relayed request, on the node holding the session: what
 * the routes write to it goes back to the node that took the request.
 * 'close' is emitted once: after `end()`/`destroy()`, when that node says
 * the client went away, or when that node is gone.
 */
export class RelayedResponse extends EventEmitter implements ResponseLike {
  headersSent = false;
  destroyed = false;
  /** Nothing waits here: each piece leaves as a broker message at once. */
  readonly writableLength = 0;

  constructor(
    private readonly relay: SessionRelay,
    readonly taker: string,
    readonly id: number,
  ) {
    super();
  }

  writeHead(status: number, headers: Record<string, string | number> = {}): this {
    if (this.destroyed || this.headersSent) return this;
    this.headersSent = true;
    this.relay._reply(this, { t: 'head', f: '', r: this.id, st: status, hd: headers });
    return this;
  }

  write(chunk: string): boolean {
    if (this.destroyed) return false;
    if (!this.headersSent) this.writeHead(200);
    this.relay._replyText(this, 'data', chunk);
    return true;
  }

  end(chunk?: string): this {
    if (this.destroyed) return this;
    if (!this.headersSent) this.writeHead(200);
    if (chunk !== undefined && chunk.length > 0) this.relay._replyText(this, 'data', chunk);
    this.relay._reply(this, { t: 'end', f: '', r: this.id });
    this.finish();
    return this;
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.relay._reply(this, { t: 'end', f: '', r: this.id, x: true });
    this.finish();
    return this;
  }

  /** @internal The taker is gone, or its client: nothing more is sent. */
  _gone(): void {
    this.finish();
  }

  private finish(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.relay._forget(this);
    // As http.ServerResponse: 'close' after the end, never from inside the caller's own write.
    process.nextTick(() => this.emit('close'));
  }
}

/** Peers with relayed requests open, and when they were last heard. */
interface Peer {
  lastHeard: number;
}

export class SessionRelay {
  readonly #messages: NodeMessages;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #beatMs: number;
  readonly #maxBacklog: number;
  #runner: RelayedRequestRunner | null = null;
  #nextId = 1;
  /** Requests this node took for sessions elsewhere, by number. */
  readonly #outgoing = new Map<number, OutgoingRelay>();
  /** Answers this node relays back, by `<taker>:<number>`. */
  readonly #incoming = new Map<string, RelayedResponse>();
  readonly #peers = new Map<string, Peer>();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(options: SessionRelayOptions) {
    this.#messages = options.messages;
    this.#logger = options.logger;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#beatMs = options.beatMs ?? 5000;
    this.#maxBacklog = options.maxBacklogBytes ?? 4 * 1024 * 1024;
  }

  /** This node's id (sessions opened here carry it). */
  get nodeId(): string {
    return this.#messages.nodeId;
  }

  /** Relayed requests open, both ways (for tests and stats). */
  get open(): { outgoing: number; incoming: number } {
    return { outgoing: this.#outgoing.size, incoming: this.#incoming.size };
  }

  /** Start taking relayed requests for this node's sessions (after the broker is connected). */
  async listen(runner: RelayedRequestRunner): Promise<void> {
    this.#runner = runner;
    this.#messages.handle(RELAY_KINDS, (frame) => this.#receive(frame));
    await this.#messages.listen();
    this.#timer = setInterval(() => this.#beat(), this.#beatMs);
    this.#timer.unref();
  }

  /**
   * Relay `request` to node `owner` and write its answer to `res`. Answers
   * 404 at once when the broker knows no such node (it died: the session is
   * gone), 404 when it does not take the request within `timeoutMs`, 503
   * while the broker is unreachable, 413 when the request does not fit in a
   * broker message.
   */
  async forward(owner: string, request: SessionRequest, res: ResponseLike): Promise<void> {
    if (this.#closed) throw new HttpError(503, 'shutting down');
    const relay = new OutgoingRelay(this.#nextId++, owner, res);
    const frame = JSON.stringify({ t: 'op', f: this.nodeId, r: relay.id, s: request.session, c: request.credential, h: request.headers, o: request.op } satisfies Frame);
    if (Buffer.byteLength(frame) > this.#messages.maxNodeMessageBytes) {
      throw new HttpError(413, `a batch this large cannot be relayed to the session's node (over ${this.#messages.maxNodeMessageBytes} bytes): send fewer messages per request`);
    }
    this.#outgoing.set(relay.id, relay);
    this.#peer(owner);
    res.on('close', () => {
      if (relay.done) return;
      // The client went away before the answer ended: the owner lets go of its receiver.
      this.#finishOutgoing(relay);
      void this.#send(owner, { t: 'cancel', f: this.nodeId, r: relay.id });
    });
    relay.timer = setTimeout(() => {
      relay.timer = null;
      if (relay.acked || relay.done) return;
      this.#logger.warn({ node: owner }, "a session's node did not take a relayed request in time: session gone");
      this.#endOutgoing(relay, "no such session (its node does not answer)");
    }, this.#timeoutMs);
    relay.timer.unref();
    let delivered: boolean;
    try {
      delivered = await this.#messages.send(owner, frame);
    } catch (err) {
      this.#finishOutgoing(relay);
      if (err instanceof TypeError) throw new HttpError(400, err.message);
      throw new HttpError(503, 'the broker is unreachable: try again later');
    }
    if (!delivered) {
      this.#logger.debug({ node: owner }, "relayed request: the session's node is gone");
      this.#endOutgoing(relay, 'no such session (its node is gone)');
    }
  }

  /** Stop: requests waiting for another node get 503, answers relayed back end. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    for (const relay of [...this.#outgoing.values()]) this.#endOutgoing(relay, 'shutting down', 503);
    for (const res of [...this.#incoming.values()]) res.end();
  }

  // ---- the node holding the session ---------------------------------------------

  /** @internal A frame of the answer to `res`, to the node that took the request. */
  _reply(res: RelayedResponse, frame: Frame): void {
    frame.f = this.nodeId;
    void this.#send(res.taker, frame).then((delivered) => {
      if (!delivered) this.#takerGone(res.taker);
    });
  }

  /** @internal Body text, cut into pieces that fit in a broker message. */
  _replyText(res: RelayedResponse, kind: 'data', text: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit; JSON escaping at most 6 per unit (\uXXXX).
    const piece = Math.max(1, Math.floor((this.#messages.maxNodeMessageBytes - FRAME_OVERHEAD) / 6));
    for (let i = 0; i < text.length; i += piece) {
      let to = Math.min(text.length, i + piece);
      // Never split a surrogate pair.
      if (to < text.length && text.charCodeAt(to - 1) >= 0xd800 && text.charCodeAt(to - 1) <= 0xdbff) to--;
      this._reply(res, { t: kind, f: '', r: res.id, d: text.slice(i, to) });
      i = to - piece;
    }
  }

  /** @internal */
  _forget(res: RelayedResponse): void {
    this.#incoming.delete(`${res.taker}:${res.id}`);
  }

  #takerGone(taker: string): void {
    for (const res of [...this.#incoming.values()]) if (res.taker === taker) res._gone();
  }

  #runRelayed(frame: Frame): void {
    const taker = frame.f;
    const id = frame.r;
    if (typeof id !== 'number' || typeof frame.s !== 'string' || typeof frame.o !== 'object' || frame.o === null) return;
    const res = new RelayedResponse(this, taker, id);
    this.#incoming.set(`${taker}:${id}`, res);
    this.#peer(taker);
    this._reply(res, { t: 'ack', f: '', r: id });
    if (this.#runner === null || this.#closed) {
      sendJson(res, 503, { error: 'shutting down' }, frame.h ?? {});
      return;
    }
    this.#runner({ session: frame.s, credential: typeof frame.c === 'string' ? frame.c : null, headers: frame.h ?? {}, op: frame.o }, res);
  }

  // ---- the node that took the request -----------------------------------------------

  #onAnswer(frame: Frame): void {
    const relay = this.#outgoing.get(frame.r ?? -1);
    if (relay === undefined || relay.owner !== frame.f) return;
    const res = relay.res;
    switch (frame.t) {
      case 'ack':
        relay.acked = true;
        if (relay.timer) clearTimeout(relay.timer);
        relay.timer = null;
        return;
      case 'head':
        relay.acked = true;
        if (!res.headersSent && !res.destroyed) res.writeHead(frame.st ?? 500, frame.hd ?? {});
        return;
      case 'data':
        if (res.destroyed || typeof frame.d !== 'string') return;
        res.write(frame.d);
        if (res.writableLength > this.#maxBacklog) {
          // The client does not read: cut it off (it reconnects; the owner resends what it did not acknowledge).
          this.#finishOutgoing(relay);
          res.destroy();
          void this.#send(relay.owner, { t: 'cancel', f: this.nodeId, r: relay.id });
        }
        return;
      case 'end':
        this.#finishOutgoing(relay);
        if (frame.x) res.destroy();
        else res.end();
        return;
    }
  }

  /** Answer a request still waiting (404: the session is gone, or `status`), or end a stream already started. */
  #endOutgoing(relay: OutgoingRelay, error: string, status = 404): void {
    if (relay.done) return;
    this.#finishOutgoing(relay);
    const res = relay.res;
    if (res.destroyed) return;
    if (res.headersSent) res.end();
    else sendJson(res, status, { error: status === 404 ? 'no such session' : error, ...(status === 404 ? { reason: error } : {}) });
  }

  #finishOutgoing(relay: OutgoingRelay): void {
    relay.done = true;
    if (relay.timer) clearTimeout(relay.timer);
    relay.timer = null;
    this.#outgoing.delete(relay.id);
  }

  // ---- frames and liveness ----------------------------------------------------------

  /** A relay frame (node-messages.ts checked that it is an object with a kind and a sender). */
  #receive(message: NodeFrame): void {
    const frame = message as Frame;
    const peer = this.#peers.get(frame.f);
    if (peer) peer.lastHeard = Date.now();
    switch (frame.t) {
      case 'op':
        this.#runRelayed(frame);
        return;
      case 'cancel': {
        const res = this.#incoming.get(`${frame.f}:${frame.r}`);
        res?._gone();
        return;
      }
      case 'beat':
        return;
      default:
        this.#onAnswer(frame);
    }
  }

  #peer(node: string): void {
    const peer = this.#peers.get(node);
    if (peer) return;
    this.#peers.set(node, { lastHeard: Date.now() });
  }

  /** Send, with any failure (the broker down, a peer gone) as false. */
  async #send(to: string, frame: Frame): Promise<boolean> {
    try {
      return await this.#messages.send(to, frame);
    } catch {
      return false;
    }
  }

  /** Every beat: each peer with relayed requests open gets a beat; a peer gone or silent for three beats ends them. */
  #beat(): void {
    const now = Date.now();
    const active = new Set<string>();
    for (const relay of this.#outgoing.values()) active.add(relay.owner);
    for (const res of this.#incoming.values()) active.add(res.taker);
    for (const [node, peer] of this.#peers) {
      if (!active.has(node)) {
        this.#peers.delete(node);
        continue;
      }
      if (now - peer.lastHeard > 3 * this.#beatMs) {
        this.#peerGone(node, 'silent for three beats');
        continue;
      }
      void this.#send(node, { t: 'beat', f: this.nodeId }).then((delivered) => {
        if (!delivered) this.#peerGone(node, 'the broker no longer knows it');
      });
    }
  }

  #peerGone(node: string, why: string): void {
    this.#peers.delete(node);
    let ended = 0;
    for (const relay of [...this.#outgoing.values()]) {
      if (relay.owner !== node) continue;
      ended++;
      this.#endOutgoing(relay, 'no such session (its node is gone)');
    }
    for (const res of [...this.#incoming.values()]) {
      if (res.taker !== node) continue;
      ended++;
      res._gone();
    }
    if (ended > 0) this.#logger.warn({ node, relayed: ended, why }, 'a node with relayed session requests is gone: they ended');
  }
}
