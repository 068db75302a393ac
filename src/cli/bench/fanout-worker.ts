/**
 * A worker thread of `switchboard bench fanout --workers W`: opens its share
 * of the subscribers ({@link SubscriberGroup}), says 'ready', posts its
 * counts while the main thread publishes, and on 'finish' (with the acked
 * offsets) reports what it received, lost and got twice.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { SubscriberGroup, type FanoutBenchOptions, type FanoutToMain, type FanoutToWorker } from './fanout.js';

const port = parentPort!;
const { options, count, deadlineInMs } = workerData as { options: FanoutBenchOptions; count: number; deadlineInMs: number };
const post = (m: FanoutToMain): void => port.postMessage(m);
const group = new SubscriberGroup(options);

async function run(): Promise<void> {
  await group.open(count, performance.now() + deadlineInMs);
  post({ type: 'ready', subscribed: group.subs.length });
  const ticker = setInterval(() => post({ type: 'progress', received: group.received, subscribed: group.subs.length }), 250);
  const finish = await new Promise<FanoutToWorker>((resolve) => port.once('message', resolve));
  clearInterval(ticker);
  post({ type: 'result', report: await group.finish(finish.ackedOffsets, finish.drainMs) });
}

run().catch((err: unknown) => post({ type: 'error', message: (err as Error)?.message ?? String(err) }));
