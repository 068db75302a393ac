// The live dashboard: subscribes to `sys/dashboard`, where the server
// publishes a snapshot of its metrics every second (src/server/dashboard-feed.ts),
// and draws the last two minutes as sparklines.
import { devToken, realtimeUrl, showConnection, showNotice, tokenAndSdk } from './common.js';
import { drawSparkline } from './sparkline.js';

const CHANNEL = 'sys/dashboard';
const CAPACITY = 120; // snapshots kept (one a second)
const $ = (id) => document.getElementById(id);

/** Snapshots, oldest first. */
const snapshots = [];

const number = (n) => (n >= 100 || Number.isInteger(n) ? Math.round(n).toLocaleString() : n.toFixed(1));
const bytes = (n) => {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
};
const millis = (s) => (s === null || s === undefined ? '–' : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`);

const CARDS = [
  { id: 'connections', pick: (s) => s.connections.total, format: number, color: '#1f6feb', sub: (s) => transports(s) },
  { id: 'msgs-in', pick: (s) => s.rates.messagesIn, format: number, color: '#1a7f37', sub: (s) => `${bytes(s.rates.bytesIn)}/s · ${number(s.totals.messagesIn)} in all` },
  { id: 'msgs-out', pick: (s) => s.rates.messagesOut, format: number, color: '#8250df', sub: (s) => `${bytes(s.rates.bytesOut)}/s · ${number(s.totals.messagesOut)} in all` },
  { id: 'subscriptions', pick: (s) => s.subscriptions, format: number, color: '#bf8700', sub: (s) => `${s.channelCount} channel${s.channelCount === 1 ? '' : 's'}` },
  { id: 'memory', pick: (s) => s.process.rssBytes ?? 0, format: bytes, color: '#57606a', sub: (s) => `heap ${bytes(s.process.heapUsedBytes)}` },
  { id: 'lag', pick: (s) => s.process.eventLoopLagS ?? 0, format: millis, color: '#cf222e', sub: () => 'time a timer fires late' },
];

function transports(s) {
  const parts = Object.entries(s.connections.byTransport).map(([t, n]) => `${t} ${n}`);
  return parts.length > 0 ? parts.join(' · ') : 'none open';
}

function add(snapshot) {
  if (!snapshot || snapshot.v !== 1) return false;
  const last = snapshots[snapshots.length - 1];
  if (last && snapshot.time <= last.time) return false;
  snapshots.push(snapshot);
  if (snapshots.length > CAPACITY) snapshots.splice(0, snapshots.length - CAPACITY);
  return true;
}

function render() {
  const s = snapshots[snapshots.length - 1];
  if (!s) return;
  $('notice').hidden = true;
  $('updated').textContent = `Updated ${new Date(s.time).toLocaleTimeString()} · server up ${duration(s.uptimeS)} · ${number(s.connectionsOpened)} connections opened since`;
  for (const card of CARDS) {
    const el = $(card.id);
    const value = card.pick(s);
    const valueEl = el.querySelector('.value');
    valueEl.textContent = card.format(value);
    valueEl.dataset.value = String(value);
    el.querySelector('.sub').textContent = card.sub(s);
    // The x axis grows with the data up to two minutes, so a fresh dashboard does not draw a sliver.
    const capacity = Math.min(CAPACITY, Math.max(30, snapshots.length));
    drawSparkline(el.querySelector('canvas'), snapshots.map(card.pick), { capacity, color: card.color, format: card.format });
  }
  $('channels').querySelector('.count').textContent = String(s.channelCount);
  const top = s.channels[0]?.subscribers ?? 0;
  table('channels', s.channels, (c) => {
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${top > 0 ? Math.max(2, (c.subscribers / top) * 100) : 0}%`;
    return [c.channel, { num: c.subscribers }, bar];
  });
  table('closes', s.closes, (c) => [String(c.code), c.meaning, { num: c.count }]);
  const errors = [
    ...s.errors.map((e) => [`request ${e.op}`, String(e.code), { num: e.count }]),
    ...s.rejections.map((r) => ['upgrade refused', `HTTP ${r.status}`, { num: r.count }]),
    ...s.dropped.map((d) => ['dropped', d.reason, { num: d.count }]),
  ];
  table('errors', errors, (row) => row);
}

function table(id, rows, cells) {
  const section = $(id);
  const body = section.querySelector('tbody');
  body.replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement('tr');
      for (const cell of cells(row)) {
        const td = document.createElement('td');
        if (cell instanceof Node) td.append(cell);
        else if (typeof cell === 'object') {
          td.className = 'num';
          td.textContent = number(cell.num);
        } else td.textContent = cell;
        tr.append(td);
      }
      return tr;
    }),
  );
  section.querySelector('table').hidden = rows.length === 0;
  section.querySelector('.empty').hidden = rows.length > 0;
}

function duration(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

const fail = showNotice;

async function start() {
  const user = `dashboard-${Math.random().toString(36).slice(2, 8)}`;
  const ready = await tokenAndSdk(user);
  if (!ready) return;
  const { token, sdk } = ready;
  const client = new sdk.Client(realtimeUrl(), { token, getToken: () => devToken(user) });
  window.switchboardDashboard = { client, snapshots };
  showConnection(client, $('state'), $('transport'));
  let waiting = null;
  client.subscribe(CHANNEL, {
    onMessage: (pub) => {
      if (add(pub.data)) render();
    },
    onSubscribed: async (e) => {
      if (!e.resumed || !e.recovered) {
        // The last two minutes from the channel's history, so the charts start full.
        try {
          const history = await client.history(CHANNEL, { limit: CAPACITY });
          const older = history.publications.map((p) => p.data).filter((d) => d && d.v === 1);
          const merged = [...older, ...snapshots].sort((a, b) => a.time - b.time);
          snapshots.length = 0;
          for (const snap of merged) add(snap);
          render();
        } catch {
          // No history for this namespace: the charts fill as snapshots come.
        }
      }
      clearTimeout(waiting);
      waiting = setTimeout(() => {
        const last = snapshots[snapshots.length - 1];
        if (!last || Date.now() - last.time > 5000) {
          fail(`No snapshot on ${CHANNEL} yet. \`switchboard serve\` publishes them when the namespace "sys" forbids client publications (development mode sets that up).`);
        }
      }, 4000);
    },
    onError: (err) => fail(`Cannot subscribe to ${CHANNEL}: ${err.message}`),
  });
  client.connect().catch((err) => fail(`Cannot connect: ${err.message}`));
  addEventListener('resize', render);
}

start();
