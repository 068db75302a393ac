// The arena page: join, draw at the display's frame rate, the others
// interpolated with a fixed render delay, ourselves predicted; a debug
// overlay (F3) with the tick rate, snapshot age, bandwidth and lost frames.
// `/arena?name=alice` joins directly. `window.arena` exposes the numbers
// (the end-to-end test reads them).
import { realtimeUrl, showConnection, showNotice, tokenAndSdk, devToken } from '/common.js';
import { ArenaPlayer } from '/arena/lib/player.js';
import { Interpolator, Predictor } from '/arena/lib/smooth.js';
import { Key } from '/arena/lib/sim.js';

const $ = (id) => document.getElementById(id);
/** How far in the past the others are drawn: about 3 ticks at 30 Hz, room for one or two late or lost snapshots. */
const RENDER_DELAY_MS = 100;

const params = new URLSearchParams(location.search);
const initialName = (params.get('name') ?? '').trim().slice(0, 24);
$('join-name').value = initialName;
$('join').addEventListener('submit', (e) => {
  e.preventDefault();
  start($('join-name').value.trim());
});
if (initialName) start(initialName);
else {
  $('join').hidden = false;
  $('join-name').focus();
}

/** Bytes over the page's WebSockets, counted by wrapping the constructor the SDK uses. */
const traffic = { in: 0, out: 0 };
class CountingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (e) => {
      traffic.in += typeof e.data === 'string' ? new TextEncoder().encode(e.data).byteLength : e.data.byteLength ?? e.data.size ?? 0;
    });
  }
  send(data) {
    traffic.out += typeof data === 'string' ? new TextEncoder().encode(data).byteLength : data.byteLength ?? data.size ?? 0;
    super.send(data);
  }
}

async function start(name) {
  if (!name || name.length > 24) return showNotice('Pick a name (1 to 24 characters).');
  $('join').hidden = true;
  history.replaceState(null, '', `/arena?name=${encodeURIComponent(name)}`);
  const ready = await tokenAndSdk(name);
  if (!ready) return;
  const { token, sdk } = ready;
  const client = new sdk.Client(realtimeUrl(), {
    token,
    getToken: () => devToken(name),
    protocol: 'msgpack',
    // Binary frames and a fixed tick: WebSocket only (the fallbacks are JSON).
    transports: ['websocket'],
    WebSocket: CountingWebSocket,
  });
  showConnection(client, $('state'), $('transport'));
  new Game(client, name).run().catch((err) => showNotice(`The game stopped: ${err.message}`));
}

class Game {
  constructor(client, name) {
    this.client = client;
    this.canvas = $('view');
    this.ctx = this.canvas.getContext('2d');
    this.keys = new Set();
    this.interp = null;
    this.predictor = null;
    /** Ticks seen per second, from the newest tick numbers. */
    this.rate = { ticks: 0, lastTick: 0, hz: 0, inBps: 0, outBps: 0, lastIn: 0, lastOut: 0, at: performance.now() };
    this.player = new ArenaPlayer(client, {
      name,
      onArea: (area, state) => this.onArea(area, state),
      onJoined: () => {
        // A new player (first join, or again after a reconnect): predict from its first snapshot.
        if (this.predictor) this.predictor.pos = null;
      },
      onError: (err) => console.warn('arena:', err),
    });
    this.overlayOn = true;
    /** @type {{ name: string, qx: number | null, qy: number | null, movedAt: number } | null} */
    this.watch = null;
    window.arena = this.debug();
  }

  async run() {
    await this.client.connect();
    const reply = await this.player.join();
    const c = reply.config;
    this.interp = new Interpolator(c.tickHz, RENDER_DELAY_MS);
    this.predictor = new Predictor(c);
    $('delay-ms').textContent = String(RENDER_DELAY_MS);
    $('game').hidden = false;
    this.canvas.focus();
    this.bindKeys();
    let last = performance.now();
    const frame = (now) => {
      this.predictor.advance(now - last);
      last = now;
      this.draw(now);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
    // Stats once a second; interest follows our position 10 times a second.
    setInterval(() => this.sampleRates(), 1000);
    setInterval(() => {
      const me = this.predictor.drawn();
      if (me) this.player.follow(me.x, me.y);
    }, 100);
  }

  /** An area's state changed (keyframe or delta): new samples for everyone in it. */
  onArea(area, state) {
    if (!this.interp) return;
    const now = performance.now();
    const q = this.player.config.quantum;
    this.interp.observe(state.tick, now);
    for (const p of state.players.values()) {
      const w = this.watch;
      if (w && w.movedAt === 0 && p.name === w.name && (p.qx !== w.qx || p.qy !== w.qy)) {
        if (w.qx === null) {
          w.qx = p.qx;
          w.qy = p.qy;
        } else w.movedAt = state.tick;
      }
      if (p.id === this.player.id) {
        this.predictor.reconcile(p.qx * q, p.qy * q, state.tick, p.ack, p.ackTick);
        continue;
      }
      this.interp.add(p.id, state.tick, p.qx * q, p.qy * q);
    }
  }

  bindKeys() {
    const map = { ArrowUp: Key.Up, KeyW: Key.Up, ArrowDown: Key.Down, KeyS: Key.Down, ArrowLeft: Key.Left, KeyA: Key.Left, ArrowRight: Key.Right, KeyD: Key.Right };
    const update = () => {
      let bits = 0;
      for (const k of this.keys) bits |= map[k] ?? 0;
      const seq = this.player.setKeys(bits);
      if (seq > 0 || bits === 0) this.predictor.press(bits, seq);
    };
    addEventListener('keydown', (e) => {
      if (e.code === 'F3') {
        this.overlayOn = !this.overlayOn;
        e.preventDefault();
        return;
      }
      if (!(e.code in map)) return;
      e.preventDefault();
      this.keys.add(e.code);
      update();
    });
    addEventListener('keyup', (e) => {
      if (!this.keys.delete(e.code)) return;
      update();
    });
    // Keys held when the window loses focus would stay held for ever.
    addEventListener('blur', () => {
      this.keys.clear();
      update();
    });
  }

  /** Hold these keys (the end-to-end test drives the game through this). */
  press(bits) {
    const seq = this.player.setKeys(bits);
    if (seq > 0) this.predictor?.press(bits, seq);
  }

  sampleRates() {
    const r = this.rate;
    const now = performance.now();
    const dt = (now - r.at) / 1000;
    const newest = this.interp?.newestTick ?? 0;
    r.hz = r.lastTick ? (newest - r.lastTick) / dt : 0;
    r.lastTick = newest;
    r.inBps = (traffic.in - r.lastIn) / dt;
    r.outBps = (traffic.out - r.lastOut) / dt;
    r.lastIn = traffic.in;
    r.lastOut = traffic.out;
    r.at = now;
  }

  /** Everyone we know of: area states merged (a player is in exactly one area). */
  visible() {
    const out = [];
    for (const { state } of this.player.areas.values()) for (const p of state.players.values()) out.push(p);
    return out;
  }

  draw(now) {
    const { ctx, canvas } = this;
    const c = this.player.config;
    const me = this.predictor.drawn();
    const w = canvas.width;
    const h = canvas.height;
    ctx.fillStyle = '#0f172a';
    ctx.fillRect(0, 0, w, h);
    if (!me) {
      ctx.fillStyle = '#94a3b8';
      ctx.font = '16px system-ui';
      ctx.fillText('waiting for the first snapshot…', 20, 30);
      this.drawOverlay(now);
      return;
    }
    // The camera follows us; the scale fits the view (what the 2×2 block covers) into the canvas.
    const view = c.areaSize / 2 - c.margin;
    const scale = Math.min(w, h) / (2 * view);
    const sx = (x) => (x - me.x) * scale + w / 2;
    const sy = (y) => (y - me.y) * scale + h / 2;
    // World border and area lines.
    ctx.strokeStyle = '#1e293b';
    ctx.lineWidth = 1;
    for (let x = 0; x <= c.width; x += c.areaSize) line(ctx, sx(x), sy(0), sx(x), sy(c.height));
    for (let y = 0; y <= c.height; y += c.areaSize) line(ctx, sx(0), sy(y), sx(c.width), sy(y));
    ctx.strokeStyle = '#475569';
    ctx.strokeRect(sx(0), sy(0), c.width * scale, c.height * scale);
    const q = c.quantum;
    ctx.fillStyle = '#facc15';
    for (const { state } of this.player.areas.values()) {
      for (const g of state.gems.values()) circle(ctx, sx(g.qx * q), sy(g.qy * q), c.gemRadius * scale);
    }
    const tick = this.interp.renderTick(now);
    ctx.font = '12px system-ui';
    ctx.textAlign = 'center';
    for (const p of this.visible()) {
      if (p.id === this.player.id) continue;
      const pos = this.interp.position(p.id, tick);
      if (!pos) continue;
      ctx.fillStyle = '#38bdf8';
      circle(ctx, sx(pos.x), sy(pos.y), c.radius * scale);
      ctx.fillStyle = '#cbd5e1';
      ctx.fillText(`${p.name} ${p.score}`, sx(pos.x), sy(pos.y) - c.radius * scale - 4);
    }
    const self = this.player.self();
    ctx.fillStyle = '#4ade80';
    circle(ctx, w / 2, h / 2, c.radius * scale);
    ctx.fillStyle = '#f8fafc';
    ctx.fillText(`you ${self?.p.score ?? 0}`, w / 2, h / 2 - c.radius * scale - 4);
    ctx.textAlign = 'start';
    this.drawOverlay(now);
  }

  drawOverlay(now) {
    const o = $('overlay');
    o.hidden = !this.overlayOn;
    if (!this.overlayOn) return;
    const d = this.debug();
    o.textContent = [
      `tick rate    ${d.tickHz.toFixed(1)} Hz (server ${this.player.config?.tickHz ?? '?'} Hz)`,
      `snapshot age ${d.snapshotAgeMs.toFixed(0)} ms (render delay ${RENDER_DELAY_MS} ms)`,
      `bandwidth    in ${kb(d.inBps)}/s  out ${kb(d.outBps)}/s`,
      `lost frames  ${d.lostFrames} (gaps ${d.counters.gaps}, keyframes asked ${d.counters.keyframeAsks})`,
      `areas        ${d.areas.join(' ')}  players ${d.players}  tick ${d.tick}`,
    ].join('\n');
  }

  /** The numbers, for the overlay and for tests (`window.arena`). */
  debug() {
    const game = this;
    return {
      get id() { return game.player.id; },
      get tick() { return game.interp?.newestTick ?? 0; },
      get tickHz() { return game.rate.hz; },
      get snapshotAgeMs() { return game.interp?.newestAt ? performance.now() - game.interp.newestAt : Infinity; },
      get inBps() { return game.rate.inBps; },
      get outBps() { return game.rate.outBps; },
      get bytesIn() { return traffic.in; },
      get lostFrames() { let n = 0; for (const { state } of game.player.areas.values()) n += state.missed; return n; },
      get counters() { return { ...game.player.counters }; },
      get areas() { return [...game.player.areas.keys()]; },
      get players() { return game.visible().length; },
      get connected() { return game.client.state === 'connected'; },
      /** Others as the areas last told: id → { name, x, y, tick }. */
      others() {
        const q = game.player.config?.quantum ?? 1;
        const out = {};
        for (const { state } of game.player.areas.values()) {
          for (const p of state.players.values()) if (p.id !== game.player.id) out[p.name] = { id: p.id, x: p.qx * q, y: p.qy * q, tick: state.tick };
        }
        return out;
      },
      self() {
        const s = game.player.self();
        const q = game.player.config?.quantum ?? 1;
        return s ? { id: s.p.id, x: s.p.qx * q, y: s.p.qy * q, tick: s.tick, score: s.p.score, ack: s.p.ack, ackTick: s.p.ackTick } : null;
      },
      press: (bits) => game.press(bits),
      /** Note the first tick at which player `name` is at another position than now (read it with watched()). */
      watchFor(name) { game.watch = { name, qx: null, qy: null, movedAt: 0 }; },
      watched() { return game.watch?.movedAt ?? 0; },
    };
  }
}

function circle(ctx, x, y, r) {
  ctx.beginPath();
  ctx.arc(x, y, Math.max(1, r), 0, 2 * Math.PI);
  ctx.fill();
}
function line(ctx, x0, y0, x1, y1) {
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}
function kb(bytes) {
  return bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes.toFixed(0)} B`;
}
