/**
 * The chat page (web/index.html) in Chromium against `switchboard serve`:
 * two pages talk in one room and see each other in presence; a third sees
 * the history on join; after a server restart on the same port both pages
 * reconnect (with new development tokens: the restarted server has a new
 * ephemeral secret), say that the server could not recover what was missed
 * (history is in memory, so it is gone: `recovered: false`), and chat again.
 */
import assert from 'node:assert/strict';
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

test('server restart on the same port: both pages show "reconnecting", reconnect with new dev tokens, report recovered:false (in-memory history is lost), and messages sent after the restart reach both', async () => {
  const alice = await env.browser.page();
  const bob = await env.browser.page();
  await openChat(alice, env.server.base, 'restart', 'alice');
  await openChat(bob, env.server.base, 'restart', 'bob');
  await say(alice, 'before the restart');
  await waitForMessage(bob, 'before the restart');

  const port = env.server.port;
  await env.server.stop(); // SIGTERM: graceful shutdown, clients get `closing` and 1001
  for (const page of [alice, bob]) {
    await page.waitForSelector('#state[data-state="reconnecting"]');
    assert.match(await page.$eval('#state', (el) => el.textContent ?? ''), /^reconnecting/);
  }
  await screenshot(alice, 'chat-reconnecting');

  env.server = await startServe(port);
  assert.equal(env.server.port, port);
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
  // What was on the page before the restart stays; nothing shows twice.
  assert.equal(await alice.$$eval('#messages li.msg', (items) => items.length), 3);

  await screenshot(alice, 'chat-after-restart');
  assert.deepEqual(env.browser.errors, []);
});
