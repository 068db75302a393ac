/**
 * A standing guard (issue #8): the real `switchboard serve`, started as a
 * child process (through tsx, with a config file, a JWT secret, an API key
 * and a snapshot file), gets generated hostile input over every entry point:
 *
 * - WebSocket, `switchboard.v1.json` and `switchboard.v1.msgpack`: every op
 *   with every field bent (wrong types, missing, extra, huge), values nested
 *   tens of thousands of levels deep or tens of thousands wide, 1e400, 2^64,
 *   -0, NaN, lone surrogates, NUL, strings that are not UTF-8, MessagePack
 *   extension types and timestamps, `__proto__` / `constructor` keys, keys
 *   that are not strings, garbage bytes, truncated messages, the other frame
 *   type, raw bytes under the framing; before and after `auth`, with tokens
 *   valid, expired, forged and with odd claims (deep `info`);
 * - SSE and long-polling sessions: the same messages in `POST <path>/session/<id>`
 *   batches, bent batches and bent session opens;
 * - the HTTP API: every /api route with every method, key, content type
 *   and body bent, bodies up to 1 MiB (nesting hundreds of thousands deep),
 *   tickets with hostile `info` used to connect.
 *
 * After each batch: the process is alive and logged no crash or internal
 * error; two bystanders (one JSON, one MessagePack WebSocket) subscribed to a
 * channel with history received every publication — a well-behaved publisher's
 * (WebSocket and HTTP API) in order, none missing, and the offsets of the
 * channel without a gap, whatever hostile clients published there too; every
 * hostile input got the documented answer: an `ok`/`error` with its id, an
 * `error` 400 without id when it had no usable id, a `pong` for a ping, or a
 * close with the documented code (1007, 1009, 4501; 4500/4002 after a failed
 * `auth`) — never a close without a close frame (1006) or with 1011 (an
 * exception while handling the input), never an `error` 500/503, never a
 * message our own codec cannot decode. A fallback batch entry too deep to be
 * re-encoded gets `error` 400 and the batch goes on (docs/protocol.md,
 * "Application data"). At the end: a graceful stop (SIGTERM, exit code 0), a
 * start with the same snapshot file, and the bystanders resume with `since`:
 * `recovered: true` and exactly what they missed. A summary line counts the
 * answers of each kind, so a run that exercised nothing shows.
 *
 * The inputs come from fast-check with a seed printed in every failure
 * (SWITCHBOARD_FUZZ_SEED=<seed> replays the run). The fuzz phase lasts
 * SWITCHBOARD_FUZZ_SECONDS (default 12; about 20-25 s in all with the two starts
 * and the restart); every loop is bounded in count and time. Loopback only.
 */
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { decode as msgpackDecode } from '@msgpack/msgpack';
import { sleep, within } from '../../support/wait.js';
import {
  describe as describeValue,
  describeMessage,
  depthOf,
  envelopeValue,
  messageArb,
  plain,
  rawFrameArb,
  strKey,
  toJson,
  toMsgpack,
  valueArb,
  type Envelope,
  type Lit,
  type Message,
  type Value,
} from './inputs.js';
import {
  FallbackPeer,
  httpRequest,
  killServe,
  PUSH_OPS,
  signRaw,
  signToken,
  startServe,
  WsPeer,
  type Encoding,
  type HttpAnswer,
  type Peer,
  type ServeProcess,
  type ServerMessage,
} from './peers.js';

// ---------------------------------------------------------------------------
// Run parameters

const FUZZ_SECONDS = Number(process.env.SWITCHBOARD_FUZZ_SECONDS ?? 12);
const SEED = process.env.SWITCHBOARD_FUZZ_SEED !== undefined ? Number(process.env.SWITCHBOARD_FUZZ_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0;
/** At most this many batches, whatever the time allows. */
const MAX_BATCHES = Math.max(1, Math.ceil(FUZZ_SECONDS * 20));
/** Any one batch, all of it. */
const BATCH_MS = 30_000;
/** Any one answer (generous: the machine may be busy; it only delays a failure). */
const ANSWER_MS = 10_000;

const SECRET = 'serve-fuzz-secret-0123456789abcdefghij';
const API_KEY = 'serve-fuzz-api-key-0123456789';
const MAX_MESSAGE = 65_536;
const API_BODY_LIMIT = 1024 * 1024;
const BYSTANDER_CHANNEL = 'hist/bystander';
/** Error codes of `error` replies a hostile request may get (docs/protocol.md, close-codes.md); 429 cannot happen with the rates configured here; 500/503 are internal failures. */
const REPLY_CODES = new Set([400, 401, 403, 404, 409, 413, 430]);
/** Close codes a documented refusal may use, by cause. */
const CLOSE_TOO_BIG = [1009];
const CLOSE_NOT_UTF8 = [1007];
const CLOSE_MALFORMED = [4501];
const CLOSE_AUTH_FAILED = [4500, 4002];
/** What random bytes under the framing may get (protocol error, bad UTF-8, too big, a message that is not JSON). */
const CLOSE_RAW = new Set([1002, 1007, 1009, 4501]);

const CONFIG = {
  host: '127.0.0.1',
  apiKey: API_KEY,
  auth: { hmacSecret: SECRET, authTimeoutMs: 20_000 },
  limits: {
    maxMessageSize: MAX_MESSAGE,
    maxConnectionsPerIp: 2000,
    connectionRatePerIp: { perSecond: 5000, burst: 5000 },
    // Rates out of the way: every message must get its own answer, not a 429.
    messageRate: { perSecond: 1_000_000, burst: 1_000_000 },
    byteRate: { perSecond: 1e10, burst: 1e10 },
    // Bystanders are never slow consumers here, however much hostile data they are sent.
    sendHighWaterMark: 512 * 1024 * 1024,
  },
  fallbacks: { pollTimeoutMs: 1000 },
  broker: { snapshotIntervalMs: 500 },
  namespaces: [
    { prefix: 'hist', history: { size: 200 } },
    { prefix: 'full', presence: 'full' },
    { prefix: 'counts', presence: 'counts' },
    { prefix: 'ro', clientPublish: false, history: { size: 10 } },
  ],
};

// ---------------------------------------------------------------------------
// Tokens: valid, invalid, odd

type TokenKind = 'valid' | 'invalid' | 'either';
interface TokenCase {
  token: string;
  label: string;
  kind: TokenKind;
  /** Nesting depth of its claims. */
  depth?: number;
}
function tokenCases(): TokenCase[] {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + 3600;
  const deep = (n: number): string => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
  return [
    { token: signToken('hostile', SECRET), label: 'valid (hostile)', kind: 'valid' },
    { token: signToken('other', SECRET), label: 'valid (another user)', kind: 'valid' },
    { token: signToken('hostile', SECRET, {}, -60), label: 'expired', kind: 'invalid' },
    { token: signToken('hostile', 'another-secret-0123456789abcdefghijkl'), label: 'wrong signature', kind: 'invalid' },
    { token: signRaw(JSON.stringify({ sub: 'hostile', exp }), SECRET, '{"alg":"none"}'), label: 'alg none', kind: 'invalid' },
    { token: signRaw(JSON.stringify({ exp }), SECRET), label: 'no sub', kind: 'invalid' },
    { token: signRaw(JSON.stringify({ sub: 7, exp }), SECRET), label: 'sub number', kind: 'invalid' },
    { token: signRaw(JSON.stringify({ sub: 'hostile' }), SECRET), label: 'no exp', kind: 'invalid' },
    { token: signRaw(JSON.stringify({ sub: 'hostile', exp: String(exp) }), SECRET), label: 'exp string', kind: 'invalid' },
    { token: signRaw(`{"sub":"hostile","exp":1e400}`, SECRET), label: 'exp 1e400', kind: 'either' },
    { token: signRaw(`{"sub":"hostile","exp":${exp},"info":${deep(150)}}`, SECRET), label: 'info 150 deep', kind: 'either', depth: 151 },
    { token: signRaw(`{"sub":"hostile","exp":${exp},"info":${deep(2000)}}`, SECRET), label: 'info 2000 deep', kind: 'either', depth: 2001 },
    { token: signRaw(`{"sub":"hostile","exp":${exp},"info":{"__proto__":{"admin":true},"constructor":1}}`, SECRET), label: 'info __proto__', kind: 'either' },
    { token: signRaw(`{"sub":"hostile","exp":${exp},"info":"\\ud800\\u0000"}`, SECRET), label: 'info lone surrogate', kind: 'either' },
    { token: signRaw(`{"sub":"hostile","exp":${exp},"channels":"everything"}`, SECRET), label: 'channels string', kind: 'either' },
    { token: signRaw(`{"sub":"hostile","exp":${exp},"channels":{"subscribe":[7,null],"publish":"#"}}`, SECRET), label: 'channels bent', kind: 'either' },
    { token: signRaw(`{"sub":"${'u'.repeat(3000)}","exp":${exp}}`, SECRET), label: 'sub 3000 chars', kind: 'either' },
    { token: `${signToken('hostile', SECRET)}x`, label: 'signature tampered', kind: 'invalid' },
    { token: 'a.b.c', label: 'a.b.c', kind: 'invalid' },
  ];
}

// ---------------------------------------------------------------------------
// The journal: what was sent when, for failure reports

interface Entry {
  at: number;
  who: string;
  what: string;
  /** Nesting depth of what it carries (data, fields, or an identity's claims). */
  depth: number;
}
const journal: Entry[] = [];
function note(who: string, what: string, depth = 0): void {
  journal.push({ at: Date.now(), who, what: what.length > 500 ? `${what.slice(0, 497)}...` : what, depth });
  if (journal.length > 20_000) journal.splice(0, 5000);
}

/** How often each kind of answer came, for the summary line (and to see that the run was not vacuous). */
const tally = new Map<string, number>();
function count(what: string): void {
  tally.set(what, (tally.get(what) ?? 0) + 1);
}
function answerKind(m: ServerMessage): string {
  if (m.op !== 'error') return String(m.op);
  const reason = typeof m.message === 'string' && /nested (deeper|too deep)/.test(m.message) ? ' (too deep)' : '';
  return `error ${String(m.code)}${reason}`;
}

// ---------------------------------------------------------------------------
// What the server must answer (docs/protocol.md), from what was sent

type Expect =
  /** One `ok` or `error` carrying this id (a failed `auth` may then close with `mayClose`). */
  | { k: 'reply'; id: string | number; op: unknown; mayClose?: number[] }
  /**
   * One `error` without id: 400 (no usable id), or for a `send` (an rpc without a reply,
   * which has no id) also 401 before auth and 404 (the server has no rpc method).
   */
  | { k: 'noid'; mayClose?: number[]; codes?: number[] }
  | { k: 'pong' }
  | { k: 'nothing' }
  /** The server closes with one of these codes, without answering. */
  | { k: 'close'; codes: number[]; why: string };

/** What a `send` without id may be answered with (an error without id), besides 400. */
const SEND_CODES = [400, 401, 404];

function isRequestId(v: unknown): v is string | number {
  return (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) || (typeof v === 'string' && v.length > 0 && v.length <= 64);
}

/** A decoded message, by the documented rules. */
function classify(decoded: unknown, authenticated: boolean): Expect {
  const isObject = typeof decoded === 'object' && decoded !== null && !Array.isArray(decoded) && !(decoded instanceof Uint8Array);
  if (!isObject) return { k: 'noid' };
  const m = decoded as Record<string, unknown>;
  if (isRequestId(m.id)) return { k: 'reply', id: m.id, op: m.op, ...(m.op === 'auth' && !authenticated ? { mayClose: CLOSE_AUTH_FAILED } : {}) };
  const keys = Object.keys(m);
  if ((m.op === 'ping' || m.op === 'pong') && keys.length === 1) return { k: m.op === 'ping' ? 'pong' : 'nothing' };
  if (m.op === 'send' && !('id' in m)) return { k: 'noid', codes: SEND_CODES };
  return { k: 'noid' };
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A WebSocket message: size, UTF-8 of a text frame, decoding (the plain decoders: JSON.parse, @msgpack/msgpack), then the rules. */
function expectWs(bytes: Uint8Array, binary: boolean, encoding: Encoding, authenticated: boolean): Expect {
  if (bytes.byteLength > MAX_MESSAGE) return { k: 'close', codes: CLOSE_TOO_BIG, why: `${bytes.byteLength} B > maxMessageSize` };
  if (!binary && !isUtf8(bytes)) return { k: 'close', codes: CLOSE_NOT_UTF8, why: 'text frame not UTF-8' };
  let decoded: unknown;
  try {
    if (encoding === 'json') decoded = JSON.parse(binary ? fatalUtf8.decode(bytes) : Buffer.from(bytes).toString());
    else if (!binary) throw new Error('MessagePack in a text frame');
    else decoded = msgpackDecode(bytes);
  } catch (err) {
    return { k: 'close', codes: CLOSE_MALFORMED, why: `not ${encoding}: ${(err as Error).message}` };
  }
  return classify(decoded, authenticated);
}

// ---------------------------------------------------------------------------
// Running a group of messages on one peer and judging the answers

let nextId = 1;
function uniqueId(): string | number {
  const n = nextId++;
  return n % 2 === 0 ? n : `u${n}`;
}

interface Sent {
  expect: Expect;
  what: string;
}

/**
 * Judge what `peer` received from `from` (an inbox index) for `sent`, given
 * whether the sentinel was answered. Returns the problems.
 */
function judge(peer: Peer, from: number, sent: Sent[], sentinel: string | number | null, sentinelAnswered: boolean): string[] {
  const problems: string[] = [];
  const context = (): string => `\n      inputs: ${sent.map((s, i) => `\n        [${i}] ${s.what}`).join('')}`;
  for (const u of peer.undecodable) problems.push(`${peer.name}: a server message our codec cannot decode: ${u}`);
  peer.undecodable.length = 0;
  const wanted = new Map<string, number>();
  let noid = 0;
  const noidCodes = new Set([400]);
  let pongs = 0;
  const closeCodes = new Set<number>();
  let mustClose: Expect | null = null;
  for (const s of sent) {
    const e = s.expect;
    if (e.k === 'reply') {
      const key = JSON.stringify(e.id);
      wanted.set(key, (wanted.get(key) ?? 0) + 1);
      for (const c of e.mayClose ?? []) closeCodes.add(c);
    } else if (e.k === 'noid') {
      noid++;
      for (const c of e.mayClose ?? []) closeCodes.add(c);
      for (const c of e.codes ?? []) noidCodes.add(c);
    } else if (e.k === 'pong') pongs++;
    else if (e.k === 'close') {
      mustClose = e;
      for (const c of e.codes) closeCodes.add(c);
    }
  }
  const got = new Map<string, number>();
  let gotNoid = 0;
  let gotPongs = 0;
  const carrier = peer instanceof FallbackPeer ? 'session' : 'websocket';
  if (peer.ended) count(`${carrier} close ${peer.ended.code}`);
  /** An error without id: counted, and its code checked against what the group's id-less messages may get. */
  const idless = (m: ServerMessage): void => {
    gotNoid++;
    if (!noidCodes.has(m.code as number)) {
      problems.push(`${peer.name}: an error without id and with code ${String(m.code)} (expected ${[...noidCodes].join(' or ')}): ${short(m)}${context()}`);
    }
  };
  let pastSentinel = false;
  for (const m of peer.inbox.slice(from)) {
    if (typeof m.op === 'string' && PUSH_OPS.has(m.op)) continue;
    if (pastSentinel) {
      // Only a send's refusal may come after the sentinel's reply: a send does not hold up what follows it.
      if (m.op === 'error' && !('id' in m)) {
        count(`${carrier} ${answerKind(m)}`);
        idless(m);
      }
      continue;
    }
    if (m.id !== sentinel) count(`${carrier} ${answerKind(m)}`);
    if (m.op === 'pong') {
      gotPongs++;
      continue;
    }
    if (m.op !== 'ok' && m.op !== 'error') {
      problems.push(`${peer.name}: an unexpected message ${short(m)}${context()}`);
      continue;
    }
    if (sentinel !== null && m.id === sentinel) {
      pastSentinel = true;
      continue;
    }
    if (m.op === 'error') {
      if (typeof m.message !== 'string') problems.push(`${peer.name}: an error without a message: ${short(m)}`);
      if (!('id' in m)) {
        idless(m);
        continue;
      }
      if (!REPLY_CODES.has(m.code as number)) problems.push(`${peer.name}: error code ${String(m.code)} for request ${JSON.stringify(m.id)}: ${short(m)}${context()}`);
    }
    const key = JSON.stringify(m.id);
    got.set(key, (got.get(key) ?? 0) + 1);
    if (!wanted.has(key)) problems.push(`${peer.name}: a reply to an id it was not sent (or twice): ${short(m)}${context()}`);
  }
  const ended = peer.ended;
  if (ended) {
    if (ended.code === 1006) problems.push(`${peer.name}: closed without a close frame (1006)${context()}`);
    else if (ended.code === 1011) problems.push(`${peer.name}: closed with 1011 (internal error) ${JSON.stringify(ended.reason)}${context()}`);
    else if (!closeCodes.has(ended.code)) {
      problems.push(`${peer.name}: closed with ${ended.code} ${JSON.stringify(ended.reason)}; allowed here: ${closeCodes.size > 0 ? [...closeCodes].join(', ') : 'none (it should have stayed open)'}${context()}`);
    }
    // Closing, the server may leave requests still queued unanswered, but never answer one twice.
    for (const [key, n] of got) if (n > (wanted.get(key) ?? 0)) problems.push(`${peer.name}: ${n} replies to ${key}${context()}`);
    if (gotNoid > noid) problems.push(`${peer.name}: ${gotNoid} errors without id, expected at most ${noid}${context()}`);
    return problems;
  }
  if (mustClose && mustClose.k === 'close') problems.push(`${peer.name}: expected a close (${mustClose.codes.join('/')}: ${mustClose.why}); the connection stayed open${context()}`);
  if (!sentinelAnswered && !mustClose) problems.push(`${peer.name}: no answer to the sentinel within ${ANSWER_MS} ms${context()}`);
  if (sentinelAnswered) {
    for (const [key, n] of wanted) {
      const g = got.get(key) ?? 0;
      if (g !== n) problems.push(`${peer.name}: ${g} replies to request ${key}, expected ${n}${context()}`);
    }
    if (gotNoid !== noid) problems.push(`${peer.name}: ${gotNoid} errors without id, expected ${noid}${context()}`);
    if (gotPongs !== pongs) problems.push(`${peer.name}: ${gotPongs} pongs, expected ${pongs}${context()}`);
  }
  return problems;
}

function short(m: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(m) ?? String(m);
  } catch {
    s = String(m);
  }
  return s.length > 300 ? `${s.slice(0, 297)}...` : s;
}

/** The index in `peer.inbox` of the reply to `id`, once it is there. */
function replyIndex(peer: Peer, id: string | number, from = 0): number {
  for (let i = from; i < peer.inbox.length; i++) {
    const m = peer.inbox[i]!;
    if ((m.op === 'ok' || m.op === 'error') && m.id === id) return i;
  }
  return -1;
}

async function awaitReply(peer: Peer, id: string | number, from: number, ms = ANSWER_MS): Promise<ServerMessage | null> {
  try {
    return await peer.wake.until(
      () => {
        const i = replyIndex(peer, id, from);
        if (i !== -1) return peer.inbox[i]!;
        if (peer.ended) return null;
        return undefined;
      },
      ms,
      `${peer.name}: the reply to ${JSON.stringify(id)}`,
    );
  } catch {
    return null;
  }
}

/** When a reply is still missing after the sentinel's, give stragglers (an rpc) a moment. */
async function settle(peer: Peer, sent: Sent[], from: number): Promise<void> {
  const ids = sent.flatMap((s) => (s.expect.k === 'reply' ? [s.expect.id] : []));
  const noid = sent.filter((s) => s.expect.k === 'noid').length;
  const noidSoFar = (): number => peer.inbox.slice(from).filter((m) => m.op === 'error' && !('id' in m)).length;
  await peer.wake
    .until(() => (ids.every((id) => replyIndex(peer, id, from) !== -1) && noidSoFar() >= noid ? true : undefined), 300, 'stragglers')
    .catch(() => undefined);
}

/** The sentinel: a request queued behind everything sent before it; its reply says the others were answered. */
function sentinelMessage(id: string): Record<string, unknown> {
  return { op: 'history', id, channel: 'plain/sentinel', limit: 0 };
}

// ---------------------------------------------------------------------------
// Serializing a message for a WebSocket

function messageDepth(m: Message, id: string | number): number {
  if (m.k === 'envelope') return depthOf(envelopeValue(m, id));
  if (m.k === 'top') return depthOf(m.value);
  if (m.k === 'garbage') return 0;
  return depthOf(envelopeValue(m.of, id));
}

function wsBytes(m: Message, encoding: Encoding, id: string | number): { bytes: Uint8Array; binary: boolean } {
  const enc = (e: Envelope): Uint8Array => (encoding === 'json' ? Buffer.from(toJson(envelopeValue(e, id))) : toMsgpack(envelopeValue(e, id)));
  switch (m.k) {
    case 'envelope':
      return { bytes: enc(m), binary: encoding === 'msgpack' };
    case 'top':
      return { bytes: encoding === 'json' ? Buffer.from(toJson(m.value)) : toMsgpack(m.value), binary: encoding === 'msgpack' };
    case 'garbage':
      return { bytes: m.bytes, binary: !m.text };
    case 'truncated': {
      const whole = enc(m.of);
      return { bytes: whole.subarray(0, Math.floor(whole.byteLength * m.keep)), binary: encoding === 'msgpack' };
    }
    case 'wrong-frame':
      return { bytes: enc(m.of), binary: encoding !== 'msgpack' };
  }
}

// ---------------------------------------------------------------------------
// The plan of a batch

interface WsScript {
  encoding: Encoding;
  groups: Message[][];
}
interface PreAuthScript {
  encoding: Encoding;
  /** Credential at the handshake (index into the token cases), or none: then `auth` messages. */
  header: number | null;
  groups: Message[][];
  authWith: number;
}
interface FallbackScript {
  kind: 'sse' | 'poll';
  groups: Message[][];
  bentPosts: BentPost[];
}
interface BentPost {
  body: string;
  contentType: string;
  label: string;
  expect: number[];
}
interface ApiCall {
  route: string;
  method: string | null;
  auth: 'key' | 'none' | 'wrong' | 'basic' | 'token';
  contentType: string;
  body: { k: 'fields'; fields: Array<[string, Value]> } | { k: 'raw'; text: string; label: string } | { k: 'value'; value: Value } | { k: 'huge' };
  query: Array<[string, string]>;
  /** Use a ticket from this call to connect. */
  useTicket: Encoding | null;
}
interface Open {
  body: string;
  contentType: string;
  token: number | null;
}
interface Plan {
  ws: WsScript[];
  preAuth: PreAuthScript;
  fallback: FallbackScript[];
  api: ApiCall[];
  raw: Uint8Array[];
  opens: Open[];
}

function planArb(tokens: TokenCase[]): fc.Arbitrary<Plan> {
  const wsValues = valueArb({ maxDeep: 12_000, maxWide: 12_000 });
  const apiValues = valueArb({ maxDeep: 160_000, maxWide: 60_000 });
  const tokenLits: Lit[] = tokens.map((t) => plain(t.token, `token(${t.label})`));
  const message = messageArb(wsValues, tokenLits);
  const groups = (max: number, per: number): fc.Arbitrary<Message[][]> => fc.array(fc.array(message, { minLength: 1, maxLength: per }), { minLength: 1, maxLength: max });
  const tokenIndex = fc.nat(tokens.length - 1);
  const channelParam = fc.oneof(
    { arbitrary: fc.constantFrom('hist/bystander', 'hist/other', 'full/room', 'counts/room', 'plain/a', 'ro/news'), weight: 4 },
    { arbitrary: fc.constantFrom('', 'a//b', '#', 'chat/+', '%00', '%ZZ', '\u0000', 'é/ü', 'x'.repeat(5000), '/'), weight: 2 },
    { arbitrary: fc.string({ maxLength: 20 }), weight: 1 },
  );
  const apiValueOrBent = fc.oneof({ arbitrary: apiValues, weight: 4 }, { arbitrary: fc.constantFrom(plain(null), plain(7), plain(''), plain([]), plain({})), weight: 1 });
  const channelValue = fc.oneof({ arbitrary: channelParam.map((c) => plain(c)), weight: 5 }, { arbitrary: apiValueOrBent, weight: 1 });
  const user = fc.oneof(
    { arbitrary: fc.string({ minLength: 1, maxLength: 20 }).map((s) => plain(`ghost-${s}`)), weight: 4 },
    { arbitrary: fc.constantFrom(plain(''), plain('g'.repeat(1025)), plain(7), plain(null), plain(['ghost'])), weight: 2 },
    { arbitrary: apiValues, weight: 1 },
  );
  const apiFields = (route: string): fc.Arbitrary<Array<[string, Value]>> => {
    const spec: Array<[string, fc.Arbitrary<Value>, number]> =
      route === '/api/publish'
        ? [
            ['channel', channelValue, 90],
            ['data', apiValueOrBent, 90],
            ['key', fc.oneof(fc.string({ minLength: 1, maxLength: 10 }).map((s) => plain(s)), fc.constantFrom(plain(''), plain('k'.repeat(1025)), plain(1))), 30],
          ]
        : route === '/api/broadcast'
          ? [
              [
                'channels',
                fc.oneof(
                  { arbitrary: fc.array(channelParam, { minLength: 1, maxLength: 4 }).map((cs) => plain(cs)), weight: 5 },
                  { arbitrary: fc.constantFrom(plain([]), plain('hist/bystander'), plain(new Array(1001).fill('plain/a')), plain([7])), weight: 1 },
                  { arbitrary: apiValues, weight: 1 },
                ),
                90,
              ],
              ['data', apiValueOrBent, 90],
            ]
          : route === '/api/disconnect'
            ? [['user', user, 90]]
            : route === '/api/ticket'
              ? [
                  ['user', fc.oneof(fc.string({ minLength: 1, maxLength: 10 }).map((s) => plain(`hostile-${s}`)), user), 90],
                  ['info', apiValueOrBent, 70],
                ]
              : [['channel', channelValue, 50]];
    return fc
      .tuple(fc.array(fc.nat(99), { minLength: spec.length, maxLength: spec.length }), fc.tuple(...spec.map(([, a]) => a)), fc.option(fc.tuple(fc.constantFrom('__proto__', 'constructor', 'extra'), apiValues), { freq: 8 }))
      .map(([dice, vals, extra]) => {
        const fields: Array<[string, Value]> = [];
        spec.forEach(([name, , p], i) => {
          if (dice[i]! < p) fields.push([name, vals[i]!]);
        });
        if (extra) fields.push(extra);
        return fields;
      });
  };
  const route = fc.oneof(
    { arbitrary: fc.constantFrom('/api/publish', '/api/broadcast', '/api/history', '/api/presence', '/api/disconnect', '/api/ticket'), weight: 10 },
    { arbitrary: fc.constantFrom('/api/stats', '/api/nope', '/api/', '/api/publish/x', '/api/PUBLISH'), weight: 2 },
  );
  const apiCall: fc.Arbitrary<ApiCall> = route.chain((r) =>
    fc.record({
      route: fc.constant(r),
      method: fc.oneof({ arbitrary: fc.constant(null), weight: 8 }, { arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'), weight: 1 }),
      auth: fc.oneof({ arbitrary: fc.constant<'key'>('key'), weight: 10 }, { arbitrary: fc.constantFrom<ApiCall['auth']>('none', 'wrong', 'basic', 'token'), weight: 1 }),
      contentType: fc.oneof({ arbitrary: fc.constant('application/json'), weight: 10 }, { arbitrary: fc.constantFrom('text/plain', '', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/jsonx'), weight: 1 }),
      body: fc.oneof(
        { arbitrary: apiFields(r).map((fields): ApiCall['body'] => ({ k: 'fields', fields })), weight: 12 },
        { arbitrary: apiValues.map((value): ApiCall['body'] => ({ k: 'value', value })), weight: 1 },
        {
          arbitrary: fc
            .oneof(fc.constantFrom('', 'null', '[]', '{', '{"channel":', '{"a":1}{"b":2}', '\u0000', '{"channel":"hist/bystander","data":1e400}'), fc.string({ maxLength: 40 }))
            .map((text): ApiCall['body'] => ({ k: 'raw', text, label: JSON.stringify(text) })),
          weight: 1,
        },
        { arbitrary: fc.constant<ApiCall['body']>({ k: 'huge' }), weight: 1 },
      ),
      query: fc.array(
        fc.tuple(
          fc.constantFrom('channel', 'channel', 'limit', 'since_offset', 'since_epoch', 'x'),
          fc.oneof(channelParam, fc.constantFrom('-1', '1.5', '1e400', '18446744073709551616', 'NaN', '', '0x10', '10', '0'), fc.string({ maxLength: 10 })),
        ),
        { maxLength: 4 },
      ),
      useTicket: fc.oneof({ arbitrary: fc.constant(null), weight: 1 }, { arbitrary: fc.constantFrom<Encoding>('json', 'msgpack'), weight: 2 }),
    }),
  );
  const bentPost: fc.Arbitrary<BentPost> = fc.oneof(
    fc.constantFrom<BentPost>(
      { body: '[]', contentType: 'application/json', label: 'empty batch', expect: [400] },
      { body: '{"op":"ping"}', contentType: 'application/json', label: 'not an array', expect: [400] },
      { body: '[1]', contentType: 'application/json', label: 'element not an object', expect: [400] },
      { body: '[[{"op":"ping"}]]', contentType: 'application/json', label: 'element an array', expect: [400] },
      { body: '[{"op":"ping"}', contentType: 'application/json', label: 'truncated', expect: [400] },
      { body: '[{"op":"ping"}]', contentType: 'text/plain', label: 'text/plain', expect: [415] },
      { body: '[{"op":"ping"}]', contentType: '', label: 'no content type', expect: [415] },
      { body: JSON.stringify(new Array(101).fill({ op: 'pong' })), contentType: 'application/json', label: '101 messages', expect: [400] },
      { body: 'null', contentType: 'application/json', label: 'null', expect: [400] },
    ),
    wsValues
      .filter((v) => !(v.k === 'obj' || ((v.k === 'deep' || v.k === 'wide') && v.shape === 'obj')))
      .map((v): BentPost => ({ body: `[${toJson(v)}]`, contentType: 'application/json', label: `[${describeValue(v)}]`, expect: [] })),
    fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b): BentPost => ({ body: Buffer.from(b).toString('latin1'), contentType: 'application/json', label: `garbage ${Buffer.from(b).toString('hex')}`, expect: [] })),
  );
  const open: fc.Arbitrary<Open> = fc.record({
    body: fc.oneof(
      { arbitrary: fc.constantFrom('{"transport":"sse"}', '{"transport":"poll"}'), weight: 3 },
      { arbitrary: fc.constantFrom('{"transport":"websocket"}', '{"transport":"poll","x":1}', '{"transport":["sse"]}', 'null', '[', '', '{"__proto__":{"transport":"sse"}}', `{"transport":"${'s'.repeat(2000)}"}`, `${'['.repeat(400)}${']'.repeat(400)}`), weight: 3 },
    ),
    contentType: fc.oneof({ arbitrary: fc.constant('application/json'), weight: 5 }, { arbitrary: fc.constantFrom('text/plain', ''), weight: 1 }),
    token: fc.option(tokenIndex, { freq: 2 }),
  });
  return fc.record({
    ws: fc.array(fc.record({ encoding: fc.constantFrom<Encoding>('json', 'msgpack'), groups: groups(5, 4) }), { minLength: 2, maxLength: 4 }),
    preAuth: fc.record({ encoding: fc.constantFrom<Encoding>('json', 'msgpack'), header: fc.option(tokenIndex, { freq: 2 }), groups: groups(2, 3), authWith: tokenIndex }),
    fallback: fc.array(fc.record({ kind: fc.constantFrom<'sse' | 'poll'>('sse', 'poll'), groups: groups(3, 5), bentPosts: fc.array(bentPost, { maxLength: 2 }) }), { minLength: 1, maxLength: 2 }),
    api: fc.array(apiCall, { minLength: 4, maxLength: 12 }),
    raw: fc.array(rawFrameArb, { maxLength: 1 }),
    opens: fc.array(open, { maxLength: 2 }),
  });
}

// ---------------------------------------------------------------------------
// The well-behaved side: a publisher and two bystanders

interface Published {
  source: 'ws' | 'api';
  seq: number;
}

class Publisher {
  peer!: WsPeer;
  readonly acked = { ws: 0, api: 0 };
  private seq = { ws: 0, api: 0 };
  readonly problems: string[] = [];
  private running: Promise<void> | null = null;
  private stopping = false;

  constructor(private server: () => ServeProcess) {}

  async connect(): Promise<void> {
    this.peer = new WsPeer('publisher', this.server().url, 'json', { Authorization: `Bearer ${signToken('publisher', SECRET)}` });
    await this.peer.opened();
  }

  /** One publication by WebSocket and, every third time, one by the HTTP API; both must be acknowledged. */
  async publishOne(): Promise<Array<{ offset: number; epoch: string }>> {
    const results: Array<{ offset: number; epoch: string }> = [];
    const seq = ++this.seq.ws;
    const id = `pub-${seq}`;
    const from = this.peer.inbox.length;
    this.peer.request({ op: 'pub', id, channel: BYSTANDER_CHANNEL, data: { source: 'ws', seq } satisfies Published });
    const reply = await awaitReply(this.peer, id, from);
    if (reply?.op !== 'ok') {
      this.problems.push(`publisher: pub ${seq} answered ${reply ? short(reply) : `nothing (connection ${this.peer.ended ? `closed ${this.peer.ended.code}` : 'open'})`}`);
      this.seq.ws--;
      throw new Error(this.problems.at(-1));
    }
    this.acked.ws = seq;
    results.push({ offset: reply.offset as number, epoch: reply.epoch as string });
    if (seq % 3 === 0) {
      const aseq = ++this.seq.api;
      const res = await api('/api/publish', JSON.stringify({ channel: BYSTANDER_CHANNEL, data: { source: 'api', seq: aseq } satisfies Published }));
      if (res.status !== 200) {
        this.problems.push(`publisher: /api/publish ${aseq} answered ${res.status} ${res.text.slice(0, 200)}`);
        this.seq.api--;
        throw new Error(this.problems.at(-1));
      }
      this.acked.api = aseq;
      const body = JSON.parse(res.text) as { offset: number; epoch: string };
      results.push({ offset: body.offset, epoch: body.epoch });
    }
    return results;
  }

  /** Publish every ~15 ms until stop() (at most 5000 times). */
  start(): void {
    this.stopping = false;
    this.running = (async () => {
      for (let i = 0; i < 5000 && !this.stopping; i++) {
        await this.publishOne();
        await sleep(15);
      }
    })().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await within(this.running ?? Promise.resolve(), 2 * ANSWER_MS + 2000, 'the publisher to stop').catch(() => undefined);
    this.running = null;
  }
}

let apiBase = '';
function api(path: string, body?: string, method?: string): Promise<HttpAnswer> {
  return httpRequest(apiBase, path, { method, body, headers: { Authorization: `Bearer ${API_KEY}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) } });
}

class Bystander {
  peer!: WsPeer;
  epoch = '';
  lastOffset = 0;
  readonly seen = { ws: 0, api: 0 };
  readonly problems: string[] = [];
  private scanned = 0;

  constructor(
    readonly name: string,
    readonly encoding: Encoding,
  ) {}

  /** Connect, subscribe (with `since` to resume); returns the `sub` reply. Also in a presence room, to get join/leave pushes. */
  async connect(url: string, since?: { offset: number; epoch: string }): Promise<ServerMessage> {
    this.peer = new WsPeer(this.name, url, this.encoding, { Authorization: `Bearer ${signToken(this.name, SECRET)}` });
    this.scanned = 0;
    await this.peer.opened();
    const id = 'sub-1';
    this.peer.request({ op: 'sub', id, channel: BYSTANDER_CHANNEL, ...(since ? { since } : {}) });
    const reply = await awaitReply(this.peer, id, 0);
    assert.equal(reply?.op, 'ok', `${this.name}: sub answered ${short(reply)}`);
    const position = reply!.position as { offset: number; epoch: string };
    if (!since || reply!.recovered !== true) {
      this.epoch = position.epoch;
      this.lastOffset = position.offset;
    }
    this.peer.request({ op: 'sub', id: 'sub-2', channel: this.encoding === 'json' ? 'full/room' : 'counts/room', presence: true });
    assert.equal((await awaitReply(this.peer, 'sub-2', 0))?.op, 'ok', `${this.name}: sub to the presence room`);
    return reply!;
  }

  /** Check what arrived since the last scan: the channel's offsets one by one in one epoch, each source's sequence in order. */
  scan(): void {
    for (; this.scanned < this.peer.inbox.length; this.scanned++) {
      const m = this.peer.inbox[this.scanned]!;
      if (m.op !== 'msg' || m.channel !== BYSTANDER_CHANNEL) continue;
      if (m.volatile === true) continue;
      if (m.epoch !== this.epoch || m.offset !== this.lastOffset + 1) {
        this.problems.push(`${this.name}: got offset ${String(m.offset)} epoch ${String(m.epoch)} after offset ${this.lastOffset} epoch ${this.epoch} (a gap, a duplicate or a new epoch): ${short(m)}`);
      }
      this.lastOffset = m.offset as number;
      this.epoch = m.epoch as string;
      const data = m.data as Partial<Published> | null;
      const fromPublisher = data !== null && typeof data === 'object' && (data.source === 'ws' || data.source === 'api') && typeof data.seq === 'number';
      if (!fromPublisher) continue;
      // A hostile client may publish look-alikes; the real ones come from the publisher (ws) or the server (api: no `from`).
      const from = m.from as { user?: string } | undefined;
      if (data.source === 'ws' ? from?.user !== 'publisher' : from !== undefined) continue;
      const source = data.source!;
      if (data.seq !== this.seen[source] + 1) this.problems.push(`${this.name}: ${source} publication ${data.seq} after ${this.seen[source]} (out of order or missing)`);
      this.seen[source] = Math.max(this.seen[source], data.seq!);
    }
    for (const u of this.peer.undecodable.splice(0)) this.problems.push(`${this.name}: a server message our codec cannot decode: ${u}`);
  }

  /** Wait until everything the publisher had acknowledged has arrived (and check it). */
  async caughtUp(acked: { ws: number; api: number }, ms = ANSWER_MS): Promise<void> {
    try {
      await this.peer.wake.until(
        () => {
          this.scan();
          if (this.peer.ended) throw new Error(`${this.name}: its connection closed (${this.peer.ended.code} ${this.peer.ended.reason})`);
          return this.seen.ws >= acked.ws && this.seen.api >= acked.api ? true : undefined;
        },
        ms,
        `${this.name} to receive ws publication ${acked.ws} and api publication ${acked.api} (it has ${this.seen.ws} and ${this.seen.api})`,
      );
    } catch (err) {
      this.problems.push((err as Error).message);
    }
  }
}

// ---------------------------------------------------------------------------
// Hostile peers

interface Ctx {
  server: ServeProcess;
  tokens: TokenCase[];
  problems: string[];
  /** Every peer opened in this batch, closed at its end. */
  peers: Array<WsPeer | FallbackPeer>;
}

let peerCount = 0;

/** Send groups of messages on a WebSocket; a connection a message closed (as it should) is replaced by a new one. */
async function runWsGroups(ctx: Ctx, encoding: Encoding, groups: Message[][], connect: () => Promise<WsPeer | null>, authenticated: () => boolean, first: WsPeer): Promise<WsPeer | null> {
  let peer: WsPeer | null = first;
  for (const group of groups) {
    if (!peer || !peer.open) {
      peer = await connect();
      if (!peer) return null;
    }
    const from = peer.inbox.length;
    const sent: Sent[] = [];
    let closing = false;
    for (const m of group) {
      const id = uniqueId();
      const { bytes, binary } = wsBytes(m, encoding, id);
      const expect = expectWs(bytes, binary, encoding, authenticated());
      const depth = messageDepth(m, id);
      const what = `${describeMessage(m, id)} [${encoding}, ${binary ? 'binary' : 'text'} frame, ${bytes.byteLength} B, depth ${depth}]`;
      note(peer.name, what, depth);
      sent.push({ expect, what });
      peer.send(bytes, binary);
      if (expect.k === 'close' || (expect.k === 'reply' && expect.mayClose)) {
        // Whatever may close the connection ends the group: what follows a close is not read.
        closing = expect.k === 'close';
        break;
      }
    }
    let sentinel: string | null = null;
    let answered = false;
    if (!closing) {
      sentinel = `s${nextId++}`;
      peer.request(sentinelMessage(sentinel));
      answered = (await awaitReply(peer, sentinel, from)) !== null;
      if (answered) await settle(peer, sent, from);
    } else {
      await peer.wake.until(() => (peer!.ended ? true : undefined), ANSWER_MS, 'close').catch(() => undefined);
    }
    const problems = judge(peer, from, sent, sentinel, answered);
    ctx.problems.push(...problems);
    if (problems.length > 0 || peer.ended?.code === 1006) return peer;
  }
  return peer;
}

async function hostileWs(ctx: Ctx, script: WsScript): Promise<void> {
  const name = `ws-${script.encoding}-${++peerCount}`;
  const token = signToken('hostile', SECRET);
  const connect = async (): Promise<WsPeer | null> => {
    const peer = new WsPeer(name, ctx.server.url, script.encoding, { Authorization: `Bearer ${token}` });
    ctx.peers.push(peer);
    try {
      await peer.opened();
      return peer;
    } catch (err) {
      ctx.problems.push(`${name}: could not connect: ${(err as Error).message}`);
      return null;
    }
  };
  const first = await connect();
  if (!first) return;
  await runWsGroups(ctx, script.encoding, script.groups, connect, () => true, first);
}

/** A connection that is not authenticated yet: requests first (401 / 400), then `auth` with a token of any kind; if it passes, a presence subscription. */
async function hostilePreAuth(ctx: Ctx, script: PreAuthScript): Promise<void> {
  const name = `preauth-${script.encoding}-${++peerCount}`;
  const header = script.header === null ? null : ctx.tokens[script.header]!;
  const peer = new WsPeer(name, ctx.server.url, script.encoding, header ? { Authorization: `Bearer ${header.token}` } : {});
  ctx.peers.push(peer);
  note(name, `upgrade with ${header ? `Authorization: token(${header.label})` : 'no credential'}`);
  const status = await peer.outcome().catch(() => 0);
  if (header) {
    const allowed = header.kind === 'valid' ? [101] : header.kind === 'invalid' ? [401] : [101, 401];
    if (!allowed.includes(status)) ctx.problems.push(`${name}: the upgrade with token(${header.label}) answered ${status}, expected ${allowed.join(' or ')}`);
    if (status !== 101) return;
  } else if (status !== 101) {
    ctx.problems.push(`${name}: the upgrade without credential answered ${status}`);
    return;
  }
  const authenticated = header !== null;
  const after = await runWsGroups(ctx, script.encoding, script.groups, async () => null, () => authenticated, peer);
  if (!after || !after.open || authenticated) return;
  // An `auth` among the generated messages may have succeeded already (its ok carries client and user).
  if (after.inbox.some((m) => m.op === 'ok' && typeof m.client === 'string' && typeof m.user === 'string')) return;
  // auth with a token of any kind.
  const t = ctx.tokens[script.authWith]!;
  const id = uniqueId();
  const from = after.inbox.length;
  note(name, `auth with token(${t.label})`);
  after.request({ op: 'auth', id, token: t.token });
  const reply = await awaitReply(after, id, from);
  if (!reply) {
    ctx.problems.push(`${name}: no answer to auth with token(${t.label})`);
    return;
  }
  const allowed = t.kind === 'valid' ? ['ok'] : t.kind === 'invalid' ? ['error'] : ['ok', 'error'];
  if (!allowed.includes(reply.op as string)) ctx.problems.push(`${name}: auth with token(${t.label}) answered ${short(reply)}`);
  if (reply.op === 'error') {
    if (!(reply.code === 401 || reply.code === 400)) ctx.problems.push(`${name}: auth with token(${t.label}) answered ${short(reply)} (expected 401)`);
    // A failed auth closes the connection (4500; 4002 for an expired token).
    await after.wake.until(() => (after.ended ? true : undefined), reply.code === 401 ? ANSWER_MS : 500, 'close').catch(() => undefined);
    if (reply.code === 401 && !after.ended) ctx.problems.push(`${name}: auth failed with 401 but the connection stayed open`);
    if (after.ended && !CLOSE_AUTH_FAILED.includes(after.ended.code)) ctx.problems.push(`${name}: after a failed auth, closed with ${after.ended.code} (expected 4500 or 4002)`);
    return;
  }
  // Identity with odd claims: join a presence room and publish (both carry the identity's info to others).
  const sid = uniqueId();
  const pid = uniqueId();
  note(name, `sub full/room presence + pub hist/bystander as token(${t.label})`, t.depth);
  after.request({ op: 'sub', id: sid, channel: 'full/room', presence: true });
  after.request({ op: 'pub', id: pid, channel: BYSTANDER_CHANNEL, data: 'from an identity with odd claims' });
  for (const rid of [sid, pid]) {
    const r = await awaitReply(after, rid, from);
    if (!r || (r.op === 'error' && !REPLY_CODES.has(r.code as number))) ctx.problems.push(`${name} (token ${t.label}): request ${rid} answered ${short(r)}`);
  }
}

function fallbackBody(group: Message[], id: () => string | number): { texts: string[]; sent: Sent[]; depths: number[]; killer: boolean } {
  const depths: number[] = [];
  const texts: string[] = [];
  const sent: Sent[] = [];
  for (const m of group) {
    if (m.k !== 'envelope') continue;
    const mid = id();
    const v = envelopeValue(m, mid);
    const text = toJson(v);
    let element: unknown;
    try {
      element = JSON.parse(text);
    } catch {
      continue;
    }
    // The server re-serializes each message (JSON.stringify) and applies the WebSocket limits to
    // that; an entry too deep to re-serialize gets error 400 "message nested too deep" instead
    // (docs/protocol.md, Application data). Where that happens depends on the stack left at the
    // time, here and there: from 1000 levels on, either answer is right.
    const depth = depthOf(v);
    let size: number;
    let uncertain = depth >= 1000;
    try {
      size = Buffer.byteLength(JSON.stringify(element));
    } catch {
      uncertain = true;
      // Re-serialized JSON is never longer than ours (canonical strings and keys; 1e400 becomes null).
      size = Buffer.byteLength(text);
    }
    // Too close to the limit to tell which side an estimate falls on: not sent.
    if (uncertain && Math.abs(size - MAX_MESSAGE) < 4096) continue;
    const what = `${describeMessage(m, mid)} [json, ${size} B re-serialized, depth ${depth}]`;
    depths.push(depth);
    texts.push(text);
    if (size > MAX_MESSAGE && !uncertain) {
      sent.push({ expect: { k: 'close', codes: CLOSE_TOO_BIG, why: `${size} B > maxMessageSize` }, what });
      return { texts, sent, depths, killer: true };
    }
    const expect = classify(element, true);
    if (size > MAX_MESSAGE && (expect.k === 'reply' || expect.k === 'noid')) {
      // Closed with 1009 (nothing after it runs) or refused as too deep (the batch goes on): the last entry here.
      sent.push({ expect: { ...expect, mayClose: CLOSE_TOO_BIG }, what });
      break;
    }
    sent.push({ expect, what });
  }
  return { texts, sent, depths, killer: false };
}

async function hostileFallback(ctx: Ctx, script: FallbackScript): Promise<void> {
  const name = `${script.kind}-${++peerCount}`;
  const headers = { Authorization: `Bearer ${signToken('hostile', SECRET)}` };
  const open = async (): Promise<FallbackPeer | null> => {
    const p = await FallbackPeer.open(name, ctx.server.base, script.kind, headers).catch((err: Error) => err);
    if (p instanceof FallbackPeer) {
      ctx.peers.push(p);
      return p;
    }
    ctx.problems.push(`${name}: could not open a session: ${p instanceof Error ? p.message : `${p.status} ${p.text}`}`);
    return null;
  };
  let peer = await open();
  if (!peer) return;
  for (const bent of script.bentPosts) {
    note(name, `POST ${bent.label} (${bent.contentType || 'no content type'})`);
    const res = await peer.post(bent.body, bent.contentType).catch((err: Error) => ({ status: 0, text: err.message, headers: {} }));
    count(`session bent POST ${res.status}`);
    const allowed = bent.expect.length > 0 ? bent.expect : [400, 413];
    if (!allowed.includes(res.status)) ctx.problems.push(`${name}: POST ${bent.label} answered ${res.status} ${res.text.slice(0, 200)}, expected ${allowed.join('/')}`);
    else if (!isJsonError(res.text)) ctx.problems.push(`${name}: POST ${bent.label} answered ${res.status} without a JSON error: ${res.text.slice(0, 200)}`);
  }
  for (const group of script.groups) {
    if (!peer || peer.ended) {
      peer = await open();
      if (!peer) return;
    }
    const { texts, sent, depths, killer } = fallbackBody(group, uniqueId);
    if (texts.length === 0) continue;
    const from = peer.inbox.length;
    const sentinel = `s${nextId++}`;
    const body = `[${[...texts, JSON.stringify(sentinelMessage(sentinel))].join(',')}]`;
    sent.forEach((s, i) => note(peer!.name, s.what, depths[i]));
    const res = await peer.post(body).catch((err: Error) => ({ status: 0, text: err.message, headers: {} }));
    count(`session POST ${res.status}`);
    if (res.status !== 204) {
      ctx.problems.push(`${peer.name}: POST of ${texts.length} messages answered ${res.status} ${res.text.slice(0, 300)}\n      inputs: ${sent.map((s) => `\n        ${s.what}`).join('')}`);
      continue;
    }
    let answered = false;
    if (!killer) {
      answered = (await awaitReply(peer, sentinel, from)) !== null;
      if (answered) await settle(peer, sent, from);
    } else {
      const p = peer;
      await p.wake.until(() => (p.ended ? true : undefined), ANSWER_MS, 'close').catch(() => undefined);
    }
    ctx.problems.push(...judge(peer, from, sent, killer ? null : sentinel, answered));
    for (const e of peer.receiverErrors.splice(0)) ctx.problems.push(`${peer.name}: ${e}`);
  }
}

function isJsonError(text: string): boolean {
  try {
    const body = JSON.parse(text) as { error?: unknown };
    return typeof body.error === 'string';
  } catch {
    return false;
  }
}

const RIGHT_METHOD: Record<string, string> = {
  '/api/publish': 'POST',
  '/api/broadcast': 'POST',
  '/api/disconnect': 'POST',
  '/api/ticket': 'POST',
  '/api/history': 'GET',
  '/api/presence': 'GET',
  '/api/stats': 'GET',
};

/** The statuses docs/http-api.md allows for this call, checked in the documented order (key, route, method, content type, size, body). */
function expectedApi(call: ApiCall, method: string, bodySize: number): number[] {
  const right = RIGHT_METHOD[call.route];
  const json = /^application\/json\s*(;|$)/i.test(call.contentType);
  if (call.route === '/api/ticket') {
    if (method !== 'POST') return [405];
    if (call.auth === 'none' || call.auth === 'basic' || call.auth === 'wrong') return [401];
    if (call.auth === 'token') return [200];
    if (!json) return [415];
    if (bodySize > API_BODY_LIMIT) return [413];
    return [200, 400, 413];
  }
  if (call.auth !== 'key') return [401];
  if (!right) return [404];
  if (method !== right) return [405];
  if (right === 'POST') {
    if (!json) return [415];
    if (bodySize > API_BODY_LIMIT) return [413];
  }
  if (call.route === '/api/stats') return [200];
  return [200, 400, 413];
}

async function hostileApi(ctx: Ctx, call: ApiCall): Promise<void> {
  const method = call.method ?? RIGHT_METHOD[call.route] ?? 'POST';
  let body: string | undefined;
  let label: string;
  let depth = 0;
  if (call.body.k === 'fields') {
    const v: Value = { k: 'obj', entries: call.body.fields.map(([k, x]) => [strKey(k), x]) };
    body = toJson(v);
    label = describeValue(v, 300);
    depth = depthOf(v);
  } else if (call.body.k === 'value') {
    body = toJson(call.body.value);
    label = describeValue(call.body.value, 300);
    depth = depthOf(call.body.value);
  } else if (call.body.k === 'raw') {
    body = call.body.text;
    label = call.body.label;
  } else {
    body = `{"channel":"plain/a","data":"${'x'.repeat(API_BODY_LIMIT)}"}`;
    label = 'a body over 1 MiB';
  }
  const sendBody = method !== 'GET' && method !== 'DELETE';
  const bodySize = sendBody ? Buffer.byteLength(body) : 0;
  const query = call.query.length > 0 ? `?${new URLSearchParams(call.query).toString()}` : '';
  const headers: Record<string, string> = {};
  if (call.contentType) headers['Content-Type'] = call.contentType;
  const auth = { key: `Bearer ${API_KEY}`, none: '', wrong: 'Bearer not-the-key-0123456789', basic: `Basic ${Buffer.from(`x:${API_KEY}`).toString('base64')}`, token: `Bearer ${signToken('hostile', SECRET)}` }[call.auth];
  if (auth) headers.Authorization = auth;
  const what = `${method} ${call.route}${query.slice(0, 200)} (${call.auth}, ${call.contentType || 'no content type'}, ${bodySize} B) ${sendBody ? label : ''}`;
  note('api', what, sendBody ? depth : 0);
  const expected = expectedApi(call, method, bodySize);
  let res: HttpAnswer;
  const tallied = (r: HttpAnswer): HttpAnswer => {
    count(`api ${r.status}${r.status === 400 && /nested deeper/.test(r.text) ? ' (too deep)' : ''}`);
    return r;
  };
  try {
    res = tallied(await httpRequest(ctx.server.base, call.route + query, { method, headers, body: sendBody ? body : undefined, ms: 15_000 }));
  } catch (err) {
    // Refused before the body is read (413 on the declared length, 401, 405, 415): the server answers
    // and may close the connection before a large body is all sent; the client then may never read
    // the answer (EPIPE / ECONNRESET). It was refused either way.
    const code = (err as NodeJS.ErrnoException).code;
    const early = bodySize > API_BODY_LIMIT || (bodySize > 65_536 && !expected.includes(200));
    if (early && (code === 'EPIPE' || code === 'ECONNRESET')) {
      count('api refused, connection cut before the whole body was sent');
      return;
    }
    ctx.problems.push(`api: ${what}: ${(err as Error).message}`);
    return;
  }
  if (!expected.includes(res.status)) {
    ctx.problems.push(`api: ${what} answered ${res.status} ${res.text.slice(0, 300)}; expected ${expected.join('/')}`);
    return;
  }
  if (res.status >= 400) {
    if (!isJsonError(res.text)) ctx.problems.push(`api: ${what} answered ${res.status} without a JSON error: ${res.text.slice(0, 200)}`);
    if (res.status === 405 && !res.headers.allow) ctx.problems.push(`api: ${what} answered 405 without Allow`);
    return;
  }
  let answer: Record<string, unknown>;
  try {
    answer = JSON.parse(res.text) as Record<string, unknown>;
  } catch {
    ctx.problems.push(`api: ${what} answered 200 with a body that is not JSON: ${res.text.slice(0, 200)}`);
    return;
  }
  if (call.route === '/api/publish' && !(typeof answer.offset === 'number' && typeof answer.epoch === 'string')) ctx.problems.push(`api: ${what} answered ${short(answer)}`);
  if (call.route === '/api/disconnect' && answer.disconnected !== 0) ctx.problems.push(`api: ${what} disconnected ${String(answer.disconnected)} connections of a user nobody is connected as`);
  if (call.route === '/api/ticket' && call.auth === 'key' && call.useTicket && typeof answer.ticket === 'string') await useTicket(ctx, answer.ticket, call.useTicket, depth);
}

/** Connect with a ticket whose identity came from a hostile body: join a presence room and publish (both carry the identity's info). */
async function useTicket(ctx: Ctx, ticket: string, encoding: Encoding, depth: number): Promise<void> {
  const name = `ticket-${encoding}-${++peerCount}`;
  const peer = new WsPeer(name, `${ctx.server.url}?ticket=${encodeURIComponent(ticket)}`, encoding);
  ctx.peers.push(peer);
  note(name, 'connect with the ticket (its info from the body above); sub full/room presence; pub hist/bystander', depth);
  const status = await peer.outcome().catch(() => 0);
  if (status !== 101) {
    ctx.problems.push(`${name}: the upgrade with a fresh ticket answered ${status}`);
    return;
  }
  const sid = uniqueId();
  const pid = uniqueId();
  peer.request({ op: 'sub', id: sid, channel: 'full/room', presence: true });
  peer.request({ op: 'pub', id: pid, channel: BYSTANDER_CHANNEL, data: 'from a ticket identity' });
  for (const rid of [sid, pid]) {
    const r = await awaitReply(peer, rid, 0);
    if (!r || (r.op === 'error' && !REPLY_CODES.has(r.code as number))) ctx.problems.push(`${name}: request ${rid} answered ${short(r)}${peer.ended ? ` (closed ${peer.ended.code})` : ''}`);
  }
}

async function hostileRaw(ctx: Ctx, bytes: Uint8Array): Promise<void> {
  const name = `raw-${++peerCount}`;
  const peer = new WsPeer(name, ctx.server.url, 'json', { Authorization: `Bearer ${signToken('hostile', SECRET)}` });
  ctx.peers.push(peer);
  try {
    await peer.opened();
  } catch (err) {
    ctx.problems.push(`${name}: ${(err as Error).message}`);
    return;
  }
  note(name, `raw bytes under the framing: ${Buffer.from(bytes).toString('hex').slice(0, 120)}`);
  peer.writeRaw(bytes);
  // A frame cut short waits for the rest: no close is an answer too.
  await peer.wake.until(() => (peer.ended ? true : undefined), 500, 'close').catch(() => undefined);
  count(`raw frame bytes: ${peer.ended ? `close ${peer.ended.code}` : 'no close (a frame cut short)'}`);
  if (peer.ended && !CLOSE_RAW.has(peer.ended.code)) ctx.problems.push(`${name}: raw bytes ${Buffer.from(bytes).toString('hex').slice(0, 80)} → closed with ${peer.ended.code} ${JSON.stringify(peer.ended.reason)} (expected one of ${[...CLOSE_RAW].join(', ')})`);
  for (const u of peer.undecodable) ctx.problems.push(`${name}: a server message our codec cannot decode: ${u}`);
  peer.terminate();
}

async function hostileOpen(ctx: Ctx, o: Open): Promise<void> {
  const token = o.token === null ? null : ctx.tokens[o.token]!;
  const headers: Record<string, string> = {};
  if (o.contentType) headers['Content-Type'] = o.contentType;
  if (token) headers.Authorization = `Bearer ${token.token}`;
  const what = `POST /rt/session ${o.body.slice(0, 60)} (${o.contentType || 'no content type'}, ${token ? `token(${token.label})` : 'no credential'})`;
  note('open', what);
  // The documented order: content type, size, JSON, shape, then the credential.
  let expected: number[];
  let parsed: unknown;
  const parses = ((): boolean => {
    try {
      parsed = JSON.parse(o.body);
      return true;
    } catch {
      return false;
    }
  })();
  const p = parsed as Record<string, unknown> | null;
  const shapeOk = parses && typeof p === 'object' && p !== null && !Array.isArray(p) && (p.transport === 'sse' || p.transport === 'poll') && Object.keys(p).length === 1;
  if (!/^application\/json\s*(;|$)/i.test(o.contentType)) expected = [415];
  else if (Buffer.byteLength(o.body) > 1024) expected = [413];
  else if (!shapeOk) expected = [400];
  else if (token?.kind === 'invalid') expected = [401];
  else if (token?.kind === 'either') expected = [201, 401];
  else expected = [201];
  const res = await httpRequest(ctx.server.base, '/rt/session', { body: o.body, headers }).catch((err: Error) => ({ status: 0, text: err.message, headers: {} }));
  count(`session open ${res.status}`);
  if (!expected.includes(res.status)) ctx.problems.push(`open: ${what} answered ${res.status} ${res.text.slice(0, 200)}; expected ${expected.join('/')}`);
  else if (res.status !== 201 && !isJsonError(res.text)) ctx.problems.push(`open: ${what} answered ${res.status} without a JSON error`);
  if (res.status === 201) {
    const { session } = JSON.parse(res.text) as { session: string };
    await httpRequest(ctx.server.base, `/rt/session/${session}`, { method: 'DELETE' }).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------
// Reports

function report(server: ServeProcess, batch: number, problems: string[]): string {
  const trouble = server.trouble();
  const lines = [`serve fuzz: batch ${batch} failed (seed ${SEED}; replay with SWITCHBOARD_FUZZ_SEED=${SEED} SWITCHBOARD_FUZZ_SECONDS=${FUZZ_SECONDS})`];
  if (trouble) {
    lines.push(`  THE SERVER: ${trouble}`);
    const end = server.exit?.at ?? Date.now();
    // What an encoder or decoder is most likely to choke on: the deepest inputs of the last seconds (a large
    // request may take a while to arrive and be read), the most recent first.
    const suspects = journal.filter((e) => e.at <= end && e.at >= end - 3000 && e.depth >= 100).sort((a, b) => b.at - a.at);
    lines.push(`  inputs nested 100+ levels sent in the 3 s before ${server.exit ? 'it exited' : 'now'} (the likely cause; ${suspects.length}, the last 10):`);
    for (const e of suspects.slice(0, 10)) lines.push(`    -${end - e.at} ms ${e.who}: ${e.what} (depth ${e.depth})`);
    const recent = journal.filter((e) => e.at <= end && e.at >= end - 500);
    lines.push(`  all inputs of the last 500 ms (${recent.length}, the last 25):`);
    for (const e of recent.slice(-25)) lines.push(`    -${end - e.at} ms ${e.who}: ${e.what}`);
  }
  const unique = [...new Set(problems)];
  lines.push(`  ${unique.length} problem(s)${unique.length > 30 ? ' (first 30)' : ''}:`);
  for (const p of unique.slice(0, 30)) lines.push(`  - ${p}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------
// The test

describe('switchboard serve under generated hostile input on every entry point', () => {
  let dir = '';
  let configPath = '';
  let snapshotPath = '';
  let server: ServeProcess | undefined;
  const all: Array<WsPeer | FallbackPeer> = [];
  const publisher = new Publisher(() => server!);
  const bystanders = [new Bystander('bystander-json', 'json'), new Bystander('bystander-msgpack', 'msgpack')];
  let fuzzed = false;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'switchboard-serve-fuzz-'));
    configPath = join(dir, 'switchboard.json');
    snapshotPath = join(dir, 'history.sb');
    writeFileSync(configPath, JSON.stringify(CONFIG, null, 2));
    server = await startServe(configPath, snapshotPath);
    apiBase = server.base;
    await publisher.connect();
    for (const b of bystanders) await b.connect(server.url);
    process.stdout.write(`# serve fuzz: seed ${SEED}, ${FUZZ_SECONDS} s (SWITCHBOARD_FUZZ_SEED / SWITCHBOARD_FUZZ_SECONDS)\n`);
  });

  after(async () => {
    await publisher.stop().catch(() => undefined);
    for (const p of [...all, publisher.peer, ...bystanders.map((b) => b.peer)]) p?.terminate();
    killServe(server);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test(`every answer documented; the process, a bystander's publications and history intact (${FUZZ_SECONDS} s)`, { timeout: (FUZZ_SECONDS + 60) * 1000 }, async () => {
    const tokens = tokenCases();
    const plans = planArb(tokens);
    const deadline = Date.now() + FUZZ_SECONDS * 1000;
    let batches = 0;
    let inputs = 0;
    for (let batch = 0; batch < MAX_BATCHES && Date.now() < deadline; batch++) {
      const plan = fc.sample(plans, { seed: (SEED + batch * 7919) | 0, numRuns: 1 })[0]!;
      journal.length = 0;
      const ctx: Ctx = { server: server!, tokens, problems: [], peers: [] };
      publisher.start();
      const work = [
        ...plan.ws.map((s) => hostileWs(ctx, s)),
        hostilePreAuth(ctx, plan.preAuth),
        ...plan.fallback.map((s) => hostileFallback(ctx, s)),
        ...plan.raw.map((b) => hostileRaw(ctx, b)),
        ...plan.opens.map((o) => hostileOpen(ctx, o)),
        // HTTP API calls one after the other (each may carry up to 1 MiB).
        (async () => {
          for (const call of plan.api) await hostileApi(ctx, call);
        })(),
      ].map((p) => p.catch((err: Error) => ctx.problems.push(`unexpected: ${err.stack ?? err.message}`)));
      await within(Promise.all(work), BATCH_MS, `batch ${batch}`).catch((err: Error) => ctx.problems.push(err.message));
      await publisher.stop();
      ctx.problems.push(...publisher.problems.splice(0));
      for (const b of bystanders) {
        await b.caughtUp(publisher.acked);
        ctx.problems.push(...b.problems.splice(0));
      }
      for (const p of ctx.peers) {
        if (p instanceof WsPeer) await p.close(1000);
        else await p.close();
      }
      all.push(...ctx.peers);
      inputs += journal.length;
      batches++;
      if (server!.trouble() || ctx.problems.length > 0) assert.fail(report(server!, batch, ctx.problems));
    }
    process.stdout.write(`# serve fuzz: ${batches} batches, ${inputs} inputs, ${publisher.acked.ws + publisher.acked.api} publications of the well-behaved publisher delivered\n`);
    const answers = [...tally].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}: ${n}`);
    process.stdout.write(`# serve fuzz: answers: ${answers.join(', ')}\n`);
    assert.ok(batches > 0);
    fuzzed = true;
  });

  test('graceful restart with the same snapshot file: the bystanders resume with since, recovered: true, exactly what they missed', { timeout: 60_000 }, async () => {
    assert.ok(fuzzed, 'the fuzz phase failed: see the test before');
    const s1 = server!;
    const positions = bystanders.map((b) => ({ offset: b.lastOffset, epoch: b.epoch }));
    assert.deepEqual(positions[0], positions[1], 'both bystanders at the same position before the stop');

    // SIGTERM: every client gets `closing` and 1001; the process exits 0 after the final snapshot.
    process.kill(s1.pid, 'SIGTERM');
    for (const b of bystanders.concat([])) {
      await b.peer.wake.until(() => (b.peer.ended ? true : undefined), 10_000, `${b.name} to be closed`);
      assert.ok(b.peer.inbox.some((m) => m.op === 'closing'), `${b.name} got no closing`);
      assert.equal(b.peer.ended!.code, 1001, `${b.name} closed with ${b.peer.ended!.code}`);
    }
    const exit = await within(s1.exited, 15_000, 'serve to exit after SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, `exit after SIGTERM; ${s1.trouble() ?? ''}`);
    const trouble = s1.stderr.filter((l) => !l.startsWith('switchboard: http://')).concat(s1.logs.filter((l) => typeof l.level === 'number' && l.level >= 50).map((l) => JSON.stringify(l)));
    assert.deepEqual(trouble, [], 'errors at the graceful stop (a snapshot not saved?)');

    // The same config and snapshot file; publications the bystanders miss, by WebSocket and the API.
    server = await startServe(configPath, snapshotPath);
    apiBase = server.base;
    await publisher.connect();
    const missed: Array<{ offset: number; epoch: string }> = [];
    for (let i = 0; i < 6; i++) missed.push(...(await publisher.publishOne()));
    assert.ok(missed.length >= 8);
    assert.deepEqual(
      missed.map((m) => [m.offset, m.epoch]),
      missed.map((_, i) => [positions[0]!.offset + 1 + i, positions[0]!.epoch]),
      'after a graceful restart the channel goes on in the same epoch, offsets one by one',
    );

    for (const [i, b] of bystanders.entries()) {
      const reply = await b.connect(server.url, positions[i]);
      assert.equal(reply.recovered, true, `${b.name}: sub with since ${JSON.stringify(positions[i])} answered ${short(reply)}`);
      await b.caughtUp(publisher.acked);
      const got = b.peer.inbox.filter((m) => m.op === 'msg' && m.channel === BYSTANDER_CHANNEL);
      assert.deepEqual(
        got.map((m) => [m.offset, m.epoch]),
        missed.map((m) => [m.offset, m.epoch]),
        `${b.name}: exactly the missed publications, in order`,
      );
      assert.deepEqual(b.problems, []);
    }
    // And live ones after the resume.
    const live = await publisher.publishOne();
    for (const b of bystanders) {
      await b.caughtUp(publisher.acked);
      assert.deepEqual(b.problems, []);
      assert.equal(b.lastOffset, live.at(-1)!.offset);
    }
    assert.equal(server.trouble(), null);
  });
});
