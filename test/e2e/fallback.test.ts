/**
 * The chat page with WebSocket blocked (every WebSocket in the page goes to
 * a closed port and fails before opening, like behind a proxy that drops
 * upgrades): the SDK falls back to SSE (`POST /rt/session`, an EventSource
 * stream) and the chat works both ways with a page that is on WebSocket.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openChat, presence, say, screenshot, transport, useBrowserAndServe, waitForMessage } from './helpers.js';

const env = useBrowserAndServe();

test('with WebSocket blocked in the page, the chat falls back to SSE and works both ways with a WebSocket page', async () => {
  const alice = await env.browser.page({ blockWebSocket: true });
  const bob = await env.browser.page();
  await openChat(alice, env.server.base, 'fallback', 'alice');
  assert.equal(await transport(alice), 'sse');
  assert.ok((await alice.evaluate(() => (window as unknown as { blockedWebSockets: number }).blockedWebSockets)) >= 2, 'WebSocket was not tried first');
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
