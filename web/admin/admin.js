// The admin UI's console page (web/admin/index.html): polls the admin API
// (src/server/admin.ts) every second for this node's metrics, the nodes of
// the cluster, the connections and the channels, and sends the actions
// (publish, disconnect a user, close a connection) with the session's CSRF
// token. Without a session (expired, logged out) it goes back to the login page.
import { buildMetrics, bytes, duration, fillTable, number, renderMetrics, SnapshotSeries, transports } from './metrics-view.js';

const BASE = document.querySelector('meta[name="switchboard-admin-path"]').content;
const CSRF = document.querySelector('meta[name="switchboard-csrf-token"]').content;
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

const series = new SnapshotSeries();
const state = { connections: [], channels: [], nodes: [], polls: 0 };
window.switchboardAdmin = { series, state };

class NotLoggedIn extends Error {}

/** Set when the logout form is submitted. */
let loggingOut = false;
$('logout')?.addEventListener('submit', () => {
  loggingOut = true;
});

/** A call to the admin API: the JSON answer, or an Error with the server's message. */
async function api(route, body) {
  const init = { credentials: 'same-origin', cache: 'no-store', headers: {} };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.headers['X-CSRF-Token'] = CSRF;
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`${BASE}/api/${route}`, init);
  if (response.status === 401) {
    // Logging out: the form's own answer leads to the login page (a second navigation would cancel it).
    if (!loggingOut) location.assign(`${BASE}/login`);
    throw new NotLoggedIn('not logged in');
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error ?? `${response.status} ${response.statusText}`);
  return answer;
}

function showResult(id, text, ok) {
  const el = $(id);
  el.textContent = text;
  el.className = `result ${ok ? 'ok' : 'bad'}`;
}

function setState(ok, text) {
  const badge = $('state');
  badge.dataset.state = ok ? 'connected' : 'offline';
  badge.textContent = text;
}

function button(label, className, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `small ${className}`;
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

function code(text) {
  const c = document.createElement('code');
  c.textContent = text;
  return c;
}

// ---- rendering -------------------------------------------------------------------

function renderOverview(overview) {
  series.add(overview.snapshot);
  const s = series.latest;
  $('updated').textContent = `Updated ${new Date(s.time).toLocaleTimeString()} · node up ${duration(s.uptimeS)} · ${number(s.connectionsOpened)} connections opened since`;
  renderMetrics($('metrics'), series);
  state.nodes = overview.nodes;
  $('node-count').textContent = `(${overview.nodes.length})`;
  fillTable($('nodes'), overview.nodes, (n) => [
    n.self ? `${n.node} (this node)` : n.node,
    { num: n.connections.total },
    transports(n.connections.byTransport),
    { num: n.subscriptions },
    { num: n.rates.messagesIn },
    { num: n.rates.messagesOut },
    bytes(n.rssBytes),
    n.self ? 'now' : `${(n.ageMs / 1000).toFixed(1)} s`,
  ]);
  $('nodes-hint').textContent =
    overview.nodes.length === 1
      ? 'Other nodes of a cluster are listed from the snapshots their dashboard feeds publish to sys/dashboard (a namespace "sys" with clientPublish: false and history).'
      : '';
}

function renderConnections(answer) {
  state.connections = answer.connections;
  $('connection-count').textContent = `(${answer.total}${answer.total > answer.connections.length ? `, ${answer.connections.length} listed` : ''})`;
  fillTable($('connections-list'), answer.connections, (c) => {
    const actions = document.createElement('span');
    actions.append(button('Close', 'danger', () => closeConnection(c.id)));
    if (c.user) actions.append(' ', button('Disconnect user', 'danger', () => disconnectUser(c.user)));
    const node = c.node === answer.node ? `${c.node} (this node)` : c.node;
    return [code(c.id), node, c.user ?? '(anonymous)', c.transport, c.remote, new Date(c.connectedAt).toLocaleTimeString(), c.subscriptions.join(', '), actions];
  });
  if (answer.unanswered.length > 0) showResult('connections-result', `Not listed: ${answer.unanswered.join(', ')} did not answer in time.`, false);
  for (const tr of $('connections-list').querySelectorAll('tbody tr')) tr.lastElementChild.className = 'actions';
}

function renderChannels(answer) {
  state.channels = answer.channels;
  $('channel-count').textContent = `(${answer.total})`;
  fillTable($('channel-list'), answer.channels, (c) => [code(c.channel), { num: c.subscribers }, button('Inspect', 'quiet', () => inspect(c.channel))]);
}

// ---- actions -----------------------------------------------------------------------

async function closeConnection(id) {
  try {
    await api('close', { id });
    showResult('connections-result', `Closed connection ${id}.`, true);
  } catch (err) {
    if (!(err instanceof NotLoggedIn)) showResult('connections-result', `Could not close ${id}: ${err.message}`, false);
  }
  poll();
}

async function disconnectUser(user) {
  if (!user) return;
  try {
    const { disconnected, nodes, unanswered } = await api('disconnect', { user });
    const where = nodes.length > 1 ? ` on ${nodes.length} nodes` : '';
    const missing = unanswered.length > 0 ? ` ${unanswered.length} node${unanswered.length === 1 ? '' : 's'} did not answer (${unanswered.join(', ')}): try again.` : '';
    showResult('connections-result', `Disconnected ${user}: ${disconnected} connection${disconnected === 1 ? '' : 's'} closed${where}.${missing}`, unanswered.length === 0);
  } catch (err) {
    if (!(err instanceof NotLoggedIn)) showResult('connections-result', `Could not disconnect ${user}: ${err.message}`, false);
  }
  poll();
}

async function publish(event) {
  event.preventDefault();
  const channel = $('publish-channel').value.trim();
  const text = $('publish-data').value;
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = text; // not JSON: sent as a string
  }
  try {
    const r = await api('publish', { channel, data });
    showResult('publish-result', `Published to ${r.channel} at offset ${r.offset}.`, true);
  } catch (err) {
    if (!(err instanceof NotLoggedIn)) showResult('publish-result', `Not published: ${err.message}`, false);
  }
}

async function inspect(channel) {
  $('inspect-channel').value = channel;
  const meta = $('inspect-meta');
  let answer;
  try {
    answer = await api(`channel?channel=${encodeURIComponent(channel)}`);
  } catch (err) {
    if (!(err instanceof NotLoggedIn)) meta.textContent = `Cannot show ${channel}: ${err.message}`;
    return;
  }
  const ns = answer.namespace;
  meta.textContent =
    `${answer.channel}: ${answer.subscribers} subscriber${answer.subscribers === 1 ? '' : 's'} on this node · namespace "${ns.prefix}" · ` +
    `presence ${ns.presence} · history ${ns.history.size > 0 ? `${ns.history.size} messages` : 'off'}`;
  const presence = answer.presence;
  const clients = presence && typeof presence.clients === 'object' ? Object.values(presence.clients) : [];
  fillTable($('inspect-presence'), clients, (c) => [c.user || '(anonymous)', code(c.client)]);
  $('inspect-presence').querySelector('.empty').textContent =
    presence === null ? 'Presence is off for this channel.' : typeof presence.clients === 'number' ? `${presence.clients} connections, ${presence.users} users (counts only)` : 'Nobody.';
  const pubs = answer.history ? [...answer.history.publications].reverse() : [];
  fillTable($('inspect-history'), pubs, (p) => [{ num: p.offset }, new Date(p.time).toLocaleTimeString(), code(JSON.stringify(p.data))]);
  $('inspect-history').querySelector('.empty').textContent = answer.history === null ? 'This channel keeps no history.' : 'No messages.';
}

// ---- polling -----------------------------------------------------------------------

let polling = null;
async function poll() {
  if (polling) return polling;
  polling = (async () => {
    try {
      const user = $('user-filter').value.trim();
      const [overview, connections, channels] = await Promise.all([
        api('overview'),
        api(`connections${user ? `?user=${encodeURIComponent(user)}` : ''}`),
        api('channels'),
      ]);
      renderOverview(overview);
      renderConnections(connections);
      renderChannels(channels);
      state.polls++;
      setState(true, 'live');
      $('notice').hidden = true;
    } catch (err) {
      if (err instanceof NotLoggedIn) return;
      setState(false, 'unreachable');
      $('notice').textContent = `Cannot reach the server: ${err.message}`;
      $('notice').hidden = false;
    } finally {
      polling = null;
    }
  })();
  return polling;
}

buildMetrics($('metrics'), ['closes', 'errors']);
$('publish-form').addEventListener('submit', publish);
$('inspect-form').addEventListener('submit', (e) => {
  e.preventDefault();
  inspect($('inspect-channel').value.trim());
});
$('disconnect-user').addEventListener('click', () => disconnectUser($('user-filter').value.trim()));
$('user-filter').addEventListener('input', () => poll());
addEventListener('resize', () => renderMetrics($('metrics'), series));
poll();
// A tab in the background does not poll; it catches up when shown again.
setInterval(() => {
  if (!document.hidden) poll();
}, POLL_MS);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) poll();
});
