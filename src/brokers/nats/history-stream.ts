/**
 * The JetStream stream behind the NATS broker's offsets, epochs, history
 * and idempotency keys. One stream (`streamName`, subjects `<prefix>.h.>`),
 * one subject per channel; every non-volatile publication is in a record on
 * its channel's subject (records.ts): one publication, or a run of them that
 * one node made while its previous append was in flight (nats-broker.ts,
 * *Group commit*). Below, "the head's offset" is its newest publication's.
 *
 * ## Offsets
 *
 * A channel's offset is in its newest record (its *head*). Publishing reads
 * the head (or remembers it from its own last publish), writes the record
 * with offset + 1 and `Nats-Expected-Last-Subject-Sequence` = the head's
 * stream sequence, and starts over on "wrong last sequence" (another node
 * published first). So offsets start at 1 and grow by exactly one per
 * channel, whichever node publishes, with no counter anywhere else. Records
 * of publications without history carry the position only (no data), so
 * offsets go on for channels without history too.
 *
 * ## History
 *
 * Each record names the sequence of the channel's previous record (`prev`,
 * the expected sequence it was written with), so history is read backwards
 * from the head, one stream get per record, only as far as needed
 * (`since`, `limit`, the size). The settings of the head rule, as in the
 * memory broker: its `size` (0: nothing is kept — a publication without
 * history clears the channel's history), its `ttlMs` (checked on read:
 * JetStream's max age is per stream, and namespaces differ), and a reset
 * marker ends the walk. JetStream bounds what is stored: `max_msgs_per_subject`
 * (`maxHistorySize`, the largest usable history size) and `max_age`
 * (`maxAgeMs`: how long a channel's position and history outlive its last
 * publication; a history `ttlMs` of 0 or above it means `maxAgeMs`).
 *
 * ## Epochs
 *
 * The stream gets a random id when it is created (kept in its description),
 * so a stream JetStream lost and that is re-created has another id, and
 * every epoch derived from it changes: clients resuming get `recovered:
 * false`. A file store that survives a restart keeps the stream, its id,
 * and every epoch: `recovered: true`.
 * - A channel without records is quiet: position `{ 0, Q }` with Q = stream
 *   id + the number of the current `maxAgeMs` window. Q is the epoch of its
 *   first record, so resuming from the quiet position works after the first
 *   publications. When the records expire (max age), at least one window has
 *   passed, so the next Q differs and no offset is reused within an epoch.
 * - removeHistory writes a reset marker (offset 0 in a new random epoch)
 *   and then purges the records before it: the channel's offsets start over
 *   from 1 in the new epoch. Marker first, so there is never a moment
 *   without a head in which another node could restart an old epoch.
 *
 * ## Idempotency
 *
 * `Nats-Msg-Id` = a hash of (channel, key); the stream's duplicate window
 * (`duplicateWindowMs`, ≥ the default key TTL of 5 minutes) is the longest a
 * key can be remembered. JetStream answers a repeated id with the sequence of
 * the first record; if that record is gone (removeHistory) or older than its
 * key TTL, the key has expired: the publish is retried with the id chained
 * to that sequence (`<hash>:<seq>`), which JetStream has not seen, or has —
 * then the chain goes on to the record that id wrote.
 */
import { createHash, randomBytes } from 'node:crypto';
import { JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { unavailable, type Link } from './connection.js';
import { decodeRecord, encodeRecord, firstOffset, KIND_HISTORY, KIND_RESET, splitRecord, type StoredRecord } from './records.js';
import { channelTokens } from './subjects.js';

const NS_PER_MS = 1_000_000;
const STREAM_NOT_FOUND = 10059;
const STREAM_NAME_IN_USE = 10058;
const WRONG_LAST_SEQUENCE = 10071;
const ID_PREFIX = 'switchboard history ';

export interface HistoryStreamOptions {
  streamName: string;
  subjectPrefix: string;
  maxAgeMs: number;
  maxHistorySize: number;
  duplicateWindowMs: number;
  replicas: number;
  storage: 'file' | 'memory';
  requestTimeoutMs: number;
}

/** A channel's newest record and its stream sequence. */
export interface Head {
  seq: number;
  record: StoredRecord;
}

const BASE36 = '0123456789abcdefghijklmnopqrstuvwxyz';

export function randomId(length: number): string {
  let out = '';
  for (const b of randomBytes(length)) out += BASE36[b % 36];
  return out;
}

function apiCode(err: unknown): number | undefined {
  return err instanceof JetStreamApiError ? err.code : undefined;
}

export class HistoryStream {
  #id: string | undefined;
  #ensuring: Promise<string> | undefined;

  constructor(
    readonly link: Link,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly options: HistoryStreamOptions,
  ) {}

  /** The stream's id (see *Epochs*), once known. */
  get id(): string | undefined {
    return this.#id;
  }

  subject(channel: string): string {
    return `${this.options.subjectPrefix}.h.${channelTokens(channel)}`;
  }

  /**
   * Find or create the stream and learn its id. Concurrent callers share one
   * attempt; `force` asks again (after a reconnect: JetStream may have lost
   * it). Resolves with the id; a changed id means every epoch changed.
   */
  ensure(force = false): Promise<string> {
    // An attempt under way (after a reconnect) may find another id: wait for it.
    if (this.#ensuring !== undefined) return this.#ensuring;
    if (this.#id !== undefined && !force) return Promise.resolve(this.#id);
    this.#ensuring = this.#ensure().finally(() => {
      this.#ensuring = undefined;
    });
    return this.#ensuring;
  }

  async #ensure(): Promise<string> {
    const o = this.options;
    const read = async (): Promise<string | undefined> => {
      try {
        const info = await this.jsm.streams.info(o.streamName);
        const d = info.config.description ?? '';
        // A stream made by someone else: its creation time is unique to this incarnation too.
        return d.startsWith(ID_PREFIX) ? d.slice(ID_PREFIX.length) : createHash('sha256').update(info.created).digest('hex').slice(0, 8);
      } catch (err) {
        if (apiCode(err) === STREAM_NOT_FOUND) return undefined;
        throw err;
      }
    };
    let id = await read();
    if (id === undefined) {
      const fresh = randomId(8);
      try {
        await this.jsm.streams.add({
          name: o.streamName,
          description: ID_PREFIX + fresh,
          subjects: [`${o.subjectPrefix}.h.>`],
          max_msgs_per_subject: o.maxHistorySize,
          max_age: o.maxAgeMs * NS_PER_MS,
          duplicate_window: Math.min(o.duplicateWindowMs, o.maxAgeMs) * NS_PER_MS,
          num_replicas: o.replicas,
          storage: o.storage as never,
          discard: 'old' as never,
        });
        id = fresh;
      } catch (err) {
        // Another node created it first: use theirs.
        if (apiCode(err) !== STREAM_NAME_IN_USE) throw err;
        id = await read();
        if (id === undefined) throw err;
      }
    }
    this.#id = id;
    return id;
  }

  /** The epoch of a quiet channel now (see *Epochs*). */
  quietEpoch(now: number): string {
    return `${this.#id ?? ''}${Math.floor(now / this.options.maxAgeMs).toString(36)}`;
  }

  /** The channel's newest record, or undefined for a quiet channel. */
  async head(channel: string): Promise<Head | undefined> {
    await this.ensure();
    const m = await this.jsm.streams.getMessage(this.options.streamName, { last_by_subj: this.subject(channel) });
    if (m === null) return undefined;
    const record = decodeRecord(m.data);
    return record === undefined ? undefined : { seq: m.seq, record };
  }

  /** The record at `seq`, or undefined when it is gone (expired, purged, evicted). */
  async get(seq: number): Promise<StoredRecord | undefined> {
    try {
      const m = await this.jsm.streams.getMessage(this.options.streamName, { seq });
      return m === null ? undefined : decodeRecord(m.data);
    } catch (err) {
      if (err instanceof JetStreamApiError) return undefined; // "no message found": a gap, not an outage
      throw err;
    }
  }

  /**
   * Append `record` (or its encoding) after `expectSeq` (the channel's head, 0 if quiet).
   * Resolves with its sequence, `'conflict'` when the head moved, or
   * `{ duplicate }` when `msgId` was seen (the first record's sequence).
   */
  async append(channel: string, record: StoredRecord | Uint8Array, expectSeq: number, msgId?: string): Promise<{ seq: number; duplicate: boolean } | 'conflict'> {
    const opts: Parameters<JetStreamClient['publish']>[2] = { expect: { lastSubjectSequence: expectSeq }, timeout: this.options.requestTimeoutMs };
    if (msgId !== undefined) opts.msgID = msgId;
    try {
      const ack = await this.js.publish(this.subject(channel), record instanceof Uint8Array ? record : encodeRecord(record), opts);
      return { seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      if (apiCode(err) === WRONG_LAST_SEQUENCE) return 'conflict';
      throw err;
    }
  }

  /** removeHistory: a reset marker in a new epoch, then the records before it purged. */
  async reset(channel: string, now: number): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const head = await this.head(channel);
      if (head === undefined || head.record.kind === KIND_RESET) return; // nothing was published since
      const marker: StoredRecord = { kind: KIND_RESET, offset: 0, epoch: randomId(10), time: now, size: 0, ttlMs: 0, prev: 0, keyTtlMs: 0 };
      const r = await this.append(channel, marker, head.seq);
      if (r === 'conflict') continue;
      await this.jsm.streams.purge(this.options.streamName, { filter: this.subject(channel), seq: r.seq });
      return;
    }
    throw unavailable(new Error('removeHistory: the channel kept changing'));
  }

  /**
   * The history records of `channel` newest first, walking back from `head`:
   * at most `max`, none at or before offset `after`, none the head's
   * settings drop (size, age, a publication without history, a reset).
   */
  async walk(head: Head, now: number, max: number, after: number): Promise<StoredRecord[]> {
    const h = head.record;
    const out: StoredRecord[] = [];
    if (h.kind !== KIND_HISTORY || h.size <= 0) return out;
    const limit = Math.min(max, h.size);
    const ttl = h.ttlMs > 0 ? h.ttlMs : Infinity;
    let r: StoredRecord | undefined = h;
    while (r !== undefined) {
      if (r.kind !== KIND_HISTORY || r.epoch !== h.epoch) return out;
      // A record of a run holds several publications: each counts on its own.
      for (const p of splitRecord(r)) {
        if (out.length >= limit || p.offset <= after) return out;
        if (now - p.time >= ttl) return out; // expired, and so is everything before it
        if (out.length > 0 && p.offset !== out[out.length - 1]!.offset - 1) return out; // never skip over a hole
        out.push(p);
      }
      if (r.prev === 0 || firstOffset(r) <= 1) return out;
      r = await this.get(r.prev);
    }
    return out;
  }
}

/** `Nats-Msg-Id` of an idempotency key (see *Idempotency*). */
export function messageId(channel: string, key: string): string {
  return createHash('sha256').update(channel).update('\u0000').update(key).digest('base64url');
}
