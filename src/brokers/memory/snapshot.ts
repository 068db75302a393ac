/**
 * A memory broker backend's streams as plain data, and back
 * (`MemoryBroker.snapshot()` / `restore()`).
 *
 * ## Snapshots
 *
 * `snapshot({ final })` returns the backend's streams (epochs, offsets,
 * retained publications, idempotency keys) as plain data; `restore()` loads
 * one into a broker that has published nothing yet. A *final* snapshot is
 * one taken when nothing can publish any more (a graceful stop): restoring
 * it keeps the epochs, so clients resume across the restart with
 * `recovered: true`. Any other snapshot may be older than the last
 * publications: reusing its epochs would hand out offsets that clients have
 * already seen for other messages, so restoring it keeps the publications
 * (history for new subscribers) under new epochs (resuming clients get
 * `recovered: false` and refetch). Saving snapshots to a file is the
 * caller's business (see snapshot-file.ts): this module does no I/O.
 */
import { isValidChannel } from '../../wire/channel.js';
import type { Publication } from '../broker.js';
import { EPOCH_BUCKETS, Stream, type StreamTable } from './stream.js';

/** One channel's stream in a {@link MemoryBrokerSnapshot}. */
export interface StreamSnapshot {
  channel: string;
  epoch: string;
  /** Offset of the channel's last publication. */
  offset: number;
  /** History settings of the last publication. */
  size: number;
  ttlMs: number;
  lastPublishAt: number;
  /** Retained publications, oldest first, consecutive offsets ending at `offset`. */
  publications: Publication[];
  /** Idempotency keys: `[key, offset, expiresAt]`. */
  keys: Array<[string, number, number]>;
}

/** A broker backend's state as plain data (no classes; `data` of publications as published). */
export interface MemoryBrokerSnapshot {
  format: 'switchboard-memory-broker';
  version: 1;
  /** Taken when nothing could publish any more: restoring keeps the epochs. */
  final: boolean;
  /** When it was taken, ms since the Unix epoch. */
  takenAt: number;
  /** The broker id (prefix of its epochs). */
  id: string;
  /** Epoch generations that are not 0: `[bucket, generation]`. */
  generations: Array<[number, number]>;
  /** In order of last publication, least recent first. */
  streams: StreamSnapshot[];
}

/** The table's streams as a snapshot taken at `now`, keys expired by then left out (the caller has swept). */
export function takeSnapshot(table: StreamTable, now: number, final: boolean): MemoryBrokerSnapshot {
  const generations: Array<[number, number]> = [];
  table.generations.forEach((g, bucket) => {
    if (g !== 0) generations.push([bucket, g]);
  });
  const streams: StreamSnapshot[] = [];
  for (const [channel, stream] of table.byChannel) {
    const keys: Array<[string, number, number]> = [];
    if (stream.keys !== undefined) for (const [key, e] of stream.keys) if (e.expiresAt > now) keys.push([key, e.offset, e.expiresAt]);
    streams.push({
      channel,
      epoch: stream.epoch,
      offset: stream.offset,
      size: stream.size,
      ttlMs: stream.ttlMs,
      lastPublishAt: stream.lastPublishAt,
      publications: stream.retained(),
      keys,
    });
  }
  return { format: 'switchboard-memory-broker', version: 1, final, takenAt: now, id: table.id, generations, streams };
}

/**
 * Load a checked snapshot into a table without streams: a final one keeps
 * its epochs, any other gets new ones. What expired or is idle by `now` is
 * left out.
 */
export function loadSnapshot(table: StreamTable, snap: MemoryBrokerSnapshot, now: number): void {
  if (snap.final) {
    table.id = snap.id;
    for (const [bucket, g] of snap.generations) table.generations[bucket] = g;
  }
  for (const s of snap.streams) {
    // Not final: the snapshot may be behind what clients saw; a new epoch makes them refetch.
    const epoch = snap.final ? s.epoch : table.quietEpoch(s.channel);
    const stream = new Stream(epoch);
    stream.offset = s.offset;
    stream.size = s.size;
    stream.ttlMs = s.ttlMs;
    stream.lastPublishAt = s.lastPublishAt;
    stream.pubs = snap.final ? s.publications.slice() : s.publications.map((p) => ({ ...p, epoch }));
    for (const [key, offset, expiresAt] of s.keys) if (expiresAt > now) table.remember(stream, key, offset, expiresAt);
    stream.evict(now);
    if (table.isIdle(s.channel, stream, now)) continue;
    table.byChannel.set(s.channel, stream);
  }
  // Beyond maxChannels (a smaller bound than the snapshot's): the least recently published go.
  table.trim();
  table.revision++;
}

/** `value` as a snapshot, or a TypeError naming the first field that is not what `snapshot()` writes. */
export function checkSnapshot(value: unknown): MemoryBrokerSnapshot {
  const fail = (path: string, expected: string): never => {
    throw new TypeError(`not a memory broker snapshot: ${path} must be ${expected}`);
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (!isObject(value)) return fail('the snapshot', 'an object');
  if (value['format'] !== 'switchboard-memory-broker') fail('format', '"switchboard-memory-broker"');
  if (value['version'] !== 1) fail('version', '1 (the only version this broker reads)');
  if (typeof value['final'] !== 'boolean') fail('final', 'a boolean');
  if (typeof value['id'] !== 'string' || !/^[0-9a-z]{1,32}$/.test(value['id'])) fail('id', 'base36 characters');
  if (!isTime(value['takenAt'])) fail('takenAt', 'a time in ms');
  const generations = value['generations'];
  if (!Array.isArray(generations)) return fail('generations', 'an array');
  generations.forEach((g: unknown, i) => {
    if (!Array.isArray(g) || g.length !== 2 || !isCount(g[0]) || g[0] >= EPOCH_BUCKETS || !isCount(g[1]) || g[1] > 0xffffffff) {
      fail(`generations[${i}]`, `[bucket < ${EPOCH_BUCKETS}, generation]`);
    }
  });
  const streams = value['streams'];
  if (!Array.isArray(streams)) return fail('streams', 'an array');
  const seen = new Set<string>();
  streams.forEach((s: unknown, i) => {
    const at = `streams[${i}]`;
    if (!isObject(s)) return fail(at, 'an object');
    const channel = s['channel'];
    if (typeof channel !== 'string' || !isValidChannel(channel)) fail(`${at}.channel`, 'a valid channel name');
    if (seen.has(channel as string)) fail(`${at}.channel`, 'unique');
    seen.add(channel as string);
    if (typeof s['epoch'] !== 'string' || s['epoch'] === '') fail(`${at}.epoch`, 'a non-empty string');
    for (const k of ['offset', 'size', 'ttlMs']) if (!isCount(s[k])) fail(`${at}.${k}`, 'an integer >= 0');
    if (!isTime(s['lastPublishAt'])) fail(`${at}.lastPublishAt`, 'a time in ms');
    const pubs = s['publications'];
    if (!Array.isArray(pubs)) return fail(`${at}.publications`, 'an array');
    const offset = s['offset'] as number;
    pubs.forEach((p: unknown, j) => {
      const pat = `${at}.publications[${j}]`;
      if (!isObject(p)) return fail(pat, 'an object');
      if (p['channel'] !== channel) fail(`${pat}.channel`, `${JSON.stringify(channel)}`);
      if (p['offset'] !== offset - pubs.length + 1 + j) fail(`${pat}.offset`, `${offset - pubs.length + 1 + j} (consecutive, ending at the stream's offset)`);
      if (p['epoch'] !== s['epoch']) fail(`${pat}.epoch`, "the stream's epoch");
      if (!isTime(p['time'])) fail(`${pat}.time`, 'a time in ms');
      if (!('data' in p)) fail(`${pat}.data`, 'present');
      const from = p['from'];
      if (from !== undefined && !(isObject(from) && typeof from['client'] === 'string' && typeof from['user'] === 'string')) {
        fail(`${pat}.from`, '{ client, user }');
      }
    });
    const keys = s['keys'];
    if (!Array.isArray(keys)) return fail(`${at}.keys`, 'an array');
    keys.forEach((k: unknown, j) => {
      if (!Array.isArray(k) || k.length !== 3 || typeof k[0] !== 'string' || !isCount(k[1]) || k[1] > offset || !isTime(k[2])) {
        fail(`${at}.keys[${j}]`, '[key, offset <= the stream offset, expiresAt]');
      }
    });
  });
  return value as unknown as MemoryBrokerSnapshot;
}
