/**
 * The server process killed (SIGKILL: no close frame, no shutdown, no final
 * history save) and started again on the same port: `switchboard serve` as a
 * child process, the client SDK in Node as its peer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { DisconnectedEvent } from '../../../src/client/index.js';
import { killAll, startServe, type Serve } from '../../support/cli.js';
import { connectFollowing, createClient, nextEvent, sleep, snapshotOffset, until, waitForSnapshot, within } from './helpers.js';

after(() => killAll());

/** A development token from the server (its secret is new after every start). */
async function devToken(base: () => string, user: string): Promise<string> {
  const res = await fetch(`${base()}/dev/token`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user }) });
  if (!res.ok) throw new Error(`/dev/token: ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

test('killed with SIGKILL and restarted: the client sees 1006, reconnects with a new token, resumes (recovered:false: the last save was periodic), keeps the history and sends what it queued, once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-kill-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'history.sb');
  const args = ['--snapshot-file', file];
  let server: Serve = await startServe(0, args);
  t.after(() => server.stop());
  const port = server.port;
  const base = () => server.base;

  const c = createClient(t, `ws://127.0.0.1:${port}/rt`, { getToken: () => devToken(base, 'alice') });
  const { got, events, sub } = await connectFollowing(c, 'chat/killed', 10_000);
  for (let i = 1; i <= 3; i++) await c.publish('chat/killed', i);
  await until(() => got.length === 3, 3000, 'the first three');
  // One periodic save (every 5 s by default) with them in it.
  const saved = await waitForSnapshot(file, (s) => snapshotOffset(s, 'chat/killed') === 3, 10_000, 'a periodic save with the three');
  assert.equal(saved.final, false);

  const disconnected = nextEvent(c, 'disconnected', 5000);
  server.child.kill('SIGKILL');
  const d: DisconnectedEvent = await disconnected;
  assert.equal(d.code, 1006);
  assert.equal(d.willReconnect, true);
  await server.exited;
  const queued = c.publish('chat/killed', 'sent while the server was dead');

  const resumed = nextEvent(sub, 'subscribed', 20_000);
  server = await startServe(port, args);
  const e = await resumed;
  // Not final: the file may be behind what the client saw, so the server does not claim to recover.
  assert.deepEqual([e.resumed, e.recovered], [true, false]);
  await within(queued, 10_000, 'the queued publication acked');
  // recovered:false means: positions up to the one in the reply come from history, not live
  // (the queued publication may be among them: the server took it while the sub was being set up).
  const history = await c.history('chat/killed', { limit: 10 });
  assert.deepEqual(
    history.publications.map((p) => p.data),
    [1, 2, 3, 'sent while the server was dead'],
  );
  await c.publish('chat/killed', 'after the restart');
  await until(() => got.includes('after the restart'), 5000, 'a live one after the restart');
  await sleep(100);
  assert.deepEqual(got.slice(0, 3), [1, 2, 3]);
  assert.equal(got.at(-1), 'after the restart');
  assert.equal(new Set(got).size, got.length, `nothing twice: ${JSON.stringify(got)}`);
  assert.deepEqual(events.map((x) => [x.resumed, x.recovered]), [
    [false, true],
    [true, false],
  ]);
});
