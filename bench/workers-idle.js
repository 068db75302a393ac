#!/usr/bin/env node
// Idle realtime connections over `serve --workers N` (issue 11: "every core
// of a box"): one redis-server, one `switchboard serve --workers N` on it
// (each worker under the 20,000-file limit: limits.maxConnections), and G
// load-generator processes (this script with --gen), each under 20,000 fds
// and bound to its own 127.0.0.x source address (28k ephemeral ports per
// source address and destination). Every connection is a realtime
// connection: the JSON subprotocol, anonymous, one subscription, the
// heartbeat on (25 s; the generators answer the app-level ping). Held for
// BENCH_IDLE_HOLD_S seconds; reports RSS per worker (VmRSS from /proc) after
// the connect burst and at the end of the hold, and how many connections
// dropped.
//
//   node bench/workers-idle.js     (needs `npm run build`: serve runs from dist/)
//
// Knobs (env): BENCH_IDLE_CONNECTIONS (100000), BENCH_IDLE_WORKERS (6),
// BENCH_IDLE_GENERATORS (6), BENCH_IDLE_HOLD_S (45), BENCH_IDLE_CONNECT_S
// (600, bound on the connect phase). Loopback only; every child is killed by
// PID at the end, also on error or signal.

import { spawn, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { freePort } from './lib/ports.js';

const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)));
const BIN = path.join(ROOT, 'bin', 'switchboard.js');
const num = (name, def) => (process.env[name] ? Number(process.env[name]) : def);

// ---------------------------------------------------------------- generator (child)

if (process.argv[2] === '--gen') {
  const [, , , url, countArg, source] = process.argv;
  const count = Number(countArg);
  let open = 0;
  let failed = 0;
  let dropped = 0;
  const sockets = [];
  const connectOne = () =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, 'switchboard.v1.json', { perMessageDeflate: false, localAddress: source, handshakeTimeout: 60_000 });
      let subscribed = false;
      ws.on('message', (buf) => {
        const text = buf.toString();
        if (text.includes('"op":"ping"')) ws.send('{"op":"pong"}');
        else if (!subscribed && text.includes('"op":"ok"')) {
          subscribed = true;
          open++;
          resolve();
        }
      });
      ws.on('open', () => ws.send('{"op":"sub","id":1,"channel":"bench/idle"}'));
      ws.on('error', () => {});
      ws.on('close', () => {
        if (subscribed) {
          open--;
          dropped++;
        } else {
          failed++;
          resolve();
        }
      });
      sockets.push(ws);
    });
  const report = () => process.send({ open, failed, dropped });
  const timer = setInterval(report, 1000);
  process.on('message', (m) => {
    if (m === 'report') report();
    if (m === 'stop') {
      clearInterval(timer);
      for (const ws of sockets) ws.terminate();
      setTimeout(() => process.exit(0), 200);
    }
  });
  (async () => {
    for (let i = 0; i < count; i += 200) await Promise.all(Array.from({ length: Math.min(200, count - i) }, connectOne));
    report();
    process.send({ done: true, open, failed, dropped });
  })();
}

// ---------------------------------------------------------------- parent

const children = new Set();
const dirs = [];
function killAll() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) try { process.kill(c.pid, 'SIGKILL'); } catch {}
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
if (process.argv[2] !== '--gen') {
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
}
const log = (...a) => console.error('[workers-idle]', ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function start(name, cmd, args, match, ms = 120_000) {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHBOARD_'))) });
  children.add(child);
  const tail = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name} did not start within ${ms} ms: ${tail.join(' | ')}`)), ms);
    const onLine = (line) => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      const m = match(line);
      if (m) {
        clearTimeout(t);
        resolve({ child, m });
      }
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    child.once('exit', (code, signal) => reject(new Error(`${name} exited (${code ?? signal}): ${tail.join(' | ')}`)));
  });
}

function rssKiB(pid) {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

async function main() {
  const N = num('BENCH_IDLE_CONNECTIONS', 100_000);
  const W = num('BENCH_IDLE_WORKERS', 6);
  const G = num('BENCH_IDLE_GENERATORS', 6);
  const HOLD = num('BENCH_IDLE_HOLD_S', 45);
  const CONNECT_S = num('BENCH_IDLE_CONNECT_S', 600);
  const perWorker = Math.ceil((N / W) * 1.15);
  if (perWorker > 19_000) throw new Error(`${N} connections over ${W} workers is ${perWorker} per worker (with a 15% margin for an uneven spread): over the 20,000-file limit`);
  const load0 = os.loadavg();
  log(`${N} connections, ${W} workers (maxConnections ${perWorker} each), ${G} generators, hold ${HOLD} s, load ${load0.map((x) => x.toFixed(2)).join(' ')}`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-bench-idle-'));
  dirs.push(dir);
  const redisPort = await freePort();
  await start('redis-server', '/usr/bin/redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], (l) => /Ready to accept connections/.test(l));
  const config = {
    host: '127.0.0.1',
    port: 0,
    auth: { anonymous: true },
    broker: { type: 'redis', url: `redis://127.0.0.1:${redisPort}` },
    namespaces: [{ prefix: 'bench', anonymousSubscribe: true, anonymousPublish: true }],
    heartbeat: { intervalMs: 25_000, timeoutMs: 10_000 },
    limits: { maxConnections: perWorker, maxConnectionsPerIp: 1_000_000, connectionRatePerIp: { perSecond: 1_000_000, burst: 1_000_000 } },
    fallbacks: { enabled: false },
    log: { level: 'warn' },
  };
  const file = path.join(dir, 'switchboard.json');
  writeFileSync(file, JSON.stringify(config));
  // The primary logs at warn: 'all workers listening' is info. Its banner (stderr) names the port.
  const { m: port } = await start(`serve --workers ${W}`, process.execPath, [BIN, 'serve', '--config', file, '--port', '0', '--workers', String(W)], (l) => {
    const m = /^switchboard: http:\/\/127\.0\.0\.1:(\d+)\/ +\(\d+ workers/.exec(l);
    return m ? Number(m[1]) : undefined;
  });
  const primary = [...children].at(-1);
  const workerPids = () =>
    readFileSync(`/proc/${primary.pid}/task/${primary.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  const pids = workerPids();
  const rssBefore = pids.map(rssKiB);
  log(`serve on port ${port}: primary ${primary.pid}, workers ${pids.join(' ')}, RSS ${pids.map(rssKiB).map((k) => (k / 1024).toFixed(0)).join(' ')} MiB`);

  const url = `ws://127.0.0.1:${port}/rt`;
  const gens = [];
  const state = [];
  const t0 = Date.now();
  for (let g = 0; g < G; g++) {
    const count = Math.floor(N / G) + (g < N % G ? 1 : 0);
    const child = fork(fileURLToPath(import.meta.url), ['--gen', url, String(count), `127.0.0.${g + 2}`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.add(child);
    state[g] = { open: 0, failed: 0, dropped: 0, done: false };
    child.on('message', (m) => Object.assign(state[g], m));
    gens.push(child);
  }
  const sum = (k) => state.reduce((a, s) => a + s[k], 0);
  while (!state.every((s) => s.done)) {
    if (Date.now() - t0 > CONNECT_S * 1000) throw new Error(`connect phase over ${CONNECT_S} s: ${sum('open')} open, ${sum('failed')} failed`);
    await sleep(2000);
    log(`${((Date.now() - t0) / 1000).toFixed(0)} s: ${sum('open')} open, ${sum('failed')} failed`);
  }
  const connectS = (Date.now() - t0) / 1000;
  const rssAfterBurst = pids.map(rssKiB);
  log(`connected ${sum('open')} in ${connectS.toFixed(1)} s (${sum('failed')} failed); RSS per worker ${rssAfterBurst.map((k) => (k / 1024).toFixed(0)).join(' ')} MiB; holding ${HOLD} s`);
  await sleep(HOLD * 1000);
  for (const g of gens) g.send('report');
  await sleep(1500);
  const rssEnd = pids.map(rssKiB);
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    loadBefore: load0,
    loadAfter: os.loadavg(),
    connections: N,
    workers: W,
    generators: G,
    connectSeconds: connectS,
    open: sum('open'),
    failed: sum('failed'),
    droppedDuringHold: sum('dropped'),
    holdSeconds: HOLD,
    workerPids: pids,
    rssAfterBurstMiB: rssAfterBurst.map((k) => Math.round(k / 1024)),
    rssEndMiB: rssEnd.map((k) => Math.round(k / 1024)),
    totalRssEndMiB: Math.round(rssEnd.reduce((a, b) => a + b, 0) / 1024),
    rssBeforeMiB: rssBefore.map((k) => Math.round(k / 1024)),
    /** What the connections added, over every worker: (RSS at the end − RSS before the first connection) / open connections. */
    kibPerConnectionEnd: (rssEnd.reduce((a, b) => a + b, 0) - rssBefore.reduce((a, b) => a + b, 0)) / Math.max(1, sum('open')),
    kibPerConnectionAfterBurst: (rssAfterBurst.reduce((a, b) => a + b, 0) - rssBefore.reduce((a, b) => a + b, 0)) / Math.max(1, sum('open')),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  for (const g of gens) g.send('stop');
  await sleep(500);
  process.kill(primary.pid, 'SIGTERM');
  await sleep(3000);
}

if (process.argv[2] !== '--gen') {
  main()
    .catch((err) => {
      console.error(`workers-idle bench: ${err.stack || err.message}`);
      process.exitCode = 2;
    })
    .finally(() => {
      killAll();
      setTimeout(() => process.exit(), 300).unref();
    });
}
