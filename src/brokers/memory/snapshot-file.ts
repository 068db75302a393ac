/**
 * Keeping a MemoryBroker's history across restarts of one process: its
 * snapshot (see memory-broker.ts) in a file, MessagePack-encoded (binary
 * publication data survives as bytes).
 *
 * The lifecycle that makes a restart lossless:
 * 1. `open()`: read the file (a missing file is an empty start), restore it,
 *    and at once write it back as *not final*. A crash from now on leaves a
 *    non-final file, whose epochs the next start replaces: a snapshot older
 *    than the last publications never reuses their offsets.
 * 2. Every `intervalMs`, when the broker changed, a non-final snapshot: after
 *    a crash the history of up to `intervalMs` is lost, and resuming clients
 *    are told (`recovered: false`).
 * 3. `close()`, once nothing publishes any more (after the server drained its
 *    clients): a final snapshot. The next start keeps its epochs, so clients
 *    resume with `recovered: true` and miss nothing.
 *
 * Writes go to `<path>.tmp`, are flushed to disk, then renamed over `path`:
 * the file is always a whole snapshot, old or new.
 *
 * Format: MessagePack documents one after the other: a header (the snapshot
 * without its streams, plus `streamCount`), then one document per stream.
 * So a periodic save encodes a megabyte at a time and lets the event loop run
 * in between (the snapshot itself is taken at once: each stream is
 * consistent), instead of blocking for the whole history (about 200 ms for
 * 50 000 messages, 14 MB).
 */
import { open as openFile, readFile, rename, unlink } from 'node:fs/promises';
import { decodeMulti } from '@msgpack/msgpack';
import { packMsgpack } from '../../wire/msgpack.js';
import type { MemoryBroker } from './memory-broker.js';
import type { MemoryBrokerSnapshot } from './snapshot.js';

export interface SnapshotFileOptions {
  /** The file. Its directory must exist. */
  path: string;
  /** Save a non-final snapshot this often when the broker changed, in ms. 0: only at `close()`. */
  intervalMs: number;
  /** Told about failed periodic saves (the next interval tries again). */
  onError?: (err: Error) => void;
}

/** What `open()` found. */
export interface SnapshotLoad {
  /** False when there was no file. */
  found: boolean;
  /** The file's snapshot was final: epochs kept, clients resume with `recovered: true`. */
  final: boolean;
  channels: number;
  publications: number;
}

/** Bytes encoded between two writes (each write lets the event loop run). */
const CHUNK_BYTES = 256 * 1024;

/** How every refusal to read a snapshot file ends (docs/configuration.md promises it). */
export const SNAPSHOT_FILE_HINT = 'move the file away to start with empty history';

/**
 * The snapshot in `path`, or undefined when there is no such file. Throws on
 * anything unreadable, naming the file and ending with {@link SNAPSHOT_FILE_HINT}.
 * An empty file is refused too: `writeSnapshotFile` never leaves one, so it
 * is a write cut short (or a `touch`), not an empty history.
 */
export async function readSnapshotFile(path: string): Promise<unknown> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${path}: cannot read the snapshot file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); ${SNAPSHOT_FILE_HINT}`);
  }
  const refuse = (why: string): Error => new Error(`${path}: not a snapshot file (${why}); ${SNAPSHOT_FILE_HINT}`);
  if (bytes.byteLength === 0) throw refuse('the file is empty: a write cut short?');
  let header: Record<string, unknown> | undefined;
  const streams: unknown[] = [];
  try {
    const documents = decodeMulti(bytes);
    const first = documents.next();
    if (first.done || typeof first.value !== 'object' || first.value === null || Array.isArray(first.value)) {
      throw refuse('it does not start with a snapshot header');
    }
    header = first.value as Record<string, unknown>;
    for (const stream of documents) streams.push(stream);
  } catch (err) {
    if ((err as Error).message.endsWith(SNAPSHOT_FILE_HINT)) throw err;
    // The decoder's own words ("Offset is outside the bounds of the DataView", "Unrecognized type byte") say little.
    const where = err instanceof RangeError ? 'the data ends in the middle of a value: the file is cut short' : `corrupt MessagePack: ${(err as Error).message}`;
    throw refuse(`${header === undefined ? 'in the header' : `after ${streams.length} stream${streams.length === 1 ? '' : 's'}`}, ${where}`);
  }
  const { streamCount, ...snapshot } = header;
  if (streams.length !== streamCount) throw refuse(`${streams.length} streams of ${String(streamCount)}: the file is cut short`);
  return { ...snapshot, streams };
}

/** Write `snapshot` to `path` atomically (temporary file, fsync, rename), a chunk at a time. */
export async function writeSnapshotFile(path: string, snapshot: MemoryBrokerSnapshot): Promise<void> {
  const { streams, ...header } = snapshot;
  const tmp = `${path}.tmp`;
  const file = await openFile(tmp, 'w', 0o600);
  try {
    let chunk: Uint8Array[] = [packMsgpack({ ...header, streamCount: streams.length })];
    let size = chunk[0]!.byteLength;
    for (const stream of streams) {
      const bytes = packMsgpack(stream);
      chunk.push(bytes);
      size += bytes.byteLength;
      if (size >= CHUNK_BYTES) {
        await file.write(Buffer.concat(chunk));
        chunk = [];
        size = 0;
      }
    }
    if (chunk.length > 0) await file.write(Buffer.concat(chunk));
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}

/** A broker's snapshot file: restored by `open()`, saved periodically and by `close()`. */
export class SnapshotFile {
  readonly #broker: MemoryBroker;
  readonly #options: SnapshotFileOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  /** The broker revision last saved. */
  #saved = -1;
  /** A save is running: periodic saves never overlap it. */
  #busy = false;
  /** The last save, settled either way: `close()` waits for it. */
  #writing: Promise<void> = Promise.resolve();
  #closed = false;
  /** Restored (or found no file): only then may a save replace the file. */
  #opened = false;

  constructor(broker: MemoryBroker, options: SnapshotFileOptions) {
    this.#broker = broker;
    this.#options = options;
  }

  /** Restore the file into the broker (before anything is published) and start the periodic saves. */
  async open(): Promise<SnapshotLoad> {
    const { path } = this.#options;
    const snapshot = await readSnapshotFile(path);
    const load: SnapshotLoad = { found: snapshot !== undefined, final: false, channels: 0, publications: 0 };
    if (snapshot !== undefined) {
      try {
        this.#broker.restore(snapshot);
      } catch (err) {
        throw new Error(`${path}: ${(err as Error).message}; ${SNAPSHOT_FILE_HINT}`);
      }
      const s = snapshot as MemoryBrokerSnapshot;
      load.final = s.final;
      load.channels = s.streams.length;
      for (const stream of s.streams) load.publications += stream.publications.length;
    }
    this.#opened = true;
    // From now on the file must not claim to be final (see the module comment).
    await this.#save(false);
    if (this.#options.intervalMs > 0) {
      this.#timer = setInterval(() => {
        if (this.#busy || this.#broker.revision === this.#saved) return;
        this.#save(false).catch((err: Error) => this.#options.onError?.(err));
      }, this.#options.intervalMs);
      this.#timer.unref();
    }
    return load;
  }

  /**
   * Stop the periodic saves and save a final snapshot. Call it when nothing
   * publishes on the broker any more. Without a successful `open()` it saves
   * nothing: the file holds history this broker never loaded.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#opened) return;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await this.#writing;
    await this.#save(true);
  }

  #save(final: boolean): Promise<void> {
    const revision = this.#broker.revision;
    this.#busy = true;
    // The snapshot is taken now (cheap: it holds the retained arrays); what is published while it is written is not in it.
    const writing = writeSnapshotFile(this.#options.path, this.#broker.snapshot({ final }))
      .then(() => {
        this.#saved = revision;
      })
      .finally(() => {
        this.#busy = false;
      });
    this.#writing = writing.catch(() => {});
    return writing;
  }
}
