/**
 * Authentication failures the client cannot get past by retrying (issue
 * #13): a client with no token against a server that requires one (4001
 * every `authTimeoutMs`, for ever), and a token the server refuses (4500).
 * Each is said once, as an `error` event with RT_CLIENT_UNAUTHORIZED and
 * what to do, and the client stops (docs/close-codes.md).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ClientError, DisconnectedEvent, ReconnectingEvent } from '../../../src/client/index.js';
import { accept, fakeClock, flush, makeClient, track } from './fakes.js';

/** The socket opens; the server answers the client's auth with 401 `message` and closes with `code`. */
async function refuseAuth(h: ReturnType<typeof makeClient>, message: string, code: number): Promise<void> {
  await flush();
  h.WS.last.open();
  const auth = h.WS.last.sentOps('auth')[0]!;
  h.WS.last.receive({ op: 'error', id: auth.id, code: 401, message });
  h.WS.last.drop(code, message);
  await flush();
}

/** Exactly one error was emitted: RT_CLIENT_UNAUTHORIZED for `closeCode`, its message saying each of `says`. */
function expectUnauthorized(errors: unknown[], closeCode: number, ...says: RegExp[]): void {
  assert.equal(errors.length, 1);
  const err = errors[0] as ClientError;
  assert.equal(err.code, 'RT_CLIENT_UNAUTHORIZED');
  assert.equal(err.closeCode, closeCode);
  for (const pattern of says) assert.match(err.message, pattern);
}

describe('authentication failures: said once, with what to do, and no reconnect loop', () => {
  test('no token and the server closes with 4001: one RT_CLIENT_UNAUTHORIZED error naming `token`/`getToken`, disconnected, no reconnect', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt');
    const disconnected: DisconnectedEvent[] = [];
    const reconnecting: ReconnectingEvent[] = [];
    h.client.on('disconnected', (e) => disconnected.push(e));
    h.client.on('reconnecting', (e) => reconnecting.push(e));
    const connected = track(h.client.connect());
    await accept(h); // anonymous: connected as soon as the socket opens (the server says nothing until it gives up)
    assert.equal(connected.settled, true);
    h.WS.last.drop(4001, 'no auth message in time');
    await flush();
    expectUnauthorized(h.errors, 4001, /requires a token/, /pass `token` or `getToken`/);
    assert.deepEqual(
      disconnected.map((e) => [e.code, e.willReconnect]),
      [[4001, false]],
    );
    assert.equal(h.client.state, 'disconnected');
    await clock.tick(120_000);
    assert.equal(h.WS.instances.length, 1, 'no second connection');
    assert.equal(reconnecting.length, 0);
    assert.equal(h.errors.length, 1, 'said once');
    h.client.close();
  });

  test('with a token, 4001 still reconnects (its auth may not have got through a proxy) and is no RT_CLIENT_UNAUTHORIZED', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'tok' });
    h.client.connect();
    await accept(h);
    h.WS.last.drop(4001, 'no auth message in time');
    await flush();
    assert.equal(h.client.state, 'reconnecting');
    assert.deepEqual(h.errors, []);
    h.client.close();
  });

  test('a refused token (auth error, then 4500): one error, RT_CLIENT_UNAUTHORIZED with the server\'s reason and what to do; connect() rejects saying it too', async (t) => {
    const clock = fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { token: 'bad' });
    const p = track(h.client.connect());
    await refuseAuth(h, 'invalid signature', 4500);
    expectUnauthorized(h.errors, 4500, /refused the token.*invalid signature/, /pass a valid `token`, or a `getToken`/);
    assert.equal(p.error?.code, 'RT_CLIENT_CONNECT_FAILED');
    assert.match(p.error!.message, /pass a valid `token`/);
    await clock.tick(120_000);
    assert.equal(h.WS.instances.length, 1);
    h.client.close();
  });

  test('an auth error followed by 4002 (expired) is reported as before (the server\'s error) and reconnects with getToken', async (t) => {
    fakeClock(t);
    const h = makeClient('ws://rt.test/rt', { getToken: async () => 'old' });
    h.client.connect();
    await refuseAuth(h, 'token expired', 4002);
    assert.deepEqual(
      h.errors.map((e) => [(e as ClientError).code, (e as ClientError).serverCode]),
      [['RT_CLIENT_SERVER_ERROR', 401]],
    );
    assert.equal(h.client.state, 'connecting');
    h.client.close();
  });
});
