/**
 * A real server (./redis.ts, ./nats.ts) for the tests of one suite: started
 * in its `before` hook, stopped and its temp dirs removed in its `after`.
 * Registers node:test hooks: for test files only (./child-server.ts is the
 * hook-free part).
 */
import { after, before } from 'node:test';

/** Start `start()`'s server before the tests of the enclosing suite (the file, at top level); `server()` is it, inside them. */
export function serverForSuite<S extends { dispose(): Promise<void> }>(start: () => Promise<S>): () => S {
  let server: S | undefined;
  before(async () => {
    server = await start();
  });
  after(async () => {
    await server?.dispose();
  });
  return () => {
    if (server === undefined) throw new Error('the server is not started: use it inside the tests of the suite');
    return server;
  };
}
