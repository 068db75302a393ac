/**
 * Operations on connections that may be on any node of a cluster: close
 * every connection of a user (`disconnectUser`), close one connection by
 * its id (`closeConnection`), list them for the admin UI
 * (`listConnections`). `POST /api/disconnect`, the admin UI's
 * actions and `RealtimeServer#disconnectUser` / `#closeConnection` go
 * through here (docs/architecture.md, "Operations across nodes").
 *
 * Carried by the broker's node messages (`NodeBus`, through the node's one
 * listener, brokers/node-messages.ts): the broker lists the nodes that
 * listen now (`NodeBus.nodes()`: no registry of our own to keep fresh,
 * a node whose process died is absent once the broker saw its connection
 * go), this node asks each of the others and counts their answers, as
 * centrifuge's `Survey` does; unlike centrifuge's `Disconnect`, which
 * broadcasts and forgets, the caller learns how many connections were
 * closed and which nodes did not answer.
 *
 * Connection ids name their node (`<node id>.<hub-local id>`, Hub#connect),
 * so closing one connection asks only its node, and an id whose node is
 * not in the cluster is answered at once.
 *
 * The frames (JSON, `f`: the sending node, `r`: the question's number on
 * the node that asks):
 *
 * | from | frame | means |
 * |---|---|---|
 * | asker → node | `{t:"ask", f, r, k:"disconnect", u, c, rs}` | close every connection of user `u` with code `c`, reason `rs` |
 * | asker → node | `{t:"ask", f, r, k:"close", i, c, rs}` | close connection `i` |
 * | asker → node | `{t:"ask", f, r, k:"list", u, l}` | its newest `l` connections (of user `u`, when not null) |
 * | node → asker | `{t:"answer", f, r, n}` / `{…, ok}` / `{…, n, c}` / `{…, e}` | how many were closed / whether it was there / how many match and the listed ones / what was wrong |
 *
 * Without a node bus (a broker passed in that carries no node messages)
 * every operation is this node's alone.
 */
import type { NodeFrame, NodeMessages } from '../brokers/node-messages.js';
import { MAX_CLOSE_REASON_BYTES } from '../protocol/close-code.js';
import { Disconnect } from '../wire/disconnect.js';
import type { Hub } from './hub.js';
import type { Logger } from './transport.js';

/** How long the asking node waits for the others' answers, in ms, unless told otherwise. */
export const DEFAULT_NODE_ANSWER_TIMEOUT_MS = 5000;
/** Channels listed per connection in another node's answer (the answer must fit in one node message). */
const MAX_LISTED_SUBSCRIPTIONS = 20;
/** A node heard from this recently is asked even when the broker does not list it (see ClusterOps#targets), in ms. */
const KNOWN_NODE_MS = 10 * 60_000;
/** Bounds of a caller's `timeoutMs`. */
const MIN_TIMEOUT_MS = 100;
const MAX_TIMEOUT_MS = 60_000;
/** Longest user name or connection id carried (the server refuses tokens longer than this, so no user name is longer). */
const MAX_FIELD_CHARS = 8192;
/** A connection id as Hub#connect makes it in a cluster: `<node id>.<hub-local part>`. */
const CONNECTION_ID = /^([0-9a-z]{4,32})\.[0-9a-z-]{1,64}$/;

/** An operation that could not be done as asked: `status` is the HTTP answer (400, 503, 504). */
export class NodeOpError extends Error {
  constructor(
    readonly code: 'RT_ERR_BAD_CONNECTION_ID' | 'RT_ERR_BROKER_UNAVAILABLE' | 'RT_ERR_NODE_TIMEOUT' | 'RT_ERR_BAD_REQUEST',
    readonly status: 400 | 503 | 504,
    message: string,
  ) {
    super(message);
    this.name = 'NodeOpError';
  }
}

export interface DisconnectOptions {
  /** Close code, 4000-4999. Default 4503 (Kicked: the SDK does not reconnect). */
  code?: number;
  /** Close reason, at most 123 UTF-8 bytes. Default "disconnected by the server". */
  reason?: string;
  /** How long to wait for the other nodes' answers, in ms (100-60 000). Default 5000. */
  timeoutMs?: number;
}

/** What `disconnectUser` found. */
export interface ClusterDisconnectResult {
  user: string;
  /** Connections closed, summed over this node and every node that answered. */
  disconnected: number;
  /** The nodes that answered, this one first (its broker node id; '' without a node bus). */
  nodes: string[];
  /**
   * Nodes the broker listed that did not answer within the timeout (stuck,
   * or dying while asked): their connections of the user may still be open.
   * Empty when the answer is complete.
   */
  unanswered: string[];
}

/** What `closeConnection` found. */
export interface CloseConnectionResult {
  id: string;
  /** The node the id names ('' without a node bus). */
  node: string;
  /** Whether the connection was open there and is now closed. */
  closed: boolean;
  /** Why not, when not closed: no such connection on its node, or its node is not in the cluster. */
  reason?: 'no such connection' | 'its node is not in the cluster';
}

/** One connection as the admin UI lists it. */
export interface ConnectionSummary {
  id: string;
  /** The node holding it (its broker node id; '' without a node bus). */
  node: string;
  user: string | null;
  transport: string;
  remote: string;
  /** ms since the epoch. */
  connectedAt: number;
  /** Its channels and patterns (at most {@link MAX_LISTED_SUBSCRIPTIONS} from another node). */
  subscriptions: string[];
}

/** What `listConnections` found. */
export interface ConnectionList {
  /** Matching connections on the nodes that answered. */
  total: number;
  /** The newest `limit` of them, newest first. */
  connections: ConnectionSummary[];
  nodes: string[];
  unanswered: string[];
}

interface Pending {
  node: string;
  resolve(frame: NodeFrame | null): void;
  timer: NodeJS.Timeout;
}

export interface ClusterOpsOptions {
  hub: Hub;
  /** The node's listener on the broker's node messages; null: a single node. */
  messages: NodeMessages | null;
  logger: Logger;
}

export class ClusterOps {
  readonly #hub: Hub;
  readonly #messages: NodeMessages | null;
  readonly #log: Logger;
  readonly #pending = new Map<number, Pending>();
  /** Nodes heard from (listed, or answering), with when: see #targets. */
  readonly #known = new Map<string, number>();
  #nextId = 1;
  #closed = false;

  constructor(options: ClusterOpsOptions) {
    this.#hub = options.hub;
    this.#messages = options.messages;
    this.#log = options.logger;
  }

  /** This node's id in the cluster ('' without a node bus, or before the broker is connected). */
  get nodeId(): string {
    try {
      return this.#messages?.nodeId ?? '';
    } catch {
      return '';
    }
  }

  /** Answer other nodes' questions (once the broker is connected). */
  async listen(): Promise<void> {
    if (this.#messages === null) return;
    this.#messages.handle(['ask', 'answer'], (frame) => (frame.t === 'ask' ? this.#answer(frame) : this.#onAnswer(frame)));
    await this.#messages.listen();
  }

  /**
   * Close every connection of `user` on every node (4503 by default). This
   * node's at once; every other node the broker lists is asked, and the
   * answers that come within `timeoutMs` are counted. Rejects with a
   * NodeOpError: 400 for bad options, 503 when the broker is unreachable
   * (this node's connections of the user are closed already).
   */
  async disconnectUser(user: string, options: DisconnectOptions = {}): Promise<ClusterDisconnectResult> {
    if (typeof user !== 'string' || user === '' || user.length > MAX_FIELD_CHARS) throw new NodeOpError('RT_ERR_BAD_REQUEST', 400, `user: a name of 1-${MAX_FIELD_CHARS} characters`);
    const { disconnect, timeoutMs } = checkOptions(options);
    const self = this.nodeId;
    const local = this.#hub.disconnectUser(user, disconnect.code, disconnect.reason);
    const result: ClusterDisconnectResult = { user, disconnected: local, nodes: [self], unanswered: [] };
    if (this.#messages === null) return result;
    let others: string[];
    try {
      others = await this.#targets();
    } catch (err) {
      this.#log.warn({ user, disconnected: local, err: message(err) }, 'disconnect user: the broker is unreachable, only this node was reached');
      throw new NodeOpError('RT_ERR_BROKER_UNAVAILABLE', 503, `the broker is unreachable: ${local} connection(s) of ${user} closed on this node, the other nodes not reached; try again`);
    }
    const answers = await Promise.all(others.map((node) => this.#ask(node, { k: 'disconnect', u: user, c: disconnect.code, rs: disconnect.reason }, timeoutMs)));
    for (const [i, answer] of answers.entries()) {
      const node = others[i]!;
      if (answer === 'gone') continue; // It left after the broker listed it: none of its connections is open.
      if (answer === null || typeof answer.n !== 'number') result.unanswered.push(node);
      else {
        result.nodes.push(node);
        result.disconnected += answer.n;
      }
    }
    const fields = { user, disconnected: result.disconnected, nodes: result.nodes.length, unanswered: result.unanswered };
    if (result.unanswered.length > 0) this.#log.warn(fields, `disconnect user: ${result.unanswered.length} node(s) did not answer within ${timeoutMs} ms`);
    else this.#log.info(fields, 'disconnect user: every node answered');
    return result;
  }

  /**
   * Close connection `id` (4503 by default) on the node that holds it.
   * Resolves `closed: false` when no node has it (the id's node has no
   * such connection, or is not in the cluster). Rejects with a NodeOpError:
   * 400 for an id that names no node (in a cluster) or bad options, 503
   * when the broker is unreachable, 504 when its node does not answer
   * within `timeoutMs`.
   */
  async closeConnection(id: string, options: DisconnectOptions = {}): Promise<CloseConnectionResult> {
    if (typeof id !== 'string' || id === '' || id.length > MAX_FIELD_CHARS) throw new NodeOpError('RT_ERR_BAD_CONNECTION_ID', 400, 'id: a connection id is required');
    const { disconnect, timeoutMs } = checkOptions(options);
    const self = this.nodeId;
    if (this.#messages === null || this.#hub.sessions.has(id)) {
      const closed = this.#hub.disconnectConnection(id, disconnect.code, disconnect.reason);
      if (!closed) this.#log.info({ conn: id.slice(0, 80) }, 'close connection: no such connection on this node');
      return closed ? { id, node: self, closed } : { id, node: self, closed, reason: 'no such connection' };
    }
    const owner = CONNECTION_ID.exec(id)?.[1];
    if (owner === undefined) {
      this.#log.info({ conn: id.slice(0, 80) }, 'close connection refused: not a connection id');
      throw new NodeOpError('RT_ERR_BAD_CONNECTION_ID', 400, `not a connection id: ${JSON.stringify(id.slice(0, 80))} (expected <node id>.<connection>, as the admin UI and presence list them)`);
    }
    if (owner === self) {
      this.#log.info({ conn: id }, 'close connection: no such connection on this node');
      return { id, node: self, closed: false, reason: 'no such connection' };
    }
    const answer = await this.#ask(owner, { k: 'close', i: id, c: disconnect.code, rs: disconnect.reason }, timeoutMs);
    if (answer === 'gone') {
      this.#log.info({ conn: id, node: owner }, 'close connection: its node is not in the cluster');
      return { id, node: owner, closed: false, reason: 'its node is not in the cluster' };
    }
    if (answer === null || typeof answer.ok !== 'boolean') {
      this.#log.warn({ conn: id, node: owner, timeoutMs }, 'close connection: its node did not answer in time');
      throw new NodeOpError('RT_ERR_NODE_TIMEOUT', 504, `node ${owner} did not answer within ${timeoutMs} ms (stuck, or going away): the connection may still be open`);
    }
    this.#log.info({ conn: id, node: owner, closed: answer.ok }, 'close connection on another node');
    return answer.ok ? { id, node: owner, closed: true } : { id, node: owner, closed: false, reason: 'no such connection' };
  }

  /**
   * The connections of every node (of `user` only, when given): the newest
   * `limit` (1-500), newest first, and how many match in all, summed over
   * the nodes that answered within `timeoutMs`. For the admin UI. Rejects
   * with a NodeOpError 503 while the broker is unreachable (which nodes
   * there are is not known then).
   */
  async listConnections(options: { user?: string; limit?: number; timeoutMs?: number } = {}): Promise<ConnectionList> {
    const limit = Math.max(1, Math.min(500, Math.floor(options.limit ?? 500)));
    const user = options.user === undefined || options.user === '' ? undefined : options.user;
    const { timeoutMs } = checkOptions({ timeoutMs: options.timeoutMs });
    const self = this.nodeId;
    const own = this.#localConnections(user, limit);
    const result: ConnectionList = { total: own.total, connections: own.connections, nodes: [self], unanswered: [] };
    if (this.#messages === null) return result;
    let others: string[];
    try {
      others = await this.#targets();
    } catch (err) {
      this.#log.warn({ err: message(err) }, 'list connections: the broker is unreachable, only this node listed');
      throw new NodeOpError('RT_ERR_BROKER_UNAVAILABLE', 503, 'the broker is unreachable: only this node could be listed; try again');
    }
    const answers = await Promise.all(others.map((node) => this.#ask(node, { k: 'list', u: user ?? null, l: limit }, timeoutMs)));
    for (const [i, answer] of answers.entries()) {
      const node = others[i]!;
      if (answer === 'gone') continue;
      if (answer === null || typeof answer.n !== 'number' || !Array.isArray(answer.c)) {
        result.unanswered.push(node);
        continue;
      }
      result.nodes.push(node);
      result.total += answer.n;
      for (const c of answer.c as ConnectionSummary[]) if (c !== null && typeof c === 'object' && typeof c.id === 'string') result.connections.push({ ...c, node });
    }
    result.connections.sort((a, b) => b.connectedAt - a.connectedAt);
    result.connections.length = Math.min(result.connections.length, limit);
    return result;
  }

  /** This node's matching connections, newest first: the first `limit` and how many in all. */
  #localConnections(user: string | undefined, limit: number, maxSubscriptions = Infinity): { total: number; connections: ConnectionSummary[] } {
    const node = this.nodeId;
    const all = [...this.#hub.sessions.values()].filter((s) => user === undefined || s.identity?.user === user);
    all.sort((a, b) => b.openedAt - a.openedAt);
    return {
      total: all.length,
      connections: all.slice(0, limit).map((s) => ({
        id: s.id,
        node,
        user: s.identity?.user ?? null,
        transport: s.transport.kind,
        remote: s.remoteAddress,
        connectedAt: s.openedAt,
        subscriptions: [...s.subscriptions.keys()].slice(0, maxSubscriptions),
      })),
    };
  }

  /** Stop: questions still waiting resolve as unanswered. */
  close(): void {
    this.#closed = true;
    for (const [r, pending] of this.#pending) {
      clearTimeout(pending.timer);
      this.#pending.delete(r);
      pending.resolve(null);
    }
  }

  /**
   * Ask `node`; resolves its answer, null when none came within `timeoutMs`
   * (or the broker failed us on the way), 'gone' when the broker says no
   * such node listens. Throws 503 while the broker is unreachable.
   */
  async #ask(node: string, question: Record<string, unknown>, timeoutMs: number): Promise<NodeFrame | null | 'gone'> {
    const messages = this.#messages!;
    if (this.#closed) return null;
    const r = this.#nextId++;
    const answered = new Promise<NodeFrame | null>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(r);
        resolve(null);
      }, timeoutMs);
      timer.unref();
      this.#pending.set(r, { node, resolve, timer });
    });
    // The answer may come before the broker's word that it delivered (NATS' receipt), and a stuck
    // node's receipt may take longer than our timeout: whichever settles first.
    const sent = messages.send(node, { t: 'ask', f: this.nodeId, r, ...question }).then<NodeFrame | null | 'gone', never>(
      (delivered) => {
        if (delivered) return answered;
        this.#forget(r);
        this.#known.delete(node);
        return 'gone';
      },
      (err: unknown): never => {
        this.#forget(r);
        if (err instanceof TypeError) throw new NodeOpError('RT_ERR_BAD_REQUEST', 400, err.message);
        this.#log.warn({ node, err: message(err) }, 'a question to another node could not be sent');
        throw new NodeOpError('RT_ERR_BROKER_UNAVAILABLE', 503, 'the broker is unreachable: try again later');
      },
    );
    const answer = await Promise.race([answered, sent]);
    if (answer !== null && answer !== 'gone') this.#seen(node);
    return answer;
  }

  /**
   * Whom to ask: the nodes the broker lists now, and those heard from in
   * the last {@link KNOWN_NODE_MS} that it does not list (a NATS roll call
   * misses a node that is stuck, or slower than its stall time: asked all
   * the same, it answers or counts as unanswered; one that is truly gone
   * is dropped at once, the broker says so).
   */
  async #targets(): Promise<string[]> {
    const listed = await this.#messages!.nodes();
    const now = Date.now();
    for (const node of listed) this.#known.set(node, now);
    const out = new Set(listed);
    for (const [node, seen] of this.#known) {
      if (now - seen > KNOWN_NODE_MS) this.#known.delete(node);
      else out.add(node);
    }
    out.delete(this.nodeId);
    return [...out];
  }

  #seen(node: string): void {
    this.#known.set(node, Date.now());
  }

  /** No answer will come (the broker said so): the question is dropped, its `answered` never settles. */
  #forget(r: number): void {
    const pending = this.#pending.get(r);
    if (pending === undefined) return;
    this.#pending.delete(r);
    clearTimeout(pending.timer);
  }

  #settle(r: number, frame: NodeFrame | null): void {
    const pending = this.#pending.get(r);
    if (pending === undefined) return;
    this.#pending.delete(r);
    clearTimeout(pending.timer);
    pending.resolve(frame);
  }

  #onAnswer(frame: NodeFrame): void {
    if (typeof frame.r !== 'number') return;
    const pending = this.#pending.get(frame.r);
    // Only the node asked answers (a late answer after the timeout finds nothing).
    if (pending === undefined || pending.node !== frame.f) return;
    this.#settle(frame.r, frame);
  }

  /** Another node's question: done on this node's connections, answered at once. */
  #answer(frame: NodeFrame): void {
    this.#seen(frame.f);
    const reply = (fields: Record<string, unknown>): void => {
      void this.#messages!.send(frame.f, { t: 'answer', f: this.nodeId, r: frame.r, ...fields }).catch((err: unknown) => {
        this.#log.warn({ node: frame.f, err: message(err) }, 'an answer to another node could not be sent');
      });
    };
    const disconnect = wireDisconnect(frame.c, frame.rs);
    switch (frame.k) {
      case 'disconnect': {
        if (typeof frame.u !== 'string' || frame.u === '') return reply({ e: 'user missing' });
        const n = this.#hub.disconnectUser(frame.u, disconnect.code, disconnect.reason);
        this.#log.info({ user: frame.u, disconnected: n, from: frame.f }, 'disconnect user, asked by another node');
        return reply({ n });
      }
      case 'close': {
        if (typeof frame.i !== 'string') return reply({ e: 'id missing' });
        const ok = this.#hub.disconnectConnection(frame.i, disconnect.code, disconnect.reason);
        this.#log.info({ conn: frame.i, closed: ok, from: frame.f }, 'close connection, asked by another node');
        return reply({ ok });
      }
      case 'list': {
        const user = typeof frame.u === 'string' && frame.u !== '' ? frame.u : undefined;
        const limit = typeof frame.l === 'number' ? Math.max(1, Math.min(500, Math.floor(frame.l))) : 500;
        const { total, connections } = this.#localConnections(user, limit, MAX_LISTED_SUBSCRIPTIONS);
        // The answer must fit in one node message: fewer connections until it does.
        const room = this.#messages!.maxNodeMessageBytes - 1024;
        let c = connections.map(({ node: _node, ...rest }) => rest);
        while (c.length > 0 && Buffer.byteLength(JSON.stringify(c)) > room) c = c.slice(0, Math.floor(c.length / 2));
        return reply({ n: total, c });
      }
      default:
        this.#log.warn({ op: String(frame.k).slice(0, 40), from: frame.f }, 'another node asked for an operation this node does not know');
        return reply({ e: 'unknown operation' });
    }
  }
}

/** The options checked: the close as a Disconnect, and the timeout. */
function checkOptions(options: DisconnectOptions): { disconnect: Disconnect; timeoutMs: number } {
  const code = options.code ?? Disconnect.Kicked.code;
  if (!isApplicationCloseCode(code)) throw new NodeOpError('RT_ERR_BAD_REQUEST', 400, `code: an application close code, 4000-4999 (got ${String(code)})`);
  const reason = options.reason ?? Disconnect.Kicked.reason;
  if (typeof reason !== 'string' || new TextEncoder().encode(reason).length > MAX_CLOSE_REASON_BYTES) {
    throw new NodeOpError('RT_ERR_BAD_REQUEST', 400, `reason: a string of at most ${MAX_CLOSE_REASON_BYTES} UTF-8 bytes`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_NODE_ANSWER_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < MIN_TIMEOUT_MS || timeoutMs > MAX_TIMEOUT_MS) {
    throw new NodeOpError('RT_ERR_BAD_REQUEST', 400, `timeoutMs: ${MIN_TIMEOUT_MS}-${MAX_TIMEOUT_MS} ms`);
  }
  return { disconnect: new Disconnect(code, reason), timeoutMs };
}

/** A close code of the application's range (RFC 6455 §7.4.2: 4000-4999), the only ones a disconnect may use. */
function isApplicationCloseCode(code: unknown): code is number {
  return typeof code === 'number' && Number.isInteger(code) && code >= 4000 && code <= 4999;
}

/** The close another node asked for, checked again here (a node trusts no message blindly); Kicked when malformed. */
function wireDisconnect(code: unknown, reason: unknown): Disconnect {
  if (!isApplicationCloseCode(code) || typeof reason !== 'string') return Disconnect.Kicked;
  return new Disconnect(code, reason);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
