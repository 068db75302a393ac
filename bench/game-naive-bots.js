// Load for the naive game server (bench/game.js): `ws` clients that read
// every state text (counted, not parsed: the naive server is what is
// measured) and change their keys about once a second (a twentieth of them every 25 ms).

import WebSocket from 'ws';
import { guardChildProcess } from './lib/child.js';

const config = JSON.parse(process.argv[2]);
guardChildProcess('naive bots');
let bytesIn = 0;
let open = 0;
const sockets = [];
for (let i = 0; i < config.bots; i++) {
  const ws = new WebSocket(config.url, { perMessageDeflate: false });
  ws.on('open', () => {
    open++;
    if (open === config.bots) process.send({ type: 'joined', joined: open });
  });
  ws.on('message', (data) => {
    bytesIn += data.length;
  });
  ws.on('error', () => {});
  sockets.push(ws);
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
}
// Spread like the light bots' inputs (bench/game-light-bots.js): a twentieth of the sockets every 25 ms.
const TURNS = 20;
let turn = 0;
setInterval(() => {
  for (let i = turn++ % TURNS; i < sockets.length; i += TURNS) {
    const ws = sockets[i];
    if (ws.readyState === WebSocket.OPEN && Math.random() < 0.5) ws.send(JSON.stringify({ k: Math.floor(Math.random() * 16) }));
  }
}, 500 / TURNS);
process.on('message', (msg) => {
  if (msg.type === 'exit') process.exit(0);
});
