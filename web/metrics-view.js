// The metrics view of a server's snapshots (src/server/dashboard-feed.ts):
// the cards with their sparklines and the tables, drawn from a series of
// snapshots. The dashboard page (fed over the realtime protocol) and the
// admin UI (web/admin/admin.js, which polls) both use it.
import { drawSparkline } from './sparkline.js';

/** Snapshots kept (one a second: two minutes). */
export const CAPACITY = 120;

export const number = (n) => (n >= 100 || Number.isInteger(n) ? Math.round(n).toLocaleString() : n.toFixed(1));
export const bytes = (n) => {
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

export function duration(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** Open connections by transport, as `websocket 2 · sse 1`. */
export function transports(byTransport) {
  const parts = Object.entries(byTransport).map(([t, n]) => `${t} ${n}`);
  return parts.length > 0 ? parts.join(' · ') : 'none open';
}

const CARDS = [
  { id: 'connections', title: 'Connections', pick: (s) => s.connections.total, format: number, color: '#1f6feb', sub: (s) => transports(s.connections.byTransport) },
  { id: 'msgs-in', title: 'Messages in /s', pick: (s) => s.rates.messagesIn, format: number, color: '#1a7f37', sub: (s) => `${bytes(s.rates.bytesIn)}/s · ${number(s.totals.messagesIn)} in all` },
  { id: 'msgs-out', title: 'Messages out /s', pick: (s) => s.rates.messagesOut, format: number, color: '#8250df', sub: (s) => `${bytes(s.rates.bytesOut)}/s · ${number(s.totals.messagesOut)} in all` },
  { id: 'subscriptions', title: 'Subscriptions', pick: (s) => s.subscriptions, format: number, color: '#bf8700', sub: (s) => `${s.channelCount} channel${s.channelCount === 1 ? '' : 's'}` },
  { id: 'memory', title: 'Memory (RSS)', pick: (s) => s.process.rssBytes ?? 0, format: bytes, color: '#57606a', sub: (s) => `heap ${bytes(s.process.heapUsedBytes)}` },
  { id: 'lag', title: 'Event-loop lag', pick: (s) => s.process.eventLoopLagS ?? 0, format: millis, color: '#cf222e', sub: () => 'time a timer fires late' },
];

const TABLES = [
  { id: 'channels', title: 'Channels (<span class="count">0</span>)', head: ['channel', { num: 'subscribers' }, { bar: '' }], empty: 'No channel has subscribers.' },
  { id: 'closes', title: 'Closed connections by code', head: ['code', 'meaning', { num: 'count' }], empty: 'No connection closed yet.' },
  { id: 'errors', title: 'Errors', head: ['what', 'code', { num: 'count' }], empty: 'No errors.' },
];

/** A card section: `<section class="card panel" id=…><h3>…</h3>…</section>`. */
function section(id, className, title) {
  const el = document.createElement('section');
  el.className = className;
  el.id = id;
  const h = document.createElement('h3');
  h.innerHTML = title; // constant markup of this module, never data
  el.append(h);
  return el;
}

/**
 * Fill `grid` with the cards and the tables (`tables`: the ids of those to
 * include, default all: `channels`, `closes`, `errors`).
 */
export function buildMetrics(grid, tables = TABLES.map((t) => t.id)) {
  for (const card of CARDS) {
    const el = section(card.id, 'card panel', card.title);
    const value = document.createElement('div');
    value.className = 'value';
    value.dataset.value = '';
    value.textContent = '–';
    const sub = document.createElement('div');
    sub.className = 'sub';
    el.append(value, document.createElement('canvas'), sub);
    grid.append(el);
  }
  for (const t of TABLES.filter((t) => tables.includes(t.id))) {
    const el = section(t.id, 'card panel wide', t.title);
    el.append(tableElement(t.head), emptyElement(t.empty));
    grid.append(el);
  }
}

/** `<table>` with a head row: a string is a column, `{num}` a numeric one, `{bar}` the bar column. */
export function tableElement(head) {
  const table = document.createElement('table');
  const tr = document.createElement('tr');
  for (const h of head) {
    const th = document.createElement('th');
    if (typeof h === 'string') th.textContent = h;
    else if ('num' in h) {
      th.className = 'num';
      th.textContent = h.num;
    } else th.className = 'barcol';
    tr.append(th);
  }
  table.createTHead().append(tr);
  table.append(document.createElement('tbody'));
  return table;
}

export function emptyElement(text) {
  const div = document.createElement('div');
  div.className = 'empty';
  div.textContent = text;
  return div;
}

/** Snapshots, oldest first, at most {@link CAPACITY}; `add` refuses one that is not newer than the last. */
export class SnapshotSeries {
  constructor() {
    this.list = [];
  }

  get latest() {
    return this.list[this.list.length - 1];
  }

  add(snapshot) {
    if (!snapshot || snapshot.v !== 1) return false;
    const last = this.latest;
    if (last && snapshot.time <= last.time) return false;
    this.list.push(snapshot);
    if (this.list.length > CAPACITY) this.list.splice(0, this.list.length - CAPACITY);
    return true;
  }

  /** Replace the series with these and the ones it has, in time order (history loaded after live ones came). */
  merge(older) {
    const merged = [...older, ...this.list].sort((a, b) => a.time - b.time);
    this.list.length = 0;
    for (const s of merged) this.add(s);
  }
}

/** Draw the latest snapshot of `series` into the cards and tables under `root` (built by {@link buildMetrics}). */
export function renderMetrics(root, series) {
  const s = series.latest;
  if (!s) return;
  const $ = (id) => root.querySelector(`#${id}`);
  const list = series.list;
  for (const card of CARDS) {
    const el = $(card.id);
    const value = card.pick(s);
    const valueEl = el.querySelector('.value');
    valueEl.textContent = card.format(value);
    valueEl.dataset.value = String(value);
    el.querySelector('.sub').textContent = card.sub(s);
    // The x axis grows with the data up to two minutes, so a fresh view does not draw a sliver.
    const capacity = Math.min(CAPACITY, Math.max(30, list.length));
    drawSparkline(el.querySelector('canvas'), list.map(card.pick), { capacity, color: card.color, format: card.format });
  }
  if ($('channels')) {
    $('channels').querySelector('.count').textContent = String(s.channelCount);
    const top = s.channels[0]?.subscribers ?? 0;
    fillTable($('channels'), s.channels, (c) => [c.channel, { num: c.subscribers }, bar(c.subscribers, top)]);
  }
  if ($('closes')) fillTable($('closes'), s.closes, (c) => [String(c.code), c.meaning, { num: c.count }]);
  if ($('errors')) {
    const errors = [
      ...s.errors.map((e) => [`request ${e.op}`, String(e.code), { num: e.count }]),
      ...s.rejections.map((r) => ['upgrade refused', `HTTP ${r.status}`, { num: r.count }]),
      ...s.dropped.map((d) => ['dropped', d.reason, { num: d.count }]),
    ];
    fillTable($('errors'), errors, (row) => row);
  }
}

/** A bar `value / top` of the column's width. */
export function bar(value, top) {
  const el = document.createElement('div');
  el.className = 'bar';
  el.style.width = `${top > 0 ? Math.max(2, (value / top) * 100) : 0}%`;
  return el;
}

/**
 * Replace the rows of the table in `section` with `cells(row)` for each row:
 * a Node is put in as is, `{num}` is a right-aligned number, anything else
 * is text. The section's `.empty` shows when there are none.
 */
export function fillTable(section, rows, cells) {
  const body = section.querySelector('tbody');
  body.replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement('tr');
      for (const cell of cells(row)) {
        const td = document.createElement('td');
        if (cell instanceof Node) td.append(cell);
        else if (cell !== null && typeof cell === 'object') {
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
