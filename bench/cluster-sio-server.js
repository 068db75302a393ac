#!/usr/bin/env node
// Socket.IO 4 server node for bench/cluster.js: @socket.io/redis-adapter 8 on
// ioredis, websocket transport only, on a free loopback port.
// argv: <redisUrl>. Prints one line `{"listening":<port>}` on stdout.
// Clients: `?role=sub` joins room "bench"; the emitter sends
// `pub` (data, ack) and the node broadcasts `msg` to the room (every node,
// through Redis) and then acks.
import http from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';

const redisUrl = process.argv[2];
const pub = new Redis(redisUrl);
const sub = pub.duplicate();
const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ['websocket'], adapter: createAdapter(pub, sub), serveClient: false });
io.on('connection', (socket) => {
  if (socket.handshake.query.role === 'sub') socket.join('bench');
  socket.on('pub', (data, ack) => {
    io.to('bench').emit('msg', data);
    if (typeof ack === 'function') ack('ok');
  });
});
httpServer.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ listening: httpServer.address().port })}\n`);
});
const stop = () => {
  io.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Orphan guard: the parent went away.
process.on('disconnect', stop);
setInterval(() => {
  if (process.ppid === 1) stop();
}, 1000).unref();
