// Fan-out server child. Started by bench/run.js (bench/lib/fanout.js) with one JSON argument:
//   { impl: ImplSpec, kind: 'realtime' | 'naive', realtimeSpecifier?: string }
//
// - 'realtime': Switchboard's realtime server (createRealtimeServer), anonymous
//   pub/sub in one namespace, limits raised so the benchmark is not rate-limited.
// - 'naive': the same scenario written with a WebSocketServer (`ws`, or any
//   module with its API): a Map channel -> Set of sockets, and on a publish
//   `for (const c of subs) c.send(text)`, the text stringified once, outside
//   the loop. That is the loop a reasonable `ws` user writes.
//
// Both speak the same JSON messages (docs/protocol.md), so the load
// generator is the same for both:
//   client: {"op":"sub","id":1,"channel":"bench/0"}            -> {"op":"ok","id":1,...}
//   client: {"op":"pub","id":7,"channel":"bench/0","data":{…}} -> {"op":"ok","id":7,...}
//   server: {"op":"msg","channel":"bench/0",...,"data":{…},...} to every subscriber
// Switchboard's `msg` carries more fields (offset, epoch, time, from); the
// report shows the bytes per delivery of each.
//
// IPC (child -> parent): {type:'ready', port, path, native} | {type:'stats', stats} | {type:'error', message}
//     (parent -> child): {type:'stats'} | {type:'exit'}
// The process exits when the parent disconnects, so it never outlives run.js.

import { performance } from 'node:perf_hooks';
import { loadImplementation, loadedNativeAddons } from './lib/impls.js';
import { guardChildProcess } from './lib/child.js';
import { FANOUT_RAISED_LIMITS } from './lib/fanout.js';

const cfg = JSON.parse(process.argv[2]);
const PATH = '/rt';

const fail = guardChildProcess('fan-out server');

let errors = 0;
let firstError = null;
let connections = () => 0;

function snapshot() {
  return {
    t: performance.now(),
    cpu: process.cpuUsage(),
    maxRssKB: process.resourceUsage().maxRSS,
    connections: connections(),
    errors,
    firstError,
  };
}

function noteError(err) {
  errors++;
  firstError ??= String(err && err.message);
}

/** Limits raised so that neither rate limits nor connection caps shape the result. */
const RAISED_LIMITS = FANOUT_RAISED_LIMITS;

async function startRealtime() {
  const { createRealtimeServer } = await import(cfg.realtimeSpecifier);
  const server = createRealtimeServer({
    config: {
      port: 0,
      host: '127.0.0.1',
      path: PATH,
      auth: { anonymous: true },
      namespaces: [{ prefix: '', anonymousSubscribe: true, anonymousPublish: true, clientPublish: true }],
      limits: RAISED_LIMITS,
      heartbeat: { intervalMs: 0 },
      log: { level: 'silent' },
    },
  });
  const address = await server.listen();
  connections = () => server.hub.sessions.size;
  return address.port;
}

async function startNaive() {
  const { WebSocketServer } = await loadImplementation(cfg.impl);
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', path: PATH });
  /** channel -> Set of sockets */
  const channels = new Map();
  let open = 0;
  connections = () => open;
  wss.on('connection', (ws) => {
    open++;
    const mine = new Set();
    ws.on('message', (data) => {
      const msg = JSON.parse(data);
      if (msg.op === 'pub') {
        const subs = channels.get(msg.channel);
        if (subs) {
          const text = JSON.stringify({ op: 'msg', channel: msg.channel, data: msg.data });
          for (const c of subs) c.send(text);
        }
        ws.send(JSON.stringify({ op: 'ok', id: msg.id }));
      } else if (msg.op === 'sub') {
        let subs = channels.get(msg.channel);
        if (!subs) channels.set(msg.channel, (subs = new Set()));
        subs.add(ws);
        mine.add(msg.channel);
        ws.send(JSON.stringify({ op: 'ok', id: msg.id, channel: msg.channel }));
      } else {
        ws.send(JSON.stringify({ op: 'error', id: msg.id, code: 400, message: `unknown op ${msg.op}` }));
      }
    });
    ws.on('close', () => {
      open--;
      for (const ch of mine) {
        const subs = channels.get(ch);
        subs.delete(ws);
        if (subs.size === 0) channels.delete(ch);
      }
    });
    ws.on('error', noteError);
  });
  wss.on('error', fail);
  await new Promise((resolve) => (wss.address() ? resolve() : wss.once('listening', resolve)));
  return wss.address().port;
}

const port = cfg.kind === 'realtime' ? await startRealtime() : await startNaive();
process.send({ type: 'ready', port, path: PATH, native: loadedNativeAddons() });

process.on('message', (msg) => {
  if (msg.type === 'stats') process.send({ type: 'stats', stats: snapshot() });
  else if (msg.type === 'exit') process.exit(0);
});
