/**
 * History across a restart of one server with the in-memory broker and
 * `broker.snapshotFile`: no shared broker, a new process-worth of state (a
 * new MemoryBroker), only the file in between. The client SDK is the peer.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connectFollowing, createClient, createServer, nextEvent, signToken, sleep, snapshotOffset, startServer, until, waitForSnapshot } from '../client/helpers.js';

const dirs: string[] = [];
// Once every test's servers have closed: a server closing saves its final snapshot in its directory,
// and a failed final save is the close's failure (a test's own after-hooks run in the order they were added).
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function snapshotDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-restart-'));
  dirs.push(dir);
  return dir;
}

describe('in-memory history kept in broker.snapshotFile across a restart', () => {
  test('graceful restart: the client resumes with recovered:true and gets what was published while it was away, once each, in order', async (t) => {
    const config = { broker: { snapshotFile: join(snapshotDir(), 'history.sb'), snapshotIntervalMs: 0 } };
    const s1 = await startServer(t, { config });
    const c = createClient(t, s1.url, { token: await signToken('alice') });
    const { got, events, sub } = await connectFollowing(c, 'chat/restart');
    for (let i = 1; i <= 3; i++) await s1.server.publish('chat/restart', i);
    const keyed = await s1.server.publish('chat/restart', 4, { key: 'publish-4' });
    await until(() => got.length === 4, 3000, 'the first four');

    const disconnected = nextEvent(c, 'disconnected');
    await s1.close(); // graceful: the final snapshot is written after the clients are gone
    assert.equal((await disconnected).code, 1001);

    // A new server, new broker, same file and port; publications before the client is back.
    const s2 = createServer(t, { port: s1.port, config });
    await s2.server.start();
    const retried = await s2.server.publish('chat/restart', 4, { key: 'publish-4' });
    assert.deepEqual([retried.offset, retried.epoch], [keyed.offset, keyed.epoch], 'the idempotency key survived: a retry publishes nothing');
    for (let i = 5; i <= 6; i++) await s2.server.publish('chat/restart', i);
    const reconnected = nextEvent(c, 'connected', 5000);
    await s2.listen();
    await reconnected;
    await until(() => got.length >= 6, 3000, 'the two missed ones');
    await s2.server.publish('chat/restart', 7);
    await until(() => got.length >= 7, 3000, 'a live one after the resume');
    await sleep(50);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(
      events.map((e) => [e.resumed, e.recovered]),
      [
        [false, true],
        [true, true],
      ],
    );
    assert.equal(sub.position?.offset, 7);
    assert.equal(sub.position?.epoch, keyed.epoch, 'the same epoch across the restart');
  });

  test('after a crash (the file is a periodic snapshot): resuming clients are told recovered:false; the history is there for everyone', async (t) => {
    const path = join(snapshotDir(), 'history.sb');
    const config = { broker: { snapshotFile: path, snapshotIntervalMs: 20 } };
    const s1 = await startServer(t, { config });
    for (let i = 1; i <= 3; i++) await s1.server.publish('chat/crash', i);
    const c = createClient(t, s1.url, { token: await signToken('bob') });
    const { got, events, sub } = await connectFollowing(c, 'chat/crash');
    const position = sub.position!;
    assert.equal(position.offset, 3);

    // What a crash leaves: the last periodic save. (The process goes on to stop gracefully; its final file is replaced by the crash's.)
    await waitForSnapshot(path, (s) => !s.final && snapshotOffset(s, 'chat/crash') === 3, 3000, 'a periodic save with the three');
    const crashed = `${path}.crashed`;
    copyFileSync(path, crashed);
    const disconnected = nextEvent(c, 'disconnected');
    await s1.close();
    await disconnected;
    copyFileSync(crashed, path);

    const s2 = createServer(t, { port: s1.port, config });
    const reconnected = nextEvent(c, 'connected', 5000);
    const notRecovered = nextEvent(sub, 'subscribed', 5000);
    await s2.listen();
    await reconnected;
    const e = await notRecovered;
    assert.deepEqual([e.resumed, e.recovered], [true, false]);
    assert.notEqual(sub.position?.epoch, position.epoch, 'a new epoch: offsets of the old one may have been handed out after the save');
    const history = await c.history('chat/crash');
    assert.deepEqual(
      history.publications.map((p) => p.data),
      [1, 2, 3],
    );
  });
});
