// Light load for the arena in the game benchmark (bench/game.js,
// GAME_BOT_KIND=light): the Switchboard counterpart of the naive bots
// (bench/game-naive-bots.js). Each one speaks the realtime protocol over
// MessagePack with the `ws` package: auth, `arena.join` (spawned at random),
// a subscription to the block channel around its spawn point (interest.js),
// and an `arena.input` with new keys about once a second by `send` (no reply, as
// the SDK players send it; spread: a twentieth of the bots every 25 ms). It reads and
// counts every frame without decoding it — what the naive bots do with their
// JSON — so a thousand of them fit on one CPU at 60 Hz, which full SDK bots
// (examples/arena/bots.mjs: decode and apply every area message) do not.
// What they cost the server is what players cost it: the same block
// messages and inputs; only the block does not follow the player as it moves.

import WebSocket from 'ws';
import { guardChildProcess } from './lib/child.js';

const config = JSON.parse(process.argv[2]);
guardChildProcess('light bots');
const ROOT = new URL('../', import.meta.url);
const { msgpackCodec } = await import(new URL('dist/wire/codec.js', ROOT).href);
const { AreaGrid } = await import(new URL('examples/arena/lib/interest.js', ROOT).href);

let bytesIn = 0;
let joined = 0;
let failed = 0;
/** The first reason a bot did not join (closed, refused), for the parent's error message. */
let firstFailure = null;
const send = (ws, message) => ws.send(msgpackCodec.encode(message));
/** Every bot has joined or failed: tell the parent (it checks the count). */
function settled() {
  if (joined + failed !== config.bots) return;
  if (failed > 0) process.stderr.write(`light bots: ${failed} did not join (first: ${firstFailure})\n`);
  process.send({ type: 'joined', joined });
}
function fail(bot, why) {
  if (bot.ready || bot.failed) return;
  bot.failed = true;
  failed++;
  firstFailure ??= why;
  settled();
}

function startBot() {
  const ws = new WebSocket(config.url, msgpackCodec.subprotocol, { perMessageDeflate: false });
  const bot = { ws, seq: 0, ready: false, failed: false };
  // Replies by id: 1 auth, 2 join, 3 sub; inputs get none.
  ws.on('open', () => {
    send(ws, { op: 'auth', id: 1, token: config.token });
    send(ws, { op: 'rpc', id: 2, method: 'arena.join', data: { name: 'light', spawn: 'random' } });
  });
  ws.on('message', (data) => {
    bytesIn += data.length;
    if (bot.ready) return;
    // Until subscribed, replies are decoded (a handful per bot).
    const m = msgpackCodec.decode(data);
    if (m.op === 'error') {
      fail(bot, `${m.code} ${m.message}`);
      ws.close();
    } else if (m.op === 'ok' && m.id === 2) {
      const grid = new AreaGrid(m.data.config);
      send(ws, { op: 'sub', id: 3, channel: grid.channel(grid.blockFor(m.data.x, m.data.y)) });
    } else if (m.op === 'ok' && m.id === 3) {
      bot.ready = true;
      joined++;
      settled();
    }
  });
  ws.on('close', (code) => fail(bot, `closed ${code} before joining`));
  ws.on('error', (err) => fail(bot, err.message));
  return bot;
}

const bots = [];
for (let i = 0; i < config.bots; i++) {
  bots.push(startBot());
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
}
// Each bot gets its turn every half second and changes keys at one turn in two (about once a second),
// a twentieth of the bots every 25 ms: players do not all press keys at the same instant. (All at once
// every 500 ms, as before 2026-12-07 15:00, sent the server a burst of ~125 inputs per process twice a
// second, which landed in one tick and made it the slowest.)
const TURNS = 20;
let turn = 0;
setInterval(() => {
  for (let i = turn++ % TURNS; i < bots.length; i += TURNS) {
    const bot = bots[i];
    if (!bot.ready || bot.ws.readyState !== WebSocket.OPEN || Math.random() >= 0.5) continue;
    send(bot.ws, { op: 'send', method: 'arena.input', data: { s: ++bot.seq, k: Math.floor(Math.random() * 16) } });
  }
}, 500 / TURNS);
process.on('message', (msg) => {
  if (msg.type === 'exit') process.exit(0);
});
