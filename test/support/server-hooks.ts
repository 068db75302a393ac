/**
 * A real server (./redis.ts, ./nats.ts) for the tests of one suite: started
 * in its `before` hook, stopped and its temp dirs removed in its `after`.
 * Registers node:test hooks: for test files only (./child-server.ts is the
 * hook-free part).
 */
import { after, before } from 'node:test';
import { Cluster, type ClusterBroker, type ClusterOptions } from './cluster.js';

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

/**
 * A broker (`start()`) and `switchboard serve` nodes on it (./cluster.ts)
 * for the tests of one suite: started in its `before` hook (the broker
 * first), stopped in its `after` (the nodes first). `nodes()` is the
 * cluster, whole again (a scenario that killed a node and failed before
 * restarting it leaves it so); `broker()` is the broker.
 */
export function clusterForSuite<S extends { dispose(): Promise<void> }>(
  start: () => Promise<S>,
  broker: (server: S) => ClusterBroker,
  options: Omit<ClusterOptions, 'broker'> = {},
): { broker: () => S; nodes: () => Promise<Cluster> } {
  let server: S | undefined;
  let cluster: Cluster | undefined;
  before(async () => {
    server = await start();
    cluster = await Cluster.start({ ...options, broker: broker(server) });
  });
  after(async () => {
    await cluster?.stop();
    await server?.dispose();
  });
  return {
    broker: () => {
      if (server === undefined) throw new Error('the broker is not started: use it inside the tests of the suite');
      return server;
    },
    nodes: async () => {
      if (cluster === undefined) throw new Error('the cluster is not started: use it inside the tests of the suite');
      await cluster.heal();
      return cluster;
    },
  };
}
