/**
 * A node's view of its broker's health, through `/metrics` and its log,
 * against a real redis-server behind a TCP relay (test/support/tcp-relay.ts)
 * that silences the node's subscriber connection: the probe's round trip
 * (`switchboard_broker_rtt_seconds`), the failed probe
 * (`..._probes_failed_total`, one log line), the subscription made again
 * (`..._reconnects_total`), the publications missed meanwhile refilled
 * (`..._gaps_refilled_total`) and delivered to the client in order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectAs, httpRequest, startServer, type TestServer } from '../integration/realtime/helpers.js';
import { RedisServer } from '../support/redis.js';
import { TcpRelay } from '../support/tcp-relay.js';
import { sleep, until } from '../support/wait.js';

/** Scrape until `series` satisfies `ok` (bounded). */
async function metricUntil(s: TestServer, series: string, ok: (v: number) => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok(await metric(s, series))) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what} (${series} = ${await metric(s, series)})`);
    await sleep(50);
  }
}

async function metric(s: TestServer, series: string): Promise<number> {
  const res = await httpRequest(s.base, '/metrics');
  const line = res.text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line !== undefined, `${series} is exported`);
  return Number(line.slice(series.length + 1));
}

test('redis broker health: probe round trip, a silenced subscription found by the probe, made again, its gap refilled', async (t) => {
  const redis = await RedisServer.start();
  t.after(() => redis.dispose());
  const relay = await TcpRelay.start(Number(new URL(redis.url).port));
  t.after(() => relay.close());
  const s = await startServer(t, {
    config: { broker: { type: 'redis', url: `redis://127.0.0.1:${relay.port}`, probeIntervalMs: 200, probeTimeoutMs: 600 }, namespaces: [{ prefix: 'room', history: { size: 100, ttlMs: 0 } }] },
  });
  await metricUntil(s, 'switchboard_broker_rtt_seconds_count', (v) => v >= 2, 10_000, 'probes answered');
  assert.equal(await metric(s, 'switchboard_broker_probes_failed_total'), 0);
  assert.ok((await metric(s, 'switchboard_broker_rtt_seconds_sum')) > 0);

  const alice = await connectAs(t, s.url, 'alice');
  await alice.ok('sub', { channel: 'room/1' });
  await s.server.publish('room/1', 'before');
  await alice.waitFor((m) => m.op === 'msg' && m.data === 'before', 5000, 'before');

  const subscribers = relay.connections.filter((c) => /SUBSCRIBE/i.test(c.sent()));
  assert.equal(subscribers.length, 1, "the node's one subscriber connection");
  subscribers[0]!.silence();
  for (let i = 1; i <= 3; i++) await s.server.publish('room/1', `during ${i}`);
  await metricUntil(s, 'switchboard_broker_reconnects_total', (v) => v >= 1, 20_000, 'the subscription made again');
  assert.ok((await metric(s, 'switchboard_broker_probes_failed_total')) >= 1);
  await alice.waitFor((m) => m.op === 'msg' && m.data === 'during 3', 10_000, 'the refilled publications');
  await s.server.publish('room/1', 'after');
  await alice.waitFor((m) => m.op === 'msg' && m.data === 'after', 5000, 'after');
  assert.deepEqual(
    alice.messages('room/1').map((m) => [m.offset, m.data]),
    [[1, 'before'], [2, 'during 1'], [3, 'during 2'], [4, 'during 3'], [5, 'after']],
  );
  assert.equal(await metric(s, 'switchboard_broker_gaps_refilled_total'), 3);
  assert.equal(await metric(s, 'switchboard_broker_up'), 1);
  assert.equal(s.logs.filter((l) => l.msg === 'broker probe failed').length, 1, 'one log line for the failing series');
  await until(() => s.logs.some((l) => l.msg === 'broker probe answered again'), 10_000, 'the recovery logged');
  assert.equal(s.logs.filter((l) => l.msg === 'broker probe failed').length, 1, 'still one line: no probe failed after the recovery');
});
