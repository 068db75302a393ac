/**
 * The admin UI in Chromium against a real `switchboard serve` in production
 * mode (a JWT secret and an API key configured: no development tokens, the
 * demo dashboard shows "No token"): a wrong password shows the error, the
 * login works, the console shows a live connection of a real client, closing
 * it and publishing take effect at real clients, and logging out returns to
 * the login page, after which the API answers 401.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { RtClient } from '../integration/realtime/helpers-core.js';
import { killAll, launchBrowser, screenshot, startServe, type Serve, type TestBrowser } from './helpers.js';
import { SECRET } from '../support/tokens.js';

const PASSWORD = 'correct horse battery staple';
let browser: TestBrowser;
let serve: Serve;
let dir: string;
const clients: RtClient[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sb-admin-e2e-'));
  const file = join(dir, 'switchboard.json');
  writeFileSync(
    file,
    JSON.stringify({
      auth: { hmacSecret: SECRET },
      apiKey: 'e2e-admin-api-key-0123456789',
      namespaces: [
        { prefix: 'chat', history: { size: 50, ttlMs: 0 }, presence: 'full' },
        { prefix: 'sys', history: { size: 120, ttlMs: 130_000 }, clientPublish: false },
      ],
      admin: { enabled: true, password: PASSWORD },
    }),
  );
  browser = await launchBrowser();
  serve = await startServe(0, ['--config', file]);
});

after(async () => {
  for (const c of clients) c.terminate();
  await browser?.close();
  await serve?.stop();
  killAll();
  rmSync(dir, { recursive: true, force: true });
});

async function client(user: string): Promise<RtClient> {
  const c = RtClient.create(`ws://127.0.0.1:${serve.port}/rt`);
  clients.push(c);
  await c.opened();
  await c.auth(user);
  return c;
}

test('admin UI: wrong password, login, a live connection, close and publish, logout', async () => {
  const line = await serve.log((l) => l.msg === 'admin UI', "the 'admin UI' log line");
  assert.equal(line.url, `http://127.0.0.1:${serve.port}/admin/`);
  // Production mode: no development tokens.
  const dev = await fetch(`${serve.base}/dev/token`, { method: 'POST', body: '{"user":"x"}', headers: { 'Content-Type': 'application/json' } });
  assert.equal(dev.status, 404);

  const page = await browser.page();
  await page.goto(`${serve.base}/admin/`);
  assert.equal(new URL(page.url()).pathname, '/admin/login');
  assert.equal(await page.isVisible('#error'), false);

  // A wrong password: 401 and the message on the form.
  await page.fill('#password', 'not the password');
  const [wrong] = await Promise.all([page.waitForNavigation(), page.click('#login button[type="submit"]')]);
  assert.equal(wrong?.status(), 401);
  assert.equal(await page.textContent('#error'), 'Wrong password or API key.');
  assert.equal(await page.isVisible('#error'), true);

  // The right one: the console, live.
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('#login button[type="submit"]')]);
  assert.equal(new URL(page.url()).pathname, '/admin/');
  await page.waitForSelector('#state[data-state="connected"]');

  // A real client appears in the connections table and in the metrics.
  const alice = await client('alice');
  await alice.ok('sub', { channel: 'chat/lobby' });
  const row = `#connections-list tbody tr:has(code:text-is("${alice.clientId}"))`;
  // Once the table shows the user (a refresh between the connection and its auth shows it anonymous).
  await page.waitForSelector(`${row}:has(td:text-is("alice"))`);
  const cells = await page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
  const node = alice.clientId!.slice(0, alice.clientId!.indexOf('.'));
  assert.deepEqual(cells.slice(1, 5), [`${node} (this node)`, 'alice', 'websocket', '127.0.0.1'], 'the connection id names its node');
  assert.equal(cells[6], 'chat/lobby');
  await page.waitForFunction(() => Number(document.querySelector('#connections .value')?.getAttribute('data-value')) >= 1);
  await page.waitForFunction(() => document.querySelector('#nodes tbody tr td:nth-child(2)')?.textContent === '1');
  await page.waitForSelector('#channel-list tbody tr:has(code:text-is("chat/lobby"))');

  // Publish from the console: a subscriber gets it.
  const bob = await client('bob');
  await bob.ok('sub', { channel: 'chat/lobby' });
  await page.fill('#publish-channel', 'chat/lobby');
  await page.fill('#publish-data', '{"text": "hello from the admin"}');
  await page.click('#publish-form button[type="submit"]');
  const [msg] = await bob.waitMessages('chat/lobby', 1, 10_000);
  assert.deepEqual(msg!.data, { text: 'hello from the admin' });
  await page.waitForFunction(() => /^Published to chat\/lobby at offset 1\.$/.test(document.querySelector('#publish-result')?.textContent ?? ''));

  // Presence and the last history of the channel.
  await page.click('#channel-list tbody tr:has(code:text-is("chat/lobby")) button');
  await page.waitForFunction(() => document.querySelector('#inspect-history tbody tr td:nth-child(3)')?.textContent === '{"text":"hello from the admin"}');
  const present = await page.$$eval('#inspect-presence tbody tr td:first-child', (tds) => tds.map((td) => td.textContent).sort());
  assert.deepEqual(present, ['alice', 'bob']);

  // Close alice's connection: the client sees 4503, bob stays.
  await page.click(`${row} button:text-is("Close")`);
  assert.equal((await alice.closeOf(10_000)).code, 4503);
  await page.waitForSelector(row, { state: 'detached' });
  await bob.ok('sub', { channel: 'chat/other' });
  await screenshot(page, 'admin');

  // Log out: back to the login form, and the API refuses the browser.
  await Promise.all([page.waitForNavigation(), page.click('#logout button')]);
  assert.equal(new URL(page.url()).pathname, '/admin/login');
  const status = await page.evaluate(() => fetch('/admin/api/overview').then((r) => r.status));
  assert.equal(status, 401);
  await page.goto(`${serve.base}/admin/`);
  assert.equal(new URL(page.url()).pathname, '/admin/login');
  assert.deepEqual(browser.errors, []);
});
