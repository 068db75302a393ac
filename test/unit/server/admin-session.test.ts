/**
 * The admin session cookie (src/server/admin-session.ts) on a fake clock:
 * expiry to the millisecond, tampering with each part, revocation, the key
 * shared by servers with the same secrets (a cluster) and changed with the
 * password, the CSRF token tied to its session, credentials compared whole.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AdminSessions } from '../../../src/server/admin-session.js';

const SECRETS = { password: 'correct horse battery', apiKey: 'an-api-key-of-16+chars' };

describe('AdminSessions', () => {
  it('accepts its cookie until the expiry, not a millisecond after', () => {
    let now = 1_000_000;
    const sessions = new AdminSessions(SECRETS, 60_000, () => now);
    const { value, session } = sessions.issue();
    assert.equal(session.expiresAt, 1_060_000);
    assert.deepEqual(sessions.verify(value), session);
    now = 1_059_999;
    assert.deepEqual(sessions.verify(value), session);
    now = 1_060_000;
    assert.equal(sessions.verify(value), null);
  });

  it('refuses a cookie with any part changed, or malformed', () => {
    const sessions = new AdminSessions(SECRETS, 60_000);
    const { value } = sessions.issue();
    const [exp, nonce, mac] = value.split('.') as [string, string, string];
    const later = (parseInt(exp, 36) + 1).toString(36);
    for (const bad of [`${later}.${nonce}.${mac}`, `${exp}.${nonce}x.${mac}`, `${exp}.${nonce}.${mac.slice(0, -1)}`, `${exp}.${nonce}`, `${value}.x`, '', '..', null, undefined, 'x'.repeat(500)]) {
      assert.equal(sessions.verify(bad), null, String(bad));
    }
  });

  it('shares the key between servers with the same secrets, and changes it with the password', () => {
    const a = new AdminSessions(SECRETS, 60_000);
    const b = new AdminSessions({ ...SECRETS }, 60_000);
    const changed = new AdminSessions({ ...SECRETS, password: 'another admin password' }, 60_000);
    const { value, session } = a.issue();
    assert.deepEqual(b.verify(value), session);
    assert.equal(b.csrfToken(session), a.csrfToken(session));
    assert.equal(changed.verify(value), null);
  });

  it('revokes a session at logout', () => {
    const sessions = new AdminSessions(SECRETS, 60_000);
    const one = sessions.issue();
    const two = sessions.issue();
    sessions.revoke(one.session);
    assert.equal(sessions.verify(one.value), null);
    assert.deepEqual(sessions.verify(two.value), two.session);
  });

  it('ties the CSRF token to its session', () => {
    const sessions = new AdminSessions(SECRETS, 60_000);
    const one = sessions.issue().session;
    const two = sessions.issue().session;
    assert.equal(sessions.checkCsrf(one, sessions.csrfToken(one)), true);
    assert.equal(sessions.checkCsrf(one, sessions.csrfToken(two)), false);
    assert.equal(sessions.checkCsrf(one, undefined), false);
    assert.equal(sessions.checkCsrf(one, ''), false);
  });

  it('logs in with the password or the API key, whole', () => {
    const sessions = new AdminSessions(SECRETS, 60_000);
    assert.equal(sessions.checkCredential(SECRETS.password), true);
    assert.equal(sessions.checkCredential(SECRETS.apiKey), true);
    for (const wrong of ['', SECRETS.password.slice(0, -1), `${SECRETS.password} `, SECRETS.password.toUpperCase()]) {
      assert.equal(sessions.checkCredential(wrong), false, wrong);
    }
    const keyOnly = new AdminSessions({ apiKey: SECRETS.apiKey }, 60_000);
    assert.equal(keyOnly.checkCredential(SECRETS.apiKey), true);
    assert.equal(keyOnly.checkCredential(''), false);
    assert.throws(() => new AdminSessions({}, 60_000), /needs admin\.password or apiKey/);
  });
});
