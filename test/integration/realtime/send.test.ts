/**
 * `send`: an rpc without a reply (docs/protocol.md, "Requests and replies").
 * The handler runs in the request's turn and its result is dropped; nothing
 * answers a send but a failure, by an `error` without id. Each case waits
 * for what it expects (the handler to run, the error), then sends a `ping`:
 * what the send would still have written (a reply follows its handler at
 * once) comes before the `pong`, so the messages before the `pong` are all
 * the send got.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openSession, poll, post } from '../carriers/helpers.js';
import { connect, connectAs, signToken, startServer, until, WAIT, type RtClient } from './helpers.js';

/** Send a ping and return what arrived from `from` up to its pong (the pong excluded). */
async function upToPong(c: RtClient, from: number): Promise<Array<Record<string, unknown>>> {
  c.send({ op: 'ping' });
  await c.waitFor((m) => m.op === 'pong', WAIT, 'the pong', from);
  const got = c.received.slice(from);
  return got.slice(0, got.findIndex((m) => m.op === 'pong'));
}

/** Wait for the first `error` from `from` on, then return everything up to a ping's pong. */
async function answered(c: RtClient, from: number): Promise<Array<Record<string, unknown>>> {
  await c.waitFor((m) => m.op === 'error', WAIT, 'the error', from);
  return upToPong(c, from);
}

test('send runs the handler with the caller, in its turn, and nothing answers it', async (t) => {
  const { url, server } = await startServer(t, { config: { namespaces: [{ prefix: 'game' }] } });
  const calls: Array<{ data: unknown; user: string; client: string }> = [];
  server.rpc('input', (data, ctx) => {
    calls.push({ data, user: ctx.user, client: ctx.client });
    return { ignored: true };
  });
  const c = await connectAs(t, url, 'alice');
  const from = c.received.length;
  c.send({ op: 'send', method: 'input', data: { k: 1 } });
  c.send({ op: 'send', method: 'input' });
  c.send({ op: 'send', method: 'input', data: { k: 2 } });
  await until(() => calls.length === 3, WAIT, 'the three sends to run');
  assert.deepEqual(await upToPong(c, from), [], 'no reply to a send');
  assert.deepEqual(
    calls.map((x) => x.data),
    [{ k: 1 }, undefined, { k: 2 }],
    'in the order sent',
  );
  assert.ok(calls.every((x) => x.user === 'alice' && x.client === c.clientId));
});

test('a send waits for the requests before it (it runs in its turn)', async (t) => {
  const { url, server } = await startServer(t, { config: { namespaces: [{ prefix: 'game' }] } });
  const order: string[] = [];
  server.rpc('mark', (data) => void order.push(String(data)));
  const c = await connect(t, url);
  // Sent before the auth's reply: the send runs after the auth, as an authenticated request.
  c.send({ op: 'auth', id: 1, token: await signToken('bob') });
  c.send({ op: 'send', method: 'mark', data: 'after auth' });
  await c.waitFor((m) => m.id === 1, WAIT, 'the auth reply');
  await until(() => order.length === 1, WAIT, 'the send to run');
  assert.deepEqual(order, ['after auth']);
  assert.equal(c.received.filter((m) => m.op === 'error').length, 0, JSON.stringify(c.received));
});

test('a send that fails is answered by an error without id: unknown method 404, refused data 400, a failing handler 500 (and a log line)', async (t) => {
  const { url, server, logs } = await startServer(t, { config: { namespaces: [{ prefix: 'game' }] } });
  server.rpc('boom', () => {
    throw new Error('handler exploded');
  });
  let echoed = 0;
  server.rpc('echo', () => void echoed++);
  const c = await connectAs(t, url, 'carol');

  const unknown = c.received.length;
  c.send({ op: 'send', method: 'nope' });
  assert.deepEqual(await answered(c, unknown), [{ op: 'error', code: 404, message: 'no rpc method nope' }]);

  const deep = c.received.length;
  c.send({ op: 'send', method: 'echo', data: JSON.parse(`${'['.repeat(40)}1${']'.repeat(40)}`) });
  assert.deepEqual(await answered(c, deep), [{ op: 'error', code: 400, message: 'rpc.data is nested deeper than 32 levels' }]);
  assert.equal(echoed, 0, 'refused before the handler ran');

  const failing = c.received.length;
  c.send({ op: 'send', method: 'boom' });
  assert.deepEqual(await answered(c, failing), [{ op: 'error', code: 500, message: 'rpc boom failed' }]);
  assert.ok(logs.some((l) => l.msg === 'rpc handler failed' && l.method === 'boom' && l.err === 'handler exploded'));

  // The connection goes on.
  c.send({ op: 'send', method: 'echo' });
  await until(() => echoed === 1, WAIT, 'the next send to run');
  assert.equal(c.isClosed, false);
});

test('malformed sends get 400 without running anything: an id, no method, a method that is not a string', async (t) => {
  const { url, server } = await startServer(t, { config: { namespaces: [{ prefix: 'game' }] } });
  let calls = 0;
  server.rpc('m', () => void calls++);
  const c = await connectAs(t, url, 'dave');
  const cases: Array<[object, Record<string, unknown>]> = [
    [{ op: 'send', id: 5, method: 'm' }, { op: 'error', id: 5, code: 400, message: 'unknown field "id" in send' }],
    [{ op: 'send' }, { op: 'error', code: 400, message: 'send.method must be a non-empty string' }],
    [{ op: 'send', method: 7 }, { op: 'error', code: 400, message: 'send.method must be a non-empty string' }],
    [{ op: 'send', method: 'x'.repeat(129) }, { op: 'error', code: 400, message: 'send.method must be a non-empty string' }],
  ];
  for (const [message, answer] of cases) {
    const from = c.received.length;
    c.send(message);
    assert.deepEqual(await answered(c, from), [answer], JSON.stringify(message));
  }
  assert.equal(calls, 0);
});

test('before auth, on a server that needs it: 401 without id, and the handler does not run', async (t) => {
  const { url, server } = await startServer(t, { config: { namespaces: [{ prefix: 'game' }] } });
  let calls = 0;
  server.rpc('m', () => void calls++);
  const c = await connect(t, url);
  const from = c.received.length;
  c.send({ op: 'send', method: 'm' });
  assert.deepEqual(await answered(c, from), [{ op: 'error', code: 401, message: 'send auth first' }]);
  assert.equal(calls, 0);
});

test('sends count against the message rate like any message: past the budget they are refused with 429', async (t) => {
  const { url, server } = await startServer(t, {
    config: { namespaces: [{ prefix: 'game' }], limits: { messageRate: { perSecond: 1, burst: 5 } } },
  });
  let calls = 0;
  server.rpc('m', () => void calls++);
  const c = await connectAs(t, url, 'erin', undefined, { ignoreErrors: true });
  for (let i = 0; i < 8; i++) c.send({ op: 'send', method: 'm' });
  await c.waitFor((m) => m.op === 'error' && m.code === 429, WAIT, 'a 429');
  await until(() => calls >= 3, WAIT, 'the sends within the budget to run');
  assert.ok(calls < 8, `${calls} of 8 ran`);
  const refused = c.received.filter((m) => m.op === 'error');
  assert.ok(refused.every((m) => m.code === 429 && m.id === undefined), JSON.stringify(refused));
});

test('over long-polling: a send in a batch runs, and only the other requests are answered', async (t) => {
  const { base, server } = await startServer(t, { config: { namespaces: [{ prefix: 'game' }] } });
  const got: unknown[] = [];
  server.rpc('input', (data) => void got.push(data));
  const id = await openSession(t, base, 'poll', { headers: { Authorization: `Bearer ${await signToken('pia')}` } });
  assert.equal((await post(base, id, [{ op: 'send', method: 'input', data: 1 }, { op: 'rpc', id: 2, method: 'input', data: 2 }])).status, 204);
  const replies: Array<Record<string, unknown>> = [];
  const deadline = Date.now() + WAIT;
  let ack = 0;
  while (!replies.some((m) => m.id === 2) && Date.now() < deadline) {
    const body = (await poll(base, id, ack)).json() as { messages: Array<{ id: number; msg: Record<string, unknown> }> };
    replies.push(...body.messages.map((m) => m.msg));
    if (body.messages.length > 0) ack = body.messages.at(-1)!.id;
  }
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(replies, [{ op: 'ok', id: 2, data: null }]);
});
