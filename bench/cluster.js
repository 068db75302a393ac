#!/usr/bin/env node
// Cluster benchmark: 3 `switchboard serve` nodes on Redis, side by side with
// Socket.IO 4 + @socket.io/redis-adapter on the same layout, and the same
// Switchboard scenario on one node. Method: docs/benchmarks.md ("Cluster").
//
//   node bench/cluster.js            (needs `npm run build`: the nodes run from dist/)
//
// Knobs (env): BENCH_CLUSTER_SUBSCRIBERS (1000), BENCH_CLUSTER_SECONDS (8, per
// phase), BENCH_CLUSTER_RATE (fixed-rate phase, publishes/s, 20),
// BENCH_CLUSTER_WINDOWS (publishes in flight in the saturated phase: a list, one
// saturated phase per window on the same servers, 16,64,256; BENCH_CLUSTER_WINDOW=n
// is the list of one),
// BENCH_CLUSTER_CELLS (sb3,sio3,sb1,hist3,hist1; also w2: one `serve
// --workers 2` on the broker, every client on its one port), BENCH_CLUSTER_BROKER
// (redis | nats | redis-cluster; nats needs nats-server on PATH, started with -js;
// redis-cluster is 3 masters made with redis-cli --cluster create; with either, a
// sio3 cell gets a standalone redis-server of its own beside the broker),
// BENCH_CLUSTER_PROBE_EVERY (every n-th subscriber reads stamps, 8),
// BENCH_CLUSTER_BASELINE (another build's bin/switchboard.js: cells base3,
// base1, basehist3, basehist1 run sb3, sb1, hist3, hist1 on it, for an A/B
// in the same run),
// BENCH_CLUSTER_PROF (a directory: nodes 1 and 2 of sb3/sb1 write V8 CPU profiles there),
// BENCH_OUT (markdown table also written there when set). Cells sinksb and
// sinksio run the clients against bench/cluster-sink-server.js (a fan-out
// server doing as little as possible): the load generator's own ceiling.
//
// Everything here is loopback only; every child (redis-server, nats-server,
// nodes) is started by this process and killed by PID at the end, also on
// error or signal. Every wait is bounded.
//
// The load generator (publisher and subscribers, raw-TCP WebSocket clients
// that count frames and read stamps on every PROBE_EVERY-th subscriber only)
// is this process: publish
// stamps and delivery times come from one clock (performance.now() is not
// shared between processes, so stamps are Date-based: performance.timeOrigin
// + performance.now(), which every process on the machine reads from the same
// clock).

import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LatencyHistogram } from './lib/histogram.js';
import { positiveEnvNumber } from './lib/env.js';
import { freePort } from './lib/ports.js';
import { RawWebSocket } from './lib/raw-ws.js';

const run = promisify(execFile);
const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = path.join(ROOT, 'bin', 'switchboard.js');
const SIO_SERVER = path.join(ROOT, 'bench', 'cluster-sio-server.js');
const SINK_SERVER = path.join(ROOT, 'bench', 'cluster-sink-server.js');
/** Cells base3 / base1: sb3 / sb1 on another build (e.g. the commit before a change), for an A/B in one run. */
const BASELINE_BIN = process.env.BENCH_CLUSTER_BASELINE;
const REDIS_SERVER = process.env.SWITCHBOARD_REDIS_SERVER ?? '/usr/bin/redis-server';
const NATS_SERVER = process.env.SWITCHBOARD_NATS_SERVER ?? 'nats-server';

const num = positiveEnvNumber;
const S = Math.round(num('BENCH_CLUSTER_SUBSCRIBERS', 1000));
const SECONDS = num('BENCH_CLUSTER_SECONDS', 8);
const RATE = num('BENCH_CLUSTER_RATE', 20);
/**
 * The saturated phase's windows. One window says how the cell behaves with that much in flight;
 * a system's capacity is where deliveries/s stops growing as the window grows, and that
 * point differs per system (a server that batches keeps gaining long after one that writes
 * each message on its own has flattened), so the cell runs the phase once per window and
 * reports each, and the best.
 */
const WINDOWS = (process.env.BENCH_CLUSTER_WINDOWS || process.env.BENCH_CLUSTER_WINDOW || '16,64,256').split(',').map((w) => {
  const n = Math.round(Number(w));
  if (!(n >= 1)) throw new Error(`BENCH_CLUSTER_WINDOWS: ${w} is not a window (a whole number ≥ 1)`);
  return n;
});
const PROBE_EVERY = Math.round(num('BENCH_CLUSTER_PROBE_EVERY', 8));
const HIST_WINDOW = 64;
const WARMUP_MS = 1000;
const DRAIN_MS = 10_000;
const START_MS = 30_000;
const CONNECT_MS = 10_000 + 10 * S;
const CELLS = (process.env.BENCH_CLUSTER_CELLS || 'sb3,sio3,sb1,hist3,hist1').split(',').map((s) => s.trim()).filter(Boolean);
const BROKER = process.env.BENCH_CLUSTER_BROKER || 'redis';
if (!['redis', 'nats', 'redis-cluster'].includes(BROKER)) throw new Error(`BENCH_CLUSTER_BROKER=${BROKER}: redis, redis-cluster or nats`);
const REDIS_CLI = process.env.SWITCHBOARD_REDIS_CLI ?? '/usr/bin/redis-cli';
/** Masters of the redis-cluster broker. */
const CLUSTER_MASTERS = 3;

const FILLER = 'The quick brown fox jumps over the lazy dog. 0123456789 abcdefgh';
const T_KEY = Buffer.from('"t":');
const OP_OK = Buffer.from('"op":"ok"');
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[cluster]', ...a);

/** CPU time (user + system, ms) a process used so far, from /proc (Linux; NaN elsewhere). */
function cpuMsOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in USER_HZ (100)
  } catch {
    return NaN;
  }
}
/** Write system calls (write, writev, sendmsg...) a process made so far, from /proc/<pid>/io `syscw` (Linux; NaN elsewhere). */
function writeCallsOf(pid) {
  try {
    const m = /^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'latin1'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}
/** Processes whose CPU a cell reports: name → pid (the load generator is this process). */
const cpuWatch = new Map();
function cpuSample() {
  const out = { t: performance.now(), gen: (process.cpuUsage().user + process.cpuUsage().system) / 1000 };
  let writes = 0;
  for (const [name, pid] of cpuWatch) {
    out[name] = cpuMsOf(pid);
    if (!name.startsWith('broker')) writes += writeCallsOf(pid);
  }
  return { cpu: out, writes };
}
/** Percent of one CPU each watched process used between two samples. */
function cpuPct(a, b) {
  const ms = b.t - a.t;
  const out = {};
  for (const k of Object.keys(a)) if (k !== 't') out[k] = Math.round(((b[k] - a[k]) / ms) * 1000) / 10;
  return out;
}

// ---------------------------------------------------------------- children, killed by PID

const children = new Set();
const tmpDirs = [];
function killAll() {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {}
    }
  }
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function within(promise, ms, what) {
  let t;
  return Promise.race([promise, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(t));
}

/** Spawn; resolve with the first stdout/stderr line `match` accepts (bounded). */
function startChild(name, cmd, args, match, ms = START_MS) {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_'))) });
  children.add(child);
  const tail = [];
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  child.exited = exited;
  const found = new Promise((resolve, reject) => {
    const onLine = (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      const m = match(line);
      if (m !== undefined && m !== null && m !== false) resolve(m);
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    exited.then(({ code, signal }) => reject(new Error(`${name} exited (${code ?? signal}) before it was ready: ${tail.join(' | ')}`)));
  });
  return within(found, ms, `${name} to start (${tail.join(' | ')})`).then((m) => ({ child, m }));
}

async function stopChild(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {}
  const done = await Promise.race([child.exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!done) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {}
    await within(child.exited, 5000, `pid ${child.pid} to exit`);
  }
  children.delete(child);
}


/** The broker's processes (`children`, watched as broker, or broker1… for a Redis Cluster), its config for the nodes, and a plain Redis URL for Socket.IO. */
async function startBroker() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-broker-'));
  tmpDirs.push(dir);
  const port = await freePort();
  if (BROKER === 'redis') {
    const { child } = await startRedis(port, dir, []);
    return { children: [child], config: { type: 'redis', url: `redis://127.0.0.1:${port}` }, redisUrl: `redis://127.0.0.1:${port}` };
  }
  const broker =
    BROKER === 'redis-cluster'
      ? await startRedisCluster()
      : { children: [(await startChild('nats-server', NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], (l) => /Server is ready/.test(l))).child], config: { type: 'nats', servers: [`nats://127.0.0.1:${port}`] }, redisUrl: null };
  if (CELLS.includes('sio3')) {
    // Socket.IO's adapter needs a standalone Redis: one of its own, so its cell runs in the same run as ours.
    const redisPort = await freePort();
    broker.children.push((await startRedis(redisPort, dir, [])).child);
    broker.redisUrl = `redis://127.0.0.1:${redisPort}`;
  }
  return broker;
}

function startRedis(port, dir, args) {
  return startChild(`redis-server :${port}`, REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', ...args], (l) => /Ready to accept connections/.test(l));
}

/**
 * CLUSTER_MASTERS redis-servers in cluster mode (no replicas), the slots given by `redis-cli
 * --cluster create`, started once every node says cluster_state:ok. The nodes use sharded
 * pub/sub; the bench's one channel lives on one of the masters, as any channel does.
 */
async function startRedisCluster() {
  const children = [];
  const urls = [];
  for (let i = 0; i < CLUSTER_MASTERS; i++) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-broker-'));
    tmpDirs.push(dir);
    const port = await freePort();
    const bus = await freePort();
    const { child } = await startRedis(port, dir, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(bus)]);
    children.push(child);
    urls.push(`redis://127.0.0.1:${port}`);
  }
  const addresses = urls.map((u) => u.slice('redis://'.length));
  await run(REDIS_CLI, ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
  const deadline = Date.now() + 20_000;
  for (const address of addresses) {
    const [host, port] = address.split(':');
    for (;;) {
      // Not answering yet counts as not ok: asked again until the deadline.
      const info = await run(REDIS_CLI, ['-h', host, '-p', port, 'cluster', 'info'], { timeout: 5000 }).then((r) => r.stdout, () => '');
      if (/cluster_state:ok/.test(info)) break;
      if (Date.now() > deadline) throw new Error(`redis cluster: ${address} not ok after 20 s`);
      await sleep(100);
    }
  }
  return { children, config: { type: 'redis', cluster: urls }, redisUrl: null };
}

// ---------------------------------------------------------------- servers

function switchboardConfig(broker) {
  return {
    host: '127.0.0.1',
    port: 0,
    path: '/rt',
    auth: { anonymous: true },
    ...(broker ? { broker } : {}),
    namespaces: [
      { prefix: 'bench', anonymousSubscribe: true, anonymousPublish: true, clientPublish: true },
      { prefix: 'hist', anonymousSubscribe: true, anonymousPublish: true, clientPublish: true, history: { size: 1000, ttlMs: 0 } },
    ],
    heartbeat: { intervalMs: 0 },
    limits: {
      maxConnectionsPerIp: 20_000,
      connectionRatePerIp: { perSecond: 1_000_000, burst: 1_000_000 },
      messageRate: { perSecond: 10_000_000, burst: 10_000_000 },
      byteRate: { perSecond: 1e10, burst: 1e10 },
      sendHighWaterMark: 64 * 1024 * 1024,
    },
    log: { level: 'info' },
  };
}

async function startSwitchboard(n, broker, bin = BIN) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-cluster-'));
  tmpDirs.push(dir);
  const file = path.join(dir, 'switchboard.json');
  writeFileSync(file, JSON.stringify(switchboardConfig(broker), null, 2));
  const started = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      startChild(`switchboard node ${i + 1}`, process.execPath, [...profileArgs(i), bin, 'serve', '--config', file, '--port', '0'], (line) => {
        try {
          const l = JSON.parse(line);
          return l.msg === 'listening' ? l.port : undefined;
        } catch {
          return undefined;
        }
      }),
    ),
  );
  return started.map(({ child, m }) => ({ child, url: `ws://127.0.0.1:${m}/rt` }));
}

/** BENCH_CLUSTER_PROF=dir: nodes 1 (the publisher's) and 2 write a V8 CPU profile there when they stop. */
function profileArgs(i) {
  const dir = process.env.BENCH_CLUSTER_PROF;
  return dir && i < 2 ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=node${i + 1}-${Date.now()}.cpuprofile`] : [];
}

/** One `serve --workers n` (node:cluster): one URL, the primary spreads the connections over its workers. */
async function startWorkers(n, broker) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-workers-'));
  tmpDirs.push(dir);
  const file = path.join(dir, 'switchboard.json');
  writeFileSync(file, JSON.stringify(switchboardConfig(broker), null, 2));
  const { child, m } = await startChild(`switchboard serve --workers ${n}`, process.execPath, [BIN, 'serve', '--config', file, '--port', '0', '--workers', String(n)], (line) => {
    try {
      const l = JSON.parse(line);
      return l.msg === 'all workers listening' ? l.port : undefined;
    } catch {
      return undefined;
    }
  });
  return [{ child, url: `ws://127.0.0.1:${m}/rt` }];
}

/** The sink (bench/cluster-sink-server.js): one process that fans out with as little work as a server can; `dialect` sb or sio. */
async function startSink(dialect) {
  const { child, m } = await startChild(`sink (${dialect})`, process.execPath, [SINK_SERVER, dialect], (line) => {
    try {
      return JSON.parse(line).listening;
    } catch {
      return undefined;
    }
  });
  return [{ child, url: dialect === 'sb' ? `ws://127.0.0.1:${m}/rt` : `http://127.0.0.1:${m}` }];
}

async function startSocketIo(n, redisUrl) {
  const started = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      startChild(`socket.io node ${i + 1}`, process.execPath, [SIO_SERVER, redisUrl], (line) => {
        try {
          return JSON.parse(line).listening;
        } catch {
          return undefined;
        }
      }),
    ),
  );
  return started.map(({ child, m }) => ({ child, url: `http://127.0.0.1:${m}` }));
}

// ---------------------------------------------------------------- clients

/** `count` subscribers, round-robin over the nodes' `urls`, opened 100 (handshake + subscribe) at a time. */
async function spreadOverNodes(urls, count, openOne) {
  for (let i = 0; i < count; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, count - i) }, (_, j) => openOne(urls[(i + j) % urls.length], i + j)));
  }
}

/*
 * Both sides' clients are raw-TCP WebSocket connections (bench/lib/raw-ws.js):
 * one shared read buffer, a numeric frame parser, no Buffer or JSON per
 * delivery. A subscriber that is not a probe only counts its frames; every
 * PROBE_EVERY-th subscriber is a probe: it reads the stamp `t` of each of its
 * deliveries (latency) and JSON-checks its first one. So the load generator
 * costs both servers the same small amount per delivery, and what the cells
 * compare is the servers (the first version parsed every delivery with
 * `ws` and socket.io-client: see docs/benchmarks.md).
 */

/** One handler for every connection; what a connection does with a frame is its own `onFrame` (set per phase, not per message). */
const rawHandler = {
  onOpen(conn) {
    conn.opened?.();
  },
  onMessage(conn, payload, length) {
    conn.onFrame(payload, length);
  },
  onClose(conn, reason) {
    conn.closedWith?.(reason);
  },
};

let rawIndex = 0;
/**
 * Open a raw connection to `url` (ws:// or http://) at `pathAndQuery` (default: the URL's path).
 * `onFrame`: what to do with frames from the start (a first frame may come in the read that completes the handshake).
 */
function openRaw(url, pathAndQuery, onFrame = () => {}) {
  const u = new URL(url);
  const conn = new RawWebSocket({ host: u.hostname, port: Number(u.port), path: pathAndQuery ?? u.pathname }, rawHandler, rawIndex++);
  conn.collect = true;
  conn.onFrame = onFrame;
  return within(
    new Promise((resolve, reject) => {
      conn.opened = () => resolve(conn);
      conn.closedWith = (reason) => reject(new Error(`connection to ${url} closed: ${reason}`));
    }),
    CONNECT_MS,
    `connect ${url}`,
  ).catch((err) => {
    conn.destroy();
    throw err;
  });
}

/** The stamp `t` of a delivery, read without parsing the message (NaN: none). */
function stampOf(payload) {
  const k = payload.indexOf(T_KEY);
  return k === -1 ? NaN : parseFloat(payload.toString('latin1', k + 4, k + 24));
}

/** A probe's first delivery, parsed in full: the right message with the right fields (`pick` finds the data in the decoded message). */
function checked(payload, pick) {
  try {
    // A Socket.IO event (`42[...]`) is JSON after its two-digit packet type.
    const json = payload[0] === 0x34 && payload[1] === 0x32 ? payload.toString('utf8', 2) : payload.toString('utf8');
    const data = pick(JSON.parse(json));
    return typeof data?.t === 'number' && data.text === FILLER;
  } catch {
    return false;
  }
}

/**
 * What both dialects share: the subscribers' delivery handlers, the pending
 * acks, and the common shape the cells use:
 * { subs, publish(channel, t) -> Promise<void>, problems(), close() };
 * each delivery calls onDelivery(t) on probes, onDelivery() on the others.
 */
class ClientSet {
  constructor(subscribers, onDelivery) {
    this.subscribers = subscribers;
    this.onDelivery = onDelivery;
    this.conns = [];
    this.errors = [];
    this.mismatched = 0;
    this.pubErrors = 0;
    this.firstPubError = null;
    this.pending = new Map();
    this.nextId = 1;
  }

  /**
   * Start counting `conn`'s deliveries (the `index`-th subscriber). `control(conn, payload, length)`
   * takes frames that are not deliveries (true: taken); `pick` finds the data in a decoded delivery.
   */
  listen(conn, index, pick, control = () => false) {
    conn.closedWith = (reason) => this.errors.push(`subscriber closed: ${reason}`);
    const onDelivery = this.onDelivery;
    if (index % PROBE_EVERY !== 0) {
      conn.collect = false;
      conn.onFrame = (payload, length) => {
        if (!control(conn, payload, length)) onDelivery();
      };
      return;
    }
    let first = true;
    conn.onFrame = (payload, length) => {
      if (control(conn, payload, length)) return;
      if (first) {
        first = false;
        if (!checked(payload, pick)) this.mismatched++;
      }
      onDelivery(stampOf(payload));
    };
  }

  /** The publish with this id was answered (`error`: its reply, when it was refused). */
  acked(id, error = null) {
    const done = this.pending.get(id);
    if (!done) return;
    this.pending.delete(id);
    if (error !== null) {
      this.pubErrors++;
      this.firstPubError ??= error;
    }
    done();
  }

  /** The common shape; `send(id, channel, t)` writes one publish, acked later with `id`. */
  clients(send) {
    return {
      subs: this.subscribers,
      publish: (ch, t) => {
        const i = this.nextId++;
        return new Promise((resolve) => {
          this.pending.set(i, resolve);
          send(i, ch, t);
        });
      },
      problems: () => [
        ...(this.errors.length ? [`${this.errors.length} connection(s) closed, first: ${this.errors[0]}`] : []),
        ...(this.pubErrors ? [`${this.pubErrors} publish error(s), first: ${this.firstPubError}`] : []),
        ...(this.mismatched ? [`${this.mismatched} probe(s) got a message that is not the publication`] : []),
      ],
      close: async () => this.destroy(),
    };
  }

  destroy() {
    for (const c of this.conns) c.destroy();
  }
}

async function sbClients(urls, channel, subscribers, onDelivery) {
  const set = new ClientSet(subscribers, onDelivery);
  const subscribe = async (url, index) => {
    const conn = await openRaw(url);
    set.conns.push(conn);
    await within(
      new Promise((resolve, reject) => {
        conn.closedWith = (reason) => reject(new Error(`subscriber closed: ${reason}`));
        conn.onFrame = (payload) => {
          // The next frame may be a delivery in the same read: switch before anything else.
          conn.onFrame = () => {};
          if (payload.indexOf(OP_OK) === -1) reject(new Error(`subscribe refused: ${payload}`));
          else resolve();
        };
        conn.sendText(`{"op":"sub","id":1,"channel":"${channel}"}`);
      }),
      CONNECT_MS,
      'subscribe',
    );
    set.listen(conn, index, (m) => (m.op === 'msg' && m.channel === channel ? m.data : undefined));
  };
  try {
    await spreadOverNodes(urls, subscribers, subscribe);
    const pub = await openRaw(urls[0]);
    set.conns.push(pub);
    pub.closedWith = (reason) => set.errors.push(`publisher closed: ${reason}`);
    pub.onFrame = (payload) => {
      const m = JSON.parse(payload.toString('utf8'));
      set.acked(m.id, m.op === 'ok' ? null : payload.toString('utf8', 0, 200));
    };
    return set.clients((i, ch, t) => pub.sendText(`{"op":"pub","id":${i},"channel":"${ch}","data":{"t":${t.toFixed(3)},"text":"${FILLER}"}}`));
  } catch (err) {
    set.destroy();
    throw err;
  }
}

/**
 * Socket.IO 4 over a raw WebSocket (what socket.io-client does with
 * `transports: ['websocket']`): Engine.IO v4 packets in text frames —
 * `0{..}` open, `2`/`3` ping/pong — and Socket.IO packets inside `4`:
 * `40` connect to `/`, `42[event,data]` an event, `42<id>[..]` one that wants
 * an ack, `43<id>[..]` the ack.
 */
const EIO_PATH = (role) => `/socket.io/?EIO=4&transport=websocket&role=${role}`;

async function sioOpen(url, role) {
  let connected;
  let failed;
  const handshake = new Promise((resolve, reject) => {
    connected = resolve;
    failed = reject;
  });
  // Engine.IO's open packet may come in the same read as the 101: this handler is there from the start.
  const conn = await openRaw(url, EIO_PATH(role), function (payload) {
    if (payload[0] === 0x30 /* 0: Engine.IO open */) this.sendText('40');
    else if (payload[0] === 0x34 && payload[1] === 0x30 /* 40: connected to "/" */) {
      this.onFrame = () => {};
      connected();
    } else failed(new Error(`socket.io handshake: unexpected ${payload.toString('utf8', 0, 100)}`));
  });
  conn.collectUpTo = 1; // Engine.IO pings ("2") reach every connection, probe or not
  conn.closedWith = (reason) => failed(new Error(`socket.io ${role} closed: ${reason}`));
  try {
    await within(handshake, CONNECT_MS, 'socket.io connect');
  } catch (err) {
    conn.destroy();
    throw err;
  }
  return conn;
}

/** An Engine.IO ping ("2", a one-byte frame): answered with a pong ("3"). True when the frame was one. */
function sioPing(conn, payload, length) {
  if (length !== 1) return false;
  if (payload[0] === 0x32) conn.sendText('3');
  return true;
}

async function sioClients(urls, subscribers, onDelivery) {
  const set = new ClientSet(subscribers, onDelivery);
  const subscribe = async (url, index) => {
    const conn = await sioOpen(url, 'sub');
    set.conns.push(conn);
    // `42["msg",data]`: the data is the second element.
    set.listen(conn, index, (m) => (Array.isArray(m) && m[0] === 'msg' ? m[1] : undefined), sioPing);
  };
  try {
    await spreadOverNodes(urls, subscribers, subscribe);
    // A join on another node is only known there; give the adapters a moment (nothing is stored, so a late join misses messages).
    await sleep(500);
    const pub = await sioOpen(urls[0], 'pub');
    set.conns.push(pub);
    pub.closedWith = (reason) => set.errors.push(`publisher closed: ${reason}`);
    pub.onFrame = (payload, length) => {
      if (sioPing(pub, payload, length)) return;
      if (payload[0] !== 0x34 || payload[1] !== 0x33) return; // 43<id>[...]: an ack
      set.acked(parseInt(payload.toString('latin1', 2, Math.min(payload.length, 22)), 10));
    };
    return set.clients((i, _ch, t) => pub.sendText(`42${i}["pub",{"t":${t.toFixed(3)},"text":"${FILLER}"}]`));
  } catch (err) {
    set.destroy();
    throw err;
  }
}

// ---------------------------------------------------------------- phases

/**
 * Fan-out cell: saturated phase (at most WINDOW publishes not yet delivered
 * to every subscriber, acks awaited) for throughput, then a fixed-rate phase
 * (RATE publishes/s, open loop, stamped with the intended time) for latency.
 */
async function fanoutCell(makeClients) {
  const st = { delivered: 0, histSat: null, histRate: new LatencyHistogram(), satFrom: Infinity, satTo: Infinity, rateFrom: Infinity, rateTo: Infinity, bad: 0 };
  let wake = null;
  /** The closed loop sleeps until this many deliveries (one timer per wait would cost the load generator more than the deliveries). */
  let wakeAt = 0;
  const onDelivery = (t) => {
    st.delivered++;
    if (t !== undefined) {
      // A probe's delivery (see sbClients): its stamp.
      const n = now();
      if (!(t === t)) st.bad++;
      else if (t >= st.satFrom && t < st.satTo) st.histSat?.recordMs(n - t);
      else if (t >= st.rateFrom && t < st.rateTo) st.histRate.recordMs(n - t);
    }
    if (wake && st.delivered >= wakeAt) {
      const w = wake;
      wake = null;
      w();
    }
  };
  const setup0 = Date.now();
  const c = await makeClients(onDelivery);
  const setupS = (Date.now() - setup0) / 1000;
  const N = c.subs;
  let published = 0;
  let acked = 0;

  // Closed loop with WINDOW in flight for `ms`; returns { publishes, deliveries, seconds, ... }.
  const closedLoop = async (WINDOW, ms, record) => {
    const end = now() + ms;
    const d0 = st.delivered;
    const p0 = published;
    const t0 = now();
    if (record) {
      st.histSat = new LatencyHistogram();
      st.satFrom = t0;
      st.satTo = end;
    }
    const inflightAcks = new Set();
    const sample0 = cpuSample();
    while (now() < end) {
      if ((published - WINDOW + 1) * N > st.delivered) {
        wakeAt = (published - WINDOW + 1) * N;
        const stuckAt = st.delivered;
        const timer = setTimeout(() => wake?.(), DRAIN_MS);
        await new Promise((r) => (wake = r));
        clearTimeout(timer);
        if (st.delivered === stuckAt) throw new Error(`no delivery for ${DRAIN_MS} ms in the saturated phase`);
        continue;
      }
      if (inflightAcks.size >= WINDOW) {
        await within(Promise.race(inflightAcks), DRAIN_MS, 'a publish ack (saturated phase)');
        continue;
      }
      const p = c.publish('bench/room', now()).then(() => {
        acked++;
        inflightAcks.delete(p);
      });
      inflightAcks.add(p);
      published++;
      if (published % 8 === 0) await new Promise((r) => setImmediate(r));
    }
    const t1 = now();
    const sample1 = cpuSample();
    return { publishes: published - p0, deliveries: st.delivered - d0, seconds: (t1 - t0) / 1000, cpuPct: cpuPct(sample0.cpu, sample1.cpu), serverWrites: sample1.writes - sample0.writes };
  };
  const drain = async () => {
    const until = Date.now() + DRAIN_MS;
    while ((st.delivered < published * N || acked < published) && Date.now() < until) await sleep(5);
    return published * N - st.delivered;
  };

  try {
    await closedLoop(WINDOWS[0], WARMUP_MS, false);
    await drain();
    const sweep = [];
    let missingSat = 0;
    for (const window of WINDOWS) {
      const sat = await closedLoop(window, SECONDS * 1000, true);
      missingSat = Math.max(missingSat, await drain());
      st.satFrom = st.satTo = Infinity; // late deliveries of this window are not the next one's
      sweep.push({
        window,
        deliveriesPerSec: sat.deliveries / sat.seconds,
        publishesPerSec: sat.publishes / sat.seconds,
        // Percent of one CPU per process in the saturated phase (gen: the load generator, this process).
        satCpuPct: sat.cpuPct,
        // CPU time of the servers and the broker per delivery in that phase (µs): less sensitive to other load than deliveries/s.
        serverCpuUsPerDelivery: serverCpuUs(sat),
        // Write system calls of the server processes (not the broker) per delivery in that phase: how well deliveries share a write.
        serverWritesPerDelivery: sat.deliveries > 0 ? Math.round((sat.serverWrites / sat.deliveries) * 1000) / 1000 : NaN,
        sat: summarize(st.histSat),
      });
    }
    const best = sweep.reduce((a, b) => (b.deliveriesPerSec > a.deliveriesPerSec ? b : a));
    // Fixed rate.
    const rateFrom = now();
    st.rateFrom = rateFrom;
    st.rateTo = rateFrom + SECONDS * 1000;
    const total = Math.round(RATE * SECONDS);
    let k = 0;
    while (k < total) {
      const due = rateFrom + (k * 1000) / RATE;
      const wait = due - now();
      if (wait > 0) await sleep(Math.min(wait, 50));
      if (now() < due) continue;
      published++;
      c.publish('bench/room', due).then(() => acked++);
      k++;
    }
    const missingRate = await drain();
    const problems = [...c.problems()];
    if (missingSat > 0 || missingRate > 0) problems.push(`${Math.max(missingSat, missingRate)} deliveries missing ${DRAIN_MS / 1000} s after the last publish`);
    if (st.bad) problems.push(`${st.bad} deliveries without a stamp`);
    if (st.delivered !== published * N) problems.push(`delivered ${st.delivered} != ${published} × ${N}`);
    // The top-level figures are the best window's (the cell's capacity); `sweep` has every window.
    return { subscribers: N, setupS, ...best, sweep, rate: summarize(st.histRate), problems };
  } finally {
    await c.close();
  }
}

function serverCpuUs(sat) {
  let pct = 0;
  for (const [k, v] of Object.entries(sat.cpuPct)) if (k !== 'gen') pct += v;
  return sat.deliveries > 0 ? Math.round(((pct / 100) * sat.seconds * 1e6) / sat.deliveries * 100) / 100 : NaN;
}

function summarize(h) {
  return { p50Ms: h.percentileMs(50), p99Ms: h.percentileMs(99), maxMs: h.percentileMs(100), count: h.count };
}

/** Publish-with-history: HIST_WINDOW acks in flight, no subscriber, for SECONDS. */
async function historyCell(urls) {
  const c = await sbClients(urls, 'hist/none', 0, () => {});
  try {
    let acked = 0;
    const end = now() + WARMUP_MS + SECONDS * 1000;
    const from = now() + WARMUP_MS;
    let a0 = null;
    let tFrom = 0;
    const lane = async (l) => {
      for (let i = 0; now() < end; i++) {
        await within(c.publish(`hist/ch${l % 8}`, now()), DRAIN_MS, 'a history publish ack');
        if (a0 === null && now() >= from) {
          a0 = acked;
          tFrom = now();
        }
        acked++;
      }
    };
    await Promise.all(Array.from({ length: HIST_WINDOW }, (_, l) => lane(l)));
    return { acksPerSec: (acked - a0) / ((now() - tFrom) / 1000), problems: c.problems() };
  } finally {
    await c.close();
  }
}

/**
 * Switchboard against Socket.IO, both on 3 nodes: at each window both ran, and capacity
 * against capacity (each one's best window), with the p99 each had there.
 */
function ratios(results) {
  const sb = results.sb3;
  const sio = results.sio3;
  if (!sb?.sweep || !sio?.sweep) return undefined;
  const atWindow = {};
  for (const a of sb.sweep) {
    const b = sio.sweep.find((x) => x.window === a.window);
    if (b) atWindow[a.window] = Math.round((a.deliveriesPerSec / b.deliveriesPerSec) * 100) / 100;
  }
  return {
    atWindow,
    capacity: Math.round((sb.deliveriesPerSec / sio.deliveriesPerSec) * 100) / 100,
    capacityAt: { sb3: { window: sb.window, p99Ms: sb.sat.p99Ms }, sio3: { window: sio.window, p99Ms: sio.sat.p99Ms } },
  };
}

// ---------------------------------------------------------------- main

async function withServers(start, fn) {
  const nodes = await start();
  nodes.forEach((n, i) => cpuWatch.set(`node${i + 1}`, n.child.pid));
  try {
    return await fn(nodes.map((n) => n.url));
  } finally {
    nodes.forEach((_, i) => cpuWatch.delete(`node${i + 1}`));
    await Promise.all(nodes.map((n) => stopChild(n.child)));
  }
}

async function main() {
  const load0 = os.loadavg();
  log(`${S} subscribers, ${SECONDS} s per phase, windows ${WINDOWS.join(',')}, fixed rate ${RATE}/s, broker ${BROKER}, cells ${CELLS.join(',')}, load ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  const broker = await startBroker();
  broker.children.forEach((c, i) => cpuWatch.set(broker.children.length === 1 ? 'broker' : `broker${i + 1}`, c.pid));
  const results = {};
  try {
    for (const cell of CELLS) {
      const t0 = Date.now();
      try {
        if (cell === 'sb3' || cell === 'sb1' || cell === 'base3' || cell === 'base1') {
          const n = cell.endsWith('3') ? 3 : 1;
          const base = cell.startsWith('base');
          if (base && !BASELINE_BIN) throw new Error(`${cell} needs BENCH_CLUSTER_BASELINE=<another checkout>/bin/switchboard.js`);
          results[cell] = await withServers(
            () => startSwitchboard(n, broker.config, base ? BASELINE_BIN : BIN),
            (urls) => fanoutCell((onDelivery) => sbClients(urls, 'bench/room', S, onDelivery)),
          );
        } else if (/^w\d+$/.test(cell)) {
          const n = Number(cell.slice(1));
          results[cell] = await withServers(
            () => startWorkers(n, broker.config),
            (urls) => fanoutCell((onDelivery) => sbClients(urls, 'bench/room', S, onDelivery)),
          );
        } else if (cell === 'sinksb') {
          results[cell] = await withServers(() => startSink('sb'), (urls) => fanoutCell((onDelivery) => sbClients(urls, 'bench/room', S, onDelivery)));
        } else if (cell === 'sinksio') {
          results[cell] = await withServers(() => startSink('sio'), (urls) => fanoutCell((onDelivery) => sioClients(urls, S, onDelivery)));
        } else if (cell === 'sio3') {
          results[cell] = await withServers(() => startSocketIo(3, broker.redisUrl), (urls) => fanoutCell((onDelivery) => sioClients(urls, S, onDelivery)));
        } else if (/^(base)?hist[13]$/.test(cell)) {
          const base = cell.startsWith('base');
          if (base && !BASELINE_BIN) throw new Error(`${cell} needs BENCH_CLUSTER_BASELINE=<another checkout>/bin/switchboard.js`);
          results[cell] = await withServers(() => startSwitchboard(cell.endsWith('3') ? 3 : 1, broker.config, base ? BASELINE_BIN : BIN), (urls) => historyCell(urls));
        } else throw new Error(`unknown cell ${cell}`);
      } catch (err) {
        results[cell] = { error: err.message };
      }
      log(`${cell} (${((Date.now() - t0) / 1000).toFixed(1)} s): ${JSON.stringify(results[cell])}`);
    }
  } finally {
    await Promise.all(broker.children.map((c) => stopChild(c)));
  }
  const out = { date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, loadBefore: load0, loadAfter: os.loadavg(), broker: BROKER, subscribers: S, seconds: SECONDS, windows: WINDOWS, rate: RATE, results, ratios: ratios(results) };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  const failed = Object.values(results).some((r) => r.error || r.problems?.length);
  if (failed) process.exitCode = 1;
}

main()
  .catch((err) => {
    console.error(`cluster bench: ${err.stack || err.message}`);
    process.exitCode = 2;
  })
  .finally(() => {
    killAll();
    setTimeout(() => process.exit(), 200).unref();
  });
