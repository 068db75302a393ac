/**
 * The connection lines of the log (issue #13): one `connected` and one
 * `disconnected` line per connection, at `debug` (docs/configuration.md,
 * "log": at `info` a busy server would write two lines per connection),
 * with the connection id, the user, the transport, the close code and its
 * meaning.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { connect, connectAs, httpRequest, startServer, until } from './helpers.js';

describe('connection log lines', () => {
  test('connect and disconnect lines: connection id, user, transport, close code and meaning, duration; at debug', async (t) => {
    const s = await startServer(t);
    const alice = await connectAs(t, s.url, 'alice');
    await alice.close(1000);
    const bad = await connect(t, s.url);
    bad.ws.send('not json');
    assert.equal((await bad.closeOf()).code, 4501);
    await until(() => s.logs.filter((l) => l.msg === 'disconnected').length === 2, 3000, 'two disconnect lines');

    const connected = s.logs.filter((l) => l.msg === 'connected');
    assert.equal(connected.length, 2);
    for (const line of connected) {
      assert.equal(line.level, 'debug');
      assert.match(String(line.conn), /\S/);
      assert.equal(line.transport, 'websocket');
      assert.equal(line.remote, '127.0.0.1');
    }
    const [first, second] = s.logs.filter((l) => l.msg === 'disconnected');
    assert.deepEqual(
      { level: first!.level, conn: first!.conn, user: first!.user, transport: first!.transport, code: first!.code },
      { level: 'debug', conn: alice.clientId, user: 'alice', transport: 'websocket', code: 1000 },
    );
    assert.match(String(first!.meaning), /normal/);
    assert.equal(typeof first!.durationMs, 'number');
    assert.equal(second!.code, 4501);
    assert.equal(second!.user, undefined, 'never authenticated');
    assert.match(String(second!.meaning), /bad request/);
    assert.equal(second!.conn, connected[1]!.conn);
  });

  test('a long-polling session has the same lines, transport "poll"', async (t) => {
    const s = await startServer(t);
    const opened = await httpRequest(s.base, '/rt/session', { body: { transport: 'poll' } });
    assert.equal(opened.status, 201);
    await httpRequest(s.base, `/rt/session/${opened.json().session}`, { method: 'DELETE' });
    await until(() => s.logs.some((l) => l.msg === 'disconnected'), 3000, 'the disconnect line');
    const line = s.logs.find((l) => l.msg === 'disconnected')!;
    assert.equal(line.transport, 'poll');
    assert.equal(line.code, 1000);
    assert.equal(line.level, 'debug');
  });
});
