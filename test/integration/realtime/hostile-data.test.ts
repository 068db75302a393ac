/**
 * Application data that an encoder or decoder cannot take (issue #8): a
 * publication nested 5,000 levels deep in JSON, or 150 in MessagePack, used
 * to crash the process at fan-out and to stop every history save. Each entry
 * point now refuses such data before anything is stored, with a 400 naming
 * the problem, and every subscriber — JSON and MessagePack — keeps getting
 * the publications that follow.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { encode as pack } from '@msgpack/msgpack';
import { InvalidDataError } from '../../../src/wire/data.js';
import { openSession, poll, post, signToken } from '../carriers/helpers.js';
import { api, API_KEY, connect, connectAs, httpRequest, launchServer, startServer, type HttpResult, type RtClient } from './helpers.js';

const namespaces = [{ prefix: 'chat', history: { size: 100, ttlMs: 0 }, presence: 'full' }];
const MSGPACK = { protocols: ['switchboard.v1.msgpack'] };

/** JSON text of `[[[…]]]`, `depth` levels. */
function deepJson(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

/** A `pub` whose data is the raw JSON text `data`. */
function pubText(id: number, channel: string, data: string): string {
  return `{"op":"pub","id":${id},"channel":${JSON.stringify(channel)},"data":${data}}`;
}

/** A MessagePack `pub` whose data is `depth` nested one-element arrays around nil. */
function deepMsgpackPub(id: number, channel: string, depth: number): Uint8Array {
  const head = pack({ op: 'pub', id, channel });
  const fields = head[0]! & 0x0f;
  const data = new Uint8Array(depth + 1).fill(0x91);
  data[depth] = 0xc0;
  return Buffer.concat([Buffer.from([0x80 | (fields + 1)]), head.subarray(1), pack('data'), data]);
}

/** An API request whose JSON body is the text `body` (too deep for the test's own JSON.stringify). */
function apiText(base: string, path: string, body: string): Promise<HttpResult> {
  return httpRequest(base, path, { body, headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' } });
}

/** A JSON and a MessagePack subscriber on `channel`. */
async function subscribers(t: Parameters<typeof connectAs>[0], url: string, channel: string): Promise<RtClient[]> {
  const json = await connectAs(t, url, 'json-reader');
  const mp = await connectAs(t, url, 'msgpack-reader', undefined, MSGPACK);
  for (const c of [json, mp]) await c.ok('sub', { channel });
  return [json, mp];
}

/** Every subscriber gets `data` as the next publication on `channel`, and nothing was delivered before it. */
async function allReceive(clients: RtClient[], channel: string, data: unknown): Promise<void> {
  for (const c of clients) {
    const m = await c.nextOp('msg');
    assert.equal(m.channel, channel);
    assert.deepEqual(m.data, data, 'the next publication, nothing in between');
    assert.equal(c.isClosed, false);
  }
}

describe('hostile application data', () => {
  test('a JSON pub nested 5,000 levels: 400 naming the limit, nothing stored, JSON and MessagePack subscribers unaffected', async (t) => {
    const { url, logs } = await startServer(t, { config: { namespaces } });
    const readers = await subscribers(t, url, 'chat/deep');
    const attacker = await connectAs(t, url, 'mallory');
    await attacker.ok('sub', { channel: 'chat/deep' });
    attacker.ws.send(pubText(1, 'chat/deep', deepJson(5000)));
    const refused = await attacker.nextOp('error');
    assert.deepEqual([refused.id, refused.code, refused.message], [1, 400, 'pub.data is nested deeper than 32 levels']);
    assert.ok(logs.some((l) => l.msg === 'data refused' && l.problem === 'pub.data is nested deeper than 32 levels'));
    // The same connection goes on; its next publication is the first one stored.
    const ok = await attacker.ok('pub', { channel: 'chat/deep', data: 'after' });
    assert.equal(ok.offset, 1);
    await allReceive(readers, 'chat/deep', 'after');
    const history = await attacker.ok('history', { channel: 'chat/deep' });
    assert.deepEqual(history.publications.map((p: { data: unknown }) => p.data), ['after']);
  });

  test('a MessagePack pub nested 150 levels (past the encoder\'s 100): 400, subscribers of both encodings unaffected', async (t) => {
    const { url } = await startServer(t, { config: { namespaces } });
    const readers = await subscribers(t, url, 'chat/mp');
    const attacker = await connectAs(t, url, 'mallory', undefined, MSGPACK);
    attacker.ws.send(deepMsgpackPub(7, 'chat/mp', 150), { binary: true });
    const refused = await attacker.nextOp('error');
    assert.deepEqual([refused.id, refused.code], [7, 400]);
    await attacker.ok('pub', { channel: 'chat/mp', data: { fine: [1, 2] } });
    await allReceive(readers, 'chat/mp', { fine: [1, 2] });
  });

  test('data exactly at the depth limit is published and reaches both encodings; one level more is refused', async (t) => {
    const { url } = await startServer(t, { config: { namespaces, limits: { maxDataDepth: 4 } } });
    const readers = await subscribers(t, url, 'chat/edge');
    const p = await connectAs(t, url, 'p');
    await p.ok('pub', { channel: 'chat/edge', data: [[[[1]]]] });
    await allReceive(readers, 'chat/edge', [[[[1]]]]);
    const refused = await p.fails('pub', { channel: 'chat/edge', data: [[[[[1]]]]] }, 400);
    assert.equal(refused.message, 'pub.data is nested deeper than 4 levels');
  });

  test('shapes that one encoding cannot carry are refused with the reason: Infinity, __proto__, lone surrogates', async (t) => {
    const { url } = await startServer(t, { config: { namespaces } });
    const readers = await subscribers(t, url, 'chat/odd');
    const p = await connectAs(t, url, 'p');
    const cases: Array<[string, string]> = [
      ['1e400', 'pub.data holds a number that JSON cannot carry (Infinity)'],
      ['{"__proto__":1}', 'pub.data holds the key "__proto__"'],
      ['"\\ud800"', 'pub.data holds a string with a lone surrogate (not valid Unicode)'],
      ['{"\\udc00":1}', 'pub.data holds a key with a lone surrogate (not valid Unicode)'],
    ];
    for (const [i, [data, reason]] of cases.entries()) {
      p.ws.send(pubText(i + 1, 'chat/odd', data));
      const refused = await p.nextOp('error');
      assert.deepEqual([refused.id, refused.code, refused.message], [i + 1, 400, reason], data);
    }
    await p.ok('pub', { channel: 'chat/odd', data: '\ud83d\ude00 paired surrogates are fine' });
    await allReceive(readers, 'chat/odd', '\ud83d\ude00 paired surrogates are fine');
  });

  test('MessagePack extensions (a timestamp) in data are refused: no faithful JSON form', async (t) => {
    const { url } = await startServer(t, { config: { namespaces } });
    const p = await connectAs(t, url, 'p', undefined, MSGPACK);
    p.ws.send(pack({ op: 'pub', id: 3, channel: 'chat/ext', data: { at: new Date(0) } }), { binary: true });
    const refused = await p.nextOp('error');
    assert.deepEqual([refused.id, refused.code, refused.message], [3, 400, 'pub.data holds a Date, not a plain object']);
  });

  test('a deep value where a name is expected (op, a broadcast channel) is named by its kind, not stringified: 400, not 1011 / 503', async (t) => {
    const { url, base } = await startServer(t, { config: { namespaces } });
    const c = await connectAs(t, url, 'c');
    c.ws.send(`{"op":${'{"a":'.repeat(9000)}1${'}'.repeat(9000)},"id":4}`);
    const refused = await c.nextOp('error');
    assert.deepEqual([refused.id, refused.code, refused.message], [4, 400, 'unknown op an object']);
    assert.equal(c.isClosed, false);
    const res = await apiText(base, '/api/broadcast', `{"channels":[${deepJson(6000)}],"data":1}`);
    assert.equal(res.status, 400, res.text);
    assert.deepEqual(res.json(), { error: 'invalid channel an array' });
  });

  test('rpc: deep data is refused before the handler runs; a handler returning a cycle gets 500, the connection goes on', async (t) => {
    const { url, server } = await startServer(t, { config: { namespaces } });
    let calls = 0;
    server.rpc('echo', (data) => {
      calls++;
      return data;
    });
    server.rpc('cycle', () => {
      const o: Record<string, unknown> = {};
      o.self = o;
      return o;
    });
    const c = await connectAs(t, url, 'c');
    c.ws.send(`{"op":"rpc","id":1,"method":"echo","data":${deepJson(3000)}}`);
    const refused = await c.nextOp('error');
    assert.deepEqual([refused.id, refused.code, refused.message], [1, 400, 'rpc.data is nested deeper than 32 levels']);
    assert.equal(calls, 0);
    const failed = await c.fails('rpc', { method: 'cycle' }, 500);
    assert.equal(failed.message, 'rpc cycle failed');
    assert.deepEqual((await c.ok('rpc', { method: 'echo', data: { a: 1 } })).data, { a: 1 });
  });

  test('HTTP API: /api/publish and /api/broadcast refuse deep data with 400 and store nothing; /api/ticket refuses a deep info', async (t) => {
    const { url, base } = await startServer(t, { config: { namespaces } });
    const readers = await subscribers(t, url, 'chat/api');
    const publish = await apiText(base, '/api/publish', `{"channel":"chat/api","data":${deepJson(5000)}}`);
    assert.equal(publish.status, 400, publish.text);
    assert.deepEqual(publish.json(), { error: 'data is nested deeper than 32 levels' });
    const broadcast = await apiText(base, '/api/broadcast', `{"channels":["chat/api","chat/other"],"data":${deepJson(5000)}}`);
    assert.equal(broadcast.status, 400, broadcast.text);
    assert.deepEqual(broadcast.json(), { error: 'data is nested deeper than 32 levels' });
    const ticket = await apiText(base, '/api/ticket', `{"user":"u","info":${deepJson(100)}}`);
    assert.equal(ticket.status, 400, ticket.text);
    assert.deepEqual(ticket.json(), { error: 'info is nested deeper than 32 levels' });
    const ok = await api(base, '/api/publish', { channel: 'chat/api', data: 'fine' });
    assert.equal(ok.json().offset, 1, 'nothing was stored before');
    await allReceive(readers, 'chat/api', 'fine');
  });

  test('realtime.publish(): data that cannot travel rejects with InvalidDataError (cycle, Date, bigint, undefined, function)', async (t) => {
    const { url, server } = await startServer(t, { config: { namespaces } });
    const readers = await subscribers(t, url, 'chat/lib');
    const cycle: Record<string, unknown> = {};
    cycle.me = cycle;
    const cases: Array<[unknown, string]> = [
      [cycle, 'data is nested deeper than 32 levels'],
      [{ when: new Date(0) }, 'data holds a Date, not a plain object'],
      [{ n: 10n }, 'data holds a bigint, which has no JSON form'],
      [[undefined], 'data holds undefined, which has no JSON form'],
      [{ f: () => 1 }, 'data holds a function, which has no JSON form'],
      [new Map(), 'data holds a Map, not a plain object'],
    ];
    for (const [data, reason] of cases) {
      await assert.rejects(server.publish('chat/lib', data), (err: unknown) => {
        assert.ok(err instanceof InvalidDataError);
        assert.equal(err.message, reason);
        assert.equal(err.code, 'RT_ERR_INVALID_DATA');
        return true;
      });
    }
    // Shared references are fine (a DAG), within the bound on values.
    const shared = { x: 1 };
    await server.publish('chat/lib', { a: shared, b: shared });
    await allReceive(readers, 'chat/lib', { a: { x: 1 }, b: { x: 1 } });
    // A DAG that doubles at each level would be 2^30 values to walk: refused by the bound, quickly.
    let dag: unknown = 1;
    for (let i = 0; i < 30; i++) dag = [dag, dag];
    await assert.rejects(server.publish('chat/lib', dag), /has more than 1048576 values/);
  });

  test('a token whose info claim is too deep is refused (4500 with the reason), not carried into presence', async (t) => {
    const { url } = await startServer(t, { config: { namespaces } });
    const c = await connect(t, url);
    let info: unknown = 'x';
    for (let i = 0; i < 40; i++) info = [info];
    c.send({ op: 'auth', id: 1, token: await signToken('deep', { info }) });
    const refused = await c.nextOp('error');
    assert.deepEqual([refused.code, refused.message], [401, 'the info claim is nested deeper than 32 levels']);
    assert.equal((await c.closeOf()).code, 4500);
  });

  test('long-polling: a batch entry too deep to re-encode gets a 400 error reply; the rest of the batch and the session go on', async (t) => {
    const { base, url } = await startServer(t, { config: { namespaces } });
    const readers = await subscribers(t, url, 'chat/poll');
    const token = await signToken('poller');
    const id = await openSession(t, base, 'poll', { headers: { Authorization: `Bearer ${token}` } });
    const body = `[${`{"op":"pub","id":1,"channel":"chat/poll","data":${deepJson(20000)}}`},{"op":"pub","id":2,"channel":"chat/poll","data":"next"}]`;
    const sent = await post(base, id, body);
    assert.equal(sent.status, 204, sent.text);
    const replies: Array<Record<string, unknown>> = [];
    let ack = 0;
    while (replies.filter((m) => m.id !== undefined).length < 2) {
      const res = await poll(base, id, ack);
      const messages = res.json().messages as Array<{ id: number; msg: Record<string, unknown> }>;
      for (const m of messages) replies.push(m.msg);
      ack = messages.at(-1)?.id ?? ack;
    }
    const answers = replies.filter((m) => m.id !== undefined);
    assert.deepEqual(answers[0], { op: 'error', id: 1, code: 400, message: 'message nested too deep' });
    assert.equal(answers[1]!.op, 'ok');
    await allReceive(readers, 'chat/poll', 'next');
  });

  test('history with a refused publication in it still saves and restores: a graceful restart resumes with recovered: true', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sb-hostile-'));
    const file = join(dir, 'history.snapshot');
    const config = { namespaces, broker: { type: 'memory', snapshotFile: file, snapshotIntervalMs: 0 } };
    const first = await launchServer({ config });
    const reader = await connectAs(t, first.url, 'reader');
    const sub = await reader.ok('sub', { channel: 'chat/keep' });
    const attacker = await connectAs(t, first.url, 'mallory', undefined, MSGPACK);
    attacker.ws.send(deepMsgpackPub(1, 'chat/keep', 150), { binary: true });
    assert.equal((await attacker.nextOp('error')).code, 400);
    await attacker.ok('pub', { channel: 'chat/keep', data: 'kept' });
    const seen = await reader.nextOp('msg');
    await first.server.close();
    const second = await startServer(t, { config });
    // After hooks run in the order they were added: this one after the server's close.
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const again = await connectAs(t, second.url, 'reader');
    const resumed = await again.ok('sub', { channel: 'chat/keep', since: sub.position });
    assert.equal(resumed.recovered, true);
    assert.deepEqual((await again.nextOp('msg')).data, 'kept');
    assert.equal(seen.offset, 1);
  });
});
