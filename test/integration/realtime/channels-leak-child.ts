/**
 * The leak check of channels-leak.test.ts, run in a child process started
 * with `--expose-gc` (so `global.gc()` gives comparable heap readings):
 * CYCLES × (connect → auth → subscribe to three channels, one with presence,
 * and a pattern → publish → receive → close or terminate, alternating), then
 * one JSON line on stdout with what the server, broker and presence store
 * still hold and the heap before and after. The parent asserts on it.
 */
import { createRealtime, until, WAIT } from './helpers-core.js';

const CYCLES = Number(process.env.LEAK_CYCLES ?? 500);
const WARMUP = 50;
const TIME_BUDGET_MS = Number(process.env.LEAK_BUDGET_MS ?? 30_000);

const gc = (globalThis as { gc?: () => void }).gc;
if (typeof gc !== 'function') {
  process.stdout.write(JSON.stringify({ error: 'run with --expose-gc' }) + '\n');
  process.exit(2);
}

async function settleHeap(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

const rt = await createRealtime([
  { prefix: 'pres', presence: 'full', presenceBatchMs: 5 },
  { prefix: 'leak' }, // no history: nothing may remain once nobody listens
]);
const hub = rt.server.hub;

async function cycle(i: number): Promise<void> {
  const c = await rt.connect(`user${i % 7}`, { token: { info: { i } } });
  await c.ok('sub', { channel: `pres/${i}`, presence: true });
  await c.ok('sub', { channel: `leak/${i}` });
  await c.ok('sub', { channel: `leak/${i}/+` });
  await c.ok('pub', { channel: `leak/${i}`, data: { i } });
  await c.ok('pub', { channel: `leak/${i}/x`, data: { i } });
  await c.ok('presence', { channel: `pres/${i}` });
  await c.waitMessages(undefined, 2);
  if (i % 2 === 0) await c.close();
  else {
    c.terminate();
    await c.closed;
  }
}

const started = Date.now();
let done = 0;
let error: string | null = null;
let heapBefore = 0;
try {
  for (let i = 0; i < WARMUP; i++) await cycle(-1 - i);
  await until(() => hub.sessions.size === 0, WAIT, 'the warm-up sessions to close');
  await new Promise((resolve) => setTimeout(resolve, 20));
  heapBefore = await settleHeap();
  for (let i = 0; i < CYCLES; i++) {
    if (Date.now() - started > TIME_BUDGET_MS) throw new Error(`time budget of ${TIME_BUDGET_MS} ms exceeded after ${done} cycles`);
    await cycle(i);
    done++;
  }
  await until(() => hub.sessions.size === 0, WAIT, 'every session to close');
  await new Promise((resolve) => setTimeout(resolve, 30)); // presence batch timers (5 ms) fire
} catch (err) {
  error = String((err as Error).stack ?? err);
}
const heapAfter = await settleHeap();
const server = rt.server as unknown as { sockets: Set<unknown>; connectionsPerIp: Map<string, number>; connectionCount: number };
const report = {
  error,
  cycles: done,
  elapsedMs: Date.now() - started,
  sessions: hub.sessions.size,
  subscriptionCount: hub.subscriptionCount,
  channelStats: hub.channelStats(),
  presenceBatches: (hub as unknown as { presenceBatches: Map<string, unknown> }).presenceBatches.size,
  sockets: server.sockets.size,
  connectionCount: server.connectionCount,
  connectionsPerIp: server.connectionsPerIp.size,
  broker: rt.broker.stats(),
  presenceChannels: rt.presence.channelCount,
  heapBefore,
  heapAfter,
};
await rt.close();
process.stdout.write(JSON.stringify(report) + '\n');
