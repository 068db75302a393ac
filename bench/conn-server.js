// Library-server child for the "cost per connection" suite (bench/connections.js):
// a WebSocketServer with default options (`port`, no compression), that only
// holds its connections. Started with one JSON argument:
//   { impl: ImplSpec | null, heartbeat: { interval, timeout } | null }
// With `impl: null` it is Node's floor instead: a minimal upgrade parser on a
// plain net.Server (the request head read up to the empty line, the key
// hashed, one 101 written, the socket kept with listener functions shared by
// every socket): what any WebSocket server on Node pays at least.
// `heartbeat` is Switchboard's option; for `ws` (which has none) the loop from
// ws's README does the same (ping every interval, terminate who did not pong).
// IPC (child -> parent): {type:'ready', port, native} | {type:'stats', stats} | {type:'error', message}
//     (parent -> child): {type:'stats', resetLag?} | {type:'exit'}

import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { monitorEventLoopDelay, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import v8 from 'node:v8';
import { loadImplementation } from './lib/impls.js';
import { guardChildProcess } from './lib/child.js';

const cfg = JSON.parse(process.argv[2]);
const fail = guardChildProcess('connection server');

/** Node's floor (`impl: null`): the least a WebSocket server on node:net keeps per connection. */
class FloorServer extends EventEmitter {
  constructor({ host, backlog }) {
    super();
    this.server = net.createServer((socket) => {
      socket.on('data', floorData);
      socket.on('error', floorError);
      socket.on('close', floorClose);
    });
    this.server.on('error', (err) => this.emit('error', err));
    this.server.listen(0, host, backlog, () => this.emit('listening'));
  }
  address() {
    return this.server.address();
  }
}
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = /\r\nsec-websocket-key:[ \t]*([A-Za-z0-9+/=]{24})/i;
let floor = null;
function floorData(chunk) {
  this.removeListener('data', floorData); // the head comes in one read from the load generator
  const m = KEY.exec(chunk.toString('latin1'));
  if (!m) return this.destroy();
  const accept = createHash('sha1').update(m[1] + GUID).digest('base64');
  this.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  this.on('data', floorIdle);
  floor.emit('connection', this);
}
function floorIdle() {}
function floorError() {
  this.destroy();
}
function floorClose() {
  this.emit('ws-close');
}

const { WebSocketServer, native } = cfg.impl ? await loadImplementation(cfg.impl) : { WebSocketServer: FloorServer, native: [] };
const isSwitchboard = cfg.impl?.name === 'switchboard' || cfg.impl?.name === 'base'; // base: another build of it
const options = { port: 0, host: '127.0.0.1', backlog: 4096 };
if (cfg.heartbeat && isSwitchboard) options.heartbeat = cfg.heartbeat;
const wss = new WebSocketServer(options);
if (!cfg.impl) floor = wss;
wss.on('error', fail);

let open = 0;
let closed = 0;
let errors = 0;
wss.on('connection', (ws) => {
  open++;
  ws.on(cfg.impl ? 'close' : 'ws-close', () => {
    open--;
    closed++;
  });
  ws.on('error', () => errors++);
});

if (cfg.heartbeat && cfg.impl && !isSwitchboard) {
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

// Garbage collections so far, by kind: whether the young generation had a chance to shrink.
const gcs = { scavenges: 0, markCompacts: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gcs.scavenges++;
    else if (e.detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) gcs.markCompacts++;
  }
}).observe({ entryTypes: ['gc'] });

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
    // V8's young generation (both semi-spaces, resident): grows with a burst of connections, shrinks only at a later GC.
    newSpace: v8.getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space')?.physical_space_size ?? 0,
    // Bytes in use in it: between two samples with no scavenge in between, the growth is what was allocated.
    newSpaceUsed: v8.getHeapSpaceStatistics().find((sp) => sp.space_name === 'new_space')?.space_used_size ?? 0,
    scavenges: gcs.scavenges,
    markCompacts: gcs.markCompacts,
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
