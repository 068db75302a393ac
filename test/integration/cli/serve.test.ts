/**
 * `switchboard serve` as a child process (through tsx): with no
 * configuration on loopback it runs in development mode (a warning, tokens
 * at /dev/token) and works end to end; SIGTERM closes clients with 1001 and
 * exits 0; on a public interface without a key it refuses to start (exit 2).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCli, type CliProcess } from '../../support/cli.js';
import { CHILD_WAIT } from '../../support/wait.js';
import { connect, httpRequest, within } from '../realtime/helpers.js';

function serve(t: TestContext, args: string[]): CliProcess {
  return runCli(t, ['serve', ...args]);
}

test('serve without configuration: development mode on loopback, /dev/token, pub/sub, SIGTERM → 1001 and exit 0', async (t) => {
  const s = serve(t, ['--port', '0']);
  const listening = await s.log((l) => l.msg === 'listening', "the 'listening' log line");
  const port = listening.port as number;
  assert.ok(port > 0);
  const warning = s.logs.find((l) => /development mode/.test(String(l.msg)));
  assert.ok(warning, 'no development-mode warning');
  assert.equal(warning.level, 40, 'the development-mode line is not a warning');
  const base = `http://127.0.0.1:${port}`;

  assert.equal((await httpRequest(base, '/healthz')).status, 200);
  const issued = await httpRequest(base, '/dev/token', { body: { user: 'alice' } });
  assert.equal(issued.status, 200, issued.text);
  const { token, expiresIn } = issued.json();
  assert.equal(typeof token, 'string');
  assert.equal(expiresIn, 3_600_000, 'one hour, in ms (docs/http-api.md)');
  // Through a proxy (even one on this machine) a development token would go to whoever the proxy serves.
  const proxied = await httpRequest(base, '/dev/token', { body: { user: 'mallory' }, headers: { 'X-Forwarded-For': '203.0.113.9' } });
  assert.equal(proxied.status, 403, proxied.text);
  const page = await httpRequest(base, '/');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /text\/html/);

  const url = `ws://127.0.0.1:${port}/rt`;
  const alice = await connect(t, url);
  const auth = await alice.ok('auth', { token });
  assert.equal(auth.user, 'alice');
  const bob = await connect(t, url);
  await bob.ok('auth', { token: (await httpRequest(base, '/dev/token', { body: { user: 'bob' } })).json().token });
  await bob.ok('sub', { channel: 'chat/lobby' });
  await alice.ok('pub', { channel: 'chat/lobby', data: 'hello bob' });
  const msg = await bob.nextOp('msg');
  assert.equal(msg.data, 'hello bob');
  assert.equal(msg.from.user, 'alice');

  s.child.kill('SIGTERM');
  for (const c of [alice, bob]) {
    assert.equal((await c.nextOp('closing', 5000)).op, 'closing');
    assert.equal((await c.closeOf(5000)).code, 1001);
  }
  const exit = await within(s.exited, 10_000, 'the process to exit');
  assert.deepEqual(exit, { code: 0, signal: null });
});

test('serve on 0.0.0.0 without a key refuses to start with a clear error and exit code 2', async (t) => {
  const s = serve(t, ['--host', '0.0.0.0', '--port', '0']);
  const exit = await within(s.exited, CHILD_WAIT, 'the process to exit');
  assert.equal(exit.code, 2);
  const text = s.stderr.join('\n');
  assert.match(text, /switchboard serve/);
  assert.match(text, /auth/);
  assert.match(text, /hmacSecret/);
  assert.equal(
    s.logs.find((l) => l.msg === 'listening'),
    undefined,
    'it listened anyway',
  );
});

test('serve with another config problem on loopback reports only that problem (no auth key needed there); off loopback the missing key too', async (t) => {
  const local = serve(t, ['--port', '0', '--snapshot-file', '/no/such/dir/x.sb']);
  assert.equal((await within(local.exited, CHILD_WAIT, 'the process to exit')).code, 2);
  assert.deepEqual(local.stderr, [
    'switchboard serve: invalid configuration:',
    '  broker.snapshotFile: cannot write in directory "/no/such/dir" (ENOENT)',
  ]);

  // Off loopback there is no development mode: the key is missing as well.
  const wide = serve(t, ['--host', '0.0.0.0', '--port', '0', '--snapshot-file', '/no/such/dir/x.sb']);
  assert.equal((await within(wide.exited, CHILD_WAIT, 'the process to exit')).code, 2);
  assert.deepEqual(wide.stderr.slice(0, 4), [
    'switchboard serve: invalid configuration:',
    '  auth: set hmacSecret, publicKey or jwksFile, or allow anonymous connections (anonymous: true)',
    '  broker.snapshotFile: cannot write in directory "/no/such/dir" (ENOENT)',
    '',
  ]);
  // Then how to set a key (test/integration/cli/ops.test.ts checks the advice).
  assert.match(wide.stderr[4]!, /^No key to verify tokens with, and host 0\.0\.0\.0 is not a loopback address/);
});

test('serve: a final history save that fails at SIGTERM exits 1 with the reason (not 0 as if the history were kept)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sb-cli-save-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = serve(t, ['--port', '0', '--snapshot-file', join(dir, 'history.sb')]);
  await s.log((l) => l.msg === 'listening', "the 'listening' log line");
  // The directory disappears under the running server: the final save cannot be written.
  rmSync(dir, { recursive: true, force: true });
  s.child.kill('SIGTERM');
  const exit = await within(s.exited, 10_000, 'the process to exit');
  assert.deepEqual(exit, { code: 1, signal: null });
  assert.match(s.stderr.join('\n'), /switchboard: history not saved at shutdown: ENOENT/);
  assert.ok(s.logs.some((l) => l.msg === 'history snapshot not saved at shutdown'), 'the log says so too');
});
