import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import {
  AuthError,
  AuthErrorCode,
  can,
  createAuthenticator,
  isOriginAllowed,
  loadJwks,
  parseCookie,
  parsePermissions,
  patternCovers,
  TicketStore,
  tokenFromRequest,
  type Action,
  type AuthConfig,
  type Identity,
  type NamespacePolicy,
} from '../../../src/realtime/auth.js';
import { isValidChannel, isValidPattern, matchesPattern } from '../../../src/wire/channel.js';
import type { HubAuth, NamespaceRules } from '../../../src/realtime/hub.js';
import type { NamespaceConfig } from '../../../src/server/config/index.js';
import { RealtimeCloseCode } from '../../../src/wire/messages.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';
const NOW = 1_700_000_000_000; // fixed clock, ms
const nowS = NOW / 1000;

function authConfig(extra: Partial<AuthConfig> = {}): AuthConfig {
  return { anonymous: false, authTimeoutMs: 5000, refreshGraceMs: 10000, cookieName: 'sb_token', ticketTtlMs: 30000, ...extra };
}

function sign(claims: JWTPayload, key: CryptoKey | Uint8Array, header: { alg: string; kid?: string }): Promise<string> {
  return new SignJWT(claims).setProtectedHeader(header).sign(key);
}

const secretKey = new TextEncoder().encode(SECRET);
const hs = (claims: JWTPayload, alg = 'HS256') => sign(claims, secretKey, { alg });
const base = (extra: JWTPayload = {}): JWTPayload => ({ sub: 'alice', exp: nowS + 3600, ...extra });

async function rejectsWith(p: Promise<unknown>, code: string, closeCode: number, message?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AuthError, `expected AuthError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.closeCode, closeCode);
    if (message !== undefined) assert.equal(err.message, message);
    return true;
  });
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('createAuthenticator: HS256', () => {
  const auth = createAuthenticator(authConfig({ hmacSecret: SECRET }), { now: () => NOW });

  it('verifies a valid token into an identity', async () => {
    const identity = await auth.verify(await hs(base({ info: { name: 'Alice' } })));
    assert.deepEqual(identity, { user: 'alice', info: { name: 'Alice' }, expiresAt: (nowS + 3600) * 1000, permissions: null });
  });

  it('accepts HS384 and HS512 with the same secret', async () => {
    assert.equal((await auth.verify(await hs(base(), 'HS384'))).user, 'alice');
    assert.equal((await auth.verify(await hs(base(), 'HS512'))).user, 'alice');
  });

  it('reads the channels claim', async () => {
    const identity = await auth.verify(await hs(base({ channels: { subscribe: ['chat/#'], publish: ['chat/room'] } })));
    assert.deepEqual(identity.permissions, { subscribe: ['chat/#'], publish: ['chat/room'] });
  });

  it('rejects an expired token with 4002, within the 5 s tolerance accepts it', async () => {
    await rejectsWith(auth.verify(await hs(base({ exp: nowS - 6 }))), AuthErrorCode.TokenExpired, RealtimeCloseCode.TokenExpired, 'token expired');
    assert.equal((await auth.verify(await hs(base({ exp: nowS - 4 })))).user, 'alice');
  });

  it('uses the injected clock', async () => {
    const token = await hs(base({ exp: nowS + 60 }));
    const later = createAuthenticator(authConfig({ hmacSecret: SECRET }), { now: () => NOW + 120_000 });
    await rejectsWith(later.verify(token), AuthErrorCode.TokenExpired, 4002);
  });

  it('rejects a wrong signature and a tampered payload', async () => {
    const other = new TextEncoder().encode('another-secret-that-is-also-32-bytes-or-more');
    await rejectsWith(auth.verify(await sign(base(), other, { alg: 'HS256' })), AuthErrorCode.TokenInvalid, 4500, 'invalid token signature');
    const [h, , s] = (await hs(base())).split('.');
    await rejectsWith(auth.verify(`${h}.${b64(base({ sub: 'mallory' }))}.${s}`), AuthErrorCode.TokenInvalid, 4500, 'invalid token signature');
  });

  it('rejects alg none (with or without a signature part)', async () => {
    const header = b64({ alg: 'none', typ: 'JWT' });
    await rejectsWith(auth.verify(`${header}.${b64(base())}.`), AuthErrorCode.TokenInvalid, 4500, 'token algorithm not allowed');
    const [, , s] = (await hs(base())).split('.');
    await rejectsWith(auth.verify(`${header}.${b64(base())}.${s}`), AuthErrorCode.TokenInvalid, 4500, 'token algorithm not allowed');
    await rejectsWith(auth.verify(`${b64({ alg: 'None' })}.${b64(base())}.`), AuthErrorCode.TokenInvalid, 4500, 'token algorithm not allowed');
  });

  it('requires exp', async () => {
    await rejectsWith(auth.verify(await hs({ sub: 'alice' })), AuthErrorCode.TokenClaims, 4500, 'token has no exp claim');
    await rejectsWith(auth.verify(await hs({ sub: 'alice', exp: 'soon' as unknown as number })), AuthErrorCode.TokenClaims, 4500, 'invalid exp claim');
  });

  it('requires a non-empty sub', async () => {
    await rejectsWith(auth.verify(await hs({ exp: nowS + 60 })), AuthErrorCode.TokenClaims, 4500, 'token has no sub claim');
    await rejectsWith(auth.verify(await hs({ sub: '', exp: nowS + 60 })), AuthErrorCode.TokenClaims, 4500, 'token has no sub claim');
  });

  it('honours nbf', async () => {
    await rejectsWith(auth.verify(await hs(base({ nbf: nowS + 60 }))), AuthErrorCode.TokenClaims, 4500, 'token not yet valid');
    assert.equal((await auth.verify(await hs(base({ nbf: nowS + 3 })))).user, 'alice');
  });

  it('rejects malformed input', async () => {
    await rejectsWith(auth.verify('abc'), AuthErrorCode.TokenInvalid, 4500, 'malformed token');
    await rejectsWith(auth.verify(''), AuthErrorCode.TokenInvalid, 4500, 'malformed token');
    await rejectsWith(auth.verify('a.b.c'), AuthErrorCode.TokenInvalid, 4500, 'malformed token');
    await rejectsWith(auth.verify(`${b64({ alg: 'HS256', crit: ['x'], x: 1 })}.${b64(base())}.sig`), AuthErrorCode.TokenInvalid, 4500, 'unsupported token');
    await rejectsWith(auth.verify(123 as unknown as string), AuthErrorCode.TokenInvalid, 4500);
    await rejectsWith(auth.verify('x'.repeat(9000)), AuthErrorCode.TokenInvalid, 4500, 'token too long');
  });

  it('rejects a bad channels claim', async () => {
    for (const channels of ['chat/#', ['chat'], { subscribe: 'chat' }, { subcribe: ['chat'] }, { subscribe: ['chat//x'] }, { publish: [1] }, { subscribe: ['a/#/b'] }]) {
      await rejectsWith(auth.verify(await hs(base({ channels }))), AuthErrorCode.TokenClaims, 4500);
    }
  });

  it('rejects asymmetric algorithms when only a secret is configured', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    await rejectsWith(auth.verify(await sign(base(), privateKey, { alg: 'RS256' })), AuthErrorCode.TokenInvalid, 4500, 'token algorithm not allowed');
  });

  it('refuses a secret shorter than 32 bytes', () => {
    assert.throws(() => createAuthenticator(authConfig({ hmacSecret: 'short' })), /at least 32 bytes/);
  });
});

describe('createAuthenticator: issuer and audience', () => {
  const auth = createAuthenticator(authConfig({ hmacSecret: SECRET, issuer: 'https://id.example', audience: 'switchboard' }), { now: () => NOW });

  it('accepts matching iss and aud (also aud as an array)', async () => {
    assert.equal((await auth.verify(await hs(base({ iss: 'https://id.example', aud: 'switchboard' })))).user, 'alice');
    assert.equal((await auth.verify(await hs(base({ iss: 'https://id.example', aud: ['other', 'switchboard'] })))).user, 'alice');
  });

  it('rejects a wrong or missing issuer', async () => {
    await rejectsWith(auth.verify(await hs(base({ iss: 'https://evil.example', aud: 'switchboard' }))), AuthErrorCode.TokenClaims, 4500, 'token issuer mismatch');
    await rejectsWith(auth.verify(await hs(base({ aud: 'switchboard' }))), AuthErrorCode.TokenClaims, 4500, 'token has no iss claim');
  });

  it('rejects a wrong or missing audience', async () => {
    await rejectsWith(auth.verify(await hs(base({ iss: 'https://id.example', aud: 'other' }))), AuthErrorCode.TokenClaims, 4500, 'token audience mismatch');
    await rejectsWith(auth.verify(await hs(base({ iss: 'https://id.example' }))), AuthErrorCode.TokenClaims, 4500, 'token has no aud claim');
  });
});

describe('createAuthenticator: public keys', () => {
  let dir: string;
  let rsa: { privateKey: CryptoKey; publicKey: CryptoKey; pem: string };
  let ec: { privateKey: CryptoKey; publicKey: CryptoKey; pem: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-auth-'));
    const r = await generateKeyPair('RS256', { extractable: true });
    rsa = { ...r, pem: await exportSPKI(r.publicKey) };
    const e = await generateKeyPair('ES256', { extractable: true });
    ec = { ...e, pem: await exportSPKI(e.publicKey) };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('verifies RS256 with a PEM public key', async () => {
    const auth = createAuthenticator(authConfig({ publicKey: rsa.pem }), { now: () => NOW });
    assert.equal((await auth.verify(await sign(base(), rsa.privateKey, { alg: 'RS256' }))).user, 'alice');
  });

  it('verifies ES256 with a public key file', async () => {
    const file = join(dir, 'ec.pem');
    writeFileSync(file, ec.pem);
    const auth = createAuthenticator(authConfig({ publicKey: file }), { now: () => NOW });
    assert.equal((await auth.verify(await sign(base(), ec.privateKey, { alg: 'ES256' }))).user, 'alice');
  });

  it('pins the algorithm to the key type', async () => {
    const auth = createAuthenticator(authConfig({ publicKey: ec.pem }), { now: () => NOW });
    await rejectsWith(auth.verify(await sign(base(), rsa.privateKey, { alg: 'RS256' })), AuthErrorCode.TokenInvalid, 4500, 'token algorithm not allowed');
    const other = await generateKeyPair('ES256');
    await rejectsWith(auth.verify(await sign(base(), other.privateKey, { alg: 'ES256' })), AuthErrorCode.TokenInvalid, 4500, 'invalid token signature');
  });

  it('refuses alg confusion: HS256 signed with the public key PEM as the secret', async () => {
    const auth = createAuthenticator(authConfig({ publicKey: rsa.pem }), { now: () => NOW });
    const forged = await sign(base(), new TextEncoder().encode(rsa.pem), { alg: 'HS256' });
    await rejectsWith(auth.verify(forged), AuthErrorCode.TokenInvalid, 4500, 'token algorithm not allowed');
    // the same with a secret configured too: the forged token meets the real secret, not the PEM
    const both = createAuthenticator(authConfig({ publicKey: rsa.pem, hmacSecret: SECRET }), { now: () => NOW });
    await rejectsWith(both.verify(forged), AuthErrorCode.TokenInvalid, 4500, 'invalid token signature');
    assert.equal((await both.verify(await hs(base()))).user, 'alice');
    assert.equal((await both.verify(await sign(base(), rsa.privateKey, { alg: 'RS256' }))).user, 'alice');
  });

  it('refuses a private key, garbage and a missing file as publicKey', async () => {
    const pkcs8 = await exportPKCS8(rsa.privateKey);
    assert.throws(() => createAuthenticator(authConfig({ publicKey: pkcs8 })), /auth\.publicKey: is a private key/);
    assert.throws(() => createAuthenticator(authConfig({ publicKey: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' })), /not a valid PEM public key/);
    assert.throws(() => createAuthenticator(authConfig({ publicKey: join(dir, 'missing.pem') })), /cannot read file .*ENOENT/);
  });

  it('selects the JWKS key by kid', async () => {
    const file = join(dir, 'jwks.json');
    const jwkA = { ...(await exportJWK(rsa.publicKey)), kid: 'a', alg: 'RS256', use: 'sig' };
    const jwkB = { ...(await exportJWK(ec.publicKey)), kid: 'b', alg: 'ES256' };
    writeFileSync(file, JSON.stringify({ keys: [jwkA, jwkB] }));
    const auth = createAuthenticator(authConfig({ jwksFile: file }), { now: () => NOW });
    assert.equal((await auth.verify(await sign(base({ sub: 'a' }), rsa.privateKey, { alg: 'RS256', kid: 'a' }))).user, 'a');
    assert.equal((await auth.verify(await sign(base({ sub: 'b' }), ec.privateKey, { alg: 'ES256', kid: 'b' }))).user, 'b');
    await rejectsWith(auth.verify(await sign(base(), rsa.privateKey, { alg: 'RS256', kid: 'zzz' })), AuthErrorCode.TokenInvalid, 4500, 'no key for this token');
    await rejectsWith(auth.verify(await sign(base(), rsa.privateKey, { alg: 'RS256', kid: 'b' })), AuthErrorCode.TokenInvalid, 4500, 'no key for this token');
    // a second RSA key under kid 'a2': the token signed with it but labelled 'a' fails the signature
    const other = await generateKeyPair('RS256');
    await rejectsWith(auth.verify(await sign(base(), other.privateKey, { alg: 'RS256', kid: 'a' })), AuthErrorCode.TokenInvalid, 4500, 'invalid token signature');
    // no HS256 with a JWKS, even signed with the JWK's text
    await rejectsWith(auth.verify(await sign(base(), new TextEncoder().encode(JSON.stringify(jwkA)), { alg: 'HS256', kid: 'a' })), AuthErrorCode.TokenInvalid, 4500);
  });

  it('checks JWKS files', async () => {
    const write = (name: string, text: string) => {
      const file = join(dir, name);
      writeFileSync(file, text);
      return file;
    };
    assert.throws(() => loadJwks(write('j1.json', 'not json')), /is not JSON/);
    assert.throws(() => loadJwks(write('j2.json', '{"keys":[]}')), /has no "keys" array/);
    assert.throws(() => loadJwks(write('j3.json', '{"keys":[{"k":"x"}]}')), /key 0 .* has no "kty"/);
    assert.throws(() => loadJwks(write('j4.json', '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}')), /symmetric/);
    const priv = await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey);
    assert.throws(() => loadJwks(write('j5.json', JSON.stringify({ keys: [priv] }))), /private key/);
    assert.throws(() => createAuthenticator(authConfig({ jwksFile: join(dir, 'nope.json') })), /auth\.jwksFile: cannot read file/);
  });

  it('refuses tokens when no key is configured (anonymous only)', async () => {
    const auth = createAuthenticator(authConfig({ anonymous: true }));
    await rejectsWith(auth.verify(await hs(base())), AuthErrorCode.NotConfigured, 4500);
  });
});

describe('patternCovers', () => {
  const cases: [string, string, boolean][] = [
    ['chat/#', 'chat/+/x', true],
    ['chat/#', 'chat', true],
    ['chat/#', 'chat/#', true],
    ['chat/#', 'chat/a/b/c', true],
    ['chat/#', 'chatroom/#', false],
    ['chat/a', 'chat/+', false],
    ['chat/a', 'chat/a', true],
    ['chat/+', 'chat/a', true],
    ['chat/+', 'chat/+', true],
    ['chat/+', 'chat/#', false],
    ['chat/+', 'chat', false],
    ['chat/+', 'chat/a/b', false],
    ['chat/+/x', 'chat/+/x', true],
    ['chat/+/x', 'chat/a/x', true],
    ['chat/+/x', 'chat/+/+', false],
    ['chat/+/#', 'chat/a/b', true],
    ['chat/+/#', 'chat', false],
    ['#', 'anything/+/#', true],
    ['#', '#', true],
    ['+/#', '#', true],
    ['#', '+/#', true],
    ['+', '#', false],
    ['+/+', '+/#', false],
    ['a/#', '#', false],
    ['bad//x', 'bad//x', false],
    ['chat/#', 'chat//x', false],
  ];
  for (const [permission, requested, expected] of cases) {
    it(`${permission} ${expected ? 'covers' : 'does not cover'} ${requested}`, () => {
      assert.equal(patternCovers(permission, requested), expected);
    });
  }

  it('agrees with matchesPattern over every small pattern and channel (exhaustive)', () => {
    // Patterns over the literals a, b; channels over a, b, c (c stands for any other name).
    const patterns: string[] = [];
    const build = (prefix: string[], depth: number) => {
      if (prefix.length > 0) {
        const p = prefix.join('/');
        if (isValidChannel(p) || isValidPattern(p)) patterns.push(p);
      }
      if (depth === 0) return;
      for (const s of ['a', 'b', '+', '#']) build([...prefix, s], depth - 1);
    };
    build([], 3);
    const channels: string[] = [];
    const chan = (prefix: string[], depth: number) => {
      if (prefix.length > 0) channels.push(prefix.join('/'));
      if (depth === 0) return;
      for (const s of ['a', 'b', 'c']) chan([...prefix, s], depth - 1);
    };
    chan([], 5);
    const matched = new Map(patterns.map((p) => [p, channels.filter((c) => matchesPattern(p, c))]));
    let checked = 0;
    for (const permission of patterns) {
      for (const requested of patterns) {
        const expected = matched.get(requested)!.every((c) => matchesPattern(permission, c));
        assert.equal(patternCovers(permission, requested), expected, `patternCovers(${permission}, ${requested})`);
        checked++;
      }
    }
    assert.ok(checked > 1000);
  });
});

describe('can', () => {
  const ns = (extra: Partial<NamespacePolicy> = {}): NamespacePolicy => ({ clientPublish: true, anonymousSubscribe: false, anonymousPublish: false, ...extra });
  const id = (permissions: Identity['permissions']): Identity => ({ user: 'u', expiresAt: Infinity, permissions });
  const actions: Action[] = ['subscribe', 'publish', 'presence', 'history'];

  it('a token without a channels claim may do what the namespace allows', () => {
    for (const action of actions) assert.equal(can(id(null), action, 'chat/a', ns()), true, action);
    assert.equal(can(id(null), 'publish', 'chat/a', ns({ clientPublish: false })), false);
    assert.equal(can(id(null), 'subscribe', 'chat/+', ns()), true);
    assert.equal(can({ user: 'u' }, 'subscribe', 'chat/a', ns()), true); // an identity made in code, without permissions
  });

  it('anonymous connections get only what the namespace allows anonymously', () => {
    for (const action of actions) assert.equal(can(null, action, 'chat/a', ns()), false, action);
    assert.equal(can(null, 'subscribe', 'chat/a', ns({ anonymousSubscribe: true })), true);
    assert.equal(can(null, 'presence', 'chat/a', ns({ anonymousSubscribe: true })), true);
    assert.equal(can(null, 'history', 'chat/a', ns({ anonymousSubscribe: true })), true);
    assert.equal(can(null, 'publish', 'chat/a', ns({ anonymousSubscribe: true })), false);
    assert.equal(can(null, 'publish', 'chat/a', ns({ anonymousPublish: true })), true);
    assert.equal(can(null, 'publish', 'chat/a', ns({ anonymousPublish: true, clientPublish: false })), false);
    assert.equal(can(null, 'subscribe', '#', ns({ anonymousSubscribe: true })), true);
  });

  it('a channels claim restricts each action to its list', () => {
    const alice = id({ subscribe: ['chat/#'], publish: ['chat/+/in'] });
    assert.equal(can(alice, 'subscribe', 'chat/a', ns()), true);
    assert.equal(can(alice, 'subscribe', 'news', ns()), false);
    assert.equal(can(alice, 'publish', 'chat/a/in', ns()), true);
    assert.equal(can(alice, 'publish', 'chat/a', ns()), false);
    assert.equal(can(alice, 'publish', 'chat/a/in', ns({ clientPublish: false })), false);
    // subscribe implies presence and history on the same channels
    assert.equal(can(alice, 'presence', 'chat/a', ns()), true);
    assert.equal(can(alice, 'history', 'chat/a', ns()), true);
    assert.equal(can(alice, 'history', 'news', ns()), false);
    // a list grants nothing when missing
    assert.equal(can(id({}), 'subscribe', 'chat/a', ns()), false);
    // presence/history lists on their own
    const bob = id({ presence: ['lobby'], history: ['log/#'] });
    assert.equal(can(bob, 'presence', 'lobby', ns()), true);
    assert.equal(can(bob, 'history', 'log/2024', ns()), true);
    assert.equal(can(bob, 'subscribe', 'lobby', ns()), false);
    assert.equal(can(bob, 'history', 'lobby', ns()), false);
  });

  it('a pattern subscription must be covered by a permission', () => {
    const alice = id({ subscribe: ['chat/#', 'game/a'] });
    assert.equal(can(alice, 'subscribe', 'chat/+/x', ns()), true);
    assert.equal(can(alice, 'subscribe', 'chat/#', ns()), true);
    assert.equal(can(alice, 'subscribe', 'game/+', ns()), false);
    assert.equal(can(alice, 'subscribe', '#', ns()), false);
  });

  it('patterns are only for subscribe', () => {
    for (const action of ['publish', 'presence', 'history'] as const) {
      assert.equal(can(id(null), action, 'chat/+', ns()), false, action);
      assert.equal(can(id({ [action]: ['#'] }), action, 'chat/+', ns()), false, action);
    }
  });

  it('parsePermissions', () => {
    assert.equal(parsePermissions(undefined), null);
    assert.deepEqual(parsePermissions({}), {});
    assert.deepEqual(parsePermissions({ history: ['a', 'b/#'] }), { history: ['a', 'b/#'] });
    assert.throws(() => parsePermissions(null), (e: AuthError) => e.code === AuthErrorCode.TokenClaims);
  });
});

describe('TicketStore', () => {
  const identity: Identity = { user: 'alice', expiresAt: NOW + 3_600_000, permissions: null };

  it('issues 32-byte URL-safe tickets, redeemable once', () => {
    const store = new TicketStore({ ttlMs: 30000, now: () => NOW });
    const ticket = store.issue(identity);
    assert.match(ticket, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(store.issue(identity), ticket);
    assert.equal(store.redeem(ticket), identity);
    assert.equal(store.redeem(ticket), null);
    assert.equal(store.redeem('nope'), null);
    assert.equal(store.redeem(undefined as unknown as string), null);
  });

  it('expires tickets after ttlMs', () => {
    let t = NOW;
    const store = new TicketStore({ ttlMs: 30000, now: () => t });
    const a = store.issue(identity);
    const b = store.issue(identity);
    t += 29_999;
    assert.equal(store.redeem(a), identity);
    t += 1;
    assert.equal(store.redeem(b), null);
  });

  it('does not hand out the identity of an expired token', () => {
    let t = NOW;
    const store = new TicketStore({ ttlMs: 30000, now: () => t });
    const ticket = store.issue({ ...identity, expiresAt: NOW + 1000 });
    t += 1000;
    assert.equal(store.redeem(ticket), null);
  });

  it('sweeps expired tickets when issuing', () => {
    let t = NOW;
    const store = new TicketStore({ ttlMs: 1000, now: () => t });
    for (let i = 0; i < 10; i++) store.issue(identity);
    assert.equal(store.size, 10);
    t += 1000;
    store.issue(identity);
    assert.equal(store.size, 1);
  });

  it('is bounded: the oldest ticket is evicted', () => {
    const store = new TicketStore({ ttlMs: 30000, maxSize: 3, now: () => NOW });
    const tickets = [0, 1, 2, 3].map(() => store.issue(identity));
    assert.equal(store.size, 3);
    assert.equal(store.redeem(tickets[0]!), null);
    for (const ticket of tickets.slice(1)) assert.equal(store.redeem(ticket), identity);
    assert.equal(store.size, 0);
  });
});

describe('tokenFromRequest and parseCookie', () => {
  const req = (headers: Record<string, string | string[]>, url = '/rt') => ({ headers, url });

  it('takes a Bearer token (scheme case-insensitive)', () => {
    assert.deepEqual(tokenFromRequest(req({ authorization: 'Bearer abc.def.ghi' }), 'sb_token'), { kind: 'token', value: 'abc.def.ghi' });
    assert.deepEqual(tokenFromRequest(req({ authorization: 'bearer   abc' }), 'sb_token'), { kind: 'token', value: 'abc' });
    assert.equal(tokenFromRequest(req({ authorization: 'Basic dXNlcjpwdw==' }), 'sb_token'), null);
    assert.equal(tokenFromRequest(req({ authorization: 'Bearer' }), 'sb_token'), null);
    assert.equal(tokenFromRequest(req({ authorization: 'Bearer a b' }), 'sb_token'), null);
  });

  it('takes a ticket from the query string', () => {
    assert.deepEqual(tokenFromRequest(req({}, '/rt?ticket=T1'), 'sb_token'), { kind: 'ticket', value: 'T1' });
    assert.deepEqual(tokenFromRequest(req({}, '/rt?x=1&ticket=a%2Db&y'), 'sb_token'), { kind: 'ticket', value: 'a-b' });
    assert.equal(tokenFromRequest(req({}, '/rt?ticket='), 'sb_token'), null);
    assert.equal(tokenFromRequest(req({}, '/rt?token=abc'), 'sb_token'), null);
    assert.equal(tokenFromRequest(req({}, '/rt#ticket=abc'), 'sb_token'), null);
    assert.equal(tokenFromRequest({ headers: {} }, 'sb_token'), null);
  });

  it('takes the cookie', () => {
    assert.deepEqual(tokenFromRequest(req({ cookie: 'theme=dark; sb_token=abc.def' }), 'sb_token'), { kind: 'token', value: 'abc.def' });
    // HTTP/2 may deliver several cookie headers
    assert.deepEqual(tokenFromRequest(req({ cookie: ['a=1', 'sb_token=xyz'] }), 'sb_token'), { kind: 'token', value: 'xyz' });
  });

  it('prefers Authorization, then ticket, then cookie', () => {
    const all = req({ authorization: 'Bearer H', cookie: 'sb_token=C' }, '/rt?ticket=T');
    assert.deepEqual(tokenFromRequest(all, 'sb_token'), { kind: 'token', value: 'H' });
    assert.deepEqual(tokenFromRequest(req({ cookie: 'sb_token=C' }, '/rt?ticket=T'), 'sb_token'), { kind: 'ticket', value: 'T' });
    assert.deepEqual(tokenFromRequest(req({ authorization: 'Basic x', cookie: 'sb_token=C' }), 'sb_token'), { kind: 'token', value: 'C' });
  });

  it('parses cookie edge cases', () => {
    assert.equal(parseCookie(undefined, 'sb'), null);
    assert.equal(parseCookie('', 'sb'), null);
    assert.equal(parseCookie('sb=1', 'sb'), '1');
    assert.equal(parseCookie('  sb  =  1  ', 'sb'), '1');
    assert.equal(parseCookie('a=1;sb=2;c=3', 'sb'), '2');
    assert.equal(parseCookie('xsb=1; sb_x=2; sb=3', 'sb'), '3'); // no prefix/suffix confusion
    assert.equal(parseCookie('SB=1', 'sb'), null); // names are case-sensitive
    assert.equal(parseCookie('sb="quoted"', 'sb'), 'quoted');
    assert.equal(parseCookie('sb="', 'sb'), '"');
    assert.equal(parseCookie('sb=a=b==', 'sb'), 'a=b=='); // split at the first = only
    assert.equal(parseCookie('sb=a%20b', 'sb'), 'a b');
    assert.equal(parseCookie('sb=100%', 'sb'), '100%'); // invalid escape kept
    assert.equal(parseCookie('sb=; sb=2', 'sb'), '2'); // empty skipped
    assert.equal(parseCookie('sb=1; sb=2', 'sb'), '1'); // first wins
    assert.equal(parseCookie('flag; sb=1;', 'sb'), '1'); // pairs without =, trailing ;
    assert.equal(parseCookie('a=1, sb=2', 'sb'), null); // , is not a separator in Cookie
  });
});

describe('isOriginAllowed', () => {
  it('passes requests without Origin', () => {
    assert.equal(isOriginAllowed([], undefined, 'example.com'), true);
  });

  it('by default allows only the same origin', () => {
    assert.equal(isOriginAllowed([], 'https://example.com', 'example.com'), true);
    assert.equal(isOriginAllowed([], 'https://example.com', 'example.com:443'), true);
    assert.equal(isOriginAllowed([], 'http://EXAMPLE.com:8080', 'example.com:8080'), true);
    assert.equal(isOriginAllowed([], 'http://127.0.0.1:8080', '127.0.0.1:8080'), true);
    assert.equal(isOriginAllowed([], 'http://example.com:8081', 'example.com:8080'), false);
    assert.equal(isOriginAllowed([], 'https://evil.example', 'example.com'), false);
    assert.equal(isOriginAllowed([], 'https://example.com', undefined), false);
    assert.equal(isOriginAllowed([], 'null', 'example.com'), false);
    assert.equal(isOriginAllowed([], 'garbage', 'example.com'), false);
  });

  it('allows listed origins and *', () => {
    const list = ['https://app.example.com', 'http://localhost:3000'];
    assert.equal(isOriginAllowed(list, 'https://app.example.com', 'api.example.com'), true);
    assert.equal(isOriginAllowed(list, 'https://APP.example.com:443', 'api.example.com'), true);
    assert.equal(isOriginAllowed(list, 'http://localhost:3000', 'api.example.com'), true);
    assert.equal(isOriginAllowed(list, 'http://localhost:3001', 'api.example.com'), false);
    assert.equal(isOriginAllowed(list, 'http://app.example.com', 'api.example.com'), false);
    assert.equal(isOriginAllowed(['*'], 'https://anyone.example', 'api.example.com'), true);
    assert.equal(isOriginAllowed(['*'], 'null', 'api.example.com'), true);
  });
});

describe('fits the hub', () => {
  it('an Authenticator is a HubAuth and a NamespaceConfig is a NamespaceRules (compile-time)', () => {
    const auth: HubAuth = createAuthenticator(authConfig({ hmacSecret: SECRET }));
    const ns: NamespaceConfig = { prefix: '', history: { size: 0, ttlMs: 0 }, presence: 'off', presenceBatchMs: 0, clientPublish: true, anonymousSubscribe: false, anonymousPublish: false };
    const rules: NamespaceRules = ns;
    assert.equal(auth.can(null, 'subscribe', 'a', rules), false);
  });
});
