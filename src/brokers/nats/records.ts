/**
 * What the NATS broker writes: the records it stores in JetStream (one per
 * publication, plus reset markers) and the messages of its core-NATS
 * fan-out. MessagePack, because publication data may hold Uint8Array
 * (JSON would not give it back). Arrays, not maps: these are written once
 * per publication and read on every delivery and history step.
 */
import { packMsgpack, unpackMsgpack } from '../../wire/msgpack.js';
import type { ClientInfo, Publication } from '../broker.js';

const VERSION = 1;

/** A stored publication with history. */
export const KIND_HISTORY = 0;
/** A stored publication without history: it only carries the channel's position on (no data). */
export const KIND_POSITION = 1;
/** Written by removeHistory: offset 0 of a new epoch, nothing before it counts. */
export const KIND_RESET = 2;

/** A publication a record holds before its newest one (see StoredRecord#earlier). */
export interface EarlierPublication {
  time: number;
  /** Absent in a record without history (it carries positions only). */
  data?: unknown;
  from?: ClientInfo;
}

/**
 * One JetStream message of the history stream (its subject names the channel).
 * A record may hold a run of publications that one node made while its
 * previous append was in flight (group commit: one compare-and-set for the
 * run): `offset`, `time`, `data` and `from` are the newest one's, `earlier`
 * the others', oldest first, at offsets `offset - earlier.length` to
 * `offset - 1`. They share the epoch and the history settings.
 */
export interface StoredRecord {
  kind: number;
  /** The newest publication's offset (a record with `earlier` holds the ones just before it too). */
  offset: number;
  epoch: string;
  time: number;
  /** History settings of this publication (they rule the whole channel's history while it is the newest). */
  size: number;
  ttlMs: number;
  /** Stream sequence of the channel's previous record (0: none): history is read backwards along these. */
  prev: number;
  /** How long the idempotency key published with it is remembered, in ms (0: no key). */
  keyTtlMs: number;
  data?: unknown;
  from?: ClientInfo;
  earlier?: EarlierPublication[];
}

const ENCODE = { ignoreUndefined: true } as const;

export function encodeRecord(r: StoredRecord): Uint8Array {
  const fields: unknown[] = [VERSION, r.kind, r.offset, r.epoch, r.time, r.size, r.ttlMs, r.prev, r.keyTtlMs, r.data, r.from];
  if (r.earlier !== undefined && r.earlier.length > 0) fields.push(r.earlier.map((e) => (r.kind === KIND_HISTORY ? [e.time, e.data, e.from] : [e.time])));
  return packMsgpack(fields, ENCODE);
}

/** The record, or undefined when the bytes are not one (another writer on our subjects). */
export function decodeRecord(bytes: Uint8Array): StoredRecord | undefined {
  let v: unknown;
  try {
    v = unpackMsgpack(bytes);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v[0] !== VERSION || typeof v[2] !== 'number' || typeof v[3] !== 'string') return undefined;
  const r: StoredRecord = {
    kind: v[1] as number,
    offset: v[2],
    epoch: v[3],
    time: v[4] as number,
    size: v[5] as number,
    ttlMs: v[6] as number,
    prev: v[7] as number,
    keyTtlMs: v[8] as number,
  };
  if (r.kind === KIND_HISTORY) r.data = v[9] ?? null;
  if (v[10] != null) r.from = v[10] as ClientInfo;
  if (Array.isArray(v[11]) && v[11].length > 0) {
    const earlier: EarlierPublication[] = [];
    for (const e of v[11] as unknown[]) {
      if (!Array.isArray(e) || typeof e[0] !== 'number') return undefined;
      const item: EarlierPublication = { time: e[0] };
      if (r.kind === KIND_HISTORY) item.data = e[1] ?? null;
      if (e[2] != null) item.from = e[2] as ClientInfo;
      earlier.push(item);
    }
    r.earlier = earlier;
  }
  return r;
}

/** The offset of the oldest publication a record holds. */
export function firstOffset(r: StoredRecord): number {
  return r.offset - (r.earlier?.length ?? 0);
}

/**
 * The publications of a record, newest first, each as a record of its own
 * (same kind, epoch and settings; its own offset, time, data and sender).
 */
export function splitRecord(r: StoredRecord): StoredRecord[] {
  if (r.earlier === undefined || r.earlier.length === 0) return [r];
  const { earlier, ...newest } = r;
  const { data: _data, from: _from, ...shared } = newest;
  const out: StoredRecord[] = [newest];
  for (let i = earlier.length - 1; i >= 0; i--) {
    const e = earlier[i]!;
    const one: StoredRecord = { ...shared, offset: r.offset - (earlier.length - i), time: e.time };
    if (r.kind === KIND_HISTORY) one.data = e.data ?? null;
    if (e.from !== undefined) one.from = e.from;
    out.push(one);
  }
  return out;
}

/** The publication a history record holds. */
export function recordToPublication(channel: string, r: StoredRecord): Publication {
  const pub: Publication = { channel, offset: r.offset, epoch: r.epoch, data: r.data, time: r.time };
  if (r.from !== undefined) pub.from = r.from;
  return pub;
}

// ---- fan-out ---------------------------------------------------------------

const PUB = 0;
const JOIN = 1;
const LEAVE = 2;

export type FanoutMessage =
  | { type: 'pub'; id: string; pub: Publication }
  | { type: 'join' | 'leave'; id: string; channel: string; info: ClientInfo };

export function encodePublication(id: string, p: Publication): Uint8Array {
  return packMsgpack([PUB, id, p.channel, p.offset, p.epoch, p.time, p.data, p.from, p.volatile === true ? 1 : 0], ENCODE);
}

export function encodePresence(id: string, kind: 'join' | 'leave', channel: string, info: ClientInfo): Uint8Array {
  return packMsgpack([kind === 'join' ? JOIN : LEAVE, id, channel, info], ENCODE);
}

/** The message, or undefined for bytes that are not one. */
export function decodeFanout(bytes: Uint8Array): FanoutMessage | undefined {
  let v: unknown;
  try {
    v = unpackMsgpack(bytes);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || typeof v[1] !== 'string' || typeof v[2] !== 'string') return undefined;
  if (v[0] === PUB) {
    const pub: Publication = { channel: v[2], offset: v[3] as number, epoch: v[4] as string, data: v[6] ?? null, time: v[5] as number };
    if (v[7] != null) pub.from = v[7] as ClientInfo;
    if (v[8] === 1) pub.volatile = true;
    return { type: 'pub', id: v[1], pub };
  }
  if (v[0] === JOIN || v[0] === LEAVE) return { type: v[0] === JOIN ? 'join' : 'leave', id: v[1], channel: v[2], info: v[3] as ClientInfo };
  return undefined;
}
