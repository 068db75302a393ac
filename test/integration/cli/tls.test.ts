/**
 * `switchboard cert` and `switchboard serve --tls-cert --tls-key` as child
 * processes: the development CA and leaf work with serve and with a client
 * that trusts the CA (https and wss, pub/sub); SIGHUP reloads the
 * certificate in the running process without dropping the open WebSocket;
 * a half-given pair is refused with the key's name; `cert` reuses its CA.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { runCli, type CliProcess } from '../../support/cli.js';
import { handshake, makePki } from '../../support/tls.js';
import { CHILD_WAIT } from '../../support/wait.js';
import { connect, httpRequest, sleep, within } from '../realtime/helpers.js';

async function run(t: TestContext, argv: string[]): Promise<{ code: number | null; proc: CliProcess }> {
  const proc = runCli(t, argv);
  // 'close' comes after the last line of output (registered before any of it can arrive).
  const closed = new Promise<number | null>((resolve) => proc.child.once('close', (code: number | null) => resolve(code)));
  const code = await within(closed, CHILD_WAIT, `switchboard ${argv.join(' ')}`);
  return { code, proc };
}

const fingerprint = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256;

test('switchboard cert: a CA and a leaf for localhost/127.0.0.1/::1 that serve uses and a client trusting the CA accepts (https, wss); SIGHUP reloads under an open WebSocket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-cert-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const made = await run(t, ['cert', '--out', dir, '--host', 'dev.test', '--days', '30']);
  assert.equal(made.code, 0, made.proc.stderr.join('\n'));
  const out = made.proc.stdout.join('\n');
  for (const f of ['ca.pem', 'ca-key.pem', 'localhost.pem', 'localhost-key.pem']) assert.ok(existsSync(join(dir, f)), f);
  assert.equal(statSync(join(dir, 'ca-key.pem')).mode & 0o777, 0o600, 'the CA key is private');
  assert.equal(statSync(join(dir, 'localhost-key.pem')).mode & 0o777, 0o600);
  assert.match(out, /made a new CA/);
  for (const words of [/security add-trusted-cert/, /update-ca-certificates/, /certutil -d sql:\$HOME\/\.pki\/nssdb/, /Firefox/, /NODE_EXTRA_CA_CERTS=/]) assert.match(out, words);
  const leaf = new X509Certificate(readFileSync(join(dir, 'localhost.pem')));
  assert.equal(leaf.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:dev.test');
  assert.ok(leaf.verify(new X509Certificate(readFileSync(join(dir, 'ca.pem'))).publicKey), 'signed by the CA');
  assert.ok(Date.parse(leaf.validTo) - Date.now() < 31 * 86_400_000, '--days 30');

  // The serve command it prints names these files. serve gets them through symlinks in another directory,
  // so that its directory watch does not see the renewal below: only SIGHUP can make it reload.
  const printed = /switchboard serve --tls-cert (\S+) --tls-key (\S+)/.exec(out);
  assert.ok(printed, out);
  assert.deepEqual([printed[1], printed[2]], [join(dir, 'localhost.pem'), join(dir, 'localhost-key.pem')]);
  const links = mkdtempSync(join(tmpdir(), 'switchboard-cert-links-'));
  t.after(() => rmSync(links, { recursive: true, force: true }));
  symlinkSync(printed[1]!, join(links, 'cert.pem'));
  symlinkSync(printed[2]!, join(links, 'key.pem'));
  const s = runCli(t, ['serve', '--tls-cert', join(links, 'cert.pem'), '--tls-key', join(links, 'key.pem'), '--port', '0']);
  const listening = await s.log((l) => l.msg === 'listening', "the 'listening' log line");
  assert.equal(listening.tls, true);
  assert.match(s.stderr.join('\n'), /switchboard: https:\/\/127\.0\.0\.1:/);
  const port = listening.port as number;
  const ca = readFileSync(join(dir, 'ca.pem'));
  const base = `https://localhost:${port}`;
  assert.equal((await httpRequest(base, '/healthz', { ca })).status, 200);
  // A client that does not trust the CA is refused.
  await assert.rejects(httpRequest(base, '/healthz'), /self[- ]signed|unable to verify|certificate/i);
  const token = (await httpRequest(base, '/dev/token', { body: { user: 'alice' }, ca })).json().token as string;
  const alice = await connect(t, `wss://localhost:${port}/rt`, { ca } as never);
  await alice.ok('auth', { token });
  await alice.ok('sub', { channel: 'chat/lobby' });
  assert.equal((await handshake(port, { ca })).fingerprint, fingerprint(join(dir, 'localhost.pem')));

  // A new leaf from the same CA (reused), then SIGHUP.
  const again = await run(t, ['cert', '--out', dir]);
  assert.equal(again.code, 0);
  assert.match(again.proc.stdout.join('\n'), /reused the CA/);
  const renewed = fingerprint(join(dir, 'localhost.pem'));
  assert.notEqual(renewed, leaf.fingerprint256);
  await sleep(1000); // well past the watch's 250 ms quiet period: had it seen the change, it would have reloaded by now
  assert.equal((await handshake(port, { ca })).fingerprint, leaf.fingerprint256, 'nothing reloaded before the signal');
  s.child.kill('SIGHUP');
  const reloaded = await s.log((l) => l.msg === 'TLS certificate reloaded' && l.trigger === 'SIGHUP', 'the SIGHUP reload log line');
  assert.equal(reloaded.fingerprint, renewed);
  assert.equal((await handshake(port, { ca })).fingerprint, renewed, 'new handshakes get the renewed certificate');
  await alice.ok('pub', { channel: 'chat/lobby', data: 'after the reload' });
  assert.equal((await alice.nextOp('msg')).data, 'after the reload', 'the WebSocket opened before the reload still works');
  assert.equal(s.child.exitCode, null, 'SIGHUP did not stop the process');
  await s.stop();
});

test('serve --tls-cert without --tls-key: exit 2, the missing key named', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-cert-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal((await run(t, ['cert', '--out', dir])).code, 0);
  const { code, proc } = await run(t, ['serve', '--port', '0', '--tls-cert', join(dir, 'localhost.pem')]);
  assert.equal(code, 2);
  assert.match(proc.stderr.join('\n'), /tls\.key: required/);
});

test('cert --days out of range is a usage error (exit 2)', async (t) => {
  const { code, proc } = await run(t, ['cert', '--out', join(tmpdir(), 'never-made'), '--days', '9999']);
  assert.equal(code, 2);
  assert.match(proc.stderr.join('\n'), /--days: expected a whole number of days from 1 to 825/);
});

test('echo --tls-cert/--tls-key takes the same checks: a key of another certificate is refused with exit 2 and the reason', async (t) => {
  const pki = makePki();
  t.after(() => pki.dispose());
  const { code, proc } = await run(t, ['echo', '--port', '0', '--tls-cert', pki.serverA.cert, '--tls-key', pki.serverB.key]);
  assert.equal(code, 2);
  assert.match(proc.stderr.join('\n'), /switchboard echo: .*server-b-key\.pem does not match the certificate .*server-a\.pem/);
});
