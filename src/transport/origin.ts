/**
 * The one meaning of `allowedOrigins`, shared by `WebSocketServer` and the
 * realtime server: the Origin check against cross-site WebSocket hijacking.
 * Browsers attach cookies to a cross-site WebSocket handshake and let any page
 * read the socket, so a server that authenticates by cookie must refuse pages
 * from other origins (RFC 6455 §10.2).
 *
 * Origins are compared normalized, as `scheme://host[:port]`: scheme and host
 * lowercased, the scheme's default port dropped (`https://EXAMPLE.com:443`
 * and `https://example.com` are the same origin). With a list of origins:
 *
 * - no `Origin` header: allowed (not a browser, which always sends one; a
 *   non-browser client could send any header anyway);
 * - `'*'` in the list: every origin, `null` included;
 * - the server's own origin (host and port equal to the `Host` header's, the
 *   default port of the page's scheme dropped): allowed, listed or not;
 * - otherwise the origin must equal one listed entry;
 * - the origin `null` (sandboxed frames, `file:` pages) and anything that is
 *   not an origin pass only with `'*'`.
 *
 * Entries are `'*'` or `http(s)://host[:port]` without path, query or
 * credentials; {@link createOriginCheck} refuses anything else, so a typo
 * fails at startup instead of never matching.
 */

/** Decides one request: its `Origin` and `Host` header values (undefined when absent). */
export type OriginCheck = (origin: string | undefined, host: string | undefined) => boolean;

/** `scheme://host[:port]` lowercased with the default port dropped, or null when `value` is no such origin (`null`, garbage). */
export function normalizeOrigin(value: string): string | null {
  if (value === 'null') return null;
  try {
    const origin = new URL(value).origin;
    return origin === 'null' ? null : origin;
  } catch {
    return null;
  }
}

/** Why `entry` cannot be an `allowedOrigins` entry, or null when it can. */
export function originEntryError(entry: unknown): string | null {
  if (typeof entry !== 'string') return `expected a string, got ${typeof entry}`;
  if (entry === '*') return null;
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return `not an origin (expected scheme://host[:port], like "https://example.com"), got ${JSON.stringify(entry)}`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return `only http: and https: origins (or "*"), got ${JSON.stringify(entry)}`;
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '' || entry.endsWith('/')) {
    return `an origin has no path, query or credentials (did you mean ${JSON.stringify(url.origin)}?)`;
  }
  return null;
}

/**
 * Compile an `allowedOrigins` list into a check (the entries are normalized
 * once). Throws a `TypeError` naming the first entry that is not `'*'` or an
 * `http(s)://host[:port]` origin.
 */
export function createOriginCheck(allowed: readonly string[]): OriginCheck {
  const origins = new Set<string>();
  let any = false;
  allowed.forEach((entry, i) => {
    const problem = originEntryError(entry);
    if (problem !== null) throw new TypeError(`allowedOrigins[${i}]: ${problem}`);
    if (entry === '*') any = true;
    else origins.add(normalizeOrigin(entry)!);
  });
  return (origin, host) => {
    if (origin === undefined || any) return true;
    const normalized = normalizeOrigin(origin);
    if (normalized === null) return false;
    return origins.has(normalized) || (host !== undefined && isSameOrigin(normalized, host));
  };
}

/**
 * {@link createOriginCheck} for one request. Prefer compiling the list once
 * when it does not change between requests.
 */
export function isOriginAllowed(allowed: readonly string[], origin: string | undefined, host: string | undefined): boolean {
  return createOriginCheck(allowed)(origin, host);
}

/**
 * Whether the page's (normalized) origin is the server's own, as far as the
 * `Host` header tells: same host and port, read with the page's scheme (the
 * server may sit behind a TLS-terminating proxy, so its own scheme says nothing).
 */
function isSameOrigin(normalized: string, host: string): boolean {
  if (host === '') return false;
  const scheme = normalized.slice(0, normalized.indexOf(':') + 1);
  try {
    return new URL(`${scheme}//${host}`).host === new URL(normalized).host;
  } catch {
    return false; // a Host header that is no host
  }
}
