/**
 * Authentication and authorization of realtime connections.
 *
 * - {@link createAuthenticator}: verifies JWTs (HS256/384/512 with a shared
 *   secret, RS256/ES256/ES384/EdDSA with a PEM public key or a JWKS file) and
 *   turns them into an {@link Identity}.
 * - {@link can}: may this identity subscribe/publish/... on this channel, given
 *   the channel's namespace rules? {@link patternCovers} decides whether a
 *   permission pattern covers a requested pattern subscription.
 * - {@link TicketStore}: one-time tickets for browsers, which cannot set an
 *   `Authorization` header on a WebSocket handshake and should not put a
 *   long-lived token in a URL (it ends up in access logs).
 * - {@link tokenFromRequest}: the credential of an HTTP/WebSocket handshake.
 * (The Origin check against cross-site WebSocket hijacking is the
 * transport's: `transport/origin.ts`, one policy for WebSocketServer and the
 * realtime server.)
 *
 * Errors are {@link AuthError}s with a stable `code` and the close code the
 * connection ends with.
 *
 * This module sits in `realtime/`: it imports neither `transport/` nor
 * `server/`; the server's config embeds {@link AuthConfig} from here.
 */
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createLocalJWKSet,
  importSPKI,
  jwtVerify,
  type CryptoKey,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { isPattern, isValidChannel, isValidPattern, matchesPattern } from '../wire/channel.js';
import { RealtimeCloseCode } from '../wire/messages.js';
import { dataProblem, DEFAULT_MAX_DATA_DEPTH, type DataLimits } from '../wire/data.js';
import { verifyHmacJwt, type HmacVerifyOptions } from './hmac-jwt.js';

// ---- configuration -----------------------------------------------------------

/** How connections authenticate. Part of the server's `RealtimeConfig`. */
export interface AuthConfig {
  /**
   * Connections may work without a token (their identity is `null`; the
   * namespace's `anonymous*` rules apply). Default `false`.
   */
  anonymous: boolean;
  /**
   * Shared secret for HS256/HS384/HS512 tokens, at least 32 bytes of UTF-8
   * (RFC 7518 §3.2: a key as long as the hash output). No default.
   */
  hmacSecret?: string;
  /**
   * Public key for RS256 (RSA), ES256 (EC P-256), ES384 (EC P-384) or EdDSA
   * (Ed25519) tokens: PEM text (`-----BEGIN PUBLIC KEY-----`, SPKI) or the
   * path of a file holding it. The algorithm is fixed by the key type. No default.
   */
  publicKey?: string;
  /**
   * Path of a JSON Web Key Set file (`{"keys": [...]}`) with public keys;
   * tokens pick a key by their `kid` header. Asymmetric algorithms only.
   * Read once at start. No default.
   */
  jwksFile?: string;
  /** Required `iss` claim, when set. No default (not checked). */
  issuer?: string;
  /** Required `aud` claim (one of the token's audiences), when set. No default (not checked). */
  audience?: string;
  /** Time a connection has to send its `auth` message, in ms. Default 5000. */
  authTimeoutMs: number;
  /**
   * The server pushes `refresh` this long before the token expires, in ms;
   * a client that has not sent a new token by `exp` is closed with 4002.
   * Default 10000.
   */
  refreshGraceMs: number;
  /** Cookie that carries a token at the handshake. Default `'sb_token'`. */
  cookieName: string;
  /** Lifetime of a one-time connection ticket, in ms. Default 30000. */
  ticketTtlMs: number;
}

// ---- identities and permissions ----------------------------------------------

/**
 * What a token may do, from its `channels` claim. Each list holds channel
 * names and patterns (`+` one segment, `#` the rest; see channel.ts).
 */
export interface ChannelPermissions {
  /** Channels and patterns it may subscribe to (implies presence and history there). */
  subscribe?: string[];
  /** Channels it may publish to. */
  publish?: string[];
  /** Channels whose presence it may query (without subscribing). */
  presence?: string[];
  /** Channels whose history it may read (without subscribing). */
  history?: string[];
}

/** Who a verified token says the client is. */
export interface Identity {
  /** User id: the token's `sub` claim (non-empty). */
  user: string;
  /** Application data: the token's `info` claim, shown to others in presence. */
  info?: unknown;
  /** When the token expires, in ms since the epoch (`exp` × 1000). */
  expiresAt: number;
  /** From the `channels` claim; `null` when the token has none (then the namespace rules alone decide). */
  permissions: ChannelPermissions | null;
  /**
   * The TLS client certificate the connection presented in its handshake
   * (`tls.clientCertificates: request|require`), on the identity the
   * handshake established (token, ticket, cookie or the server's
   * `authenticateClientCertificate` hook). Not on an identity from a later
   * `auth` message.
   */
  clientCertificate?: ClientCertificate;
}

/** A TLS client certificate, as the server saw it (strings as Node's `X509Certificate` gives them). */
export interface ClientCertificate {
  /** `C=.., O=.., CN=..` (the distinguished name, comma separated). */
  subject: string;
  /** The subject's CN, when it has one. */
  commonName?: string;
  /** `DNS:a.example, IP Address:10.0.0.1, email:...`. */
  subjectAltName?: string;
  issuer: string;
  /** Hex, upper case. */
  serialNumber: string;
  /** SHA-256 of the DER, `AB:CD:...`. */
  fingerprint256: string;
  /** notAfter, ISO 8601. */
  validTo: string;
  /** Whether it verified against `tls.ca` (always true with `require`; a `request`ed one may not). */
  authorized: boolean;
  /** Why it did not verify (an OpenSSL code such as `SELF_SIGNED_CERT_IN_CHAIN`), when `authorized` is false. */
  authorizationError?: string;
}

/** The actions that are authorized per channel. */
export type Action = 'subscribe' | 'publish' | 'presence' | 'history';

const ACTIONS: readonly Action[] = ['subscribe', 'publish', 'presence', 'history'];

/** The parts of a namespace's configuration that {@link can} looks at. */
export interface NamespacePolicy {
  /** Clients may publish (else only the server). */
  clientPublish: boolean;
  /** Anonymous connections may subscribe (and read presence and history). */
  anonymousSubscribe: boolean;
  /** Anonymous connections may publish (also needs `clientPublish`). Default false. */
  anonymousPublish?: boolean;
}

/** What {@link can} needs of an identity: `permissions` missing means no `channels` claim. */
export interface AuthSubject {
  user: string;
  permissions?: ChannelPermissions | null;
}

// ---- errors ------------------------------------------------------------------

/** Stable codes of {@link AuthError}. */
export const AuthErrorCode = {
  /** The token's `exp` has passed (beyond the clock tolerance). Close 4002: get a new token and reconnect. */
  TokenExpired: 'RT_ERR_TOKEN_EXPIRED',
  /** Not a JWT, bad signature, algorithm not allowed, no key for its `kid`, too long. Close 4500. */
  TokenInvalid: 'RT_ERR_TOKEN_INVALID',
  /** Signature fine but a claim is missing or wrong: `exp`, `sub`, `iss`, `aud`, `nbf`, `channels`. Close 4500. */
  TokenClaims: 'RT_ERR_TOKEN_CLAIMS',
  /** Unknown, used or expired ticket. Close 4500. */
  TicketInvalid: 'RT_ERR_TICKET_INVALID',
  /** No way to verify tokens is configured (anonymous-only server). Close 4500. */
  NotConfigured: 'RT_ERR_AUTH_NOT_CONFIGURED',
} as const;
export type AuthErrorCode = (typeof AuthErrorCode)[keyof typeof AuthErrorCode];

/**
 * Authentication failed. `closeCode` is what the connection is closed with
 * (4002 TokenExpired: the client may reconnect with a fresh token; 4500
 * Unauthorized: it should not retry with the same credentials), `status` the
 * HTTP status for a failed handshake. Messages are short (well under the 123
 * bytes a close reason may have) and name no key material.
 */
export class AuthError extends Error {
  override readonly name = 'AuthError';
  readonly status = 401;
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    readonly closeCode: RealtimeCloseCode = code === AuthErrorCode.TokenExpired ? RealtimeCloseCode.TokenExpired : RealtimeCloseCode.Unauthorized,
  ) {
    super(message);
  }
}

// ---- token verification ------------------------------------------------------

/** Verifies tokens; shaped to be the hub's `auth` option as is. */
export interface Authenticator {
  /** Verify a JWT and return its identity; rejects with an {@link AuthError}. */
  verify(token: string): Promise<Identity>;
  /** {@link can}, for the hub. */
  can(identity: AuthSubject | null, action: Action, channel: string, namespace: NamespacePolicy): boolean;
  readonly anonymous: boolean;
  readonly authTimeoutMs: number;
  readonly refreshGraceMs: number;
  readonly cookieName: string;
  readonly ticketTtlMs: number;
}

export interface AuthenticatorOptions {
  /** Clock for `exp`/`nbf` checks, ms since the epoch. Default `Date.now`. */
  now?: () => number;
}

/** Allowed clock skew between the token issuer and us, in seconds. */
export const CLOCK_TOLERANCE_S = 5;
/** Longer tokens are rejected before parsing, in characters. */
export const MAX_TOKEN_LENGTH = 8192;
/** A token's `info` claim: application data, within a token's length. */
const INFO_LIMITS: DataLimits = { maxDepth: DEFAULT_MAX_DATA_DEPTH, maxNodes: MAX_TOKEN_LENGTH };

const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
/** Algorithms accepted with a JWKS (public keys only: never `none`, never HS*). */
const JWKS_ALGORITHMS = ['RS256', 'ES256', 'ES384', 'EdDSA'];
/** Minimum HMAC secret length in bytes (RFC 7518 §3.2). */
export const MIN_HMAC_SECRET_BYTES = 32;

/**
 * The JWS algorithm that goes with a public key, from its type: RSA → RS256,
 * EC P-256 → ES256, EC P-384 → ES384, Ed25519 → EdDSA. Throws for other keys.
 */
export function algorithmForKey(key: KeyObject): string {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256';
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1') return 'ES256';
      if (curve === 'secp384r1') return 'ES384';
      throw new Error(`unsupported EC curve ${curve ?? '?'} (use P-256 or P-384)`);
    }
    case 'ed25519':
      return 'EdDSA';
    default:
      throw new Error(`unsupported key type ${key.asymmetricKeyType ?? '?'} (use RSA, EC P-256/P-384 or Ed25519)`);
  }
}

/** A parsed public key: the PEM text, its key object and its algorithm. */
export interface PublicKeyInfo {
  pem: string;
  key: KeyObject;
  alg: string;
}

/**
 * Read `auth.publicKey`: PEM text when it contains `-----BEGIN`, else a file
 * path. Only SPKI public keys (`-----BEGIN PUBLIC KEY-----`); a private key
 * is refused so that it does not end up configured where a public one belongs.
 * Throws an Error with a one-line message.
 */
export function loadPublicKey(value: string): PublicKeyInfo {
  let pem = value;
  if (!value.includes('-----BEGIN')) {
    try {
      pem = readFileSync(value, 'utf8');
    } catch (err) {
      throw new Error(`cannot read file ${JSON.stringify(value)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) throw new Error('is a private key: configure the public key');
  if (!pem.includes('-----BEGIN PUBLIC KEY-----')) throw new Error('expected a PEM public key (-----BEGIN PUBLIC KEY-----)');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new Error('not a valid PEM public key');
  }
  return { pem, key, alg: algorithmForKey(key) };
}

/**
 * Read and check a JWKS file: JSON with a non-empty `keys` array of objects
 * with a `kty`, public keys only (no `d`, no symmetric `oct` keys). Throws an
 * Error with a one-line message.
 */
export function loadJwks(path: string): JSONWebKeySet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read file ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let jwks: unknown;
  try {
    jwks = JSON.parse(text);
  } catch {
    throw new Error(`${JSON.stringify(path)} is not JSON`);
  }
  const keys = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new Error(`${JSON.stringify(path)} has no "keys" array`);
  keys.forEach((k: unknown, i) => {
    if (k === null || typeof k !== 'object' || typeof (k as { kty?: unknown }).kty !== 'string') {
      throw new Error(`key ${i} in ${JSON.stringify(path)} has no "kty"`);
    }
    if ((k as { kty: string }).kty === 'oct') throw new Error(`key ${i} in ${JSON.stringify(path)} is symmetric (oct): use hmacSecret`);
    if ('d' in (k as object)) throw new Error(`key ${i} in ${JSON.stringify(path)} is a private key`);
  });
  return jwks as JSONWebKeySet;
}

/**
 * An {@link Authenticator} for these settings. Keys are read and checked
 * here, synchronously: a bad key throws now, not at the first connection.
 *
 * Key selection per token, by its header's `alg` (the algorithm list is
 * pinned, so `none` and HS* against a public key are refused before any key
 * is touched):
 * - HS256/384/512 → `hmacSecret` (only when configured);
 * - an asymmetric alg with a `kid` and a JWKS → the JWKS key with that kid;
 * - an asymmetric alg equal to the `publicKey`'s algorithm → `publicKey`;
 * - otherwise, with a JWKS → the JWKS (jose picks the one key that fits).
 * Claims: `exp` required; `sub` a non-empty string; `iss`/`aud` when
 * configured; `nbf` honoured; clock tolerance {@link CLOCK_TOLERANCE_S} s.
 */
export function createAuthenticator(config: AuthConfig, options: AuthenticatorOptions = {}): Authenticator {
  const now = options.now ?? Date.now;
  const algorithms: string[] = [];
  let secret: Uint8Array | null = null;
  if (config.hmacSecret !== undefined) {
    secret = new TextEncoder().encode(config.hmacSecret);
    if (secret.byteLength < MIN_HMAC_SECRET_BYTES) throw new Error(`auth.hmacSecret: must be at least ${MIN_HMAC_SECRET_BYTES} bytes`);
    algorithms.push(...HMAC_ALGORITHMS);
  }
  let publicKey: { alg: string; key: Promise<CryptoKey> } | null = null;
  if (config.publicKey !== undefined) {
    let info: PublicKeyInfo;
    try {
      info = loadPublicKey(config.publicKey);
    } catch (err) {
      throw new Error(`auth.publicKey: ${(err as Error).message}`);
    }
    const key = importSPKI(info.pem, info.alg);
    key.catch(() => {}); // checked by createPublicKey above; awaited at verify
    publicKey = { alg: info.alg, key };
    if (!algorithms.includes(info.alg)) algorithms.push(info.alg);
  }
  let jwks: ReturnType<typeof createLocalJWKSet> | null = null;
  if (config.jwksFile !== undefined) {
    try {
      jwks = createLocalJWKSet(loadJwks(config.jwksFile));
    } catch (err) {
      throw new Error(`auth.jwksFile: ${(err as Error).message}`);
    }
    for (const alg of JWKS_ALGORITHMS) if (!algorithms.includes(alg)) algorithms.push(alg);
  }

  const getKey: JWTVerifyGetKey = async (header, token) => {
    const alg = header.alg ?? '';
    if (HMAC_ALGORITHMS.includes(alg)) {
      if (secret) return secret;
    } else if (jwks && (header.kid !== undefined || !publicKey || publicKey.alg !== alg)) {
      return jwks(header, token);
    } else if (publicKey && publicKey.alg === alg) {
      return publicKey.key;
    }
    throw new AuthError(AuthErrorCode.TokenInvalid, 'token algorithm not allowed');
  };

  // HS* tokens that pass every check are verified with node:crypto's synchronous HMAC
  // (hmac-jwt.ts); anything it does not accept goes to jose, which gives the exact error.
  const hmacOptions: HmacVerifyOptions | null = secret
    ? { secret, algorithms, issuer: config.issuer, audience: config.audience, clockTolerance: CLOCK_TOLERANCE_S }
    : null;

  const verifyOptions = {
    algorithms,
    issuer: config.issuer,
    audience: config.audience,
    clockTolerance: CLOCK_TOLERANCE_S,
    requiredClaims: ['exp'],
  };

  return {
    anonymous: config.anonymous,
    authTimeoutMs: config.authTimeoutMs,
    refreshGraceMs: config.refreshGraceMs,
    cookieName: config.cookieName,
    ticketTtlMs: config.ticketTtlMs,
    can,
    async verify(token: string): Promise<Identity> {
      if (algorithms.length === 0) throw new AuthError(AuthErrorCode.NotConfigured, 'token authentication is not configured');
      if (typeof token !== 'string' || token.length === 0) throw new AuthError(AuthErrorCode.TokenInvalid, 'malformed token');
      if (token.length > MAX_TOKEN_LENGTH) throw new AuthError(AuthErrorCode.TokenInvalid, 'token too long');
      let payload: JWTPayload | null = hmacOptions ? verifyHmacJwt(token, hmacOptions, now()) : null;
      if (payload !== null) return identityFromClaims(payload);
      try {
        ({ payload } = await jwtVerify(token, getKey, { ...verifyOptions, currentDate: new Date(now()) }));
      } catch (err) {
        throw toAuthError(err);
      }
      return identityFromClaims(payload);
    },
  };
}

/** Map a jose (or our own) error to an AuthError with a short message. */
function toAuthError(err: unknown): AuthError {
  if (err instanceof AuthError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new AuthError(AuthErrorCode.TokenExpired, 'token expired');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const { claim, reason } = err as { claim?: string; reason?: string };
      if (reason === 'missing') return new AuthError(AuthErrorCode.TokenClaims, `token has no ${claim} claim`);
      if (claim === 'iss') return new AuthError(AuthErrorCode.TokenClaims, 'token issuer mismatch');
      if (claim === 'aud') return new AuthError(AuthErrorCode.TokenClaims, 'token audience mismatch');
      if (claim === 'nbf') return new AuthError(AuthErrorCode.TokenClaims, 'token not yet valid');
      return new AuthError(AuthErrorCode.TokenClaims, claim ? `invalid ${claim} claim` : 'invalid token claims');
    }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new AuthError(AuthErrorCode.TokenInvalid, 'invalid token signature');
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new AuthError(AuthErrorCode.TokenInvalid, 'token algorithm not allowed');
    case 'ERR_JOSE_NOT_SUPPORTED':
      return new AuthError(AuthErrorCode.TokenInvalid, 'unsupported token');
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return new AuthError(AuthErrorCode.TokenInvalid, 'no key for this token');
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new AuthError(AuthErrorCode.TokenInvalid, 'several keys match this token: set kid');
    default:
      return new AuthError(AuthErrorCode.TokenInvalid, 'malformed token');
  }
}

function identityFromClaims(payload: JWTPayload): Identity {
  if (typeof payload.sub !== 'string' || payload.sub.length === 0) {
    throw new AuthError(AuthErrorCode.TokenClaims, 'token has no sub claim');
  }
  if (typeof payload.exp !== 'number') throw new AuthError(AuthErrorCode.TokenClaims, 'token has no exp claim');
  const identity: Identity = {
    user: payload.sub,
    expiresAt: payload.exp * 1000,
    permissions: parsePermissions(payload['channels']),
  };
  if (payload['info'] !== undefined) {
    // Shown to others in every publication and presence event: it must encode for every subscriber.
    const problem = dataProblem(payload['info'], INFO_LIMITS, 'the info claim');
    if (problem !== null) throw new AuthError(AuthErrorCode.TokenClaims, problem);
    identity.info = payload['info'];
  }
  return identity;
}

/**
 * The `channels` claim: absent → `null`; else an object with only the keys
 * `subscribe`, `publish`, `presence`, `history`, each an array of valid
 * channel names or patterns. Anything else makes the token invalid (a typo
 * must not silently change what a token grants).
 */
export function parsePermissions(claim: unknown): ChannelPermissions | null {
  if (claim === undefined) return null;
  const bad = (why: string) => new AuthError(AuthErrorCode.TokenClaims, `invalid channels claim: ${why}`);
  if (claim === null || typeof claim !== 'object' || Array.isArray(claim)) throw bad('not an object');
  const permissions: ChannelPermissions = {};
  for (const [key, list] of Object.entries(claim)) {
    if (!(ACTIONS as readonly string[]).includes(key)) throw bad(`unknown key ${JSON.stringify(key).slice(0, 40)}`);
    if (!Array.isArray(list)) throw bad(`${key} is not an array`);
    for (const entry of list) {
      if (typeof entry !== 'string' || !(isValidChannel(entry) || isValidPattern(entry))) {
        throw bad(`${key} has an invalid channel`);
      }
    }
    permissions[key as Action] = list as string[];
  }
  return permissions;
}

// ---- authorization -----------------------------------------------------------

/**
 * Whether the channels matched by pattern `requested` are all matched by
 * pattern `permission` (both may also be plain channel names). Exact, not a
 * heuristic: `chat/#` covers `chat/+/x`, `chat` and `chat/#`; `chat/+`
 * covers `chat/a` but not `chat/#` (which also matches `chat` and
 * `chat/a/b`); `chat/a` covers only `chat/a`; `#` and `+/#` cover each other
 * (both match every channel, as channels have at least one segment).
 * False when either is not a valid channel or pattern.
 */
export function patternCovers(permission: string, requested: string): boolean {
  if (!(isValidChannel(permission) || isValidPattern(permission))) return false;
  if (!(isValidChannel(requested) || isValidPattern(requested))) return false;
  // `#` alone matches one or more segments, exactly like `+/#`.
  const p = (permission === '#' ? '+/#' : permission).split('/');
  const r = (requested === '#' ? '+/#' : requested).split('/');
  for (let i = 0; i < p.length; i++) {
    const ps = p[i]!;
    // `#` (last) matches any rest, including none: whatever `requested` has from here on.
    if (ps === '#') return true;
    // `requested` ends here while `permission` wants another segment.
    if (i >= r.length) return false;
    const rs = r[i]!;
    // `requested` may have any rest here (or none); only a `#` above covers that.
    if (rs === '#') return false;
    if (ps === '+') continue; // covers any single segment, `+` included
    if (rs === '+' || rs !== ps) return false; // a literal covers only itself
  }
  return r.length === p.length;
}

function listCovers(list: string[] | undefined, channel: string, pattern: boolean): boolean {
  if (!list) return false;
  for (const entry of list) {
    if (pattern ? patternCovers(entry, channel) : matchesPattern(entry, channel)) return true;
  }
  return false;
}

/**
 * May `identity` perform `action` on `channel` (a pattern only for
 * `subscribe`) in a namespace with these rules?
 *
 * 1. A pattern is only subscribed to; any other action on it is refused.
 * 2. `publish` always needs the namespace's `clientPublish`.
 * 3. Anonymous (`identity` null): subscribe, presence and history need
 *    `anonymousSubscribe`; publish needs `anonymousPublish`.
 * 4. A token without a `channels` claim may do whatever the namespace allows
 *    (rule 2).
 * 5. A token with a `channels` claim may do an action only where its list
 *    for that action has an entry covering the channel (a missing list
 *    grants nothing). A subscription also reveals presence and history
 *    (resume, join/leave), so `subscribe` grants `presence` and `history`
 *    on the same channels. For a pattern subscription, some entry must cover
 *    the whole pattern ({@link patternCovers}).
 *
 * The namespace of a pattern must be the combination of every namespace it
 * can reach (see `resolveNamespace` in server/config/namespaces.ts), or an anonymous
 * `#` would reach channels of a namespace that forbids anonymous readers.
 */
export function can(identity: AuthSubject | null, action: Action, channel: string, namespace: NamespacePolicy): boolean {
  const pattern = isPattern(channel);
  if (pattern && action !== 'subscribe') return false;
  if (action === 'publish' && !namespace.clientPublish) return false;
  if (identity === null) return action === 'publish' ? namespace.anonymousPublish === true : namespace.anonymousSubscribe;
  const permissions = identity.permissions;
  if (permissions === undefined || permissions === null) return true;
  if (listCovers(permissions[action], channel, pattern)) return true;
  if (action === 'presence' || action === 'history') return listCovers(permissions.subscribe, channel, false);
  return false;
}

// ---- tickets -----------------------------------------------------------------

export interface TicketStoreOptions {
  /** Lifetime of a ticket, in ms (`auth.ticketTtlMs`, default 30000). */
  ttlMs: number;
  /** At most this many unredeemed tickets; issuing more evicts the oldest. Default 10000. */
  maxSize?: number;
  /** Clock, ms since the epoch. Default `Date.now`. */
  now?: () => number;
}

/**
 * One-time connection tickets: an authenticated HTTP request (with a token)
 * gets a ticket, and the browser opens `wss://…/rt?ticket=…` with it. A
 * ticket is 32 random bytes (base64url, 43 characters), valid once, for
 * `ttlMs`. No timer per ticket: entries sit in a Map in issue order (which
 * is expiry order, as the TTL is fixed); expired ones are dropped from the
 * front when tickets are issued, and the oldest goes when the store is full.
 */
export class TicketStore {
  private readonly tickets = new Map<string, { identity: Identity; expiresAt: number }>();
  private readonly ttlMs: number;
  private readonly maxSize: number;
  private readonly now: () => number;

  constructor(options: TicketStoreOptions) {
    this.ttlMs = options.ttlMs;
    this.maxSize = Math.max(1, options.maxSize ?? 10000);
    this.now = options.now ?? Date.now;
  }

  /** A new ticket for this identity. */
  issue(identity: Identity): string {
    const t = this.now();
    this.sweep(t);
    while (this.tickets.size >= this.maxSize) {
      const oldest = this.tickets.keys().next().value as string;
      this.tickets.delete(oldest);
    }
    const ticket = randomBytes(32).toString('base64url');
    this.tickets.set(ticket, { identity, expiresAt: t + this.ttlMs });
    return ticket;
  }

  /**
   * The identity of a ticket, once: a second redeem gets null, as do unknown
   * and expired tickets and tickets whose token has expired since.
   */
  redeem(ticket: string): Identity | null {
    if (typeof ticket !== 'string') return null;
    const entry = this.tickets.get(ticket);
    if (!entry) return null;
    this.tickets.delete(ticket);
    const t = this.now();
    if (entry.expiresAt <= t || entry.identity.expiresAt <= t) return null;
    return entry.identity;
  }

  /** Unredeemed tickets held (expired ones included until swept). */
  get size(): number {
    return this.tickets.size;
  }

  private sweep(t: number): void {
    for (const [ticket, entry] of this.tickets) {
      if (entry.expiresAt > t) break;
      this.tickets.delete(ticket);
    }
  }
}

// ---- credentials of an HTTP request --------------------------------------------

/** The part of an HTTP request (node:http or node:http2 compat) that {@link tokenFromRequest} reads. */
export interface RequestLike {
  headers: Record<string, string | string[] | undefined>;
  url?: string;
}

export interface RequestCredential {
  kind: 'token' | 'ticket';
  value: string;
}

/**
 * The credential a handshake carries, first found wins:
 * 1. `Authorization: Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1);
 * 2. `?ticket=<ticket>` in the URL (explicit, so it beats an ambient cookie);
 * 3. the cookie `cookieName` (see {@link parseCookie}).
 * A token in the query string is not accepted: URLs end up in logs; use a ticket.
 * Null when there is none (the client may still send an `auth` message).
 */
export function tokenFromRequest(req: RequestLike, cookieName: string): RequestCredential | null {
  const authorization = firstHeader(req.headers['authorization']);
  if (authorization) {
    const m = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(authorization);
    if (m) return { kind: 'token', value: m[1]! };
  }
  const url = req.url ?? '';
  const q = url.indexOf('?');
  if (q !== -1) {
    const hash = url.indexOf('#', q);
    const ticket = new URLSearchParams(url.slice(q + 1, hash === -1 ? undefined : hash)).get('ticket');
    if (ticket) return { kind: 'ticket', value: ticket };
  }
  const cookie = parseCookie(req.headers['cookie'], cookieName);
  if (cookie) return { kind: 'token', value: cookie };
  return null;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The value of cookie `name` in a `Cookie` header (RFC 6265 §5.4; several
 * headers, as HTTP/2 may send, count as one list). Pairs are split on `;`,
 * whitespace around names and values is trimmed, names are case-sensitive,
 * pairs without `=` are skipped, the value is split at the first `=` only
 * (base64 padding stays), a value in double quotes is unquoted, and
 * percent-encoding is decoded when it is valid (else kept as is). The first
 * non-empty occurrence wins (browsers send the most specific path first).
 */
export function parseCookie(header: string | string[] | undefined, name: string): string | null {
  if (header === undefined) return null;
  const text = Array.isArray(header) ? header.join('; ') : header;
  for (const pair of text.split(';')) {
    const eq = pair.indexOf('=');
    if (eq === -1) continue;
    if (pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (value.includes('%')) {
      try {
        value = decodeURIComponent(value);
      } catch {
        // not percent-encoding: keep it
      }
    }
    if (value !== '') return value;
  }
  return null;
}
