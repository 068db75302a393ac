/**
 * `switchboard cert` in a real browser: Debian's Chromium, whose NSS store
 * ($HOME/.pki/nssdb) trusts the development CA by the very `certutil`
 * command `cert` prints, loads the chat page from `switchboard serve
 * --tls-cert --tls-key` over https and chats over wss; the same browser
 * without the CA refuses the page (ERR_CERT_AUTHORITY_INVALID).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { runCli, type CliProcess } from '../support/cli.js';
import { CHILD_WAIT } from '../support/wait.js';
import { killAll, launchBrowser, openChat, say, transport, waitForMessage, within, type TestBrowser } from './helpers.js';

const browsers: TestBrowser[] = [];
const dirs: string[] = [];
after(async () => {
  for (const b of browsers) await b.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  killAll();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

test('Chromium trusting the CA by the printed certutil command loads https and chats over wss; without it the page is refused', async (t) => {
  const out = tempDir('switchboard-e2e-cert-');
  const cert: CliProcess = runCli(t, ['cert', '--out', out]);
  const closed = new Promise<number | null>((resolve) => cert.child.once('close', (code: number | null) => resolve(code)));
  assert.equal(await within(closed, CHILD_WAIT, 'switchboard cert'), 0, cert.stderr.join('\n'));
  const printed = cert.stdout.join('\n');
  const create = /mkdir -p ~\/\.pki\/nssdb && (certutil -d sql:\$HOME\/\.pki\/nssdb -N --empty-password)/.exec(printed);
  const trust = /^\s*(certutil -d sql:\$HOME\/\.pki\/nssdb -A .*)$/m.exec(printed);
  assert.ok(create && trust, printed);
  // A home of its own, with the NSS store the printed commands make and fill.
  const home = tempDir('switchboard-e2e-home-');
  mkdirSync(join(home, '.pki', 'nssdb'), { recursive: true });
  for (const command of [create[1]!, trust[1]!]) execFileSync('sh', ['-c', command], { env: { ...process.env, HOME: home }, stdio: 'pipe', timeout: 30_000 });

  const serve = runCli(t, ['serve', '--port', '0', '--tls-cert', join(out, 'localhost.pem'), '--tls-key', join(out, 'localhost-key.pem')]);
  const port = (await serve.log((l) => l.msg === 'listening', "the 'listening' log line")).port as number;
  const base = `https://localhost:${port}`;

  const trusting = await launchBrowser({ env: { HOME: home } });
  browsers.push(trusting);
  const alice = await trusting.page();
  const bob = await trusting.page();
  await openChat(alice, base, 'tls', 'alice');
  await openChat(bob, base, 'tls', 'bob');
  assert.equal(await transport(alice), 'websocket');
  assert.equal(await alice.evaluate(() => location.protocol), 'https:');
  await say(alice, 'over wss');
  await waitForMessage(bob, 'over wss');

  const untrusting = await launchBrowser({ env: { HOME: tempDir('switchboard-e2e-home-') } });
  browsers.push(untrusting);
  const refused = await untrusting.page();
  await assert.rejects(refused.goto(`${base}/`), /ERR_CERT_AUTHORITY_INVALID/);
  await serve.stop();
});
