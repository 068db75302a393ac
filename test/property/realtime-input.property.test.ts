/**
 * Whatever a client sends, the realtime layer answers precisely and stays up
 * (MISSION: "bad input gets a precise answer and never crashes the process
 * or disturbs other connections"): random sequences of messages — random
 * JSON, near-valid requests with wrong fields, ids, channels and types, and
 * bytes that are not JSON or MessagePack at all — against a `Session` on the
 * real hub and memory broker (fake transport, so thousands of cases run in
 * seconds).
 *
 * Properties, for every sequence:
 * - `receive` never throws, and nothing is thrown later (an unhandled
 *   rejection fails the run);
 * - every frame the server sends decodes and is a known server message;
 *   an `error` carries a numeric code and a message;
 * - no request id gets more replies than requests were sent with it;
 * - a close uses a documented code (1009, or the realtime 4xxx codes);
 * - a bystander connection still receives publications and gets answers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RealtimeCloseCode } from '../../src/wire/messages.js';
import { jsonCodec, msgpackCodec, type WireCodec } from '../../src/wire/codec.js';
import { settle, setup } from '../unit/realtime/fakes.js';

const SERVER_OPS = new Set(['ok', 'error', 'msg', 'join', 'leave', 'presence', 'ping', 'pong', 'refresh', 'closing']);
const CLOSE_CODES = new Set<number>([1009, ...Object.values(RealtimeCloseCode)]);

const ids = fc.oneof({ weight: 8, arbitrary: fc.nat(20) }, { weight: 1, arbitrary: fc.constantFrom('a', 'x'.repeat(64)) });
const badIds = fc.oneof(fc.constantFrom('x'.repeat(65), ''), fc.integer({ min: -3, max: -1 }), fc.double(), fc.constant(null));
const channels = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('chat/a', 'live/b', 'room/c', 'chat/+', 'live/#') },
  { weight: 1, arbitrary: fc.constantFrom('#', 'a//b', '/a', 'a/', '', 'chat/#/x', 'x'.repeat(300)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);
const anyJson = fc.jsonValue({ maxDepth: 3 });
const since = fc.record({ offset: fc.integer({ min: -1, max: 6 }), epoch: fc.string({ maxLength: 8 }) });

/** A well-formed request of each op (what a correct client sends)... */
const wellFormed = fc.oneof(
  fc.record({ op: fc.constant('auth'), id: ids, token: fc.constantFrom('tok-alice', 'tok-bob', 'nope') }),
  fc.record({ op: fc.constant('refresh'), id: ids, token: fc.constantFrom('tok-alice', 'tok-bob', 'nope') }),
  fc.record({ op: fc.constant('sub'), id: ids, channel: channels, since, presence: fc.boolean() }, { requiredKeys: ['op', 'id', 'channel'] }),
  fc.record({ op: fc.constant('unsub'), id: ids, channel: channels }),
  fc.record({ op: fc.constant('pub'), id: ids, channel: channels, data: anyJson, key: fc.string({ maxLength: 6 }), volatile: fc.boolean() }, { requiredKeys: ['op', 'id', 'channel', 'data'] }),
  fc.record({ op: fc.constant('rpc'), id: ids, method: fc.constantFrom('echo', 'missing'), data: anyJson }, { requiredKeys: ['op', 'id', 'method'] }),
  fc.record({ op: fc.constantFrom('presence', 'history'), id: ids, channel: channels, limit: fc.integer({ min: 0, max: 2000 }) }, { requiredKeys: ['op', 'id', 'channel'] }),
  fc.record({ op: fc.constantFrom('ping', 'pong') }),
);

/** ...and the same, bent: a field of the wrong type or value, one missing, one too many, an unknown op. */
const requestish = fc.oneof(
  { weight: 6, arbitrary: wellFormed },
  {
    weight: 4,
    arbitrary: fc
      .tuple(wellFormed, fc.constantFrom('id', 'channel', 'data', 'token', 'since', 'limit', 'key', 'op', 'presence', 'method', 'extra'), fc.oneof(anyJson, badIds), fc.boolean())
      .map(([m, field, value, remove]) => {
        const bent: Record<string, unknown> = { ...m };
        if (remove) delete bent[field];
        else bent[field] = field === 'op' ? String(value) : value;
        return bent;
      }),
  },
);

/** One client message as the bytes or text a transport hands to the session. */
const payload = (codec: WireCodec) =>
  fc.oneof(
    { weight: 26, arbitrary: requestish.map((m) => codec.encode(m as never)) },
    { weight: 2, arbitrary: anyJson.map((v) => codec.encode(v as never)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) },
  );

function idKey(id: unknown): string | null {
  return typeof id === 'number' || typeof id === 'string' ? `${typeof id}:${String(id)}` : null;
}

for (const [name, codec] of [
  ['JSON', jsonCodec],
  ['MessagePack', msgpackCodec],
] as const) {
  test(`random client input over ${name}: precise answers, documented closes, no crash, the bystander unaffected`, async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(payload(codec), { minLength: 1, maxLength: 25 }), fc.boolean(), async (messages, authenticated) => {
          const s = setup();
          s.hub.rpc('echo', (data) => data);
          try {
            const by = s.connect('bystander', codec);
            assert.equal((await s.request(by.session, by.transport, { op: 'sub', channel: 'live/by' })).op, 'ok');
            const victim = s.connect(authenticated ? 'alice' : null, codec);

            const sentIds = new Map<string, number>();
            for (const m of messages) {
              let decoded: unknown;
              try {
                decoded = codec.decode(m as never);
              } catch {
                decoded = undefined;
              }
              const key = idKey((decoded as { id?: unknown } | undefined)?.id);
              if (key !== null) sentIds.set(key, (sentIds.get(key) ?? 0) + 1);
              assert.doesNotThrow(() => victim.session.receive(m as string | Uint8Array));
            }
            await settle(10);

            const replies = new Map<string, number>();
            for (const raw of victim.transport.sent) {
              const out = codec.decode(raw as never) as Record<string, unknown>;
              assert.ok(SERVER_OPS.has(String(out.op)), `unknown server op in ${JSON.stringify(out)}`);
              if (out.op === 'error') {
                assert.equal(typeof out.code, 'number', JSON.stringify(out));
                assert.equal(typeof out.message, 'string', JSON.stringify(out));
              }
              if (out.op === 'ok' || out.op === 'error') {
                const key = idKey(out.id);
                if (key !== null) replies.set(key, (replies.get(key) ?? 0) + 1);
              }
            }
            for (const [key, n] of replies) {
              assert.ok(n <= (sentIds.get(key) ?? 0), `${n} replies to id ${key}, sent ${sentIds.get(key) ?? 0} times`);
            }
            const closed = victim.transport.closedWith;
            if (closed) assert.ok(CLOSE_CODES.has(closed.code), `closed with ${closed.code} ${closed.reason}`);

            // The bystander: still subscribed, still answered.
            await s.hub.publish('live/by', 'still here');
            await settle();
            assert.ok(by.transport.pushes('msg').some((m) => m.data === 'still here'), 'the bystander lost its publication');
            assert.equal((await s.request(by.session, by.transport, { op: 'rpc', method: 'echo', data: 1 })).op, 'ok');
            assert.equal(by.transport.closedWith, null);
          } finally {
            await s.close();
          }
        }),
        { numRuns: 300 },
      );
      await settle();
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
}
