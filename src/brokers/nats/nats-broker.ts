/**
 * `NatsBroker`: the Broker contract (../broker.ts) on NATS, for a cluster of
 * nodes. Core NATS carries the fan-out; JetStream keeps offsets, epochs,
 * history and idempotency keys (history-stream.ts says how). Beside it:
 * `NatsPresenceStore` (presence.ts), subjects (subjects.ts), what is
 * written (records.ts), the connection and its errors (connection.ts).
 *
 * ## Fan-out
 *
 * A publish appends its record to JetStream first (that assigns the
 * offset), then publishes the publication on the channel's core subject
 * `<prefix>.c.<tokens>` (subjects.ts: `/` → `.`, escaped segments).
 * Publishes of one node on one channel run one after another (a queue per
 * channel; see *Group commit*), so its fan-out leaves in offset order; fan-outs of several nodes
 * may cross on the way, and core NATS is at most once, so everything received
 * goes through a `Continuity` (../continuity.ts): offset order per channel
 * subscribed by name, gaps refilled from history, duplicates dropped, and a
 * `resync()` after every reconnect. Presence events use the same subjects,
 * so they keep their order with the publications.
 *
 * ## Group commit
 *
 * An offset needs the channel's previous record (its sequence is the
 * compare-and-set's expected value), so one node's stored publishes on one
 * channel cannot overlap: with one record each, a channel took at most one
 * publication per JetStream round trip, and on a busy machine that round
 * trip is the scheduler's, milliseconds long. So the publications made
 * while the channel's previous append is in flight wait in a *run* and are
 * appended together as one record (records.ts), in the order they were
 * made, then fanned out one by one. A publication with an idempotency key
 * is a run of its own (the key names its record), as is one with other
 * history settings than the run's; what is made after it joins a later run.
 *
 * ## Interest
 *
 * The node subscribes on NATS only to what `subscribe` was asked for: a
 * channel is one subject, a pattern one or two (`a/#` is `a` and `a.>`).
 * `subscribe` resolves once the server has the subscription (a flush), so
 * every publication made afterwards, on any node, reaches it. A message that
 * several of the node's subscriptions match arrives once per subscription
 * from NATS and is delivered once (a window of recent message ids), and only
 * while one of the node's subscriptions still matches its channel.
 *
 * ## Failure
 *
 * While NATS is unreachable every operation rejects at once with
 * `RT_ERR_BROKER_UNAVAILABLE` (unsubscribe and close still work: they are
 * local first); nats.js reconnects, restores the subscriptions, and the
 * broker looks for its stream again (a lost stream is re-created, with new
 * epochs) and resyncs. Nothing is thrown into the event loop.
 */
import { jetstream, jetstreamManager, JetStreamApiError } from '@nats-io/jetstream';
import type { Msg, Subscription } from '@nats-io/transport-node';
import { isPattern, isValidChannel, isValidPattern, PatternIndex } from '../../wire/channel.js';
import { IDEMPOTENCY_TTL_MS } from '../../wire/messages.js';
import { checkNodeMessage, NODE_ID } from '../broker.js';
import type {
  Broker,
  BrokerHandler,
  ClientInfo,
  HistoryFilter,
  HistoryResult,
  NodeBus,
  Publication,
  PublishOptions,
  PublishResult,
  StreamPosition,
} from '../broker.js';
import { Continuity } from '../continuity.js';
import { asBrokerError, brokerError, closedError, invalidChannel, Link, type NatsConnectOptions } from './connection.js';
import { HistoryStream, messageId, randomId, type Head } from './history-stream.js';
import { decodeFanout, encodePresence, encodePublication, encodeRecord, KIND_HISTORY, KIND_POSITION, recordToPublication, type EarlierPublication, type StoredRecord } from './records.js';
import { channelTokens, isValidPrefix, patternFilters } from './subjects.js';

export { NatsPresenceStore, type NatsPresenceOptions } from './presence.js';

export interface NatsBrokerOptions extends NatsConnectOptions {
  /** The JetStream stream of history, offsets and idempotency keys. Default `SWITCHBOARD`. */
  streamName?: string;
  /** First subject tokens of everything this broker publishes. Default `sb`. */
  subjectPrefix?: string;
  /** How long a channel's position and history outlive its last publication (the stream's max age). Default 24 h. */
  maxAgeMs?: number;
  /** The largest history size kept per channel (the stream's max messages per subject). Default 1000. */
  maxHistorySize?: number;
  /** The stream's duplicate window: the longest an idempotency key is remembered. Default 5 minutes (the protocol's window). */
  duplicateWindowMs?: number;
  /** Stream replicas (a NATS cluster). Default 1. */
  replicas?: number;
  /** Stream storage. Default `file` (epochs survive a nats-server restart). */
  storage?: 'file' | 'memory';
  /** At most this many publications per refill of a gap. Default 1000. */
  refillLimit?: number;
  /** The clock of publication times and history TTLs. Default `Date.now`. */
  now?: () => number;
  /** A gap of `missing` publications was found on a channel and is being refilled (metrics, logs). */
  onGap?: (channel: string, missing: number) => void;
  /** Called after the connection came back and the continuity refilled what it could (metrics, logs). */
  onResubscribed?: () => void;
}

/** Remembered heads of channels this node published on (the expected sequence of its next publish). */
const MAX_HEADS = 10_000;
/** Recent fan-out message ids, to deliver a message matched by several subscriptions once. */
const SEEN_WINDOW = 4096;
/** Rounds of "another node published first" before a publish gives up. */
const MAX_ATTEMPTS = 100;
/** The most publications one record of a run holds (see *Group commit*)… */
const MAX_RUN = 512;
/** …and the most bytes: a longer run is written as several records (NATS refuses payloads over its max_payload, 1 MiB by default). */
const MAX_RUN_BYTES = 256 * 1024;

/** One stored publication waiting in its channel's run. */
interface RunItem {
  data: unknown;
  from: ClientInfo | undefined;
  time: number;
  done: boolean;
  resolve(result: PublishResult): void;
  reject(err: unknown): void;
}

/**
 * Stored publications of one channel appended as one record (see *Group
 * commit*): they share the history settings; a publication with an
 * idempotency key is a run of its own (its key names the record).
 */
interface Run {
  size: number;
  ttlMs: number;
  keyTtlMs: number;
  /** `Nats-Msg-Id` of the key, if any. */
  msgId: string | undefined;
  items: RunItem[];
}

interface NodeSubscription {
  subs: Subscription[];
  ready: Promise<void>;
}

function streamMissing(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.code === 10059;
  return err instanceof Error && (err.name === 'JetStreamNotEnabled' || err.name === 'NoRespondersError');
}

/** How long a node message waits for the receiving node's receipt (NodeBus over NATS request/reply). */
const NODE_RECEIPT_TIMEOUT_MS = 3000;
/** The roll call of `nodes()` ends when no node answered for this long, in ms (the answers of live nodes come within a round trip of each other)… */
const ROLL_CALL_STALL_MS = 500;
/** …and after this long in any case, in ms. */
const ROLL_CALL_MAX_MS = 3000;
const UTF8_DECODER = new TextDecoder();

export class NatsBroker implements Broker, NodeBus {
  #nodeSub: Subscription | undefined = undefined;
  #rollCallSub: Subscription | undefined = undefined;
  readonly #link: Link;
  readonly #stream: HistoryStream;
  readonly #prefix: string;
  readonly #now: () => number;
  readonly #onError: (err: unknown) => void;
  readonly #refillLimit: number;
  readonly #continuity: Continuity;

  readonly #subs = new Map<string, NodeSubscription>();
  readonly #exact = new Set<string>();
  readonly #patterns = new PatternIndex<string>();
  readonly #heads = new Map<string, Head>();
  readonly #queues = new Map<string, Promise<void>>();
  /** Per channel, the run that publications join until its turn in the channel's queue comes. */
  readonly #openRuns = new Map<string, Run>();
  readonly #seen = new Set<string>();
  readonly #nodeId = randomId(8);
  #counter = 0;
  readonly #onResubscribed: (() => void) | undefined;
  /** The probe subscription (`<prefix>.probe.<node id>`), made at the first probe; probes in flight by token. */
  #probeSub: Subscription | null = null;
  readonly #probes = new Map<string, () => void>();
  #closed = false;

  /** Connect to NATS and find (or create) the stream. Rejects with RT_ERR_BROKER_UNAVAILABLE when NATS or JetStream is not there. */
  static async connect(options: NatsBrokerOptions = {}): Promise<NatsBroker> {
    const prefix = options.subjectPrefix ?? 'sb';
    if (!isValidPrefix(prefix)) throw new TypeError(`subjectPrefix: not a subject prefix: ${JSON.stringify(prefix)}`);
    const streamName = options.streamName ?? 'SWITCHBOARD';
    if (!/^[A-Za-z0-9_-]+$/.test(streamName)) throw new TypeError(`streamName: letters, digits, - and _ only: ${JSON.stringify(streamName)}`);
    const timeout = options.requestTimeoutMs ?? 5000;
    const link = await Link.open(options, 'switchboard-broker');
    try {
      const js = jetstream(link.nc, { timeout });
      const jsm = await jetstreamManager(link.nc, { timeout });
      const maxAgeMs = Math.max(1000, options.maxAgeMs ?? 24 * 3600_000);
      const stream = new HistoryStream(link, js, jsm, {
        streamName,
        subjectPrefix: prefix,
        maxAgeMs,
        maxHistorySize: Math.max(1, options.maxHistorySize ?? 1000),
        duplicateWindowMs: Math.max(1000, options.duplicateWindowMs ?? IDEMPOTENCY_TTL_MS),
        replicas: Math.max(1, options.replicas ?? 1),
        storage: options.storage ?? 'file',
        requestTimeoutMs: timeout,
      });
      await stream.ensure();
      return new NatsBroker(link, stream, prefix, options);
    } catch (err) {
      await link.close();
      throw asBrokerError(err);
    }
  }

  private constructor(link: Link, stream: HistoryStream, prefix: string, options: NatsBrokerOptions) {
    this.#link = link;
    this.#stream = stream;
    this.#prefix = prefix;
    this.#now = options.now ?? Date.now;
    this.#onError = options.onError ?? ((err) => console.error('NatsBroker:', err));
    this.#refillLimit = Math.max(1, options.refillLimit ?? 1000);
    this.#continuity = new Continuity({
      history: (channel, since) => this.history(channel, { since, limit: this.#refillLimit }),
      onError: (err) => this.#onError(err),
      ...(options.onGap === undefined ? {} : { onGap: options.onGap }),
    });
    this.#onResubscribed = options.onResubscribed;
    link.onReconnect(() => void this.#afterReconnect());
  }

  /** The id of the JetStream stream (part of every epoch; a re-created stream has another). */
  get streamId(): string | undefined {
    return this.#stream.id;
  }

  /** This node's id (NodeBus; also the prefix of its message ids). */
  get nodeId(): string {
    return this.#nodeId;
  }

  /** The server's max_payload, less room for headers. */
  get maxNodeMessageBytes(): number {
    return Math.max(1024, (this.#link.nc.info?.max_payload ?? 1024 * 1024) - 1024);
  }

  /**
   * Node messages are requests on `<prefix>.n.<node id>`: the receiving node
   * answers each at once (an empty receipt), so a node nobody listens for is
   * told apart — NATS answers "no responders" — and `sendToNode` says false.
   */
  async listenNodes(handler: (message: string) => void): Promise<void> {
    this.#checkOpen();
    this.#link.check();
    this.#nodeSub?.unsubscribe();
    this.#rollCallSub?.unsubscribe();
    // The roll call of nodes(): every listening node answers with its id.
    this.#rollCallSub = this.#link.nc.subscribe(`${this.#prefix}.nodes`, {
      callback: (err, msg) => {
        if (err === null) msg.respond(this.#nodeId);
      },
    });
    this.#nodeSub = this.#link.nc.subscribe(`${this.#prefix}.n.${this.#nodeId}`, {
      callback: (err, msg) => {
        if (err !== null) return;
        try {
          msg.respond();
          handler(UTF8_DECODER.decode(msg.data));
        } catch (e) {
          this.#onError(e);
        }
      },
    });
    await this.#link.nc.flush().catch((err: unknown) => {
      throw asBrokerError(err);
    });
  }

  async sendToNode(to: string, message: string): Promise<boolean> {
    this.#checkOpen();
    checkNodeMessage(this, to, message);
    this.#link.check();
    try {
      await this.#link.nc.request(`${this.#prefix}.n.${to}`, message, { timeout: NODE_RECEIPT_TIMEOUT_MS });
      return true;
    } catch (err) {
      // No subscriber: NATS saw the node's connection go (or it never listened).
      const name = err instanceof Error ? err.name : '';
      if (name === 'NoRespondersError' || (err instanceof Error && /no responders/i.test(err.message))) return false;
      // A subscriber that sent no receipt in time (its process stopped, its event loop blocked, its link
      // half dead): NATS routed the message to a listening node, as a Redis PUBLISH counting one
      // subscriber does; whether it answers is the caller's to wait for (its own timeout).
      if (name === 'TimeoutError' || (err instanceof Error && /timeout/i.test(err.message))) return true;
      throw asBrokerError(err);
    }
  }

  /**
   * A roll call on `<prefix>.nodes`: every listening node answers with its
   * id; answers are collected until none came for {@link ROLL_CALL_STALL_MS}
   * (at most {@link ROLL_CALL_MAX_MS}). No answer at all (no node listens):
   * an empty list.
   */
  async nodes(): Promise<string[]> {
    this.#checkOpen();
    this.#link.check();
    const out = new Set<string>();
    try {
      const answers = await this.#link.nc.requestMany(`${this.#prefix}.nodes`, '', { strategy: 'stall', stall: ROLL_CALL_STALL_MS, maxWait: ROLL_CALL_MAX_MS });
      for await (const msg of answers) {
        const id = UTF8_DECODER.decode(msg.data);
        if (NODE_ID.test(id)) out.add(id);
      }
    } catch (err) {
      const name = err instanceof Error ? err.name : '';
      if (name !== 'NoRespondersError' && !(err instanceof Error && /no responders/i.test(err.message))) throw asBrokerError(err);
    }
    return [...out];
  }

  /** Whether the NATS connection is up now. */
  get connected(): boolean {
    return this.#link.up;
  }

  setHandler(handler: BrokerHandler): void {
    this.#continuity.setHandler({
      onPublication: (pub) => this.#safely(() => handler.onPublication(pub)),
      onJoin: (channel, info) => this.#safely(() => handler.onJoin(channel, info)),
      onLeave: (channel, info) => this.#safely(() => handler.onLeave(channel, info)),
    });
  }

  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    this.#ready(channel);
    try {
      if (options.volatile) return await this.#publishVolatile(channel, data, options);
      return await this.#publishStored(channel, data, options);
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  async subscribe(channel: string): Promise<void> {
    this.#checkOpen();
    const pattern = isPattern(channel);
    if (pattern ? !isValidPattern(channel) : !isValidChannel(channel)) throw invalidChannel(channel);
    this.#link.check();
    const known = this.#subs.get(channel);
    if (known !== undefined) return known.ready;
    const callback = (err: Error | null, msg: Msg): void => {
      if (err === null) this.#receive(msg);
    };
    const subs = patternFilters(channel).map((f) => this.#link.nc.subscribe(`${this.#prefix}.c.${f}`, { callback }));
    // Once the server answers the flush it has the subscription: every later publication reaches it.
    const ready = this.#link.nc.flush().catch((err: unknown) => {
      if (this.#subs.get(channel) === entry) this.#drop(channel);
      throw asBrokerError(err);
    });
    const entry: NodeSubscription = { subs, ready };
    this.#subs.set(channel, entry);
    if (pattern) this.#patterns.add(channel, channel);
    else {
      this.#exact.add(channel);
      this.#continuity.track(channel);
    }
    return ready;
  }

  async unsubscribe(channel: string): Promise<void> {
    this.#checkOpen();
    this.#drop(channel);
  }

  async publishPresence(channel: string, kind: 'join' | 'leave', info: ClientInfo): Promise<void> {
    this.#ready(channel);
    try {
      this.#link.nc.publish(this.#fanoutSubject(channel), encodePresence(this.#messageId(), kind, channel, info));
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  async history(channel: string, filter: HistoryFilter = {}): Promise<HistoryResult> {
    this.#ready(channel);
    try {
      return await this.#retryOnLostStream(() => this.#history(channel, filter));
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  async removeHistory(channel: string): Promise<void> {
    this.#ready(channel);
    try {
      await this.#serial(channel, () =>
        this.#retryOnLostStream(async () => {
          this.#heads.delete(channel);
          await this.#stream.reset(channel, this.#now());
        }),
      );
    } catch (err) {
      throw asBrokerError(err);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const channel of [...this.#subs.keys()]) this.#drop(channel);
    this.#probeSub?.unsubscribe();
    this.#nodeSub?.unsubscribe();
    this.#nodeSub = undefined;
    this.#rollCallSub?.unsubscribe();
    this.#rollCallSub = undefined;
    this.#heads.clear();
    this.#seen.clear();
    await this.#link.close();
  }

  // ---- publishing ---------------------------------------------------------

  /**
   * Join the channel's open run, or open one and queue it (see *Group
   * commit*). A publication with a key, or with other history settings
   * than the open run's, opens a run of its own; later ones join the newest
   * run, so the queue keeps the order in which they were made.
   */
  #publishStored(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    const stream = this.#stream;
    const history = options.history;
    const size = history !== undefined && history.size > 0 ? Math.min(Math.floor(history.size), stream.options.maxHistorySize) : 0;
    const ttlMs = size > 0 && history!.ttlMs > 0 ? history!.ttlMs : 0;
    const key = options.idempotencyKey;
    let run = key === undefined ? this.#openRuns.get(channel) : undefined;
    if (run === undefined || run.size !== size || run.ttlMs !== ttlMs || run.items.length >= MAX_RUN) {
      const opened: Run = {
        size,
        ttlMs,
        keyTtlMs: key === undefined ? 0 : Math.min(options.idempotencyTtlMs ?? IDEMPOTENCY_TTL_MS, stream.options.duplicateWindowMs),
        msgId: key === undefined ? undefined : messageId(channel, key),
        items: [],
      };
      if (key === undefined) this.#openRuns.set(channel, opened);
      else this.#openRuns.delete(channel); // what comes after a keyed publication goes after it
      void this.#serial(channel, async () => {
        if (this.#openRuns.get(channel) === opened) this.#openRuns.delete(channel);
        try {
          await this.#retryOnLostStream(() => this.#appendRun(channel, opened, opened.items));
        } catch (err) {
          for (const item of opened.items) if (!item.done) item.reject(err);
        }
      });
      run = opened;
    }
    const items = run.items;
    return new Promise<PublishResult>((resolve, reject) => {
      items.push({ data, from: options.from, time: this.#now(), done: false, resolve, reject });
    });
  }

  /**
   * Append `items` of `run` (those not yet appended: a retry after a lost
   * stream) as one record after the channel's head, then fan them out and
   * answer them. A record over MAX_RUN_BYTES is split in two.
   */
  async #appendRun(channel: string, run: Run, all: RunItem[]): Promise<void> {
    const items = all.filter((item) => !item.done);
    if (items.length === 0) return;
    const stream = this.#stream;
    const { size, ttlMs, keyTtlMs } = run;
    let msgId = run.msgId;
    let head = this.#heads.get(channel) ?? (await stream.head(channel));
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const newest = items[items.length - 1]!;
      const base = head === undefined ? 0 : head.record.offset;
      const record: StoredRecord = {
        kind: size > 0 ? KIND_HISTORY : KIND_POSITION,
        offset: base + items.length,
        epoch: head === undefined ? stream.quietEpoch(newest.time) : head.record.epoch,
        time: newest.time,
        size,
        ttlMs,
        prev: head?.seq ?? 0,
        keyTtlMs,
      };
      if (size > 0) {
        record.data = newest.data;
        if (newest.from !== undefined) record.from = newest.from;
      }
      // encodeRecord keeps what the record's kind stores (times only without history).
      if (items.length > 1) record.earlier = items.slice(0, -1).map(({ time, data, from }): EarlierPublication => ({ time, data, from }));
      const bytes = encodeRecord(record);
      if (bytes.length > MAX_RUN_BYTES && items.length > 1) {
        const half = Math.ceil(items.length / 2);
        await this.#appendRun(channel, run, items.slice(0, half));
        await this.#appendRun(channel, run, items.slice(half));
        return;
      }
      const r = await stream.append(channel, bytes, head?.seq ?? 0, msgId);
      if (r === 'conflict') {
        head = await stream.head(channel); // another node published first
        continue;
      }
      if (r.duplicate) {
        // Only a keyed run (one publication) has a message id.
        const first = await stream.get(r.seq);
        if (first !== undefined && first.keyTtlMs > 0 && newest.time - first.time < first.keyTtlMs) {
          newest.done = true;
          newest.resolve({ offset: first.offset, epoch: first.epoch, duplicate: true });
          return;
        }
        msgId = `${run.msgId}:${r.seq}`; // that key expired: follow the chain (history-stream.ts, *Idempotency*)
        continue;
      }
      // The remembered head gives the next append its offset and epoch: not the run's data.
      const { earlier: _earlier, data: _data, from: _from, ...position } = record;
      this.#remember(channel, { seq: r.seq, record: position });
      for (let i = 0; i < items.length; i++) {
        const item = items[i]!;
        const pub: Publication = { channel, offset: base + 1 + i, epoch: record.epoch, data: item.data, time: item.time };
        if (item.from !== undefined) pub.from = item.from;
        this.#fanout(pub);
        item.done = true;
        item.resolve({ offset: pub.offset, epoch: pub.epoch, duplicate: false });
      }
      return;
    }
    throw brokerError('RT_ERR_BROKER_UNAVAILABLE', `publish on ${JSON.stringify(channel)}: gave up after ${MAX_ATTEMPTS} conflicting publishes`);
  }

  /** Volatile: fan-out only, carrying the channel's current position (no offset of its own, nothing stored). */
  async #publishVolatile(channel: string, data: unknown, options: PublishOptions): Promise<PublishResult> {
    const now = this.#now();
    const head = this.#heads.get(channel) ?? (await this.#retryOnLostStream(() => this.#stream.head(channel)));
    const position: StreamPosition = head === undefined ? { offset: 0, epoch: this.#stream.quietEpoch(now) } : { offset: head.record.offset, epoch: head.record.epoch };
    const pub: Publication = { channel, ...position, data, time: now, volatile: true };
    if (options.from !== undefined) pub.from = options.from;
    this.#fanout(pub);
    return { ...position, duplicate: false };
  }

  #fanout(pub: Publication): void {
    try {
      this.#link.nc.publish(this.#fanoutSubject(pub.channel), encodePublication(this.#messageId(), pub));
    } catch (err) {
      // Stored, so published: subscribers refill it from history when they see the gap. After close(), a run
      // whose append was answered while the connection drained has nowhere to go and nothing to report.
      if (!this.#closed) this.#onError(err);
    }
  }

  #remember(channel: string, head: Head): void {
    this.#heads.delete(channel);
    this.#heads.set(channel, head);
    if (this.#heads.size > MAX_HEADS) this.#heads.delete(this.#heads.keys().next().value as string);
  }

  /** Run `fn` after every earlier call for `channel` on this node settled. */
  #serial<T>(channel: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#queues.get(channel) ?? Promise.resolve();
    const run = before.then(fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.#queues.set(channel, tail);
    void tail.then(() => {
      if (this.#queues.get(channel) === tail) this.#queues.delete(channel);
    });
    return run;
  }

  /** JetStream lost the stream (a nats-server with an empty store): re-create it (new epochs) and try once more. */
  async #retryOnLostStream<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!streamMissing(err) || !this.#link.up) throw err;
      this.#heads.clear();
      await this.#stream.ensure(true);
      return await fn();
    }
  }

  // ---- history ------------------------------------------------------------

  async #history(channel: string, filter: HistoryFilter): Promise<HistoryResult> {
    const now = this.#now();
    const head = await this.#stream.head(channel);
    if (head !== undefined) this.#remember(channel, head);
    const position: StreamPosition = head === undefined ? { offset: 0, epoch: this.#stream.quietEpoch(now) } : { offset: head.record.offset, epoch: head.record.epoch };
    const limit = filter.limit === undefined || !(filter.limit < Infinity) ? Infinity : Math.max(0, Math.floor(filter.limit));
    const since = filter.since;
    if (since !== undefined) {
      if (since.epoch !== position.epoch || !(since.offset >= 0) || since.offset > position.offset) {
        return { publications: [], position, recovered: false };
      }
      if (head === undefined || since.offset === position.offset) return { publications: [], position, recovered: true };
      // The oldest after `since` come first, so the walk goes back all the way to it.
      const missing = position.offset - since.offset;
      const records = await this.#stream.walk(head, now, missing, since.offset);
      const publications = records.reverse().slice(0, limit).map((r) => recordToPublication(channel, r));
      return { publications, position, recovered: records.length === missing };
    }
    if (head === undefined || limit === 0) return { publications: [], position, recovered: false };
    const records = await this.#stream.walk(head, now, limit, 0);
    return { publications: records.reverse().map((r) => recordToPublication(channel, r)), position, recovered: false };
  }

  // ---- receiving ----------------------------------------------------------

  #receive(msg: Msg): void {
    if (this.#closed) return;
    const m = decodeFanout(msg.data);
    if (m === undefined) return;
    const channel = m.type === 'pub' ? m.pub.channel : m.channel;
    // Unsubscribed meanwhile (a message in flight), or not ours at all.
    if (!this.#exact.has(channel) && !this.#patterns.hasMatch(channel)) return;
    if (this.#patterns.size > 0 && this.#seenBefore(m.id)) return;
    if (m.type === 'pub') this.#continuity.onPublication(m.pub);
    else if (m.type === 'join') this.#continuity.onJoin(channel, m.info);
    else this.#continuity.onLeave(channel, m.info);
  }

  async probe(timeoutMs: number): Promise<number> {
    this.#checkOpen();
    this.#link.check();
    const subject = `${this.#prefix}.probe.${this.#nodeId}`;
    if (this.#probeSub === null) {
      this.#probeSub = this.#link.nc.subscribe(subject, { callback: (err, msg) => void (err === null && this.#probes.get(msg.string())?.()) });
    }
    const token = randomId(12);
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const back = new Promise<void>((resolve) => this.#probes.set(token, resolve));
    try {
      this.#link.nc.publish(subject, token);
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      if ((await Promise.race([back, timedOut])) === 'timeout') {
        // Published, never delivered: the connection is dead without knowing it. Made again (then resync).
        if (!this.#closed) this.#link.nc.reconnect().catch((err: unknown) => this.#onError(err));
        throw new Error(`probe: published, not delivered back within ${timeoutMs} ms; reconnecting`);
      }
      return performance.now() - started;
    } catch (err) {
      throw asBrokerError(err);
    } finally {
      clearTimeout(timer);
      this.#probes.delete(token);
    }
  }

  /** Whether `id` arrived already (through another subscription of this node). */
  #seenBefore(id: string): boolean {
    if (this.#seen.has(id)) return true;
    this.#seen.add(id);
    if (this.#seen.size > SEEN_WINDOW) this.#seen.delete(this.#seen.values().next().value as string);
    return false;
  }

  async #afterReconnect(): Promise<void> {
    if (this.#closed) return;
    try {
      // JetStream may have lost the stream meanwhile (a server with an empty store): find or re-create it.
      this.#heads.clear();
      await this.#stream.ensure(true);
      await this.#continuity.resync();
      this.#onResubscribed?.();
    } catch (err) {
      this.#onError(err);
    }
  }

  // ---- helpers ------------------------------------------------------------

  #fanoutSubject(channel: string): string {
    return `${this.#prefix}.c.${channelTokens(channel)}`;
  }

  #messageId(): string {
    return `${this.#nodeId}${(this.#counter++).toString(36)}`;
  }

  #drop(channel: string): void {
    const entry = this.#subs.get(channel);
    if (entry === undefined) return;
    this.#subs.delete(channel);
    for (const sub of entry.subs) {
      try {
        sub.unsubscribe();
      } catch {
        // The connection is closed: the subscription went with it.
      }
    }
    if (this.#exact.delete(channel)) this.#continuity.untrack(channel);
    else this.#patterns.remove(channel, channel);
  }

  /** Open, a valid channel, and NATS up: or throw. */
  #ready(channel: string): void {
    this.#checkOpen();
    if (!isValidChannel(channel)) throw invalidChannel(channel);
    this.#link.check();
  }

  #checkOpen(): void {
    if (this.#closed) throw closedError('broker');
  }

  #safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#onError(err);
    }
  }
}
