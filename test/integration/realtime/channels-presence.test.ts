/**
 * Presence through the real server (docs/protocol.md, `presence` op and
 * `join`/`leave`/`count` pushes): full lists, batching per window, leaves of
 * vanished connections, counts mode, presence off.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep, startRealtime, until, WAIT, type Namespace, type RtClient } from './helpers.js';

const BATCH_MS = 100;
const NAMESPACES: Namespace[] = [
  { prefix: 'room', presence: 'full', presenceBatchMs: BATCH_MS },
  { prefix: 'big', presence: 'counts', presenceBatchMs: BATCH_MS },
  { prefix: 'plain' }, // presence off
];

/** A wait on the real clock while a test mocks setTimeout (the reference is taken before any mock). */
const realSetTimeout = globalThis.setTimeout;
const realSleep = (ms: number) => new Promise<void>((resolve) => realSetTimeout(resolve, ms));

const ids = (clients: Array<{ client: string }>) => clients.map((c) => c.client).sort();

describe('presence: full', () => {
  test('the presence op lists every subscribed client with user and info (from the token)', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const ann = await rt.connect('ann', { token: { info: { name: 'Ann', color: 'red' } } });
    const bob = await rt.connect('bob');
    const bob2 = await rt.connect('bob'); // a second connection of the same user
    const outsider = await rt.connect('eve');
    for (const c of [ann, bob, bob2]) await c.ok('sub', { channel: 'room/1' });
    await ann.ok('sub', { channel: 'room/2' });

    const r = await outsider.ok('presence', { channel: 'room/1' });
    assert.equal(r.channel, 'room/1');
    assert.deepEqual(r.clients, {
      [ann.clientId]: { client: ann.clientId, user: 'ann', info: { name: 'Ann', color: 'red' } },
      [bob.clientId]: { client: bob.clientId, user: 'bob' },
      [bob2.clientId]: { client: bob2.clientId, user: 'bob' },
    });
    assert.deepEqual(Object.keys((await outsider.ok('presence', { channel: 'room/2' })).clients), [ann.clientId]);
    assert.deepEqual((await outsider.ok('presence', { channel: 'room/empty' })).clients, {});

    await bob2.ok('unsub', { channel: 'room/1' });
    assert.deepEqual(Object.keys((await outsider.ok('presence', { channel: 'room/1' })).clients).sort(), [ann.clientId, bob.clientId].sort());
    await ann.close();
    await until(() => rt.server.hub.sessions.size === 3, WAIT, 'ann to be gone');
    const after = await outsider.ok('presence', { channel: 'room/1' });
    assert.deepEqual(Object.keys(after.clients), [bob.clientId]);
    assert.deepEqual((await outsider.ok('presence', { channel: 'room/2' })).clients, {});
  });

  test('joins within one batch window arrive as ONE join listing them all; only to presence: true subscribers', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const watcher = await rt.connect('watcher');
    const quiet = await rt.connect('quiet');
    await watcher.ok('sub', { channel: 'room/lobby', presence: true });
    await quiet.ok('sub', { channel: 'room/lobby' }); // no presence: true
    // The watcher's own join (and quiet's) come in the first window.
    const firstJoin = await watcher.waitFor((m) => m.op === 'join', WAIT, 'the first join');
    assert.deepEqual(ids(firstJoin.clients), [quiet.clientId, watcher.clientId].sort());
    await sleep(BATCH_MS + 30);
    const before = watcher.pushes('join').length;
    assert.equal(before, 1);

    const joiners = await Promise.all(['a', 'b', 'c'].map((u, i) => rt.connect(u, i === 0 ? { token: { info: 'hi' } } : {})));
    // The window on a mocked clock: however long the three subscribes take, it ends when the test says so.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let join: Record<string, any>;
    try {
      await Promise.all(joiners.map((c) => c.ok('sub', { channel: 'room/lobby' })));
      // Each join is in the batch before its `ok` leaves; the window opened with the first one.
      t.mock.timers.tick(BATCH_MS - 1);
      await realSleep(30);
      assert.equal(watcher.pushes('join').length, 1, 'no join before the window ends');
      t.mock.timers.tick(1);
      join = await watcher.waitFor((m) => m.op === 'join' && m !== firstJoin, WAIT, 'the batched join');
    } finally {
      t.mock.timers.reset();
    }
    assert.equal(join.channel, 'room/lobby');
    assert.deepEqual(ids(join.clients), joiners.map((c) => c.clientId).sort());
    const a = join.clients.find((c: { client: string }) => c.client === joiners[0]!.clientId);
    assert.deepEqual(a, { client: joiners[0]!.clientId, user: 'a', info: 'hi' });
    await sleep(BATCH_MS + 40);
    assert.equal(watcher.pushes('join').length, 2, 'one join message for the three');
    assert.equal(watcher.pushes('leave').length, 0);
    assert.equal(quiet.pushes('join').length + quiet.pushes('leave').length, 0, 'no presence pushes without presence: true');
    for (const j of joiners) assert.equal(j.pushes('join').length, 0);

    // Leaves batch the same way: one unsub, one clean close.
    await joiners[0]!.ok('unsub', { channel: 'room/lobby' });
    await joiners[1]!.close();
    const leave = await watcher.waitFor((m) => m.op === 'leave', WAIT, 'the batched leave');
    assert.deepEqual(ids(leave.clients), [joiners[0]!.clientId, joiners[1]!.clientId].sort());
    await sleep(BATCH_MS + 40);
    assert.equal(watcher.pushes('leave').length, 1);
  });

  test('a terminated client (no close frame) is removed from presence and a leave is sent', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const watcher = await rt.connect('watcher');
    await watcher.ok('sub', { channel: 'room/t', presence: true });
    const gone = await rt.connect('gone');
    await gone.ok('sub', { channel: 'room/t', presence: true });
    await watcher.waitFor((m) => m.op === 'join' && m.clients.some((c: { client: string }) => c.client === gone.clientId), WAIT, 'the join');
    assert.equal(Object.keys((await watcher.ok('presence', { channel: 'room/t' })).clients).length, 2);

    gone.ws.terminate(); // the socket is destroyed: no close frame
    const leave = await watcher.waitFor((m) => m.op === 'leave', WAIT, 'the leave');
    assert.deepEqual(leave.clients, [{ client: gone.clientId, user: 'gone' }]);
    const r = await watcher.ok('presence', { channel: 'room/t' });
    assert.deepEqual(Object.keys(r.clients), [watcher.clientId]);
    assert.equal(rt.server.hub.sessions.has(gone.clientId), false);

    // The last one leaving: no presence state remains.
    await watcher.close();
    await until(() => rt.presence.channelCount === 0, WAIT, 'presence state to be gone');
  });

  test('a join and a leave of the same client within one window cancel out', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const watcher = await rt.connect('watcher');
    await watcher.ok('sub', { channel: 'room/c', presence: true });
    await watcher.waitFor((m) => m.op === 'join', WAIT, 'own join');
    await sleep(BATCH_MS + 20);
    const blip = await rt.connect('blip');
    await blip.ok('sub', { channel: 'room/c' });
    await blip.ok('unsub', { channel: 'room/c' });
    const stay = await rt.connect('stay');
    await stay.ok('sub', { channel: 'room/c' });
    const join = await watcher.waitFor((m) => m.op === 'join' && m.clients[0].client !== watcher.clientId, WAIT, 'the next join');
    assert.deepEqual(ids(join.clients), [stay.clientId]);
    await sleep(BATCH_MS + 40);
    assert.equal(watcher.pushes('leave').length, 0, 'blip never showed');
  });
});

describe('presence: counts and off', () => {
  test("counts mode sends `count` with clients/users, never lists; the presence op answers counts", async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const watcher = await rt.connect('watcher');
    await watcher.ok('sub', { channel: 'big/hall', presence: true });
    const first = await watcher.waitFor((m) => m.op === 'count', WAIT, 'the first count');
    assert.deepEqual(first, { op: 'count', channel: 'big/hall', clients: 1, users: 1 });

    const others: RtClient[] = [];
    for (const u of ['u1', 'u2', 'u2', 'u3']) others.push(await rt.connect(u));
    await Promise.all(others.map((c) => c.ok('sub', { channel: 'big/hall' })));
    const counted = await watcher.waitFor((m) => m.op === 'count' && m.clients === 5, WAIT, 'a count of 5');
    assert.deepEqual(counted, { op: 'count', channel: 'big/hall', clients: 5, users: 4 });

    const r = await watcher.ok('presence', { channel: 'big/hall' });
    assert.equal(r.clients, 5);
    assert.equal(r.users, 4);

    others[3]!.terminate();
    await others[2]!.ok('unsub', { channel: 'big/hall' });
    await watcher.waitFor((m) => m.op === 'count' && m.clients === 3, WAIT, 'a count of 3');
    assert.equal(watcher.pushes('join').length + watcher.pushes('leave').length, 0, 'no lists in counts mode');
    for (const c of others) assert.equal(c.pushes('count').length, 0, 'only presence: true subscribers get counts');
    await sleep(BATCH_MS + 40);
    // left: watcher, u1 and the first u2 connection
    assert.deepEqual(watcher.pushes('count').at(-1), { op: 'count', channel: 'big/hall', clients: 3, users: 3 });
  });

  test('presence off: the presence op → 400; presence: true subscriptions work and get no pushes', async (t) => {
    const rt = await startRealtime(t, NAMESPACES);
    const a = await rt.connect('a');
    const b = await rt.connect('b');
    await a.ok('sub', { channel: 'plain/x', presence: true });
    await b.ok('sub', { channel: 'plain/x', presence: true });
    const r = await a.fails('presence', { channel: 'plain/x' }, 400);
    assert.match(r.message, /presence is off/);
    await b.close();
    await sleep(BATCH_MS);
    assert.equal(a.pushes('join').length + a.pushes('leave').length + a.pushes('count').length, 0);
    assert.equal(rt.presence.channelCount, 0, 'nothing stored for a presence-off namespace');
  });
});
