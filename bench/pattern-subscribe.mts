// The cost of a pattern subscription on Redis Cluster (docs/benchmarks.md, "Pattern subscriptions on
// Redis Cluster"): a 3-master cluster on loopback (test/support/redis.ts), 3 RedisBrokers in this process;
// one takes ROUNDS fresh patterns one after another (each a roll call of the other nodes), another makes
// PUBS publishes on channels no pattern matches. Prints p50/p99 in ms. Bounded in count; the cluster is
// stopped by PID at the end.
//   node --import tsx bench/pattern-subscribe.mts [checkout root, default: this one]
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RedisCluster } from '../test/support/redis.js';
const root = process.argv[2] ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { RedisBroker } = await import(`${root}/src/brokers/redis/redis-broker.ts`);
const ROUNDS = 300, PUBS = 1000;
const cluster = await RedisCluster.start({ masters: 3 });
const brokers = [0, 1, 2].map(() => new RedisBroker({ cluster: cluster.urls, onError: () => {} }));
try {
  await Promise.all(brokers.map((b: any) => b.ready()));
  const [a, b] = brokers as any[];
  a.setHandler({ onPublication() {}, onJoin() {}, onLeave() {} });
  await b.publish('warm/x', 0);
  const q = (xs: number[], p: number) => xs.slice().sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(2);
  const subs: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    await a.subscribe(`bench${i}/+`);
    subs.push(performance.now() - t);
  }
  const pubs: number[] = [];
  for (let i = 0; i < PUBS; i++) {
    const t = performance.now();
    await b.publish(`other${i % 50}/x`, i);
    pubs.push(performance.now() - t);
  }
  console.log(JSON.stringify({ root, subscribePatternMs: { p50: q(subs, 0.5), p99: q(subs, 0.99) }, publishMs: { p50: q(pubs, 0.5), p99: q(pubs, 0.99) } }));
} finally {
  await Promise.all(brokers.map((b: any) => b.close()));
  await cluster.dispose();
}
