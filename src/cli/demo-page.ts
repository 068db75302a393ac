/** The page `switchboard serve` shows at `/`: a browser talking to the echo endpoint. */
export const demoPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  #state { font-weight: 600; }
  #log { border: 1px solid #ccc; border-radius: 6px; padding: .5rem; height: 16rem; overflow: auto; font-family: ui-monospace, monospace; font-size: 13px; }
  form { display: flex; gap: .5rem; margin-top: .5rem; } input { flex: 1; padding: .4rem; }
</style>
</head>
<body>
<h1>Switchboard</h1>
<p>WebSocket echo at <code>/ws</code>. State: <span id="state">connecting</span></p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Type a message"><button>Send</button></form>
<script>
  const log = (line) => { const el = document.getElementById('log'); el.append(line, document.createElement('br')); el.scrollTop = el.scrollHeight; };
  const state = document.getElementById('state');
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
  ws.onopen = () => { state.textContent = 'connected (' + (ws.extensions || 'no extensions') + ')'; };
  ws.onmessage = (e) => log('< ' + e.data);
  ws.onclose = (e) => { state.textContent = 'closed (' + e.code + ')'; };
  document.getElementById('form').onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    if (input.value && ws.readyState === 1) { ws.send(input.value); log('> ' + input.value); input.value = ''; }
  };
</script>
</body>
</html>
`;
