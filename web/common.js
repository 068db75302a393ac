// Shared by the chat and dashboard pages: where the server is, the SDK,
// development tokens, and the connection badge.

/** The realtime endpoint's path, written into the page by the server. */
export const REALTIME_PATH = document.querySelector('meta[name="switchboard-path"]')?.content || '/rt';

/** ws(s)://<this host><path>: the SDK derives the SSE and long-polling URLs from it. */
export function realtimeUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${REALTIME_PATH}`;
}

/** The browser SDK (dist/client.js, served at /client.js). */
export async function loadSdk() {
  try {
    return await import('./client.js');
  } catch (err) {
    throw new Error(`could not load the client SDK from /client.js (${err?.message ?? err}); build it with \`npm run build\``);
  }
}

/** The server has no development tokens (a real auth key is configured). */
export class NoDevTokenError extends Error {}

/**
 * A token from the development endpoint `POST /dev/token`, which
 * `switchboard serve` offers only when it runs without an auth key on
 * loopback. Called again on every reconnect (a restarted server has a new
 * ephemeral secret, so old tokens no longer verify).
 */
export async function devToken(user) {
  let response;
  try {
    response = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user }),
      cache: 'no-store',
    });
  } catch (err) {
    throw new Error(`the server is unreachable (${err?.message ?? err})`);
  }
  if (response.status === 404) {
    throw new NoDevTokenError('this server issues no development tokens');
  }
  if (!response.ok) throw new Error(`POST /dev/token answered ${response.status}`);
  const body = await response.json();
  if (typeof body?.token !== 'string') throw new Error('POST /dev/token gave no token');
  return body.token;
}

/** The notice shown when there is no development token. */
export function noTokenNotice(element) {
  element.replaceChildren(
    'No token: this server does not issue development tokens (',
    code('POST /dev/token'),
    ' answered 404), because an auth key is configured. These demo pages only work with ',
    code('switchboard serve'),
    ' in development mode: on loopback, without ',
    code('auth'),
    ' in the configuration. Your own app gets tokens from its backend and passes them to the SDK (',
    code('new Client(url, { getToken })'),
    '). To watch and act on a production server, enable the admin UI (',
    code('admin.enabled'),
    ', at ',
    code('/admin'),
    ' by default).',
  );
  element.hidden = false;
}

function code(text) {
  const c = document.createElement('code');
  c.textContent = text;
  return c;
}

/**
 * Show the client's connection state in `badge` ("connected", "reconnecting
 * in 3 s", "offline") and its transport in `transportBadge`. The badge's
 * `data-state` is one of connecting, connected, reconnecting, offline.
 */
export function showConnection(client, badge, transportBadge) {
  let countdown = null;
  let offlineNetwork = typeof navigator !== 'undefined' && navigator.onLine === false;
  const set = (state, text, title = '') => {
    badge.dataset.state = state;
    badge.textContent = text;
    badge.title = title;
  };
  const stopCountdown = () => {
    if (countdown) clearInterval(countdown);
    countdown = null;
  };
  const waiting = () => {
    if (offlineNetwork) set('offline', 'offline (no network)', 'waiting for the network to come back');
  };
  client.on('state', (state) => {
    if (state === 'connected' || state === 'disconnected' || state === 'closed') stopCountdown();
    if (state === 'connected') set('connected', 'connected');
    else if (state === 'connecting') set('connecting', 'connecting…');
    else if (state === 'reconnecting' && !countdown) set('reconnecting', 'reconnecting…');
    else if (state === 'closed') set('offline', 'closed');
    // 'disconnected' (gave up) is shown by the 'disconnected' event, with its reason.
    if (state === 'reconnecting' || state === 'connecting') waiting();
  });
  client.on('reconnecting', (e) => {
    stopCountdown();
    const at = Date.now() + e.inMs;
    const label = client.state === 'connecting' ? 'connecting' : 'reconnecting';
    const why = e.reason ? `${e.code} ${e.reason}` : String(e.code);
    const tick = () => {
      const left = Math.ceil((at - Date.now()) / 1000);
      if (left > 0) set('reconnecting', `${label} in ${left} s`, `attempt ${e.attempt} over ${e.transport}; last failure: ${why}`);
      else {
        set('reconnecting', `${label}…`, `attempt ${e.attempt} over ${e.transport}`);
        stopCountdown();
      }
    };
    tick();
    if (e.inMs > 0) countdown = setInterval(tick, 250);
  });
  client.on('disconnected', (e) => {
    if (!e.willReconnect) set('offline', 'offline', `${e.code} ${e.meaning}${e.reason ? `: ${e.reason}` : ''}`);
  });
  client.on('connected', (e) => {
    transportBadge.textContent = e.transport;
    transportBadge.title = `connected over ${e.transport} to ${e.url}`;
    transportBadge.hidden = false;
  });
  client.on('transport', (e) => {
    transportBadge.textContent = `${e.to}…`;
    transportBadge.title = `moving from ${e.from} to ${e.to}: ${e.reason}`;
  });
  addEventListener('offline', () => {
    offlineNetwork = true;
    if (client.state !== 'connected') waiting();
  });
  addEventListener('online', () => {
    offlineNetwork = false;
  });
}

/** "12:03" (today) or "3 Mar 12:03". */
export function formatTime(ms) {
  const d = new Date(ms);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
}

/** Show a problem in the page's notice box. */
export function showNotice(text) {
  const notice = document.getElementById('notice');
  notice.textContent = text;
  notice.hidden = false;
}

/**
 * A dev token for `user` and the SDK module, or null after showing why not
 * (no dev mode: a notice that says what to do; anything else: the error).
 */
export async function tokenAndSdk(user) {
  let token;
  try {
    token = await devToken(user);
  } catch (err) {
    const state = document.getElementById('state');
    state.dataset.state = 'offline';
    state.textContent = 'no token';
    if (err instanceof NoDevTokenError) noTokenNotice(document.getElementById('notice'));
    else showNotice(`Cannot get a token: ${err.message}`);
    return null;
  }
  try {
    return { token, sdk: await loadSdk() };
  } catch (err) {
    showNotice(err.message);
    return null;
  }
}
