/**
 * Issue #13, against the real server: an SDK with no token used to loop for
 * ever against a server that requires one (connected, closed with 4001
 * after `authTimeoutMs`, reconnected, …) without saying why. Now the app
 * hears it once, as an `error` event (RT_CLIENT_UNAUTHORIZED) that says to
 * pass `token` or `getToken`, and the client stops. Also over long-polling, and for a
 * refused token (4500).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientError, DisconnectedEvent, ReconnectingEvent } from '../../../src/client/index.js';
import { createClient, nextEvent, signToken, sleep, startServer, within } from './helpers.js';

describe('client SDK: authentication failures against the real server', () => {
  for (const transport of ['websocket', 'poll'] as const) {
    test(`no token against a server that requires one (${transport}): one RT_CLIENT_UNAUTHORIZED error saying what to do, then no reconnect`, async (t) => {
      const s = await startServer(t, { config: { auth: { authTimeoutMs: 200 } } });
      const url = transport === 'poll' ? s.url.replace('ws://', 'http://') : s.url;
      const c = createClient(t, url, { transports: [transport] });
      const errors: ClientError[] = [];
      const disconnected: DisconnectedEvent[] = [];
      const reconnecting: ReconnectingEvent[] = [];
      c.on('error', (e) => errors.push(e));
      c.on('disconnected', (e) => disconnected.push(e));
      c.on('reconnecting', (e) => reconnecting.push(e));
      const error = nextEvent(c, 'error', 3000);
      await within(c.connect(), 3000, 'connect');
      const err = await error;
      assert.equal(err.code, 'RT_CLIENT_UNAUTHORIZED');
      assert.equal(err.closeCode, 4001);
      assert.match(err.message, /pass `token` or `getToken`/);
      assert.equal(c.state, 'disconnected');
      assert.deepEqual(
        disconnected.map((e) => [e.code, e.willReconnect]),
        [[4001, false]],
      );
      await sleep(800); // four auth timeouts' worth: before, four more connections and closes
      assert.equal(reconnecting.length, 0, 'no reconnect');
      assert.equal(errors.length, 1, 'said once');
      assert.equal(s.server.hub.sessions.size, 0);
    });
  }

  test('a token signed with another key: one RT_CLIENT_UNAUTHORIZED (4500) with the server\'s reason and what to do; no reconnect', async (t) => {
    const s = await startServer(t);
    const c = createClient(t, s.url, { token: await signToken('alice', { secret: 'another-secret-of-at-least-32-bytes!!' }) });
    const errors: ClientError[] = [];
    c.on('error', (e) => errors.push(e));
    await assert.rejects(within(c.connect(), 3000, 'connect'), (e: ClientError) => e.code === 'RT_CLIENT_CONNECT_FAILED' && /pass a valid `token`/.test(e.message));
    await sleep(200);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'RT_CLIENT_UNAUTHORIZED');
    assert.equal(errors[0]!.closeCode, 4500);
    assert.match(errors[0]!.message, /refused the token/);
  });
});
