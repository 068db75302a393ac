/**
 * Channel names and MQTT-style patterns. Browser-safe: no `node:` imports.
 *
 * A channel name is a list of segments separated by `/`, e.g. `chat/room-1`.
 * A pattern is a name where some segments are wildcards:
 *
 * - `+` matches exactly one segment: `chat/+` matches `chat/a`, not `chat`
 *   nor `chat/a/b`;
 * - `#` matches zero or more trailing segments and may only be the last
 *   segment: `chat/#` matches `chat`, `chat/a` and `chat/a/b`; `#` alone
 *   matches every channel.
 *
 * A wildcard must occupy a whole segment (`a+/b`, `a/b#` are invalid). Unlike
 * MQTT, names starting with `$` get no special treatment.
 *
 * @see https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html#_Toc3901241 (MQTT 5.0 §4.7, topic names and filters)
 */

/** The longest channel name or pattern, in bytes of UTF-8. */
export const MAX_CHANNEL_BYTES = 255;

/** Segment separator. */
export const SEPARATOR = '/';
/** Wildcard for exactly one segment. */
export const SINGLE_WILDCARD = '+';
/** Wildcard for zero or more trailing segments (last segment only). */
export const MULTI_WILDCARD = '#';

const SLASH = 0x2f;
const PLUS = 0x2b;
const HASH = 0x23;

// scan() results
const INVALID = 0;
const CHANNEL = 1;
const PATTERN = 2;

/**
 * One pass over `name`: returns INVALID, CHANNEL (valid, no wildcard) or
 * PATTERN (valid, at least one wildcard). The rules: non-empty, at most
 * MAX_CHANNEL_BYTES of UTF-8, no empty segment (no leading, trailing or
 * doubled `/`), no control character (C0 U+0000-U+001F, DEL U+007F, C1
 * U+0080-U+009F), no lone surrogate (not encodable as UTF-8), and `+`/`#`
 * only as a whole segment, `#` only as the last one.
 */
function scan(name: string): number {
  if (typeof name !== 'string') return INVALID;
  const length = name.length;
  // Every UTF-16 code unit is at least one byte of UTF-8.
  if (length === 0 || length > MAX_CHANNEL_BYTES) return INVALID;
  let bytes = 0;
  let segmentStart = 0;
  let wildcard = false;
  for (let i = 0; i < length; i++) {
    const c = name.charCodeAt(i);
    if (c === SLASH) {
      if (i === segmentStart) return INVALID; // empty segment
      segmentStart = i + 1;
      bytes += 1;
    } else if (c === PLUS || c === HASH) {
      // A whole segment: starts a segment and is followed by `/` or the end.
      if (i !== segmentStart) return INVALID;
      if (i + 1 < length && name.charCodeAt(i + 1) !== SLASH) return INVALID;
      if (c === HASH && i + 1 !== length) return INVALID; // `#` last only
      wildcard = true;
      bytes += 1;
    } else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      return INVALID;
    } else if (c < 0x80) {
      bytes += 1;
    } else if (c < 0x800) {
      bytes += 2;
    } else if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < length ? name.charCodeAt(i + 1) : 0;
      if (next < 0xdc00 || next > 0xdfff) return INVALID; // lone high surrogate
      bytes += 4;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return INVALID; // lone low surrogate
    } else {
      bytes += 3;
    }
    if (bytes > MAX_CHANNEL_BYTES) return INVALID;
  }
  if (segmentStart === length) return INVALID; // trailing `/`
  return wildcard ? PATTERN : CHANNEL;
}

/**
 * Whether `name` is a valid channel name: non-empty, at most 255 bytes of
 * UTF-8, no empty segment, no wildcard character (`+`, `#`) anywhere, no
 * control character and no lone surrogate.
 */
export function isValidChannel(name: string): boolean {
  return scan(name) === CHANNEL;
}

/**
 * Whether `name` uses a wildcard character (`+` or `#`), i.e. should be
 * checked with {@link isValidPattern} rather than {@link isValidChannel}.
 * It says nothing about validity: `isPattern('a+/b')` is true, and that
 * pattern is invalid.
 */
export function isPattern(name: string): boolean {
  return typeof name === 'string' && (name.includes(SINGLE_WILDCARD) || name.includes(MULTI_WILDCARD));
}

/**
 * Whether `pattern` is a valid pattern: the rules of {@link isValidChannel},
 * except that whole segments may be `+`, and the last one `#`; at least one
 * segment must be a wildcard (a plain channel name is not a pattern).
 */
export function isValidPattern(pattern: string): boolean {
  return scan(pattern) === PATTERN;
}

/**
 * Whether `channel` matches `pattern`. A pattern without wildcards (a valid
 * channel name) matches only itself. False when `channel` is not a valid
 * channel or `pattern` is neither a valid pattern nor a valid channel.
 * For many patterns, use {@link PatternIndex}.
 */
export function matchesPattern(pattern: string, channel: string): boolean {
  if (scan(channel) !== CHANNEL || scan(pattern) === INVALID) return false;
  const p = pattern.split(SEPARATOR);
  const c = channel.split(SEPARATOR);
  for (let i = 0; i < p.length; i++) {
    const segment = p[i]!;
    if (segment === MULTI_WILDCARD) return true; // last segment (checked by scan)
    if (i >= c.length) return false;
    if (segment !== SINGLE_WILDCARD && segment !== c[i]) return false;
  }
  return p.length === c.length;
}

/** A trie node: one per distinct pattern prefix. */
class PatternNode<T> {
  /** Children by literal segment. */
  children: Map<string, PatternNode<T>> | undefined = undefined;
  /** The child for a `+` segment. */
  plus: PatternNode<T> | undefined = undefined;
  /** Values of patterns that end at this node. */
  values: Set<T> | undefined = undefined;
  /** Values of patterns that end with `#` after this node. */
  rest: Set<T> | undefined = undefined;

  isEmpty(): boolean {
    return this.values === undefined && this.rest === undefined && this.plus === undefined && (this.children === undefined || this.children.size === 0);
  }
}

/**
 * Patterns (and plain channel names) with values attached, matched against a
 * channel without scanning every pattern: a trie over segments, walked once
 * per publication along the channel's segments, the `+` branches and the `#`
 * leaves. The cost of `match` depends on the number of segments and of
 * overlapping wildcard branches, not on the number of patterns.
 *
 * A (pattern, value) pair is stored once: adding it again does nothing. A
 * value added under several patterns that all match a channel is returned
 * once per pattern (the index does not deduplicate across patterns).
 */
export class PatternIndex<T> {
  readonly #root = new PatternNode<T>();
  #size = 0;

  /** The number of (pattern, value) pairs. */
  get size(): number {
    return this.#size;
  }

  /**
   * Attach `value` to `pattern` (a valid pattern or a valid channel name).
   * Returns false when the pair was there already.
   * @throws TypeError (code `RT_ERR_INVALID_CHANNEL`) for an invalid pattern.
   */
  add(pattern: string, value: T): boolean {
    if (scan(pattern) === INVALID) {
      throw Object.assign(new TypeError(`Invalid channel pattern: ${JSON.stringify(pattern)}`), { code: 'RT_ERR_INVALID_CHANNEL' });
    }
    let node = this.#root;
    const segments = pattern.split(SEPARATOR);
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      if (segment === MULTI_WILDCARD) {
        const rest = (node.rest ??= new Set());
        if (rest.has(value)) return false;
        rest.add(value);
        this.#size++;
        return true;
      }
      if (segment === SINGLE_WILDCARD) {
        node = node.plus ??= new PatternNode();
      } else {
        const children = (node.children ??= new Map());
        let child = children.get(segment);
        if (child === undefined) {
          child = new PatternNode();
          children.set(segment, child);
        }
        node = child;
      }
    }
    const values = (node.values ??= new Set());
    if (values.has(value)) return false;
    values.add(value);
    this.#size++;
    return true;
  }

  /** Detach `value` from `pattern`, pruning emptied nodes. Returns false when the pair was not there. */
  remove(pattern: string, value: T): boolean {
    if (scan(pattern) === INVALID) return false;
    const segments = pattern.split(SEPARATOR);
    const path: PatternNode<T>[] = [];
    let node: PatternNode<T> | undefined = this.#root;
    let removed = false;
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      if (segment === MULTI_WILDCARD) {
        removed = node.rest?.delete(value) ?? false;
        if (removed && node.rest!.size === 0) node.rest = undefined;
        break;
      }
      path.push(node);
      node = segment === SINGLE_WILDCARD ? node.plus : node.children?.get(segment);
      if (node === undefined) return false;
      if (i === segments.length - 1) {
        removed = node.values?.delete(value) ?? false;
        if (removed && node.values!.size === 0) node.values = undefined;
      }
    }
    if (!removed) return false;
    this.#size--;
    // Prune empty nodes bottom-up: path[k] is the parent of the node reached by segments[k].
    for (let k = path.length - 1; k >= 0; k--) {
      const parent = path[k]!;
      const segment = segments[k]!;
      const child = segment === SINGLE_WILDCARD ? parent.plus : parent.children?.get(segment);
      if (child === undefined || !child.isEmpty()) break;
      if (segment === SINGLE_WILDCARD) parent.plus = undefined;
      else {
        parent.children!.delete(segment);
        if (parent.children!.size === 0) parent.children = undefined;
      }
    }
    return true;
  }

  /**
   * The values of every pattern matching `channel` (a valid channel name),
   * once per matching (pattern, value) pair, in no particular order. Empty
   * for an invalid name.
   */
  match(channel: string): T[] {
    const out: T[] = [];
    if (this.#size === 0 || scan(channel) !== CHANNEL) return out;
    collect(this.#root, channel.split(SEPARATOR), 0, out);
    return out;
  }

  /** Whether any pattern matches `channel`: `match(channel).length > 0`, without building the list. */
  hasMatch(channel: string): boolean {
    if (this.#size === 0 || scan(channel) !== CHANNEL) return false;
    return anyMatch(this.#root, channel.split(SEPARATOR), 0);
  }

  /** Remove everything. */
  clear(): void {
    const root = this.#root;
    root.children = undefined;
    root.plus = undefined;
    root.values = undefined;
    root.rest = undefined;
    this.#size = 0;
  }
}

/**
 * Walk the trie: `node` corresponds to the pattern prefix matched by the
 * first `i` segments of the channel. Each node is reached by at most one
 * path, so each pattern is reported at most once.
 */
function collect<T>(node: PatternNode<T>, segments: string[], i: number, out: T[]): void {
  // `#` here matches segments[i..] (zero or more).
  if (node.rest !== undefined) for (const v of node.rest) out.push(v);
  if (i === segments.length) {
    if (node.values !== undefined) for (const v of node.values) out.push(v);
    return;
  }
  const child = node.children?.get(segments[i]!);
  if (child !== undefined) collect(child, segments, i + 1, out);
  if (node.plus !== undefined) collect(node.plus, segments, i + 1, out);
}

function anyMatch<T>(node: PatternNode<T>, segments: string[], i: number): boolean {
  if (node.rest !== undefined) return true;
  if (i === segments.length) return node.values !== undefined;
  const child = node.children?.get(segments[i]!);
  if (child !== undefined && anyMatch(child, segments, i + 1)) return true;
  return node.plus !== undefined && anyMatch(node.plus, segments, i + 1);
}
