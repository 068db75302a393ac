// Echo server child. Started by bench/run.js with one JSON argument:
//   { impl: ImplSpec, deflate: boolean }
// IPC protocol (child -> parent): {type:'ready', port, native} | {type:'stats', stats} | {type:'error', message}
//              (parent -> child): {type:'stats'} | {type:'exit'}
// The process exits when the parent disconnects, so it never outlives run.js.

import { performance } from 'node:perf_hooks';
import { loadImplementation } from './lib/impls.js';
import { guardChildProcess } from './lib/child.js';

const cfg = JSON.parse(process.argv[2]);

const fail = guardChildProcess('server');

let messages = 0;
let payloadBytes = 0;
let errors = 0;
let firstError = null;
const sockets = new Set();
const BINARY = { binary: true };
const TEXT = { binary: false };

function snapshot() {
  let wireIn = 0;
  let wireOut = 0;
  for (const s of sockets) {
    wireIn += s.bytesRead;
    wireOut += s.bytesWritten;
  }
  return {
    t: performance.now(),
    cpu: process.cpuUsage(),
    messages,
    payloadBytes,
    wireIn: sockets.size ? wireIn : null,
    wireOut: sockets.size ? wireOut : null,
    maxRssKB: process.resourceUsage().maxRSS,
    errors,
    firstError,
  };
}

const { WebSocketServer, native } = await loadImplementation(cfg.impl);
const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: cfg.deflate });

wss.on('connection', (ws, req) => {
  if (req && req.socket) sockets.add(req.socket);
  ws.on('message', (data, isBinary) => {
    messages++;
    payloadBytes += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    ws.send(data, isBinary ? BINARY : TEXT);
  });
  ws.on('error', (err) => {
    errors++;
    firstError ??= String(err && err.message);
  });
});
wss.on('error', fail);

// Report readiness on 'listening', or as soon as address() has a port,
// whichever comes first (both are part of the ws API).
let announced = false;
const poll = setInterval(announce, 10);
function announce() {
  const addr = wss.address();
  if (announced || !addr || typeof addr.port !== 'number') return;
  announced = true;
  clearInterval(poll);
  process.send({ type: 'ready', port: addr.port, native });
}
wss.on('listening', announce);

process.on('message', (msg) => {
  if (msg.type === 'stats') process.send({ type: 'stats', stats: snapshot() });
  else if (msg.type === 'exit') process.exit(0);
});
