// Library-server child for the "cost per connection" suite (bench/connections.js):
// a WebSocketServer with default options (`port`, no compression), that only
// holds its connections. Started with one JSON argument:
//   { impl: ImplSpec, heartbeat: { interval, timeout } | null }
// `heartbeat` is Switchboard's option; for `ws` (which has none) the loop from
// ws's README does the same (ping every interval, terminate who did not pong).
// IPC (child -> parent): {type:'ready', port, native} | {type:'stats', stats} | {type:'error', message}
//     (parent -> child): {type:'stats', resetLag?} | {type:'exit'}

import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadImplementation } from './lib/impls.js';
import { guardChildProcess } from './lib/child.js';

const cfg = JSON.parse(process.argv[2]);
const fail = guardChildProcess('connection server');

const { WebSocketServer, native } = await loadImplementation(cfg.impl);
const isSwitchboard = cfg.impl.name === 'switchboard';
const options = { port: 0, host: '127.0.0.1', backlog: 4096 };
if (cfg.heartbeat && isSwitchboard) options.heartbeat = cfg.heartbeat;
const wss = new WebSocketServer(options);
wss.on('error', fail);

let open = 0;
let closed = 0;
let errors = 0;
wss.on('connection', (ws) => {
  open++;
  ws.on('close', () => {
    open--;
    closed++;
  });
  ws.on('error', () => errors++);
});

if (cfg.heartbeat && !isSwitchboard) {
  // ws's README heartbeat: one interval for all clients.
  wss.on('connection', (ws) => {
    ws.isAlive = true;
    ws.on('pong', function () {
      this.isAlive = true;
    });
  });
  setInterval(() => {
    for (const ws of wss.clients) {
      if (ws.isAlive === false) ws.terminate();
      else {
        ws.isAlive = false;
        ws.ping();
      }
    }
  }, cfg.heartbeat.interval).unref();
}

const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();

function stats(resetLag) {
  const m = process.memoryUsage();
  const s = {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    open,
    closed,
    errors,
    lagP99Ms: lag.percentile(99) / 1e6,
    lagMaxMs: lag.max / 1e6,
  };
  if (resetLag) lag.reset();
  return s;
}

await new Promise((resolve) => (wss.address() ? resolve() : wss.once('listening', resolve)));
process.send({ type: 'ready', port: wss.address().port, native });
process.on('message', (msg) => {
  if (msg.type === 'stats') process.send({ type: 'stats', stats: stats(msg.resetLag) });
  else if (msg.type === 'exit') process.exit(0);
});
