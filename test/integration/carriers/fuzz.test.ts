/**
 * Random input on the fallback routes of the real server (HTTP, loopback):
 * whatever the body, headers, method or path under `<path>/session`, the
 * answer is a documented status with a JSON error (or the documented
 * success), the process stays up, and a long-polling session and a
 * WebSocket client that do nothing wrong keep working throughout.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { connectAs, openSession, poll, post, request, signToken, startServer, WAIT } from './helpers.js';

const STATUSES = new Set([200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 429, 503]);

const bodies = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.array(fc.record({ op: fc.constantFrom('sub', 'pub', 'ping', 'history', 'bogus'), id: fc.oneof(fc.nat(5), fc.string({ maxLength: 3 })), channel: fc.constantFrom('feed', 'a//b', '#', '') }, { requiredKeys: ['op'] }), { maxLength: 5 }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 60 }),
  fc.constantFrom('', '[', '{"transport":"sse"}', '{"transport":"poll"}', '{"transport":"websocket"}', '[{"op":"pub","id":1,"channel":"feed","data":"x"}]', 'null'),
);
const contentTypes = fc.constantFrom('application/json', 'text/plain', 'application/json; charset=utf-8', '');
const methods = fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'OPTIONS');

test('random requests on the fallback routes: documented statuses, JSON errors, the server and a well-behaved session unaffected', async (t) => {
  const { base, url, server } = await startServer(t, { config: { fallbacks: { pollTimeoutMs: 200 }, limits: { connectionRatePerIp: { perSecond: 10000, burst: 10000 }, maxConnectionsPerIp: 10000, messageRate: { perSecond: 10000, burst: 10000 } } } });
  const token = await signToken('fuzz');
  const good = await openSession(t, base, 'poll', { headers: { Authorization: `Bearer ${token}` } });
  assert.equal((await post(base, good, [{ op: 'sub', id: 1, channel: 'feed' }])).status, 204);
  let ack = (await poll(base, good, 0)).json().messages.at(-1).id as number;
  const ws = await connectAs(t, url, 'bystander');
  await ws.ok('sub', { channel: 'feed' });
  // A session of the fuzzer's own, to aim at real session routes too.
  const target = await openSession(t, base, 'poll', { headers: { Authorization: `Bearer ${token}` } });

  let round = 0;
  // What the fuzzer did to the set of sessions: the ones it opened (201), and whether it ended its target (DELETE → 204).
  const opened: string[] = [];
  let targetEnded = false;
  await fc.assert(
    fc.asyncProperty(
      methods,
      fc.constantFrom('', `/${target}`, `/${target}/poll?ack=0`, `/${target}/events`, '/nope', `/${target}/x`, '/%00', `/${target}/poll?ack=-1`),
      bodies,
      contentTypes,
      fc.boolean(),
      async (method, path, body, contentType, withToken) => {
        const headers: Record<string, string> = {};
        if (contentType) headers['Content-Type'] = contentType;
        if (withToken) headers.Authorization = `Bearer ${token}`;
        const res = await request(`${base}/rt/session${path}`, { method, headers, body: method === 'GET' || method === 'OPTIONS' ? undefined : body, ms: 2000 });
        assert.ok(STATUSES.has(res.status), `${method} ${path} ${JSON.stringify(body)} → ${res.status} ${res.text}`);
        if (res.status === 201) opened.push(res.json().session);
        if (method === 'DELETE' && path === `/${target}` && res.status === 204) targetEnded = true;
        if (res.status >= 400) {
          const json = res.json() as { error?: unknown };
          assert.equal(typeof json.error, 'string', `${method} ${path} → ${res.status} without a JSON error: ${res.text}`);
        }
        // Every tenth round: the well-behaved clients still work.
        if (++round % 10 === 0) {
          await server.publish('feed', round);
          const got = (await poll(base, good, ack)).json().messages as Array<{ id: number; msg: { op: string; data: unknown } }>;
          assert.ok(got.some((m) => m.msg.op === 'msg' && m.msg.data === round), `the poll session lost publication ${round}`);
          ack = got.at(-1)!.id;
          // The fuzzer's own batches may publish to the feed too (its target session is a real one): wait for this round's.
          const mine = await ws.next((m) => m.op === 'msg' && m.data === round, WAIT, `publication ${round} on the WebSocket bystander`);
          assert.equal(mine.channel, 'feed');
        }
      },
    ),
    { numRuns: 150 },
  );
  // Exactly the sessions there should be: the two well-behaved clients, the target unless ended, what the fuzzer opened.
  const sessions = [...server.hub.sessions.values()];
  assert.deepEqual(
    sessions.filter((s) => s.transport.kind === 'websocket').map((s) => s.id),
    [ws.clientId],
  );
  assert.deepEqual(
    sessions
      .filter((s) => s.transport.kind !== 'websocket')
      .map((s) => (s.transport as unknown as { id: string }).id)
      .sort(),
    [good, ...(targetEnded ? [] : [target]), ...opened].sort(),
  );
});
