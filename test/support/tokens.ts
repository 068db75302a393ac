/**
 * HS256 tokens for the test servers. Free of node:test (child processes
 * import it).
 */
import { SignJWT } from 'jose';

/** HMAC secret of the test servers (≥ 32 bytes, RFC 7518 §3.2). */
export const SECRET = 'switchboard-test-secret-0123456789abcdef';

export interface TokenOptions {
  /** Lifetime in seconds (may be negative for an expired token). Default 3600. */
  ttl?: number;
  channels?: Record<string, string[]>;
  info?: unknown;
  /** Default {@link SECRET}. */
  secret?: string;
}

/** An HS256 JWT for `sub`. */
export function signToken(sub: string, options: TokenOptions = {}): Promise<string> {
  const claims: Record<string, unknown> = {};
  if (options.channels !== undefined) claims.channels = options.channels;
  if (options.info !== undefined) claims.info = options.info;
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + (options.ttl ?? 3600))
    .sign(new TextEncoder().encode(options.secret ?? SECRET));
}
