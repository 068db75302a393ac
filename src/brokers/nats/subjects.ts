/**
 * Channel names and MQTT-style patterns (wire/channel.ts) as NATS subjects.
 *
 * A channel's segments become subject tokens (`/` → `.`) under a prefix and
 * a kind (`<prefix>.c.` for the fan-out, `<prefix>.h.` for the JetStream
 * history): `chat/room-1` → `sb.c.chat.room-1`. In a pattern, `+` becomes
 * `*` and a final `#` becomes `>`; since MQTT's `a/#` also matches `a` and
 * NATS's `a.>` does not, it takes two subjects, `a` and `a.>` (`#` alone
 * is `>`: every channel has at least one segment).
 *
 * A segment may hold characters NATS gives a meaning to: `.` (separator),
 * `*` and `>` (wildcards) and whitespace (ends the subject in the protocol).
 * Those, and `%` itself, are escaped percent-style as the `%XX` of their
 * UTF-8 bytes, so the encoding is reversible and a segment is always one
 * token: `a.b` → `a%2Eb`, `>` → `%3E`, `50%` → `50%25`. Other characters,
 * non-ASCII included, stay as they are (NATS subjects are UTF-8), so
 * subjects stay readable in `nats` tools. The empty string, which no
 * channel segment is but a user id may be (presence keys), is `%`.
 */

/** Characters escaped in a token: NATS's separator and wildcards, whitespace, and the escape character. */
const ESCAPED = /[%.*>\s]/gu;
const UTF8 = new TextEncoder();
const HEX = '0123456789ABCDEF';

/** `s` as one NATS subject token (see the module comment). */
export function encodeToken(s: string): string {
  if (s === '') return '%';
  return s.replace(ESCAPED, (ch) => {
    let out = '';
    for (const byte of UTF8.encode(ch)) out += '%' + HEX[byte >> 4]! + HEX[byte & 15]!;
    return out;
  });
}

/** The inverse of {@link encodeToken}. Throws a TypeError on a malformed escape. */
export function decodeToken(token: string): string {
  if (token === '%') return '';
  if (!token.includes('%')) return token;
  try {
    // decodeURIComponent reads exactly the `%XX` UTF-8 sequences encodeToken writes.
    return decodeURIComponent(token);
  } catch {
    throw new TypeError(`Malformed subject token: ${JSON.stringify(token)}`);
  }
}

/** A channel name as subject tokens: `a/b.c` → `a.b%2Ec`. */
export function channelTokens(channel: string): string {
  return channel.split('/').map(encodeToken).join('.');
}

/** The inverse of {@link channelTokens}. */
export function tokensToChannel(tokens: string): string {
  return tokens.split('.').map(decodeToken).join('/');
}

/**
 * The NATS subject filters (relative: without prefix) that together match
 * exactly the channels a valid pattern or channel name matches.
 */
export function patternFilters(pattern: string): string[] {
  const segments = pattern.split('/');
  const tokens = segments.map((s) => (s === '+' ? '*' : s === '#' ? '>' : encodeToken(s)));
  if (segments[segments.length - 1] !== '#' || segments.length === 1) return [tokens.join('.')];
  // `a/#` matches `a` too: NATS's `a.>` needs at least one more token.
  return [tokens.slice(0, -1).join('.'), tokens.join('.')];
}

/** Whether `prefix` is usable as a subject prefix: dot-separated non-empty tokens, no wildcard, no whitespace. */
export function isValidPrefix(prefix: string): boolean {
  return prefix.length > 0 && prefix.split('.').every((t) => t.length > 0 && !/[*>\s]/u.test(t));
}
