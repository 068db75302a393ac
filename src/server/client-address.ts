/**
 * The client's address behind reverse proxies. Per-IP limits and logs need
 * the address of the client, not of nginx; but `X-Forwarded-For` is a header
 * anyone can send, so it is believed only from the proxies the operator
 * lists (`trustedProxies`), and only for the hops those proxies appended.
 *
 * Each proxy appends the address it received the request from, so the list
 * is read from the right: the socket's peer must be trusted; then every
 * entry that is itself a trusted proxy is skipped; the first one that is not
 * is the client. Whatever stands left of it was written by the client (or
 * something it controls) and is ignored. A malformed entry stops the walk:
 * the last good address (a proxy) is used.
 */
import { BlockList, isIP } from 'node:net';

/** Parses `trustedProxies` entries (addresses or CIDR ranges) into a matcher. Throws on a malformed entry. */
export function trustedProxyList(entries: readonly string[]): BlockList | null {
  if (entries.length === 0) return null;
  const list = new BlockList();
  for (const entry of entries) {
    const parsed = parseProxyEntry(entry);
    if (parsed === null) throw new TypeError(`not an IP address or CIDR range: ${JSON.stringify(entry)}`);
    if (parsed.prefix === undefined) list.addAddress(parsed.address, parsed.family);
    else list.addSubnet(parsed.address, parsed.prefix, parsed.family);
  }
  return list;
}

/** `entry` as an address or CIDR range, or null when it is neither. */
export function parseProxyEntry(entry: string): { address: string; prefix?: number; family: 'ipv4' | 'ipv6' } | null {
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return null;
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (slash < 0) return { address, family };
  const text = entry.slice(slash + 1);
  const prefix = Number(text);
  if (!/^[0-9]{1,3}$/.test(text) || prefix > (version === 4 ? 32 : 128)) return null;
  return { address, prefix, family };
}

/**
 * Whether a host name or address is this machine: `localhost`, `::1`,
 * `127.x.y.z`, also IPv4-mapped (`::ffff:127.0.0.1`). Used for the listen
 * host (development mode) and for a request's peer (`/dev/token`).
 */
export function isLoopback(host: string | undefined): boolean {
  if (host === undefined) return false;
  const address = unmapped(host);
  return address === 'localhost' || address === '::1' || address.startsWith('127.');
}

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) as `10.0.0.1`; anything else as is. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

function isTrusted(list: BlockList, address: string): boolean {
  const version = isIP(address);
  return version !== 0 && list.check(address, version === 4 ? 'ipv4' : 'ipv6');
}

/** One `X-Forwarded-For` entry as a bare address: `"[::1]:80"`, `1.2.3.4:5678` and `"1.2.3.4"` are accepted; null if not an address. */
function forwardedEntry(raw: string): string | null {
  let s = raw.trim();
  if (s.startsWith('"') && s.endsWith('"') && s.length >= 2) s = s.slice(1, -1);
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return null;
    s = s.slice(1, end);
  } else if (isIP(s) === 0 && /^[0-9.]+:[0-9]+$/.test(s)) {
    s = s.slice(0, s.lastIndexOf(':'));
  }
  return isIP(s) === 0 ? null : unmapped(s);
}

/**
 * The client's address: the socket's peer, or, when that peer is a trusted
 * proxy, the rightmost `X-Forwarded-For` entry that is not.
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: BlockList | null,
): string {
  let address = peer === undefined ? 'unknown' : unmapped(peer);
  if (trusted === null || forwardedFor === undefined || !isTrusted(trusted, address)) return address;
  const entries = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = forwardedEntry(entries[i]!);
    if (entry === null) break;
    address = entry;
    if (!isTrusted(trusted, entry)) break;
  }
  return address;
}
