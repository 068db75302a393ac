/**
 * TLS for operators (issue #12), in process, over real TLS on loopback:
 * versions (1.1 refused, 1.3 only when asked), client certificates (request
 * and require; the certificate visible to auth and rpc handlers; the mTLS
 * hook), certificate reload without dropping connections (100 reloads
 * alternating two certificates under open WebSockets), a bad pair refused
 * and the old one kept, atomic renames and symlink swaps picked up by the
 * directory watch, the warnings at start, and the configuration's messages.
 * The certificates come from `openssl` through src/cli/cert.ts (test/support/tls.ts).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { issueCertificate } from '../../../src/cli/cert.js';
import { ConfigError, validateConfig } from '../../../src/server/config/index.js';
import { CertificateReloader, certificateWarnings, readTlsMaterial } from '../../../src/server/tls.js';
import { captureLogger } from '../../support/realtime-server.js';
import { fingerprintOf, handshake, makePki, type Pki } from '../../support/tls.js';
import { connect, httpRequest, signToken, sleep, startServer, until, type ConnectOptions, type RtClient, type TestServer } from './helpers.js';

let pki: Pki;
before(() => {
  pki = makePki();
});
after(() => pki?.dispose());

/** A realtime server on TLS with `tls` merged over the A pair; `wss://localhost:<port>/rt` in `url`. */
async function startTls(t: TestContext, tls: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<TestServer> {
  const s = await startServer(t, { config: { tls: { cert: pki.serverA.cert, key: pki.serverA.key, ...tls } }, ...extra });
  return { ...s, url: `wss://localhost:${s.port}/rt`, base: `https://localhost:${s.port}` };
}

/** A realtime client over wss trusting the test CA, with a handshake token for `user` (or none). */
async function wss(t: TestContext, s: TestServer, user: string | null, options: ConnectOptions = {}): Promise<RtClient> {
  const headers: Record<string, string> = user === null ? {} : { Authorization: `Bearer ${await signToken(user)}` };
  return connect(t, s.url, { ca: pki.caPem, headers, ...options } as ConnectOptions);
}

/** Retry a handshake until it presents `fingerprint` (the watch reloads asynchronously), up to `ms`. */
async function untilServed(port: number, fingerprint: string, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    last = (await handshake(port, { ca: pki.caPem })).fingerprint;
    if (last === fingerprint) return;
    await sleep(50);
  }
  assert.fail(`${what}: still serving ${last} after ${ms} ms`);
}

describe('TLS versions', () => {
  test('wss and https answer; TLS 1.2 and 1.3 are accepted by default; TLS 1.1 is refused by the server (protocol version alert)', async (t) => {
    const s = await startTls(t);
    const c = await wss(t, s, 'alice');
    await c.fails('rpc', { method: 'nope' }, 404); // a request and its reply over wss
    const health = await httpRequest(s.base, '/healthz', { ca: pki.caPem });
    assert.equal(health.status, 200);
    assert.equal((await handshake(s.port, { ca: pki.caPem, maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2');
    assert.equal((await handshake(s.port, { ca: pki.caPem })).protocol, 'TLSv1.3');
    // The client offers only 1.0-1.1 (SECLEVEL=0: OpenSSL 3 would not even offer them otherwise); the server must refuse.
    await assert.rejects(handshake(s.port, { ca: pki.caPem, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }), (err: Error & { code?: string }) => {
      assert.match(`${err.code} ${err.message}`, /ALERT_PROTOCOL_VERSION|protocol version/i);
      return true;
    });
  });

  test('minVersion TLSv1.3: a 1.2 handshake is refused, 1.3 accepted', async (t) => {
    const s = await startTls(t, { minVersion: 'TLSv1.3' });
    await assert.rejects(handshake(s.port, { ca: pki.caPem, maxVersion: 'TLSv1.2' }), (err: Error & { code?: string }) => {
      assert.match(`${err.code} ${err.message}`, /ALERT_PROTOCOL_VERSION|protocol version/i);
      return true;
    });
    assert.equal((await handshake(s.port, { ca: pki.caPem })).protocol, 'TLSv1.3');
  });
});

describe('client certificates', () => {
  /** An rpc that answers with the identity's client certificate, as handlers see it. */
  const whoami = (s: TestServer) => s.server.rpc('whoami', (_data, ctx) => ({ user: ctx.user, certificate: ctx.identity?.clientCertificate ?? null }));
  const clientKey = () => ({ cert: readFileSync(pki.client.cert), key: readFileSync(pki.client.key) });

  test('request: with a client certificate the identity carries it (verified); without one the connection is still admitted; an untrusted one is marked unauthorized', async (t) => {
    const s = await startTls(t, { ca: pki.ca.cert, clientCertificates: 'request' });
    whoami(s);
    const withCert = await wss(t, s, 'alice', clientKey());
    const seen = (await withCert.ok('rpc', { method: 'whoami' })).data;
    assert.equal(seen.user, 'alice');
    assert.equal(seen.certificate.commonName, 'alice');
    assert.equal(seen.certificate.authorized, true);
    assert.equal(seen.certificate.fingerprint256, fingerprintOf(pki.client.cert));
    assert.match(seen.certificate.issuer, /Switchboard test CA/);

    const without = await wss(t, s, 'bob');
    assert.deepEqual((await without.ok('rpc', { method: 'whoami' })).data, { user: 'bob', certificate: null });

    const untrusted = await wss(t, s, 'mallory', { cert: readFileSync(pki.untrustedClient.cert), key: readFileSync(pki.untrustedClient.key) } as ConnectOptions);
    const bad = (await untrusted.ok('rpc', { method: 'whoami' })).data;
    assert.equal(bad.certificate.commonName, 'mallory');
    assert.equal(bad.certificate.authorized, false);
    assert.ok(bad.certificate.authorizationError, 'the reason it did not verify');
  });

  test('require: no certificate, or an untrusted one, fails the TLS handshake; a trusted one connects', async (t) => {
    const s = await startTls(t, { ca: pki.ca.cert, clientCertificates: 'require' });
    whoami(s);
    // The refusal is TLS's (an alert in the handshake), before any HTTP.
    await assert.rejects(httpRequest(s.base, '/healthz', { ca: pki.caPem }), /certificate required|CERTIFICATE_REQUIRED/i);
    await assert.rejects(wss(t, s, 'bob', { ignoreErrors: true }));
    await assert.rejects(wss(t, s, 'mallory', { cert: readFileSync(pki.untrustedClient.cert), key: readFileSync(pki.untrustedClient.key), ignoreErrors: true } as ConnectOptions));
    const ok = await wss(t, s, 'alice', clientKey());
    assert.equal((await ok.ok('rpc', { method: 'whoami' })).data.certificate.authorized, true);
    // A reload keeps the policy (it lives on the server, not in the secure context) and the CA.
    assert.equal(s.server.reloadCertificates().ok, true);
    await assert.rejects(httpRequest(s.base, '/healthz', { ca: pki.caPem }), /certificate required|CERTIFICATE_REQUIRED/i);
    const after = await wss(t, s, 'alice', clientKey());
    assert.equal((await after.ok('rpc', { method: 'whoami' })).data.certificate.authorized, true);
    assert.equal((await ok.ok('rpc', { method: 'whoami' })).data.user, 'alice', 'the connection from before the reload');
  });

  test('authenticateClientCertificate: a verified certificate without a token authenticates the connection; an unverified one is never passed to it', async (t) => {
    const passed: string[] = [];
    const s = await startTls(t, { ca: pki.ca.cert, clientCertificates: 'request' }, {
      authenticateClientCertificate: (cert: { commonName?: string }) => {
        passed.push(cert.commonName ?? '');
        return { user: `cert:${cert.commonName}`, expiresAt: Infinity, permissions: null };
      },
    });
    whoami(s);
    const c = await wss(t, s, null, clientKey());
    const seen = (await c.ok('rpc', { method: 'whoami' })).data;
    assert.equal(seen.user, 'cert:alice');
    assert.equal(seen.certificate.commonName, 'alice');
    const untrusted = await wss(t, s, null, { cert: readFileSync(pki.untrustedClient.cert), key: readFileSync(pki.untrustedClient.key) } as ConnectOptions);
    // Not authenticated: the first request other than auth is refused ("send auth first").
    await untrusted.fails('rpc', { method: 'whoami' }, 401);
    assert.deepEqual(passed, ['alice']);
  });
});

describe('certificate reload', () => {
  /** A directory with cert.pem and key.pem copied from `pair`, and a server on them. */
  function liveDir(name: string): { dir: string; cert: string; key: string; put(pair: { cert: string; key: string }): void } {
    const dir = join(pki.dir, name);
    mkdirSync(dir, { recursive: true });
    const files = { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
    const put = (pair: { cert: string; key: string }) => {
      copyFileSync(pair.key, files.key);
      copyFileSync(pair.cert, files.cert);
    };
    put(pki.serverA);
    return { dir, ...files, put };
  }

  test('100 reloads alternating two certificates: open WebSockets stay and keep exchanging messages; each new handshake sees the new certificate', async (t) => {
    const live = liveDir('alternate');
    const s = await startTls(t, { cert: live.cert, key: live.key });
    s.server.certificates!.close(); // this test drives the reloads itself (the watch has its own tests)
    const fingerprints = [fingerprintOf(pki.serverA.cert), fingerprintOf(pki.serverB.cert)];
    const N = 20;
    const clients: RtClient[] = [];
    for (let i = 0; i < N; i++) {
      const c = await wss(t, s, `u${i}`);
      await c.ok('sub', { channel: 'room' });
      clients.push(c);
    }
    const reloadMs: number[] = [];
    let published = 0;
    for (let i = 1; i <= 100; i++) {
      live.put(i % 2 === 1 ? pki.serverB : pki.serverA);
      const started = process.hrtime.bigint();
      const result = s.server.reloadCertificates('test');
      reloadMs.push(Number(process.hrtime.bigint() - started) / 1e6);
      assert.equal(result.ok, true, JSON.stringify(result));
      assert.equal((await handshake(s.port, { ca: pki.caPem })).fingerprint, fingerprints[i % 2], `reload ${i}: the new handshake's certificate`);
      if (i % 10 === 0) {
        // The old connections, negotiated under earlier certificates, still carry messages both ways.
        await clients[i % N]!.ok('pub', { channel: 'room', data: { i } });
        published++;
        for (const c of clients) await c.waitMessages('room', published);
      }
    }
    assert.equal(clients.filter((c) => !c.isClosed).length, N, 'every WebSocket is still open');
    const sorted = [...reloadMs].sort((a, b) => a - b);
    const mean = reloadMs.reduce((a, b) => a + b, 0) / reloadMs.length;
    t.diagnostic(
      `100 reloads: ${N}/${N} WebSockets kept, ${published} publications delivered to all; reload (read + check + setSecureContext) mean ${mean.toFixed(2)} ms, p50 ${sorted[49]!.toFixed(2)} ms, max ${sorted[99]!.toFixed(2)} ms`,
    );
    const metrics = await httpRequest(s.base, '/metrics', { ca: pki.caPem });
    assert.match(metrics.text, /switchboard_tls_reloads_total\{result="success"\} 100\n/);
  });

  test('a bad new pair (a key of another certificate, then a file that is no certificate) is refused: the old one is kept, a log line says why, the failure is counted', async (t) => {
    const live = liveDir('bad');
    const s = await startTls(t, { cert: live.cert, key: live.key });
    s.server.certificates!.close();
    const c = await wss(t, s, 'alice');
    await c.ok('sub', { channel: 'room' });
    copyFileSync(pki.serverB.cert, live.cert); // the key is still A's
    const mismatch = s.server.reloadCertificates('test');
    assert.equal(mismatch.ok, false);
    assert.match(!mismatch.ok ? mismatch.error : '', /does not match the certificate/);
    writeFileSync(live.cert, 'not a certificate\n');
    const garbage = s.server.reloadCertificates('test');
    assert.match(!garbage.ok ? garbage.error : '', /no PEM certificate/);
    assert.equal((await handshake(s.port, { ca: pki.caPem })).fingerprint, fingerprintOf(pki.serverA.cert), 'the old certificate is still served');
    const refused = s.logs.filter((l) => l.msg === 'TLS certificate reload refused: the old certificate is kept');
    assert.equal(refused.length, 2);
    assert.equal(refused[0]!.level, 'error');
    assert.match(String(refused[0]!.error), /does not match/);
    const metrics = await httpRequest(s.base, '/metrics', { ca: pki.caPem });
    assert.match(metrics.text, /switchboard_tls_reloads_total\{result="failure"\} 2\n/);
    await c.ok('pub', { channel: 'room', data: 'still here' });
    await c.waitMessages('room', 1);
  });

  test('the directory watch picks up an atomic rename (write elsewhere, rename over the file)', async (t) => {
    const live = liveDir('rename');
    const s = await startTls(t, { cert: live.cert, key: live.key });
    const c = await wss(t, s, 'alice');
    // Key first, then the certificate: each by a rename, as most renewal tools do.
    copyFileSync(pki.serverB.key, join(live.dir, '.key.tmp'));
    renameSync(join(live.dir, '.key.tmp'), live.key);
    copyFileSync(pki.serverB.cert, join(live.dir, '.cert.tmp'));
    renameSync(join(live.dir, '.cert.tmp'), live.cert);
    await untilServed(s.port, fingerprintOf(pki.serverB.cert), 10_000, 'the renamed certificate');
    assert.ok(s.logs.some((l) => l.msg === 'TLS certificate reloaded' && l.trigger === 'file change'));
    assert.equal(c.isClosed, false);
    await c.ok('sub', { channel: 'room' });
  });

  test("the directory watch picks up a symlink swap (Kubernetes' ..data)", async (t) => {
    // The layout of a mounted Secret: cert.pem -> ..data/cert.pem, ..data -> ..<timestamp>/.
    const dir = join(pki.dir, 'k8s');
    const version = (name: string, pair: { cert: string; key: string }) => {
      mkdirSync(join(dir, name), { recursive: true });
      copyFileSync(pair.cert, join(dir, name, 'cert.pem'));
      copyFileSync(pair.key, join(dir, name, 'key.pem'));
    };
    version('..v1', pki.serverA);
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync('..data/cert.pem', join(dir, 'cert.pem'));
    symlinkSync('..data/key.pem', join(dir, 'key.pem'));
    const s = await startTls(t, { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') });
    const c = await wss(t, s, 'alice');
    assert.equal((await handshake(s.port, { ca: pki.caPem })).fingerprint, fingerprintOf(pki.serverA.cert));
    // The kubelet's swap: a new version directory, a new link, renamed over ..data (atomic).
    version('..v2', pki.serverB);
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await untilServed(s.port, fingerprintOf(pki.serverB.cert), 10_000, 'the certificate behind the swapped link');
    assert.equal(c.isClosed, false);
  });
});

describe('expiry', () => {
  test('a reload refuses a certificate that has expired (the clock moved past its notAfter) and keeps serving the old one', async (t) => {
    const server = https.createServer({ cert: readFileSync(pki.serverA.cert), key: readFileSync(pki.serverA.key) });
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const logger = captureLogger();
    const reloads: string[] = [];
    const config = { cert: pki.serverB.cert, key: pki.serverB.key, minVersion: 'TLSv1.2', clientCertificates: 'off' } as const;
    const initial = readTlsMaterial({ cert: pki.serverA.cert, key: pki.serverA.key });
    const inAYear = Date.now() + 365 * 86_400_000; // past B's 60 days
    const reloader = new CertificateReloader({ server, config, initial, logger, host: '127.0.0.1', now: () => inAYear, observer: { tlsReloaded: (r) => reloads.push(r), tlsCertificate: () => {} } });
    const result = reloader.reload('test');
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.error : '', /expired on/);
    assert.deepEqual(reloads, ['failure']);
    assert.equal((await handshake(port, { ca: pki.caPem })).fingerprint, fingerprintOf(pki.serverA.cert));
    // The same clock at start: a warning, not a refusal (a reload can then fix it).
    assert.match(certificateWarnings(initial.leaf, '127.0.0.1', inAYear).join('\n'), /^the certificate expired on/);
  });
});

describe('warnings at start and configuration', () => {
  test('a certificate that expires within 14 days, or does not cover the host, is warned about at start', async (t) => {
    const dir = join(pki.dir, 'warn');
    const soon = issueCertificate(pki.ca, dir, { name: 'soon', hosts: ['localhost', '127.0.0.1'], days: 5 });
    const s = await startTls(t, { cert: soon.cert, key: soon.key });
    const expiry = s.logs.find((l) => l.level === 'warn' && /^the certificate expires in 4 days/.test(String(l.msg)));
    assert.ok(expiry, JSON.stringify(s.logs.filter((l) => l.level === 'warn')));
    assert.equal(s.logs.filter((l) => l.level === 'warn' && /does not cover/.test(String(l.msg))).length, 0);

    const elsewhere = issueCertificate(pki.ca, dir, { name: 'elsewhere', hosts: ['example.test'], days: 90 });
    const s2 = await startTls(t, { cert: elsewhere.cert, key: elsewhere.key });
    const host = s2.logs.find((l) => l.level === 'warn' && /does not cover the host 127\.0\.0\.1/.test(String(l.msg)));
    assert.ok(host, JSON.stringify(s2.logs.filter((l) => l.level === 'warn')));
    assert.equal(s2.logs.filter((l) => l.level === 'warn' && /expires in/.test(String(l.msg))).length, 0);
  });

  test('configuration errors name the key and the reason', () => {
    const issues = (tls: unknown) => {
      try {
        validateConfig({ auth: { anonymous: true }, tls });
      } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
        return err.lines;
      }
      return [];
    };
    assert.deepEqual(issues({ cert: pki.serverA.cert }), ['tls.key: required (the private key, PEM)']);
    assert.match(issues({ cert: pki.serverB.cert, key: pki.serverA.key })[0]!, /^tls\.key: .* does not match the certificate/);
    assert.match(issues({ cert: pki.serverA.key, key: pki.serverA.key })[0]!, /^tls\.cert: .*no PEM certificate/);
    assert.match(issues({ cert: pki.serverA.cert, key: pki.serverA.cert })[0]!, /^tls\.key: .*not a private key/);
    assert.match(issues({ cert: '/nonexistent/c.pem', key: pki.serverA.key })[0]!, /^tls\.cert: cannot read file "\/nonexistent\/c\.pem" \(ENOENT\)/);
    assert.deepEqual(issues({ cert: pki.serverA.cert, key: pki.serverA.key, minVersion: 'TLSv1.1' }), ['tls.minVersion: expected one of "TLSv1.2", "TLSv1.3", got string "TLSv1.1"']);
    assert.deepEqual(issues({ cert: pki.serverA.cert, key: pki.serverA.key, clientCertificates: 'require' }), [
      'tls.clientCertificates: "require" needs tls.ca: the CA bundle (PEM) that client certificates are verified against',
    ]);
    // An encrypted key: without its passphrase, with a wrong one, with the right one.
    const encrypted = join(pki.dir, 'encrypted-key.pem');
    execFileSync('openssl', ['pkcs8', '-topk8', '-in', pki.serverA.key, '-out', encrypted, '-passout', 'pass:s3cret-phrase'], { stdio: 'pipe' });
    assert.match(issues({ cert: pki.serverA.cert, key: encrypted })[0]!, /^tls\.passphrase: .* is encrypted: set tls\.passphrase/);
    assert.match(issues({ cert: pki.serverA.cert, key: encrypted, passphrase: 'wrong' })[0]!, /^tls\.passphrase: cannot decrypt/);
    assert.deepEqual(issues({ cert: pki.serverA.cert, key: encrypted, passphrase: 's3cret-phrase' }), []);
    const ok = validateConfig({ auth: { anonymous: true }, tls: { cert: pki.serverA.cert, key: pki.serverA.key } });
    assert.equal(ok.tls!.minVersion, 'TLSv1.2');
    assert.equal(ok.tls!.clientCertificates, 'off');
  });
});
