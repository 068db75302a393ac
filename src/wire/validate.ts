/**
 * Validation of client messages: everything that arrives is checked before
 * the hub acts on it. Browser-safe (the SDK uses it in tests).
 */
import type { ClientMessage, RequestId, StreamPosition } from './messages.js';

export type ValidationResult = { ok: true; message: ClientMessage } | { ok: false; id?: RequestId; error: string };

const MAX_ID_LENGTH = 64;
const MAX_KEY_LENGTH = 128;
const MAX_METHOD_LENGTH = 128;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/**
 * A client's value named in an answer: a string quoted (cut at 40
 * characters), anything else by its kind. Never JSON.stringify of what a
 * client sent: a value nested a few thousand levels deep overflows the stack.
 */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (v === null || typeof v === 'boolean' || typeof v === 'number') return String(v);
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

export function isRequestId(v: unknown): v is RequestId {
  return (
    (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) ||
    (typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_LENGTH)
  );
}

function isPosition(v: unknown): v is StreamPosition {
  return (
    isObject(v) &&
    typeof v.offset === 'number' &&
    Number.isSafeInteger(v.offset) &&
    v.offset >= 0 &&
    typeof v.epoch === 'string' &&
    v.epoch.length <= 64
  );
}

function isMethod(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_METHOD_LENGTH;
}

const ALLOWED: Record<string, readonly string[]> = {
  auth: ['op', 'id', 'token'],
  sub: ['op', 'id', 'channel', 'since', 'presence'],
  unsub: ['op', 'id', 'channel'],
  pub: ['op', 'id', 'channel', 'data', 'key', 'volatile'],
  rpc: ['op', 'id', 'method', 'data'],
  send: ['op', 'method', 'data'],
  presence: ['op', 'id', 'channel'],
  history: ['op', 'id', 'channel', 'since', 'limit'],
  refresh: ['op', 'id', 'token'],
  ping: ['op'],
  pong: ['op'],
};

/** Check the shape of a decoded message. Channel names are checked by the hub (they need the channel rules). */
export function validateClientMessage(raw: unknown): ValidationResult {
  if (!isObject(raw)) return { ok: false, error: 'a message must be an object' };
  const op = raw.op;
  if (typeof op !== 'string' || !Object.prototype.hasOwnProperty.call(ALLOWED, op)) {
    return { ok: false, id: isRequestId(raw.id) ? raw.id : undefined, error: `unknown op ${describeValue(op)}` };
  }
  const allowed = ALLOWED[op]!;
  const id = raw.id;
  const fail = (error: string): ValidationResult => ({ ok: false, id: isRequestId(id) ? id : undefined, error });
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) return fail(`unknown field "${key}" in ${op}`);
  }
  if (op === 'ping' || op === 'pong') return { ok: true, message: { op } };
  if (op === 'send') {
    if (!isMethod(raw.method)) return fail('send.method must be a non-empty string');
    return { ok: true, message: raw as unknown as ClientMessage };
  }
  if (!isRequestId(id)) return fail(`${op} needs an id (a non-negative integer or a string of up to ${MAX_ID_LENGTH} characters)`);

  switch (op) {
    case 'auth':
    case 'refresh':
      // Any string: an unusable one (empty, too long) is an invalid token, for the session to answer (401).
      if (typeof raw.token !== 'string' && !(op === 'auth' && raw.token === undefined)) return fail(`${op}.token must be a string`);
      break;
    case 'sub':
    case 'unsub':
    case 'presence':
    case 'history':
      if (typeof raw.channel !== 'string' || raw.channel.length === 0) return fail(`${op}.channel must be a non-empty string`);
      if (raw.since !== undefined && !isPosition(raw.since)) return fail(`${op}.since must be {offset: integer >= 0, epoch: string}`);
      if (raw.presence !== undefined && typeof raw.presence !== 'boolean') return fail('sub.presence must be a boolean');
      if (raw.limit !== undefined && !(typeof raw.limit === 'number' && Number.isSafeInteger(raw.limit) && raw.limit >= 0)) {
        return fail('history.limit must be an integer >= 0');
      }
      break;
    case 'pub':
      if (typeof raw.channel !== 'string' || raw.channel.length === 0) return fail('pub.channel must be a non-empty string');
      if (!('data' in raw)) return fail('pub.data is required');
      if (raw.key !== undefined && !(typeof raw.key === 'string' && raw.key.length > 0 && raw.key.length <= MAX_KEY_LENGTH)) {
        return fail(`pub.key must be a string of 1-${MAX_KEY_LENGTH} characters`);
      }
      if (raw.volatile !== undefined && typeof raw.volatile !== 'boolean') return fail('pub.volatile must be a boolean');
      break;
    case 'rpc':
      if (!isMethod(raw.method)) return fail('rpc.method must be a non-empty string');
      break;
  }
  return { ok: true, message: raw as unknown as ClientMessage };
}
