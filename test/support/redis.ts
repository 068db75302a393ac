/**
 * A real redis-server for tests: on a free loopback port, in a temp dir,
 * without persistence unless asked (`--save '' --appendonly no`), stopped by
 * its PID (SIGTERM, then SIGKILL after a bound; ./child-server.ts). Never the
 * system service, never a fixed port; every wait bounded.
 *
 * Also built from the same binary: a Redis Cluster of N masters
 * ({@link RedisCluster}, `cluster-enabled yes`, slots assigned with
 * `redis-cli --cluster create`) and a Sentinel ({@link RedisSentinel},
 * `redis-server <conf> --sentinel`).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ChildServer, freePort, startOnFreePorts } from './child-server.js';
import { sleep } from './wait.js';

export { freePort } from './child-server.js';

export const REDIS_SERVER = process.env.SWITCHBOARD_REDIS_SERVER ?? '/usr/bin/redis-server';
export const REDIS_CLI = process.env.SWITCHBOARD_REDIS_CLI ?? '/usr/bin/redis-cli';

const run = promisify(execFile);

/** `redis-cli -p <port> <args>` (loopback), its output trimmed. */
export async function redisCli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 20_000 });
  return stdout.trim();
}

export interface RedisServerOptions {
  /** `--appendonly yes --appendfsync always` (data survives a restart). Default false. */
  appendOnly?: boolean;
  /** More redis-server arguments. */
  args?: string[];
}

export class RedisServer extends ChildServer {
  readonly dir: string;

  private constructor(
    port: number,
    readonly options: RedisServerOptions,
  ) {
    super(port, 'redis-server', 8000, 5000);
    this.dir = this.tempDir('sb-redis-');
  }

  /** Start a server on a free port; resolves when it accepts connections. */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    return startOnFreePorts(async () => {
      const server = new RedisServer(await freePort(), options);
      await server.startAgain();
      return server;
    });
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Start the process again (after stop()) on the same port and dir: what persistence kept comes back. */
  async startAgain(timeoutMs = 10_000): Promise<void> {
    const persistence = this.options.appendOnly ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...persistence, '--dir', this.dir, '--daemonize', 'no', ...(this.options.args ?? [])];
    await this.launch(REDIS_SERVER, args, timeoutMs, /Ready to accept connections/);
  }

  /** Stop and start again (same port, same dir). */
  async restart(): Promise<void> {
    await this.stop();
    await this.startAgain();
  }
}

export interface RedisClusterOptions {
  /** Masters, each holding a third (or so) of the 16384 slots. Default 3. */
  masters?: number;
  /** Replicas per master (each can take over its master: `CLUSTER FAILOVER`). Default 0. */
  replicas?: number;
}

/**
 * A Redis Cluster on loopback: `masters × (1 + replicas)` redis-servers with
 * `cluster-enabled yes`, each on a free port with its cluster bus on another
 * free port (`cluster-port`, not port + 10000), joined and given the slots by
 * `redis-cli --cluster create`; started once every node says
 * `cluster_state:ok`. Stopped by PID (`dispose`).
 */
export class RedisCluster {
  private constructor(readonly nodes: RedisServer[]) {}

  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const count = (options.masters ?? 3) * (1 + (options.replicas ?? 0));
    const nodes: RedisServer[] = [];
    const cluster = new RedisCluster(nodes);
    try {
      for (let i = 0; i < count; i++) {
        const node = await startOnFreePorts(async () => {
          const bus = await freePort();
          const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(bus), '--cluster-node-timeout', '2000'];
          return RedisServer.start({ args });
        });
        nodes.push(node);
      }
      const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
      await run(REDIS_CLI, ['--cluster', 'create', ...addresses, '--cluster-replicas', String(options.replicas ?? 0), '--cluster-yes'], { timeout: 30_000 });
      await cluster.waitOk();
    } catch (err) {
      await cluster.dispose();
      throw err;
    }
    return cluster;
  }

  /** The startup nodes' URLs (`broker.cluster`). */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** Wait (bounded) until every running node reports `cluster_state:ok` and agrees on the masters. */
  async waitOk(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const states = await Promise.all(this.nodes.filter((n) => n.running).map((n) => redisCli(n.port, 'CLUSTER', 'INFO').catch(() => '')));
      if (states.every((s) => /cluster_state:ok/.test(s))) return;
      if (Date.now() > deadline) throw new Error(`the Redis Cluster is not ok after ${timeoutMs} ms:\n${states.join('\n---\n')}`);
      await sleep(100);
    }
  }

  /** The slot of `key` (`CLUSTER KEYSLOT`). */
  async keySlot(key: string): Promise<number> {
    return Number(await redisCli(this.nodes[0]!.port, 'CLUSTER', 'KEYSLOT', key));
  }

  /** The node serving `slot` as master now (from `CLUSTER SHARDS`/`SLOTS` of a running node). */
  async masterOf(slot: number): Promise<RedisServer> {
    const any = this.nodes.find((n) => n.running)!;
    const csv = await redisCli(any.port, '--csv', 'CLUSTER', 'SLOTS');
    // --csv, one line: start,end,"host",port,"id",[replicas…],start,end,…
    for (const m of csv.matchAll(/(\d+),(\d+),"127\.0\.0\.1",(\d+),/g)) {
      if (Number(m[1]) <= slot && slot <= Number(m[2])) {
        const node = this.nodes.find((n) => n.port === Number(m[3]));
        if (node !== undefined) return node;
      }
    }
    throw new Error(`no master for slot ${slot}: ${csv}`);
  }

  /** `CLUSTER NODES` of a running node: id, port, flags and master id of every node. */
  async clusterNodes(): Promise<Array<{ id: string; port: number; master: boolean; masterId: string }>> {
    const any = this.nodes.find((n) => n.running)!;
    const out = await redisCli(any.port, 'CLUSTER', 'NODES');
    return out
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => {
        const [id, address, flags, masterId] = line.split(' ') as [string, string, string, string];
        return { id, port: Number(/:(\d+)@/.exec(address)?.[1]), master: flags.split(',').includes('master'), masterId };
      });
  }

  /**
   * `CLUSTER FAILOVER` on a replica of the master serving `slot` (a manual,
   * coordinated failover: the replica catches up, then takes over); resolves
   * once the replica is that slot's master and the cluster is ok.
   */
  async failover(slot: number, timeoutMs = 40_000): Promise<RedisServer> {
    const master = await this.masterOf(slot);
    const deadline = Date.now() + timeoutMs;
    // Right after the cluster is made, the replicas may not be known to
    // every node yet, nor linked to their master: wait for both.
    let replica: RedisServer | undefined;
    for (;;) {
      const nodes = await this.clusterNodes();
      const masterId = nodes.find((n) => n.port === master.port)!.id;
      replica = this.nodes.find((n) => n.port === nodes.find((x) => x.masterId === masterId)?.port);
      if (replica !== undefined && /master_link_status:up/.test(await redisCli(replica.port, 'INFO', 'replication'))) break;
      if (Date.now() > deadline) throw new Error(`the master of slot ${slot} has no replica linked to it within ${timeoutMs} ms (start the cluster with replicas)`);
      await sleep(100);
    }
    // A manual failover that does not complete within Redis's 5 s
    // (CLUSTER_MF_TIMEOUT: the master paused too long, a slow machine) is
    // dropped without a word: ask again until the deadline.
    let asked = 0;
    while ((await this.masterOf(slot)).port !== replica.port) {
      if (Date.now() > deadline) throw new Error(`the replica on ${replica.port} did not take over slot ${slot} within ${timeoutMs} ms`);
      if (Date.now() - asked > 6_000) {
        await redisCli(replica.port, 'CLUSTER', 'FAILOVER');
        asked = Date.now();
      }
      await sleep(100);
    }
    await this.waitOk(timeoutMs);
    return replica;
  }

  /**
   * Move `slot` with its keys to the master `to` (as `redis-cli --cluster
   * reshard` does: IMPORTING/MIGRATING, MIGRATE of every key, then NODE on
   * every master); clients get MOVED afterwards, and ASK while it runs.
   */
  async moveSlot(slot: number, to: RedisServer): Promise<void> {
    const from = await this.masterOf(slot);
    if (from.port === to.port) return;
    const nodes = await this.clusterNodes();
    const idOf = (s: RedisServer): string => nodes.find((n) => n.port === s.port)!.id;
    await redisCli(to.port, 'CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', idOf(from));
    await redisCli(from.port, 'CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', idOf(to));
    for (;;) {
      const keys = (await redisCli(from.port, 'CLUSTER', 'GETKEYSINSLOT', String(slot), '1000')).split('\n').filter((k) => k !== '');
      if (keys.length === 0) break;
      await redisCli(from.port, 'MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys);
    }
    for (const master of nodes.filter((n) => n.master)) {
      await redisCli(master.port, 'CLUSTER', 'SETSLOT', String(slot), 'NODE', idOf(to));
    }
    await this.waitOk();
  }

  async dispose(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.dispose()));
  }
}

/**
 * A Redis Sentinel (`redis-server <conf> --sentinel`) on a free loopback
 * port, monitoring one master under `name` (quorum 1, a master down after
 * 1 s, failover timeout 5 s). Sentinel rewrites its config file, so it lives
 * in the server's temp dir.
 */
export class RedisSentinel extends ChildServer {
  readonly dir: string;

  private constructor(
    port: number,
    readonly name: string,
    readonly masterPort: number,
  ) {
    super(port, 'redis-sentinel', 8000, 5000);
    this.dir = this.tempDir('sb-sentinel-');
  }

  static async start(master: RedisServer, name = 'mymaster'): Promise<RedisSentinel> {
    const sentinel = new RedisSentinel(await freePort(), name, master.port);
    const conf = join(sentinel.dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${sentinel.port}`,
        'bind 127.0.0.1',
        `dir ${sentinel.dir}`,
        `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
        `sentinel down-after-milliseconds ${name} 1000`,
        `sentinel failover-timeout ${name} 5000`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    await sentinel.launch(REDIS_SERVER, [conf, '--sentinel'], 10_000, /\+monitor master/);
    return sentinel;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Wait (bounded) until the sentinel knows `count` replicas of its master (it learns them from the master's INFO). */
  async waitReplicas(count: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const out = await redisCli(this.port, 'SENTINEL', 'REPLICAS', this.name).catch(() => '');
      const lines = out.split('\n');
      const field = (name: string): string[] => lines.flatMap((line, i) => (line === name ? [lines[i + 1] ?? ''] : []));
      const linked = field('master-link-status').filter((v) => v === 'ok').length;
      if (linked >= count && !field('flags').some((f) => /s_down|o_down|disconnected/.test(f))) return;
      if (Date.now() > deadline) throw new Error(`the sentinel does not know ${count} replicas after ${timeoutMs} ms:\n${out}`);
      await sleep(100);
    }
  }

  /** `SENTINEL FAILOVER <name>` (a replica is promoted without agreement from other sentinels); resolves once the sentinel names another master. */
  async failover(timeoutMs = 20_000): Promise<number> {
    const before = await this.masterPortNow();
    await redisCli(this.port, 'SENTINEL', 'FAILOVER', this.name);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = await this.masterPortNow();
      if (now !== before) return now;
      if (Date.now() > deadline) throw new Error(`no failover within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** The port of the master the sentinel names now (`SENTINEL GET-MASTER-ADDR-BY-NAME`). */
  async masterPortNow(): Promise<number> {
    const out = await redisCli(this.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name);
    return Number(out.split('\n')[1]);
  }
}

/** A master, a replica of it and a sentinel watching them (as `name`), on loopback; `dispose()` stops all three. */
export class RedisSentinelGroup {
  private constructor(
    readonly master: RedisServer,
    readonly replica: RedisServer,
    readonly sentinel: RedisSentinel,
  ) {}

  static async start(name = 'mymaster'): Promise<RedisSentinelGroup> {
    const servers: Array<{ dispose(): Promise<void> }> = [];
    try {
      const master = await RedisServer.start();
      servers.push(master);
      const replica = await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
      servers.push(replica);
      const sentinel = await RedisSentinel.start(master, name);
      servers.push(sentinel);
      await sentinel.waitReplicas(1);
      return new RedisSentinelGroup(master, replica, sentinel);
    } catch (err) {
      await Promise.all(servers.map((s) => s.dispose()));
      throw err;
    }
  }

  async dispose(): Promise<void> {
    await this.sentinel.dispose();
    await Promise.all([this.replica.dispose(), this.master.dispose()]);
  }
}
