/**
 * One listener on a broker's node messages (`NodeBus`, broker.ts) for the
 * several parts of a node that talk to other nodes: the relay of fallback
 * sessions (carriers/session-relay.ts) and the cluster-wide operations
 * (realtime/cluster-ops.ts). `NodeBus.listenNodes` takes one handler; this
 * takes it, parses each message once, and hands it to the part that
 * registered its kind.
 *
 * A message is a JSON object `{t, f, ...}`: `t` its kind, `f` the sending
 * node's id; the rest is the part's own. A message that is not such an
 * object, or of a kind nobody registered (a newer node during a rolling
 * upgrade), is dropped with a log line; a handler that throws is reported
 * and never reaches the broker.
 */
import { NODE_ID, type NodeBus } from './broker.js';

/** A node message, parsed: its kind `t`, its sender `f`, and the part's own fields. */
export interface NodeFrame {
  t: string;
  f: string;
  [field: string]: unknown;
}

/** Where dropped messages and failing handlers are told (a pino logger fits). */
export interface NodeMessagesLog {
  warn(fields: object, message: string): void;
}

export class NodeMessages {
  readonly #bus: NodeBus;
  readonly #log: NodeMessagesLog;
  readonly #handlers = new Map<string, (frame: NodeFrame) => void>();
  #listening: Promise<void> | null = null;

  constructor(bus: NodeBus, log: NodeMessagesLog) {
    this.#bus = bus;
    this.#log = log;
  }

  /** This node's id (the broker's; known once it is connected). */
  get nodeId(): string {
    return this.#bus.nodeId;
  }

  /** Largest message, in UTF-8 bytes. */
  get maxNodeMessageBytes(): number {
    return this.#bus.maxNodeMessageBytes;
  }

  /** Route messages of these kinds to `handler`. A kind has one handler: registering it twice throws. */
  handle(kinds: readonly string[], handler: (frame: NodeFrame) => void): void {
    for (const kind of kinds) {
      if (this.#handlers.has(kind)) throw new Error(`node message kind ${kind} has a handler already`);
      this.#handlers.set(kind, handler);
    }
  }

  /** Start receiving (the one `listenNodes` call); every caller awaits the same. */
  listen(): Promise<void> {
    this.#listening ??= this.#bus.listenNodes((message) => this.#receive(message));
    return this.#listening;
  }

  /**
   * Send `frame` (or its JSON text, when the caller made it already to
   * check its size) to node `to`: as `NodeBus.sendToNode` (false: no such
   * node listens; rejects while the broker is down, TypeError for a
   * malformed node id or a message too large).
   */
  send<F extends { t: string; f: string }>(to: string, frame: F | string): Promise<boolean> {
    return this.#bus.sendToNode(to, typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The nodes listening now (`NodeBus.nodes`). */
  nodes(): Promise<string[]> {
    return this.#bus.nodes();
  }

  #receive(message: string): void {
    let frame: NodeFrame;
    try {
      frame = JSON.parse(message) as NodeFrame;
    } catch {
      this.#log.warn({ bytes: message.length }, 'node message is not JSON: dropped');
      return;
    }
    if (typeof frame !== 'object' || frame === null || typeof frame.t !== 'string' || typeof frame.f !== 'string' || !NODE_ID.test(frame.f)) {
      this.#log.warn({ bytes: message.length }, 'node message without a kind or a sender: dropped');
      return;
    }
    const handler = this.#handlers.get(frame.t);
    if (handler === undefined) {
      this.#log.warn({ kind: frame.t.slice(0, 40), node: frame.f }, 'node message of a kind this node does not know (another version?): dropped');
      return;
    }
    try {
      handler(frame);
    } catch (err) {
      this.#log.warn({ kind: frame.t, node: frame.f, err: err instanceof Error ? err.message : String(err) }, 'node message handler failed');
    }
  }
}
