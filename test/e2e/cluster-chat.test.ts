/**
 * The chat page in Chromium through nginx (the shipped deploy/nginx config)
 * in front of two `switchboard serve` nodes on a real redis-server; the node
 * that carries a page is killed with SIGKILL. The pages reconnect through
 * nginx to the other node, resume their room from its offset
 * (`recovered: true`: the history is in Redis), and show every message once,
 * in order, also what was sent while they reconnected.
 *
 * The nodes have a real key (a cluster's nodes share one; development mode
 * signs with a secret of each node's own), so there is no `/dev/token`: the
 * test answers the page's `POST /dev/token` itself with a token signed with
 * the cluster's key, as an app's backend would hand one out. Everything else
 * is real.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Page } from 'playwright-core';
import { Cluster } from '../support/cluster.js';
import { Nginx } from '../support/proxies.js';
import { RedisServer } from '../support/redis.js';
import { launchBrowser, say, screenshot, waitForMessage, WAIT_MS, type TestBrowser } from './helpers.js';

let redis: RedisServer | undefined;
let cluster: Cluster | undefined;
let nginx: Nginx | undefined;
let browser: TestBrowser | undefined;

before(async () => {
  redis = await RedisServer.start();
  cluster = await Cluster.start({ broker: { type: 'redis', url: redis.url }, nodes: 2 });
  nginx = await Nginx.start(cluster.nodes.map((n) => n.port));
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await nginx?.stop();
  await cluster?.stop();
  await redis?.dispose();
});

/** The chat page of `user` in `room`, through nginx, with its token from the cluster's key. */
async function openChat(user: string, room: string): Promise<Page> {
  const page = await browser!.page();
  await page.route('**/dev/token', async (route) => {
    await route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ token: await cluster!.token(user) }) });
  });
  await page.goto(`${nginx!.base}/?room=${encodeURIComponent(room)}&user=${encodeURIComponent(user)}`);
  await page.waitForSelector('#state[data-state="connected"]', { timeout: WAIT_MS });
  await page.waitForSelector(`#presence li[data-user="${user}"]`, { timeout: WAIT_MS });
  return page;
}

function texts(page: Page): Promise<Array<string | null>> {
  return page.$$eval('#messages li.msg .text', (items) => items.map((el) => el.textContent));
}

test('chat through nginx over two nodes on Redis: the node of a page is killed; the page reconnects to the other node, resumes, and shows every message once', async () => {
  const alice = await openChat('alice', 'failover');
  const bob = await openChat('bob', 'failover');
  await say(alice, 'one');
  // Published before bob types: two pages on two nodes publish in no set order otherwise, and the
  // check below is for each message once, in the order the channel has them.
  await waitForMessage(bob, 'one');
  await say(bob, 'two');
  for (const page of [alice, bob]) {
    await waitForMessage(page, 'one');
    await waitForMessage(page, 'two');
  }
  const perNode = await Promise.all(cluster!.nodes.map((n) => n.openConnections('websocket')));
  assert.equal(perNode[0]! + perNode[1]!, 2, `two pages on the nodes: ${perNode}`);
  // The node with the most pages dies (with both on one node, both pages move).
  const victim = cluster!.nodes[perNode[0]! >= perNode[1]! ? 0 : 1]!;
  const survivor = cluster!.nodes.find((n) => n !== victim)!;
  await victim.kill('SIGKILL');

  // Typed while the connection is being remade: the SDK queues it.
  await say(alice, 'three');
  for (const page of [alice, bob]) {
    await page.waitForSelector('#state[data-state="connected"]', { timeout: 30_000 });
    await waitForMessage(page, 'three', 30_000);
  }
  await say(bob, 'four');
  for (const page of [alice, bob]) await waitForMessage(page, 'four', 30_000);
  assert.equal(await survivor.openConnections('websocket'), 2, 'both pages on the node that is left');
  for (const page of [alice, bob]) {
    assert.deepEqual(await texts(page), ['one', 'two', 'three', 'four'], 'each message once, in order');
    const notices = await page.$$eval('#messages li.sys', (items) => items.map((li) => li.textContent ?? ''));
    assert.ok(!notices.some((n) => /could not recover/.test(n)), `a recovered:false notice in ${JSON.stringify(notices)}`);
  }
  await screenshot(alice, 'chat-cluster-failover');
  assert.deepEqual(browser!.errors, []);
  await victim.start();
});
