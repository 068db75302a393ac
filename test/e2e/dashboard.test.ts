/**
 * The dashboard page (web/dashboard.html) in Chromium: fed by the server's
 * own metrics over the realtime protocol (`sys/dashboard`), it shows the
 * open connections (a chat page and itself), the chat channel with its
 * subscriber, and draws its sparklines.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openChat, say, screenshot, useBrowserAndServe, waitForMessage } from './helpers.js';

const env = useBrowserAndServe();

test('the dashboard shows a non-zero connection count and the chat channel while a chat page is open; clients cannot publish to sys/', async () => {
  const chat = await env.browser.page();
  await openChat(chat, env.server.base, 'lobby', 'alice');
  await say(chat, 'hello dashboard');
  await waitForMessage(chat, 'hello dashboard');

  const dashboard = await env.browser.page();
  await dashboard.setViewportSize({ width: 1200, height: 900 });
  await dashboard.goto(`${env.server.base}/dashboard`);
  await dashboard.waitForSelector('#state[data-state="connected"]');
  // The chat page and the dashboard itself.
  await dashboard.waitForFunction(() => Number(document.querySelector('#connections .value')?.getAttribute('data-value')) >= 2);
  const shown = await dashboard.$eval('#connections .value', (el) => el.textContent ?? '');
  assert.equal(shown, '2', 'the chat page and the dashboard, nothing else');
  await dashboard.waitForFunction(() =>
    [...document.querySelectorAll('#channels tbody tr')].some((tr) => tr.firstElementChild?.textContent === 'chat/lobby'),
  );
  const lobby = await dashboard.$$eval('#channels tbody tr', (rows) =>
    rows.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)).find((cells) => cells[0] === 'chat/lobby'),
  );
  assert.equal(lobby?.[1], '1');
  // A few snapshots, so the sparklines have a line to draw.
  await dashboard.waitForFunction(() => ((window as unknown as { switchboardDashboard?: { snapshots: unknown[] } }).switchboardDashboard?.snapshots.length ?? 0) >= 3, undefined, {
    timeout: 6000,
  });
  const inked = await dashboard.$eval('#connections canvas', (canvas) => {
    const c = canvas as HTMLCanvasElement;
    const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i]! > 0) n++;
    return n;
  });
  assert.ok(inked > 50, 'the connections sparkline is empty');

  // The numbers cannot be forged: namespace `sys` forbids client publications.
  const forged = await dashboard.evaluate(() =>
    (window as unknown as { switchboardDashboard: { client: { publish(c: string, d: unknown): Promise<unknown> } } }).switchboardDashboard.client
      .publish('sys/dashboard', { v: 1 })
      .then(
        () => 'published',
        (err: { code?: string; serverCode?: number }) => `${err.code} ${err.serverCode}`,
      ),
  );
  assert.equal(forged, 'RT_CLIENT_SERVER_ERROR 403');

  await screenshot(dashboard, 'dashboard');
  assert.deepEqual(env.browser.errors, []);
});
