/**
 * The arena game (examples/arena/) in Chromium against `switchboard serve`
 * in development mode (which serves it at /arena): two pages see each other
 * move within two ticks; a page whose network is throttled (CDP) keeps
 * playing, is not disconnected, and catches up when the network recovers;
 * a page that reloads joins again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { useBrowserAndServe, WAIT_MS } from './helpers.js';

const env = useBrowserAndServe();

/** What the page exposes as `window.arena` (examples/arena/web/app.js). */
interface ArenaDebug {
  id: number;
  tick: number;
  connected: boolean;
  lostFrames: number;
  snapshotAgeMs: number;
  counters: { joins: number; gaps: number; keyframes: number; deltas: number };
  others(): Record<string, { id: number; x: number; y: number; tick: number }>;
  self(): { id: number; x: number; y: number; tick: number; ack: number; ackTick: number } | null;
  press(bits: number): void;
  watchFor(name: string): void;
  watched(): number;
}
declare const arena: ArenaDebug;

const RIGHT = 8;
const LEFT = 4;

async function join(page: Page, name: string): Promise<void> {
  await page.goto(`${env.server.base}/arena?name=${name}`, { timeout: 30_000 });
  // Generous: the first snapshot needs the SDK, a token, the connection, the join and a keyframe, on a busy machine.
  await page.waitForFunction(() => typeof arena !== 'undefined' && arena.connected && arena.self() !== null, undefined, { timeout: 3 * WAIT_MS });
}

async function sees(page: Page, name: string): Promise<void> {
  await page.waitForFunction((n) => n in arena.others(), name, { timeout: WAIT_MS });
}

test('two pages join the arena and each sees the other move within two ticks', async () => {
  const alice = await env.browser.page();
  const bob = await env.browser.page();
  await join(alice, 'alice');
  await join(bob, 'bob');
  await sees(alice, 'bob');
  await sees(bob, 'alice');

  for (const [mover, watcher, name] of [
    [alice, bob, 'alice'],
    [bob, alice, 'bob'],
  ] as const) {
    await watcher.evaluate((n) => arena.watchFor(n), name);
    // The watcher's baseline: one more state of the area first.
    const t0 = await watcher.evaluate(() => arena.tick);
    await watcher.waitForFunction((t) => arena.tick > t + 1, t0);
    await mover.evaluate((bits) => arena.press(bits), name === 'alice' ? RIGHT : LEFT);
    // The tick at which the server applied the input, as the mover learns it.
    const ackTick = (await (
      await mover.waitForFunction(() => {
        const s = arena.self();
        return s !== null && s.ack > 0 && s.tick >= s.ackTick ? s.ackTick : false;
      })
    ).jsonValue()) as number;
    await watcher.waitForFunction(() => arena.watched() > 0);
    const movedAt = await watcher.evaluate(() => arena.watched());
    assert.ok(movedAt >= ackTick && movedAt <= ackTick + 2, `${name}'s input applied at tick ${ackTick}, the other page saw the move in the state of tick ${movedAt}`);
    await mover.evaluate(() => arena.press(0));
  }
  assert.deepEqual(env.browser.errors, []);
  await Promise.all([alice.close(), bob.close()]);
});

test('a throttled page keeps playing (no disconnect), and catches up when its network recovers', async () => {
  const alice = await env.browser.page();
  const slow = await env.browser.page();
  await join(alice, 'alice2');
  await join(slow, 'slow');
  await sees(alice, 'slow');
  const cdp = await slow.context().newCDPSession(slow);
  await cdp.send('Network.enable');
  // 4 KB/s down, 200 ms latency: less than the areas' state (about 10 KB/s for a few players at 30 Hz).
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 200, downloadThroughput: 4000, uploadThroughput: 4000 });
  const before = await slow.evaluate(() => ({ tick: arena.tick, joins: arena.counters.joins }));
  // It keeps playing: its input still reaches the server (the other page sees it move) and state still comes in.
  await alice.evaluate(() => arena.watchFor('slow'));
  await new Promise((r) => setTimeout(r, 300));
  await slow.evaluate((bits) => arena.press(bits), RIGHT);
  await alice.waitForFunction(() => arena.watched() > 0, undefined, { timeout: 20_000 });
  await slow.waitForFunction((t) => arena.tick > t + 10, before.tick, { timeout: 20_000 });
  await new Promise((r) => setTimeout(r, 3000));
  const throttled = await slow.evaluate(() => ({ connected: arena.connected, joins: arena.counters.joins, age: arena.snapshotAgeMs, tick: arena.tick }));
  const aliceTick = await alice.evaluate(() => arena.tick);
  assert.equal(throttled.connected, true, 'not disconnected');
  assert.equal(throttled.joins, before.joins, 'never had to join again');

  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await slow.evaluate(() => arena.press(0));
  // Caught up: its newest state is as recent as the unthrottled page's (within a few ticks).
  const deadline = Date.now() + 30_000;
  let gap = Infinity;
  while (Date.now() < deadline) {
    const [a, s] = await Promise.all([alice.evaluate(() => arena.tick), slow.evaluate(() => arena.tick)]);
    gap = a - s;
    if (Math.abs(gap) <= 6) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(Math.abs(gap) <= 6, `the throttled page is ${gap} ticks behind the other after the network recovered`);
  const after = await slow.evaluate(() => ({ connected: arena.connected, joins: arena.counters.joins }));
  assert.deepEqual(after, { connected: true, joins: before.joins });
  process.stderr.write(`# throttled page: ${aliceTick - throttled.tick} ticks behind while throttled, state age ${Math.round(throttled.age)} ms\n`);
  assert.deepEqual(env.browser.errors, []);
  await Promise.all([alice.close(), slow.close()]);
});

test('a page that reloads joins again as a new player; the old one is gone', async () => {
  const alice = await env.browser.page();
  const bob = await env.browser.page();
  await join(alice, 'alice3');
  await join(bob, 'bob3');
  await sees(alice, 'bob3');
  const oldId = await alice.evaluate(() => arena.others()['bob3']!.id);
  await bob.reload();
  await bob.waitForFunction(() => typeof arena !== 'undefined' && arena.connected && arena.self() !== null, undefined, { timeout: 3 * WAIT_MS });
  await sees(bob, 'alice3');
  await alice.waitForFunction((old) => { const b = arena.others()['bob3']; return b !== undefined && b.id !== old; }, oldId);
  const ids = await alice.evaluate(() => Object.values(arena.others()).map((o) => o.id));
  assert.ok(!ids.includes(oldId), 'the player of the closed connection left the game');
  assert.deepEqual(env.browser.errors, []);
});
