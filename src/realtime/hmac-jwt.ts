/**
 * The fast path of HS256/HS384/HS512 token verification: `node:crypto`'s
 * synchronous HMAC (`createHmac` + `timingSafeEqual`) instead of jose's
 * WebCrypto route, which imports a `CryptoKey` and runs the MAC as an async
 * job for every token (about a fifth of a `serve` handshake's CPU in a
 * profile of the connection burst, docs/benchmarks.md).
 *
 * The contract is one-sided: {@link verifyHmacJwt} returns the claims only
 * when jose's `jwtVerify` would accept the token with the same options
 * (every check here is at least as strict as jose's), and `null` for
 * anything else: a bad signature, an unusual header (`crit`, `b64`, `jku`…),
 * a failed claim, a malformed part. The caller then asks jose, which gives
 * the exact error (so the refusals, their codes and messages do not change),
 * and an accepted token costs one HMAC.
 *
 * Checks, as jose 6 does them (`lib/jws_verify.js`, `lib/jwt_claims_set.js`):
 * - RFC 7515 §7.1 compact form: three base64url parts (no padding); the
 *   header a JSON object of `alg` (one of `algorithms`), and optionally `typ`
 *   and `kid` as strings — nothing else;
 * - RFC 7515 §5.2 step 8: the MAC over `header.payload` with the secret,
 *   compared in constant time;
 * - RFC 7519 §7.2: the claims a UTF-8 JSON object; `exp` required
 *   (RFC 7519 §4.1.4, a number later than now − tolerance); `nbf` (§4.1.5,
 *   when present a number not after now + tolerance); `iat` a number when
 *   present; `iss` equal to `issuer` and `aud` (a string or an array of
 *   strings) holding `audience`, when those are configured.
 *
 * No I/O; `node:crypto` only.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { isUtf8 } from 'node:buffer';

/** What {@link verifyHmacJwt} checks against. */
export interface HmacVerifyOptions {
  /** The shared secret (UTF-8 bytes of `auth.hmacSecret`). */
  secret: Uint8Array;
  /** JWS algorithms accepted (HS* among them). */
  algorithms: readonly string[];
  issuer?: string;
  audience?: string;
  /** Allowed clock skew, seconds. */
  clockTolerance: number;
}

const HASH: Readonly<Record<string, string>> = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' };
/** base64url without padding (RFC 7515 §2). */
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * The claims of a token signed with the shared secret, or `null` when the
 * fast path does not accept it (then jose decides; see the module comment).
 * Never throws. `nowMs`: the current time, ms since the epoch.
 */
export function verifyHmacJwt(token: string, options: HmacVerifyOptions, nowMs: number): Record<string, unknown> | null {
  const dot1 = token.indexOf('.');
  if (dot1 <= 0) return null;
  const dot2 = token.indexOf('.', dot1 + 1);
  if (dot2 <= dot1 + 1 || token.indexOf('.', dot2 + 1) !== -1 || dot2 === token.length - 1) return null;
  const headerPart = token.slice(0, dot1);
  const payloadPart = token.slice(dot1 + 1, dot2);
  const signaturePart = token.slice(dot2 + 1);
  if (!BASE64URL.test(headerPart) || !BASE64URL.test(payloadPart) || !BASE64URL.test(signaturePart)) return null;

  const header = parseJsonObject(Buffer.from(headerPart, 'base64url'));
  if (header === null) return null;
  let alg: unknown;
  for (const name in header) {
    const value = header[name];
    if (name === 'alg') alg = value;
    else if ((name !== 'typ' && name !== 'kid') || typeof value !== 'string') return null;
  }
  if (typeof alg !== 'string' || !options.algorithms.includes(alg)) return null;
  const hash = HASH[alg];
  if (hash === undefined) return null;

  const mac = createHmac(hash, options.secret).update(token.slice(0, dot2)).digest();
  const signature = Buffer.from(signaturePart, 'base64url');
  if (!equalInConstantTime(signature, mac)) return null;
  // The canonical encoding only (jose's decoder may differ on stray trailing bits); the MAC
  // matched already, so this comparison reveals nothing about the secret.
  if (signaturePart !== mac.toString('base64url')) return null;

  const claims = parseJsonObject(Buffer.from(payloadPart, 'base64url'));
  if (claims === null) return null;
  const now = Math.floor(nowMs / 1000);
  const tolerance = options.clockTolerance;
  const { exp, nbf, iat } = claims;
  if (typeof exp !== 'number' || exp <= now - tolerance) return null;
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > now + tolerance)) return null;
  if (iat !== undefined && typeof iat !== 'number') return null;
  if (options.issuer !== undefined && claims['iss'] !== options.issuer) return null;
  if (options.audience !== undefined) {
    const aud = claims['aud'];
    if (!(aud === options.audience || (Array.isArray(aud) && aud.includes(options.audience)))) return null;
  }
  return claims;
}

/** A JSON object from UTF-8 bytes (strict: invalid UTF-8, arrays and other values give null). */
function parseJsonObject(bytes: Buffer): Record<string, unknown> | null {
  if (!isUtf8(bytes)) return null;
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    return null;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/**
 * Whether a secret (or a MAC of one) given by a peer is the expected one, without the time
 * taken telling how much of it matched. A length that differs answers at once: lengths here
 * are public (a MAC's size, a key's configured length).
 */
export function equalInConstantTime(given: Buffer, expected: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(given, expected);
}
