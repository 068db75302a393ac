/**
 * Redis names of the Redis broker and presence store: keys, pub/sub
 * channels, and the MQTT pattern → Redis glob translation. Pure functions.
 *
 * Every key of one channel shares one hash tag, `{<encoded channel>}`, so a
 * Lua script touching them all is one slot (Redis Cluster-ready). The
 * channel inside the tag is encoded so the tag is never empty nor cut short:
 * `%` → `%25`, `}` → `%7D` (a channel is non-empty, so the tag is too; Redis
 * ends a tag at the first `}`). The encoding is injective, so two channels
 * never share a key.
 *
 *   <prefix>{<enc>}        pub/sub channel: publications and presence events
 *   <prefix>{<enc>}:s      stream meta (hash: i instance, e epoch, o offset, sz, ttl)
 *   <prefix>{<enc>}:h      history (list of entries, oldest first)
 *   <prefix>{<enc>}:k:<k>  an idempotency key's result ("offset:epoch", PX ttl)
 *   <prefix>{<enc>}:p      presence: client id → info (MessagePack)
 *   <prefix>{<enc>}:pe     presence: client id → expiry time (sorted set)
 *   <prefix>{<enc>}:pu     presence: user id → number of its clients
 *   <prefix>{<enc>}:pg     presence: entries that expired, not yet announced (list)
 *   <prefix>id             the instance id (see redis-broker.ts, *Epochs*)
 *   <prefix>replid         the replication id last seen on the master
 *   <prefix>patterns       Redis Cluster: the pattern registry (hash: pattern → expiry)
 *   <prefix>pc:<node id>   Redis Cluster: a node's control channel (pattern roll calls)
 *   <prefix>n:<node id>    a node's inbox (NodeBus)
 *   <prefix>probe:<node id> a node's probe channel
 */
import { NODE_ID } from '../broker.js';

/** The node ids `<id>` of the names `<namePrefix><id>` given (node inboxes, control channels); other names are left out. */
export function nodeIdsIn(names: readonly string[], namePrefix: string): string[] {
  const out: string[] = [];
  for (const name of names) {
    const id = name.slice(namePrefix.length);
    if (name.startsWith(namePrefix) && NODE_ID.test(id)) out.push(id);
  }
  return out;
}

/** Escape what would end or empty the hash tag. */
export function encodeChannel(channel: string): string {
  return channel.replace(/[%}]/g, (c) => (c === '%' ? '%25' : '%7D'));
}

export function decodeChannel(encoded: string): string {
  return encoded.replace(/%(25|7D)/g, (_, hex: string) => (hex === '25' ? '%' : '}'));
}

/** The pub/sub channel of `channel` (also the common prefix of its keys). */
export function pubsubName(prefix: string, channel: string): string {
  return `${prefix}{${encodeChannel(channel)}}`;
}

/** The channel a pub/sub name (from {@link pubsubName}) stands for, or undefined if it is not one of ours. */
export function channelOf(prefix: string, name: string): string | undefined {
  if (!name.startsWith(prefix) || name.charCodeAt(prefix.length) !== 0x7b /* { */ || !name.endsWith('}')) return undefined;
  const inner = name.slice(prefix.length + 1, -1);
  if (inner.includes('}')) return undefined;
  return decodeChannel(inner);
}

export interface ChannelKeys {
  pubsub: string;
  meta: string;
  history: string;
  /** The idempotency key `key`'s name. */
  idempotency(key: string): string;
  presence: string;
  presenceExpiry: string;
  presenceUsers: string;
  presenceGone: string;
}

export function channelKeys(prefix: string, channel: string): ChannelKeys {
  const base = pubsubName(prefix, channel);
  return {
    pubsub: base,
    meta: `${base}:s`,
    history: `${base}:h`,
    idempotency: (key) => `${base}:k:${key}`,
    presence: `${base}:p`,
    presenceExpiry: `${base}:pe`,
    presenceUsers: `${base}:pu`,
    presenceGone: `${base}:pg`,
  };
}

/** Glob metacharacters of Redis' stringmatchlen: escaped with `\` in literal segments. */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/**
 * The Redis globs (PSUBSCRIBE patterns) that together receive every channel
 * a valid MQTT pattern matches: `+` → `*`, a trailing `#` → `*` after the
 * separator plus the parent itself (`a/#` also matches `a`; `#` alone is
 * `*`). Literal segments are encoded as in the hash tag and glob-escaped.
 *
 * A glob `*` also matches `/`, so a glob receives more than the pattern
 * matches (`a/+` receives `a/b/c`): deliveries are filtered with
 * matchesPattern on the node. A glob never misses a matching channel.
 */
export function patternGlobs(prefix: string, pattern: string): string[] {
  const segments = pattern.split('/');
  const head = escapeGlob(prefix);
  const literal = (s: string): string => escapeGlob(encodeChannel(s));
  const last = segments[segments.length - 1];
  if (last === '#') {
    const parent = segments.slice(0, -1).map((s) => (s === '+' ? '*' : literal(s)));
    if (parent.length === 0) return [`${head}{*}`];
    return [`${head}{${parent.join('/')}/*}`, `${head}{${parent.join('/')}}`];
  }
  return [`${head}{${segments.map((s) => (s === '+' ? '*' : literal(s))).join('/')}}`];
}
