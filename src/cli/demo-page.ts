/**
 * The page `switchboard serve` shows at `/` until the SDK-based chat lands:
 * a room over the raw realtime protocol (JSON over WebSocket), which is also
 * a readable example of the protocol (docs/protocol.md).
 */
export const demoPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  #state { font-weight: 600; }
  #log { border: 1px solid #ccc; border-radius: 6px; padding: .5rem; height: 18rem; overflow: auto; font-family: ui-monospace, monospace; font-size: 13px; }
  form { display: flex; gap: .5rem; margin-top: .5rem; } input { flex: 1; padding: .4rem; }
</style>
</head>
<body>
<h1>Switchboard</h1>
<p>Room <code id="room"></code> as <b id="me"></b>. State: <span id="state">connecting</span></p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something"><button>Send</button></form>
<script>
  const params = new URLSearchParams(location.search);
  const room = 'chat/' + (params.get('room') || 'lobby');
  const user = params.get('user') || 'guest-' + Math.random().toString(36).slice(2, 6);
  document.getElementById('room').textContent = room;
  document.getElementById('me').textContent = user;
  const logEl = document.getElementById('log');
  const log = (line) => { logEl.append(line, document.createElement('br')); logEl.scrollTop = logEl.scrollHeight; };
  const state = document.getElementById('state');
  let ws, nextId = 1;
  async function start() {
    const r = await fetch('/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user }) });
    if (!r.ok) { state.textContent = 'no dev token (' + r.status + '): configure auth and bring your own token'; return; }
    const { token } = await r.json();
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/rt', 'switchboard.v1.json');
    ws.onopen = () => ws.send(JSON.stringify({ op: 'auth', id: nextId++, token }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.op === 'ok' && m.user) { state.textContent = 'connected'; ws.send(JSON.stringify({ op: 'sub', id: nextId++, channel: room, presence: true })); }
      else if (m.op === 'msg') log((m.from ? m.from.user : 'server') + ': ' + (m.data && m.data.text));
      else if (m.op === 'join') log('* ' + m.clients.map((c) => c.user).join(', ') + ' joined');
      else if (m.op === 'leave') log('* ' + m.clients.map((c) => c.user).join(', ') + ' left');
      else if (m.op === 'ping') ws.send('{"op":"pong"}');
      else if (m.op === 'error') log('! ' + m.code + ' ' + m.message);
    };
    ws.onclose = (e) => { state.textContent = 'closed (' + e.code + ')'; };
  }
  document.getElementById('form').onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    if (input.value && ws && ws.readyState === 1) { ws.send(JSON.stringify({ op: 'pub', id: nextId++, channel: room, data: { text: input.value } })); input.value = ''; }
  };
  start();
</script>
</body>
</html>
`;
