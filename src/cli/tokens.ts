/**
 * `switchboard token`: sign a token with the configured HMAC secret, and
 * check a token against the configuration, in words. Both go through the
 * server's own verifier ({@link createAuthenticator}), so what they say is
 * what a connection would get.
 */
import { decodeJwt, decodeProtectedHeader, SignJWT, type JWTPayload, type ProtectedHeaderParameters } from 'jose';
import {
  AuthError,
  AuthErrorCode,
  CLOCK_TOLERANCE_S,
  createAuthenticator,
  loadPublicKey,
  parsePermissions,
  type AuthConfig,
  type ChannelPermissions,
  type Identity,
} from '../realtime/auth.js';

/** How to give a server a key it can sign with: the end of the "cannot sign" answers. */
export const HOW_TO_SET_A_KEY =
  'set auth.hmacSecret in the config file or SWITCHBOARD_JWT_SECRET (at least 32 bytes), or write a config file with one: switchboard init';

/** The lifetime of a token from `--ttl`: `90` (seconds), `45s`, `30m`, `1h`, `7d`. In seconds. */
export function parseTtl(text: string): number {
  const m = /^([0-9]+)([smhd]?)$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'] : NaN;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) throw new Error(`invalid --ttl '${text}' (e.g. 90s, 30m, 1h, 7d)`);
  return seconds;
}

/**
 * The `channels` claim from `--channels` values: each is the claim as JSON
 * (`{"subscribe":["chat/#"]}`) or `ACTION=LIST` (`subscribe=chat/#,news/+`);
 * several merge. Checked with the server's own rules.
 */
export function parseChannelsOption(values: readonly string[]): ChannelPermissions {
  const claim: Record<string, string[]> = {};
  for (const value of values) {
    let part: Record<string, unknown>;
    if (value.trim().startsWith('{')) {
      try {
        part = JSON.parse(value) as Record<string, unknown>;
      } catch (err) {
        throw new Error(`--channels: not JSON (${(err as Error).message})`);
      }
    } else {
      const eq = value.indexOf('=');
      if (eq <= 0) throw new Error(`--channels '${value}': expected ACTION=CHANNELS (subscribe=chat/#,news/+) or the claim as JSON`);
      part = { [value.slice(0, eq).trim()]: value.slice(eq + 1).split(',').map((s) => s.trim()).filter((s) => s !== '') };
    }
    const checked = parseChannelsClaim(part);
    for (const [action, list] of Object.entries(checked)) claim[action] = [...(claim[action] ?? []), ...(list as string[])];
  }
  return claim;
}

function parseChannelsClaim(claim: unknown): ChannelPermissions {
  try {
    return parsePermissions(claim) ?? {};
  } catch (err) {
    throw new Error(`--channels: ${(err as Error).message}`);
  }
}

export interface SignOptions {
  user: string;
  /** Lifetime in seconds. */
  ttlS: number;
  channels?: ChannelPermissions;
  info?: unknown;
}

/**
 * A token for `options.user`, signed HS256 with `auth.hmacSecret`, with the
 * configured `iss`/`aud`, and verified by the server's verifier before it
 * is returned. Throws an Error saying why when this configuration cannot
 * sign (no secret: only a public key or a JWKS) or would refuse the token.
 */
export async function signToken(auth: AuthConfig, options: SignOptions): Promise<{ token: string; identity: Identity }> {
  if (auth.hmacSecret === undefined) throw new Error(cannotSign(auth));
  const claims: JWTPayload = {};
  if (options.info !== undefined) claims['info'] = options.info;
  if (options.channels !== undefined) claims['channels'] = options.channels;
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(options.user)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + options.ttlS);
  if (auth.issuer !== undefined) jwt = jwt.setIssuer(auth.issuer);
  if (auth.audience !== undefined) jwt = jwt.setAudience(auth.audience);
  const token = await jwt.sign(new TextEncoder().encode(auth.hmacSecret));
  try {
    return { token, identity: await createAuthenticator(auth).verify(token) };
  } catch (err) {
    throw new Error(`the server would refuse this token: ${(err as Error).message}`);
  }
}

/** Why this configuration cannot sign (it has no HMAC secret). */
function cannotSign(auth: AuthConfig): string {
  if (auth.publicKey !== undefined || auth.jwksFile !== undefined) {
    let what = 'a JWKS (auth.jwksFile)';
    if (auth.publicKey !== undefined) {
      let alg = 'RS256/ES256/ES384/EdDSA';
      try {
        alg = loadPublicKey(auth.publicKey).alg;
      } catch {
        // the configuration was validated; keep the generic name
      }
      what = `a public key (auth.publicKey, ${alg})`;
    }
    return (
      `cannot sign: this configuration verifies tokens with ${what}, and a public key cannot sign. ` +
      'Sign them in your backend with the matching private key (README, "Your backend issues tokens"); ' +
      'switchboard token --check TOKEN tells whether this server accepts one.'
    );
  }
  return `cannot sign: no key configured (anonymous connections only): ${HOW_TO_SET_A_KEY}`;
}

/** The verdict of {@link checkToken}: lines to print, and whether the server accepts the token. */
export interface CheckResult {
  valid: boolean;
  lines: string[];
}

/**
 * Verify `token` as the server would (same verifier, same clock) and say
 * why in words: on success the user, the expiry, the permissions and the
 * `info`; on refusal the server's reason, what the token holds that caused
 * it, and the close code a connection would get.
 */
export async function checkToken(auth: AuthConfig, token: string, now: number = Date.now()): Promise<CheckResult> {
  const authenticator = createAuthenticator(auth, { now: () => now });
  let header: ProtectedHeaderParameters | null = null;
  let payload: JWTPayload | null = null;
  try {
    header = decodeProtectedHeader(token);
    payload = decodeJwt(token);
  } catch {
    // not a JWT: the verifier says so
  }
  try {
    const identity = await authenticator.verify(token);
    const lines = [
      'valid: the server accepts this token',
      `  user: ${identity.user}`,
      `  expires: ${when(identity.expiresAt, now)}`,
      `  permissions: ${describePermissions(identity.permissions)}`,
    ];
    if (identity.info !== undefined) lines.push(`  info: ${JSON.stringify(identity.info)}`);
    if (header?.alg) lines.push(`  algorithm: ${header.alg}${header.kid !== undefined ? ` (kid ${JSON.stringify(header.kid)})` : ''}`);
    return { valid: true, lines };
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    const lines = [`refused: ${err.message}`];
    for (const detail of explain(err, auth, header, payload, now)) lines.push(`  ${detail}`);
    lines.push(
      `  the server answers it with HTTP 401 at the handshake, or close code ${err.closeCode} after an auth message` +
        (err.closeCode === 4002 ? ' (get a new token and reconnect)' : ' (do not retry with this token)'),
    );
    return { valid: false, lines };
  }
}

/** What in the token (and the configuration) made the server say `err`. */
function explain(err: AuthError, auth: AuthConfig, header: ProtectedHeaderParameters | null, payload: JWTPayload | null, now: number): string[] {
  const claims = payload ?? {};
  const message = err.message;
  if (err.code === AuthErrorCode.TokenExpired && typeof claims.exp === 'number') {
    return [`it expired ${when(claims.exp * 1000, now)} (the server allows ${CLOCK_TOLERANCE_S} s of clock skew)`];
  }
  if (err.code === AuthErrorCode.NotConfigured) {
    return [`this configuration has no key, so every token is refused: ${HOW_TO_SET_A_KEY}`];
  }
  if (message === 'invalid token signature') {
    return [`the signature does not match ${keysOf(auth)}: it was signed with another key`];
  }
  if (message === 'token algorithm not allowed') {
    return [`the token is signed with ${header?.alg ?? 'no algorithm'}; this configuration accepts ${acceptedAlgorithms(auth)}`];
  }
  if (message === 'no key for this token') {
    return [`no key in auth.jwksFile matches the token's kid ${header?.kid === undefined ? '(it has none)' : JSON.stringify(header.kid)} and alg ${header?.alg ?? '?'}`];
  }
  if (message === 'malformed token' || message === 'unsupported token') {
    return ['not a JWT the server can read: three base64url parts (header.payload.signature) separated by dots'];
  }
  if (message === 'token too long') return ['the server refuses tokens longer than 8192 characters'];
  if (message === 'token issuer mismatch' || message === 'token has no iss claim') {
    return [`the token's iss is ${show(claims.iss)}; the configuration requires ${show(auth.issuer)} (auth.issuer)`];
  }
  if (message === 'token audience mismatch' || message === 'token has no aud claim') {
    return [`the token's aud is ${show(claims.aud)}; the configuration requires ${show(auth.audience)} (auth.audience)`];
  }
  if (message === 'token has no sub claim') {
    return [`sub must be the user id, a non-empty string; the token's is ${show(claims.sub)}`];
  }
  if (message === 'token has no exp claim') return ['exp (expiry, seconds since the epoch) is required'];
  if (message === 'token not yet valid' && typeof claims.nbf === 'number') return [`its nbf says it is valid from ${when(claims.nbf * 1000, now)}`];
  if (message.startsWith('invalid channels claim')) {
    return [
      `the token's channels claim is ${JSON.stringify(claims['channels'])?.slice(0, 200)}`,
      'channels is an object with only subscribe, publish, presence and history, each a list of channel names or patterns',
    ];
  }
  if (message.startsWith('the info claim')) return ['info is shown to other clients in presence and publications: it must be plain JSON data'];
  return [];
}

function keysOf(auth: AuthConfig): string {
  const keys = [
    auth.hmacSecret !== undefined ? 'auth.hmacSecret' : null,
    auth.publicKey !== undefined ? 'auth.publicKey' : null,
    auth.jwksFile !== undefined ? 'auth.jwksFile' : null,
  ].filter((k) => k !== null);
  return `this configuration's key${keys.length > 1 ? 's' : ''} (${keys.join(', ')})`;
}

function acceptedAlgorithms(auth: AuthConfig): string {
  const algs: string[] = [];
  if (auth.hmacSecret !== undefined) algs.push('HS256/HS384/HS512 (auth.hmacSecret)');
  if (auth.publicKey !== undefined) {
    try {
      algs.push(`${loadPublicKey(auth.publicKey).alg} (auth.publicKey)`);
    } catch {
      algs.push('the algorithm of auth.publicKey');
    }
  }
  if (auth.jwksFile !== undefined) algs.push('RS256/ES256/ES384/EdDSA (auth.jwksFile)');
  return algs.join(', ') || 'none';
}

function show(value: unknown): string {
  return value === undefined ? 'missing' : JSON.stringify(value);
}

/** An instant and how far it is from now: `2026-01-01T10:00:00.000Z (in 59 min)`, `... (3 h ago)`. */
function when(ms: number, now: number): string {
  const d = Math.round((ms - now) / 1000);
  const abs = Math.abs(d);
  const span = abs < 120 ? `${abs} s` : abs < 7200 ? `${Math.round(abs / 60)} min` : abs < 172_800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86_400)} days`;
  return `${new Date(ms).toISOString()} (${d >= 0 ? `in ${span}` : `${span} ago`})`;
}

function describePermissions(p: ChannelPermissions | null): string {
  if (p === null) return 'no channels claim: the namespaces\' rules alone decide';
  const parts = (['subscribe', 'publish', 'presence', 'history'] as const)
    .filter((a) => p[a] !== undefined)
    .map((a) => `${a} ${p[a]!.length === 0 ? '(none)' : p[a]!.join(', ')}`);
  return parts.length === 0 ? 'an empty channels claim: nothing on any channel' : parts.join('; ');
}
