/**
 * The client SDK (src/client) over SSE and long-polling against the real
 * server: the two sides of the same spec talk. For SSE, an EventSource over
 * fetch stands in for the browser's (Node 20 has none), reconnecting by
 * itself with Last-Event-ID as a browser does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client, type Publication } from '../../../src/client/index.js';
import { connectAs, FetchEventSource, signToken, startServer, until, WAIT, type Kind } from './helpers.js';

function sdk(t: Parameters<typeof startServer>[0], url: string, kind: Kind, token: string): Client {
  const client = new Client(url, {
    token,
    transports: [kind],
    EventSource: FetchEventSource as never,
    network: null,
    reconnect: { minDelayMs: 20, maxDelayMs: 200 },
  });
  t.after(() => client.close());
  return client;
}

for (const kind of ['sse', 'poll'] as const) {
  test(`client SDK over ${kind}: connect, subscribe, receive and publish alongside a WebSocket client; close ends the session`, async (t) => {
    const { url, server } = await startServer(t, { config: { fallbacks: { sseRetryMs: 50 } } });
    const ws = await connectAs(t, url, 'walter');
    await ws.ok('sub', { channel: 'chat/lobby' });
    const client = sdk(t, url.replace('ws:', 'http:'), kind, await signToken('hannah'));
    const got: Publication[] = [];
    client.subscribe('chat/lobby', { onMessage: (p) => got.push(p) });
    await client.connect();
    assert.equal(client.transport, kind);
    assert.equal(client.user, 'hannah');
    await until(() => server.hub.channelStats().some((c) => c.channel === 'chat/lobby' && c.subscribers === 2), WAIT, 'the SDK subscription');

    await ws.ok('pub', { channel: 'chat/lobby', data: { text: 'hi from ws' } });
    await ws.nextOp('msg'); // its own
    await until(() => got.length === 1, WAIT, 'the publication at the SDK');
    assert.deepEqual(got[0]!.data, { text: 'hi from ws' });
    assert.equal(got[0]!.from?.user, 'walter');

    const ack = await client.publish('chat/lobby', { text: 'hi from the SDK' });
    assert.equal(ack.offset, 2);
    const msg = await ws.nextOp('msg');
    assert.deepEqual([msg.data, msg.from.user], [{ text: 'hi from the SDK' }, 'hannah']);

    client.close();
    await until(() => server.hub.sessions.size === 1, WAIT, 'the session to end (DELETE)');
  });
}

test('client SDK over SSE: a stream dropped mid-way is resumed by EventSource with Last-Event-ID — same session, nothing lost or repeated', async (t) => {
  const { url, server } = await startServer(t, { config: { fallbacks: { sseRetryMs: 50 } } });
  const client = sdk(t, url.replace('ws:', 'http:'), 'sse', await signToken('eve'));
  const got: unknown[] = [];
  client.subscribe('feed', { onMessage: (p) => got.push(p.data) });
  await client.connect();
  await until(() => server.hub.subscriptionCount === 1, WAIT, 'the subscription');
  const clientId = client.clientId;
  for (let i = 1; i <= 3; i++) await server.publish('feed', i);
  await until(() => got.length === 3, WAIT, 'three messages');

  const [source] = [...FetchEventSource.instances];
  source!.drop();
  for (let i = 4; i <= 6; i++) await server.publish('feed', i);
  await until(() => got.length === 6, WAIT, 'the messages published during the drop');
  await server.publish('feed', 7);
  await until(() => got.length === 7, WAIT, 'a live message');
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
  assert.equal(source!.connections, 2);
  assert.equal(client.clientId, clientId, 'the same session');
  assert.equal(server.hub.sessions.size, 1);
});
