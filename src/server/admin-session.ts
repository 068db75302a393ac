/**
 * The admin UI's login and session cookie (admin.ts serves the routes).
 *
 * A session is stateless: the cookie holds `<expiry>.<nonce>.<mac>`, where
 * `expiry` is the end of the session in ms since the epoch (base 36), `nonce`
 * 16 random bytes, and `mac` the HMAC-SHA256 of `<expiry>.<nonce>` under the
 * session key. The key is derived with scrypt from the configured secrets
 * (`admin.password`, `apiKey`, `auth.hmacSecret`), so:
 * - every node of a cluster with the same configuration accepts the cookie
 *   (behind a load balancer without sticky sessions too);
 * - changing the password (or the API key) ends every session;
 * - a stolen cookie does not give the password away cheaply (scrypt, not a
 *   bare hash, stands between the MAC and the secrets).
 * Logging out revokes the nonce on this node until the cookie would have
 * expired anyway (other nodes only see the cookie gone from the browser).
 *
 * The CSRF token of a session is the HMAC of `csrf.<nonce>`: tied to the
 * session, never stored.
 */
import { createHash, createHmac, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { equalInConstantTime } from '../realtime/hmac-jwt.js';

/** Cookie name of the admin session. */
export const ADMIN_COOKIE = 'sb_admin';

export interface AdminSession {
  /** The cookie's nonce (revoked at logout). */
  nonce: string;
  /** End of the session, ms since the epoch. */
  expiresAt: number;
}

export interface AdminSecrets {
  password?: string;
  apiKey?: string;
  hmacSecret?: string;
}

/** Revoked nonces kept at most (each until its expiry); beyond, the oldest go first. */
const MAX_REVOKED = 10_000;

export class AdminSessions {
  private readonly key: Buffer;
  /** The credentials that log in, as SHA-256 digests (compared in constant time, whatever their lengths). */
  private readonly credentials: Buffer[];
  /** nonce → expiry of the sessions logged out on this node. */
  private readonly revoked = new Map<string, number>();

  constructor(
    secrets: AdminSecrets,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    const material = [secrets.password ?? '', secrets.apiKey ?? '', secrets.hmacSecret ?? ''].join('\0');
    // N = 2^14 (16 MiB, tens of ms, once at start).
    this.key = scryptSync(material, 'switchboard admin session v1', 32, { N: 1 << 14, r: 8, p: 1 });
    this.credentials = [secrets.password, secrets.apiKey].filter((c): c is string => c !== undefined && c !== '').map(digest);
    if (this.credentials.length === 0) throw new TypeError('the admin UI needs admin.password or apiKey');
  }

  /** Whether `given` is the password or the API key. Compares against both, in constant time. */
  checkCredential(given: string): boolean {
    const d = digest(given);
    let ok = false;
    for (const c of this.credentials) ok = timingSafeEqual(d, c) || ok;
    return ok;
  }

  /** A new session: the cookie value and its session. */
  issue(): { value: string; session: AdminSession } {
    const expiresAt = this.now() + this.ttlMs;
    const nonce = randomBytes(16).toString('base64url');
    const body = `${expiresAt.toString(36)}.${nonce}`;
    return { value: `${body}.${this.mac(body)}`, session: { nonce, expiresAt } };
  }

  /** The session of a cookie value, or null (malformed, tampered with, expired, logged out). */
  verify(value: string | null | undefined): AdminSession | null {
    if (value === undefined || value === null || value.length > 200) return null;
    const parts = value.split('.');
    if (parts.length !== 3) return null;
    const [exp, nonce, mac] = parts as [string, string, string];
    const expected = Buffer.from(this.mac(`${exp}.${nonce}`));
    const given = Buffer.from(mac);
    if (!equalInConstantTime(given, expected)) return null;
    const expiresAt = parseInt(exp, 36);
    if (!Number.isSafeInteger(expiresAt) || expiresAt <= this.now()) return null;
    if (this.revoked.has(nonce)) return null;
    return { nonce, expiresAt };
  }

  /** The CSRF token of a session (sent back in `X-CSRF-Token` with every action). */
  csrfToken(session: AdminSession): string {
    return this.mac(`csrf.${session.nonce}`);
  }

  checkCsrf(session: AdminSession, token: string | undefined): boolean {
    if (token === undefined) return false;
    const expected = Buffer.from(this.csrfToken(session));
    const given = Buffer.from(token);
    return equalInConstantTime(given, expected);
  }

  /** Log out: the session's cookie is refused from now on (on this node). */
  revoke(session: AdminSession): void {
    const t = this.now();
    for (const [nonce, exp] of this.revoked) if (exp <= t) this.revoked.delete(nonce);
    while (this.revoked.size >= MAX_REVOKED) this.revoked.delete(this.revoked.keys().next().value!);
    this.revoked.set(session.nonce, session.expiresAt);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
