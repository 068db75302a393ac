/**
 * A worker thread of `switchboard bench echo --workers W`: runs its share of
 * the connections ({@link echoLoad}) and posts 'ready', progress and the
 * result to the main thread, which says 'go' once every worker is connected.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { echoLoad, type EchoBenchOptions, type EchoWorkerMessage } from './echo.js';

const port = parentPort!;
const { options, connections } = workerData as { options: EchoBenchOptions; connections: number };
const post = (m: EchoWorkerMessage): void => port.postMessage(m);

echoLoad(
  options,
  connections,
  () =>
    new Promise<void>((resolve) => {
      port.once('message', () => resolve());
      post({ type: 'ready' });
    }),
  (received) => post({ type: 'progress', received }),
).then(
  (part) => post({ type: 'result', part }),
  (err: unknown) => post({ type: 'error', message: (err as Error)?.message ?? String(err) }),
);
