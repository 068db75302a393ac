/**
 * MemoryBroker snapshots: what a restored broker keeps (a final snapshot:
 * everything, epochs included, so resuming clients lose nothing; any other:
 * the publications under new epochs, so resuming clients are told), what it
 * refuses, and the snapshot file that carries them across a restart.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, encode } from '@msgpack/msgpack';
import { MemoryBroker, type MemoryBrokerSnapshot } from '../../../src/brokers/memory/memory-broker.js';
import { readSnapshotFile, SnapshotFile, writeSnapshotFile } from '../../../src/brokers/memory/snapshot-file.js';
import type { Publication } from '../../../src/brokers/broker.js';

const H = { size: 10, ttlMs: 0 };
const T0 = 1_700_000_000_000;

function broker(clock = { now: T0 }): MemoryBroker {
  return new MemoryBroker({ now: () => clock.now, sweepIntervalMs: 0 });
}

/** Through the file encoding, as a restart sees it. */
function throughFile(snapshot: MemoryBrokerSnapshot): unknown {
  return decode(encode(snapshot));
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'switchboard-snapshot-'));
}

describe('MemoryBroker snapshot and restore', () => {
  it('a final snapshot keeps epochs, offsets, history and idempotency keys: a client resumes with recovered:true', async () => {
    const a = broker();
    const r1 = await a.publish('chat/a', 'one', { history: H });
    await a.publish('chat/a', { two: 2 }, { history: H, idempotencyKey: 'k2', from: { client: 'c1', user: 'u1' } });
    await a.publish('chat/b', new Uint8Array([0, 1, 255]), { history: H });
    const snap = a.snapshot({ final: true });
    await a.close();

    const b = broker();
    b.restore(throughFile(snap));
    assert.equal(b.id, a.id);
    const resumed = await b.history('chat/a', { since: { epoch: r1.epoch, offset: 1 } });
    assert.equal(resumed.recovered, true);
    assert.deepEqual(
      resumed.publications.map((p) => [p.offset, p.epoch, p.data, p.from]),
      [[2, r1.epoch, { two: 2 }, { client: 'c1', user: 'u1' }]],
    );
    // Binary data stays bytes.
    const bin = (await b.history('chat/b')).publications[0]!;
    assert.ok(bin.data instanceof Uint8Array);
    assert.deepEqual([...(bin.data as Uint8Array)], [0, 1, 255]);
    // The stream goes on where it was; the key still deduplicates.
    const r3 = await b.publish('chat/a', 'three', { history: H });
    assert.deepEqual([r3.epoch, r3.offset], [r1.epoch, 3]);
    const again = await b.publish('chat/a', 'two again', { history: H, idempotencyKey: 'k2' });
    assert.deepEqual(again, { epoch: r1.epoch, offset: 2, duplicate: true });
    await b.close();
  });

  it('a final snapshot keeps the quiet epoch of channels never published (same broker id and generations)', async () => {
    const a = broker();
    const quiet = (await a.history('chat/quiet')).position;
    await a.publish('chat/dropped', 1, { history: H });
    await a.removeHistory('chat/dropped'); // bumps a generation
    const dropped = (await a.history('chat/dropped')).position;
    const snap = a.snapshot({ final: true });
    const b = broker();
    b.restore(throughFile(snap));
    assert.deepEqual((await b.history('chat/quiet', { since: quiet })).recovered, true);
    assert.deepEqual((await b.history('chat/dropped')).position, dropped);
  });

  it('a snapshot that is not final keeps the publications under new epochs: resuming gets recovered:false, history is there', async () => {
    const a = broker();
    const r = await a.publish('chat/a', 'one', { history: H });
    await a.publish('chat/a', 'two', { history: H, idempotencyKey: 'k' });
    const snap = a.snapshot();
    assert.equal(snap.final, false);

    const b = broker();
    b.restore(throughFile(snap));
    assert.notEqual(b.id, a.id);
    const resumed = await b.history('chat/a', { since: { epoch: r.epoch, offset: 1 } });
    assert.equal(resumed.recovered, false);
    assert.notEqual(resumed.position.epoch, r.epoch);
    assert.equal(resumed.position.offset, 2);
    const all = await b.history('chat/a');
    assert.deepEqual(
      all.publications.map((p) => [p.offset, p.data, p.epoch]),
      [
        [1, 'one', resumed.position.epoch],
        [2, 'two', resumed.position.epoch],
      ],
    );
    // In the new epoch, resuming and the key work as usual.
    assert.equal((await b.history('chat/a', { since: { epoch: resumed.position.epoch, offset: 1 } })).recovered, true);
    assert.equal((await b.publish('chat/a', 'x', { history: H, idempotencyKey: 'k' })).duplicate, true);
  });

  it('leaves out what expired, before and after the restart', async () => {
    const clock = { now: T0 };
    const a = broker(clock);
    await a.publish('chat/old', 'old', { history: { size: 10, ttlMs: 1000 } });
    clock.now += 600;
    await a.publish('chat/old', 'newer', { history: { size: 10, ttlMs: 1000 } });
    await a.publish('chat/k', 'k', { idempotencyKey: 'short', idempotencyTtlMs: 500 });
    clock.now += 600; // 'old' and the key expired
    const snap = a.snapshot({ final: true });
    assert.deepEqual(snap.streams.find((s) => s.channel === 'chat/old')!.publications.map((p) => p.data), ['newer']);
    assert.deepEqual(snap.streams.find((s) => s.channel === 'chat/k')?.keys ?? [], []);

    clock.now += 500; // 'newer' expires while the process is down
    const b = broker(clock);
    b.restore(throughFile(snap));
    const h = await b.history('chat/old');
    assert.deepEqual(h.publications, []);
    assert.equal(h.position.offset, 2, 'the position outlives the publications (historyMetaTtlMs)');
    assert.equal((await b.publish('chat/k', 'k', { idempotencyKey: 'short' })).duplicate, false);
  });

  it('refuses to restore into a broker that already has streams, and leaves it as it was', async () => {
    const a = broker();
    await a.publish('chat/a', 1, { history: H });
    const snap = a.snapshot({ final: true });
    const b = broker();
    await b.publish('chat/b', 1, { history: H });
    assert.throws(() => b.restore(snap), /already has channel streams/);
    assert.equal((await b.history('chat/a')).publications.length, 0);
    assert.equal((await b.history('chat/b')).publications.length, 1);
  });

  it('rejects a malformed snapshot with a TypeError naming the field, changing nothing', async () => {
    const a = broker();
    await a.publish('chat/a', 1, { history: H });
    await a.publish('chat/a', 2, { history: H, idempotencyKey: 'k' });
    const good = a.snapshot({ final: true });
    const cases: Array<[string, (s: any) => void, RegExp]> = [
      ['not an object', (s) => s, /the snapshot must be an object/],
      ['another format', (s) => (s.format = 'x'), /format must be/],
      ['a future version', (s) => (s.version = 2), /version must be 1/],
      ['an id with odd characters', (s) => (s.id = 'A B'), /id must be/],
      ['a bucket out of range', (s) => (s.generations = [[5000, 1]]), /generations\[0\]/],
      ['an invalid channel', (s) => (s.streams[0].channel = 'chat/#'), /streams\[0\]\.channel must be a valid channel/],
      ['a channel twice', (s) => s.streams.push(structuredClone(s.streams[0])), /streams\[1\]\.channel must be unique/],
      ['a negative offset', (s) => (s.streams[0].offset = -1), /streams\[0\]\.offset/],
      ['a gap in the offsets', (s) => (s.streams[0].publications[0].offset = 7), /publications\[0\]\.offset must be 1/],
      ['a publication of another epoch', (s) => (s.streams[0].publications[1].epoch = 'zz'), /publications\[1\]\.epoch/],
      ['a publication of another channel', (s) => (s.streams[0].publications[1].channel = 'chat/b'), /publications\[1\]\.channel/],
      ['a publication without data', (s) => delete s.streams[0].publications[1].data, /publications\[1\]\.data must be present/],
      ['a key beyond the offset', (s) => (s.streams[0].keys = [['k', 9, T0 + 1]]), /keys\[0\]/],
    ];
    for (const [what, spoil, message] of cases) {
      const bad = structuredClone(good) as any;
      const value = what === 'not an object' ? 'text' : bad;
      spoil(bad);
      const b = broker();
      assert.throws(() => b.restore(value), (err: Error) => err instanceof TypeError && message.test(err.message), what);
      assert.equal(b.stats().channels, 0, what);
      assert.notEqual(b.id, a.id, what);
    }
  });

  it('revision moves with every stored change and not otherwise', async () => {
    const a = broker();
    const r0 = a.revision;
    await a.subscribe('chat/a');
    await a.publish('chat/a', 1, { volatile: true });
    assert.equal(a.revision, r0, 'a subscription and a volatile publication store nothing');
    await a.publish('chat/a', 1, { history: H });
    const r1 = a.revision;
    assert.ok(r1 > r0);
    await a.removeHistory('chat/a');
    assert.ok(a.revision > r1);
    const peer = a.peer();
    const r2 = a.revision;
    await peer.publish('chat/b', 1, { history: H });
    assert.ok(a.revision > r2, 'peers share the backend and its revision');
  });
});

describe('SnapshotFile', () => {
  it('first start: no file, an empty broker, and a file that is not final; close() makes it final; the next start resumes', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'history.sb');
      const a = broker();
      const fa = new SnapshotFile(a, { path, intervalMs: 0 });
      assert.deepEqual(await fa.open(), { found: false, final: false, channels: 0, publications: 0 });
      assert.equal(((await readSnapshotFile(path)) as MemoryBrokerSnapshot).final, false);
      const r = await a.publish('chat/a', 'one', { history: H });
      await a.publish('chat/a', 'two', { history: H });
      await fa.close();
      assert.equal(((await readSnapshotFile(path)) as MemoryBrokerSnapshot).final, true);
      assert.equal(existsSync(`${path}.tmp`), false);

      const b = broker();
      const fb = new SnapshotFile(b, { path, intervalMs: 0 });
      assert.deepEqual(await fb.open(), { found: true, final: true, channels: 1, publications: 2 });
      // Running again: a crash now must not leave a file that claims to be final.
      assert.equal(((await readSnapshotFile(path)) as MemoryBrokerSnapshot).final, false);
      const resumed = await b.history('chat/a', { since: { epoch: r.epoch, offset: 1 } });
      assert.equal(resumed.recovered, true);
      assert.deepEqual(resumed.publications.map((p: Publication) => p.data), ['two']);
      await fb.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('saves every intervalMs while the broker changes; a crash then restores that with new epochs', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'history.sb');
      const a = new MemoryBroker({ sweepIntervalMs: 0 });
      const errors: Error[] = [];
      const fa = new SnapshotFile(a, { path, intervalMs: 20, onError: (e) => errors.push(e) });
      await fa.open();
      const r = await a.publish('chat/a', 'one', { history: H });
      const deadline = Date.now() + 5000;
      let saved: MemoryBrokerSnapshot | undefined;
      while (Date.now() < deadline) {
        saved = (await readSnapshotFile(path)) as MemoryBrokerSnapshot;
        if (saved.streams.length === 1) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(saved?.streams.length, 1, 'a periodic save within 5 s');
      assert.equal(saved!.final, false);
      // The "crash": this process never calls fa.close(); a new broker starts from the file.
      const crashed = readFileSync(path);
      await fa.close(); // (stops the timer; the crash's file is put back below)
      writeFileSync(path, crashed);
      const b = broker();
      const load = await new SnapshotFile(b, { path, intervalMs: 0 }).open();
      assert.deepEqual(load, { found: true, final: false, channels: 1, publications: 1 });
      const resumed = await b.history('chat/a', { since: { epoch: r.epoch, offset: 1 } });
      assert.equal(resumed.recovered, false);
      assert.deepEqual((await b.history('chat/a')).publications.map((p) => p.data), ['one']);
      assert.deepEqual(errors, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a snapshot of several megabytes goes through the file in chunks and comes back equal; a file cut short is refused', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'big.sb');
      const a = broker();
      const text = 'a chat message of moderate length, with some words in it '.repeat(4);
      for (let c = 0; c < 300; c++) for (let i = 0; i < 50; i++) await a.publish(`chat/room${c}`, { text, i }, { history: { size: 50, ttlMs: 0 } });
      const snap = a.snapshot({ final: true });
      await writeSnapshotFile(path, snap);
      const size = readFileSync(path).byteLength;
      assert.ok(size > 3 * 1024 * 1024, `${size} bytes: more than one chunk`);
      assert.deepEqual(await readSnapshotFile(path), throughFile(snap));

      writeFileSync(path, readFileSync(path).subarray(0, size - 5000));
      await assert.rejects(readSnapshotFile(path), (err: Error) => err.message.startsWith(`${path}: not a snapshot file`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every refusal names the file, says why in words (not the decoder\'s), and ends with the hint; an empty file is refused, not taken for empty history', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'history.sb');
      const a = broker();
      for (let i = 0; i < 3; i++) await a.publish(`chat/r${i}`, { text: 'x'.repeat(200), i }, { history: H });
      await writeSnapshotFile(path, a.snapshot({ final: true }));
      const whole = readFileSync(path);
      const { streams, ...rest } = a.snapshot({ final: true });
      const header = encode({ ...rest, streamCount: streams.length }).byteLength;
      assert.ok(encode(streams[0]).byteLength > 100);
      const cases: Array<[string, Uint8Array, RegExp]> = [
        ['empty (touch)', new Uint8Array(0), /the file is empty/],
        ['cut inside the header', whole.subarray(0, 5), /in the header, the data ends in the middle of a value: the file is cut short/],
        ['cut inside a stream', whole.subarray(0, header + 40), /the data ends in the middle of a value: the file is cut short/],
        ['a byte MessagePack never uses', Buffer.from([0xc1, 0xc1, 0xc1]), /corrupt MessagePack/],
        ['a number, not a header', Buffer.from([0x2a]), /does not start with a snapshot header/],
      ];
      for (const [what, bytes, why] of cases) {
        writeFileSync(path, bytes);
        const check = (err: Error) => {
          assert.ok(err.message.startsWith(`${path}: not a snapshot file (`), `${what}: ${err.message}`);
          assert.match(err.message, why, what);
          assert.ok(err.message.endsWith('; move the file away to start with empty history'), `${what}: ${err.message}`);
          assert.doesNotMatch(err.message, /Offset is outside|DataView/, what);
          return true;
        };
        await assert.rejects(readSnapshotFile(path), check);
        const f = new SnapshotFile(broker(), { path, intervalMs: 0 });
        await assert.rejects(f.open(), check);
        await f.close();
        assert.deepEqual(readFileSync(path), Buffer.from(bytes), `${what}: left as it was`);
      }
      // Not readable at all (a directory where the file should be): the same hint.
      const asDir = join(dir, 'a-directory.sb');
      mkdirSync(asDir);
      await assert.rejects(readSnapshotFile(asDir), (err: Error) =>
        err.message.startsWith(`${asDir}: cannot read the snapshot file (EISDIR)`) && err.message.endsWith('; move the file away to start with empty history'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unreadable file stops the start with its path named, and is left as it was', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'history.sb');
      writeFileSync(path, Buffer.from([0xc1, 0xc1, 0xc1])); // 0xc1: never used in MessagePack
      const a = broker();
      const fa = new SnapshotFile(a, { path, intervalMs: 0 });
      await assert.rejects(fa.open(), (err: Error) => err.message.startsWith(`${path}: not a snapshot file`));
      await fa.close();
      assert.deepEqual([...readFileSync(path)], [0xc1, 0xc1, 0xc1], 'close() after a failed open() must not overwrite the file');

      await writeSnapshotFile(path, { ...a.snapshot(), version: 9 } as unknown as MemoryBrokerSnapshot);
      await assert.rejects(new SnapshotFile(broker(), { path, intervalMs: 0 }).open(), (err: Error) =>
        err.message.includes(path) && /version must be 1/.test(err.message) && /move the file away/.test(err.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
