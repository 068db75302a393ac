// Idle-connection load generator child for the "cost per connection" suite
// (bench/connections.js). Raw-TCP WebSocket connections (bench/lib/raw-ws.js),
// so the load generator favours no server. Started with one JSON argument:
//   { host, port, ports?: number[], path, localAddresses: string[], concurrency, watchdogMs,
//     realtime: { token, channels, bearer?: boolean } | null, silentEvery: number (0: none),
//     retries?: number (attempts again after a failed connection, 0.1-0.5 s apart; default 0) }
// IPC (parent -> child): {type:'open', count} | {type:'halt'} | {type:'probe'} | {type:'stats'} | {type:'close'} | {type:'exit'}
//     (child -> parent): {type:'opened', ...} | {type:'probed', ms} | {type:'stats', ...} | {type:'error', message}
// `stats` also counts the publications (`msg` pushes) the open connections
// received, with the wall-clock time (ms since the epoch) of the first and the
// last, so a parent can time one publish reaching every subscriber.
//
// 'open' opens `count` connections, at most `concurrency` handshakes in
// flight, each from the next local address in turn (several 127.0.0.x
// addresses give several ephemeral port ranges). A realtime connection
// authenticates and subscribes to one channel before it counts as open, and
// answers the server's app-level pings; with `bearer` it carries the token in
// the upgrade's Authorization header instead and counts as open at the 101
// (the server verified the token before answering), with no subscription. Every `silentEvery`-th connection
// stops answering anything once open (no pong, no app pong): the server's
// heartbeat should terminate it; the time it took is recorded.

import { performance } from 'node:perf_hooks';
import { RawWebSocket } from './lib/raw-ws.js';
import { guardChildProcess } from './lib/child.js';

const cfg = JSON.parse(process.argv[2]);
const fail = guardChildProcess('connection load generator', cfg.watchdogMs);

const OP_PING = Buffer.from('{"op":"ping"');
const OP_OK = Buffer.from('"op":"ok"');
const OP_MSG = Buffer.from('{"op":"msg"');
const PONG = '{"op":"pong"}';
const BEARER = cfg.realtime?.bearer ? `Authorization: Bearer ${cfg.realtime.token}\r\n` : '';

/** @type {Set<RawWebSocket>} */
const open = new Set();
let nextIndex = 0;
let addrTurn = 0;
const stats = {
  opened: 0,
  failed: 0,
  firstError: null,
  /** Attempts made again after a failure (cfg.retries), and the first failure that caused one. */
  retried: 0,
  firstRetryError: null,
  /** Closed by the server although they answered everything. */
  dropped: 0,
  firstDrop: null,
  silent: 0,
  silentClosed: 0,
  /** ms from a silent connection's last sign of life (its open) to its termination. */
  silentCloseMs: [],
  /** Publications received by open connections, and when (Date.now() scale) the first and the last arrived. */
  delivered: 0,
  firstDeliveryAt: null,
  lastDeliveryAt: null,
};

/** Resolvers of the connection attempts in flight, by connection. */
const pending = new Map();

const handler = {
  onOpen(conn) {
    if (cfg.realtime && !cfg.realtime.bearer) {
      conn.sendText(
        JSON.stringify({ op: 'auth', id: 1, token: cfg.realtime.token }),
        JSON.stringify({ op: 'sub', id: 2, channel: `bench/${conn.index % cfg.realtime.channels}` }),
      );
      return; // open once both answers came (onMessage)
    }
    settle(conn, null);
  },
  onMessage(conn, payload) {
    if (!payload) return;
    if (payload.subarray(0, OP_PING.length).equals(OP_PING)) {
      if (!conn.silent) conn.sendText(PONG);
      return;
    }
    if (payload.subarray(0, OP_MSG.length).equals(OP_MSG)) {
      const at = performance.timeOrigin + performance.now();
      stats.delivered++;
      stats.firstDeliveryAt ??= at;
      stats.lastDeliveryAt = at;
      return;
    }
    if (pending.has(conn)) {
      if (payload.includes(OP_OK)) {
        conn.received++;
        if (conn.received === 2) settle(conn, null);
      } else {
        settle(conn, `unexpected answer: ${payload.toString().slice(0, 160)}`);
      }
    }
  },
  onClose(conn, reason) {
    if (pending.has(conn)) {
      settle(conn, reason);
      return;
    }
    if (!open.delete(conn)) return;
    if (conn.silent) {
      stats.silentClosed++;
      stats.silentCloseMs.push(performance.now() - conn.openedAt);
    } else if (!conn.closingOnPurpose) {
      stats.dropped++;
      stats.firstDrop ??= reason;
    }
  },
};

function settle(conn, error) {
  const resolve = pending.get(conn);
  if (!resolve) return;
  pending.delete(conn);
  if (error) {
    conn.destroy();
    resolve(error);
    return;
  }
  conn.openedAt = performance.now();
  resolve(null);
}

function connect(silent = false) {
  const localAddress = cfg.localAddresses[addrTurn++ % cfg.localAddresses.length];
  // With `ports` (a paired run, bench/connections.js) the connections go to each server in turn.
  const port = cfg.ports ? cfg.ports[nextIndex % cfg.ports.length] : cfg.port;
  const conn = new RawWebSocket({ host: cfg.host, port, path: cfg.path, localAddress, extraHeaders: BEARER }, handler, nextIndex++);
  conn.collect = Boolean(cfg.realtime);
  conn.silent = false;
  conn.closingOnPurpose = false;
  const started = performance.now();
  return new Promise((resolve) => pending.set(conn, resolve)).then((error) => {
    if (error) return { conn: null, error, ms: 0 };
    // Silence starts once the connection is open (a silent one still completed its handshake).
    if (silent) {
      conn.silent = true;
      conn.answerPings = false;
    }
    return { conn, error: null, ms: performance.now() - started };
  });
}

/** Set by 'halt': the lanes of an 'open' start no new connection (those in flight finish; 'opened' follows). */
let halted = false;

async function openMany(count) {
  let next = 0;
  halted = false;
  const t0 = performance.now();
  async function lane() {
    while (next < count && !halted) {
      const i = next++;
      const silent = cfg.silentEvery > 0 && i % cfg.silentEvery === cfg.silentEvery - 1;
      let { conn, error } = await connect(silent);
      // A refused connection tries again, as a client that reconnects would (cfg.retries, default none).
      for (let attempt = 0; error && attempt < (cfg.retries ?? 0); attempt++) {
        stats.retried++;
        stats.firstRetryError ??= error;
        await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 400));
        ({ conn, error } = await connect(silent));
      }
      if (error) {
        stats.failed++;
        stats.firstError ??= error;
        continue;
      }
      stats.opened++;
      if (silent) stats.silent++;
      open.add(conn);
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, count) }, lane));
  const t1 = performance.now();
  return { startedAt: performance.timeOrigin + t0, endedAt: performance.timeOrigin + t1, ms: t1 - t0 };
}

/** One more connection while the others are held: how long its handshake took. */
async function probe() {
  const { conn, error, ms } = await connect(false);
  if (error) return { ms: null, error };
  conn.closingOnPurpose = true;
  conn.destroy();
  return { ms, error: null };
}

function snapshot() {
  return { type: 'stats', open: open.size, ...stats, silentCloseMs: stats.silentCloseMs.slice() };
}

process.on('message', (msg) => {
  if (msg.type === 'open') {
    openMany(msg.count).then((t) => process.send({ type: 'opened', ...t, opened: stats.opened, failed: stats.failed, firstError: stats.firstError, retried: stats.retried, firstRetryError: stats.firstRetryError }), fail);
  } else if (msg.type === 'halt') {
    halted = true;
  } else if (msg.type === 'probe') {
    probe().then((r) => process.send({ type: 'probed', ...r }), fail);
  } else if (msg.type === 'stats') {
    process.send(snapshot());
  } else if (msg.type === 'close') {
    for (const conn of open) {
      conn.closingOnPurpose = true;
      conn.destroy();
    }
    open.clear();
    // What follows (the measured burst) is counted from zero.
    Object.assign(stats, { opened: 0, failed: 0, firstError: null, retried: 0, firstRetryError: null, dropped: 0, firstDrop: null, silent: 0, silentClosed: 0, silentCloseMs: [], delivered: 0, firstDeliveryAt: null, lastDeliveryAt: null });
    process.send({ type: 'closed' });
  } else if (msg.type === 'exit') {
    process.exit(0);
  }
});
process.send({ type: 'ready' });
