/**
 * The chat page when the network between the browser and the server breaks
 * WebSocket and streaming (simulated in the page: an init script sends every
 * WebSocket, and EventSource, to a closed port, so each fails before it
 * opens, like behind a proxy that drops upgrades or breaks event streams):
 * - WebSocket blocked: the SDK falls back to SSE (`POST /rt/session`, an
 *   EventSource stream) and the chat works both ways with a page that is on
 *   WebSocket;
 * - WebSocket and EventSource blocked: it goes on to long-polling, and the
 *   chat, presence and a failed WebSocket probe all behave;
 * - WebSocket blocked, then let through: the SDK's own probe (its first one,
 *   `upgradeProbeDelayMs` = 5 s after connecting on the fallback) finds it
 *   and moves the page back to WebSocket, resuming the room without a gap
 *   or a duplicate.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Page, Route } from 'playwright-core';
import { openChat, presence, say, screenshot, transport, useBrowserAndServe, waitForMessage, WAIT_MS, within } from './helpers.js';

const env = useBrowserAndServe();

/**
 * Connecting through two failed transports first: four attempts that fail
 * before opening, with the SDK's backoff between them (at most 0.5 + 1 + 2
 * + 4 s), then the poll session.
 */
const FALLBACK_MS = 25_000;
/** The SDK's first WebSocket probe on a fallback (`upgradeProbeDelayMs`, default 5 s), plus room for a slow machine. */
const PROBE_MS = 15_000;

/** What the page and the init scripts expose (helpers.ts, web/chat.js). */
interface ChatWindow {
  blockedWebSockets: number;
  allowedWebSockets: number;
  blockedEventSources: number;
  unblockWebSocket(): number;
  /** Deliveries of the SDK's `message` event, by text (see {@link countDeliveries}). */
  delivered: Record<string, number>;
  switchboardChat: {
    client: {
      state: string;
      transport: string | null;
      pendingPublications: number;
      getSubscription(channel: string): { on(event: 'message', fn: (pub: { data?: { text?: unknown } }) => void): () => void } | undefined;
      history(channel: string, options: { limit: number }): Promise<{ publications: Array<{ data?: { text?: unknown } }> }>;
      presence(channel: string): Promise<{ clients?: Record<string, { user?: string }> | number }>;
    };
  };
}

/** The page's counters (init scripts; null: that script is not in the page) and the SDK's view of the connection. */
function probeState(page: Page): Promise<{ blockedWs: number; allowedWs: number; blockedEs: number | null; state: string; transport: string | null }> {
  return page.evaluate(() => {
    const w = window as unknown as ChatWindow;
    return {
      blockedWs: w.blockedWebSockets,
      allowedWs: w.allowedWebSockets,
      blockedEs: w.blockedEventSources ?? null,
      state: w.switchboardChat.client.state,
      transport: w.switchboardChat.client.transport,
    };
  });
}

/**
 * Count in the page every publication the SDK delivers to the room's
 * subscription, by text. The page drops repeats itself (by epoch:offset), so
 * its list alone would hide a duplicate delivered by the SDK.
 */
async function countDeliveries(page: Page, channel: string): Promise<void> {
  await page.evaluate((ch) => {
    const w = window as unknown as ChatWindow;
    w.delivered = {};
    const sub = w.switchboardChat.client.getSubscription(ch);
    if (!sub) throw new Error(`the page has no subscription to ${ch}`);
    sub.on('message', (pub) => {
      const text = String(pub.data?.text);
      w.delivered[text] = (w.delivered[text] ?? 0) + 1;
    });
  }, channel);
}

/** How many chat messages with this text the page shows. */
function shown(page: Page, text: string): Promise<number> {
  return page.$$eval('#messages li.msg .text', (items, t) => items.filter((el) => el.textContent === t).length, text);
}

/** The page's system lines (joins, transport switches, reconnects). */
function systemLines(page: Page): Promise<string[]> {
  return page.$$eval('#messages li.sys', (items) => items.map((li) => li.textContent ?? ''));
}

/**
 * Every message of the room exactly once, in this order: in the server's
 * history (so no publication was stored twice), on each page (its list) and
 * in each page's SDK deliveries (counted since {@link countDeliveries}).
 * Waits first until no page has a publication unacknowledged (no resend can
 * still come).
 */
async function assertExactlyOnce(pages: Page[], channel: string, texts: string[]): Promise<void> {
  for (const page of pages) await page.waitForFunction(() => (window as unknown as ChatWindow).switchboardChat.client.pendingPublications === 0);
  const stored = await pages[0]!.evaluate(
    (ch) => (window as unknown as ChatWindow).switchboardChat.client.history(ch, { limit: 50 }).then((h) => h.publications.map((p) => String(p.data?.text))),
    channel,
  );
  assert.deepEqual(stored, texts, 'the server history of the room');
  for (const page of pages) {
    for (const text of texts) assert.equal(await shown(page, text), 1, `"${text}" shown on ${page.url()}`);
    assert.equal(await page.$$eval('#messages li.msg', (items) => items.length), texts.length, `messages shown on ${page.url()}`);
    const delivered = await page.evaluate(() => (window as unknown as ChatWindow).delivered);
    assert.deepEqual(delivered, Object.fromEntries(texts.map((t) => [t, 1])), `SDK deliveries on ${page.url()}`);
  }
}

/** Both pages list exactly alice and bob, and the server has exactly one connection of each in the room. */
async function assertPresence(pages: Page[], channel: string): Promise<void> {
  for (const page of pages) {
    // One entry per user, without a "2 tabs" mark: an old connection of a user that switched transports is gone.
    await page.waitForFunction(() => document.querySelectorAll('#presence li').length === 2 && document.querySelectorAll('#presence li .n').length === 0);
    assert.deepEqual((await presence(page)).sort(), ['alice', 'bob']);
    assert.equal(await page.$eval('#presence-count', (el) => el.textContent), '2');
  }
  const clients = await pages[0]!.evaluate(
    (ch) => (window as unknown as ChatWindow).switchboardChat.client.presence(ch).then((p) => (typeof p.clients === 'object' ? Object.values(p.clients).map((c) => c.user ?? '') : [])),
    channel,
  );
  assert.deepEqual(clients.sort(), ['alice', 'bob'], 'connections in the room (server presence)');
}

test('with WebSocket blocked in the page, the chat falls back to SSE and works both ways with a WebSocket page', async () => {
  const alice = await env.browser.page({ blockWebSocket: true });
  const bob = await env.browser.page();
  await openChat(alice, env.server.base, 'fallback', 'alice');
  assert.equal(await transport(alice), 'sse');
  // Exactly the two failed attempts before the fallback (fallbackAfter: 2); the first probe comes 5 s after connecting.
  assert.equal(await alice.evaluate(() => (window as unknown as ChatWindow).blockedWebSockets), 2, 'WebSocket tried first, twice');
  await openChat(bob, env.server.base, 'fallback', 'bob');
  assert.equal(await transport(bob), 'websocket');

  await say(alice, 'sent over SSE');
  await waitForMessage(bob, 'sent over SSE');
  await waitForMessage(alice, 'sent over SSE');
  await say(bob, 'received over SSE');
  await waitForMessage(alice, 'received over SSE');
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelectorAll('#presence li').length === 2);
    assert.deepEqual((await presence(page)).sort(), ['alice', 'bob']);
  }
  await screenshot(alice, 'chat-sse');
  assert.deepEqual(env.browser.errors, []);
});

test('with WebSocket and EventSource blocked in the page, the chat goes on to long-polling: presence, messages both ways exactly once, and a failed WebSocket probe leaves the poll connection alone', async () => {
  const room = 'longpoll';
  const channel = `chat/${room}`;
  const bob = await env.browser.page();
  const alice = await env.browser.page({ blockWebSocket: true, blockEventSource: true });
  await openChat(bob, env.server.base, room, 'bob');
  assert.equal(await transport(bob), 'websocket');

  alice.setDefaultTimeout(FALLBACK_MS);
  await openChat(alice, env.server.base, room, 'alice');
  alice.setDefaultTimeout(WAIT_MS);
  // Connected over long-polling after exactly two failed attempts of each transport before it (fallbackAfter: 2),
  // read at once: the first WebSocket probe comes 5 s after connecting.
  assert.deepEqual(await probeState(alice), { blockedWs: 2, allowedWs: 0, blockedEs: 2, state: 'connected', transport: 'poll' });
  assert.equal(await transport(alice), 'poll');
  assert.deepEqual(
    (await systemLines(alice)).filter((l) => l.startsWith('switching')),
    ['switching from websocket to sse: 2 attempts failed before opening', 'switching from sse to poll: 2 attempts failed before opening'],
  );
  await countDeliveries(alice, channel);
  await countDeliveries(bob, channel);
  await assertPresence([alice, bob], channel);

  await say(alice, 'sent over long-polling');
  await waitForMessage(bob, 'sent over long-polling');
  await waitForMessage(alice, 'sent over long-polling');
  await say(bob, 'received over long-polling');
  await waitForMessage(alice, 'received over long-polling');
  await waitForMessage(bob, 'received over long-polling');

  // The SDK probes WebSocket from the fallback on its own; the probe fails (still blocked) and changes nothing.
  await alice.waitForFunction(() => (window as unknown as ChatWindow).blockedWebSockets === 3, undefined, { timeout: PROBE_MS });
  await say(bob, 'after the failed probe');
  await waitForMessage(alice, 'after the failed probe');
  assert.deepEqual(await probeState(alice), { blockedWs: 3, allowedWs: 0, blockedEs: 2, state: 'connected', transport: 'poll' });
  assert.equal(await transport(alice), 'poll');
  const lines = await systemLines(alice);
  assert.equal(lines.filter((l) => l.startsWith('switching') || l.startsWith('connection lost') || l.startsWith('reconnected')).length, 2, `no switch or drop after the first two: ${JSON.stringify(lines)}`);

  await assertExactlyOnce([alice, bob], channel, ['sent over long-polling', 'received over long-polling', 'after the failed probe']);
  await assertPresence([alice, bob], channel);
  await screenshot(alice, 'chat-poll');
  assert.deepEqual(env.browser.errors, []);
});

test('WebSocket blocked, then let through: the page on SSE moves back to WebSocket on its own (the SDK probe), resumes the room, and no message is lost or doubled across the switch', async (t) => {
  const room = 'upgrade';
  const channel = `chat/${room}`;
  const bob = await env.browser.page();
  const alice = await env.browser.page({ blockWebSocket: true });
  await openChat(bob, env.server.base, room, 'bob');
  await openChat(alice, env.server.base, room, 'alice');
  const connectedAt = Date.now();
  assert.deepEqual(await probeState(alice), { blockedWs: 2, allowedWs: 0, blockedEs: null, state: 'connected', transport: 'sse' });
  assert.equal(await transport(alice), 'sse');
  await countDeliveries(alice, channel);
  await countDeliveries(bob, channel);

  // Hold alice's token requests: the switch to WebSocket starts with one (getToken on every new connection),
  // so while it is held alice is between the two transports, and what happens then must be caught up.
  const held: Route[] = [];
  let tokenAsked!: () => void;
  const switching = new Promise<void>((resolve) => (tokenAsked = resolve));
  await alice.route('**/dev/token', (route) => {
    held.push(route);
    tokenAsked();
  });
  try {
    await say(bob, 'before the switch');
    await waitForMessage(alice, 'before the switch');
    await say(alice, 'sent over SSE');
    await waitForMessage(bob, 'sent over SSE');
    assert.equal((await probeState(alice)).transport, 'sse');

    // The SDK's first probe comes upgradeProbeDelayMs (5 s) after connecting; the next only after upgradeIntervalMs (2 min).
    const blockedBefore = await alice.evaluate(() => (window as unknown as ChatWindow).unblockWebSocket());
    t.diagnostic(`WebSocket let through ${Date.now() - connectedAt} ms after the page showed alice in the room over SSE`);
    assert.equal(blockedBefore, 2, 'the first WebSocket probe ran before the test let WebSocket through (the machine was too slow for the 5 s window)');

    await within(switching, PROBE_MS, "alice's switch to WebSocket (its token request)");
    // The probe got through (one WebSocket, opened and closed); the SSE session is closed; the new connection waits for its token.
    assert.deepEqual(await probeState(alice), { blockedWs: 2, allowedWs: 1, blockedEs: null, state: 'reconnecting', transport: null });
    assert.equal(await alice.$eval('#state', (el) => (el as HTMLElement).dataset.state), 'reconnecting');
    assert.equal(await transport(alice), 'websocket…');

    // Meanwhile: bob publishes (alice must get it by resuming), alice publishes (queued until she is connected).
    await say(bob, 'while alice switches');
    await waitForMessage(bob, 'while alice switches');
    await say(alice, 'queued during the switch');
    await alice.waitForFunction(() => document.getElementById('compose-hint')?.textContent === '1 message waiting; sent when the connection is back');
    assert.equal(await shown(alice, 'while alice switches'), 0);
    assert.equal(await shown(bob, 'queued during the switch'), 0);
  } finally {
    for (const route of held) await route.continue().catch(() => {});
    await alice.unroute('**/dev/token');
  }
  assert.equal(held.length, 1, 'token requests during the switch');

  await alice.waitForSelector('#state[data-state="connected"]');
  await alice.waitForFunction(() => document.getElementById('transport')?.textContent === 'websocket');
  await waitForMessage(alice, 'while alice switches');
  await waitForMessage(bob, 'queued during the switch');
  await waitForMessage(alice, 'queued during the switch');
  // Two WebSockets since the block was lifted: the probe and the connection; none blocked since.
  assert.deepEqual(await probeState(alice), { blockedWs: 2, allowedWs: 2, blockedEs: null, state: 'connected', transport: 'websocket' });
  assert.equal(await alice.evaluate(() => document.body.dataset.recovered), 'true');
  const lines = await systemLines(alice);
  for (const line of ['switching from sse to websocket: WebSocket is reachable again', 'reconnected over websocket', 'back in the room: nothing was missed']) {
    assert.equal(lines.filter((l) => l === line).length, 1, `"${line}" in ${JSON.stringify(lines)}`);
  }
  assert.equal(await alice.$eval('#compose-hint', (el) => el.textContent), '');
  // Going back to WebSocket is not shown as a problem.
  const warnings = await alice.$$eval('#messages li.sys.warn', (items) => items.map((li) => li.textContent ?? ''));
  assert.ok(!warnings.some((w) => /to websocket/.test(w)), `the move back to WebSocket shown as a warning: ${JSON.stringify(warnings)}`);

  await say(bob, 'after the switch');
  await waitForMessage(alice, 'after the switch');
  await say(alice, 'sent over WebSocket');
  await waitForMessage(bob, 'sent over WebSocket');
  await waitForMessage(alice, 'sent over WebSocket');

  await assertExactlyOnce([alice, bob], channel, [
    'before the switch',
    'sent over SSE',
    'while alice switches',
    'queued during the switch',
    'after the switch',
    'sent over WebSocket',
  ]);
  await assertPresence([alice, bob], channel);
  await screenshot(alice, 'chat-upgrade');
  assert.deepEqual(env.browser.errors, []);
});
