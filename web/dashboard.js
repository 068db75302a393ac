// The live dashboard: subscribes to `sys/dashboard`, where the server
// publishes a snapshot of its metrics every second (src/server/dashboard-feed.ts),
// and draws the last two minutes as sparklines (web/metrics-view.js).
import { devToken, realtimeUrl, showConnection, showNotice, tokenAndSdk } from './common.js';
import { buildMetrics, CAPACITY, duration, number, renderMetrics, SnapshotSeries } from './metrics-view.js';

const CHANNEL = 'sys/dashboard';
const $ = (id) => document.getElementById(id);

const series = new SnapshotSeries();
/** Snapshots, oldest first. */
const snapshots = series.list;

function render() {
  const s = series.latest;
  if (!s) return;
  $('notice').hidden = true;
  $('updated').textContent = `Updated ${new Date(s.time).toLocaleTimeString()} · server up ${duration(s.uptimeS)} · ${number(s.connectionsOpened)} connections opened since`;
  renderMetrics($('metrics'), series);
}

const fail = showNotice;

async function start() {
  buildMetrics($('metrics'));
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
      if (series.add(pub.data)) render();
    },
    onSubscribed: async (e) => {
      if (!e.resumed || !e.recovered) {
        // The last two minutes from the channel's history, so the charts start full.
        try {
          const history = await client.history(CHANNEL, { limit: CAPACITY });
          series.merge(history.publications.map((p) => p.data).filter((d) => d && d.v === 1));
          render();
        } catch {
          // No history for this namespace: the charts fill as snapshots come.
        }
      }
      clearTimeout(waiting);
      waiting = setTimeout(() => {
        const last = series.latest;
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
