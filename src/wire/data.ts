/**
 * What application data may be: the `data` of a publication or an rpc, and
 * the `info` of a client. Checked where it enters (a client's message, the
 * HTTP API, a library call, a token's claims), so that everything stored
 * and delivered encodes in every wire encoding, for every subscriber, at any
 * later time: a publication that only fails when it is fanned out, or when
 * history is saved, takes other people's messages down with it.
 *
 * Allowed: null, booleans, finite numbers, well-formed strings, byte arrays
 * (Uint8Array: MessagePack `bin`), arrays and plain objects, nested at most
 * `maxDepth` containers deep. Refused, each with a reason in words:
 * - deeper nesting: JSON.stringify recurses (a few thousand levels overflow
 *   the stack) and MessagePack encoders stop at about 100 levels;
 * - NaN and ±Infinity: JSON has no such numbers (it would send `null` to JSON
 *   subscribers and the number to MessagePack ones);
 * - strings with a lone UTF-16 surrogate: no valid UTF-8 encodes them, and
 *   strict MessagePack decoders reject what encoders make of them;
 * - the key `__proto__`: MessagePack decoders (ours included) refuse it;
 * - anything else (undefined, bigint, functions, symbols, Dates, Maps,
 *   MessagePack extensions, class instances): no faithful encoding in both;
 * - more than `maxNodes` values: every value costs at least a byte encoded,
 *   so this bounds the walk by the size limit, also for shared references
 *   (a DAG) and cycles in library calls.
 *
 * Iterative (an explicit stack), so a hostile depth cannot overflow ours.
 * Browser-safe.
 */

/** The nesting a publication's data may have by default (`limits.maxDataDepth`). */
export const DEFAULT_MAX_DATA_DEPTH = 32;
/** The most `limits.maxDataDepth` may be: every wire message and history snapshot wraps data in a few more levels, under MessagePack's 100. */
export const MAX_DATA_DEPTH_LIMIT = 64;

export interface DataLimits {
  /** Containers (arrays, objects) nested at most this deep; a scalar is depth 0. */
  maxDepth: number;
  /** Values (containers and scalars) at most. */
  maxNodes: number;
}

const objectProto = Object.prototype;

/**
 * Why `value` cannot travel as application data, or null when it can.
 * `what` names it in the answer ("pub.data", "the info claim").
 */
export function dataProblem(value: unknown, limits: DataLimits, what = 'data'): string | null {
  // A byte array (a game's input or state, MessagePack `bin`) needs no walk.
  if (value instanceof Uint8Array) return limits.maxNodes >= 1 ? null : `${what} has more than ${limits.maxNodes} values`;
  // Pairs of (value, depth) on one flat stack, kept between calls (this runs for every message
  // that carries data); a call made while one runs (a getter in a library call's data) makes its own.
  const stack = spareStack ?? { items: [], high: 0 };
  spareStack = null;
  stack.high = 0;
  try {
    return walk(stack, value, limits, what);
  } finally {
    // Cleared, not shortened (a shortened array gives its storage back and grows again next call);
    // one that grew large is let go.
    if (stack.high <= KEEP_STACK_UP_TO) {
      stack.items.fill(undefined, 0, stack.high);
      spareStack = stack;
    } else {
      spareStack = { items: [], high: 0 };
    }
  }
}

/** The walk's stack and the most entries it held in this call (what is cleared after it). */
interface WalkStack {
  items: unknown[];
  high: number;
}

/** Entries of the spare stack kept between calls (a walk of 2,048 values at a time). */
const KEEP_STACK_UP_TO = 4096;
let spareStack: WalkStack | null = { items: [], high: 0 };

/** Push (value, depth) at `top`; the new top. */
function push(stack: WalkStack, top: number, v: unknown, depth: number): number {
  stack.items[top++] = v;
  stack.items[top++] = depth;
  if (top > stack.high) stack.high = top;
  return top;
}

function walk(stack: WalkStack, value: unknown, limits: DataLimits, what: string): string | null {
  const items = stack.items;
  let nodes = 0;
  let top = push(stack, 0, value, 0);
  while (top > 0) {
    const depth = items[--top] as number;
    const v = items[--top];
    if (++nodes > limits.maxNodes) return `${what} has more than ${limits.maxNodes} values`;
    switch (typeof v) {
      case 'boolean':
        continue;
      case 'number':
        if (!Number.isFinite(v)) return `${what} holds a number that JSON cannot carry (${String(v)})`;
        continue;
      case 'string':
        if (!isWellFormed(v)) return `${what} holds a string with a lone surrogate (not valid Unicode)`;
        continue;
      case 'object': {
        if (v === null) continue;
        if (v instanceof Uint8Array) continue;
        if (depth >= limits.maxDepth) return `${what} is nested deeper than ${limits.maxDepth} levels`;
        if (Array.isArray(v)) {
          for (let i = v.length - 1; i >= 0; i--) top = push(stack, top, v[i], depth + 1);
          continue;
        }
        const proto = Object.getPrototypeOf(v) as unknown;
        if (proto !== objectProto && proto !== null) return `${what} holds a ${describe(v)}, not a plain object`;
        for (const key in v) {
          if (!Object.prototype.hasOwnProperty.call(v, key)) continue;
          if (key === '__proto__') return `${what} holds the key "__proto__"`;
          if (!isWellFormed(key)) return `${what} holds a key with a lone surrogate (not valid Unicode)`;
          top = push(stack, top, (v as Record<string, unknown>)[key], depth + 1);
        }
        continue;
      }
      default:
        return `${what} holds ${v === undefined ? 'undefined' : `a ${typeof v}`}, which has no JSON form`;
    }
  }
  return null;
}

function describe(v: object): string {
  const name = (v as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' ? name : 'non-plain object';
}

// String.prototype.isWellFormed: Node 20, Chrome 111, Safari 16.4; the regular expression elsewhere.
const nativeWellFormed = (String.prototype as { isWellFormed?: () => boolean }).isWellFormed;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function isWellFormed(s: string): boolean {
  return nativeWellFormed !== undefined ? nativeWellFormed.call(s) : !LONE_SURROGATE.test(s);
}

/**
 * Data refused by {@link dataProblem}, thrown by the server's own publish
 * (`RealtimeServer#publish`, the HTTP API answers it with 400).
 */
export class InvalidDataError extends TypeError {
  readonly code = 'RT_ERR_INVALID_DATA';
  /** The HTTP status and `error` reply code that answer it. */
  readonly status = 400;
  constructor(message: string) {
    super(message);
    this.name = 'InvalidDataError';
  }
}
