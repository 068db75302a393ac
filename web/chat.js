// The chat demo: a room `chat/<room>` with history, live messages and
// presence, over the client SDK. `?room=lobby&user=alice` joins directly.
import { devToken, formatTime, realtimeUrl, showConnection, showNotice, tokenAndSdk } from './common.js';

const $ = (id) => document.getElementById(id);
const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
const HISTORY_LIMIT = 50;
const MAX_SHOWN = 300;
/** How long a user may be gone before "left" is shown: a reload or reconnect is a leave and a join. */
const LEAVE_GRACE_MS = 3000;
/**
 * After this page reconnects, how much longer the others who were in the room
 * may take to come back before "left" is shown: when the server restarts,
 * every client comes back after a random delay of up to 5 s (the server's
 * `shutdown.reconnectJitterMs`) plus its backoff, not all at once.
 */
const RECONNECT_SPREAD_MS = 6000;

const params = new URLSearchParams(location.search);
const initialUser = (params.get('user') ?? params.get('name') ?? '').trim().slice(0, 32);
const initialRoom = (params.get('room') ?? '').trim() || 'lobby';

$('join-user').value = initialUser;
$('join-room').value = initialRoom;
$('join').addEventListener('submit', (e) => {
  e.preventDefault();
  join($('join-user').value.trim(), $('join-room').value.trim());
});

if (initialUser && ROOM_RE.test(initialRoom)) join(initialUser, initialRoom);
else {
  $('join').hidden = false;
  (initialUser ? $('join-room') : $('join-user')).focus();
}

const fail = showNotice;

async function join(user, room) {
  if (!user || user.length > 32) return fail('Pick a name (1 to 32 characters).');
  if (!ROOM_RE.test(room)) return fail('A room name is 1 to 64 letters, digits, "-" or "_".');
  $('notice').hidden = true;
  $('join').hidden = true;
  history.replaceState(null, '', `/?room=${encodeURIComponent(room)}&user=${encodeURIComponent(user)}`);
  document.title = `${room} · Switchboard chat`;
  $('switch-room').href = `/?room=${encodeURIComponent(room)}`;

  const ready = await tokenAndSdk(user);
  if (!ready) return;
  const { token, sdk } = ready;
  new Room(sdk, user, room, token);
}

class Room {
  constructor(sdk, user, room, token) {
    this.user = user;
    this.channel = `chat/${room}`;
    /** Shown publications by `epoch:offset`, so history and live messages never show twice. */
    this.seen = new Set();
    /** Connection id → user, from the presence answer and join/leave pushes. */
    this.members = new Map();
    /** User → timer of a "left" line not shown yet: a reconnect or transport switch is a leave and a join. */
    this.leaving = new Map();
    /**
     * Users who were in the room when this page's connection dropped, until the
     * presence after the reconnect is known: those back are not announced as
     * joining, the others get "left" after a grace period.
     */
    this.before = null;
    this.presenceSeq = 0;

    $('room-name').textContent = `#${room}`;
    $('me').textContent = user;
    $('chat').hidden = false;
    $('text').focus();

    const client = new sdk.Client(realtimeUrl(), {
      token,
      getToken: () => devToken(user),
    });
    this.client = client;
    window.switchboardChat = this; // for the console (and the browser tests)
    showConnection(client, $('state'), $('transport'));
    client.on('disconnected', (e) => {
      const why = `${e.reason || e.meaning} (close ${e.code})`;
      // A move back to WebSocket (the SDK found it reachable again) is good news, not a loss.
      if (e.willReconnect && e.code === 1000) this.system(`reconnecting: ${e.reason || e.meaning}`);
      else if (e.willReconnect) this.system(`connection lost: ${why}`, 'warn');
      else this.system(`offline: ${why}; reload the page to try again`, 'warn');
      if (e.willReconnect) {
        this.before ??= new Set();
        for (const user of this.members.values()) if (user !== this.user) this.before.add(user);
      }
      this.members.clear();
      this.presenceKnown = false; // until the presence answer after the reconnect
      this.renderPresence();
    });
    client.on('connected', (e) => {
      if (this.everConnected) this.system(`reconnected over ${e.transport}`);
      this.everConnected = true;
      this.updateHint();
    });
    client.on('state', () => this.updateHint());
    // Falling back is a warning; going back to WebSocket is not.
    client.on('transport', (e) => this.system(`switching from ${e.from} to ${e.to}: ${e.reason}`, e.to === 'websocket' ? '' : 'warn'));
    client.on('error', (err) => console.warn('switchboard:', err.code, err.message));

    client.subscribe(this.channel, {
      presence: true,
      onMessage: (pub) => this.show(pub, false),
      onJoin: (clients) => this.joined(clients, true),
      onLeave: (clients) => this.left(clients),
      onSubscribed: (e) => this.subscribed(e),
      onError: (err) => this.system(`cannot join ${this.channel}: ${err.message}`, 'warn'),
    });
    client.connect().catch((err) => this.system(`cannot connect: ${err.message}`, 'warn'));

    $('compose').addEventListener('submit', (e) => {
      e.preventDefault();
      this.send();
    });
  }

  async subscribed(e) {
    document.body.dataset.recovered = String(e.recovered);
    if (!e.resumed) {
      await this.loadHistory(true);
    } else if (e.recovered) {
      this.system('back in the room: nothing was missed');
    } else {
      // The server could not replay what happened while we were away (its history
      // is gone or no longer reaches back, e.g. after a restart): say so, reload.
      this.system('back in the room, but messages sent while disconnected may be missing (the server could not recover them); history reloaded', 'warn');
      await this.loadHistory(false);
    }
    await this.loadPresence();
  }

  async loadHistory(first) {
    try {
      const result = await this.client.history(this.channel, { limit: HISTORY_LIMIT });
      const fresh = result.publications.filter((p) => !this.seen.has(`${p.epoch}:${p.offset}`));
      const shown = fresh.map((pub) => this.show(pub, true)).filter(Boolean);
      if (!first) return;
      if (shown.length > 0) {
        $('messages').insertBefore(tag('li', 'divider', `${shown.length} earlier message${shown.length === 1 ? '' : 's'}`), shown[0]);
        shown[shown.length - 1].after(tag('li', 'divider', `you joined ${this.channel}`));
      } else this.system(`you joined ${this.channel}; no earlier messages`);
    } catch (err) {
      this.system(`history unavailable: ${err.message}`, 'warn');
    }
  }

  async loadPresence() {
    const seq = ++this.presenceSeq;
    try {
      const result = await this.client.presence(this.channel);
      if (seq !== this.presenceSeq || typeof result.clients !== 'object') return;
      this.members = new Map(Object.values(result.clients).map((c) => [c.client, c.user]));
      this.presenceKnown = true;
      if (this.before) {
        // Back from a reconnect: who was here and is not (yet) is probably reconnecting too.
        const present = new Set(this.members.values());
        for (const user of this.before) if (!present.has(user)) this.leaveLater(user, LEAVE_GRACE_MS + RECONNECT_SPREAD_MS);
        this.before = null;
      }
      this.renderPresence();
    } catch (err) {
      this.system(`presence unavailable: ${err.message}`, 'warn');
    }
  }

  joined(clients, announce) {
    for (const c of clients) {
      // Here already (another tab), or here before this page's reconnect: not news.
      const known = [...this.members.values()].includes(c.user) || (this.before?.has(c.user) ?? false);
      this.members.set(c.client, c.user);
      const back = this.leaving.get(c.user);
      if (back !== undefined) {
        // Back within the grace period (a reconnect): neither line.
        clearTimeout(back);
        this.leaving.delete(c.user);
      } else if (announce && !known && c.user !== this.user) this.system(`${c.user} joined`);
    }
    this.renderPresence();
  }

  left(clients) {
    for (const c of clients) {
      this.members.delete(c.client);
      const still = [...this.members.values()].includes(c.user);
      if (still) continue;
      this.leaveLater(c.user, LEAVE_GRACE_MS);
    }
    this.renderPresence();
  }

  /** Show "<user> left" after `graceMs`, unless the user is back by then (see `joined`). */
  leaveLater(user, graceMs) {
    if (user === this.user || this.leaving.has(user)) return;
    this.leaving.set(
      user,
      setTimeout(() => {
        this.leaving.delete(user);
        // This page is disconnected itself (or not yet sure who is back): decide after its reconnect.
        if (this.before) this.before.add(user);
        else if (![...this.members.values()].includes(user)) this.system(`${user} left`);
      }, graceMs),
    );
  }

  renderPresence() {
    const counts = new Map();
    for (const user of this.members.values()) counts.set(user, (counts.get(user) ?? 0) + 1);
    const users = [...counts.keys()].sort((a, b) => (a === this.user ? -1 : b === this.user ? 1 : a.localeCompare(b)));
    const list = $('presence');
    list.replaceChildren(
      ...users.map((user) => {
        const li = document.createElement('li');
        li.dataset.user = user;
        const name = document.createElement('span');
        name.textContent = user;
        li.append(name);
        if (user === this.user) li.append(tag('span', 'you', '(you)'));
        const n = counts.get(user);
        if (n > 1) li.append(tag('span', 'n', `${n} tabs`));
        return li;
      }),
    );
    // While not connected the list is not known (it is emptied on a drop and asked again after the
    // reconnect): say so rather than "(0)".
    const known = this.presenceKnown === true && this.client?.state === 'connected';
    $('presence-count').textContent = known ? String(users.length) : '…';
    $('presence-count').title = known ? '' : 'not known while reconnecting';
    list.classList.toggle('stale', !known);
  }

  show(pub, fromHistory) {
    const key = `${pub.epoch}:${pub.offset}`;
    if (!pub.volatile) {
      if (this.seen.has(key)) return null;
      this.seen.add(key);
    }
    const text = typeof pub.data?.text === 'string' ? pub.data.text : JSON.stringify(pub.data);
    const author = pub.from?.user ?? 'server';
    const li = document.createElement('li');
    li.className = `msg${author === this.user ? ' mine' : ''}${fromHistory ? ' history' : ''}`;
    li.dataset.user = author;
    li.dataset.offset = String(pub.offset);
    li.dataset.time = String(pub.time);
    const meta = tag('div', 'meta');
    meta.append(tag('b', '', author), tag('time', '', formatTime(pub.time)));
    meta.lastChild.dateTime = new Date(pub.time).toISOString();
    li.append(meta, tag('div', 'text', text));
    this.append(li, fromHistory);
    return li;
  }

  system(text, kind = '') {
    const li = tag('li', `sys${kind ? ` ${kind}` : ''}`, text);
    this.append(li, false);
  }

  append(li, fromHistory) {
    const list = $('messages');
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    if (fromHistory) {
      // History comes oldest first and goes before the live messages that beat it here.
      const t = Number(li.dataset.time);
      const later = [...list.querySelectorAll('li.msg:not(.history)')].find((m) => Number(m.dataset.time) > t);
      list.insertBefore(li, later ?? null);
    } else list.append(li);
    while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
    if (stick || !fromHistory) list.scrollTop = list.scrollHeight;
  }

  async send() {
    const input = $('text');
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    try {
      const publishing = this.client.publish(this.channel, { text });
      this.updateHint();
      await publishing;
    } catch (err) {
      this.system(`not sent: "${text.slice(0, 40)}" (${err.message})`, 'warn');
    }
    this.updateHint();
  }

  updateHint() {
    const pending = this.client.pendingPublications;
    const connected = this.client.state === 'connected';
    $('compose-hint').textContent =
      !connected && pending > 0 ? `${pending} message${pending === 1 ? '' : 's'} waiting; sent when the connection is back` : '';
  }
}

function tag(name, className, text) {
  const el = document.createElement(name);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}
