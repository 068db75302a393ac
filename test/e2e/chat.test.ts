/**
 * The chat page (web/index.html) in Chromium against `switchboard serve`:
 * two pages talk in one room and see each other in presence; a third sees
 * the history on join. Server restarts on the same port (both pages
 * reconnect with new development tokens: the restarted server has a new
 * ephemeral secret):
 * - with `--snapshot-file`, the history survives: both pages resume with
 *   `recovered: true` and miss nothing, not even what was sent while the
 *   server was down or while one page was offline;
 * - without it (history in memory only), the pages say that the server
 *   could not recover what was missed (`recovered: false`), and chat again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openChat, presence, say, screenshot, startServe, transport, useBrowserAndServe, waitForMessage } from './helpers.js';

const env = useBrowserAndServe();

test('two pages in one room: a message typed in one appears in the other; both presence lists show both names; a late joiner gets the history', async () => {
  const alice = await env.browser.page();
  const bob = await env.browser.page();
  await openChat(alice, env.server.base, 'lobby', 'alice');
  await openChat(bob, env.server.base, 'lobby', 'bob');
  assert.equal(await transport(alice), 'websocket');

  await say(alice, 'hello bob');
  await waitForMessage(bob, 'hello bob');
  await waitForMessage(alice, 'hello bob');
  await say(bob, 'hi alice');
  await waitForMessage(alice, 'hi alice');
  // Bob's page shows its own message when the server's copy comes back: that may be after Alice's.
  await waitForMessage(bob, 'hi alice');
  const authors = await bob.$$eval('#messages li.msg', (items) => items.map((li) => (li as HTMLElement).dataset.user));
  assert.deepEqual(authors, ['alice', 'bob']);

  for (const page of [alice, bob]) {
    await page.waitForFunction(() => document.querySelectorAll('#presence li').length === 2);
    assert.deepEqual((await presence(page)).sort(), ['alice', 'bob']);
  }

  // History: the chat namespace keeps the last messages; a page that joins now shows them.
  const carol = await env.browser.page();
  await openChat(carol, env.server.base, 'lobby', 'carol');
  await waitForMessage(carol, 'hello bob');
  await waitForMessage(carol, 'hi alice');
  assert.equal(await carol.$$eval('#messages li.msg.history', (items) => items.length), 2);
  await alice.waitForFunction(() => document.querySelectorAll('#presence li').length === 3);
  await alice.waitForFunction(() => [...document.querySelectorAll('#messages li.sys')].some((li) => li.textContent === 'carol joined'));

  await screenshot(alice, 'chat');
  await screenshot(carol, 'chat-history');
  assert.deepEqual(env.browser.errors, []);
});

test('presence lines: a reload (leave and join within the grace period) shows neither "left" nor "joined"; closing the page shows "left"', async () => {
  const alice = await env.browser.page();
  const bob = await env.browser.page();
  await openChat(alice, env.server.base, 'grace', 'alice');
  await openChat(bob, env.server.base, 'grace', 'bob');
  const lines = () => alice.$$eval('#messages li.sys', (items) => items.map((li) => li.textContent ?? '').filter((t) => /^bob (joined|left)$/.test(t)));
  await alice.waitForFunction(() => [...document.querySelectorAll('#messages li.sys')].some((li) => li.textContent === 'bob joined'));
  await bob.reload();
  await bob.waitForSelector('#state[data-state="connected"]');
  await alice.waitForFunction(() => document.querySelectorAll('#presence li').length === 2);
  await new Promise((resolve) => setTimeout(resolve, 3500)); // past the grace period
  assert.deepEqual(await lines(), ['bob joined'], 'a reload is not announced');
  await bob.close();
  await alice.waitForFunction(() => [...document.querySelectorAll('#messages li.sys')].some((li) => li.textContent === 'bob left'), undefined, { timeout: 8000 });
  assert.deepEqual(await lines(), ['bob joined', 'bob left']);
  assert.deepEqual(await presence(alice), ['alice']);
  assert.deepEqual(env.browser.errors, []);
});

test('server restart with --snapshot-file: both pages resume with recovered:true and miss nothing, also what was sent while the server was down or a page was offline', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-e2e-history-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const args = ['--snapshot-file', join(dir, 'history.sb')];
  await env.server.stop();
  env.server = await startServe(0, args);
  const port = env.server.port;

  const alice = await env.browser.page();
  const bob = await env.browser.page();
  await openChat(alice, env.server.base, 'persist', 'alice');
  await openChat(bob, env.server.base, 'persist', 'bob');
  await say(alice, 'before the restart');
  await waitForMessage(bob, 'before the restart');

  // Bob's network goes away: the SDK drops the connection at the browser's `offline` event (the
  // socket could stay half-open for a heartbeat timeout) and waits for the network.
  await bob.context().setOffline(true);
  await bob.waitForSelector('#state[data-state="offline"]');
  // The server stops (SIGTERM: the history file is written after the clients are gone).
  await env.server.stop();
  await alice.waitForSelector('#state[data-state="reconnecting"]');
  // Sent while the server is down: the SDK queues it.
  await say(alice, 'while the server was down');

  env.server = await startServe(port, args);
  await alice.waitForSelector('#state[data-state="connected"]', { timeout: 15_000 });
  await alice.waitForFunction(() => document.body.dataset.recovered === 'true');
  await waitForMessage(alice, 'while the server was down');
  await say(alice, 'while bob was offline');
  await waitForMessage(alice, 'while bob was offline');
  await screenshot(alice, 'chat-restart-recovered');

  // Bob comes back: the `online` event reconnects at once; the subscription resumes from where it was.
  assert.equal(await bob.$eval('#state', (el) => (el as HTMLElement).dataset.state), 'offline');
  await bob.context().setOffline(false);
  await bob.waitForSelector('#state[data-state="connected"]', { timeout: 15_000 });
  await bob.waitForFunction(() => document.body.dataset.recovered === 'true');
  await waitForMessage(bob, 'while the server was down');
  await waitForMessage(bob, 'while bob was offline');
  for (const page of [alice, bob]) {
    const texts = await page.$$eval('#messages li.msg .text', (items) => items.map((el) => el.textContent));
    assert.deepEqual(texts, ['before the restart', 'while the server was down', 'while bob was offline'], 'each message once, in order');
    const notices = await page.$$eval('#messages li.sys', (items) => items.map((li) => li.textContent ?? ''));
    assert.ok(notices.some((n) => /nothing was missed/.test(n)), `no "nothing was missed" notice in ${JSON.stringify(notices)}`);
    assert.ok(!notices.some((n) => /could not recover/.test(n)), `a recovered:false notice in ${JSON.stringify(notices)}`);
  }
  await screenshot(bob, 'chat-restart-offline-page-recovered');
  assert.deepEqual(env.browser.errors, []);
});

test('the message pane uses the window\'s height: its bottom stays near the window\'s bottom at two window heights', async () => {
  const page = await env.browser.page();
  await openChat(page, env.server.base, 'tall', 'tess');
  for (const height of [700, 1100]) {
    await page.setViewportSize({ width: 1100, height });
    const bottom = await page.$eval('.conversation', (el) => el.getBoundingClientRect().bottom);
    assert.ok(bottom > height - 60 && bottom <= height, `window ${height}px: the pane ends at ${bottom}px`);
  }
  await page.waitForFunction(() => document.getElementById('presence-count')?.textContent === '1');
});

test('server restart on the same port: both pages show "reconnecting", reconnect with new dev tokens, report recovered:false (in-memory history is lost), and messages sent after the restart reach both', async () => {
  const alice = await env.browser.page();
  const bob = await env.browser.page();
  await openChat(alice, env.server.base, 'restart', 'alice');
  await openChat(bob, env.server.base, 'restart', 'bob');
  await say(alice, 'before the restart');
  await waitForMessage(bob, 'before the restart');
  // Presence lines about the other user: alice saw bob join; after the restart neither page may add one.
  const presenceLines = (page: typeof alice, other: string) =>
    page.$$eval('#messages li.sys', (items, o) => items.map((li) => li.textContent ?? '').filter((t) => t === `${o} joined` || t === `${o} left`), other);
  await alice.waitForFunction(() => [...document.querySelectorAll('#messages li.sys')].some((li) => li.textContent === 'bob joined'));
  assert.deepEqual(await presenceLines(alice, 'bob'), ['bob joined']);
  assert.deepEqual(await presenceLines(bob, 'alice'), []);

  const port = env.server.port;
  await env.server.stop(); // SIGTERM: graceful shutdown, clients get `closing` and 1001
  for (const page of [alice, bob]) {
    await page.waitForSelector('#state[data-state="reconnecting"]');
    assert.match(await page.$eval('#state', (el) => el.textContent ?? ''), /^reconnecting/);
    // Who is in the room is not known while reconnecting: not "(0)".
    assert.equal(await page.$eval('#presence-count', (el) => el.textContent), '…');
  }
  await screenshot(alice, 'chat-reconnecting');

  env.server = await startServe(port);
  assert.equal(env.server.port, port, 'the restarted server got the same port');
  for (const page of [alice, bob]) {
    // The server's reconnect hint is up to 5 s (shutdown.reconnectJitterMs), then backoff.
    await page.waitForSelector('#state[data-state="connected"]', { timeout: 15_000 });
    // Not silent: the subscription resumed with `since`, the new server has no such history.
    await page.waitForFunction(() => document.body.dataset.recovered === 'false');
    const warning = await page.$$eval('#messages li.sys.warn', (items) => items.map((li) => li.textContent ?? ''));
    assert.ok(warning.some((w) => /could not recover/.test(w)), `no recovered:false notice in ${JSON.stringify(warning)}`);
    await page.waitForFunction(() => document.querySelectorAll('#presence li').length === 2);
  }

  await say(bob, 'after the restart');
  await waitForMessage(alice, 'after the restart');
  await waitForMessage(bob, 'after the restart');
  await say(alice, 'still here');
  await waitForMessage(bob, 'still here');
  await waitForMessage(alice, 'still here'); // (its own copy comes back from the server too; not necessarily before bob's)
  // What was on the page before the restart stays; nothing shows twice.
  const texts = await alice.$$eval('#messages li.msg .text', (items) => items.map((el) => el.textContent));
  assert.deepEqual(texts, ['before the restart', 'after the restart', 'still here']);
  // Both were there before and are back: no "joined" (and, once no "left" is pending, no "left") for the other.
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => {
      const room = (window as unknown as { switchboardChat: { before?: unknown; leaving: Map<string, unknown> } }).switchboardChat;
      return !room.before && room.leaving.size === 0;
    });
  }
  assert.deepEqual(await presenceLines(alice, 'bob'), ['bob joined'], 'alice\'s page announced bob after the restart');
  assert.deepEqual(await presenceLines(bob, 'alice'), [], 'bob\'s page announced alice after the restart');

  await screenshot(alice, 'chat-after-restart');
  assert.deepEqual(env.browser.errors, []);
});
