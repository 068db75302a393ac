/**
 * `switchboard serve` with the admin UI: refused at start (exit 2, the
 * reason on stderr, never listening) when enabled on a non-loopback host
 * without TLS, or without a password and an API key; on loopback it starts
 * and logs the admin URL. (The UI itself: test/e2e/admin.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { configTemplate } from '../../../src/cli/init.js';
import { runCli } from '../../support/cli.js';
import { SECRET } from '../../support/tokens.js';
import { CHILD_WAIT, within } from '../../support/wait.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sb-serve-admin-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function config(name: string, body: object): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify({ auth: { hmacSecret: SECRET }, ...body }));
  return file;
}

test('serve refuses the admin UI on 0.0.0.0 without TLS, and without a password or API key', async (t) => {
  const wide = runCli(t, ['serve', '--config', config('wide.json', { admin: { enabled: true, password: 'a long admin password' } }), '--host', '0.0.0.0', '--port', '0']);
  assert.equal((await within(wide.exited, CHILD_WAIT, 'the process to exit')).code, 2);
  assert.equal(wide.stderr[0], 'switchboard serve: invalid configuration:');
  assert.match(wide.stderr[1]!, /^ {2}admin: enabled on host 0\.0\.0\.0 without TLS: the password and the session cookie would cross the network in clear text\. Configure tls/);
  assert.equal(wide.logs.find((l) => l.msg === 'listening'), undefined, 'it listened anyway');

  const bare = runCli(t, ['serve', '--config', config('bare.json', { admin: { enabled: true } }), '--port', '0']);
  assert.equal((await within(bare.exited, CHILD_WAIT, 'the process to exit')).code, 2);
  assert.deepEqual(bare.stderr.slice(0, 2), [
    'switchboard serve: invalid configuration:',
    '  admin: enabled without a password: set admin.password (SWITCHBOARD_ADMIN_PASSWORD, at least 12 characters) or apiKey (the HTTP API key also logs in)',
  ]);
});

test("serve on loopback with the admin block of `init`'s config uncommented: logs the admin URL; the password and the API key log in", async (t) => {
  const template = configTemplate({ hmacSecret: SECRET, apiKey: 'an-api-key-of-16+chars' });
  const block = '# admin:\n#   enabled: true\n#   password: "at least 12 characters"\n';
  assert.ok(template.includes(block), 'the admin block of the init template');
  const file = join(dir, 'init.yaml');
  writeFileSync(file, template.replace(block, block.replaceAll('# ', '').replaceAll('#', '')));
  const s = runCli(t, ['serve', '--config', file, '--port', '0']);
  const listening = await s.log((l) => l.msg === 'listening', "the 'listening' line");
  const line = await s.log((l) => l.msg === 'admin UI', "the 'admin UI' line");
  assert.equal(line.url, `http://127.0.0.1:${listening.port}/admin/`);
  for (const password of ['at least 12 characters', 'an-api-key-of-16+chars']) {
    const res: Response = await fetch(`${String(line.url)}login`, { method: 'POST', body: new URLSearchParams({ password }), redirect: 'manual' });
    assert.equal(res.status, 303, password);
  }
  await s.stop();
});
