/**
 * The arena's client side (examples/arena/lib/player.js) over the SDK
 * (MessagePack) against the arena loop on a real realtime server: a player
 * holds one subscription, to its block's channel; when it walks into
 * another block, the areas both blocks hold go on without a gap or a new
 * keyframe, the new area gets its state, the area left behind is forgotten,
 * and every area it holds ends exactly as the server's encoder has it.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Client, type ClientOptions } from '../../../src/client/index.js';
import { WebSocket } from '../../../src/index.js';
import { ArenaPlayer, INPUT_RESEND_MS } from '../../../examples/arena/lib/player.js';
import { Key } from '../../../examples/arena/lib/sim.js';
import { ARENA_NAMESPACE, startArena } from '../../../examples/arena/server.js';
import { signToken, startRealtime, until } from '../realtime/helpers.js';

test('a player walking into the next block keeps the shared areas going and gets the new one', async (t) => {
  const rt = await startRealtime(t, [{ ...ARENA_NAMESPACE }], { limits: { slowConsumer: 'drop-volatile' } });
  // Three areas in a row: blocks (0,0) = areas 0 and 1, (1,0) = areas 1 and 2. A keyframe every
  // 10 s: within the test, areas are only ever made whole by the keyframe rpc.
  const arena = startArena(rt.server, { width: 1800, height: 600, areaSize: 600, tickHz: 30, keyframeEvery: 300, seed: 3 });
  t.after(() => arena.stop());
  // Someone in each area, walking up (to the wall).
  for (const x of [300, 900, 1500]) {
    const p = arena.world.addPlayer(`npc${x}`);
    p.x = x;
    arena.world.setInput(p.id, 1, 1);
  }
  const client = sdkClient(t, rt.url, 'walker');
  const errors: unknown[] = [];
  const player = new ArenaPlayer(client, { name: 'walker', onError: (err) => errors.push(err) });
  await client.connect();
  await player.join();
  // Joined at the centre (900, 300): the nearest block is (1,0), or (0,0); go to the left one.
  player.follow(100, 300);
  assert.deepEqual(player.block, { ax: 0, ay: 0 });
  assert.deepEqual([...player.areas.keys()].sort(), [0, 1]);
  await until(() => [...player.areas.values()].every((e) => e.state.seq > 0 && !e.state.stale && e.state.tick > 0), 20_000, 'areas 0 and 1 to have state');
  const shared = player.areas.get(1)!;
  const asksBefore = player.counters.keyframeAsks;

  player.follow(1700, 300);
  assert.deepEqual(player.block, { ax: 1, ay: 0 });
  assert.deepEqual([...player.areas.keys()].sort(), [1, 2]);
  assert.equal(player.areas.get(1), shared, 'the shared area keeps its state');
  const seqAtSwitch = shared.state.seq;
  await until(() => !player.areas.get(2)!.state.stale && player.areas.get(2)!.state.seq > 0, 20_000, 'area 2 to have state');
  await until(() => shared.state.seq > seqAtSwitch + 30, 20_000, 'area 1 to go on for a second');
  assert.equal(shared.state.stale, false);
  assert.equal(shared.state.missed, 0, 'no message of the shared area lost across the switch');
  assert.equal(player.counters.keyframeAsks - asksBefore, 1, 'one keyframe asked: for area 2 only');
  assert.equal(player.counters.gaps, 0);
  assert.equal(player.counters.invalid, 0);
  assert.deepEqual([...client.subscriptions.keys()], ['arena/1-0'], 'the block left is unsubscribed');

  // Back and forth faster than the server confirms: one subscription at the end, and no loss.
  player.follow(100, 300);
  player.follow(1700, 300);
  player.follow(100, 300);
  await until(() => client.subscriptions.size === 1 && [...client.subscriptions.values()][0]!.state === 'subscribed', 20_000, 'one block subscription');
  assert.equal([...client.subscriptions.keys()][0], 'arena/0-0');
  const seqBack = shared.state.seq;
  await until(() => shared.state.seq > seqBack + 15, 20_000, 'area 1 to go on');
  assert.equal(shared.state.missed, 0);
  player.follow(1700, 300);

  // What the player holds is what the server's encoders hold (compared once the loop stops).
  arena.stop();
  const stats = arena.stats();
  await until(() => [1, 2].every((a) => player.areas.get(a)!.state.tick === arena.world.tick), 20_000, `both areas at the last tick ${arena.world.tick} (${stats.published} published)`);
  for (const a of [1, 2]) {
    const keyframe = playersOf(await client.rpc('arena.keyframe', { area: a }));
    const held = [...player.areas.get(a)!.state.players.values()].map((p) => [p.id, p.qx, p.qy]).sort((x, y) => x[0]! - y[0]!);
    assert.deepEqual(held, keyframe, `area ${a}`);
  }
  assert.deepEqual(errors, []);
});

test('keys whose send was dropped are sent again once the state shows they did not arrive', async (t) => {
  const rt = await startRealtime(t, [{ ...ARENA_NAMESPACE }], { limits: { slowConsumer: 'drop-volatile' } });
  const arena = startArena(rt.server, { width: 1200, height: 600, areaSize: 600, tickHz: 30, keyframeEvery: 30, seed: 5 });
  t.after(() => arena.stop());
  const client = sdkClient(t, rt.url, 'lossy');
  // The first input is lost on the way (what a send past the rate budget, or in a reconnect, is).
  const sent: unknown[] = [];
  const realSend = client.send.bind(client);
  client.send = (method: string, data?: unknown) => {
    sent.push(data);
    return sent.length === 1 ? false : realSend(method, data);
  };
  const player = new ArenaPlayer(client, { name: 'lossy' });
  await client.connect();
  await player.join();
  const me = () => arena.world.players.get(player.id)!;
  const x0 = me().x;
  await until(() => player.self() !== null, 20_000, 'our player in the state');
  const s = player.setKeys(Key.Right);
  assert.equal(s, 1);
  await until(() => me().x > x0, 20_000, 'the player to move right');
  assert.ok(sent.length >= 2, `sent again: ${JSON.stringify(sent)}`);
  assert.deepEqual(sent[1], { s: 2, k: Key.Right }, 'the same keys, numbered anew');
  await until(() => (player.self()?.p.ack ?? 0) >= 2, 20_000, 'the state to acknowledge the input');
  const count = sent.length;
  await new Promise((r) => setTimeout(r, 3 * INPUT_RESEND_MS));
  assert.equal(sent.length, count, 'nothing more once acknowledged');
});

/** An SDK client over MessagePack, as the page's and the bots' players use, closed after the test. */
function sdkClient(t: TestContext, url: string, user: string): Client {
  const client = new Client(url, {
    WebSocket: WebSocket as unknown as NonNullable<ClientOptions['WebSocket']>,
    transports: ['websocket'],
    network: null,
    protocol: 'msgpack',
    getToken: () => signToken(user),
  });
  t.after(() => client.close());
  return client;
}

/** The [id, qx, qy] of every player in a keyframe (what the `arena.keyframe` rpc answers). */
function playersOf(data: unknown): number[][] {
  const kf = data as [number, number, number, unknown[], number[]];
  const out: number[][] = [];
  for (let i = 0; i < kf[3].length; i += 7) out.push([kf[3][i] as number, kf[3][i + 1] as number, kf[3][i + 2] as number]);
  return out.sort((x, y) => x[0]! - y[0]!);
}
