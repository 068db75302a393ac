#!/usr/bin/env node
// The "sink" of bench/cluster.js: a fan-out server that does as little as a
// server can, to measure the load generator's own ceiling (cells sinksb and
// sinksio). One process, no broker. It speaks just enough of each dialect:
//
//   sb:  `{"op":"sub",..}` → `{"op":"ok","id":1}`; `{"op":"pub","id":N,..,"data":D}`
//        → `{"op":"msg","channel":"bench/room","offset":0,"epoch":"sink","data":D}`
//        to every subscriber, then `{"op":"ok","id":N}`
//   sio: Engine.IO open `0{..}`, `40` → `40{..}`; `42N["pub",D]` → `42["msg",D]`
//        to every `role=sub` connection, then `43N["ok"]`
//
// Each broadcast frame is built once and written to every socket under one
// cork per event-loop turn (the `ws` library does the handshake and reads).
// argv: <"sb" | "sio">. Prints one line `{"listening":<port>}` on stdout.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const dialect = process.argv[2];
if (dialect !== 'sb' && dialect !== 'sio') throw new Error('argv: sb | sio');

const subs = new Set();
const corked = new Set();
let flushScheduled = false;
function flush() {
  flushScheduled = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}
/** A text frame (server frames are unmasked), built once. */
function textFrame(payload) {
  const body = Buffer.from(payload);
  const len = body.length;
  const head = len < 126 ? Buffer.from([0x81, len]) : len < 65536 ? Buffer.from([0x81, 126, len >> 8, len & 0xff]) : null;
  if (head === null) throw new Error('sink: message too large');
  return Buffer.concat([head, body]);
}
function writeFrame(ws, frame) {
  const socket = ws._socket;
  if (!corked.has(socket)) {
    corked.add(socket);
    socket.cork();
    if (!flushScheduled) {
      flushScheduled = true;
      process.nextTick(flush);
    }
  }
  socket.write(frame);
}
function broadcast(payload) {
  const frame = textFrame(payload);
  for (const ws of subs) writeFrame(ws, frame);
}

const server = http.createServer();
const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  ws.on('close', () => subs.delete(ws));
  if (dialect === 'sio') {
    const role = new URL(req.url, 'http://x').searchParams.get('role');
    ws.send('0{"sid":"sink","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}');
    ws.on('message', (buf) => {
      const s = buf.toString();
      if (s === '40') {
        if (role === 'sub') subs.add(ws);
        ws.send('40{"sid":"sink"}');
        return;
      }
      const m = /^42(\d+)\["pub",(.*)\]$/s.exec(s);
      if (m === null) return;
      broadcast(`42["msg",${m[2]}]`);
      writeFrame(ws, textFrame(`43${m[1]}["ok"]`));
    });
    return;
  }
  ws.on('message', (buf) => {
    const m = JSON.parse(buf.toString());
    if (m.op === 'sub') {
      subs.add(ws);
      ws.send(`{"op":"ok","id":${JSON.stringify(m.id)}}`);
    } else if (m.op === 'pub') {
      broadcast(`{"op":"msg","channel":${JSON.stringify(m.channel)},"offset":0,"epoch":"sink","data":${JSON.stringify(m.data)}}`);
      writeFrame(ws, textFrame(`{"op":"ok","id":${JSON.stringify(m.id)},"offset":0,"epoch":"sink"}`));
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setInterval(() => {
  if (process.ppid === 1) stop();
}, 1000).unref();
